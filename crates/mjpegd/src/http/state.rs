//! What every handler shares.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, PoisonError};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::HttpError;
use crate::auth::{Auth, Principal};
use crate::hub::{Camera, Hub};

/// HTTP-level settings.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Most concurrent stream viewers in the whole server; past it, 503 + `Retry-After`.
    pub max_viewers: usize,
    /// Re-send the latest frame when no new one has come for this long: Chrome paints a part
    /// only once the next part's headers arrive, and proxies drop silent connections.
    pub keepalive: Duration,
    /// Longest a snapshot waits for a fresh frame when capture was idle.
    pub snapshot_wait: Duration,
    /// Most stream viewers of one camera.
    pub max_viewers_per_camera: usize,
    /// Snapshot requests per second across the server (each may decode and encode a thumbnail).
    pub snapshot_rate: u32,
    /// Snapshot requests per second from one address, within `snapshot_rate`: one browser's
    /// grid of snapshot tiles cannot starve every other client.
    pub snapshot_rate_per_ip: u32,
    /// Users and tokens; no users means authentication is off.
    pub auth: Arc<Auth>,
    /// Serve `/metrics` without authentication.
    pub public_metrics: bool,
    /// Serve `/api/state` without authentication.
    pub public_state: bool,
    /// `Access-Control-Allow-Origin` for cross-origin pages (off when `None`).
    pub allow_origin: Option<String>,
    /// Names (or addresses) this server answers to besides loopback ones, lowercase; when
    /// set, a request whose `Host` is none of them is refused on every listener (421).
    pub host_names: Vec<String>,
    /// An export must deliver [`super::EXPORT_MIN_BYTES`] to its client in every window this
    /// long, or its connection is closed (a trickling reader holds an export slot).
    pub export_rate_window: Duration,
    /// With authentication on, a browser opening a page without credentials is sent to the
    /// login form (`/login`) rather than answered 401 (which makes it show its Basic prompt).
    pub login_form: bool,
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            max_viewers: 1000,
            keepalive: Duration::from_secs(1),
            snapshot_wait: Duration::from_secs(6),
            max_viewers_per_camera: 1000,
            snapshot_rate: 100,
            snapshot_rate_per_ip: 20,
            auth: Arc::new(Auth::new(Vec::new(), None)),
            public_metrics: false,
            public_state: false,
            allow_origin: None,
            host_names: Vec::new(),
            export_rate_window: super::EXPORT_RATE_WINDOW,
            login_form: true,
        }
    }
}

/// Camera names whose viewer semaphores are kept before unused ones of removed cameras are dropped.
const MAX_SLOT_NAMES: usize = 1024;

/// A part of `/api/state` computed by another subsystem (which HTTP knows nothing of).
pub type StateSection = Arc<dyn Fn() -> serde_json::Value + Send + Sync>;

/// Shared state of the HTTP layer; cheap to clone.
#[derive(Clone)]
pub struct AppState(pub(super) Arc<Inner>);

pub(super) struct Inner {
    pub(super) hub: Arc<Hub>,
    pub(super) config: HttpConfig,
    /// One permit per open stream, held by the stream body itself.
    pub(super) viewer_slots: Arc<Semaphore>,
    pub(super) shutdown: CancellationToken,
    /// The same shutdown, cheap to poll per frame (stream bodies).
    pub(super) closing: crate::shutdown::Closing,
    pub(super) started: std::time::Instant,
    /// One semaphore per camera name for the per-camera viewer limit, made on first use
    /// (cameras may be added at run time); bounded by the number of camera names served.
    pub(super) camera_slots: std::sync::Mutex<std::collections::HashMap<String, Arc<Semaphore>>>,
    /// Sections other subsystems add to `/api/state` (the bus).
    pub(super) sections: std::sync::Mutex<Vec<(&'static str, StateSection)>>,
    pub(super) snapshot_bucket: std::sync::Mutex<TokenBucket>,
    /// One snapshot budget per address, within the server's; at most [`MAX_SNAPSHOT_ADDRESSES`].
    pub(super) snapshot_per_ip: std::sync::Mutex<HashMap<IpAddr, TokenBucket>>,
    /// The recorders, when any camera records; set once at startup.
    pub(super) recordings: std::sync::OnceLock<Arc<crate::record::Recordings>>,
    /// One permit per running export, held by the export body.
    pub(super) export_slots: Arc<Semaphore>,
    /// Motion detection, when any camera has it; set once at startup.
    pub(super) motion: std::sync::OnceLock<Arc<crate::motion::Motion>>,
    /// True when every listener is on loopback (or a unix socket): the `Host` check is on
    /// even without configured names. Set once when the server starts listening.
    pub(super) loopback_only: std::sync::OnceLock<bool>,
    /// The mosaics asked for so far (`/mosaic`), each shared by its viewers.
    pub(super) mosaics: crate::mosaic::Mosaics,
}

/// Addresses whose snapshot budgets are remembered. Past it, full (idle for a second) budgets
/// are forgotten first, which loses nothing; if every one is in use, the least recent goes.
pub(crate) const MAX_SNAPSHOT_ADDRESSES: usize = 4096;

/// A token bucket refilled continuously: `rate` per second, bursts up to `rate`.
#[derive(Debug)]
pub(super) struct TokenBucket {
    rate: f64,
    tokens: f64,
    last: std::time::Instant,
}

impl TokenBucket {
    fn new(rate: u32) -> TokenBucket {
        TokenBucket {
            rate: f64::from(rate.max(1)),
            tokens: f64::from(rate.max(1)),
            last: std::time::Instant::now(),
        }
    }

    /// True when the bucket has refilled completely: forgetting it loses nothing.
    fn is_full(&self, now: std::time::Instant) -> bool {
        self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate >= self.rate
    }

    /// Takes one token, or says how long until one is available.
    pub(super) fn take(&mut self) -> Result<(), Duration> {
        let now = std::time::Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.rate).min(self.rate);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - self.tokens) / self.rate))
        }
    }
}

impl AppState {
    /// State over `hub`; stream bodies end when `shutdown` is cancelled.
    pub fn new(hub: Arc<Hub>, config: HttpConfig, shutdown: CancellationToken) -> AppState {
        let slots = Arc::new(Semaphore::new(config.max_viewers));
        let camera_slots = std::sync::Mutex::new(std::collections::HashMap::new());
        let snapshot_bucket = std::sync::Mutex::new(TokenBucket::new(config.snapshot_rate));
        let weak = Arc::downgrade(&hub);
        let closing = crate::shutdown::Closing::new(shutdown.clone(), move || {
            if let Some(hub) = weak.upgrade() {
                hub.wake_viewers();
            }
        });
        AppState(Arc::new(Inner {
            camera_slots,
            sections: std::sync::Mutex::new(Vec::new()),
            snapshot_bucket,
            snapshot_per_ip: std::sync::Mutex::new(HashMap::new()),
            mosaics: crate::mosaic::Mosaics::new(Arc::clone(&hub)),
            hub,
            config,
            viewer_slots: slots,
            closing,
            shutdown,
            started: std::time::Instant::now(),
            recordings: std::sync::OnceLock::new(),
            export_slots: Arc::new(Semaphore::new(super::MAX_EXPORTS)),
            motion: std::sync::OnceLock::new(),
            loopback_only: std::sync::OnceLock::new(),
        }))
    }

    /// Takes a snapshot token from `ip`'s budget, then from the server's; or says how long
    /// until one is available. Requests without an address (unix sockets) share the server's.
    pub(super) fn take_snapshot_token(&self, ip: Option<IpAddr>) -> Result<(), Duration> {
        if let Some(ip) = ip {
            // Poison recovered: a panic cannot leave a bucket's two numbers half updated in a
            // way that matters (the worst is one token too many), and refusing the lock would
            // refuse every snapshot.
            let mut buckets = self
                .0
                .snapshot_per_ip
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if buckets.len() >= MAX_SNAPSHOT_ADDRESSES && !buckets.contains_key(&ip) {
                let now = std::time::Instant::now();
                buckets.retain(|_, b| !b.is_full(now));
                if buckets.len() >= MAX_SNAPSHOT_ADDRESSES {
                    if let Some(oldest) =
                        buckets.iter().min_by_key(|(_, b)| b.last).map(|(k, _)| *k)
                    {
                        buckets.remove(&oldest);
                    }
                }
            }
            let rate = self
                .0
                .config
                .snapshot_rate_per_ip
                .min(self.0.config.snapshot_rate);
            buckets
                .entry(ip)
                .or_insert_with(|| TokenBucket::new(rate))
                .take()?;
        }
        // Poison recovered: as above.
        self.0
            .snapshot_bucket
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }

    /// Addresses whose snapshot budgets are remembered now.
    pub fn snapshot_addresses(&self) -> usize {
        self.0
            .snapshot_per_ip
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    /// The hub.
    pub fn hub(&self) -> &Arc<Hub> {
        &self.0.hub
    }

    /// The camera at `index` in configuration order.
    pub(crate) fn camera_at(&self, index: usize) -> Result<Arc<Camera>, HttpError> {
        self.0.hub.cameras().get(index).cloned().ok_or_else(|| {
            HttpError::NotFound(format!(
                "no camera number {index}: this server has {} camera(s), numbered from 0",
                self.0.hub.cameras().len()
            ))
        })
    }

    /// The camera called `name`; the error lists the cameras `p` may watch.
    pub(crate) fn camera_named(&self, name: &str, p: &Principal) -> Result<Arc<Camera>, HttpError> {
        self.0
            .hub
            .get(name)
            .ok_or_else(|| self.no_camera_named(name, p))
    }

    /// The 404 for a camera called `name` that does not exist or that `p` may not watch (the
    /// same answer for both); it lists the cameras `p` may watch.
    pub(crate) fn no_camera_named(&self, name: &str, p: &Principal) -> HttpError {
        let all = self.0.hub.cameras();
        let known: Vec<&str> = all
            .iter()
            .map(|c| c.name())
            .filter(|n| p.is_user() && p.may_watch(n))
            .collect();
        HttpError::NotFound(format!(
            "no camera named {name:?}; cameras here: {}",
            if known.is_empty() {
                "(none you may watch)".to_owned()
            } else {
                known.join(", ")
            }
        ))
    }

    /// Takes a viewer slot of the server and one of `camera` (live streams and replays alike),
    /// or answers 503 when either limit is reached.
    pub(super) fn viewer_slots(&self, camera: &Camera) -> Result<ViewerSlots, HttpError> {
        let server = Arc::clone(&self.0.viewer_slots)
            .try_acquire_owned()
            .map_err(|_| HttpError::TooManyViewers {
                limit: self.0.config.max_viewers,
            })?;
        let camera = match self.camera_slots(camera) {
            Some(slots) => {
                Some(
                    slots
                        .try_acquire_owned()
                        .map_err(|_| HttpError::TooManyViewers {
                            limit: self.0.config.max_viewers_per_camera,
                        })?,
                )
            }
            None => None,
        };
        Ok(ViewerSlots {
            _server: server,
            _camera: camera,
        })
    }

    /// The per-camera viewer semaphore of `camera`.
    pub(super) fn camera_slots(&self, camera: &Camera) -> Option<Arc<Semaphore>> {
        // Poison recovered: a map of semaphores is consistent after any panic.
        let mut slots = self
            .0
            .camera_slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let limit = self.0.config.max_viewers_per_camera;
        if slots.len() >= MAX_SLOT_NAMES {
            // Cameras come and go on a bus: forget names no longer served and unused.
            let hub = &self.0.hub;
            slots.retain(|name, s| s.available_permits() < limit || hub.get(name).is_some());
        }
        Some(Arc::clone(
            slots
                .entry(camera.name().to_owned())
                .or_insert_with(|| Arc::new(Semaphore::new(limit))),
        ))
    }

    /// Adds a top-level section `name` to `/api/state`, computed at each request.
    pub fn add_state_section(&self, name: &'static str, section: StateSection) {
        // Poison recovered: a list of sections is consistent after any panic.
        self.0
            .sections
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push((name, section));
    }

    /// The added `/api/state` sections, computed now.
    pub(super) fn state_sections(&self) -> serde_json::Map<String, serde_json::Value> {
        let sections: Vec<(&'static str, StateSection)> = self
            .0
            .sections
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default();
        sections
            .into_iter()
            .map(|(name, f)| (name.to_owned(), f()))
            .collect()
    }

    /// Attaches the recorders (once; later calls are ignored).
    pub fn set_recordings(&self, r: Arc<crate::record::Recordings>) {
        let _ = self.0.recordings.set(r);
    }

    /// Attaches motion detection (once; later calls are ignored).
    pub fn set_motion(&self, m: Arc<crate::motion::Motion>) {
        let _ = self.0.motion.set(m);
    }

    /// Says whether every listener is on loopback or a unix socket (once; later calls are
    /// ignored): then requests must name this machine (or a configured name) in `Host`.
    pub fn set_loopback_only(&self, loopback_only: bool) {
        let _ = self.0.loopback_only.set(loopback_only);
    }

    /// Is the `Host` check on: names configured, or listening on loopback only?
    pub(super) fn checks_host(&self) -> bool {
        !self.0.config.host_names.is_empty() || self.0.loopback_only.get() == Some(&true)
    }

    /// Motion detection, if any camera has it.
    pub fn motion(&self) -> Option<&Arc<crate::motion::Motion>> {
        self.0.motion.get()
    }

    /// The mosaics made so far, and where new ones are made.
    pub fn mosaics(&self) -> &crate::mosaic::Mosaics {
        &self.0.mosaics
    }

    /// The recorders, when any camera records.
    pub fn recordings(&self) -> Option<&Arc<crate::record::Recordings>> {
        self.0.recordings.get()
    }

    /// The HTTP settings.
    pub fn config(&self) -> &HttpConfig {
        &self.0.config
    }

    /// When the server state was created, for uptime.
    pub fn started(&self) -> std::time::Instant {
        self.0.started
    }

    /// Open stream viewers across all cameras.
    pub fn viewers(&self) -> usize {
        self.0.config.max_viewers - self.0.viewer_slots.available_permits()
    }
}

/// A viewer's slots, given back when dropped (when the viewer's body is).
pub(super) struct ViewerSlots {
    _server: OwnedSemaphorePermit,
    _camera: Option<OwnedSemaphorePermit>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(rate: u32, per_ip: u32) -> AppState {
        let shutdown = CancellationToken::new();
        let hub = Arc::new(Hub::new(vec![], shutdown.clone()));
        let config = HttpConfig {
            snapshot_rate: rate,
            snapshot_rate_per_ip: per_ip,
            ..HttpConfig::default()
        };
        AppState::new(hub, config, shutdown)
    }

    #[test]
    fn snapshot_budgets_are_per_address_within_the_global_cap() {
        let s = state(4, 2);
        let (a, b, c) = (
            Some(IpAddr::from([10, 0, 0, 1])),
            Some(IpAddr::from([10, 0, 0, 2])),
            Some(IpAddr::from([10, 0, 0, 3])),
        );
        assert!(s.take_snapshot_token(a).is_ok());
        assert!(s.take_snapshot_token(a).is_ok());
        assert!(s.take_snapshot_token(a).is_err(), "a's own budget is spent");
        assert!(s.take_snapshot_token(b).is_ok());
        assert!(s.take_snapshot_token(b).is_ok());
        assert!(
            s.take_snapshot_token(c).is_err(),
            "the global cap still holds"
        );
    }

    #[test]
    fn snapshot_addresses_remembered_stop_at_the_limit() {
        let s = state(100_000, 1);
        for i in 0..MAX_SNAPSHOT_ADDRESSES as u32 {
            assert!(
                s.take_snapshot_token(Some(IpAddr::from(i.to_be_bytes())))
                    .is_ok()
            );
        }
        assert_eq!(s.snapshot_addresses(), MAX_SNAPSHOT_ADDRESSES);
        // One past the limit: the least recent budget is forgotten, the newcomer is served.
        let newcomer = Some(IpAddr::from([250, 0, 0, 1]));
        assert!(s.take_snapshot_token(newcomer).is_ok());
        assert_eq!(s.snapshot_addresses(), MAX_SNAPSHOT_ADDRESSES);
        assert!(
            s.take_snapshot_token(newcomer).is_err(),
            "its budget is tracked"
        );
    }
}
