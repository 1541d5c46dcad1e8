//! HTTP/2: h2c with prior knowledge on plain TCP, ALPN `h2` over TLS with HTTP/1.1 kept, and
//! the live-stream rules per HTTP/2 stream: the newest frame for a viewer that was stalled, at
//! most one frame queued by a stalled stream, a connection that stops reading cut by the write
//! timeout, a clean end at shutdown. Frames are decoded with a real decoder.

mod common;

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use futures_util::StreamExt;
use mjpegd::http::HttpConfig;
use mjpegd::server::ServerConfig;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// A client that speaks HTTP/2 without asking (h2c with prior knowledge).
fn h2c_client() -> reqwest::Client {
    install_crypto_provider();
    reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .expect("client")
}

fn scripted_cameras(names: &[&str], script: &Script) -> Vec<mjpegd::hub::CameraConfig> {
    names
        .iter()
        .map(|n| camera(n, Scripted::new(script.clone())))
        .collect()
}

#[tokio::test]
async fn h2c_with_prior_knowledge_serves_pages_snapshots_and_live_streams() {
    let names = ["a", "b", "c", "d", "e", "f"];
    let server = TestServer::start(
        scripted_cameras(&names, &Script::default()),
        HttpConfig::default(),
        ServerConfig::default(),
    )
    .await;
    let client = h2c_client();

    // Six cameras: over HTTP/1.1 the grid would show snapshots past four; over HTTP/2 one
    // connection carries every stream, so every tile streams.
    let page = client.get(server.url("/")).send().await.expect("page");
    assert_eq!(page.version(), reqwest::Version::HTTP_2);
    assert_eq!(page.status(), 200);
    let html = page.text().await.expect("html");
    assert_eq!(
        html.matches("data-mode=\"stream\"").count(),
        names.len(),
        "{html}"
    );
    assert!(!html.contains("data-mode=\"snapshot\""));
    let h1_page = reqwest::get(server.url("/")).await.expect("HTTP/1.1 page");
    assert_eq!(h1_page.version(), reqwest::Version::HTTP_11);
    let h1_html = h1_page.text().await.expect("html");
    assert_eq!(
        h1_html.matches("data-mode=\"snapshot\"").count(),
        names.len()
    );

    let snap = client
        .get(server.url("/cameras/b/snapshot.jpg"))
        .send()
        .await
        .expect("snapshot");
    assert_eq!(snap.version(), reqwest::Version::HTTP_2);
    assert_eq!(snap.status(), 200);
    let jpeg = snap.bytes().await.expect("jpeg");
    assert_eq!(
        zune_jpeg::JpegDecoder::new(&jpeg[..])
            .decode()
            .expect("decodes")
            .len(),
        160 * 120 * 3
    );

    // Every camera live at once over the one connection (reqwest keeps one per host for h2).
    let mut viewers = Vec::new();
    for n in names {
        let resp = client
            .get(server.url(&format!("/cameras/{n}/stream")))
            .send()
            .await
            .expect("stream");
        assert_eq!(resp.version(), reqwest::Version::HTTP_2);
        assert_eq!(resp.status(), 200);
        let ct = resp.headers()["content-type"].to_str().expect("ascii");
        assert!(ct.starts_with("multipart/x-mixed-replace"), "{ct}");
        assert!(resp.headers().get("connection").is_none());
        viewers.push(MjpegClient::from_response(resp));
    }
    for v in &mut viewers {
        let mut last = 0;
        for _ in 0..3 {
            let part = v.part().await;
            assert_eq!(part.decode(), (160, 120));
            assert!(part.seq() > last, "frames in order, each newer");
            last = part.seq();
        }
    }
    let cams = server.state.hub().cameras();
    assert!(cams.iter().all(|c| c.viewer_list().len() == 1));

    // mjpg-streamer's URL and the browser wire work over HTTP/2 as well.
    let resp = client
        .get(server.url("/?action=stream"))
        .header("accept", "image/avif,image/webp,*/*")
        .send()
        .await
        .expect("stream");
    let mut body = resp.bytes_stream();
    let mut got = Vec::new();
    while memchr::memmem::find_iter(&got, b"\xff\xd9").count() < 2 {
        let chunk = tokio::time::timeout(WAIT, body.next())
            .await
            .expect("advance-headers stream stalled")
            .expect("open")
            .expect("chunk");
        got.extend_from_slice(&chunk);
    }
    assert!(got.starts_with(b"--frame\r\nContent-Type: image/jpeg\r\n"));
    assert!(
        !got.windows(15).any(|w| w == b"Content-Length:"),
        "the browser wire sends no Content-Length"
    );
    drop(body);

    // Leaving frees each viewer's place at once: a reset h2 stream, not a closed socket.
    drop(viewers);
    server.await_viewers(|n| n == 0).await;
    server.stop().await;
}

#[cfg(feature = "tls")]
#[tokio::test]
async fn https_offers_h2_by_alpn_and_keeps_http1_for_clients_without_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let pem = write_self_signed(&cert, &key);
    let tls = mjpegd::tls::TlsConfig::load(&cert, &key).expect("tls");
    let server = TestServer::start_tls(scripted_cameras(&["a"], &Script::default()), tls).await;
    let addr = server.addr;
    let url = format!("https://localhost:{}/cameras/a/stream", addr.port());

    let h2 = tls_client(&pem, addr);
    let resp = h2.get(&url).send().await.expect("h2 stream");
    assert_eq!(resp.version(), reqwest::Version::HTTP_2, "ALPN chose h2");
    let mut v = MjpegClient::from_response(resp);
    let first = v.part().await.seq();
    assert!(v.part().await.seq() > first);

    let h1 = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).expect("pem"))
        .resolve("localhost", addr)
        .http1_only()
        .build()
        .expect("client");
    let resp = h1.get(&url).send().await.expect("h1 stream");
    // HTTP/1: the stream's answer is close-delimited, HTTP/1.0-style, as always.
    assert_eq!(resp.version(), reqwest::Version::HTTP_10);
    let mut w = MjpegClient::from_response(resp);
    assert_eq!(w.part().await.decode(), (160, 120));

    // Shutdown ends both streams cleanly: the HTTP/2 one with the end of its stream (then
    // GOAWAY), the HTTP/1.1 one with the close.
    server.shutdown.cancel();
    for c in [&mut v, &mut w] {
        let end =
            tokio::time::timeout(WAIT, async { while c.next_part().await.is_some() {} }).await;
        assert!(end.is_ok(), "stream did not end at shutdown");
    }
    server.stop().await;
}

/// A socket that stops reading when told: the peer of a client gone quiet without closing.
struct Freezable<S> {
    inner: S,
    frozen: Arc<AtomicBool>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Freezable<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.frozen.load(Ordering::SeqCst) {
            // Never woken again: the client reads nothing more, for good.
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Freezable<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A raw HTTP/2 connection (the `h2` crate: flow control under the test's hand) with
/// per-stream window `window`; returns the request sender and the switch that freezes it.
async fn raw_h2(
    addr: std::net::SocketAddr,
    window: u32,
) -> (h2::client::SendRequest<Bytes>, Arc<AtomicBool>) {
    let tcp = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let frozen = Arc::new(AtomicBool::new(false));
    let io = Freezable {
        inner: tcp,
        frozen: Arc::clone(&frozen),
    };
    let (send, conn) = h2::client::Builder::new()
        .initial_window_size(window)
        .initial_connection_window_size(64 << 20)
        .handshake(io)
        .await
        .expect("h2 handshake");
    tokio::spawn(async move {
        let _ = conn.await;
    });
    (send, frozen)
}

/// Opens `n` streams of `path` on `send`; their bodies are left unread (the window stays shut).
async fn open_streams(
    send: &h2::client::SendRequest<Bytes>,
    addr: std::net::SocketAddr,
    path: &str,
    n: usize,
) -> Vec<h2::RecvStream> {
    let mut bodies = Vec::new();
    for _ in 0..n {
        let req = axum::http::Request::get(format!("http://{addr}{path}"))
            .body(())
            .expect("request");
        let mut s = send.clone().ready().await.expect("ready");
        let (resp, _) = s.send_request(req, true).expect("send");
        let resp = tokio::time::timeout(WAIT, resp)
            .await
            .expect("response head")
            .expect("response");
        assert_eq!(resp.status(), 200);
        bodies.push(resp.into_body());
    }
    bodies
}

/// A body read as a client normally does: every chunk's window given back at once.
fn drained(
    body: h2::RecvStream,
) -> futures_util::stream::BoxStream<'static, Result<Bytes, String>> {
    futures_util::stream::unfold(body, |mut b| async move {
        let chunk = b.data().await?;
        let chunk = chunk.map_err(|e| e.to_string());
        if let Ok(c) = &chunk {
            let _ = b.flow_control().release_capacity(c.len());
        }
        Some((chunk, b))
    })
    .boxed()
}

/// Waits until the source has made `more` frames beyond what it had made.
async fn frames_later(source: &Scripted, more: usize) {
    let target = source.produced.load(Ordering::SeqCst) + more;
    tokio::time::timeout(WAIT, async {
        while source.produced.load(Ordering::SeqCst) < target {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("the camera kept producing frames");
}

#[tokio::test]
async fn sixteen_stalled_http2_streams_hold_one_frame_each_and_a_resumed_one_gets_the_newest() {
    let source = Scripted::new(Script {
        noise: true,
        ..Script::default()
    });
    let server = TestServer::with_source(source.clone()).await;
    // A 1 KiB stream window: the first frame (incompressible, ~20 KiB) alone overfills it, and
    // nothing of the client's reading gives it back.
    let (send, _frozen) = raw_h2(server.addr, 1024).await;
    let mut bodies = open_streams(&send, server.addr, "/cameras/cam/stream", 16).await;
    let cam = server.camera();
    let sent = |cam: &mjpegd::hub::Camera| {
        cam.viewer_list()
            .iter()
            .map(|v| v.frames.load(Ordering::SeqCst))
            .collect::<Vec<_>>()
    };
    tokio::time::timeout(WAIT, async {
        while sent(&cam) != vec![1; 16] {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("every stream should get its first frame: {:?}", sent(&cam)));

    // A second of frames later, no stalled stream has taken another: each holds the one
    // frame it was given (shared, not copied), whatever the camera makes meanwhile.
    frames_later(&source, 30).await;
    assert_eq!(
        sent(&cam),
        vec![1; 16],
        "a stalled stream was given more frames"
    );

    // One viewer reads again: what comes after its first frame is the newest frame, not the
    // ones it missed; the others stay where they were.
    let resumed = bodies.remove(0);
    let mut v = MjpegClient::from_body(Default::default(), drained(resumed));
    let first = v.part().await;
    assert_eq!(first.decode(), (160, 120));
    let newest_then = source.produced.load(Ordering::SeqCst) as u64;
    let second = v.part().await;
    assert_eq!(second.decode(), (160, 120));
    assert!(
        second.seq() > first.seq() + 20 && second.seq() + 2 >= newest_then,
        "after a stall the viewer gets the newest frame: first {}, then {}, newest {}",
        first.seq(),
        second.seq(),
        newest_then
    );
    let counts = sent(&cam);
    assert_eq!(counts.iter().filter(|&&n| n == 1).count(), 15, "{counts:?}");
    let skipped: u64 = cam
        .viewer_list()
        .iter()
        .map(|v| v.skipped.load(Ordering::SeqCst))
        .sum();
    assert!(
        skipped >= 20,
        "the resumed viewer's skipped frames are counted: {skipped}"
    );

    drop(bodies);
    drop(v);
    drop(send);
    server.await_viewers(|n| n == 0).await;
    server.stop().await;
}

#[tokio::test]
async fn an_http2_connection_that_stops_reading_is_cut_by_the_write_timeout() {
    // Large incompressible frames and wide-open windows: the server writes until the socket's
    // buffers are full, then waits on a client that never reads again.
    let source = Scripted::new(Script {
        width: 640,
        height: 480,
        noise: true,
        ..Script::default()
    });
    let server = TestServer::start(
        vec![camera("cam", source.clone())],
        HttpConfig::default(),
        ServerConfig {
            send_timeout: Duration::from_millis(500),
            ..ServerConfig::default()
        },
    )
    .await;
    let (send, frozen) = raw_h2(server.addr, 2 << 20).await;
    let bodies = open_streams(&send, server.addr, "/cameras/cam/stream", 16).await;
    let bodies: Vec<_> = bodies.into_iter().map(drained).collect();
    let mut readers: Vec<_> = bodies
        .into_iter()
        .map(|b| MjpegClient::from_body(Default::default(), b))
        .collect();
    for r in &mut readers {
        assert_eq!(r.part().await.decode(), (640, 480));
    }
    assert_eq!(server.camera().viewer_list().len(), 16);

    frozen.store(true, Ordering::SeqCst);
    // Every stream of the connection goes when the write timeout cuts it.
    server.await_viewers(|n| n == 0).await;
    // And the server still serves: a new viewer gets frames.
    let mut again = MjpegClient::connect(&server.url("/cameras/cam/stream")).await;
    assert_eq!(again.part().await.decode(), (640, 480));
    drop(readers);
    server.stop().await;
}

#[tokio::test]
async fn a_quiet_camera_keeps_its_http2_viewers_with_the_latest_frame_again() {
    // The camera stops after three frames without failing: viewers get the last one again
    // every keep-alive period, as over HTTP/1.
    let source = Scripted::new(Script {
        hang_after: Some(3),
        ..Script::default()
    });
    let server = TestServer::start(
        vec![camera("cam", source)],
        HttpConfig {
            keepalive: Duration::from_millis(200),
            ..HttpConfig::default()
        },
        ServerConfig::default(),
    )
    .await;
    let resp = h2c_client()
        .get(server.url("/cameras/cam/stream"))
        .send()
        .await
        .expect("stream");
    assert_eq!(resp.version(), reqwest::Version::HTTP_2);
    let mut v = MjpegClient::from_response(resp);
    let mut seqs = Vec::new();
    for _ in 0..6 {
        let p = v.part().await;
        p.decode();
        seqs.push(p.seq());
    }
    assert_eq!(
        seqs[3..],
        [3, 3, 3],
        "the latest frame again while the camera is quiet: {seqs:?}"
    );
    server.stop().await;
}

#[tokio::test]
async fn an_http2_preface_without_a_request_is_closed_at_the_head_time_limit() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = TestServer::start(
        vec![camera("cam", Scripted::new(Script::default()))],
        HttpConfig::default(),
        ServerConfig {
            header_read_timeout: Duration::from_millis(500),
            ..ServerConfig::default()
        },
    )
    .await;
    let mut tcp = tokio::net::TcpStream::connect(server.addr)
        .await
        .expect("connect");
    tcp.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
        .await
        .expect("preface");
    let started = std::time::Instant::now();
    let mut sink = Vec::new();
    // The server's SETTINGS, then the close; never a request, so never a stream.
    let read = tokio::time::timeout(WAIT, tcp.read_to_end(&mut sink)).await;
    assert!(read.is_ok(), "the silent connection was kept open");
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_secs(5),
        "closed after {waited:?}, the limit being 500 ms"
    );
    // A client that does ask is served past that limit.
    let client = h2c_client();
    let mut v = MjpegClient::from_response(
        client
            .get(server.url("/cameras/cam/stream"))
            .send()
            .await
            .expect("stream"),
    );
    v.part().await;
    tokio::time::sleep(Duration::from_millis(700)).await;
    v.part().await.decode();
    server.stop().await;
}
