//! Shutdown signalling: one cancellation token handed to every long-lived task and body.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub use tokio_util::sync::CancellationToken;

/// Cancels `token` on the first SIGINT or SIGTERM and exits the process at once on the second
/// (the user-facing contract: first signal graceful, second immediate). `before_exit` runs
/// just before that immediate exit, for what must not outlive the process (child processes).
pub fn cancel_on_signals(token: CancellationToken, before_exit: fn()) {
    tokio::spawn(async move {
        let mut count = 0;
        loop {
            wait_for_signal().await;
            count += 1;
            if count == 1 {
                tracing::info!("shutting down (send the signal again to exit at once)");
                token.cancel();
            } else {
                tracing::warn!("second signal: exiting now");
                before_exit();
                std::process::exit(130);
            }
        }
    });
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) {
        (Ok(mut term), Ok(mut int)) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
        }
        _ => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

/// The shutdown token as thousands of stream tasks can afford to check on every frame.
///
/// Polling a `CancellationToken`'s future takes the token's lock, twice (its state, then its
/// waiter list); every viewer shares the one token and polled it for every frame it sent: 1 %
/// of the server's CPU at 1000 viewers. A per-viewer waker registered instead cost as much
/// (one more cold cache line per viewer per frame). Here a check is a load of one flag that
/// every viewer shares, and nobody waits on it: at shutdown `on_close` wakes the viewers
/// through the frame channels they wait on anyway, and they see the flag.
#[derive(Clone)]
pub struct Closing(Arc<ClosingInner>);

struct ClosingInner {
    token: CancellationToken,
    closed: AtomicBool,
    /// Whether the task that turns the token's cancellation into `closed` is running.
    watched: AtomicBool,
    on_close: Box<dyn Fn() + Send + Sync>,
}

impl Closing {
    /// Closes when `token` is cancelled; `on_close` then runs once, after the flag is set.
    pub fn new(token: CancellationToken, on_close: impl Fn() + Send + Sync + 'static) -> Closing {
        Closing(Arc::new(ClosingInner {
            token,
            closed: AtomicBool::new(false),
            watched: AtomicBool::new(false),
            on_close: Box::new(on_close),
        }))
    }

    /// Starts watching the token, once; must be called within a tokio runtime before anyone
    /// relies on `on_close` (stream bodies call it as they start).
    pub fn watch(&self) {
        if self.0.watched.swap(true, Ordering::AcqRel) {
            return;
        }
        let inner = Arc::clone(&self.0);
        tokio::spawn(async move {
            inner.token.cancelled().await;
            inner.closed.store(true, Ordering::Release);
            (inner.on_close)();
        });
    }

    /// Whether the server is shutting down (seen a moment after the token is cancelled, once
    /// the watching task has run).
    pub fn is_closed(&self) -> bool {
        self.0.closed.load(Ordering::Acquire)
    }
}
