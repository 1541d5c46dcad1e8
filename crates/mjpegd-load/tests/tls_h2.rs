//! The load client against a real mjpegd over TLS: HTTP/2 streams multiplexed on a few
//! connections (ALPN h2), and HTTP/1.1 for comparison, both verifying the server's self-signed
//! certificate with `--ca`; h2c by prior knowledge on plain TCP. Every viewer must stream valid
//! frames.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use mjpegd_load::client::{RunConfig, run};
use mjpegd_load::report::RunReport;
use mjpegd_load::tls::Trust;
use tokio_util::sync::CancellationToken;

/// A self-signed certificate for `localhost` and its key, written under `dir`.
fn self_signed(dir: &Path) -> (PathBuf, PathBuf) {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    std::fs::write(&cert, ck.cert.pem()).expect("write cert");
    std::fs::write(&key, ck.key_pair.serialize_pem()).expect("write key");
    (cert, key)
}

/// A small, fast test pattern served by mjpegd on its own runtime (as the binary runs it, with
/// `tls` given); stops when the token is cancelled.
fn start_mjpegd(
    tls: Option<(&Path, &Path)>,
) -> (SocketAddr, CancellationToken, std::thread::JoinHandle<()>) {
    mjpegd::tls::install_crypto_provider();
    let settings = mjpegd::cli::Cli::try_parse_from([
        "mjpegd",
        "--source",
        "testpattern",
        "--size",
        "320x240",
        "--fps",
        "20",
    ])
    .expect("flags")
    .into_settings()
    .expect("settings");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let shutdown = CancellationToken::new();
    let mut server = mjpegd::server::Server::new(
        settings.cameras,
        settings.http,
        settings.server,
        shutdown.clone(),
    );
    if let Some((cert, key)) = tls {
        server = server.with_tls(mjpegd::tls::TlsConfig::load(cert, key).expect("tls"));
    }
    let thread = std::thread::spawn(move || {
        let _ = rt.block_on(server.run(listener));
    });
    (addr, shutdown, thread)
}

fn try_load(
    url: String,
    trust: Option<Trust>,
    viewers: u32,
    http2: Option<u32>,
) -> Result<RunReport, mjpegd_load::Error> {
    let cfg = RunConfig {
        url,
        viewers,
        stalled: 0,
        duration: Duration::from_secs(2),
        ramp: Duration::ZERO,
        connect_concurrency: 8,
        pid: Some(std::process::id()),
        label: None,
        churn: Duration::ZERO,
        trust,
        http2: http2.is_some(),
        streams_per_connection: http2.unwrap_or(1),
        h2_max_frame_size: None,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    tokio::task::LocalSet::new().block_on(&rt, run(cfg))
}

fn load(url: String, trust: Option<Trust>, viewers: u32, http2: Option<u32>) -> RunReport {
    try_load(url, trust, viewers, http2).expect("run")
}

fn assert_all_streamed(r: &RunReport, viewers: u32) {
    assert_eq!(r.viewers_streaming, viewers, "{r}");
    assert_eq!(r.errors.total(), 0, "{:?}", r.errors);
    assert_eq!(r.invalid_parts, 0, "{:?}", r.invalid_by_reason);
    assert_eq!(r.missing_timestamp, 0);
    // 20 fps for about 2 s: every viewer well past a handful of frames.
    assert!(r.fps.min > 5.0, "{:?}", r.fps);
    assert!(r.frames >= u64::from(viewers) * 10, "{} frames", r.frames);
    assert_eq!(r.ttff_ms.count, u64::from(viewers));
}

#[test]
fn h2_streams_over_tls_and_http1_over_tls_all_stream_frames() {
    let dir = std::env::temp_dir().join(format!("mjpegd-load-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let (cert, key) = self_signed(&dir);
    let (addr, shutdown, thread) = start_mjpegd(Some((&cert, &key)));
    let url = format!("https://localhost:{}/stream", addr.port());

    // 7 viewers, 3 per connection: 3 connections, the last with one stream.
    let r = load(url.clone(), Some(Trust::Ca(cert.clone())), 7, Some(3));
    assert_all_streamed(&r, 7);
    assert_eq!(r.connections, 3);
    assert_eq!(r.transport, "HTTP/2, 3 streams per connection over TLS");

    let r = load(url.clone(), Some(Trust::Insecure), 3, None);
    assert_all_streamed(&r, 3);
    assert_eq!(
        (r.connections, r.transport.as_str()),
        (3, "HTTP/1.1 over TLS")
    );

    // Without a trust decision there is no https run; a wrong CA fails every handshake.
    let refused = try_load(url.clone(), None, 1, None);
    assert!(
        matches!(refused, Err(mjpegd_load::Error::Usage(ref m)) if m.contains("--insecure")),
        "{refused:?}"
    );
    let other_dir = dir.join("other");
    std::fs::create_dir_all(&other_dir).expect("dir");
    let (other, _) = self_signed(&other_dir);
    let r = load(url, Some(Trust::Ca(other)), 2, Some(2));
    assert_eq!(r.viewers_streaming, 0);
    assert_eq!(r.errors.connect, 2, "{:?}", r.errors);

    shutdown.cancel();
    thread.join().expect("server thread");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn h2c_by_prior_knowledge_streams_frames() {
    let (addr, shutdown, thread) = start_mjpegd(None);
    let r = load(format!("http://{addr}/stream"), None, 4, Some(4));
    assert_all_streamed(&r, 4);
    assert_eq!(
        (r.connections, r.transport.as_str()),
        (1, "HTTP/2, 4 streams per connection")
    );
    shutdown.cancel();
    thread.join().expect("server thread");
}
