//! One camera: its latest frame, who is watching, and whether its capture task runs.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::meter::{Histogram, RateMeter};
use crate::frame::{Frame, Image};
use crate::source::{ErrorKind, Opener, SourceError};
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
    /// Size streams fit in when the viewer asks for none (`stream_size`); snapshots stay at the
    /// full size. `None`: streams at the full size.
    pub stream_size: Option<(u32, u32)>,
    /// Do not publish a frame byte-identical to the previous one (`--drop-same-frames`).
    pub drop_same_frames: bool,
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
/// watch channel's), so a viewer arriving just as capture stops always restarts it. Only
/// [`Camera`]'s own methods change them.
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
    /// Of `source_errors`, those that need someone to act ([`ErrorKind::Permanent`]).
    pub source_errors_permanent: AtomicU64,
    /// Of `source_errors`, those that can pass by themselves ([`ErrorKind::Transient`]).
    pub source_errors_transient: AtomicU64,
    /// Times the capture task opened the source.
    pub source_opens: AtomicU64,
    /// Recent capture rate of live frames.
    pub capture_rate: RateMeter,
    /// Time from a source delivering a frame to its publication (transform included).
    pub capture_latency: Histogram,
    /// Frames not published for being byte-identical to the previous one (`drop_same_frames`).
    pub frames_same: AtomicU64,
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
    /// How this viewer's stream is framed and sized.
    pub wire: ViewerWire,
}

/// The per-viewer choices of a stream, as shown on the state page.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ViewerWire {
    /// The browser wire: each part's headers sent ahead of its frame, no `Content-Length`.
    pub advance_headers: bool,
    /// The size limit the viewer asked for (`?width=`/`?height=`), if any.
    pub size: Option<super::sizes::RequestedSize>,
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
        // Poison recovered: a map insert or remove cannot be left half done by a panic, and
        // refusing the lock would leave this viewer listed forever.
        self.camera
            .viewers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&self.id);
    }
}

/// A camera shared by every viewer.
pub struct Camera {
    pub(super) config: CameraConfig,
    pub(super) latest: watch::Sender<Option<Frame>>,
    demand: watch::Sender<Demand>,
    last_error: std::sync::Mutex<Option<SourceError>>,
    pub(super) seq: AtomicU64,
    pub(super) shutdown: CancellationToken,
    stats: CameraStats,
    viewers: std::sync::Mutex<BTreeMap<u64, Arc<ViewerInfo>>>,
    next_viewer: AtomicU64,
    /// Per-request sizes derived from this camera's frames (see `sizes.rs`).
    pub(super) sizes: super::sizes::Sizes,
    same: std::sync::Mutex<super::same::SameFrames>,
    /// The runtime the viewers run on (the one the camera was made on), where publishing
    /// happens; see [`Camera::deliver`].
    viewers_runtime: Option<tokio::runtime::Handle>,
    /// The newest sequence number when capture last stopped: frames up to it are stale.
    stale_up_to: Arc<AtomicU64>,
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
            sizes: super::sizes::Sizes::default(),
            same: std::sync::Mutex::default(),
            viewers_runtime: tokio::runtime::Handle::try_current().ok(),
            stale_up_to: Arc::default(),
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
        self.last_failure().map(|e| e.message().to_owned())
    }

    /// The last source error with its kind, cleared when the source delivers again.
    pub fn last_failure(&self) -> Option<SourceError> {
        // Poison recovered: the slot is replaced whole, never left half written.
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Records a source failure: the state page shows it, the counters count it by kind.
    pub(super) fn record_failure(&self, err: &SourceError) {
        self.stats.source_errors.fetch_add(1, Ordering::Relaxed);
        match err.kind() {
            ErrorKind::Permanent => &self.stats.source_errors_permanent,
            ErrorKind::Transient => &self.stats.source_errors_transient,
        }
        .fetch_add(1, Ordering::Relaxed);
        // Poison recovered: the slot is replaced whole, never left half written.
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(err.clone());
    }

    /// Clears the last error: the source delivers again.
    pub(super) fn clear_failure(&self) {
        // Poison recovered: the slot is replaced whole, never left half written.
        self.last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
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
        if self.add_watcher() {
            super::capture::spawn(Arc::clone(self));
        }
        Subscription {
            frames,
            camera: Arc::clone(self),
        }
    }

    /// Lists a stream viewer on this camera until the handle is dropped.
    pub fn register_viewer(self: &Arc<Self>, addr: Option<SocketAddr>) -> ViewerHandle {
        self.register_viewer_as(addr, ViewerWire::default())
    }

    /// As [`Camera::register_viewer`], recording how the viewer's stream is framed and sized.
    pub fn register_viewer_as(
        self: &Arc<Self>,
        addr: Option<SocketAddr>,
        wire: ViewerWire,
    ) -> ViewerHandle {
        let id = self.next_viewer.fetch_add(1, Ordering::Relaxed);
        let info = Arc::new(ViewerInfo {
            addr,
            since: SystemTime::now(),
            frames: AtomicU64::new(0),
            skipped: AtomicU64::new(0),
            rate: RateMeter::default(),
            wire,
        });
        // Poison recovered: a map insert or remove cannot be left half done by a panic, and
        // refusing the lock would hide this viewer from the state page.
        self.viewers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(id, Arc::clone(&info));
        ViewerHandle {
            id,
            info,
            camera: Arc::clone(self),
        }
    }

    /// The stream viewers connected now, oldest first.
    pub fn viewer_list(&self) -> Vec<Arc<ViewerInfo>> {
        // Poison recovered: a map insert or remove cannot be left half done by a panic.
        self.viewers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values()
            .cloned()
            .collect()
    }

    /// Counts one more watcher. True when capture was idle: the caller must start it.
    pub(super) fn add_watcher(&self) -> bool {
        let mut start = false;
        self.demand.send_modify(|d| {
            d.watchers += 1;
            if !d.running && !self.shutdown.is_cancelled() {
                d.running = true;
                start = true;
            }
        });
        start
    }

    /// One watcher fewer; at zero the capture task's idle timer starts.
    pub(super) fn remove_watcher(&self) {
        self.demand
            .send_modify(|d| d.watchers = d.watchers.saturating_sub(1));
    }

    /// Stops capture if nobody watches (its idle timer fired). True when it stopped: the
    /// capture task must then end. False when a viewer arrived meanwhile: capture goes on.
    pub(super) fn stop_if_idle(&self) -> bool {
        self.demand.send_if_modified(|d| {
            if d.watchers == 0 {
                d.running = false;
                // A frame from a stopped capture is stale: the next viewer waits for a fresh
                // one. Cleared under the demand lock, so it cannot erase a frame of the next
                // capture (which that viewer starts only once this returns); a publish of the
                // old capture still on its way is refused by its sequence number.
                self.stale_up_to
                    .store(self.seq.load(Ordering::Relaxed), Ordering::Relaxed);
                self.latest.send_replace(None);
                true
            } else {
                false
            }
        })
    }

    /// Marks capture stopped because the server is shutting down.
    pub(super) fn capture_ended(&self) {
        self.demand.send_modify(|d| d.running = false);
    }

    /// Publishes an image as the newest frame and returns it.
    pub(super) fn publish(&self, image: &Image, online: bool) -> Frame {
        self.publish_stamped(image, SystemTime::now(), online)
    }

    /// Publishes an image with the capture time and online flag its source gave it.
    pub(super) fn publish_stamped(
        &self,
        image: &Image,
        captured: SystemTime,
        online: bool,
    ) -> Frame {
        if self.config.drop_same_frames {
            // Poison recovered: the last frame seen is consistent after any panic.
            {
                let mut same = self
                    .same
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if !online {
                    same.reset();
                } else if !same.publish(&image.jpeg) {
                    self.stats.frames_same.fetch_add(1, Ordering::Relaxed);
                    if let Some(latest) = self.latest() {
                        return latest;
                    }
                }
            }
        }
        let seq = self.seq.fetch_add(1, Ordering::Relaxed) + 1;
        let frame = Frame::new(seq, image, captured, online);
        self.deliver(frame.clone());
        frame
    }

    /// Wakes everyone waiting for this camera's frames (its sizes' viewers too) without a new
    /// frame; subscribers tell by the unchanged sequence number.
    pub(super) fn wake_viewers(&self) {
        self.latest.send_modify(|_| {});
    }

    /// Makes `frame` the newest, waking every viewer, on the viewers' own runtime.
    ///
    /// Capture runs on its own thread. A publish there woke each of a thousand viewer tasks
    /// from outside their runtime: a lock on the runtime's shared queue per viewer, a quarter
    /// of the server's user time at 1000 viewers. Sent from a task on their runtime, the wakes
    /// go to the worker's own queue, and the capture thread pays for one task.
    fn deliver(&self, frame: Frame) {
        let here = tokio::runtime::Handle::try_current().ok().map(|h| h.id());
        match &self.viewers_runtime {
            Some(rt) if here != Some(rt.id()) => {
                let latest = self.latest.clone();
                let stale = Arc::clone(&self.stale_up_to);
                rt.spawn(async move {
                    // Two such tasks may run at once on two workers: never go back to an
                    // older frame, nor revive one from a capture that has stopped (read
                    // under the channel's lock, which the stop takes after storing it).
                    latest.send_if_modified(|current| {
                        let newer = current.as_ref().is_none_or(|c| c.seq() < frame.seq());
                        if newer && frame.seq() > stale.load(Ordering::Relaxed) {
                            *current = Some(frame);
                            true
                        } else {
                            false
                        }
                    });
                });
            }
            _ => {
                self.latest.send_replace(Some(frame));
            }
        }
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
        self.camera.remove_watcher();
    }
}
