//! The `mjpegd` server binary: flags → settings → logging → bind → serve until a signal.

use std::process::ExitCode;

use clap::Parser;
use mjpegd::cli::Cli;
use mjpegd::server::Server;
use mjpegd::shutdown::{CancellationToken, cancel_on_signals};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the async runtime");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async_main(cli));
    // Blocking render threads may still be finishing a frame; do not wait for them.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    code
}

async fn async_main(cli: Cli) -> ExitCode {
    if let Some(path) = &cli.check_config {
        return check_config(path);
    }
    let settings = match cli.into_settings() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::from(2);
        }
    };
    let listener = match tokio::net::TcpListener::bind(settings.listen).await {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(
                "cannot listen on {}: {e} — is another server using that port? choose another with --listen",
                settings.listen
            );
            return ExitCode::FAILURE;
        }
    };
    let addr = listener.local_addr().unwrap_or(settings.listen);
    let shutdown = CancellationToken::new();
    cancel_on_signals(shutdown.clone());
    for cam in &settings.cameras {
        tracing::info!(
            camera = %cam.name,
            source = %cam.opener.describe(),
            url = %format!("http://{addr}/cameras/{}/stream", cam.name),
            "camera ready"
        );
    }
    tracing::info!(
        "mjpegd {} streaming at http://{addr}/ (stream: http://{addr}/stream, snapshot: http://{addr}/snapshot.jpg)",
        env!("CARGO_PKG_VERSION")
    );
    let server = Server::new(settings.cameras, settings.http, settings.server, shutdown);
    match server.run(listener).await {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!(error = %e, "server failed");
            ExitCode::FAILURE
        }
    }
}

/// `--check-config FILE`: validates and prints what the file declares.
fn check_config(path: &std::path::Path) -> ExitCode {
    let cli = Cli {
        config: Some(path.to_owned()),
        ..Cli::parse_from(["mjpegd"])
    };
    match cli.into_settings() {
        Ok(s) => {
            let names: Vec<&str> = s.cameras.iter().map(|c| c.name.as_str()).collect();
            tracing::info!(
                "{}: OK — listen {}, {} camera(s): {}",
                path.display(),
                s.listen,
                names.len(),
                names.join(", ")
            );
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("{e}");
            ExitCode::from(2)
        }
    }
}
