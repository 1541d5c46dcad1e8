//! Where frames come from: the [`Source`] trait, its [`Opener`], and the backends.
//!
//! A source produces JPEG [`Image`]s and knows nothing of HTTP, viewers or the hub. The hub
//! holds an [`Opener`] per camera and calls it each time capture starts (and after a failure),
//! so tests can inject a scripted source without ffmpeg or a camera.

pub mod controls;
pub mod exec;
pub mod images;
#[cfg(feature = "bus")]
pub mod nats;
pub mod pattern;
#[cfg(feature = "relay")]
pub mod relay;
#[cfg(all(target_os = "linux", feature = "v4l2"))]
pub mod v4l2;

use std::fmt;
use std::future::Future;
use std::path::PathBuf;
use std::pin::Pin;
use std::str::FromStr;
use std::sync::Arc;

use crate::frame::{Image, Stamp};
use crate::overlay::Painter;
use crate::url::redact_url;

/// A boxed future, so [`Source`] and [`Opener`] can be used as trait objects.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Whether a source failure can pass by itself. Both kinds are retried (a replugged camera or a
/// fixed upstream is picked up without a restart); the kind tells operators whether to act.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Needs someone to change something: no such device, permission denied, unsupported
    /// pixel format, bad URL or path (HTTP 4xx), command not found, output that is not MJPEG.
    Permanent,
    /// Can pass by itself: connection dropped or refused, timeout, the process exited,
    /// upstream 5xx, device busy.
    Transient,
}

impl ErrorKind {
    /// `permanent` or `transient`, as shown in `/api/state` and `/metrics`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::Permanent => "permanent",
            ErrorKind::Transient => "transient",
        }
    }

    /// What an operator should do about an error of this kind.
    pub fn hint(self) -> &'static str {
        match self {
            ErrorKind::Permanent => {
                "this will not fix itself: correct the camera's source (device path and \
                 permissions, pixel format, URL, command) as the error says; mjpegd keeps \
                 retrying, at least every 30 s, and picks the fix up without a restart"
            }
            ErrorKind::Transient => {
                "usually passes by itself: mjpegd retries with backoff (1 s doubling to 30 s); \
                 if it lasts, check the camera, the network or the upstream server"
            }
        }
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a source could not open or deliver; the message is shown to operators and on the
/// no-signal frame, so it says what failed and, where possible, what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceError {
    message: String,
    kind: ErrorKind,
}

impl SourceError {
    /// A transient source error (one that can pass by itself) with the given message.
    pub fn new(msg: impl Into<String>) -> SourceError {
        SourceError::with_kind(ErrorKind::Transient, msg)
    }

    /// A permanent source error: retrying alone will not fix it.
    pub fn permanent(msg: impl Into<String>) -> SourceError {
        SourceError::with_kind(ErrorKind::Permanent, msg)
    }

    /// A source error of the given kind.
    pub fn with_kind(kind: ErrorKind, msg: impl Into<String>) -> SourceError {
        SourceError {
            message: msg.into(),
            kind,
        }
    }

    /// What failed, for operators.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Whether it can pass by itself.
    pub fn kind(&self) -> ErrorKind {
        self.kind
    }
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SourceError {}

/// Encodes one raw frame into JPEG; runs on an encoder thread. The painter, when the camera has
/// an overlay, is painted into the pixels just before they are encoded.
pub type EncodeJob = Box<dyn FnOnce(Option<&Painter>) -> Result<Image, SourceError> + Send>;

/// A frame as a source has it: JPEG already, or pixels whose encoding is left to the caller.
pub enum Captured {
    /// A JPEG image, ready to publish.
    Jpeg(Image),
    /// A raw frame and the job that encodes it. The capture loop runs it on the encoder pool,
    /// so that one camera's frames are encoded on every core, several at once.
    Encode(EncodeJob),
}

impl std::fmt::Debug for Captured {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Captured::Jpeg(image) => f.debug_tuple("Jpeg").field(image).finish(),
            Captured::Encode(_) => f.write_str("Encode(..)"),
        }
    }
}

impl Captured {
    /// The JPEG image, encoding it here if it is still raw.
    pub fn into_image(self) -> Result<Image, SourceError> {
        match self {
            Captured::Jpeg(image) => Ok(image),
            Captured::Encode(job) => job(None),
        }
    }
}

/// An open source of frames.
pub trait Source: Send {
    /// Waits for and returns the next frame. Sources pace themselves (a camera's rate, a
    /// timer); an error ends this opening and the hub retries through the [`Opener`].
    fn next_frame(&mut self) -> BoxFuture<'_, Result<Image, SourceError>>;

    /// As [`Source::next_frame`], but a source that encodes (the test pattern, raw V4L2
    /// formats) may return the encoding as a job instead of running it. The default: the
    /// frame `next_frame` returns.
    fn next_capture(&mut self) -> BoxFuture<'_, Result<Captured, SourceError>> {
        Box::pin(async move { self.next_frame().await.map(Captured::Jpeg) })
    }

    /// The origin's capture time and online flag of the image `next_frame` last returned, for
    /// sources relaying frames captured elsewhere; `None` (the default): stamped on arrival, online.
    fn stamp(&self) -> Option<Stamp> {
        None
    }
}

/// Opens a [`Source`]; held by a camera for its whole life and called at every (re)start.
pub trait Opener: Send + Sync + 'static {
    /// Opens the source (starts a child process, connects, opens a device, ...).
    fn open(&self) -> BoxFuture<'_, Result<Box<dyn Source>, SourceError>>;

    /// A short description for logs and the state page, without credentials.
    fn describe(&self) -> String;

    /// The bus link of its own this source reads from (a `nats://` source given as a URL), for
    /// the state page; `None` for every other source, and for cameras discovered on the
    /// server's own bus (that link is shown as the server's).
    #[cfg(feature = "bus")]
    fn own_link(&self) -> Option<Arc<crate::link::Link>> {
        None
    }

    /// The camera's controls (brightness, focus, exposure), for sources that have them: V4L2
    /// devices. `None` (the default): the source has no controls mjpegd can set.
    fn controls(&self) -> Option<Arc<dyn controls::Controls>> {
        None
    }

    /// Kills at once whatever this opener started that still runs (an exec child still in its
    /// stop grace), when the server stops; a no-op for most sources.
    fn stop_now(&self) {}
}

/// Capture parameters shared by the built-in sources.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Params {
    /// Output width in pixels (generated sources).
    pub width: u32,
    /// Output height in pixels (generated sources).
    pub height: u32,
    /// Frames per second.
    pub fps: f64,
    /// JPEG quality 1-100 for sources that encode.
    pub quality: u8,
}

/// A parsed `--source` value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// The built-in moving test pattern (`testpattern`).
    TestPattern,
    /// Three built-in frames "1", "2", "3" (`images`), as in the classic Flask demo.
    BuiltinImages,
    /// The JPEG files of a directory in name order (`images:DIR`).
    ImageDir(PathBuf),
    /// A command writing MJPEG to stdout (`exec:COMMAND`).
    Exec(String),
    /// Another MJPEG HTTP camera (`http://…`, `https://…`).
    Http(String),
    /// A camera another mjpegd publishes on a NATS bus (`nats://HOST:4222/CAMERA`).
    Nats(String),
    /// A V4L2 camera (`v4l2:/dev/video0`, or `v4l2:/dev/video0?format=YUYV`); Linux only.
    V4l2 {
        /// The device node.
        device: PathBuf,
        /// The pixel format to insist on (a fourcc such as `YUYV`); else the best offered.
        format: Option<String>,
    },
}

impl SourceSpec {
    /// The frame rate a source runs at when `--fps` is not given.
    pub fn default_fps(&self) -> f64 {
        match self {
            SourceSpec::TestPattern | SourceSpec::V4l2 { .. } => 30.0,
            // Paced by the camera node; the rate only matters for snapshot polling.
            SourceSpec::Nats(_) => 30.0,
            SourceSpec::BuiltinImages | SourceSpec::ImageDir(_) => 1.0,
            // Sources that pace themselves; the rate only matters for snapshot polling.
            SourceSpec::Exec(_) | SourceSpec::Http(_) => 5.0,
        }
    }

    /// True for sources mjpegd renders itself (they render at the configured size).
    pub fn is_generated(&self) -> bool {
        matches!(self, SourceSpec::TestPattern | SourceSpec::BuiltinImages)
    }

    /// Builds the opener for this spec, checking what can be checked before serving (a
    /// directory with no JPEG is a startup error, not a no-signal frame hours later).
    pub fn opener(&self, params: Params) -> Result<Arc<dyn Opener>, SourceError> {
        Ok(match self {
            SourceSpec::TestPattern => Arc::new(pattern::PatternOpener::new(params)),
            SourceSpec::BuiltinImages => Arc::new(images::ImagesOpener::builtin(params)),
            SourceSpec::ImageDir(dir) => Arc::new(images::ImagesOpener::dir(dir.clone(), params)?),
            SourceSpec::Exec(cmd) => Arc::new(exec::ExecOpener::new(cmd.clone())),
            #[cfg(feature = "relay")]
            SourceSpec::Http(url) => Arc::new(relay::RelayOpener::new(url, params)?),
            #[cfg(not(feature = "relay"))]
            SourceSpec::Http(url) => {
                return Err(SourceError::new(format!(
                    "{}: this mjpegd was built without the `relay` feature; rebuild with \
                     `cargo build --release --features relay` (on by default)",
                    redact_url(url)
                )));
            }
            #[cfg(feature = "bus")]
            SourceSpec::Nats(url) => Arc::new(nats::NatsOpener::new(url, params)?),
            #[cfg(not(feature = "bus"))]
            SourceSpec::Nats(url) => {
                return Err(SourceError::permanent(format!(
                    "{}: this mjpegd was built without the `bus` feature; rebuild with \
                     `cargo build --release --features bus` (on by default)",
                    redact_url(url)
                )));
            }
            #[cfg(all(target_os = "linux", feature = "v4l2"))]
            SourceSpec::V4l2 { device, format } => Arc::new(v4l2::V4l2Opener::new(
                device.clone(),
                format.as_deref(),
                params,
            )?),
            #[cfg(not(target_os = "linux"))]
            SourceSpec::V4l2 { .. } => {
                return Err(SourceError::permanent(
                    "v4l2 sources need Linux (Video4Linux2)",
                ));
            }
            #[cfg(all(target_os = "linux", not(feature = "v4l2")))]
            SourceSpec::V4l2 { device, .. } => {
                return Err(SourceError::new(format!(
                    "v4l2:{}: this mjpegd was built without the `v4l2` feature; rebuild with \
                     `cargo build --release --features v4l2` (on by default)",
                    device.display()
                )));
            }
        })
    }
}

impl FromStr for SourceSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<SourceSpec, String> {
        let (kind, arg) = match s.split_once(':') {
            Some((k, a)) => (k, Some(a)),
            None => (s, None),
        };
        match (kind, arg) {
            ("testpattern", None) => Ok(SourceSpec::TestPattern),
            ("images", None) => Ok(SourceSpec::BuiltinImages),
            ("images", Some("")) => {
                Err("images: needs a directory, e.g. images:/srv/frames".into())
            }
            ("images", Some(dir)) => Ok(SourceSpec::ImageDir(PathBuf::from(dir))),
            ("exec", Some(cmd)) if !cmd.trim().is_empty() => {
                Ok(SourceSpec::Exec(cmd.trim().to_owned()))
            }
            ("exec", _) => Err(
                "exec: needs a command, e.g. exec:ffmpeg -i rtsp://cam/stream -f mjpeg -".into(),
            ),
            ("http" | "https", Some(_)) => Ok(SourceSpec::Http(s.to_owned())),
            #[cfg(feature = "bus")]
            ("nats" | "tls", Some(_)) => {
                match crate::link::ConnectConfig::parse_url(s).map_err(|e| e.to_string())? {
                    (_, Some(_)) => Ok(SourceSpec::Nats(s.to_owned())),
                    (_, None) => Err(format!(
                        "{:?} names no camera: use nats://HOST:4222/CAMERA",
                        redact_url(s)
                    )),
                }
            }
            // Checked no further: `opener` refuses it with how to get the feature, which a
            // "malformed URL" message here would hide.
            #[cfg(not(feature = "bus"))]
            ("nats" | "tls", Some(_)) => Ok(SourceSpec::Nats(s.to_owned())),
            ("v4l2", Some(arg)) => {
                let (device, format) = match arg.rsplit_once("?format=") {
                    Some((d, f)) => (d, Some(f.to_owned())),
                    None => (arg, None),
                };
                if device.is_empty() || format.as_deref() == Some("") {
                    return Err("v4l2: needs a device, e.g. v4l2:/dev/video0 or \
                                v4l2:/dev/video0?format=YUYV (see mjpegd --list-devices)"
                        .into());
                }
                Ok(SourceSpec::V4l2 {
                    device: PathBuf::from(device),
                    format,
                })
            }
            ("v4l2", None) => Err(
                "v4l2: needs a device, e.g. v4l2:/dev/video0 (see mjpegd --list-devices)".into(),
            ),
            _ => Err(format!(
                "unknown source {:?}: expected testpattern, images, images:DIR, exec:COMMAND, http://URL, https://URL, nats://HOST:PORT/CAMERA or v4l2:DEVICE",
                redact_url(s)
            )),
        }
    }
}

impl fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceSpec::TestPattern => f.write_str("testpattern"),
            SourceSpec::BuiltinImages => f.write_str("images"),
            SourceSpec::ImageDir(d) => write!(f, "images:{}", d.display()),
            SourceSpec::Exec(cmd) => write!(f, "exec:{cmd}"),
            SourceSpec::Http(url) => f.write_str(&redact_url(url)),
            SourceSpec::Nats(url) => f.write_str(&redact_url(url)),
            SourceSpec::V4l2 { device, format } => {
                write!(f, "v4l2:{}", device.display())?;
                match format {
                    Some(fmt) => write!(f, "?format={fmt}"),
                    None => Ok(()),
                }
            }
        }
    }
}

/// Runs CPU-heavy work (rendering, encoding) off the async workers.
pub(crate) async fn blocking<T: Send + 'static>(
    what: &'static str,
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, SourceError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| SourceError::new(format!("{what} failed: {e}")))
}

/// A frame interval from a rate, guarding against zero and absurd values.
pub(crate) fn interval_of(fps: f64) -> std::time::Duration {
    std::time::Duration::from_secs_f64(1.0 / fps.clamp(0.001, 1000.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_specs() {
        assert_eq!("testpattern".parse(), Ok(SourceSpec::TestPattern));
        assert_eq!("images".parse(), Ok(SourceSpec::BuiltinImages));
        assert_eq!(
            "images:/a:b".parse(),
            Ok(SourceSpec::ImageDir(PathBuf::from("/a:b")))
        );
        assert!("images:".parse::<SourceSpec>().is_err());
        assert!(
            "webcam"
                .parse::<SourceSpec>()
                .unwrap_err()
                .contains("unknown source")
        );
    }

    #[cfg(feature = "bus")]
    #[test]
    fn parses_nats_specs() {
        let spec: SourceSpec = "nats://u:pw@127.0.0.1:4222/porch".parse().expect("parse");
        assert_eq!(
            spec,
            SourceSpec::Nats("nats://u:pw@127.0.0.1:4222/porch".into())
        );
        assert_eq!(spec.to_string(), "nats://u:***@127.0.0.1:4222/porch");
        let e = "nats://127.0.0.1:4222"
            .parse::<SourceSpec>()
            .expect_err("no camera");
        assert!(e.contains("names no camera"), "{e}");
        let e = "nats://u:pw@h:1/a b"
            .parse::<SourceSpec>()
            .expect_err("bad name");
        assert!(!e.contains("pw"), "{e}");
    }

    #[cfg(not(feature = "bus"))]
    #[test]
    fn nats_sources_say_the_bus_is_not_built() {
        let params = Params {
            width: 640,
            height: 480,
            fps: 30.0,
            quality: 80,
        };
        let spec: SourceSpec = "nats://u:pw@127.0.0.1:4222/porch".parse().expect("parse");
        assert_eq!(spec.to_string(), "nats://u:***@127.0.0.1:4222/porch");
        let Err(e) = spec.opener(params) else {
            panic!("a nats:// source opened in a build without the bus");
        };
        let e = e.to_string();
        assert!(e.contains("without the `bus` feature"), "{e}");
        assert!(e.contains("--features bus"), "{e}");
        assert!(!e.contains("pw@"), "credentials in {e}");
    }

    #[test]
    fn parses_v4l2_specs() {
        let by_path = "v4l2:/dev/v4l/by-path/pci-0000:00:14.0-usb-0:1:1.0-video-index0";
        for (text, device, format) in [
            ("v4l2:/dev/video0", "/dev/video0", None),
            ("v4l2:/dev/video2?format=YUYV", "/dev/video2", Some("YUYV")),
            (by_path, &by_path[5..], None),
        ] {
            let spec: SourceSpec = text.parse().expect(text);
            assert_eq!(
                spec,
                SourceSpec::V4l2 {
                    device: PathBuf::from(device),
                    format: format.map(String::from)
                }
            );
            assert_eq!(spec.to_string(), text, "round trip");
            assert_eq!(spec.default_fps(), 30.0);
            assert!(!spec.is_generated());
        }
        for bad in [
            "v4l2",
            "v4l2:",
            "v4l2:?format=YUYV",
            "v4l2:/dev/video0?format=",
        ] {
            let e = bad.parse::<SourceSpec>().unwrap_err();
            assert!(e.contains("v4l2: needs a device"), "{bad}: {e}");
        }
    }

    #[cfg(all(target_os = "linux", feature = "v4l2"))]
    #[test]
    fn v4l2_formats_are_checked_at_startup() {
        let params = Params {
            width: 640,
            height: 480,
            fps: 30.0,
            quality: 80,
        };
        let ok: SourceSpec = "v4l2:/dev/video0?format=yuyv".parse().expect("parse");
        assert!(
            ok.opener(params).is_ok(),
            "a missing device is a runtime error, not a startup one"
        );
        let bad: SourceSpec = "v4l2:/dev/video0?format=H264".parse().expect("parse");
        assert!(bad.opener(params).is_err());
    }
}
