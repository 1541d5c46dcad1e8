//! The supervised capture task of a camera: `run` = stop-when-idle around `supervise`, which is
//! a loop of `run_once` attempts separated by backoff, publishing a "no signal" frame meanwhile.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use tokio::time::{Instant, sleep, sleep_until, timeout};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::config::CameraConfig;
use super::stats::{CameraStats, Demand};
use crate::frame::{Image, Stamp};
use crate::overlay::{Overlay, Painter};
use crate::pool::{JobError, Ordered, Pool};
use crate::render;
use crate::source::{Captured, ErrorKind, SourceError};
use crate::transform::Transform;

/// First retry delay after a source failure.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Longest retry delay: a replugged camera is picked up within this.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Backoff growth after a transient failure (connection dropped, timeout, process exited).
const BACKOFF_FACTOR_TRANSIENT: u32 = 2;
/// Backoff growth after a permanent failure (no such device, bad URL, command not found):
/// retrying quickly helps nobody, so it reaches [`BACKOFF_MAX`] after three failures, not five.
const BACKOFF_FACTOR_PERMANENT: u32 = 4;
/// A source that delivered this long before failing starts its backoff over.
const HEALTHY_RESET: Duration = Duration::from_secs(60);
/// Rate of the no-signal frame: enough to keep clients and proxies from timing out.
const NO_SIGNAL_INTERVAL: Duration = Duration::from_secs(1);

/// Where capture tasks and their encoding run, passed down from the server to every camera.
///
/// Capture tasks run on their own runtime thread, so that a server busy sending frames to
/// thousands of viewers cannot delay a camera's clock (a task woken by a timer on a worker with
/// a thousand ready tasks waits for all of them; a thread woken by the kernel does not). Frames
/// are encoded and transformed on the encoder pool. Without either (unit tests, an embedder
/// that wants everything on its own runtime) capture runs on the caller's runtime and encodes
/// inline.
#[derive(Default)]
pub struct Context {
    runtime: Option<CaptureRuntime>,
    pool: Option<Arc<Pool>>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("capture_thread", &self.runtime.is_some())
            .field("pool", &self.pool)
            .finish()
    }
}

/// A runtime that may be dropped anywhere, async code included (tokio refuses to drop a
/// runtime from within one): dropping it leaves its thread to finish in the background.
struct CaptureRuntime(Option<tokio::runtime::Runtime>);

impl Drop for CaptureRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

impl Context {
    /// Capture on a thread of its own and encoding on `pool` (either optional).
    pub fn new(capture_thread: bool, pool: Option<Arc<Pool>>) -> std::io::Result<Context> {
        let runtime = if capture_thread {
            Some(CaptureRuntime(Some(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .thread_name("mjpegd-capture")
                    .enable_all()
                    .build()?,
            )))
        } else {
            None
        };
        Ok(Context { runtime, pool })
    }

    /// The encoder pool, if any.
    pub fn pool(&self) -> Option<Arc<Pool>> {
        self.pool.clone()
    }
}

/// What the capture task needs of its camera: its settings, lifecycle and counters, and where to
/// publish. Implemented by `Camera`; capture sees nothing else of it.
pub(super) trait Target: Send + Sync + 'static {
    /// The camera's settings.
    fn config(&self) -> &CameraConfig;
    /// Cancelled when the server stops or the camera is removed.
    fn shutdown(&self) -> &CancellationToken;
    /// Counters.
    fn stats(&self) -> &CameraStats;
    /// Demand changes, to notice the last viewer leaving.
    fn watch_demand(&self) -> watch::Receiver<Demand>;
    /// Stops capture if nobody watches; true when the task must end.
    fn stop_if_idle(&self) -> bool;
    /// Marks capture stopped at shutdown.
    fn capture_ended(&self);
    /// Records a source failure.
    fn record_failure(&self, err: &SourceError);
    /// Clears the last failure: the source delivers again.
    fn clear_failure(&self);
    /// Publishes a frame.
    fn publish(&self, image: &Image, captured: SystemTime, online: bool);
}

/// Starts the capture task of `camera`.
pub(super) fn spawn<T: Target>(camera: Arc<T>, context: &Context) {
    let pool = context.pool.clone();
    match context.runtime.as_ref().and_then(|r| r.0.as_ref()) {
        Some(rt) => {
            rt.spawn(run(camera, pool));
        }
        None => {
            tokio::spawn(run(camera, pool));
        }
    }
}

/// Runs capture for `camera` until it has been idle for its idle timeout or the server stops.
pub(super) async fn run<T: Target>(camera: Arc<T>, pool: Option<Arc<Pool>>) {
    let name = camera.config().name.clone();
    tracing::info!(camera = %name, source = %camera.config().opener.describe(), "capture started");
    // One supervise future for the whole capture: a pass of the loop that does not stop
    // capture (a viewer arrived just as the idle timer fired) must not drop the open source.
    let supervise = supervise(&*camera, pool.as_ref());
    tokio::pin!(supervise);
    loop {
        tokio::select! {
            biased;
            () = camera.shutdown().cancelled() => break,
            () = idle_expired(&*camera) => {
                if camera.stop_if_idle() {
                    tracing::info!(camera = %name, idle = ?camera.config().idle_timeout, "capture stopped: no viewers");
                    return;
                }
                // A viewer arrived just as the idle timer fired: keep capturing.
            }
            never = &mut supervise => match never {},
        }
    }
    camera.capture_ended();
    tracing::debug!(camera = %name, "capture stopped: shutdown");
}

/// Completes once nobody has watched the camera for its idle timeout.
async fn idle_expired(camera: &impl Target) {
    let mut demand = camera.watch_demand();
    loop {
        if demand.borrow_and_update().watchers == 0 {
            tokio::select! {
                () = sleep(camera.config().idle_timeout) => return,
                r = demand.changed() => if r.is_err() { return },
            }
        } else if demand.changed().await.is_err() {
            return;
        }
    }
}

/// Opens the source, publishes its frames, and on failure shows no-signal and retries. Never returns.
async fn supervise(camera: &impl Target, pool: Option<&Arc<Pool>>) -> Infallible {
    let mut backoff = BACKOFF_MIN;
    loop {
        let started = Instant::now();
        let err = run_once(camera, pool).await;
        if started.elapsed() >= HEALTHY_RESET {
            backoff = BACKOFF_MIN;
        }
        let kind = err.kind();
        tracing::warn!(camera = %camera.config().name, error = %err, %kind, retry_in = ?backoff, "source failed");
        camera.record_failure(&err);
        let until = Instant::now() + backoff;
        loop {
            publish_no_signal(camera, err.message()).await;
            let next = (Instant::now() + NO_SIGNAL_INTERVAL).min(until);
            sleep_until(next).await;
            if next >= until {
                break;
            }
        }
        let factor = match kind {
            ErrorKind::Permanent => BACKOFF_FACTOR_PERMANENT,
            ErrorKind::Transient => BACKOFF_FACTOR_TRANSIENT,
        };
        backoff = (backoff * factor).min(BACKOFF_MAX);
    }
}

/// One opening of the source: returns why it ended.
async fn run_once(camera: &impl Target, pool: Option<&Arc<Pool>>) -> SourceError {
    let cfg = camera.config();
    camera.stats().source_opens.fetch_add(1, Ordering::Relaxed);
    let source = match timeout(cfg.source_timeout, cfg.opener.open()).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return e,
        Err(_) => {
            return SourceError::new(format!(
                "source did not open within {}s",
                cfg.source_timeout.as_secs_f64()
            ));
        }
    };
    let Some(pool) = pool else {
        return run_inline(camera, source).await;
    };
    // Frames being transformed, published in order; a few more than the pool's threads, so
    // that every thread has work while the oldest result waits for its turn.
    let mut pipeline = Ordered::new(Arc::clone(pool), pool.workers() + 1);
    let t = cfg.transform;
    let overlay = cfg.overlay.clone();
    // A stream owns the frame being read, so that publishing a result meanwhile (the other
    // branch of the select) never cancels a read half-way.
    let frames = futures_util::stream::unfold(source, |mut s| async move {
        let r = s.next_capture().await;
        // Read with the frame: a bus source's capture time and online flag belong to it.
        let stamp = s.stamp();
        Some(((r, stamp), s))
    });
    tokio::pin!(frames);
    loop {
        tokio::select! {
            biased;
            Some(done) = pipeline.next() => match done {
                Ok((Ok(image), delivered, stamp)) => published(camera, &image, delivered, stamp),
                Ok((Err(e), _, _)) => return e,
                Err(JobError::Panicked) => {
                    return SourceError::new(format!("encoding or transform ({t}) panicked (a bug)"));
                }
            },
            next = timeout(cfg.source_timeout, frames.next()) => match next {
                Ok(Some((Ok(captured), stamp))) => {
                    let delivered = Instant::now();
                    let painter = overlay.as_ref().map(|o| painter_for(camera, o, stamp));
                    let captured = match captured {
                        Captured::Jpeg(image)
                            if pipeline.is_empty()
                                && painter.is_none()
                                && t.is_identity_for(image.width, image.height) =>
                        {
                            // Nothing to encode and nothing ahead of it: no trip through the pool.
                            published(camera, &image, delivered, stamp);
                            continue;
                        }
                        c => c,
                    };
                    let dropped =
                        pipeline.submit(move || {
                            (encode_and_transform(captured, t, painter.as_ref()), delivered, stamp)
                        });
                    if dropped > 0 {
                        camera.stats().frames_dropped.fetch_add(dropped, Ordering::Relaxed);
                    }
                }
                Ok(Some((Err(e), _))) => return e,
                Ok(None) => return SourceError::new("source ended"),
                Err(_) => {
                    return SourceError::new(format!(
                        "no frame for {}s",
                        cfg.source_timeout.as_secs_f64()
                    ));
                }
            },
        }
    }
}

/// A captured frame as it is published: encoded if the source left that to us, transformed,
/// and its overlay painted.
fn encode_and_transform(
    captured: Captured,
    t: Transform,
    painter: Option<&Painter>,
) -> Result<Image, SourceError> {
    let image = match captured {
        // Nothing moves pixels after the encode the source needs anyway: the texts are painted
        // into its raw pixels, at no extra cost.
        Captured::Encode(job) if t.is_none() => return job(painter),
        c => c.into_image()?,
    };
    t.apply_painted(&image, painter)
        .map_err(|e| SourceError::new(format!("transform ({t}) or overlay: {e}")))
}

/// The overlay's texts for a frame, at the time its source gave it (a bus source's capture
/// time) or now.
fn painter_for(camera: &impl Target, overlay: &Overlay, stamp: Option<Stamp>) -> Painter {
    let cfg = camera.config();
    let at = stamp.map_or_else(SystemTime::now, |s| s.captured);
    overlay.painter(&cfg.name, camera.stats().capture_rate.rate(), at)
}

/// Counts a live frame and publishes it, with the capture time and online flag its source
/// gave it (a bus source), else now and online.
fn published(camera: &impl Target, image: &Image, delivered: Instant, stamp: Option<Stamp>) {
    // Counted (and the error cleared) first: a viewer may have the frame, and ask /metrics or
    // /api/state, before this thread runs again.
    let stats = camera.stats();
    stats.capture_latency.observe(delivered.elapsed());
    stats.capture_rate.tick();
    stats.frames_captured.fetch_add(1, Ordering::Relaxed);
    camera.clear_failure();
    match stamp {
        Some(s) => camera.publish(image, s.captured, s.online),
        None => camera.publish(image, SystemTime::now(), true),
    }
}

/// [`run_once`]'s loop without the encoder pool (no thread could be started for it): one frame
/// at a time.
async fn run_inline(
    camera: &impl Target,
    mut source: Box<dyn crate::source::Source>,
) -> SourceError {
    let cfg = camera.config();
    loop {
        match timeout(cfg.source_timeout, source.next_frame()).await {
            Ok(Ok(image)) => {
                let delivered = Instant::now();
                let stamp = source.stamp();
                let painter = cfg.overlay.as_ref().map(|o| painter_for(camera, o, stamp));
                let image = match transform(camera, image, painter).await {
                    Ok(i) => i,
                    Err(e) => return e,
                };
                published(camera, &image, delivered, stamp);
            }
            Ok(Err(e)) => return e,
            Err(_) => {
                return SourceError::new(format!(
                    "no frame for {}s",
                    cfg.source_timeout.as_secs_f64()
                ));
            }
        }
    }
}

/// Applies the camera's transform and overlay on a blocking thread; a no-op (no decoding) when
/// neither is configured.
async fn transform(
    camera: &impl Target,
    image: Image,
    painter: Option<Painter>,
) -> Result<Image, SourceError> {
    let t = camera.config().transform;
    if painter.is_none() && t.is_identity_for(image.width, image.height) {
        return Ok(image);
    }
    match tokio::task::spawn_blocking(move || t.apply_painted(&image, painter.as_ref())).await {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(e)) => Err(SourceError::new(format!("transform ({t}): {e}"))),
        Err(e) => Err(SourceError::new(format!("transform task failed: {e}"))),
    }
}

async fn publish_no_signal(camera: &impl Target, reason: &str) {
    let cfg = camera.config();
    let (w, h, q) = (cfg.width, cfg.height, cfg.quality);
    let (name, reason) = (cfg.name.clone(), reason.to_owned());
    let rendered = tokio::task::spawn_blocking(move || {
        render::no_signal(w, h, &name, &reason, SystemTime::now(), q)
    })
    .await;
    match rendered {
        Ok(Ok(jpeg)) => {
            let (width, height) = crate::jpeg::dimensions(&jpeg).unwrap_or((w, h));
            camera.publish(
                &Image {
                    jpeg,
                    width,
                    height,
                },
                SystemTime::now(),
                false,
            );
        }
        Ok(Err(e)) => {
            tracing::error!(camera = %cfg.name, error = %e, "cannot encode the no-signal frame")
        }
        Err(e) => {
            tracing::error!(camera = %cfg.name, error = %e, "no-signal render task failed")
        }
    }
}
