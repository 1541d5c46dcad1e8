//! The minimum-rate rule of a connection: a response body that must keep reaching its client
//! (an export) sets a rule here, the socket counts the bytes it writes, and the server closes
//! the connection when a window passes with too few of them.
//!
//! The body alone cannot enforce this: hyper polls it only once its previous chunk has drained,
//! so a client reading 1 KB/s keeps the body (and the export slot it holds) parked between
//! polls for as long as it likes, and each accepted byte resets the send timeout.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use tokio::sync::Notify;
use tokio::time::Instant;

/// Exports running at once; past it, 503 + `Retry-After` (each streams from disk at full speed).
pub const MAX_EXPORTS: usize = 4;
/// An export must deliver at least this many bytes to its client in every window.
pub const EXPORT_MIN_BYTES: u64 = 256 * 1024;
/// The default window of [`EXPORT_MIN_BYTES`] (`[server] export_rate_window`): 256 KiB a
/// minute, about 4.4 KB/s on average.
pub const EXPORT_RATE_WINDOW: Duration = Duration::from_secs(60);
/// Longest an export may run, whatever its rate; a cut download resumes with `Range`.
pub const EXPORT_MAX_DURATION: Duration = Duration::from_secs(4 * 3600);

/// A connection's byte count and its current rate rule; one per connection, shared by the
/// socket wrapper (which counts), the handlers (which set rules) and the server (which waits
/// for a breach).
#[derive(Clone, Default)]
pub struct Pace(Arc<Inner>);

#[derive(Default)]
struct Inner {
    written: AtomicU64,
    rule: Mutex<Option<Rule>>,
    changed: Notify,
    next_id: AtomicU64,
}

#[derive(Clone, Copy)]
struct Rule {
    id: u64,
    min_bytes: u64,
    window: Duration,
    until: Instant,
}

impl Pace {
    /// Counts `n` bytes written to the socket.
    pub fn wrote(&self, n: usize) {
        self.0.written.fetch_add(n as u64, Ordering::Relaxed);
    }

    fn rule(&self) -> Option<Rule> {
        // Poison recovered: the value is one `Copy` rule, never half written.
        *self.0.rule.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Requires at least `min_bytes` written in every `window`, and the end within
    /// `max_duration`, until the returned guard is dropped (with the body it belongs to).
    pub fn require(&self, min_bytes: u64, window: Duration, max_duration: Duration) -> PaceGuard {
        let id = self.0.next_id.fetch_add(1, Ordering::Relaxed);
        let rule = Rule {
            id,
            min_bytes,
            window,
            until: Instant::now() + max_duration,
        };
        *self.0.rule.lock().unwrap_or_else(PoisonError::into_inner) = Some(rule);
        self.0.changed.notify_waiters();
        PaceGuard {
            pace: self.clone(),
            id,
        }
    }

    /// Resolves when a rule is breached, with what happened; pending while none is set.
    pub async fn breached(&self) -> String {
        loop {
            let rule = loop {
                // Made before the check, so a rule set in between still wakes it.
                let changed = self.0.changed.notified();
                if let Some(r) = self.rule() {
                    break r;
                }
                changed.await;
            };
            let mut mark = self.0.written.load(Ordering::Relaxed);
            loop {
                let changed = self.0.changed.notified();
                tokio::select! {
                    () = tokio::time::sleep(rule.window) => {}
                    () = changed => {}
                }
                if self.rule().is_none_or(|r| r.id != rule.id) {
                    break;
                }
                let now = self.0.written.load(Ordering::Relaxed);
                let sent = now - mark;
                if sent < rule.min_bytes {
                    return format!(
                        "the client took {sent} bytes in {:?}, less than the {} a response of this kind must deliver per window",
                        rule.window, rule.min_bytes
                    );
                }
                if Instant::now() >= rule.until {
                    return "the response ran past its time limit".to_owned();
                }
                mark = now;
            }
        }
    }
}

/// Keeps a [`Pace`] rule in force while it lives.
pub struct PaceGuard {
    pace: Pace,
    id: u64,
}

impl Drop for PaceGuard {
    fn drop(&mut self) {
        let mut rule = self
            .pace
            .0
            .rule
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if rule.is_some_and(|r| r.id == self.id) {
            *rule = None;
            drop(rule);
            self.pace.0.changed.notify_waiters();
        }
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Pace {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Pace, Self::Rejection> {
        // A router served without `server::Server` has no socket counting bytes: a detached
        // pace that nothing enforces.
        Ok(parts.extensions.get::<Pace>().cloned().unwrap_or_default())
    }
}
