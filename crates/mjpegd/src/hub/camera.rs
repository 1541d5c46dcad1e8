//! One camera: its latest frame, who is watching, and whether its capture task runs.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::meter::{Histogram, RateMeter};
use crate::frame::{Frame, Image};
use crate::source::Opener;
use crate::transform::Transform;

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

/// Demand on a camera and whether its capture task runs; both change under one lock (the
/// watch channel's), so a viewer arriving just as capture stops always restarts it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Demand {
    /// Viewers and snapshot requests currently holding a [`Subscription`].
    pub watchers: usize,
    /// Whether a capture task is running.
    pub running: bool,
}

/// Counters of a camera, for the state page and metrics.
#[derive(Debug, Default)]
pub struct CameraStats {
    /// Frames published from the source (not counting no-signal frames).
    pub frames_captured: AtomicU64,
    /// Frame parts sent to viewers, keep-alive re-sends included.
    pub frames_sent: AtomicU64,
    /// Bytes of parts sent to viewers.
    pub bytes_sent: AtomicU64,
    /// Frames viewers skipped because they were slower than the camera (or rate-capped).
    pub frames_skipped: AtomicU64,
    /// Source frames dropped unencoded because the encoder pool was behind (latest-frame rule).
    pub frames_dropped: AtomicU64,
    /// Times the source failed (open error, read error, stall).
    pub source_errors: AtomicU64,
    /// Times the capture task opened the source.
    pub source_opens: AtomicU64,
    /// Recent capture rate of live frames.
    pub capture_rate: RateMeter,
    /// Time from a source delivering a frame to its publication (transform included).
    pub capture_latency: Histogram,
}

/// One connected stream viewer, as shown on the state page.
#[derive(Debug)]
pub struct ViewerInfo {
    /// Peer address, when known.
    pub addr: Option<SocketAddr>,
    /// When the viewer connected.
    pub since: SystemTime,
    /// Parts sent to this viewer.
    pub frames: AtomicU64,
    /// Frames this viewer skipped (it was slower than the camera, or rate-capped).
    pub skipped: AtomicU64,
    /// Recent delivery rate.
    pub rate: RateMeter,
}

/// Keeps a viewer listed on its camera until dropped.
pub struct ViewerHandle {
    id: u64,
    info: Arc<ViewerInfo>,
    camera: Arc<Camera>,
}

impl ViewerHandle {
    /// The viewer's counters.
    pub fn info(&self) -> &ViewerInfo {
        &self.info
    }
}

impl Drop for ViewerHandle {
    fn drop(&mut self) {
        if let Ok(mut v) = self.camera.viewers.lock() {
            v.remove(&self.id);
        }
    }
}

/// A camera shared by every viewer.
pub struct Camera {
    pub(super) config: CameraConfig,
    pub(super) latest: watch::Sender<Option<Frame>>,
    pub(super) demand: watch::Sender<Demand>,
    pub(super) last_error: std::sync::Mutex<Option<String>>,
    pub(super) seq: AtomicU64,
    pub(super) shutdown: CancellationToken,
    stats: CameraStats,
    viewers: std::sync::Mutex<BTreeMap<u64, Arc<ViewerInfo>>>,
    next_viewer: AtomicU64,
}

impl Camera {
    pub(super) fn new(config: CameraConfig, shutdown: CancellationToken) -> Camera {
        Camera {
            config,
            latest: watch::channel(None).0,
            demand: watch::channel(Demand::default()).0,
            last_error: std::sync::Mutex::new(None),
            seq: AtomicU64::new(0),
            shutdown,
            stats: CameraStats::default(),
            viewers: std::sync::Mutex::new(BTreeMap::new()),
            next_viewer: AtomicU64::new(0),
        }
    }

    /// The camera's name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The camera's configuration.
    pub fn config(&self) -> &CameraConfig {
        &self.config
    }

    /// Counters.
    pub fn stats(&self) -> &CameraStats {
        &self.stats
    }

    /// The newest published frame, if capture is running and has produced one.
    pub fn latest(&self) -> Option<Frame> {
        self.latest.borrow().clone()
    }

    /// The last source error, cleared when the source delivers again.
    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }

    /// Current demand and capture state.
    pub fn demand(&self) -> Demand {
        *self.demand.borrow()
    }

    /// A receiver of demand changes, to await capture starting or stopping.
    pub fn watch_demand(&self) -> watch::Receiver<Demand> {
        self.demand.subscribe()
    }

    /// Starts watching: counts as demand (starting capture if it is idle) until the returned
    /// subscription is dropped.
    pub fn subscribe(self: &Arc<Self>) -> Subscription {
        // Subscribe before registering demand so a first frame published right after the
        // capture task starts is not missed.
        let frames = self.latest.subscribe();
        let mut start = false;
        self.demand.send_modify(|d| {
            d.watchers += 1;
            if !d.running && !self.shutdown.is_cancelled() {
                d.running = true;
                start = true;
            }
        });
        if start {
            super::capture::spawn(Arc::clone(self));
        }
        Subscription {
            frames,
            camera: Arc::clone(self),
        }
    }

    /// Lists a stream viewer on this camera until the handle is dropped.
    pub fn register_viewer(self: &Arc<Self>, addr: Option<SocketAddr>) -> ViewerHandle {
        let id = self.next_viewer.fetch_add(1, Ordering::Relaxed);
        let info = Arc::new(ViewerInfo {
            addr,
            since: SystemTime::now(),
            frames: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            rate: RateMeter::default(),
        });
        if let Ok(mut v) = self.viewers.lock() {
            v.insert(id, Arc::clone(&info));
        }
        ViewerHandle {
            id,
            info,
            camera: Arc::clone(self),
        }
    }

    /// The stream viewers connected now, oldest first.
    pub fn viewer_list(&self) -> Vec<Arc<ViewerInfo>> {
        self.viewers
            .lock()
            .map(|v| v.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Publishes an image as the newest frame and returns it.
    pub(super) fn publish(&self, image: &Image, online: bool) -> Frame {
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let frame = Frame::new(seq, image, SystemTime::now(), online);
        self.latest.send_replace(Some(frame.clone()));
        frame
    }
}

/// A viewer's (or snapshot's) hold on a camera: receives frames and keeps capture running.
pub struct Subscription {
    frames: watch::Receiver<Option<Frame>>,
    camera: Arc<Camera>,
}

impl Subscription {
    /// The camera watched.
    pub fn camera(&self) -> &Arc<Camera> {
        &self.camera
    }

    /// The latest-frame receiver; `changed()` wakes on every publish.
    pub fn frames(&mut self) -> &mut watch::Receiver<Option<Frame>> {
        &mut self.frames
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // At zero watchers the capture task's idle timer starts; it stops capture later.
        self.camera
            .demand
            .send_modify(|d| d.watchers = d.watchers.saturating_sub(1));
    }
}
