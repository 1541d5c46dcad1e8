//! `drop_same_frames`: a static scene is sent twice, then only as the keep-alive re-send.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use common::*;
use mjpegd::http::HttpConfig;
use mjpegd::server::ServerConfig;
use mjpegd::source::{Params, SourceSpec};

/// A folder with one image, played at 20 fps: a static scene.
async fn static_scene(drop_same: bool) -> (TestServer, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("still.jpg"),
        numbered_jpeg(7, 160, 120, false),
    )
    .expect("write");
    let spec: SourceSpec = format!("images:{}", dir.path().display())
        .parse()
        .expect("spec");
    let params = Params {
        width: 160,
        height: 120,
        fps: 20.0,
        quality: 70,
    };
    let mut cam = camera("cam", spec.opener(params).expect("opener"));
    cam.drop_same_frames = drop_same;
    let srv = TestServer::start(vec![cam], HttpConfig::default(), ServerConfig::default()).await;
    (srv, dir)
}

/// Parts received in `window` after the first, with their arrival times.
async fn parts_for(c: &mut MjpegClient, window: Duration) -> Vec<(Instant, Part)> {
    let first = c.part().await;
    let start = Instant::now();
    let mut out = vec![(start, first)];
    while let Ok(p) = tokio::time::timeout(window.saturating_sub(start.elapsed()), c.part()).await {
        out.push((Instant::now(), p));
    }
    out
}

#[tokio::test]
async fn identical_frames_are_sent_twice_then_only_as_keepalive() {
    let (srv, _dir) = static_scene(true).await;
    let mut c = MjpegClient::connect(&srv.url("/stream")).await;
    let parts = parts_for(&mut c, Duration::from_millis(3500)).await;
    for (_, p) in &parts {
        p.decode();
        assert_eq!(p.seq(), 7);
    }
    // 20 fps would be ~70 parts. Dropped: the frame, its one repeat, then a keep-alive re-send
    // about every second.
    assert!(
        (3..=7).contains(&parts.len()),
        "{} parts in 3.5 s of a static scene",
        parts.len()
    );
    // The first two are two publications (two capture stamps) close together: the frame sent twice.
    let (t0, p0) = &parts[0];
    let (t1, p1) = &parts[1];
    assert_ne!(
        p0.timestamp(),
        p1.timestamp(),
        "the repeat is a new publication"
    );
    assert!(t1.duration_since(*t0) < Duration::from_millis(500));
    // After that only re-sends of the same publication, about a second apart.
    for w in parts[1..].windows(2) {
        assert_eq!(
            w[0].1.timestamp(),
            w[1].1.timestamp(),
            "a keep-alive re-send"
        );
        assert!(w[1].0.duration_since(w[0].0) >= Duration::from_millis(700));
    }
    let cam = srv.camera();
    assert!(cam.stats().frames_same.load(Ordering::Relaxed) >= 40);
    drop(c);
    srv.stop().await;
}

#[tokio::test]
async fn without_the_flag_every_frame_is_sent() {
    let (srv, _dir) = static_scene(false).await;
    let mut c = MjpegClient::connect(&srv.url("/stream")).await;
    let parts = parts_for(&mut c, Duration::from_millis(1500)).await;
    assert!(
        parts.len() >= 15,
        "{} parts in 1.5 s at 20 fps",
        parts.len()
    );
    assert_eq!(
        Arc::clone(&srv.camera())
            .stats()
            .frames_same
            .load(Ordering::Relaxed),
        0
    );
    srv.stop().await;
}
