//! The `mjpegd` server binary: flags → settings → logging → bind → serve until a signal.

use std::process::ExitCode;

use clap::Parser;
use mjpegd::cli::Cli;
use mjpegd::server::{Listener, Server};
use mjpegd::shutdown::{CancellationToken, cancel_on_signals};
use mjpegd::tls::TlsConfig;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            // async-nats logs every client event (one per dropped message) at info.
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,async_nats=warn")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
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

/// Reloads the TLS certificate on SIGHUP; open connections keep theirs.
fn reload_on_sighup(tls: TlsConfig) {
    tokio::spawn(async move {
        let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())
        else {
            return;
        };
        while hup.recv().await.is_some() {
            match tls.reload() {
                Ok(()) => tracing::info!("TLS certificate reloaded"),
                Err(e) => tracing::error!("TLS certificate not reloaded, keeping the old one: {e}"),
            }
        }
    });
}

/// `mjpegd hash-password`: reads one line from stdin, prints its hash.
fn hash_password() -> ExitCode {
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line).is_err()
        || line.trim_end_matches(['\r', '\n']).is_empty()
    {
        tracing::error!("hash-password: type the password on standard input (one line)");
        return ExitCode::from(2);
    }
    match mjpegd::auth::hash_password(line.trim_end_matches(['\r', '\n'])) {
        Ok(h) => {
            println!("{h}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            tracing::error!("hash-password: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `--list-devices`: prints the V4L2 cameras and what they offer.
fn list_devices() -> ExitCode {
    #[cfg(all(target_os = "linux", feature = "v4l2"))]
    {
        print!("{}", mjpegd::source::v4l2::list_devices());
        ExitCode::SUCCESS
    }
    #[cfg(all(target_os = "linux", not(feature = "v4l2")))]
    {
        eprintln!(
            "--list-devices: this mjpegd was built without the `v4l2` feature; rebuild with \
             `cargo build --release --features v4l2` (on by default)"
        );
        ExitCode::FAILURE
    }
    #[cfg(not(target_os = "linux"))]
    {
        eprintln!("--list-devices: V4L2 cameras exist only on Linux");
        ExitCode::FAILURE
    }
}

/// `--check-recordings DIR`: every recorded frame's CRC, and each damaged range.
fn check_recordings(dir: &std::path::Path) -> ExitCode {
    let report = match mjpegd::record::check_recordings(dir) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("--check-recordings {}: {e}", dir.display());
            return ExitCode::from(2);
        }
    };
    for (seg, d) in &report.damaged {
        let at =
            d.t.map(|t| format!(", frame of {}", mjpegd::record::time::rfc3339(t)))
                .unwrap_or_default();
        println!(
            "{}: bytes {}..{}: {}{at}",
            seg.display(),
            d.from,
            d.to,
            d.why
        );
    }
    for u in &report.unreadable {
        println!("{u}: unreadable");
    }
    println!(
        "{} segments, {} frames whole, {} damaged ranges, {} unreadable files",
        report.segments,
        report.good,
        report.damaged.len(),
        report.unreadable.len()
    );
    if report.damaged.is_empty() && report.unreadable.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

async fn async_main(cli: Cli) -> ExitCode {
    if cli.list_devices {
        return list_devices();
    }
    if let Some(dir) = &cli.check_recordings {
        return check_recordings(dir);
    }
    if matches!(cli.command, Some(mjpegd::cli::Command::HashPassword)) {
        return hash_password();
    }
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
    let mut listeners = match mjpegd::server::systemd_listeners() {
        Ok(l) => l,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    if listeners.is_empty() {
        listeners = match mjpegd::server::bind(&settings.listen, settings.unix_mode).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::FAILURE;
            }
        };
    }
    let tls = match &settings.tls {
        Some((cert, key)) => match TlsConfig::load(cert, key) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::error!("{e}");
                return ExitCode::from(2);
            }
        },
        None => None,
    };
    let scheme = if tls.is_some() { "https" } else { "http" };
    let addrs: Vec<String> = listeners
        .iter()
        .map(|l| match l {
            Listener::Tcp(t) => t
                .local_addr()
                .map_or_else(|_| "?".into(), |a| format!("{scheme}://{a}")),
            Listener::Unix(u) => u
                .local_addr()
                .ok()
                .and_then(|a| a.as_pathname().map(|p| format!("unix:{}", p.display())))
                .unwrap_or_else(|| "unix:?".into()),
        })
        .collect();
    let addr = addrs.first().cloned().unwrap_or_default();
    let shutdown = CancellationToken::new();
    cancel_on_signals(shutdown.clone(), mjpegd::source::exec::kill_all);
    if let Some(t) = &tls {
        reload_on_sighup(t.clone());
    }
    if settings.http.auth.enabled() {
        tracing::info!("authentication is on: every URL needs a login or a token");
    } else if settings
        .listen
        .iter()
        .any(|l| matches!(l, mjpegd::config::ListenSpec::Tcp(a) if !a.ip().is_loopback()))
    {
        tracing::warn!(
            "serving the network without authentication: anyone who can reach it can watch (see --user)"
        );
    }
    for cam in &settings.cameras {
        tracing::info!(
            camera = %cam.name,
            source = %cam.opener.describe(),
            url = %format!("{addr}/cameras/{}/stream", cam.name),
            "camera ready"
        );
    }
    tracing::info!(
        "mjpegd {} streaming at {addr}/ (stream: {addr}/stream, snapshot: {addr}/snapshot.jpg){}",
        env!("CARGO_PKG_VERSION"),
        if addrs.len() > 1 {
            format!("; also on {}", addrs[1..].join(", "))
        } else {
            String::new()
        }
    );
    let server = Server::new(settings.cameras, settings.http, settings.server, shutdown)
        .with_state_dir(settings.state_dir.as_deref());
    let server = match settings.bus {
        Some(bus) => server.with_bus(bus),
        None => server,
    };
    let server = match server
        .with_recordings(settings.recordings)
        .and_then(|s| s.with_motion(settings.motions))
    {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("{e}");
            return ExitCode::FAILURE;
        }
    };
    let server = match tls {
        Some(t) => server.with_tls(t),
        None => server,
    };
    match server.run_all(listeners).await {
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

/// `--check-config FILE`: validates and prints what the file declares — that file alone: no
/// flag and no `MJPEGD_*` environment variable is merged in.
fn check_config(path: &std::path::Path) -> ExitCode {
    use clap::{CommandFactory, FromArgMatches};
    // Every flag at its default: the same parser with the environment fallbacks removed.
    let defaults = Cli::command()
        .mut_args(|a| a.env(None))
        .try_get_matches_from(["mjpegd"])
        .map_err(|e| e.to_string())
        .and_then(|m| Cli::from_arg_matches(&m).map_err(|e| e.to_string()));
    let cli = match defaults {
        Ok(defaults) => Cli {
            config: Some(path.to_owned()),
            ..defaults
        },
        Err(e) => {
            tracing::error!("--check-config: {e}");
            return ExitCode::FAILURE;
        }
    };
    match cli.into_settings() {
        Ok(s) => {
            let names: Vec<&str> = s.cameras.iter().map(|c| c.name.as_str()).collect();
            tracing::info!(
                "{}: OK — listen {}, {} camera(s): {}",
                path.display(),
                s.listen
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
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
