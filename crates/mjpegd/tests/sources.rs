//! Real sources end to end: exec (with real ffmpeg) and the HTTP relay (against mjpegd itself
//! and against hostile upstreams): frames flow, failures show "no signal" without dropping
//! viewers, and live video resumes on the same connections.

// Some tests need a feature; in a build without it their imports and helpers go unused.
#![cfg_attr(not(feature = "relay"), allow(unused_imports, dead_code))]

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use mjpegd::http::HttpConfig;
use mjpegd::hub::CameraConfig;
use mjpegd::server::ServerConfig;
use mjpegd::source::{Params, SourceSpec};
use tokio::io::AsyncWriteExt;

/// A camera for `spec`: 160x120 no-signal frames (so tests tell them from live ones by size).
fn spec_camera(name: &str, spec: &str, source_timeout: Duration) -> CameraConfig {
    let spec: SourceSpec = spec.parse().expect("spec");
    let params = Params {
        width: 160,
        height: 120,
        fps: 10.0,
        quality: 70,
    };
    let mut cam = camera(name, spec.opener(params).expect("opener"));
    cam.source_timeout = source_timeout;
    cam
}

async fn serve(cam: CameraConfig) -> TestServer {
    TestServer::start(vec![cam], HttpConfig::default(), ServerConfig::default()).await
}

const FFMPEG: &str = "ffmpeg -hide_banner -loglevel error -re -f lavfi";

/// Reads parts until `pred` holds for one; panics after `WAIT`.
async fn until(
    c: &mut MjpegClient,
    what: &str,
    pred: impl Fn(&Part, (usize, usize)) -> bool,
) -> Part {
    let start = Instant::now();
    while start.elapsed() < WAIT {
        let p = c.part().await;
        let size = p.decode();
        if pred(&p, size) {
            return p;
        }
    }
    panic!("no part that is {what} within {WAIT:?}");
}

#[tokio::test]
async fn exec_ffmpeg_delivers_frames_at_its_rate() {
    if !require_tool("ffmpeg") {
        return;
    }
    let cmd = format!("exec:{FFMPEG} -i testsrc2=size=640x480:rate=30 -f mjpeg -q:v 5 -");
    let srv = serve(spec_camera("ff", &cmd, Duration::from_secs(5))).await;
    let mut c = MjpegClient::connect(&srv.url("/stream")).await;
    until(&mut c, "a live 640x480 frame", |_, s| s == (640, 480)).await;
    let start = Instant::now();
    let mut n = 0;
    while start.elapsed() < Duration::from_secs(2) {
        assert_eq!(c.part().await.decode(), (640, 480));
        n += 1;
    }
    // About 60 at 30 fps; generous for a loaded machine, far above the 1 fps no-signal rate.
    assert!(n >= 30, "{n} frames in 2 s from ffmpeg at 30 fps");
}

#[tokio::test]
async fn exec_command_that_fails_gives_no_signal_with_its_stderr_and_is_retried() {
    let srv = serve(spec_camera(
        "broken",
        "exec:echo 'camera unplugged' >&2; exit 3",
        Duration::from_secs(5),
    ))
    .await;
    let mut c = MjpegClient::connect(&srv.url("/stream")).await;
    assert_eq!(c.part().await.decode(), (160, 120), "the no-signal frame");
    let cam = srv.camera();
    let err = cam.last_error().expect("an error is recorded");
    assert!(
        err.contains("camera unplugged") && err.contains("3"),
        "{err}"
    );
    let snap = reqwest::get(srv.url("/snapshot.jpg"))
        .await
        .expect("snapshot");
    assert_eq!(snap.headers()["x-mjpegd-online"], "false");
    // Retried after the first backoff (1 s) while the viewer stays connected.
    until(&mut c, "after a retry", |_, _| {
        cam.stats()
            .source_opens
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 2
    })
    .await;
}

#[tokio::test]
async fn exec_upstream_dying_mid_stream_recovers_on_the_same_connection() {
    if !require_tool("ffmpeg") {
        return;
    }
    // ffmpeg stops after 1.5 s of video; the hub restarts it after a 1 s backoff.
    let cmd = format!("exec:{FFMPEG} -i testsrc2=size=320x240:rate=20 -t 1.5 -f mjpeg -");
    let srv = serve(spec_camera("short", &cmd, Duration::from_secs(5))).await;
    let mut c = MjpegClient::connect(&srv.url("/stream")).await;
    until(&mut c, "live", |_, s| s == (320, 240)).await;
    until(&mut c, "no signal", |_, s| s == (160, 120)).await;
    until(&mut c, "live again", |_, s| s == (320, 240)).await;
    assert!(
        srv.camera()
            .stats()
            .source_opens
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 2
    );
}

#[tokio::test]
async fn exec_child_is_killed_when_capture_stops() {
    if !require_tool("ffmpeg") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let pidfile = dir.path().join("pid");
    let cmd = format!(
        "exec:echo $$ > {}; exec {FFMPEG} -i testsrc2=size=160x120:rate=10 -f mjpeg -",
        pidfile.display()
    );
    let mut cam = spec_camera("pid", &cmd, Duration::from_secs(5));
    cam.idle_timeout = Duration::from_millis(200);
    let srv = serve(cam).await;
    let mut c = MjpegClient::connect(&srv.url("/stream")).await;
    c.part().await;
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .expect("pid file")
        .trim()
        .parse()
        .expect("pid");
    let proc_dir = format!("/proc/{pid}");
    assert!(std::path::Path::new(&proc_dir).exists());
    drop(c);
    let gone = tokio::time::timeout(WAIT, async {
        loop {
            // A zombie still has /proc/PID until reaped; its state says Z.
            let alive = std::fs::read_to_string(format!("{proc_dir}/stat"))
                .map(|s| !s.contains(") Z "))
                .unwrap_or(false);
            if !alive {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    assert!(
        gone.is_ok(),
        "ffmpeg (pid {pid}) still running after capture stopped"
    );
}

#[cfg(feature = "relay")]
#[tokio::test]
async fn http_relay_of_another_mjpegd_passes_frames_through_untouched() {
    let upstream = TestServer::with_source(Scripted::new(Script {
        width: 320,
        height: 240,
        ..Script::default()
    }))
    .await;
    let url = format!("http://viewer:s3cret@{}/stream", upstream.addr);
    let srv = serve(spec_camera("relay", &url, Duration::from_secs(5))).await;
    let mut c = MjpegClient::connect(&srv.url("/stream")).await;
    let mut last = 0;
    for _ in 0..10 {
        let p = c.part().await;
        assert_eq!(p.decode(), (320, 240));
        let seq = p.seq();
        assert!(seq > last, "frames in order, no duplicates");
        last = seq;
    }
    let state: serde_json::Value = reqwest::get(srv.url("/api/state"))
        .await
        .expect("state")
        .json()
        .await
        .expect("json");
    let source = state["cameras"][0]["source"].as_str().expect("source");
    assert!(
        source.contains("viewer:***@") && !source.contains("s3cret"),
        "{source}"
    );
    assert_eq!(
        upstream.state.viewers(),
        1,
        "one upstream connection shared by the relay"
    );
}

#[cfg(feature = "relay")]
#[tokio::test]
async fn http_relay_polls_a_camera_that_only_serves_snapshots() {
    let upstream = TestServer::with_source(Scripted::new(Script {
        width: 320,
        height: 240,
        ..Script::default()
    }))
    .await;
    let url = format!("http://{}/snapshot.jpg", upstream.addr);
    let srv = serve(spec_camera("stills", &url, Duration::from_secs(5))).await;
    let mut c = MjpegClient::connect(&srv.url("/stream")).await;
    let a = until(&mut c, "a polled frame", |_, s| s == (320, 240)).await;
    let b = until(&mut c, "a newer polled frame", |p, s| {
        s == (320, 240) && p.seq() > a.seq()
    })
    .await;
    assert!(b.seq() > a.seq());
}

#[cfg(feature = "relay")]
#[tokio::test]
async fn http_upstream_restart_shows_no_signal_then_live_video_on_the_same_connection() {
    let upstream = TestServer::with_source(Scripted::new(Script {
        width: 320,
        height: 240,
        ..Script::default()
    }))
    .await;
    let addr = upstream.addr;
    let srv = serve(spec_camera(
        "relay",
        &format!("http://{addr}/stream"),
        Duration::from_secs(2),
    ))
    .await;
    let mut c = MjpegClient::connect(&srv.url("/stream")).await;
    until(&mut c, "live", |_, s| s == (320, 240)).await;

    upstream.stop().await;
    until(&mut c, "no signal", |_, s| s == (160, 120)).await;

    // The camera comes back on the same address.
    let listener = tokio::net::TcpListener::bind(addr).await.expect("rebind");
    let shutdown = tokio_util::sync::CancellationToken::new();
    let back = mjpegd::server::Server::new(
        vec![camera(
            "cam",
            Scripted::new(Script {
                width: 320,
                height: 240,
                ..Script::default()
            }),
        )],
        HttpConfig::default(),
        ServerConfig::default(),
        shutdown.clone(),
    );
    tokio::spawn(back.run(listener));
    let returned = Instant::now();
    until(&mut c, "live again", |_, s| s == (320, 240)).await;
    let took = returned.elapsed();
    assert!(
        took < Duration::from_millis(2500),
        "live again {took:?} after the upstream returned"
    );
    shutdown.cancel();
}

/// A raw upstream: answers every connection with a multipart head, then `body` (with a pause
/// where it holds `None`), then either closes or stalls.
#[cfg(feature = "relay")]
async fn raw_upstream(script: Vec<Option<Vec<u8>>>, stall: bool) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let script = Arc::new(script);
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let script = Arc::clone(&script);
            tokio::spawn(async move {
                let mut req = [0u8; 1024];
                let _ = tokio::io::AsyncReadExt::read(&mut sock, &mut req).await;
                let head = "HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=\"--myboundary\"\r\n\r\n";
                if sock.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                for step in script.iter() {
                    match step {
                        Some(bytes) => {
                            if sock.write_all(bytes).await.is_err() {
                                return;
                            }
                        }
                        None => tokio::time::sleep(Duration::from_millis(100)).await,
                    }
                }
                if stall {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                }
            });
        }
    });
    addr
}

#[cfg(feature = "relay")]
fn good_part(seq: u64) -> Vec<u8> {
    let jpeg = numbered_jpeg(seq, 320, 240, false);
    let mut v = format!(
        "--myboundary\r\ncontent-type: image/jpeg\r\ncontent-length: {}\r\n\r\n",
        jpeg.len()
    )
    .into_bytes();
    v.extend_from_slice(&jpeg);
    v.extend_from_slice(b"\r\n");
    v
}

#[cfg(feature = "relay")]
#[tokio::test]
async fn http_relay_survives_malformed_truncated_and_stalled_upstreams() {
    let jpeg = numbered_jpeg(2, 320, 240, false);
    let mut truncated = format!(
        "--myboundary\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
        jpeg.len() + 500
    )
    .into_bytes();
    truncated.extend_from_slice(&jpeg[..jpeg.len() / 2]);
    let script = vec![
        Some(good_part(1)),
        Some(b"\r\n\r\n--\r\ngarbage garbage \xff\xd8 not a jpeg \x00\x01\r\n".to_vec()),
        Some(truncated),
        Some(b"\r\n".to_vec()),
        Some(good_part(3)),
        None,
        Some(good_part(4)),
    ];
    let addr = raw_upstream(script, true).await;
    let srv = serve(spec_camera(
        "hostile",
        &format!("http://{addr}/"),
        Duration::from_secs(1),
    ))
    .await;
    let mut c = MjpegClient::connect(&srv.url("/stream")).await;
    // Every part sent decodes; the good frames come through; the stall becomes no signal.
    let mut seqs = vec![];
    let start = Instant::now();
    loop {
        assert!(start.elapsed() < WAIT, "no no-signal frame after the stall");
        let p = c.part().await;
        match p.decode() {
            (320, 240) => seqs.push(p.seq()),
            (160, 120) => break,
            other => panic!("unexpected frame size {other:?}"),
        }
    }
    seqs.dedup();
    assert!(
        seqs.contains(&4),
        "the last good frame came through: {seqs:?}"
    );
    assert!(
        !seqs.contains(&2),
        "the truncated frame was dropped: {seqs:?}"
    );
    let err = srv.camera().last_error().expect("stall recorded");
    assert!(err.contains("no frame for"), "{err}");
    assert!(
        srv.camera()
            .stats()
            .frames_captured
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 2
    );
}

#[cfg(feature = "relay")]
#[tokio::test]
async fn http_relay_reconnects_to_an_upstream_that_closes_after_a_few_frames() {
    let script = (1..=3).map(|i| Some(good_part(i))).collect();
    let addr = raw_upstream(script, false).await;
    let srv = serve(spec_camera(
        "flaky",
        &format!("http://{addr}/"),
        Duration::from_secs(5),
    ))
    .await;
    let mut c = MjpegClient::connect(&srv.url("/stream")).await;
    until(&mut c, "live", |_, s| s == (320, 240)).await;
    until(&mut c, "no signal", |_, s| s == (160, 120)).await;
    until(&mut c, "live after reconnecting", |_, s| s == (320, 240)).await;
    let err = srv.camera().last_error();
    let opens = srv
        .camera()
        .stats()
        .source_opens
        .load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        opens >= 2,
        "reconnected ({opens} opens, last error {err:?})"
    );
}

#[cfg(feature = "relay")]
#[tokio::test]
async fn endless_garbage_upstream_never_grows_memory() {
    // 64 MiB of noise without a single frame, as fast as the relay reads it.
    let noise: Vec<u8> = (0..1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let script = std::iter::repeat_n(Some(noise), 64).collect();
    let addr = raw_upstream(script, false).await;
    let rss_before = rss_kib();
    let srv = serve(spec_camera(
        "noise",
        &format!("http://{addr}/"),
        Duration::from_secs(5),
    ))
    .await;
    let mut c = MjpegClient::connect(&srv.url("/stream")).await;
    // The reader gives up after its resync limit and the relay reconnects: no-signal, no crash.
    until(&mut c, "no signal", |_, s| s == (160, 120)).await;
    let err = srv.camera().last_error().expect("error recorded");
    assert!(
        err.contains("invalid MJPEG") || err.contains("closed"),
        "{err}"
    );
    let grown = rss_kib().saturating_sub(rss_before);
    assert!(grown < 96 * 1024, "RSS grew by {grown} KiB reading garbage");
}
