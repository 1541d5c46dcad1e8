//! Linux cameras through Video4Linux2 (`--source v4l2:/dev/video0`), and `--list-devices`.
//!
//! Camera JPEG (MJPG) is passed through untouched except for inserting the standard Huffman
//! tables many USB cameras leave out ([`ensure_huffman_tables`]); raw YUYV, UYVY, NV12, RGB and
//! grey frames are JPEG-encoded at `--quality` on a blocking thread, fed to the encoder as
//! YCbCr without an RGB detour. Capture uses streaming I/O with four mmapped buffers and always
//! takes the newest filled buffer, so a slow encoder drops frames instead of adding latency.
//!
//! The few ioctls are done directly through `libc` (`sys.rs` transcribes the kernel structs,
//! `device.rs` wraps them safely): the `v4l` crate runs bindgen at build time and needs
//! libclang, and `v4l2r` does not build against Debian 12's headers; a plain `cargo build` must
//! work. Not here: anything about HTTP, viewers or retries (the hub reopens a failed source).

// The kernel interface is ioctl(2) and mmap(2) on C structs: there is no safe way to call them.
// All unsafe code is in `device.rs`, behind a small safe API; this lint is allowed for the
// module tree only, the rest of the crate still denies it.
#![allow(unsafe_code)]

mod controls;
mod convert;
mod device;
mod format;
mod gather;
mod list;
mod sys;
#[cfg(test)]
mod testing;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

pub use crate::jpeg::dht::ensure_huffman_tables;
pub use list::list_devices;

use self::convert::RawSurface;
use self::device::{Device, FrameInfo, Stream, fps_of};
use self::format::{PixelFormat, fourcc_str};
use self::gather::RawLayout;
use super::{BoxFuture, Captured, Opener, Params, Source, SourceError, blocking};
use crate::frame::Image;
use crate::jpeg::{self, EndScanner, Scan};
use crate::overlay::Painter;

/// Buffers the driver fills in turn: one being read, one being filled, two spare so a slow
/// read never makes the camera drop a frame it has started.
const BUFFER_COUNT: u32 = 4;

/// The shortest wait for a frame before the camera counts as stalled; UVC cameras take up
/// to about a second for their first frame, and slow down in the dark.
const MIN_STALL_TIMEOUT: Duration = Duration::from_secs(3);

/// How many frame intervals without a frame count as a stall when that is longer.
const STALL_FRAMES: u32 = 4;

/// Consecutive unusable frames (driver error flag, truncated JPEG, short raw frame) tolerated
/// before the opening fails and the hub reopens the device. Cameras send the odd broken frame,
/// especially right after starting; a steady stream of them is a fault worth showing.
const MAX_BAD_FRAMES: u32 = 30;

/// Opens a V4L2 capture device.
#[derive(Debug, Clone)]
pub struct V4l2Opener {
    device: PathBuf,
    format: Option<PixelFormat>,
    params: Params,
    /// The device's controls and the values to restore at every opening.
    controls: Arc<controls::V4l2Controls>,
}

impl V4l2Opener {
    /// A camera at `device` (`/dev/video0`), captured at about `params`' size and rate; with
    /// `format` (a fourcc such as `YUYV` or `MJPG`), only that format, else the best offered.
    pub fn new(
        device: impl Into<PathBuf>,
        format: Option<&str>,
        params: Params,
    ) -> Result<V4l2Opener, SourceError> {
        let device = device.into();
        let format = match format {
            None => None,
            Some(name) => Some(PixelFormat::parse(name).ok_or_else(|| {
                SourceError::permanent(format!(
                    "v4l2: unknown or unsupported pixel format {name:?}: use one of {}",
                    supported_list()
                ))
            })?),
        };
        Ok(V4l2Opener {
            controls: Arc::new(controls::V4l2Controls::new(device.clone())),
            device,
            format,
            params,
        })
    }
}

impl Opener for V4l2Opener {
    fn open(&self) -> BoxFuture<'_, Result<Box<dyn Source>, SourceError>> {
        let this = self.clone();
        Box::pin(async move {
            let path = this.device.clone();
            let capture = blocking("v4l2 open", move || Capture::open(&this)).await??;
            let source: Box<dyn Source> = Box::new(V4l2Source {
                capture: Some(Box::new(capture)),
                path,
            });
            Ok(source)
        })
    }

    fn controls(&self) -> Option<Arc<dyn crate::source::controls::Controls>> {
        let controls: Arc<dyn crate::source::controls::Controls> = self.controls.clone();
        Some(controls)
    }

    fn describe(&self) -> String {
        let p = &self.params;
        let format = self
            .format
            .map(|f| format!(" {}", fourcc_str(f.fourcc())))
            .unwrap_or_default();
        format!(
            "v4l2 {}{format} {}x{}@{}",
            self.device.display(),
            p.width,
            p.height,
            p.fps
        )
    }
}

/// An open camera. Capture runs on a blocking thread; the device travels there and back.
struct V4l2Source {
    /// `None` only while a capture call runs, or after one was cancelled mid-way (the hub
    /// timed it out); the device is then closed by the blocking thread when it finishes.
    capture: Option<Box<Capture>>,
    path: PathBuf,
}

impl V4l2Source {
    /// Dequeues the next usable frame on a blocking thread (the ioctls block).
    async fn captured(&mut self) -> Result<Captured, SourceError> {
        let Some(mut capture) = self.capture.take() else {
            return Err(SourceError::new(format!(
                "v4l2: {}: an earlier capture was interrupted; reopening",
                self.path.display()
            )));
        };
        let (capture, result) = blocking("v4l2 capture", move || {
            let result = capture.next_captured();
            // After an error, close the device here (STREAMOFF can take a USB round trip)
            // so it is free when the hub reopens it.
            let capture = result.is_ok().then_some(capture);
            (capture, result)
        })
        .await?;
        self.capture = capture;
        result
    }
}

impl Source for V4l2Source {
    fn next_frame(&mut self) -> BoxFuture<'_, Result<Image, SourceError>> {
        Box::pin(async move {
            match self.captured().await? {
                Captured::Jpeg(image) => Ok(image),
                raw => blocking("v4l2 encode", move || raw.into_image()).await?,
            }
        })
    }

    fn next_capture(&mut self) -> BoxFuture<'_, Result<Captured, SourceError>> {
        Box::pin(self.captured())
    }
}

/// How frames become JPEG.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// The camera sends JPEG: pass it through.
    Jpeg,
    /// Raw frames of this layout: encode them.
    Raw(RawLayout),
}

/// A streaming camera and what is needed to turn its frames into JPEG.
struct Capture {
    path: PathBuf,
    stream: Stream,
    kind: Kind,
    quality: u8,
    /// No frame for this long is a stall.
    stall_timeout: Duration,
    /// Unusable frames since the last good one.
    bad_frames: u32,
    /// Driver sequence number of the last frame delivered, to count frames the driver dropped.
    last_sequence: Option<u32>,
}

impl Capture {
    /// Opens the device, negotiates format, size and rate, maps the buffers and starts
    /// streaming. Blocking: a USB camera answers some of these in hundreds of milliseconds.
    fn open(opener: &V4l2Opener) -> Result<Capture, SourceError> {
        let path = opener.device.as_path();
        let params = opener.params;
        let at = |what: &str, e: io::Error| ioctl_error(path, what, &e);

        let mut device = Device::open(path).map_err(|e| open_error(path, &e))?;
        let caps = device.capabilities().map_err(|e| {
            if e.raw_os_error() == Some(libc::ENOTTY) {
                SourceError::permanent(format!(
                    "v4l2: {} is not a V4L2 device (VIDIOC_QUERYCAP is not supported) — list \
                     devices with mjpegd --list-devices",
                    path.display()
                ))
            } else {
                at("VIDIOC_QUERYCAP", e)
            }
        })?;
        if !caps.is_capture() {
            let hint = if caps.caps & sys::CAP_META_CAPTURE != 0 {
                "USB cameras also create a metadata node next to the capture one: pick the node \
                 listed as video capture by mjpegd --list-devices"
            } else {
                "pick a node listed as video capture by mjpegd --list-devices"
            };
            return Err(SourceError::permanent(format!(
                "v4l2: {} ({}, {}) is not a video capture device but {} — {hint}",
                path.display(),
                caps.card,
                caps.driver,
                caps.kind()
            )));
        }
        if !caps.can_stream() {
            return Err(SourceError::permanent(format!(
                "v4l2: {} ({}) does not support streaming I/O, which mjpegd needs",
                path.display(),
                caps.driver
            )));
        }

        let offered = device.formats().map_err(|e| at("VIDIOC_ENUM_FMT", e))?;
        let offered_list = || {
            offered
                .iter()
                .map(|f| fourcc_str(f.fourcc))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let is_offered = |f: PixelFormat| offered.iter().any(|o| o.fourcc == f.fourcc());
        let wanted = match opener.format {
            Some(f) if is_offered(f) => f,
            Some(f) => {
                return Err(SourceError::permanent(format!(
                    "v4l2: {} does not offer {}; it offers {} (see mjpegd --list-devices)",
                    path.display(),
                    fourcc_str(f.fourcc()),
                    offered_list()
                )));
            }
            None => PixelFormat::ALL
                .into_iter()
                .find(|&f| is_offered(f))
                .ok_or_else(|| {
                    SourceError::permanent(format!(
                        "v4l2: {} offers none of the formats mjpegd can use ({}); it offers {}",
                        path.display(),
                        supported_list(),
                        offered_list()
                    ))
                })?,
        };

        let asked = sys::PixFormat {
            width: params.width,
            height: params.height,
            pixelformat: wanted.fourcc(),
            field: sys::FIELD_ANY,
            ..Default::default()
        };
        let (got, strides) = device
            .set_format(asked)
            .map_err(|e| at("VIDIOC_S_FMT", e))?;
        let format = PixelFormat::from_fourcc(got.pixelformat).ok_or_else(|| {
            SourceError::permanent(format!(
                "v4l2: {}: asked for {} but the driver chose {}, which mjpegd cannot use",
                path.display(),
                fourcc_str(wanted.fourcc()),
                fourcc_str(got.pixelformat)
            ))
        })?;
        let kind = if format.is_jpeg() {
            Kind::Jpeg
        } else {
            // A driver that stores a format in other planes than the format has (its own
            // variant of NV12, say), or rows too short for the width, would hand us a
            // scrambled picture.
            let layout = RawLayout::new(format, got.width, got.height, &strides, got.quantization)
                .map_err(|e| {
                    SourceError::permanent(format!(
                        "v4l2: {}: {e} — ask for another format with --format (it offers {})",
                        path.display(),
                        offered_list()
                    ))
                })?;
            Kind::Raw(layout)
        };

        let fps = negotiate_rate(&device, params.fps, path);
        // After format and rate: some drivers reset controls when those change.
        opener.controls.restore(&device);

        let stream = Stream::start(device, BUFFER_COUNT).map_err(|e| {
            if e.raw_os_error() == Some(libc::ENOSPC) {
                SourceError::permanent(format!(
                    "v4l2: {}: not enough USB bandwidth for {}x{} {} at {} fps — lower --size \
                     or --fps, prefer MJPEG, or move the camera to another USB controller",
                    path.display(),
                    got.width,
                    got.height,
                    fourcc_str(got.pixelformat),
                    fps.map_or_else(|| "its".to_string(), format_fps),
                ))
            } else {
                at("start streaming", e)
            }
        })?;

        let interval = fps.filter(|&f| f > 0.0).map_or(Duration::ZERO, |f| {
            Duration::from_secs_f64((1.0 / f).min(3600.0))
        });
        let stall_timeout = MIN_STALL_TIMEOUT.max(interval * STALL_FRAMES);
        tracing::info!(
            device = %path.display(),
            card = %caps.card,
            driver = %caps.driver,
            api = if caps.is_mplane_capture() { "multi-planar" } else { "single-planar" },
            format = %fourcc_str(got.pixelformat),
            size = %format!("{}x{}", got.width, got.height),
            fps = %fps.map_or_else(|| "unknown".to_string(), format_fps),
            asked = %format!("{} {}x{} at {} fps", fourcc_str(wanted.fourcc()), params.width, params.height, format_fps(params.fps)),
            mode = %match kind {
                Kind::Jpeg => "camera JPEG passed through".to_string(),
                Kind::Raw(l) => format!(
                    "encoded by mjpegd at quality {} from {} range",
                    params.quality,
                    if l.full_range { "full" } else { "studio" }
                ),
            },
            "v4l2 capture started"
        );
        Ok(Capture {
            path: path.to_path_buf(),
            stream,
            kind,
            quality: params.quality,
            stall_timeout,
            bad_frames: 0,
            last_sequence: None,
        })
    }

    /// Waits for the next usable frame and returns it as JPEG.
    /// The next usable frame: a JPEG the camera compressed, or a raw frame (copied out of the
    /// driver's buffer) with the job that encodes it.
    fn next_captured(&mut self) -> Result<Captured, SourceError> {
        loop {
            let Capture {
                stream,
                kind,
                quality,
                ..
            } = self;
            let (kind, quality) = (*kind, *quality);
            let frame = stream
                .with_newest_frame(self.stall_timeout, |data, info| {
                    (process(kind, quality, data, info), info.sequence)
                })
                .map_err(|e| capture_error(&self.path, &e))?;
            let Some((result, sequence)) = frame else {
                return Err(SourceError::new(format!(
                    "v4l2: {}: no frame for {:.1} s — camera stalled or disconnected",
                    self.path.display(),
                    self.stall_timeout.as_secs_f64()
                )));
            };
            if let Some(last) = self.last_sequence {
                let gap = sequence.wrapping_sub(last).wrapping_sub(1);
                if gap > 0 && gap < u32::MAX / 2 {
                    tracing::trace!(device = %self.path.display(), gap, "frames skipped");
                }
            }
            self.last_sequence = Some(sequence);
            match result {
                Ok(image) => {
                    self.bad_frames = 0;
                    return Ok(image);
                }
                Err(reason) => {
                    self.bad_frames += 1;
                    tracing::debug!(device = %self.path.display(), %reason, "unusable frame skipped");
                    if self.bad_frames >= MAX_BAD_FRAMES {
                        return Err(SourceError::new(format!(
                            "v4l2: {}: {} unusable frames in a row (last: {reason})",
                            self.path.display(),
                            self.bad_frames
                        )));
                    }
                }
            }
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        tracing::debug!(
            device = %self.path.display(),
            skipped = self.stream.skipped(),
            "v4l2 capture stopped"
        );
    }
}

/// One dequeued buffer to a JPEG image or a raw frame to encode, or why it is unusable.
fn process(kind: Kind, quality: u8, planes: &[&[u8]], info: FrameInfo) -> Result<Captured, String> {
    if info.flags & sys::BUF_FLAG_ERROR != 0 {
        return Err("the driver flagged the frame as corrupt".into());
    }
    match kind {
        Kind::Jpeg => {
            let data = planes.first().copied().unwrap_or_default();
            // The buffer may hold padding after EOI, or a frame the camera cut short.
            let end = match EndScanner::new().scan(data) {
                Scan::Complete(end) => end,
                Scan::Incomplete => {
                    return Err(format!("truncated JPEG ({} bytes, no EOI)", data.len()));
                }
                Scan::Invalid { pos, reason } => {
                    return Err(format!("invalid JPEG at byte {pos}: {reason}"));
                }
            };
            let jpeg = ensure_huffman_tables(&data[..end]);
            let (width, height) =
                jpeg::dimensions(&jpeg).map_err(|e| format!("unusable JPEG: {e}"))?;
            Ok(Captured::Jpeg(Image {
                jpeg: Bytes::copy_from_slice(&jpeg),
                width,
                height,
            }))
        }
        Kind::Raw(layout) => {
            // The driver's buffer goes back to it before the frame is encoded: a copy (1.8 MB
            // for 720p YUYV, well under a millisecond) lets the encode run on the pool. A
            // short frame counts as unusable here, not in the job.
            let mut data = layout.copy_out(planes)?;
            Ok(Captured::Encode(Box::new(
                move |painter: Option<&Painter>| {
                    if let Some(p) = painter {
                        p.paint(&mut RawSurface::new(&layout, &mut data));
                    }
                    let jpeg = layout
                        .encode(&data, quality)
                        .ok_or_else(|| SourceError::new("v4l2: short frame"))?
                        .map_err(|e| SourceError::new(format!("v4l2: {e}")))?;
                    Ok(Image {
                        jpeg,
                        width: u32::from(layout.width),
                        height: u32::from(layout.height),
                    })
                },
            )))
        }
    }
}

/// Asks for `fps` when the driver lets us set the rate; returns the rate in force, if known.
fn negotiate_rate(device: &Device, fps: f64, path: &Path) -> Option<f64> {
    let parm = match device.capture_parm() {
        Ok(p) => p,
        Err(e) => {
            tracing::debug!(device = %path.display(), error = %e, "VIDIOC_G_PARM failed");
            return None;
        }
    };
    let current = Some(fps_of(parm.timeperframe)).filter(|&f| f > 0.0);
    if parm.capability & sys::CAP_TIMEPERFRAME == 0 {
        tracing::debug!(device = %path.display(), "the driver does not let us set the frame rate");
        return current;
    }
    // 1000 / (fps * 1000) seconds per frame keeps fractional rates such as 29.97.
    let interval = sys::Fract {
        numerator: 1000,
        denominator: (fps.clamp(0.01, 1000.0) * 1000.0).round() as u32,
    };
    match device.set_frame_interval(interval) {
        Ok(got) => Some(fps_of(got)).filter(|&f| f > 0.0).or(current),
        Err(e) => {
            tracing::warn!(device = %path.display(), error = %e, fps, "cannot set the frame rate");
            current
        }
    }
}

/// The supported formats' fourccs, for messages.
fn supported_list() -> String {
    PixelFormat::ALL
        .iter()
        .map(|f| fourcc_str(f.fourcc()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A rate as people write it: `30`, `7.5`, `29.97`.
fn format_fps(fps: f64) -> String {
    if (fps - fps.round()).abs() < 0.005 {
        format!("{}", fps.round())
    } else {
        let s = format!("{fps:.2}");
        s.trim_end_matches('0').to_string()
    }
}

/// An OS error's text without Rust's " (os error N)" suffix.
fn os_text(e: &io::Error) -> String {
    let s = e.to_string();
    match s.rfind(" (os error ") {
        Some(i) if e.raw_os_error().is_some() => s[..i].to_string(),
        _ => s,
    }
}

const BUSY: &str = "device busy: another program (another mjpegd, a browser, motion) is using it";

/// Why `open(2)` of the device failed, and what to do. Only a busy device can free itself;
/// a missing node, a refused permission or an unplugged camera need someone to act.
fn open_error(path: &Path, e: &io::Error) -> SourceError {
    let p = path.display();
    match e.raw_os_error() {
        Some(libc::EBUSY) => SourceError::new(format!("v4l2: {p}: {BUSY}")),
        Some(libc::EACCES | libc::EPERM) => SourceError::permanent(format!(
            "v4l2: cannot open {p}: {} — add the user running mjpegd to the video group \
             (usermod -aG video USER, then log in again)",
            os_text(e)
        )),
        Some(libc::ENODEV | libc::ENXIO) => SourceError::permanent(format!(
            "v4l2: cannot open {p}: {} — the camera is gone (unplugged?)",
            os_text(e)
        )),
        _ => SourceError::permanent(format!(
            "v4l2: cannot open {p}: {} — list devices with mjpegd --list-devices",
            os_text(e)
        )),
    }
}

/// Why setting up the device failed: busy can pass, anything else is the device refusing.
fn ioctl_error(path: &Path, what: &str, e: &io::Error) -> SourceError {
    let p = path.display();
    match e.raw_os_error() {
        Some(libc::EBUSY) => SourceError::new(format!("v4l2: {p}: {BUSY}")),
        Some(libc::ENODEV) => {
            SourceError::permanent(format!("v4l2: {p}: device disconnected (unplugged?)"))
        }
        _ => SourceError::permanent(format!("v4l2: {p}: {what} failed: {}", os_text(e))),
    }
}

/// Why capturing from a streaming device failed: unplugged is permanent, a glitch transient.
fn capture_error(path: &Path, e: &io::Error) -> SourceError {
    let p = path.display();
    match e.raw_os_error() {
        Some(libc::ENODEV) => {
            SourceError::permanent(format!("v4l2: {p}: device disconnected (unplugged?)"))
        }
        _ => SourceError::new(format!("v4l2: {p}: capture failed: {}", os_text(e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Params {
        Params {
            width: 640,
            height: 480,
            fps: 30.0,
            quality: 80,
        }
    }

    #[tokio::test]
    async fn a_missing_device_is_a_clear_error() {
        let opener = V4l2Opener::new("/dev/video-mjpegd-test-missing", None, params()).expect("ok");
        let Err(e) = opener.open().await else {
            panic!("opened a missing device");
        };
        assert_eq!(
            e.to_string(),
            "v4l2: cannot open /dev/video-mjpegd-test-missing: No such file or directory — list \
             devices with mjpegd --list-devices"
        );
    }

    #[tokio::test]
    async fn a_file_that_is_not_a_device_is_a_clear_error() {
        let file = tempfile::NamedTempFile::new().expect("temp file");
        let opener = V4l2Opener::new(file.path(), None, params()).expect("ok");
        let Err(e) = opener.open().await else {
            panic!("opened a regular file");
        };
        assert!(e.to_string().contains("is not a V4L2 device"), "{e}");
    }

    #[test]
    fn formats_are_checked_when_configured() {
        assert!(V4l2Opener::new("/dev/video0", Some("yuyv"), params()).is_ok());
        let e = V4l2Opener::new("/dev/video0", Some("H264"), params()).unwrap_err();
        assert!(e.to_string().contains("MJPG, JPEG, YUYV"), "{e}");
        let o = V4l2Opener::new("/dev/video0", Some("mjpeg"), params()).expect("ok");
        assert_eq!(o.describe(), "v4l2 /dev/video0 MJPG 640x480@30");
    }

    #[test]
    fn error_texts() {
        let p = Path::new("/dev/video0");
        let busy = ioctl_error(
            p,
            "VIDIOC_S_FMT",
            &io::Error::from_raw_os_error(libc::EBUSY),
        );
        assert_eq!(
            busy.to_string(),
            "v4l2: /dev/video0: device busy: another program (another mjpegd, a browser, motion) \
             is using it"
        );
        let denied = open_error(p, &io::Error::from_raw_os_error(libc::EACCES));
        assert!(
            denied
                .to_string()
                .contains("Permission denied — add the user"),
            "{denied}"
        );
        let inval = ioctl_error(
            p,
            "VIDIOC_S_FMT",
            &io::Error::from_raw_os_error(libc::EINVAL),
        );
        assert_eq!(
            inval.to_string(),
            "v4l2: /dev/video0: VIDIOC_S_FMT failed: Invalid argument"
        );
    }

    #[test]
    fn rates_read_naturally() {
        assert_eq!(format_fps(30.0), "30");
        assert_eq!(format_fps(7.5), "7.5");
        assert_eq!(format_fps(30000.0 / 1001.0), "29.97");
    }

    #[test]
    fn bad_frames_are_reported_not_passed_on() {
        let ok = FrameInfo {
            sequence: 0,
            flags: 0,
        };
        let flagged = FrameInfo {
            sequence: 0,
            flags: sys::BUF_FLAG_ERROR,
        };
        let good = crate::render::Canvas::new(32, 16, [1, 2, 3])
            .encode(80)
            .expect("jpeg");
        let mut padded = good.to_vec();
        padded.extend_from_slice(&[0; 100]);
        let Ok(Captured::Jpeg(image)) = process(Kind::Jpeg, 80, &[&padded], ok) else {
            panic!("a camera's JPEG is passed through, not encoded");
        };
        assert_eq!(image.jpeg, good, "padding after EOI is cut");
        assert_eq!((image.width, image.height), (32, 16));
        assert!(process(Kind::Jpeg, 80, &[&good], flagged).is_err());
        assert!(process(Kind::Jpeg, 80, &[&good[..good.len() / 2]], ok).is_err());
        assert!(process(Kind::Jpeg, 80, &[&[]], ok).is_err());
        let layout = RawLayout::new(PixelFormat::Yuyv, 4, 2, &[8], 0).expect("layout");
        let e = process(Kind::Raw(layout), 80, &[&[0; 15]], ok).unwrap_err();
        assert!(e.contains("needs 16"), "{e}");
        // A raw frame is encoded by the job it comes with (on the pool), from a copy: the
        // driver's buffer may be reused meanwhile.
        let mut buffer = vec![128u8; 16];
        let Ok(Captured::Encode(job)) = process(Kind::Raw(layout), 80, &[&buffer], ok) else {
            panic!("a raw frame comes with its encoding job");
        };
        buffer.fill(0);
        let image = job(None).expect("encodes");
        assert_eq!((image.width, image.height), (4, 2));
        let mut d = zune_jpeg::JpegDecoder::new(&image.jpeg[..]);
        let px = d.decode().expect("decodes");
        assert!(
            px.iter().all(|&c| c.abs_diff(128) < 8),
            "grey, not the zeroed buffer: {px:?}"
        );
    }
}
