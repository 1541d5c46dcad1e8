//! What every handler shares.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
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
    /// Users and tokens; no users means authentication is off.
    pub auth: Arc<Auth>,
    /// Serve `/metrics` without authentication.
    pub public_metrics: bool,
    /// Serve `/api/state` without authentication.
    pub public_state: bool,
    /// `Access-Control-Allow-Origin` for cross-origin pages (off when `None`).
    pub allow_origin: Option<String>,
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            max_viewers: 1000,
            keepalive: Duration::from_secs(1),
            snapshot_wait: Duration::from_secs(6),
            max_viewers_per_camera: 1000,
            snapshot_rate: 100,
            auth: Arc::new(Auth::new(Vec::new(), None)),
            public_metrics: false,
            public_state: false,
            allow_origin: None,
        }
    }
}

/// Shared state of the HTTP layer; cheap to clone.
#[derive(Clone)]
pub struct AppState(pub(super) Arc<Inner>);

pub(super) struct Inner {
    pub(super) hub: Arc<Hub>,
    pub(super) config: HttpConfig,
    /// One permit per open stream, held by the stream body itself.
    pub(super) viewer_slots: Arc<Semaphore>,
    pub(super) shutdown: CancellationToken,
    pub(super) started: std::time::Instant,
    /// One semaphore per camera (same order as the hub) for the per-camera viewer limit.
    pub(super) camera_slots: Vec<Arc<Semaphore>>,
    pub(super) snapshot_bucket: std::sync::Mutex<TokenBucket>,
    /// The recorders, when any camera records; set once at startup.
    pub(super) recordings: std::sync::OnceLock<Arc<crate::record::Recordings>>,
    /// One permit per running export, held by the export body.
    pub(super) export_slots: Arc<Semaphore>,
}

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
        let camera_slots = hub
            .cameras()
            .iter()
            .map(|_| Arc::new(Semaphore::new(config.max_viewers_per_camera)))
            .collect();
        let snapshot_bucket = std::sync::Mutex::new(TokenBucket::new(config.snapshot_rate));
        AppState(Arc::new(Inner {
            camera_slots,
            snapshot_bucket,
            hub,
            config,
            viewer_slots: slots,
            shutdown,
            started: std::time::Instant::now(),
            recordings: std::sync::OnceLock::new(),
            export_slots: Arc::new(Semaphore::new(super::recordings::MAX_EXPORTS)),
        }))
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
        self.0.hub.get(name).cloned().ok_or_else(|| {
            let known: Vec<&str> = self
                .0
                .hub
                .cameras()
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
        })
    }

    /// The per-camera viewer semaphore of `camera`.
    pub(super) fn camera_slots(&self, camera: &Camera) -> Option<Arc<Semaphore>> {
        let i = self
            .0
            .hub
            .cameras()
            .iter()
            .position(|c| c.name() == camera.name())?;
        self.0.camera_slots.get(i).cloned()
    }

    /// Attaches the recorders (once; later calls are ignored).
    pub fn set_recordings(&self, r: Arc<crate::record::Recordings>) {
        let _ = self.0.recordings.set(r);
    }

    /// The recorders, if any camera records.
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
