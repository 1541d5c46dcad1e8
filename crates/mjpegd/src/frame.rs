//! The unit of video: an immutable, reference-counted published frame.
//!
//! A [`Frame`] holds the JPEG and, around it, the complete multipart part that viewers are sent,
//! built once when the frame is published. Cloning a frame is one atomic increment; no viewer
//! ever copies the bytes.

use std::fmt;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use bytes::Bytes;

use crate::mjpeg::write;

/// A JPEG image as a source delivers it, before the camera stamps and publishes it.
#[derive(Clone)]
pub struct Image {
    /// The JPEG file bytes (SOI to EOI).
    pub jpeg: Bytes,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
}

impl fmt::Debug for Image {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Image")
            .field("bytes", &self.jpeg.len())
            .field("width", &self.width)
            .field("height", &self.height)
            .finish()
    }
}

/// When and in what state a frame was captured, for a source that relays frames captured
/// elsewhere (a bus subject carries the camera node's capture time and no-signal flag, so an
/// edge's viewers get the same `X-Timestamp` as the camera node's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// Wall-clock capture time at the origin.
    pub captured: SystemTime,
    /// False for a "no signal" frame generated at the origin.
    pub online: bool,
}

/// A published frame, shared by every viewer of a camera.
#[derive(Clone)]
pub struct Frame(Arc<Inner>);

struct Inner {
    seq: u64,
    captured: SystemTime,
    captured_mono: Instant,
    width: u32,
    height: u32,
    online: bool,
    /// Part headers + JPEG + trailing boundary: exactly what a stream body sends.
    part: Bytes,
    jpeg_start: usize,
    jpeg_len: usize,
}

impl Frame {
    /// Stamps an image with its sequence number and capture time and builds its wire part.
    ///
    /// A JPEG without Huffman tables (many USB cameras' MJPEG) gets the standard ones here, so
    /// no frame of any source leaves without them; for a frame that has them this is a walk over
    /// its header segments, and the part is built with the one copy it needs anyway.
    /// `online` is false for generated "no signal" frames.
    pub fn new(seq: u64, image: &Image, captured: SystemTime, online: bool) -> Frame {
        let jpeg = crate::jpeg::dht::ensure_huffman_tables(&image.jpeg);
        let (part, jpeg_start) = write::part(&jpeg, captured);
        Frame(Arc::new(Inner {
            seq,
            captured,
            captured_mono: Instant::now(),
            width: image.width,
            height: image.height,
            online,
            part,
            jpeg_start,
            jpeg_len: jpeg.len(),
        }))
    }

    /// The camera's sequence number of this frame; strictly increasing per camera.
    pub fn seq(&self) -> u64 {
        self.0.seq
    }

    /// Wall-clock capture time (sent as `X-Timestamp`).
    pub fn captured(&self) -> SystemTime {
        self.0.captured
    }

    /// Monotonic time at which the frame was published.
    pub fn captured_mono(&self) -> Instant {
        self.0.captured_mono
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.0.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.0.height
    }

    /// False for a generated "no signal" frame.
    pub fn online(&self) -> bool {
        self.0.online
    }

    /// The complete multipart part (headers, JPEG, next boundary), shared without copying.
    pub fn part(&self) -> Bytes {
        self.0.part.clone()
    }

    /// The JPEG alone, as a zero-copy slice of the part.
    pub fn jpeg(&self) -> Bytes {
        self.0
            .part
            .slice(self.0.jpeg_start..self.0.jpeg_start + self.0.jpeg_len)
    }

    /// Size of the JPEG in bytes.
    pub fn jpeg_len(&self) -> usize {
        self.0.jpeg_len
    }
}

impl fmt::Debug for Frame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Frame")
            .field("seq", &self.0.seq)
            .field("bytes", &self.0.jpeg_len)
            .field("width", &self.0.width)
            .field("height", &self.0.height)
            .field("online", &self.0.online)
            .finish()
    }
}
