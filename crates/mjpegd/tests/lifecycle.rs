//! Capture lifecycle end to end over real sockets: starts on the first viewer, stops after the
//! idle timeout, restarts; a failing source shows "no signal" without dropping viewers, and
//! recovers on the same connection. The timing itself (idle timeout, source timeout, no-signal
//! interval, backoff) is tested exactly on a paused clock in `src/hub/tests.rs`.

mod common;

use std::time::{Duration, Instant};

use common::*;
use mjpegd::http::HttpConfig;
use mjpegd::hub::Demand;
use mjpegd::server::ServerConfig;

async fn await_demand(srv: &TestServer, pred: impl Fn(&Demand) -> bool) {
    let mut rx = srv.camera().watch_demand();
    tokio::time::timeout(WAIT, rx.wait_for(|d| pred(d)))
        .await
        .expect("demand condition not reached in time")
        .expect("camera gone");
}

/// Waits until `cond` holds; fails after `WAIT`.
async fn eventually(what: &str, cond: impl Fn() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < WAIT, "not within {WAIT:?}: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn capture_starts_on_first_viewer_stops_when_idle_and_restarts() {
    let src = Scripted::new(Script::default());
    let mut cam = camera("cam", src.clone());
    // The idle timeout's exact timing is tested on a paused clock (src/hub/tests.rs); here, over
    // real sockets, that leaving stops capture and returning restarts it.
    cam.idle_timeout = Duration::from_millis(100);
    let srv = TestServer::start(vec![cam], HttpConfig::default(), ServerConfig::default()).await;

    assert_eq!(src.opens(), 0, "no capture before a viewer");
    assert!(!srv.camera().demand().running);

    let mut c = MjpegClient::connect(&srv.url("/stream")).await;
    c.part().await.decode();
    assert!(srv.camera().demand().running);
    assert_eq!(src.opens(), 1);
    drop(c);

    let left = Instant::now();
    await_demand(&srv, |d| d.watchers == 0).await;
    await_demand(&srv, |d| !d.running).await;
    let idle = left.elapsed();
    assert!(
        idle >= Duration::from_millis(90),
        "stopped after {idle:?}, before the idle timeout"
    );
    // The capture task clears the frame just after it marks itself stopped.
    eventually("a stopped camera keeps no stale frame", || {
        srv.camera().latest().is_none()
    })
    .await;
    let produced = src.produced.load(std::sync::atomic::Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        src.produced.load(std::sync::atomic::Ordering::SeqCst),
        produced,
        "no frames are produced while idle"
    );

    let mut again = MjpegClient::connect(&srv.url("/stream")).await;
    let first = again.part().await;
    assert_eq!(src.opens(), 2, "the next viewer restarts capture");
    assert!(first.seq() > produced as u64 - 1);
}

#[tokio::test]
async fn a_viewer_returning_within_the_idle_timeout_keeps_the_same_capture() {
    let src = Scripted::new(Script::default());
    let srv = TestServer::with_source(src.clone()).await; // idle timeout 10 s
    let mut c = MjpegClient::connect(&srv.url("/stream")).await;
    c.part().await;
    drop(c);
    await_demand(&srv, |d| d.watchers == 0).await;
    let mut c = MjpegClient::connect(&srv.url("/stream")).await;
    c.part().await;
    assert_eq!(src.opens(), 1);
}

#[tokio::test]
async fn failing_source_shows_no_signal_then_live_video_on_the_same_connection() {
    // Opening 1 delivers 5 frames then fails; opening 2 fails at once; opening 3 is healthy.
    let script = Script {
        fail_after: Some(5),
        failing_opens: vec![2],
        ..Script::default()
    };
    let failing = Scripted::new(script);
    let srv = TestServer::with_source(failing.clone()).await;
    let mut c = MjpegClient::connect(&srv.url("/stream")).await;
    let mut live = 0;
    let mut no_signal = 0;
    let started = Instant::now();
    // Watch until live frames come back after the outage.
    while started.elapsed() < WAIT {
        let p = c.part().await;
        assert_eq!(
            p.decode(),
            (160, 120),
            "no-signal frames have the camera's size"
        );
        match seq_of(&p.jpeg) {
            Some(_) if no_signal == 0 => live += 1,
            Some(_) => break,
            None => {
                no_signal += 1;
                if no_signal > 1 {
                    // Later no-signal parts may be keep-alive re-sends racing the recovery.
                    continue;
                }
                // The outage lasts at least the 1 s + 2 s of backoff: the snapshot sees it too.
                let snap = reqwest::get(srv.url("/snapshot.jpg"))
                    .await
                    .expect("snapshot");
                assert_eq!(snap.headers()["x-mjpegd-online"], "false");
            }
        }
    }
    // Latest-frame semantics: the 5th frame may be replaced by no-signal before it is sent.
    assert!(
        (3..=5).contains(&live),
        "{live} live frames before the failure"
    );
    assert!(no_signal >= 1, "no-signal frames during the outage");
    assert!(failing.opens() >= 3, "the source was retried");
    // Cleared by the capture task just after it publishes the first live frame.
    eventually("the error is cleared after recovery", || {
        srv.camera().last_error().is_none()
    })
    .await;
    assert!(
        srv.camera()
            .stats()
            .source_errors
            .load(std::sync::atomic::Ordering::Relaxed)
            >= 2
    );
}
