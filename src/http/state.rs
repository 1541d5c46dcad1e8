//! What every handler shares.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

use super::HttpError;
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
}

impl Default for HttpConfig {
    fn default() -> HttpConfig {
        HttpConfig {
            max_viewers: 1000,
            keepalive: Duration::from_secs(1),
            snapshot_wait: Duration::from_secs(6),
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
}

impl AppState {
    /// State over `hub`; stream bodies end when `shutdown` is cancelled.
    pub fn new(hub: Arc<Hub>, config: HttpConfig, shutdown: CancellationToken) -> AppState {
        let slots = Arc::new(Semaphore::new(config.max_viewers));
        AppState(Arc::new(Inner {
            hub,
            config,
            viewer_slots: slots,
            shutdown,
            started: std::time::Instant::now(),
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

    /// The camera called `name`.
    pub(crate) fn camera_named(&self, name: &str) -> Result<Arc<Camera>, HttpError> {
        self.0.hub.get(name).cloned().ok_or_else(|| {
            let known: Vec<&str> = self.0.hub.cameras().iter().map(|c| c.name()).collect();
            HttpError::NotFound(format!(
                "no camera named {name:?}; cameras here: {}",
                known.join(", ")
            ))
        })
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
