//! `nats://HOST:PORT/CAMERA`: a camera that another mjpegd (its camera node) publishes on the bus.
//!
//! While open, the source subscribes to the camera's frame subject and sends a demand heartbeat
//! every [`link::DEMAND_INTERVAL`], so the camera node captures only while this edge has viewers
//! (plus its idle grace): closing the source (the hub does when the edge's viewers are gone)
//! stops the heartbeats. Each image carries the camera node's capture time and online flag
//! ([`Source::stamp`]), so the edge's `X-Timestamp` is the camera node's.
//!
//! The client buffers at most [`link::SUBSCRIPTION_CAPACITY`] messages and the source always takes
//! the newest waiting one: an edge that falls behind drops frames (counted), it never queues
//! them. Bus faults do not close the source: when no frame has come for [`NO_SIGNAL_AFTER`]
//! (server away, camera node down, frames too large for the server) it yields a no-signal frame
//! saying why, the client reconnects by itself, and live frames resume as soon as they arrive,
//! with no reopening backoff.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, SystemTime};

use async_nats::Subscriber;
use bytes::Bytes;
use futures_util::{FutureExt, StreamExt};
use tokio::time::Instant;

use super::{BoxFuture, Opener, Params, Source, SourceError};
use crate::frame::{Image, Stamp};
use crate::link::{self, CameraBusStats, ConnectConfig, Link, wire};

/// How long without a frame before the source yields a no-signal frame (and again each time
/// this passes): under the hub's source timeout, so a bus fault never makes the hub reopen.
pub const NO_SIGNAL_AFTER: Duration = Duration::from_secs(1);

/// How far a peer's capture time may be from this node's clock before it is clamped: NTP-synced
/// nodes are within milliseconds, and a frame travels the bus in well under a second.
pub const PEER_CLOCK_SKEW: Duration = Duration::from_secs(5);

/// Opens a camera from the bus.
pub struct NatsOpener {
    link: Arc<Link>,
    /// True when the link is this source's own (made from its URL), not the server's bus.
    own: bool,
    camera: String,
    params: Params,
}

impl std::fmt::Debug for NatsOpener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NatsOpener")
            .field("link", &self.link)
            .field("camera", &self.camera)
            .finish_non_exhaustive()
    }
}

impl NatsOpener {
    /// A source for `nats://[credentials@]HOST:PORT[,HOST:PORT...]/CAMERA`.
    pub fn new(url: &str, params: Params) -> Result<NatsOpener, SourceError> {
        let (config, camera) =
            ConnectConfig::parse_url(url).map_err(|e| SourceError::new(e.to_string()))?;
        let camera = camera.ok_or_else(|| {
            SourceError::new(format!(
                "nats: {:?} names no camera: use nats://HOST:PORT/CAMERA",
                crate::url::redact_url(url)
            ))
        })?;
        Ok(NatsOpener {
            own: true,
            ..NatsOpener::on_link(Link::new(config), camera, params)
        })
    }

    /// A source for `camera` over an existing link (a camera discovered on the server's bus).
    pub fn on_link(link: Arc<Link>, camera: String, params: Params) -> NatsOpener {
        NatsOpener {
            link,
            own: false,
            camera,
            params,
        }
    }
}

impl Opener for NatsOpener {
    fn open(&self) -> BoxFuture<'_, Result<Box<dyn Source>, SourceError>> {
        Box::pin(async move {
            let client = self
                .link
                .client()
                .await
                .map_err(|e| SourceError::new(e.to_string()))?;
            let sub = client
                .subscribe(link::frames_subject(&self.camera))
                .await
                .map_err(|e| {
                    SourceError::new(format!(
                        "nats: cannot subscribe to camera {} on {}: {e}",
                        self.camera,
                        self.link.describe()
                    ))
                })?;
            let heartbeat = tokio::spawn(heartbeat(
                client.clone(),
                link::demand_subject(&self.camera),
            ));
            let s: Box<dyn Source> = Box::new(NatsSource {
                sub,
                heartbeat,
                client,
                stats: self.link.stats().camera(&self.camera),
                link: Arc::clone(&self.link),
                camera: self.camera.clone(),
                params: self.params,
                last_seq: None,
                last_captured: None,
                stamp: None,
                malformed_logged: false,
            });
            Ok(s)
        })
    }

    fn describe(&self) -> String {
        format!("nats:{}/{}", self.link.describe(), self.camera)
    }

    fn own_link(&self) -> Option<Arc<Link>> {
        self.own.then(|| Arc::clone(&self.link))
    }
}

/// Says "this edge wants the camera" every [`link::DEMAND_INTERVAL`] until aborted, and at once
/// after a reconnection, so a camera node that let go during an outage starts again promptly.
async fn heartbeat(client: async_nats::Client, subject: String) {
    let mut ticks = tokio::time::interval(HEARTBEAT_CHECK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last: Option<Instant> = None;
    loop {
        ticks.tick().await;
        if client.connection_state() != async_nats::connection::State::Connected {
            last = None;
            continue;
        }
        if last.is_none_or(|t| t.elapsed() >= link::DEMAND_INTERVAL) {
            // A lost heartbeat is covered by the next ones (the camera node waits for three).
            let _ = client.publish(subject.clone(), Bytes::new()).await;
            last = Some(Instant::now());
        }
    }
}

/// How often the heartbeat task looks at the connection (only while the camera is captured).
const HEARTBEAT_CHECK: Duration = Duration::from_millis(100);

struct NatsSource {
    sub: Subscriber,
    heartbeat: tokio::task::JoinHandle<()>,
    client: async_nats::Client,
    stats: Arc<CameraBusStats>,
    link: Arc<Link>,
    camera: String,
    params: Params,
    last_seq: Option<u64>,
    /// The capture time given to the last frame: peer times never go back.
    last_captured: Option<SystemTime>,
    stamp: Option<Stamp>,
    malformed_logged: bool,
}

impl Drop for NatsSource {
    fn drop(&mut self) {
        // No viewers here any more: stop asking the camera node for frames.
        self.heartbeat.abort();
    }
}

impl NatsSource {
    fn count_gap(&mut self, seq: u64) {
        if let Some(last) = self.last_seq {
            // A peer chooses the numbers: `u64::MAX` must not overflow.
            if last.checked_add(1).is_some_and(|next| seq > next) {
                self.stats
                    .dropped
                    .fetch_add(seq - last - 1, Ordering::Relaxed);
            }
            // seq <= last: the camera node restarted and counts from 1 again.
        }
        self.last_seq = Some(seq);
    }

    /// A peer's capture time made safe to use: within [`PEER_CLOCK_SKEW`] of this node's clock
    /// and never before the previous frame's. A peer (anyone who may publish on the subject)
    /// sending alternating or future times would otherwise make a recording edge open a segment
    /// per frame and defeat retention by age.
    fn peer_time(&mut self, claimed: SystemTime) -> SystemTime {
        let now = SystemTime::now();
        let lo = now
            .checked_sub(PEER_CLOCK_SKEW)
            .unwrap_or(SystemTime::UNIX_EPOCH);
        let hi = now + PEER_CLOCK_SKEW;
        let mut t = claimed.clamp(lo, hi);
        if let Some(prev) = self.last_captured {
            t = t.max(prev);
        }
        self.last_captured = Some(t);
        t
    }

    async fn no_signal(&mut self) -> Result<Image, SourceError> {
        let reason = if self.client.connection_state() == async_nats::connection::State::Connected {
            format!("bus: no frames from the camera node for {}", self.camera)
        } else {
            format!(
                "bus: nats-server {} unreachable; reconnecting",
                self.link.describe()
            )
        };
        let Params {
            width,
            height,
            quality,
            ..
        } = self.params;
        let name = self.camera.clone();
        let now = SystemTime::now();
        let jpeg = super::blocking("no-signal render", move || {
            crate::render::no_signal(width, height, &name, &reason, now, quality)
        })
        .await?
        .map_err(|e| SourceError::new(format!("nats: cannot render the no-signal frame: {e}")))?;
        let (width, height) = crate::jpeg::dimensions(&jpeg).unwrap_or((width, height));
        self.stamp = Some(Stamp {
            captured: now,
            online: false,
        });
        Ok(Image {
            jpeg,
            width,
            height,
        })
    }
}

impl Source for NatsSource {
    fn next_frame(&mut self) -> BoxFuture<'_, Result<Image, SourceError>> {
        Box::pin(async move {
            let deadline = Instant::now() + NO_SIGNAL_AFTER;
            loop {
                let msg = match tokio::time::timeout_at(deadline, self.sub.next()).await {
                    Ok(Some(m)) => m,
                    Ok(None) => {
                        return Err(SourceError::new(format!(
                            "nats: the subscription to camera {} on {} closed",
                            self.camera,
                            self.link.describe()
                        )));
                    }
                    Err(_) => return self.no_signal().await,
                };
                // Take the newest waiting frame: the ones before it are dropped, never queued.
                let mut msg = msg;
                while let Some(Some(newer)) = self.sub.next().now_or_never() {
                    msg = newer;
                }
                match wire::decode(msg.headers.as_ref(), msg.payload) {
                    Ok(r) => {
                        self.count_gap(r.seq);
                        self.stats.received.fetch_add(1, Ordering::Relaxed);
                        let captured = self.peer_time(r.stamp.captured);
                        self.stamp = Some(Stamp {
                            captured,
                            online: r.stamp.online,
                        });
                        return Ok(r.image);
                    }
                    Err(e) => {
                        self.stats.malformed.fetch_add(1, Ordering::Relaxed);
                        let e = format!(
                            "nats: camera {}: skipped a malformed message: {e}",
                            self.camera
                        );
                        if !self.malformed_logged {
                            // Once per opening: a flood of bad messages must not flood the log.
                            self.malformed_logged = true;
                            tracing::warn!("{e}");
                        }
                        self.stats.set_error(e);
                    }
                }
            }
        })
    }

    fn stamp(&self) -> Option<Stamp> {
        self.stamp
    }
}
