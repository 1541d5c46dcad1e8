//! Which cameras the bus carries: camera nodes announce, edges discover.
//!
//! A camera node publishes its published cameras on [`crate::link::DIRECTORY_SUBJECT`] every
//! [`crate::link::ANNOUNCE_INTERVAL`], and at once when an edge asks on [`crate::link::QUERY_SUBJECT`]. An
//! edge adds each announced camera to its hub (served under its own name, fed by a
//! `source::nats` source on the edge's link) and removes one not announced for
//! [`crate::link::FORGET_AFTER`] once nobody watches it; a watched camera stays and shows no-signal
//! until its camera node is back.
//!
//! Why announcements and not a JetStream key-value bucket: they need nothing but core NATS (a
//! stock `nats-server` or cluster, no JetStream storage or quorum to keep up when a node dies),
//! and a camera node that dies simply stops announcing, which is its TTL.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use tokio::time::{Instant, MissedTickBehavior, interval};
use tokio_util::sync::CancellationToken;

use crate::hub::{Camera, CameraConfig, Hub, peer_params};
use crate::link::{ANNOUNCE_INTERVAL, DIRECTORY_SUBJECT, FORGET_AFTER, Link, QUERY_SUBJECT};
use crate::source::nats::NatsOpener;

/// Shortest time between two announcements made to answer queries.
pub const QUERY_MIN_INTERVAL: Duration = Duration::from_secs(1);

/// Largest announcement read; one names at most [`MAX_ANNOUNCED`] cameras.
pub const MAX_ANNOUNCEMENT_BYTES: usize = 64 * 1024;
/// Most cameras one announcement may list (the per-server camera limit).
pub const MAX_ANNOUNCED: usize = crate::hub::MAX_CAMERAS;

/// One camera node's announcement.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Announcement {
    pub(crate) cameras: Vec<Announced>,
}

/// One announced camera.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Announced {
    pub(crate) name: String,
    pub(crate) width: u32,
    pub(crate) height: u32,
    pub(crate) fps: f64,
}

/// Announces `cameras` on the bus of `link` until `shutdown`.
pub fn announce(link: Arc<Link>, cameras: Vec<Arc<Camera>>, shutdown: CancellationToken) {
    let body = Announcement {
        cameras: cameras
            .iter()
            .map(|c| Announced {
                name: c.name().to_owned(),
                width: c.config().width,
                height: c.config().height,
                fps: c.config().fps,
            })
            .collect(),
    };
    let payload = match serde_json::to_vec(&body) {
        Ok(p) => Bytes::from(p),
        Err(e) => {
            tracing::error!(error = %e, "bus: cannot encode the camera announcement");
            return;
        }
    };
    tokio::spawn(async move {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => {}
            () = run_announcer(&link, payload) => {}
        }
    });
}

async fn run_announcer(link: &Link, payload: Bytes) {
    let client = match link.client().await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}; cameras are not announced");
            return;
        }
    };
    let mut queries = match client.subscribe(QUERY_SUBJECT).await {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "bus: cannot answer directory queries; announcing on a timer only");
            None
        }
    };
    let mut ticks = interval(ANNOUNCE_INTERVAL);
    ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last: Option<Instant> = None;
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            q = async {
                match queries.as_mut() {
                    Some(s) => s.next().await,
                    None => std::future::pending().await,
                }
            } => {
                if q.is_none() {
                    queries = None;
                }
                // Any peer may send queries: answer at most once per QUERY_MIN_INTERVAL, so a
                // flood of them cannot make every node announce at once, over and over.
                if last.is_some_and(|t| t.elapsed() < QUERY_MIN_INTERVAL) {
                    continue;
                }
            }
        }
        last = Some(Instant::now());
        if client.connection_state() == async_nats::connection::State::Connected {
            let _ = client.publish(DIRECTORY_SUBJECT, payload.clone()).await;
        }
    }
}

/// Settings of the cameras an edge discovers.
#[derive(Debug, Clone, Copy)]
pub struct EdgeDefaults {
    /// How long a discovered camera keeps its bus subscription (and demand) after its last viewer.
    pub idle_timeout: Duration,
    /// The hub's source timeout for discovered cameras.
    pub source_timeout: Duration,
    /// JPEG quality of the edge's own no-signal frames.
    pub quality: u8,
    /// Most cameras discovered (past it, new ones are ignored with a warning).
    pub max_cameras: usize,
}

/// Adds the cameras announced on the bus of `link` to `hub`, and removes them when gone.
pub fn discover(
    link: Arc<Link>,
    hub: Arc<Hub>,
    defaults: EdgeDefaults,
    shutdown: CancellationToken,
) {
    tokio::spawn(async move {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => {}
            () = run_discovery(&link, &hub, defaults) => {}
        }
    });
}

async fn run_discovery(link: &Arc<Link>, hub: &Hub, defaults: EdgeDefaults) {
    let client = match link.client().await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!("{e}; no camera is discovered");
            return;
        }
    };
    let mut known: HashMap<String, Known> = HashMap::new();
    let mut warned_full = false;
    let mut sweep = interval(Duration::from_secs(1));
    sweep.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        let mut dir = match client.subscribe(DIRECTORY_SUBJECT).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "bus: cannot subscribe to the camera directory; retrying");
                tokio::time::sleep(ANNOUNCE_INTERVAL).await;
                continue;
            }
        };
        tracing::info!(servers = %link.describe(), "bus: discovering cameras");
        // Ask camera nodes to announce now rather than at their next round; a query lost
        // because the server is not reached yet is covered by the rounds.
        let _ = client.publish(QUERY_SUBJECT, Bytes::new()).await;
        loop {
            tokio::select! {
                m = dir.next() => {
                    let Some(m) = m else { break };
                    match parse(&m.payload) {
                        Ok(a) => on_announcement(link, hub, &defaults, &mut known, &mut warned_full, a),
                        Err(e) => {
                            link.stats().malformed_announcements.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!("bus: skipped a malformed announcement: {e}");
                        }
                    }
                }
                _ = sweep.tick() => {
                    known.retain(|name, k| {
                        if k.seen.elapsed() < FORGET_AFTER {
                            return true;
                        }
                        if hub.remove_if_idle(name).is_some() {
                            tracing::info!(camera = %name, "bus: camera no longer announced; removed");
                            return false;
                        }
                        // Watched (or gone from the hub already): keep until nobody watches.
                        hub.get(name).is_some()
                    });
                }
            }
        }
    }
}

/// An announcement refused: too large, not the expected JSON, too many cameras.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadAnnouncement(String);

/// Reads an announcement from the bus (crate-visible for `fuzzing::directory`).
pub(crate) fn parse(payload: &[u8]) -> Result<Announcement, BadAnnouncement> {
    if payload.len() > MAX_ANNOUNCEMENT_BYTES {
        return Err(BadAnnouncement(format!(
            "{} bytes is over the {MAX_ANNOUNCEMENT_BYTES}-byte limit",
            payload.len()
        )));
    }
    let a: Announcement =
        serde_json::from_slice(payload).map_err(|e| BadAnnouncement(e.to_string()))?;
    if a.cameras.len() > MAX_ANNOUNCED {
        return Err(BadAnnouncement(format!(
            "{} cameras listed; the limit is {MAX_ANNOUNCED}",
            a.cameras.len()
        )));
    }
    Ok(a)
}

/// A discovered camera: when it was last announced, and when it was added.
struct Known {
    seen: Instant,
    added: Instant,
}

/// Frees a place for `newcomer` when the camera limit is reached: removes the oldest discovered
/// camera that nobody watches and that never sent this edge a frame. Anyone who can publish
/// on the bus can announce names; a made-up camera never delivers a frame, so a flood of them
/// rotates among themselves, while cameras that have been watched (and delivered) keep their
/// place. False when every discovered camera is watched or has delivered.
fn make_room(link: &Link, hub: &Hub, known: &mut HashMap<String, Known>, newcomer: &str) -> bool {
    let stats = link.stats();
    let mut silent: Vec<(&String, Instant)> = known
        .iter()
        .filter(|(name, _)| stats.camera(name).received.load(Ordering::Relaxed) == 0)
        .map(|(name, k)| (name, k.added))
        .collect();
    silent.sort_by_key(|(_, added)| *added);
    let evicted = silent
        .into_iter()
        .map(|(name, _)| name.clone())
        .find(|name| hub.remove_if_idle(name).is_some());
    match evicted {
        Some(name) => {
            known.remove(&name);
            tracing::info!(
                evicted = %name,
                camera = %newcomer,
                "bus: camera limit reached; dropped a discovered camera that never sent a frame"
            );
            true
        }
        None => false,
    }
}

fn on_announcement(
    link: &Arc<Link>,
    hub: &Hub,
    defaults: &EdgeDefaults,
    known: &mut HashMap<String, Known>,
    warned_full: &mut bool,
    a: Announcement,
) {
    let now = Instant::now();
    for cam in a.cameras {
        if let Some(k) = known.get_mut(&cam.name) {
            k.seen = now;
            continue;
        }
        if !crate::name::valid_name(&cam.name) || hub.get(&cam.name).is_some() {
            // Not usable, or a camera of this node's own configuration: the local one wins.
            continue;
        }
        if known.len() >= defaults.max_cameras && !make_room(link, hub, known, &cam.name) {
            if !*warned_full {
                *warned_full = true;
                tracing::warn!(
                    limit = defaults.max_cameras,
                    camera = %cam.name,
                    "bus: camera limit reached and every discovered camera is watched or has sent frames; further announced cameras are not served"
                );
            }
            continue;
        }
        let params = peer_params(cam.width, cam.height, cam.fps, defaults.quality);
        let opener = NatsOpener::on_link(Arc::clone(link), cam.name.clone(), params);
        let mut config = CameraConfig::new(cam.name.clone(), Arc::new(opener), params)
            .with_source_timeout(defaults.source_timeout);
        config.idle_timeout = defaults.idle_timeout;
        match hub.add(config) {
            Ok(_) => {
                tracing::info!(camera = %cam.name, servers = %link.describe(), "bus: camera discovered");
                known.insert(
                    cam.name,
                    Known {
                        seen: now,
                        added: now,
                    },
                );
            }
            Err(e) => tracing::debug!("bus: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_are_bounded() {
        let one = br#"{"cameras":[{"name":"a","width":640,"height":480,"fps":30.0}]}"#;
        assert_eq!(parse(one).expect("ok").cameras.len(), 1);
        assert!(parse(b"not json").is_err());
        let cam = r#"{"name":"a","width":1,"height":1,"fps":1.0}"#;
        let list = |n: usize| format!(r#"{{"cameras":[{}]}}"#, vec![cam; n].join(","));
        assert!(parse(list(MAX_ANNOUNCED).as_bytes()).is_ok());
        assert!(parse(list(MAX_ANNOUNCED + 1).as_bytes()).is_err());
        let big = vec![b' '; MAX_ANNOUNCEMENT_BYTES + 1];
        assert!(
            parse(&big)
                .expect_err("too big")
                .to_string()
                .contains("limit")
        );
    }
}
