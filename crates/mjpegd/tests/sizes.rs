//! Per-request sizes: `?width=`/`?height=` on streams, each distinct size computed once per
//! frame for all its viewers, started with the first and stopped with the last; a bounded number
//! of sizes per camera; never upscaled; a camera's `stream_size` with full-size snapshots.

mod common;

use std::time::Duration;

use common::*;
use mjpegd::http::HttpConfig;
use mjpegd::hub::{CameraConfig, MAX_SIZES_PER_CAMERA};
use mjpegd::server::ServerConfig;
use mjpegd::source::{Params, SourceSpec};

/// A 320x240 test pattern at 10 fps.
fn pattern_camera() -> CameraConfig {
    let spec: SourceSpec = "testpattern".parse().expect("spec");
    let params = Params {
        width: 320,
        height: 240,
        fps: 10.0,
        quality: 70,
    };
    camera("cam", spec.opener(params).expect("opener"))
}

async fn serve(cam: CameraConfig) -> TestServer {
    let http = HttpConfig {
        public_state: true,
        ..HttpConfig::default()
    };
    TestServer::start(vec![cam], http, ServerConfig::default()).await
}

/// Polls `probe` until `ok`, bounded by `WAIT`.
async fn eventually<T: std::fmt::Debug>(
    what: &str,
    probe: impl Fn() -> T,
    ok: impl Fn(&T) -> bool,
) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let v = probe();
        if ok(&v) {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "waited {WAIT:?} for {what}; last: {v:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The decoded size of a few parts of `c` (all must agree).
async fn size_of(c: &mut MjpegClient) -> (usize, usize) {
    let first = c.part().await.decode();
    for _ in 0..3 {
        assert_eq!(c.part().await.decode(), first, "every part at one size");
    }
    first
}

#[tokio::test]
async fn viewers_asking_for_one_size_share_one_downscale_per_frame() {
    let srv = serve(pattern_camera()).await;
    let mut same: Vec<MjpegClient> = Vec::new();
    for _ in 0..3 {
        same.push(MjpegClient::connect(&srv.url("/stream?width=160")).await);
    }
    let mut tall = MjpegClient::connect(&srv.url("/stream?height=60")).await;
    let mut full = MjpegClient::connect(&srv.url("/stream")).await;
    for c in &mut same {
        assert_eq!(size_of(c).await, (160, 120));
    }
    assert_eq!(size_of(&mut tall).await, (80, 60));
    assert_eq!(size_of(&mut full).await, (320, 240));

    let cam = srv.camera();
    let sizes = cam.sizes();
    assert_eq!(sizes.len(), 2, "{sizes:?}");
    let by_width = sizes
        .iter()
        .find(|s| s.bounds == (160, u32::MAX))
        .expect("the width=160 size");
    assert_eq!(by_width.viewers, 3);
    let captured = cam
        .stats()
        .frames_captured
        .load(std::sync::atomic::Ordering::Relaxed);
    // Three viewers each got frames; a downscale per viewer would be about 3x the captures.
    assert!(
        by_width.frames_scaled >= 4 && by_width.frames_scaled <= captured,
        "scaled {} frames for 3 viewers of {captured} captured",
        by_width.frames_scaled
    );

    // /api/state shows each viewer's size and the sizes computed.
    let state: serde_json::Value = reqwest::get(srv.url("/api/state"))
        .await
        .expect("state")
        .json()
        .await
        .expect("json");
    let cam_state = &state["cameras"][0];
    assert_eq!(
        cam_state["sizes"].as_array().map(Vec::len),
        Some(2),
        "{cam_state}"
    );
    let widths: Vec<_> = cam_state["viewer_list"]
        .as_array()
        .expect("viewer_list")
        .iter()
        .map(|v| {
            (
                v["requested_width"].as_u64(),
                v["requested_height"].as_u64(),
                v["advance_headers"].as_bool(),
            )
        })
        .collect();
    assert_eq!(
        widths
            .iter()
            .filter(|w| **w == (Some(160), None, Some(false)))
            .count(),
        3,
        "{widths:?}"
    );
    assert!(
        widths.contains(&(None, Some(60), Some(false))),
        "{widths:?}"
    );
    assert!(widths.contains(&(None, None, Some(false))), "{widths:?}");

    // The size stops with its last viewer, the other sizes live on.
    same.truncate(1);
    eventually(
        "two width=160 viewers gone",
        || cam.sizes(),
        |s| {
            s.iter()
                .any(|z| z.bounds == (160, u32::MAX) && z.viewers == 1)
        },
    )
    .await;
    drop(same);
    eventually(
        "the width=160 size stopped",
        || cam.sizes(),
        |s| s.len() == 1 && s[0].bounds == (u32::MAX, 60),
    )
    .await;
    drop(tall);
    eventually("every size stopped", || cam.sizes(), Vec::is_empty).await;
    assert_eq!(size_of(&mut full).await, (320, 240));
    drop(full);
    eventually("no demand left", || cam.demand().watchers, |w| *w == 0).await;
    srv.stop().await;
}

#[tokio::test]
async fn sizes_past_the_limit_are_refused_with_400() {
    let srv = serve(pattern_camera()).await;
    let mut held = Vec::new();
    for i in 0..MAX_SIZES_PER_CAMERA {
        let mut c =
            MjpegClient::connect(&srv.url(&format!("/stream?width={}", 100 + 10 * i))).await;
        assert_eq!(size_of(&mut c).await.0, 100 + 10 * i);
        held.push(c);
    }
    let resp = reqwest::get(srv.url("/stream?width=90"))
        .await
        .expect("request");
    assert_eq!(resp.status(), 400);
    let body = resp.text().await.expect("body");
    assert!(body.contains("different sizes"), "{body}");
    // Sizes in use stay open to more viewers, and so do full-size streams.
    let mut again = MjpegClient::connect(&srv.url("/stream?width=100")).await;
    assert_eq!(size_of(&mut again).await, (100, 75));
    let mut full = MjpegClient::connect(&srv.url("/cameras/cam/stream")).await;
    assert_eq!(size_of(&mut full).await, (320, 240));
    // A freed slot takes a new size.
    held.remove(1);
    let cam = srv.camera();
    eventually(
        "the width=110 size stopped",
        || cam.sizes().len(),
        |n| *n < MAX_SIZES_PER_CAMERA,
    )
    .await;
    let mut new = MjpegClient::connect(&srv.url("/stream?width=90")).await;
    assert_eq!(size_of(&mut new).await, (90, 68));
    for bad in ["/stream?width=15", "/stream?height=9000", "/stream?width=x"] {
        let resp = reqwest::get(srv.url(bad)).await.expect("request");
        assert_eq!(resp.status(), 400, "{bad}");
    }
    srv.stop().await;
}

#[tokio::test]
async fn sizes_fit_inside_and_never_upscale() {
    let srv = serve(pattern_camera()).await;
    // Both sides given: fit inside, keeping 4:3.
    let mut boxed = MjpegClient::connect(&srv.url("/stream?width=200&height=100")).await;
    assert_eq!(size_of(&mut boxed).await, (133, 100));
    // Larger than the source: the source's own frames, not re-encoded.
    let mut big = MjpegClient::connect(&srv.url("/stream?width=1000")).await;
    let part = big.part().await;
    assert_eq!(part.decode(), (320, 240));
    let cam = srv.camera();
    let sizes = cam.sizes();
    let pass = sizes
        .iter()
        .find(|s| s.bounds == (1000, u32::MAX))
        .expect("the width=1000 size");
    assert_eq!(pass.frames_scaled, 0, "a frame that fits is passed through");
    srv.stop().await;
}

#[tokio::test]
async fn a_stream_size_makes_streams_small_and_leaves_snapshots_full() {
    let mut cam = pattern_camera();
    cam.stream_size = Some((160, 160));
    let srv = serve(cam).await;
    let mut c = MjpegClient::connect(&srv.url("/stream")).await;
    assert_eq!(size_of(&mut c).await, (160, 120));
    // A viewer's own size wins over the camera's stream_size.
    let mut own = MjpegClient::connect(&srv.url("/stream?width=320")).await;
    assert_eq!(size_of(&mut own).await, (320, 240));
    let snap = reqwest::get(srv.url("/snapshot.jpg"))
        .await
        .expect("snapshot")
        .bytes()
        .await
        .expect("body");
    let mut d = zune_jpeg::JpegDecoder::new(&snap[..]);
    d.decode().expect("snapshot decodes");
    assert_eq!(
        d.dimensions(),
        Some((320, 240)),
        "snapshots stay at the full size"
    );
    srv.stop().await;
}
