//! Shutdown signalling: one cancellation token handed to every long-lived task and body.

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
