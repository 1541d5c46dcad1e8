//! Per-request sizes (`?width=`/`?height=` on a stream), computed once per frame per size.
//!
//! Every distinct size asked of a camera gets one derived latest-frame channel: a task that
//! holds one [`Subscription`] on the camera, downscales each new frame once (decode, area-average,
//! encode on a blocking thread) and publishes it with the original's sequence number and capture
//! time. All viewers asking for that size read the same frames, so the cost grows with the number
//! of sizes, never with viewers. The channel starts with its first viewer and stops with its last:
//! each viewer holds a [`SizedSubscription`], and dropping the last one cancels the task. A slow
//! downscale simply skips frames (latest-frame semantics, as for viewers).
//!
//! Sizes fit inside the asked bounds keeping the aspect ratio and never upscale: a frame that
//! already fits is passed through as it is (the same shared bytes, no re-encode).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::watch;
use tokio_util::sync::{CancellationToken, DropGuard};

use super::camera::{Camera, Subscription};
use crate::frame::{Frame, Image};
use crate::pool::{JobError, Ordered};
use crate::transform::Transform;

/// Most distinct sizes one camera computes at once: each costs a decode and an encode per
/// frame, so this bounds what viewers can make the capture side spend.
pub const MAX_SIZES_PER_CAMERA: usize = 4;

/// The `?width=` and `?height=` a viewer asked for (either may be absent).
pub type RequestedSize = (Option<u32>, Option<u32>);

/// Bounds a viewer asked for: fit inside `width` x `height` (`u32::MAX` when not given).
pub type Bounds = (u32, u32);

/// The derived channels of one camera, by bounds.
#[derive(Default)]
pub(super) struct Sizes {
    channels: Mutex<HashMap<Bounds, Weak<SizeChannel>>>,
}

/// One derived size: alive while some viewer holds it.
struct SizeChannel {
    bounds: Bounds,
    camera: Arc<Camera>,
    /// A receiver to clone for each new viewer.
    frames: watch::Receiver<Option<Frame>>,
    /// Frames this channel downscaled (a frame that fits is not counted).
    scaled: Arc<AtomicU64>,
    _stop: DropGuard,
}

impl Drop for SizeChannel {
    fn drop(&mut self) {
        // A viewer arriving just now may already have put a new channel under the same bounds:
        // remove the entry only if it is this (dead) one.
        // Poison recovered: a map of weak channels is consistent after any panic.
        let mut map = self
            .camera
            .sizes
            .channels
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if map.get(&self.bounds).is_some_and(|w| w.upgrade().is_none()) {
            map.remove(&self.bounds);
        }
    }
}

/// A viewer's hold on one size of a camera: frames at that size, and demand on the camera.
pub struct SizedSubscription {
    frames: watch::Receiver<Option<Frame>>,
    channel: Arc<SizeChannel>,
}

impl SizedSubscription {
    /// The latest-frame receiver of this size.
    pub fn frames(&mut self) -> &mut watch::Receiver<Option<Frame>> {
        &mut self.frames
    }

    /// The bounds this subscription's frames fit in.
    pub fn bounds(&self) -> Bounds {
        self.channel.bounds
    }
}

/// One active size of a camera, as shown on the state page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SizeInfo {
    /// The bounds viewers asked for (`u32::MAX` when a side was not given).
    pub bounds: Bounds,
    /// Viewers reading this size.
    pub viewers: usize,
    /// Frames downscaled for it so far.
    pub frames_scaled: u64,
}

/// Asking for one size more than [`MAX_SIZES_PER_CAMERA`].
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "camera {camera:?} already serves {limit} different sizes ({active}); ask for one of these, \
     or for the full size without ?width=/?height="
)]
pub struct TooManySizes {
    /// The camera.
    pub camera: String,
    /// The limit.
    pub limit: usize,
    /// The sizes in use, as `WxH` (`W` or `xH` when a side is free).
    pub active: String,
}

fn describe(b: Bounds) -> String {
    match b {
        (u32::MAX, h) => format!("x{h}"),
        (w, u32::MAX) => format!("{w}"),
        (w, h) => format!("{w}x{h}"),
    }
}

impl Camera {
    /// Starts watching this camera at a size that fits in `bounds`: shares the size's channel
    /// with every other viewer asking for the same bounds, starting it if this is the first.
    pub fn subscribe_sized(
        self: &Arc<Self>,
        bounds: Bounds,
    ) -> Result<SizedSubscription, TooManySizes> {
        let mut map = match self.sizes.channels.lock() {
            Ok(m) => m,
            Err(e) => e.into_inner(),
        };
        if let Some(channel) = map.get(&bounds).and_then(Weak::upgrade) {
            return Ok(SizedSubscription {
                frames: channel.frames.clone(),
                channel,
            });
        }
        map.retain(|_, w| w.strong_count() > 0);
        // The configured stream_size is what plain viewers get: asked-for sizes must never
        // take its slot, or `?width=` viewers lock everyone else out.
        let reserved = self.config().stream_size;
        let others = map.keys().filter(|b| Some(**b) != reserved).count();
        let room = MAX_SIZES_PER_CAMERA - usize::from(reserved.is_some());
        if Some(bounds) != reserved && others >= room {
            let mut active: Vec<String> = map.keys().map(|b| describe(*b)).collect();
            active.sort();
            return Err(TooManySizes {
                camera: self.name().to_owned(),
                limit: MAX_SIZES_PER_CAMERA,
                active: active.join(", "),
            });
        }
        let (tx, rx) = watch::channel(None);
        let stop = CancellationToken::new();
        let scaled = Arc::new(AtomicU64::new(0));
        tokio::spawn(run(
            self.subscribe(),
            bounds,
            tx,
            stop.clone(),
            Arc::clone(&scaled),
        ));
        let channel = Arc::new(SizeChannel {
            bounds,
            camera: Arc::clone(self),
            frames: rx.clone(),
            scaled,
            _stop: stop.drop_guard(),
        });
        map.insert(bounds, Arc::downgrade(&channel));
        tracing::debug!(camera = %self.name(), size = %describe(bounds), "size channel started");
        Ok(SizedSubscription {
            frames: rx,
            channel,
        })
    }

    /// The sizes computed for viewers now.
    pub fn sizes(&self) -> Vec<SizeInfo> {
        let map = match self.sizes.channels.lock() {
            Ok(m) => m,
            Err(e) => e.into_inner(),
        };
        let mut out: Vec<SizeInfo> = map
            .values()
            .filter_map(Weak::upgrade)
            .map(|c| SizeInfo {
                bounds: c.bounds,
                // One strong count per viewer, plus the one just upgraded here.
                viewers: Arc::strong_count(&c) - 1,
                frames_scaled: c.scaled.load(Ordering::Relaxed),
            })
            .collect();
        out.sort_by_key(|s| s.bounds);
        out
    }
}

/// The size channel's task: each new camera frame, once, at `bounds`.
///
/// Downscales run on the encoder pool, several frames at once and published in order, so that
/// a size a single core cannot keep up with (1080p to 640 on a Raspberry Pi) uses every core;
/// when the pool is behind, the oldest frame waiting is dropped, as at full size.
async fn run(
    mut sub: Subscription,
    bounds: Bounds,
    tx: watch::Sender<Option<Frame>>,
    stop: CancellationToken,
    scaled: Arc<AtomicU64>,
) {
    let quality = sub.camera().config().quality;
    let name: Arc<str> = sub.camera().name().into();
    let new_pipeline =
        || crate::pool::Pool::global().map(|p| Ordered::new(Arc::clone(&p), p.workers() + 1));
    let mut pipeline = new_pipeline();
    let mut last_seq = None;
    // Look at the channel at once: a frame may be there already.
    let mut woken = true;
    loop {
        if woken {
            woken = false;
            let newest = sub.frames().borrow_and_update().clone();
            match newest {
                // Capture stopped: viewers of this size wait for a fresh frame too, and
                // frames of the stopped capture still being scaled are forgotten.
                None => {
                    pipeline = new_pipeline();
                    tx.send_replace(None);
                }
                Some(frame) if last_seq.is_none_or(|s| frame.seq() > s) => {
                    last_seq = Some(frame.seq());
                    let fits = frame.width() <= bounds.0 && frame.height() <= bounds.1;
                    let (scaled, camera) = (Arc::clone(&scaled), Arc::clone(&name));
                    let job = move || scale(&frame, bounds, quality, &scaled, &camera);
                    match &mut pipeline {
                        // Nothing to scale and nothing ahead of it: no trip through the pool.
                        Some(p) if !(fits && p.is_empty()) => {
                            p.submit(job);
                        }
                        Some(_) => {
                            tx.send_replace(job());
                        }
                        None => match tokio::task::spawn_blocking(job).await {
                            Ok(Some(out)) => {
                                tx.send_replace(Some(out));
                            }
                            Ok(None) => {}
                            Err(e) => {
                                tracing::warn!(camera = %name, error = %e, "downscale task failed")
                            }
                        },
                    }
                }
                // Woken without a new frame (`Camera::wake_viewers`): pass it on.
                Some(_) => tx.send_modify(|_| {}),
            }
        }
        let done = async {
            match pipeline.as_mut() {
                Some(p) => p.next().await,
                None => None,
            }
        };
        tokio::select! {
            biased;
            () = stop.cancelled() => break,
            Some(done) = done => match done {
                Ok(Some(out)) => {
                    tx.send_replace(Some(out));
                }
                Ok(None) => {}
                Err(JobError::Panicked) => {
                    tracing::warn!(camera = %name, size = %describe(bounds), "downscale panicked (a bug)");
                }
            },
            changed = sub.frames().changed() => {
                if changed.is_err() {
                    break;
                }
                woken = true;
            }
        }
    }
    tracing::debug!(camera = %name, size = %describe(bounds), "size channel stopped");
}

/// `frame` fitted inside `bounds`; the frame itself when it already fits (never upscaled).
/// Runs on an encoder thread.
fn scale(
    frame: &Frame,
    bounds: Bounds,
    quality: u8,
    scaled: &AtomicU64,
    camera: &str,
) -> Option<Frame> {
    let (w, h) = bounds;
    if frame.width() <= w && frame.height() <= h {
        return Some(frame.clone());
    }
    let image = Image {
        jpeg: frame.jpeg(),
        width: frame.width(),
        height: frame.height(),
    };
    let t = Transform {
        fit: Some(bounds),
        quality,
        ..Transform::default()
    };
    match t.apply(&image) {
        Ok(small) => {
            scaled.fetch_add(1, Ordering::Relaxed);
            Some(Frame::new(
                frame.seq(),
                &small,
                frame.captured(),
                frame.online(),
            ))
        }
        Err(e) => {
            // A frame the decoder refuses is skipped at this size, as at full size a viewer
            // would show it broken; the next frame is tried afresh.
            tracing::debug!(camera = %camera, size = %describe(bounds), error = %e, "cannot downscale a frame");
            None
        }
    }
}
