//! Many cameras in one server: per-camera URLs, mjpg-streamer's numbered inputs, transforms,
//! thumbnails, `/api/state`, `/metrics`, the grid page and the config file.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::*;
use mjpegd::http::HttpConfig;
use mjpegd::server::ServerConfig;
use mjpegd::transform::{Flip, Rotate, Transform};

async fn two_cameras() -> (TestServer, Arc<Scripted>, Arc<Scripted>) {
    let a = Scripted::new(Script::default());
    let b = Scripted::new(Script {
        width: 320,
        height: 240,
        ..Script::default()
    });
    let srv = TestServer::start(
        vec![camera("front", a.clone()), camera("back", b.clone())],
        HttpConfig::default(),
        ServerConfig::default(),
    )
    .await;
    (srv, a, b)
}

async fn snapshot_size(url: &str) -> (usize, usize) {
    let resp = reqwest::get(url).await.expect("request");
    assert_eq!(resp.status(), 200, "{url}");
    let jpeg = resp.bytes().await.expect("body");
    Part {
        headers: vec![],
        jpeg,
        received: std::time::SystemTime::now(),
    }
    .decode()
}

#[tokio::test]
async fn each_camera_has_its_own_urls_and_the_first_keeps_the_classic_ones() {
    let (srv, a, b) = two_cameras().await;
    for (path, size) in [
        ("/cameras/front/stream", (160, 120)),
        ("/cameras/back/stream", (320, 240)),
        ("/cameras/back/video_feed", (320, 240)),
        ("/stream", (160, 120)),
        ("/?action=stream", (160, 120)),
        ("/?action=stream_0", (160, 120)),
        ("/?action=stream_1", (320, 240)),
    ] {
        let mut c = MjpegClient::connect(&srv.url(path)).await;
        assert_eq!(c.part().await.decode(), size, "{path}");
    }
    for (path, size) in [
        ("/cameras/back/snapshot.jpg", (320, 240)),
        ("/cameras/front/snapshot", (160, 120)),
        ("/snapshot.jpg", (160, 120)),
        ("/?action=snapshot_1", (320, 240)),
    ] {
        assert_eq!(snapshot_size(&srv.url(path)).await, size, "{path}");
    }
    assert_eq!(
        (a.opens(), b.opens()),
        (1, 1),
        "one capture per camera, shared"
    );
    for (path, text) in [
        ("/cameras/side/stream", "no camera named \"side\""),
        ("/cameras/side", "no camera named \"side\""),
        ("/?action=stream_2", "no camera number 2"),
        ("/?action=snapshot_x", "unknown action"),
    ] {
        let resp = reqwest::get(srv.url(path)).await.expect("request");
        assert_eq!(resp.status(), 404, "{path}");
        let body = resp.text().await.expect("body");
        assert!(body.contains(text), "{path}: {body}");
    }
}

#[tokio::test]
async fn transforms_apply_once_in_the_capture_path_and_untransformed_frames_pass_through() {
    let rotated = Scripted::new(Script::default());
    let plain = Scripted::new(Script::default());
    let mut cam = camera("rotated", rotated);
    cam.transform = Transform {
        rotate: Rotate::R90,
        flip: Some(Flip::Vertical),
        fit: Some((90, 90)),
        quality: 80,
    };
    let srv = TestServer::start(
        vec![cam, camera("plain", plain)],
        HttpConfig::default(),
        ServerConfig::default(),
    )
    .await;
    let mut c = MjpegClient::connect(&srv.url("/cameras/rotated/stream")).await;
    // 160x120 rotated a quarter turn is 120x160, fitted into 90x90: 68x90.
    assert_eq!(c.part().await.decode(), (68, 90));
    let mut p = MjpegClient::connect(&srv.url("/cameras/plain/stream")).await;
    let part = p.part().await;
    // Untouched bytes: the source's own comment segment survives (no decode/re-encode).
    assert!(seq_of(&part.jpeg).is_some());
}

#[tokio::test]
async fn snapshot_thumbnails_follow_the_width_parameter() {
    let (srv, _, _) = two_cameras().await;
    assert_eq!(
        snapshot_size(&srv.url("/cameras/back/snapshot.jpg?width=80")).await,
        (80, 60)
    );
    // Wider than the frame: the frame as it is.
    assert_eq!(
        snapshot_size(&srv.url("/cameras/back/snapshot.jpg?width=4000")).await,
        (320, 240)
    );
    for bad in ["width=0", "width=abc", "width=99999", "width=-5"] {
        let resp = reqwest::get(srv.url(&format!("/snapshot.jpg?{bad}")))
            .await
            .expect("request");
        assert_eq!(resp.status(), 400, "{bad}");
    }
}

#[tokio::test]
async fn api_state_reports_cameras_viewers_and_rates() {
    let before_start = std::time::Instant::now();
    let (srv, _, _) = two_cameras().await;
    let after_start = std::time::Instant::now();
    let mut viewer = MjpegClient::connect(&srv.url("/cameras/front/stream")).await;
    for _ in 0..20 {
        viewer.part().await;
    }
    let asked = std::time::Instant::now();
    let state: serde_json::Value = reqwest::get(srv.url("/api/state"))
        .await
        .expect("request")
        .json()
        .await
        .expect("JSON");
    assert_eq!(state["version"], env!("CARGO_PKG_VERSION"));
    let encoder = if cfg!(feature = "turbojpeg") {
        "libjpeg-turbo"
    } else {
        "jpeg-encoder"
    };
    assert_eq!(state["jpeg_encoder"], encoder);
    // The server started between the test's two clock reads around its start and answered
    // between `asked` and now (20 frames make it far from zero; the value is rounded to 0.01 s).
    let uptime = state["uptime_seconds"].as_f64().expect("uptime");
    let (low, high) = (
        (asked - after_start).as_secs_f64() - 0.01,
        before_start.elapsed().as_secs_f64() + 0.01,
    );
    assert!(
        uptime >= low && uptime <= high && uptime > 0.1,
        "uptime {uptime} s, not within {low:.2}..{high:.2}"
    );
    assert_eq!(state["viewers"], 1);
    let cams = state["cameras"].as_array().expect("cameras");
    assert_eq!(cams.len(), 2);
    let front = &cams[0];
    assert_eq!(front["name"], "front");
    assert_eq!(front["source"], "scripted");
    assert_eq!(front["state"], "online");
    assert_eq!(front["online"], true);
    assert_eq!(front["capture_running"], true);
    assert_eq!(front["width"], 160);
    assert!(front["frame_bytes"].as_u64().expect("bytes") > 100);
    let fps = front["measured_fps"].as_f64().expect("fps");
    assert!(fps > 10.0 && fps < 60.0, "measured capture fps {fps}");
    assert!(front["frames_sent"].as_u64().expect("sent") >= 20);
    let viewers = front["viewer_list"].as_array().expect("viewer list");
    assert_eq!(viewers.len(), 1);
    assert!(
        viewers[0]["address"]
            .as_str()
            .expect("address")
            .starts_with("127.0.0.1:")
    );
    assert!(viewers[0]["frames"].as_u64().expect("frames") >= 20);
    assert!(viewers[0]["fps"].as_f64().expect("viewer fps") > 5.0);
    let back = &cams[1];
    assert_eq!(back["state"], "idle");
    assert_eq!(back["capture_running"], false);
    assert_eq!(back["viewers"], 0);
}

#[tokio::test]
async fn metrics_are_prometheus_text_labelled_by_camera() {
    let (srv, _, _) = two_cameras().await;
    let mut viewer = MjpegClient::connect(&srv.url("/cameras/back/stream")).await;
    for _ in 0..5 {
        viewer.part().await;
    }
    let resp = reqwest::get(srv.url("/metrics")).await.expect("request");
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .expect("ascii")
            .starts_with("text/plain; version=0.0.4")
    );
    let text = resp.text().await.expect("body");
    let mut samples = std::collections::HashMap::new();
    for line in text.lines() {
        if line.starts_with('#') {
            assert!(
                line.starts_with("# HELP ") || line.starts_with("# TYPE "),
                "{line}"
            );
            continue;
        }
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line {line:?}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        let (name, labels) = series
            .split_once('{')
            .unwrap_or_else(|| panic!("no labels: {line:?}"));
        assert!(
            labels.starts_with("camera=\"") && labels.ends_with('}'),
            "{line}"
        );
        assert!(name.starts_with("mjpegd_"), "{line}");
        samples.insert(series.to_owned(), value);
    }
    assert_eq!(samples["mjpegd_viewers{camera=\"back\"}"], 1.0);
    assert_eq!(samples["mjpegd_viewers{camera=\"front\"}"], 0.0);
    assert_eq!(samples["mjpegd_capture_running{camera=\"back\"}"], 1.0);
    assert!(samples["mjpegd_frames_sent_total{camera=\"back\"}"] >= 5.0);
    assert!(samples["mjpegd_bytes_sent_total{camera=\"back\"}"] > 500.0);
    assert!(samples["mjpegd_frames_captured_total{camera=\"back\"}"] >= 5.0);
    assert_eq!(
        samples["mjpegd_source_restarts_total{camera=\"back\"}"],
        1.0
    );
    assert!(samples["mjpegd_capture_latency_seconds_count{camera=\"back\"}"] >= 5.0);
    assert!(
        samples.contains_key("mjpegd_capture_latency_seconds_bucket{camera=\"back\",le=\"+Inf\"}")
    );
}

#[tokio::test]
async fn the_grid_page_shows_every_camera_and_switches_to_snapshots_when_there_are_many() {
    let (srv, _, _) = two_cameras().await;
    let html = reqwest::get(srv.url("/"))
        .await
        .expect("request")
        .text()
        .await
        .expect("body");
    assert!(
        html.contains(r#"<img id="video" src="/video_feed""#),
        "classic img for the first camera"
    );
    assert!(html.contains(r#"data-src="/cameras/back/stream""#));
    assert!(html.contains(r#"href="/cameras/back""#));
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "no external assets"
    );
    let page = reqwest::get(srv.url("/cameras/back"))
        .await
        .expect("request");
    assert_eq!(page.status(), 200);
    let page = page.text().await.expect("body");
    assert!(page.contains(r#"data-src="/cameras/back/stream""#));
    assert!(page.contains("Fullscreen") && page.contains(r#"download="back.jpg""#));

    let many: Vec<_> = (0..6)
        .map(|i| camera(&format!("cam{i}"), Scripted::new(Script::default())))
        .collect();
    let big = TestServer::start(many, HttpConfig::default(), ServerConfig::default()).await;
    let html = reqwest::get(big.url("/"))
        .await
        .expect("request")
        .text()
        .await
        .expect("body");
    assert_eq!(html.matches(r#"data-mode="snapshot""#).count(), 6, "{html}");
    assert!(!html.contains(r#"data-mode="stream""#));
}

#[test]
fn the_example_config_loads_and_checks() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/mjpegd.toml");
    let file = mjpegd::config::load(std::path::Path::new(path)).expect("example parses");
    let cams = mjpegd::config::check_cameras(&file.cameras).expect("example is valid");
    let names: Vec<&str> = cams.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["printer", "porch", "garage"]);
    assert_eq!(cams[0].transform.rotate, Rotate::R180);
    assert_eq!(cams[1].idle_timeout, Duration::from_secs(30));
    let out = mjpegd_command()
        .args(["--check-config", path])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("3 camera(s): printer, porch, garage"));
}

#[test]
fn a_broken_config_names_the_file_and_the_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    for (text, expect) in [
        (
            "[[cameras]]\nname = \"a\"\nsource = \"testpattern\"\nfps = 999\n",
            "cameras[0].fps",
        ),
        (
            "[[cameras]]\nname = \"a\"\nsource = \"testpattern\"\ncolour = 1\n",
            "colour",
        ),
        (
            "[server]\nlisten = \"x\"\n[[cameras]]\nname = \"a\"\nsource = \"testpattern\"\n",
            "server.listen",
        ),
        (
            "[[cameras]]\nname = \"a\"\nsource = \"testpattern\"\n[[cameras]]\nname = \"a\"\nsource = \"images\"\n",
            "cameras[1].name",
        ),
        ("", "no camera declared"),
        ("[[cameras]\n", "line 1"),
    ] {
        std::fs::write(&path, text).expect("write");
        for flag in ["--check-config", "--config"] {
            let out = mjpegd_command()
                .args([
                    flag,
                    path.to_str().expect("utf-8 path"),
                    "--listen",
                    "127.0.0.1:0",
                ])
                .output()
                .expect("run");
            assert_eq!(out.status.code(), Some(2), "{text:?} with {flag}");
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains("bad.toml") && err.contains(expect),
                "{text:?}: {err}"
            );
        }
    }
}

/// Issue 13: a transformed camera encodes on the encoder pool; its frames still arrive in order,
/// every one transformed, and what the pool had to drop is counted where operators look.
#[tokio::test]
async fn transformed_frames_from_the_encoder_pool_arrive_in_order_and_drops_are_counted() {
    let src = Scripted::new(Script {
        fps: 120.0,
        width: 640,
        height: 480,
        noise: true,
        ..Script::default()
    });
    let mut cam = camera("rotated", src.clone());
    cam.transform = Transform {
        rotate: Rotate::R90,
        flip: None,
        fit: None,
        quality: 80,
    };
    let srv = TestServer::start(vec![cam], HttpConfig::default(), ServerConfig::default()).await;
    let mut c = MjpegClient::connect(&srv.url("/stream")).await;
    let mut last_ts = 0.0;
    for _ in 0..30 {
        let p = c.part().await;
        assert_eq!(p.decode(), (480, 640));
        // Published in order: capture timestamps only grow.
        let ts = p.timestamp();
        assert!(ts > last_ts, "X-Timestamp went from {last_ts} to {ts}");
        last_ts = ts;
    }
    let state: serde_json::Value = reqwest::get(srv.url("/api/state"))
        .await
        .expect("state")
        .json()
        .await
        .expect("state JSON");
    let cam = &state["cameras"][0];
    let captured = cam["frames_captured"].as_u64().expect("frames_captured");
    let dropped = cam["frames_dropped"].as_u64().expect("frames_dropped");
    let produced = src.produced.load(std::sync::atomic::Ordering::SeqCst) as u64;
    assert!(captured >= 30, "captured {captured}");
    assert!(
        captured + dropped <= produced,
        "captured {captured} + dropped {dropped} > produced {produced}"
    );
    let metrics = reqwest::get(srv.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    assert!(
        metrics.contains("mjpegd_frames_dropped_total{camera=\"rotated\"}"),
        "{metrics}"
    );
}
