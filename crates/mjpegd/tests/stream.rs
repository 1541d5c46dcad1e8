//! The stream endpoints over a real socket: wire format, fan-out, pacing, slow viewers, limits.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use common::*;
use mjpegd::http::HttpConfig;
use mjpegd::server::ServerConfig;

#[tokio::test]
async fn stream_follows_the_wire_format() {
    let src = Scripted::new(Script::default());
    let srv = TestServer::with_source(src.clone()).await;
    let mut c = MjpegClient::connect(&srv.url("/stream")).await;
    let h = &c.response_headers;
    assert_eq!(
        h["content-type"],
        "multipart/x-mixed-replace;boundary=frame"
    );
    assert_eq!(
        h["cache-control"],
        "no-store, no-cache, must-revalidate, max-age=0"
    );
    assert_eq!(h["pragma"], "no-cache");
    assert!(h.contains_key("expires"));
    let mut last_ts = 0.0;
    for _ in 0..5 {
        let p = c.part().await;
        assert_eq!(p.decode(), (160, 120));
        let ts = p.timestamp();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("clock")
            .as_secs_f64();
        assert!(
            ts > last_ts && ts <= now + 0.001 && now - ts < 5.0,
            "X-Timestamp {ts} vs now {now}"
        );
        last_ts = ts;
    }
}

/// Issue 13: the body is close-delimited (HTTP/1.0 style, as µStreamer's), not chunked, so each
/// part reaches the socket as it is: the bytes after the response head are the multipart body
/// itself, and parts decode straight from them.
#[tokio::test]
async fn stream_body_is_close_delimited_not_chunked() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let srv = TestServer::with_source(Scripted::new(Script::default())).await;
    let mut sock = tokio::net::TcpStream::connect(srv.addr)
        .await
        .expect("connect");
    sock.write_all(b"GET /stream HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("request");
    let mut buf = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    // Read until two complete parts are in (head + preamble + part + part).
    let body_start = loop {
        let mut chunk = [0u8; 16 * 1024];
        let n = tokio::time::timeout_at(deadline.into(), sock.read(&mut chunk))
            .await
            .expect("two parts within 10 s")
            .expect("read");
        assert!(n > 0, "server closed the stream");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let body = &buf[end + 4..];
            if body.windows(9).filter(|w| w == b"--frame\r\n").count() >= 3 {
                break end + 4;
            }
        }
    };
    let head = String::from_utf8_lossy(&buf[..body_start]).to_ascii_lowercase();
    assert!(head.starts_with("http/1.0 200 ok\r\n"), "{head}");
    assert!(!head.contains("transfer-encoding"), "{head}");
    assert!(!head.contains("content-length"), "{head}");
    assert!(head.contains("\r\nconnection: close\r\n"), "{head}");
    let body = &buf[body_start..];
    assert!(
        body.starts_with(b"--frame\r\n"),
        "body starts with a chunk size?"
    );
    // The first part: headers, then exactly Content-Length JPEG bytes, then the next boundary.
    let part = &body[b"--frame\r\n".len()..];
    let headers_end = part
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("part headers");
    let headers = String::from_utf8_lossy(&part[..headers_end]).to_string();
    let len: usize = headers
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .expect("Content-Length")
        .parse()
        .expect("length");
    let jpeg = &part[headers_end + 4..headers_end + 4 + len];
    assert_eq!(&part[headers_end + 4 + len..][..11], b"\r\n--frame\r\n");
    let mut d = zune_jpeg::JpegDecoder::new(jpeg);
    d.decode().expect("the first part's JPEG decodes");
    assert_eq!(d.dimensions(), Some((160, 120)));
}

#[tokio::test]
async fn every_stream_url_streams_and_unknown_parameters_are_ignored() {
    let srv = TestServer::with_source(Scripted::new(Script::default())).await;
    for path in [
        "/stream",
        "/video_feed",
        "/?action=stream",
        "/?action=stream&1700000000",
        "/video_feed?type=.mjpg&x=1",
    ] {
        let mut c = MjpegClient::connect(&srv.url(path)).await;
        let p = c.part().await;
        assert_eq!(p.decode(), (160, 120), "{path}");
    }
}

#[tokio::test]
async fn two_viewers_get_the_same_shared_frames_and_never_a_duplicate() {
    let src = Scripted::new(Script {
        fps: 20.0,
        ..Script::default()
    });
    let srv = TestServer::with_source(src).await;
    let mut a = MjpegClient::connect(&srv.url("/stream")).await;
    let mut b = MjpegClient::connect(&srv.url("/video_feed")).await;
    let (pa, pb) = tokio::join!(
        async {
            let mut v = vec![];
            for _ in 0..15 {
                v.push(a.part().await);
            }
            v
        },
        async {
            let mut v = vec![];
            for _ in 0..15 {
                v.push(b.part().await);
            }
            v
        }
    );
    for parts in [&pa, &pb] {
        let seqs: Vec<u64> = parts.iter().map(Part::seq).collect();
        assert!(
            seqs.windows(2).all(|w| w[1] > w[0]),
            "duplicate or out of order: {seqs:?}"
        );
    }
    let by_seq: HashMap<u64, &Part> = pa.iter().map(|p| (p.seq(), p)).collect();
    let common: Vec<u64> = pb
        .iter()
        .map(Part::seq)
        .filter(|s| by_seq.contains_key(s))
        .collect();
    assert!(
        common.len() >= 10,
        "viewers saw different frames: {common:?}"
    );
    for p in &pb {
        if let Some(q) = by_seq.get(&p.seq()) {
            assert_eq!(p.jpeg, q.jpeg, "same seq, different bytes");
            assert_eq!(
                p.timestamp(),
                q.timestamp(),
                "same frame, different timestamp"
            );
        }
    }
}

#[tokio::test]
async fn fps_parameter_caps_one_viewer_while_another_gets_the_full_rate() {
    let srv = TestServer::with_source(Scripted::new(Script {
        fps: 30.0,
        ..Script::default()
    }))
    .await;
    let slow = MjpegClient::connect(&srv.url("/stream?fps=5")).await;
    let fast = MjpegClient::connect(&srv.url("/stream")).await;
    let (slow_parts, fast_parts) = tokio::join!(
        parts_for(slow, Duration::from_secs(2)),
        parts_for(fast, Duration::from_secs(2))
    );
    let slow_n = slow_parts.len();
    let fast_n = fast_parts.len();
    // 5 fps for 2 s is about 10 frames; the full-rate viewer gets about 60.
    assert!(
        (6..=13).contains(&slow_n),
        "capped viewer got {slow_n} frames in 2 s"
    );
    assert!(
        fast_n >= 3 * slow_n,
        "full-rate viewer got only {fast_n} frames"
    );
    for w in slow_parts.windows(2) {
        let gap = w[1].timestamp() - w[0].timestamp();
        // At most one source interval (33 ms) early, never more.
        assert!(
            gap >= 0.2 - 0.034 - 0.005,
            "capped viewer frames {gap:.3}s apart"
        );
    }
}

async fn parts_for(mut c: MjpegClient, window: Duration) -> Vec<Part> {
    let start = Instant::now();
    let mut parts = vec![];
    while start.elapsed() < window {
        parts.push(c.part().await);
    }
    parts
}

#[tokio::test]
async fn a_viewer_that_stops_reading_slows_nobody_and_is_dropped_after_the_send_timeout() {
    use tokio::io::AsyncWriteExt;
    // Big, incompressible frames fill socket buffers within a few frames.
    let script = Script {
        fps: 30.0,
        width: 640,
        height: 480,
        noise: true,
        ..Script::default()
    };
    let server = ServerConfig {
        send_timeout: Duration::from_secs(1),
        ..ServerConfig::default()
    };
    let srv = TestServer::start(
        vec![camera("cam", Scripted::new(script))],
        HttpConfig::default(),
        server,
    )
    .await;

    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.set_recv_buffer_size(4096).expect("rcvbuf");
    let mut stalled = sock.connect(srv.addr).await.expect("connect");
    stalled
        .write_all(b"GET /stream HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("request");
    srv.await_viewers(|n| n == 1).await;

    let mut reader = MjpegClient::connect(&srv.url("/stream")).await;
    srv.await_viewers(|n| n == 2).await;
    let start = Instant::now();
    let mut seqs = vec![];
    while start.elapsed() < Duration::from_secs(2) {
        seqs.push(reader.part().await.seq());
    }
    // The reader keeps the source's pace (about 60 frames) while the other viewer is stuck.
    assert!(
        seqs.len() >= 40,
        "reading viewer got {} frames in 2 s",
        seqs.len()
    );
    // The stalled viewer is cut once its socket has accepted nothing for the send timeout.
    srv.await_viewers(|n| n == 1).await;
    assert!(reader.part().await.seq() > *seqs.last().expect("frames"));
    drop(stalled);
}

#[tokio::test]
async fn max_viewers_answers_503_and_frees_the_slot_when_a_viewer_leaves() {
    let http = HttpConfig {
        max_viewers: 2,
        ..HttpConfig::default()
    };
    let srv = TestServer::start(
        vec![camera("cam", Scripted::new(Script::default()))],
        http,
        ServerConfig::default(),
    )
    .await;
    let mut a = MjpegClient::connect(&srv.url("/stream")).await;
    let mut b = MjpegClient::connect(&srv.url("/stream")).await;
    a.part().await;
    b.part().await;
    let full = reqwest::get(srv.url("/stream")).await.expect("request");
    assert_eq!(full.status(), 503);
    assert_eq!(full.headers()["retry-after"], "5");
    let text = full.text().await.expect("body");
    assert!(text.contains("too many viewers"), "{text}");
    drop(a);
    srv.await_viewers(|n| n == 1).await;
    let mut c = MjpegClient::connect(&srv.url("/stream")).await;
    c.part().await.decode();
    assert_eq!(srv.state.viewers(), 2);
}

#[tokio::test]
async fn latest_frame_is_resent_when_the_source_is_quiet() {
    // One frame, then silence (but no failure within the source timeout).
    let script = Script {
        hang_after: Some(1),
        ..Script::default()
    };
    let http = HttpConfig {
        keepalive: Duration::from_millis(300),
        ..HttpConfig::default()
    };
    let srv = TestServer::start(
        vec![camera("cam", Scripted::new(script))],
        http,
        ServerConfig::default(),
    )
    .await;
    let mut c = MjpegClient::connect(&srv.url("/stream")).await;
    let first = c.part().await;
    let again = c.part().await;
    assert_eq!(
        first.seq(),
        again.seq(),
        "keep-alive re-sends the latest frame"
    );
    assert_eq!(first.jpeg, again.jpeg);
    let gap = again
        .received
        .duration_since(first.received)
        .expect("order");
    assert!(
        gap >= Duration::from_millis(250),
        "re-sent after {gap:?}, not after the keep-alive interval"
    );
}

/// A camera that sends a frame every 5 s and never re-sends in between: any end of a stream
/// seen sooner than that came from something other than a frame write.
async fn slow_camera_server() -> TestServer {
    let script = Script {
        fps: 0.2,
        ..Script::default()
    };
    let http = HttpConfig {
        keepalive: Duration::from_secs(60),
        ..HttpConfig::default()
    };
    TestServer::start(
        vec![camera("cam", Scripted::new(script))],
        http,
        ServerConfig::default(),
    )
    .await
}

/// Issue 13: the server writes stream parts itself once hyper has sent the head, so hyper no
/// longer notices a viewer hanging up. The stream reads for that: a viewer that closes between
/// frames stops counting (and holding capture) at once, not two frame writes later.
#[tokio::test]
async fn a_viewer_that_hangs_up_between_frames_is_gone_at_once() {
    let srv = slow_camera_server().await;
    let mut c = MjpegClient::connect(&srv.url("/stream")).await;
    c.part().await;
    srv.await_viewers(|n| n == 1).await;
    let left = Instant::now();
    drop(c);
    srv.await_viewers(|n| n == 0).await;
    assert!(
        left.elapsed() < Duration::from_secs(3),
        "the viewer was counted for {:?} after it hung up; the next frame was 5 s away",
        left.elapsed()
    );
}

/// Issue 13: streams no longer poll the shutdown token per frame; shutdown wakes them through
/// their frame channels instead. Every kind of viewer (full size, a per-request size, a
/// rate-capped one) must still see its stream end at once, between frames.
#[tokio::test]
async fn shutdown_ends_every_kind_of_stream_between_frames() {
    let srv = slow_camera_server().await;
    let mut viewers = Vec::new();
    for path in ["/stream", "/stream?width=80", "/stream?fps=0.1"] {
        let mut c = MjpegClient::connect(&srv.url(path)).await;
        c.part().await;
        viewers.push((path, c));
    }
    srv.await_viewers(|n| n == 3).await;
    let started = Instant::now();
    srv.shutdown.cancel();
    for (path, mut c) in viewers {
        let end = tokio::time::timeout(WAIT, c.next_part())
            .await
            .unwrap_or_else(|_| panic!("{path}: the stream did not end at shutdown"));
        assert!(end.is_none(), "{path}: a part after shutdown, not the end");
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{path}: the stream ended {:?} after shutdown; the next frame was 5 s away",
            started.elapsed()
        );
    }
    srv.stop().await;
}
