//! The two wires on the bytes: browsers (an `Accept` asking for images, or
//! `?advance_headers=1`) get each part's header block right after the previous frame and no
//! `Content-Length`; every other client keeps `Content-Type`, `Content-Length` and
//! `X-Timestamp` on every part, byte for byte as before.

mod common;

use std::time::Duration;

use bytes::BytesMut;
use common::*;
use futures_util::StreamExt;
use mjpegd::http::HttpConfig;
use mjpegd::mjpeg::write::{ADVANCE_PREAMBLE, ADVANCE_TRAILER};
use mjpegd::server::ServerConfig;
use mjpegd::source::{Params, SourceSpec};

const CHROMIUM_IMG_ACCEPT: &str =
    "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8";

/// An image loop of two numbered 160x120 frames at `fps`.
async fn serve(fps: f64) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    for seq in [1, 2] {
        std::fs::write(
            dir.path().join(format!("{seq}.jpg")),
            numbered_jpeg(seq, 160, 120, false),
        )
        .expect("write");
    }
    let spec: SourceSpec = format!("images:{}", dir.path().display())
        .parse()
        .expect("spec");
    let params = Params {
        width: 160,
        height: 120,
        fps,
        quality: 70,
    };
    let cam = camera("cam", spec.opener(params).expect("opener"));
    let srv = TestServer::start(vec![cam], HttpConfig::default(), ServerConfig::default()).await;
    (srv, dir)
}

/// Reads the raw body of `url` (with `accept`, if any) until it holds `frames` advance-headers
/// trailers; returns it.
async fn raw_body(url: &str, accept: Option<&str>, frames: usize) -> BytesMut {
    let mut req = reqwest::Client::new().get(url);
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    let resp = req.send().await.expect("request");
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "multipart/x-mixed-replace;boundary=frame"
    );
    let mut body = resp.bytes_stream();
    let mut buf = BytesMut::new();
    tokio::time::timeout(WAIT, async {
        while memchr::memmem::find_iter(&buf, ADVANCE_TRAILER).count() < frames {
            match body.next().await {
                Some(Ok(chunk)) => buf.extend_from_slice(&chunk),
                other => panic!("stream ended: {other:?}"),
            }
        }
    })
    .await
    .expect("frames within the wait");
    buf
}

/// The JPEGs of an advance-headers body, checking its framing on the way.
fn advance_parts(body: &[u8]) -> Vec<Vec<u8>> {
    assert!(
        body.starts_with(ADVANCE_PREAMBLE),
        "{:?}",
        &body[..40.min(body.len())]
    );
    let rest = &body[ADVANCE_PREAMBLE.len()..];
    let mut parts: Vec<Vec<u8>> = Vec::new();
    let mut at = 0;
    for end in memchr::memmem::find_iter(rest, ADVANCE_TRAILER) {
        parts.push(rest[at..end].to_vec());
        at = end + ADVANCE_TRAILER.len();
    }
    // Each part's header block is exactly `Content-Type: image/jpeg`: the preamble and every
    // trailer end with it, so no Content-Length or X-Timestamp appears anywhere.
    assert!(memchr::memmem::find(body, b"Content-Length").is_none());
    assert!(memchr::memmem::find(body, b"X-Timestamp").is_none());
    parts
}

#[tokio::test]
async fn a_browser_gets_the_next_parts_headers_right_after_each_frame() {
    let (srv, _dir) = serve(10.0).await;
    for (accept, query) in [
        (Some(CHROMIUM_IMG_ACCEPT), ""),
        (None, "?advance_headers=1"),
    ] {
        let body = raw_body(&srv.url(&format!("/stream{query}")), accept, 4).await;
        let parts = advance_parts(&body);
        assert!(parts.len() >= 4);
        for jpeg in &parts {
            let mut d = zune_jpeg::JpegDecoder::new(&jpeg[..]);
            d.decode().expect("each part is a whole JPEG");
            assert_eq!(d.dimensions(), Some((160, 120)));
        }
        // The body so far ends with a complete header block: the next part is already open.
        assert!(body.ends_with(ADVANCE_TRAILER), "{accept:?} {query}");
    }
    srv.stop().await;
}

#[tokio::test]
async fn other_clients_keep_content_length_and_timestamp_on_every_part() {
    let (srv, _dir) = serve(10.0).await;
    let chrome_forced_off = ("/stream?advance_headers=0", Some(CHROMIUM_IMG_ACCEPT));
    for (path, accept) in [
        ("/stream", None),
        ("/stream", Some("*/*")),
        ("/stream", Some("image/jpeg")),
        ("/?action=stream", Some("*/*")),
        chrome_forced_off,
    ] {
        let mut req = reqwest::Client::new().get(srv.url(path));
        if let Some(a) = accept {
            req = req.header("accept", a);
        }
        let resp = req.send().await.expect("request");
        // The strict reader checks the preamble, the header lines and the trailing boundary.
        let mut c = MjpegClient::from_response(resp);
        for _ in 0..3 {
            let p = c.part().await;
            assert_eq!(p.header("content-type"), Some("image/jpeg"));
            assert_eq!(
                p.header("content-length").map(|l| l.parse::<usize>().ok()),
                Some(Some(p.jpeg.len())),
                "{path} {accept:?}"
            );
            assert!(p.timestamp() > 1.0e9);
            let names: Vec<&str> = p.headers.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(
                names,
                ["Content-Type", "Content-Length", "X-Timestamp"],
                "{path} {accept:?}"
            );
            p.decode();
        }
    }
    srv.stop().await;
}

#[tokio::test]
async fn the_keepalive_resend_goes_out_on_the_browser_wire_too() {
    // One frame every 5 s: in between, the latest frame is re-sent about every second.
    let (srv, _dir) = serve(0.2).await;
    let start = std::time::Instant::now();
    let body = raw_body(&srv.url("/stream"), Some(CHROMIUM_IMG_ACCEPT), 3).await;
    assert!(
        start.elapsed() < Duration::from_secs(4),
        "{:?}",
        start.elapsed()
    );
    let parts = advance_parts(&body);
    assert_eq!(parts.len(), 3);
    assert_eq!(parts[0], parts[1], "a re-send of the same frame");
    assert_eq!(parts[1], parts[2]);
    srv.stop().await;
}
