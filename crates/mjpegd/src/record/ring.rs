//! The pre-capture ring of a motion-mode recorder: the newest frames, held by reference (each
//! [`Frame`] is refcounted), so that an event's recording can begin `pre_capture` seconds
//! before the detector noticed it.
//!
//! Bounded three ways: by age (the window: `pre_capture` plus the detection delay), by count
//! ([`MAX_RING_FRAMES`]) and by bytes ([`MAX_RING_BYTES`]). Past either cap the oldest frames
//! go first, so a fast or large camera gets a shorter pre-capture than configured, never
//! unbounded memory.

use std::collections::VecDeque;

use super::time::Micros;
use crate::frame::Frame;

/// Most frames one ring holds: 30 s of pre-capture plus a second of detection delay at 30 fps.
pub const MAX_RING_FRAMES: usize = 1024;
/// Most bytes of frames one ring holds (JPEG and multipart part, one allocation per frame).
pub const MAX_RING_BYTES: usize = 64 << 20;

/// Frames of the last `window` µs, oldest first, within [`MAX_RING_FRAMES`] and
/// [`MAX_RING_BYTES`].
pub struct Ring {
    frames: VecDeque<(Micros, Frame)>,
    bytes: usize,
    window: Micros,
    max_frames: usize,
    max_bytes: usize,
    /// Frames evicted by a cap while still inside the window (pre-capture cut short).
    cut: u64,
}

fn size_of(frame: &Frame) -> usize {
    // The part holds the JPEG: it is the allocation the ring keeps alive.
    frame.part().len()
}

impl Ring {
    /// An empty ring keeping `window` µs of frames within the default caps.
    pub fn new(window: Micros) -> Ring {
        Ring::with_caps(window, MAX_RING_FRAMES, MAX_RING_BYTES)
    }

    /// An empty ring with explicit caps (tests).
    pub fn with_caps(window: Micros, max_frames: usize, max_bytes: usize) -> Ring {
        Ring {
            frames: VecDeque::new(),
            bytes: 0,
            window: window.max(0),
            max_frames: max_frames.max(1),
            max_bytes,
            cut: 0,
        }
    }

    /// Changes the window (the detection delay becomes known when a detector attaches).
    pub fn set_window(&mut self, window: Micros) {
        self.window = window.max(0);
    }

    /// Adds the newest frame, captured at `t`, and hands what falls out of the bounds to
    /// `evicted`, oldest first.
    pub fn push(&mut self, t: Micros, frame: Frame, mut evicted: impl FnMut(Micros, Frame)) {
        self.bytes += size_of(&frame);
        self.frames.push_back((t, frame));
        while let Some((oldest, _)) = self.frames.front() {
            let too_old = *oldest < t.saturating_sub(self.window);
            let over = self.frames.len() > self.max_frames || self.bytes > self.max_bytes;
            if !too_old && !over {
                break;
            }
            if !too_old {
                self.cut += 1;
            }
            if let Some((t, f)) = self.frames.pop_front() {
                self.bytes -= size_of(&f);
                evicted(t, f);
            }
        }
    }

    /// Takes every frame, oldest first, with its capture time; the ring is left empty.
    pub fn drain(&mut self) -> impl Iterator<Item = (Micros, Frame)> + '_ {
        self.bytes = 0;
        self.frames.drain(..)
    }

    /// Frames held.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Whether the ring holds no frame.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Bytes of the frames held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Frames a cap evicted while they were still inside the window.
    pub fn cut(&self) -> u64 {
        self.cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Image;
    use std::time::{Duration, UNIX_EPOCH};

    fn frame(seq: u64, jpeg_len: usize) -> (Micros, Frame) {
        let t = seq as Micros * 33_333;
        let mut jpeg = vec![0u8; jpeg_len];
        // A JPEG shape (SOI, a DHT so no table is added, EOI): the frame is built as published.
        jpeg[..2].copy_from_slice(&[0xFF, 0xD8]);
        let n = jpeg.len();
        jpeg[n - 2..].copy_from_slice(&[0xFF, 0xD9]);
        let image = Image {
            jpeg: bytes::Bytes::from(jpeg),
            width: 1920,
            height: 1080,
        };
        let captured = UNIX_EPOCH + Duration::from_micros(t as u64);
        (t, Frame::new(seq, &image, captured, true))
    }

    #[test]
    fn the_window_evicts_by_age() {
        let mut ring = Ring::new(1_000_000);
        let mut evicted = Vec::new();
        for seq in 1..=90 {
            let (t, f) = frame(seq, 1000);
            ring.push(t, f, |_, f| evicted.push(f.seq()));
        }
        // 3 s at 30 fps, a 1 s window: the last 31 frames (both ends inclusive).
        assert_eq!(ring.len(), 31);
        assert_eq!(ring.cut(), 0);
        assert_eq!(
            evicted,
            (1..=59).collect::<Vec<_>>(),
            "the oldest, in order"
        );
        let got: Vec<u64> = ring.drain().map(|(_, f)| f.seq()).collect();
        assert_eq!(got, (60..=90).collect::<Vec<_>>());
        assert!(ring.is_empty());
        assert_eq!(ring.bytes(), 0);
    }

    #[test]
    fn many_large_frames_stay_within_the_byte_and_frame_caps() {
        // 2000 frames of 1 MB (a 4K camera at high quality), a 30 s window that would hold
        // all of them: the byte cap keeps 64 MB, and the dropped frames' memory is freed.
        let mut ring = Ring::new(30_000_000);
        for seq in 1..=2000 {
            let (t, f) = frame(seq, 1 << 20);
            ring.push(t, f, |_, _| {});
            assert!(ring.bytes() <= MAX_RING_BYTES, "bytes {}", ring.bytes());
            assert!(ring.len() <= MAX_RING_FRAMES);
        }
        assert!(
            ring.bytes() > MAX_RING_BYTES - (2 << 20),
            "the cap, not less"
        );
        assert_eq!(
            ring.len(),
            63,
            "64 MB of 1 MB frames with their part headers"
        );
        assert_eq!(ring.cut(), 2000 - 63, "each eviction was inside the window");
        let first = ring.drain().next().map(|(_, f)| f.seq());
        assert_eq!(first, Some(2000 - 62), "the newest are kept");

        // Small frames: the frame cap binds first.
        let mut ring = Ring::new(60_000_000);
        for seq in 1..=3000 {
            let (t, f) = frame(seq, 500);
            ring.push(t, f, |_, _| {});
        }
        assert_eq!(ring.len(), MAX_RING_FRAMES);
        assert!(ring.bytes() < MAX_RING_BYTES);
    }
}
