//! The supervised capture task of a camera: `run` = stop-when-idle around `supervise`, which is
//! a loop of `run_once` attempts separated by backoff, publishing a "no signal" frame meanwhile.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use futures_util::StreamExt;
use tokio::time::{Instant, sleep, sleep_until, timeout};

use super::camera::Camera;
use crate::frame::Image;
use crate::pool::{JobError, Ordered};
use crate::render;
use crate::source::SourceError;

/// First retry delay after a source failure.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Longest retry delay: a replugged camera is picked up within this.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A source that delivered this long before failing starts its backoff over.
const HEALTHY_RESET: Duration = Duration::from_secs(60);
/// Rate of the no-signal frame: enough to keep clients and proxies from timing out.
const NO_SIGNAL_INTERVAL: Duration = Duration::from_secs(1);

/// The runtime capture tasks run on: its own thread, so that a server busy sending frames to
/// thousands of viewers cannot delay a camera's clock (a task woken by a timer on a worker with
/// a thousand ready tasks waits for all of them; a thread woken by the kernel does not).
fn capture_runtime() -> Option<&'static tokio::runtime::Runtime> {
    static RUNTIME: std::sync::OnceLock<Option<tokio::runtime::Runtime>> =
        std::sync::OnceLock::new();
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("mjpegd-capture")
                .enable_all()
                .build()
                .map_err(|e| tracing::error!(error = %e, "cannot start the capture thread; capturing on the server's threads"))
                .ok()
        })
        .as_ref()
}

/// Starts the capture task of `camera`.
pub(super) fn spawn(camera: Arc<Camera>) {
    match capture_runtime() {
        Some(rt) => {
            rt.spawn(run(camera));
        }
        None => {
            tokio::spawn(run(camera));
        }
    }
}

/// Runs capture for `camera` until it has been idle for its idle timeout or the server stops.
pub(super) async fn run(camera: Arc<Camera>) {
    let name = camera.name().to_owned();
    tracing::info!(camera = %name, source = %camera.config.opener.describe(), "capture started");
    loop {
        tokio::select! {
            biased;
            () = camera.shutdown.cancelled() => break,
            () = idle_expired(&camera) => {
                let stopped = camera.demand.send_if_modified(|d| {
                    if d.watchers == 0 {
                        d.running = false;
                        true
                    } else {
                        false
                    }
                });
                if stopped {
                    // A frame from a stopped capture is stale: the next viewer waits for a fresh one.
                    camera.latest.send_replace(None);
                    tracing::info!(camera = %name, idle = ?camera.config.idle_timeout, "capture stopped: no viewers");
                    return;
                }
                // A viewer arrived just as the idle timer fired: keep capturing.
            }
            () = supervise(&camera) => {}
        }
    }
    camera.demand.send_modify(|d| d.running = false);
    tracing::debug!(camera = %name, "capture stopped: shutdown");
}

/// Completes once nobody has watched the camera for its idle timeout.
async fn idle_expired(camera: &Camera) {
    let mut demand = camera.demand.subscribe();
    loop {
        if demand.borrow_and_update().watchers == 0 {
            tokio::select! {
                () = sleep(camera.config.idle_timeout) => return,
                r = demand.changed() => if r.is_err() { return },
            }
        } else if demand.changed().await.is_err() {
            return;
        }
    }
}

/// Opens the source, publishes its frames, and on failure shows no-signal and retries. Never returns.
async fn supervise(camera: &Camera) {
    let mut backoff = BACKOFF_MIN;
    loop {
        let started = Instant::now();
        let err = run_once(camera).await;
        if started.elapsed() >= HEALTHY_RESET {
            backoff = BACKOFF_MIN;
        }
        camera.stats().source_errors.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(camera = %camera.name(), error = %err, retry_in = ?backoff, "source failed");
        if let Ok(mut last) = camera.last_error.lock() {
            *last = Some(err.0.clone());
        }
        let until = Instant::now() + backoff;
        loop {
            publish_no_signal(camera, &err.0).await;
            let next = (Instant::now() + NO_SIGNAL_INTERVAL).min(until);
            sleep_until(next).await;
            if next >= until {
                break;
            }
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// One opening of the source: returns why it ended.
async fn run_once(camera: &Camera) -> SourceError {
    let cfg = &camera.config;
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
    let Some(pool) = crate::pool::Pool::global() else {
        return run_inline(camera, source).await;
    };
    // Frames being transformed, published in order; a few more than the pool's threads, so
    // that every thread has work while the oldest result waits for its turn.
    let mut pipeline = Ordered::new(Arc::clone(&pool), pool.workers() + 1);
    let t = cfg.transform;
    // A stream owns the frame being read, so that publishing a result meanwhile (the other
    // branch of the select) never cancels a read half-way.
    let frames = futures_util::stream::unfold(source, |mut s| async move {
        let r = s.next_frame().await;
        Some((r, s))
    });
    tokio::pin!(frames);
    loop {
        tokio::select! {
            biased;
            Some(done) = pipeline.next() => match done {
                Ok((Ok(image), delivered)) => published(camera, &image, delivered),
                Ok((Err(e), _)) => return SourceError::new(format!("transform ({t}): {e}")),
                Err(JobError::Panicked) => {
                    return SourceError::new(format!("transform ({t}) panicked (a bug)"));
                }
            },
            next = timeout(cfg.source_timeout, frames.next()) => match next {
                Ok(Some(Ok(image))) => {
                    let delivered = Instant::now();
                    if pipeline.is_empty() && t.is_identity_for(image.width, image.height) {
                        // Nothing to encode and nothing ahead of it: no trip through the pool.
                        published(camera, &image, delivered);
                        continue;
                    }
                    let dropped = pipeline.submit(move || (t.apply(&image), delivered));
                    if dropped > 0 {
                        camera.stats().frames_dropped.fetch_add(dropped, Ordering::Relaxed);
                    }
                }
                Ok(Some(Err(e))) => return e,
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

/// Counts a live frame and publishes it.
fn published(camera: &Camera, image: &Image, delivered: Instant) {
    // Counted (and the error cleared) first: a viewer may have the frame, and ask /metrics or
    // /api/state, before this thread runs again.
    let stats = camera.stats();
    stats.capture_latency.observe(delivered.elapsed());
    stats.capture_rate.tick();
    stats.frames_captured.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut last) = camera.last_error.lock() {
        last.take();
    }
    camera.publish(image, true);
}

/// [`run_once`]'s loop without the encoder pool (no thread could be started for it): one frame
/// at a time.
async fn run_inline(camera: &Camera, mut source: Box<dyn crate::source::Source>) -> SourceError {
    let cfg = &camera.config;
    loop {
        match timeout(cfg.source_timeout, source.next_frame()).await {
            Ok(Ok(image)) => {
                let delivered = Instant::now();
                let image = match transform(camera, image).await {
                    Ok(i) => i,
                    Err(e) => return e,
                };
                published(camera, &image, delivered);
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

/// Applies the camera's transform on a blocking thread; a no-op (no decoding) when not configured.
async fn transform(camera: &Camera, image: Image) -> Result<Image, SourceError> {
    let t = camera.config.transform;
    if t.is_identity_for(image.width, image.height) {
        return Ok(image);
    }
    match tokio::task::spawn_blocking(move || t.apply(&image)).await {
        Ok(Ok(out)) => Ok(out),
        Ok(Err(e)) => Err(SourceError::new(format!("transform ({t}): {e}"))),
        Err(e) => Err(SourceError::new(format!("transform task failed: {e}"))),
    }
}

async fn publish_no_signal(camera: &Camera, reason: &str) {
    let cfg = &camera.config;
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
                false,
            );
        }
        Ok(Err(e)) => {
            tracing::error!(camera = %camera.name(), error = %e, "cannot encode the no-signal frame")
        }
        Err(e) => {
            tracing::error!(camera = %camera.name(), error = %e, "no-signal render task failed")
        }
    }
}
