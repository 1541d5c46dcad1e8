//! One camera: its latest frame, who is watching, and whether its capture task runs.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::SystemTime;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::capture::{self, Context, Target};
use super::config::CameraConfig;
use super::meter::RateMeter;
use super::sizes::{Bounds, SizeInfo, SizedSubscription, Sizes, TooManySizes};
use super::stats::{CameraStats, Demand};
use crate::frame::{Frame, Image};
use crate::source::{ErrorKind, SourceError};

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
    config: CameraConfig,
    latest: watch::Sender<Option<Frame>>,
    demand: watch::Sender<Demand>,
    last_error: std::sync::Mutex<Option<SourceError>>,
    seq: AtomicU64,
    shutdown: CancellationToken,
    /// Where capture and encoding run (passed down from the server).
    context: Arc<Context>,
    stats: CameraStats,
    viewers: std::sync::Mutex<BTreeMap<u64, Arc<ViewerInfo>>>,
    next_viewer: AtomicU64,
    /// Per-request sizes derived from this camera's frames (see `sizes.rs`).
    sizes: Sizes,
    same: std::sync::Mutex<super::same::SameFrames>,
    /// The runtime the viewers run on (the one the camera was made on), where publishing
    /// happens; see [`Camera::deliver`].
    viewers_runtime: Option<tokio::runtime::Handle>,
    /// The newest sequence number when capture last stopped: frames up to it are stale.
    stale_up_to: Arc<AtomicU64>,
}

impl Camera {
    pub(super) fn new(
        config: CameraConfig,
        context: Arc<Context>,
        shutdown: CancellationToken,
    ) -> Camera {
        Camera {
            config,
            context,
            latest: watch::channel(None).0,
            demand: watch::channel(Demand::default()).0,
            last_error: std::sync::Mutex::new(None),
            seq: AtomicU64::new(0),
            shutdown,
            stats: CameraStats::default(),
            viewers: std::sync::Mutex::new(BTreeMap::new()),
            next_viewer: AtomicU64::new(0),
            sizes: Sizes::default(),
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
            capture::spawn(Arc::clone(self), &self.context);
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

    /// A receiver of published frames that counts as no demand (tests watch publishing).
    #[cfg(test)]
    pub(super) fn frames_unwatched(&self) -> watch::Receiver<Option<Frame>> {
        self.latest.subscribe()
    }

    /// Publishes an image as the newest frame and returns it.
    #[cfg(test)]
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

impl Camera {
    /// Starts watching this camera at a size that fits in `bounds`: shares the size's channel
    /// with every other viewer asking for the same bounds, starting it if this is the first.
    pub fn subscribe_sized(
        self: &Arc<Self>,
        bounds: Bounds,
    ) -> Result<SizedSubscription, TooManySizes> {
        self.sizes.subscribe(
            bounds,
            self.name(),
            self.config.quality,
            self.config.stream_size,
            self.context.pool(),
            || self.subscribe(),
        )
    }

    /// The sizes computed for viewers now.
    pub fn sizes(&self) -> Vec<SizeInfo> {
        self.sizes.list()
    }

    /// Stops this camera for good: its capture ends and no viewer restarts it (a camera removed
    /// from the hub).
    pub(super) fn retire(&self) {
        self.shutdown.cancel();
    }
}

/// What the capture task uses of its camera; nothing else of the camera is visible to it.
impl Target for Camera {
    fn config(&self) -> &CameraConfig {
        &self.config
    }
    fn shutdown(&self) -> &CancellationToken {
        &self.shutdown
    }
    fn stats(&self) -> &CameraStats {
        &self.stats
    }
    fn watch_demand(&self) -> watch::Receiver<Demand> {
        Camera::watch_demand(self)
    }
    fn stop_if_idle(&self) -> bool {
        Camera::stop_if_idle(self)
    }
    fn capture_ended(&self) {
        Camera::capture_ended(self);
    }
    fn record_failure(&self, err: &SourceError) {
        Camera::record_failure(self, err);
    }
    fn clear_failure(&self) {
        Camera::clear_failure(self);
    }
    fn publish(&self, image: &Image, captured: SystemTime, online: bool) {
        self.publish_stamped(image, captured, online);
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

impl super::sizes::Feed for Subscription {
    fn frames(&mut self) -> &mut watch::Receiver<Option<Frame>> {
        &mut self.frames
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        // At zero watchers the capture task's idle timer starts; it stops capture later.
        self.camera.remove_watcher();
    }
}
