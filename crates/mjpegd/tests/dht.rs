//! Huffman tables on every frame, whatever the source: a JPEG without DHT (as many USB cameras
//! send MJPEG) fed through `exec:` and through an HTTP relay leaves mjpegd with the standard
//! tables, and decodes to the same pixels as the encoder's own frame.

// The relay case needs the relay feature; without it its imports go unused.
#![cfg_attr(not(feature = "relay"), allow(unused_imports, dead_code))]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use mjpegd::http::HttpConfig;
use mjpegd::render::Canvas;
use mjpegd::server::ServerConfig;
use mjpegd::source::{Params, SourceSpec};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A JPEG from our encoder (it writes DHT segments), distinct enough to compare pixels.
fn original() -> Vec<u8> {
    let mut c = Canvas::new(96, 64, [20, 40, 60]);
    c.fill_rect(10, 10, 40, 30, [250, 200, 0]);
    c.text(4, 44, 1, [255, 255, 255], "DHT test");
    c.encode(85).expect("encode").to_vec()
}

/// The header segments of a JPEG up to its first scan, as (marker, offset).
fn segments(jpeg: &[u8]) -> Vec<(u8, usize)> {
    let mut out = Vec::new();
    let mut pos = 2;
    while pos + 4 <= jpeg.len() && jpeg[pos] == 0xFF {
        let marker = jpeg[pos + 1];
        out.push((marker, pos));
        if marker == 0xDA {
            break;
        }
        pos += 2 + usize::from(u16::from_be_bytes([jpeg[pos + 2], jpeg[pos + 3]]));
    }
    out
}

/// Removes every DHT segment before the first scan, as UVC cameras send frames.
fn strip_dht(jpeg: &[u8]) -> Vec<u8> {
    let mut out = jpeg[..2].to_vec();
    for (marker, pos) in segments(jpeg) {
        if marker == 0xDA {
            out.extend_from_slice(&jpeg[pos..]);
            break;
        }
        let len = usize::from(u16::from_be_bytes([jpeg[pos + 2], jpeg[pos + 3]]));
        if marker != 0xC4 {
            out.extend_from_slice(&jpeg[pos..pos + 2 + len]);
        }
    }
    out
}

fn has_dht(jpeg: &[u8]) -> bool {
    segments(jpeg).iter().any(|(m, _)| *m == 0xC4)
}

fn pixels(jpeg: &[u8]) -> Result<Vec<u8>, String> {
    zune_jpeg::JpegDecoder::new(jpeg)
        .decode()
        .map_err(|e| format!("{e:?}"))
}

/// The stripped frame, checked to be what a table-less camera sends: no DHT, not decodable.
fn stripped() -> Vec<u8> {
    let s = strip_dht(&original());
    assert!(!has_dht(&s) && segments(&s).last().map(|l| l.0) == Some(0xDA));
    assert!(
        pixels(&s).is_err(),
        "a decoder must refuse a frame without tables"
    );
    s
}

async fn serve(spec: &str) -> TestServer {
    let spec: SourceSpec = spec.parse().expect("spec");
    let params = Params {
        width: 160,
        height: 120,
        fps: 10.0,
        quality: 70,
    };
    let cam = camera("cam", spec.opener(params).expect("opener"));
    TestServer::start(vec![cam], HttpConfig::default(), ServerConfig::default()).await
}

/// The first live (96x64, not the 160x120 no-signal) frame of the stream and of a snapshot
/// carry Huffman tables and decode to the original's pixels.
async fn assert_frames_have_tables(srv: &TestServer) {
    let want = pixels(&original()).expect("original decodes");
    let mut c = MjpegClient::connect(&srv.url("/stream")).await;
    let part = tokio::time::timeout(WAIT, async {
        loop {
            let p = c.part().await;
            if p.decode() == (96, 64) {
                return p;
            }
        }
    })
    .await
    .expect("a live frame within the wait");
    assert!(has_dht(&part.jpeg), "streamed frame without DHT");
    assert_eq!(pixels(&part.jpeg).expect("decodes"), want);
    let snap = reqwest::get(srv.url("/snapshot.jpg"))
        .await
        .expect("snapshot")
        .bytes()
        .await
        .expect("snapshot body");
    assert!(has_dht(&snap), "snapshot without DHT");
    assert_eq!(pixels(&snap).expect("snapshot decodes"), want);
}

#[tokio::test]
async fn a_dht_less_jpeg_from_exec_leaves_with_huffman_tables() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("no-dht.jpg");
    std::fs::write(&file, stripped()).expect("write");
    // A camera's MJPEG copied through as ffmpeg `-c copy` would: bare JPEGs on stdout.
    let srv = serve(&format!(
        "exec:while :; do cat '{}'; sleep 0.1; done",
        file.display()
    ))
    .await;
    assert_frames_have_tables(&srv).await;
    srv.stop().await;
}

/// An upstream MJPEG server sending the table-less frame ten times a second.
#[cfg(feature = "relay")]
async fn dht_less_upstream() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let jpeg = Arc::new(stripped());
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            let jpeg = Arc::clone(&jpeg);
            tokio::spawn(async move {
                let mut req = [0u8; 1024];
                let _ = sock.read(&mut req).await;
                let head = "HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace;boundary=cam\r\n\r\n";
                if sock.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                loop {
                    let mut part = format!(
                        "--cam\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
                        jpeg.len()
                    )
                    .into_bytes();
                    part.extend_from_slice(&jpeg);
                    part.extend_from_slice(b"\r\n");
                    if sock.write_all(&part).await.is_err() {
                        return;
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            });
        }
    });
    addr
}

#[cfg(feature = "relay")]
#[tokio::test]
async fn a_dht_less_jpeg_from_an_http_relay_leaves_with_huffman_tables() {
    let upstream = dht_less_upstream().await;
    let srv = serve(&format!("http://{upstream}/stream")).await;
    assert_frames_have_tables(&srv).await;
    srv.stop().await;
}
