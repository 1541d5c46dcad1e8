//! How a camera is set up, its limits and defaults: the one constructor that the config file,
//! the command line and bus discovery all build cameras with.

use std::sync::Arc;
use std::time::Duration;

use crate::overlay::Overlay;
use crate::render::MAX_DIMENSION;
use crate::source::{Opener, Params};
use crate::transform::Transform;

/// Most cameras one server serves (configured and discovered on a bus alike).
pub const MAX_CAMERAS: usize = 64;
/// Accepted capture rates, frames per second.
pub const FPS_RANGE: (f64, f64) = (0.01, 240.0);
/// Size of generated frames when none is configured (and of a peer's camera that gave none).
pub const DEFAULT_SIZE: (u32, u32) = (1280, 720);
/// Rate assumed for a peer's camera that announced none usable.
pub const DEFAULT_FPS: f64 = 30.0;
/// JPEG quality of frames mjpegd encodes, when none is configured.
pub const DEFAULT_QUALITY: u8 = 80;
/// How long capture goes on after the last viewer, when not configured.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long without a frame before no-signal and a source restart, when not configured.
pub const DEFAULT_SOURCE_TIMEOUT: Duration = Duration::from_secs(5);
/// Smallest side of a frame size.
pub const MIN_DIMENSION: u32 = 16;

/// How a camera is set up.
#[derive(Clone)]
pub struct CameraConfig {
    /// URL-safe name, unique in the server.
    pub name: String,
    /// Opens the camera's source at each capture start.
    pub opener: Arc<dyn Opener>,
    /// Size of generated frames (no signal).
    pub width: u32,
    /// Size of generated frames (no signal).
    pub height: u32,
    /// JPEG quality of generated frames.
    pub quality: u8,
    /// How long capture keeps running after the last viewer left.
    pub idle_timeout: Duration,
    /// How long without a frame before viewers get the no-signal frame and the source is reopened.
    pub source_timeout: Duration,
    /// Rotate/flip/downscale applied once per frame before publishing.
    pub transform: Transform,
    /// Configured capture rate (informational: sources pace themselves).
    pub fps: f64,
    /// Size streams fit in when the viewer asks for none (`stream_size`); snapshots stay at the
    /// full size. `None`: streams at the full size.
    pub stream_size: Option<(u32, u32)>,
    /// Do not publish a frame byte-identical to the previous one (`--drop-same-frames`).
    pub drop_same_frames: bool,
    /// Text painted into every frame (`[cameras.overlay]`); `None`: frames pass untouched.
    pub overlay: Option<Arc<Overlay>>,
    /// Control values from the config (`[cameras.controls]`), by control key or id; laid over
    /// the remembered ones at startup (`Server::with_state_dir`).
    pub controls: std::collections::BTreeMap<String, i64>,
}

impl std::fmt::Debug for CameraConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CameraConfig")
            .field("name", &self.name)
            .field("source", &self.opener.describe())
            .field("size", &(self.width, self.height))
            .field("fps", &self.fps)
            .field("transform", &self.transform)
            .finish_non_exhaustive()
    }
}

impl CameraConfig {
    /// A camera named `name` capturing from `opener` at `params`, every other setting at its
    /// default: no transform, no stream size, the default idle and source timeouts (the latter
    /// stretched for slow sources, see [`CameraConfig::with_source_timeout`]).
    pub fn new(name: impl Into<String>, opener: Arc<dyn Opener>, params: Params) -> CameraConfig {
        CameraConfig {
            name: name.into(),
            opener,
            width: params.width,
            height: params.height,
            quality: params.quality,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            source_timeout: DEFAULT_SOURCE_TIMEOUT,
            transform: Transform {
                quality: params.quality,
                ..Transform::default()
            },
            fps: params.fps,
            stream_size: None,
            drop_same_frames: false,
            overlay: None,
            controls: std::collections::BTreeMap::new(),
        }
        .with_source_timeout(DEFAULT_SOURCE_TIMEOUT)
    }

    /// Sets the source timeout, never below three frame intervals: a slow source (images at
    /// 0.1 fps) is not a stalled one.
    pub fn with_source_timeout(mut self, timeout: Duration) -> CameraConfig {
        self.source_timeout = timeout.max(Duration::from_secs_f64(3.0 / self.fps));
        self
    }
}

/// Capture parameters for a camera another node describes (a bus announcement): values out of
/// range are replaced by the defaults, so a peer cannot make this node render absurd frames.
pub fn peer_params(width: u32, height: u32, fps: f64, quality: u8) -> Params {
    let side = |v: u32, default: u32| {
        if (MIN_DIMENSION..=MAX_DIMENSION).contains(&v) {
            v
        } else {
            default
        }
    };
    let (lo, hi) = FPS_RANGE;
    Params {
        width: side(width, DEFAULT_SIZE.0),
        height: side(height, DEFAULT_SIZE.1),
        fps: if fps.is_finite() {
            fps.clamp(lo, hi)
        } else {
            DEFAULT_FPS
        },
        quality,
    }
}
