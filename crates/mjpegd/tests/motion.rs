//! Motion detection through the real binary with real ffmpeg sources: a static scene, a square
//! that starts moving after 5 s, the same square under a mask, and temporal noise. Also the
//! startup errors of bad `[cameras.motion]` sections.

mod common;

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::*;
use serde_json::Value;

const FFMPEG: &str = "ffmpeg -hide_banner -loglevel error -re -f lavfi";
/// Seconds into the clip at which the square starts moving.
const MOVE_AT: f64 = 5.0;

fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A grey 320x240 10 fps scene with a white 40x40 square at y = 100, still until `MOVE_AT`
/// when `moves`, then sweeping right.
fn square_source(moves: bool) -> String {
    let x = if moves {
        format!("'if(gte(t,{MOVE_AT}),20+mod((t-{MOVE_AT})*150,240),20)'")
    } else {
        "20".to_owned()
    };
    square_along(&x)
}

/// Two 0.8 s bursts of movement from `MOVE_AT`, 1 s of stillness between them (less than the
/// cameras' 2 s event gap), then still.
fn bursts_source() -> String {
    let (a, b, c, d) = (MOVE_AT, MOVE_AT + 0.8, MOVE_AT + 1.8, MOVE_AT + 2.6);
    square_along(&format!(
        "'if(lt(t,{a}),20,if(lt(t,{b}),20+(t-{a})*150,if(lt(t,{c}),140,if(lt(t,{d}),140+(t-{c})*150,260))))'"
    ))
}

/// The grey scene with the white square at horizontal position `x` (an ffmpeg expression).
fn square_along(x: &str) -> String {
    format!(
        "exec:{FFMPEG} -i \"color=c=gray:s=320x240:r=10[bg];color=c=white:s=40x40:r=10[sq];\
         [bg][sq]overlay=x={x}:y=100:shortest=1[out0]\" -f mjpeg -q:v 5 -"
    )
}

fn noise_source() -> String {
    format!("exec:{FFMPEG} -i color=c=gray:s=320x240:r=10,noise=alls=30:allf=t -f mjpeg -q:v 5 -")
}

fn camera(name: &str, source: &str, motion: &str) -> String {
    format!(
        "[[cameras]]\nname = \"{name}\"\nsource = {}\nsize = \"320x240\"\n[cameras.motion]\n\
         min_frames = 2\nevent_gap = 2\n{motion}\n",
        toml_string(source)
    )
}

fn write_config(dir: &Path, cameras: &str) -> std::path::PathBuf {
    let path = dir.join("mjpegd.toml");
    let text = format!("[server]\nlisten = \"127.0.0.1:0\"\n\n{cameras}");
    std::fs::write(&path, text).expect("write config");
    path
}

async fn get_json(url: &str) -> Value {
    let resp = reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    assert_eq!(resp.status(), 200, "{url}");
    resp.json().await.expect("JSON")
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_follow_real_motion_and_ignore_stillness_masks_and_noise() {
    if !require_tool("ffmpeg") {
        return;
    }
    install_crypto_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let cameras = [
        camera("still", &square_source(false), ""),
        camera("moving", &square_source(true), ""),
        camera(
            "masked",
            &square_source(true),
            "mask = [{ x = 0, y = 90, width = 320, height = 60 }]",
        ),
        camera("noisy", &noise_source(), ""),
        camera("bursts", &bursts_source(), ""),
        // The same noise against a per-pixel change of 1: proves the noise reaches the detector.
        camera(
            "noisy_sensitive",
            &noise_source(),
            "sensitivity = 1\nthreshold = 0.001",
        ),
    ]
    .concat();
    let config = write_config(dir.path(), &cameras);
    let spawned = now_secs();
    let server = MjpegdProcess::start(&[std::ffi::OsStr::new("--config"), config.as_os_str()])
        .unwrap_or_else(|e| panic!("{e}"));
    let url = |p: &str| format!("{}{p}", server.url);

    // The first frame's capture time bounds when the clip's t = 0 was (from above); the spawn
    // time bounds it from below. Nobody watches: the detectors alone keep capture running.
    let deadline = Instant::now() + Duration::from_secs(10);
    let first_frame = loop {
        let state = get_json(&url("/api/state")).await;
        if state["motion"]["moving"]["frames_analysed"].as_u64() >= Some(1) {
            break now_secs();
        }
        assert!(
            Instant::now() < deadline,
            "no frame analysed in 10 s:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };

    // Wait until the moving camera's event has started and 4 s more have passed (past
    // MOVE_AT + 3 s the masked camera has seen its square move for as long, and the bursts
    // camera's second burst is over).
    let deadline = Instant::now() + Duration::from_secs(20);
    let event = loop {
        let events = get_json(&url("/cameras/moving/events")).await;
        if let Some(e) = events["events"].as_array().and_then(|a| a.first()) {
            break e.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no event 20 s into a moving scene:\n{}",
            server.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let start = event["start_us"].as_i64().expect("start_us") as f64 / 1e6;
    let change_earliest = spawned + MOVE_AT;
    let change_latest = first_frame + MOVE_AT;
    assert!(
        start >= change_earliest - 0.2 && start <= change_latest + 1.0,
        "event start {start:.2} is not within 1 s of the change (between {change_earliest:.2} and {change_latest:.2})"
    );
    tokio::time::sleep(Duration::from_secs(4)).await;

    let state = get_json(&url("/api/state")).await;
    let m = &state["motion"];
    assert_eq!(m["moving"]["events_total"], 1, "one event: {m}");
    assert_eq!(m["moving"]["in_event"], true, "the square still moves: {m}");
    // Both bursts (the second ended 2.6 s after MOVE_AT, before this) are one event.
    assert_eq!(
        m["bursts"]["events_total"], 1,
        "bursts 1 s apart, gap 2 s: {m}"
    );
    let bursts = get_json(&url("/cameras/bursts/events")).await;
    let frames = bursts["events"][0]["frames"].as_u64().unwrap_or(0);
    // About 1.6 s of movement analysed at 5 fps: far more than one burst's 4 frames.
    assert!(
        frames >= 6,
        "the event counts motion frames of both bursts: {bursts}"
    );
    assert!(m["moving"]["score"].as_f64() > Some(0.005), "{m}");
    for quiet in ["still", "masked", "noisy"] {
        assert_eq!(m[quiet]["events_total"], 0, "{quiet}: {m}");
        assert!(
            m[quiet]["frames_analysed"].as_u64() >= Some(30),
            "{quiet} analysed at about 5 fps: {m}"
        );
    }
    assert!(
        m["noisy_sensitive"]["events_total"].as_u64() >= Some(1),
        "noise at sensitivity 1 is motion: {m}"
    );

    // The best frame is a real JPEG of the camera's size.
    let id = event["id"].as_u64().expect("id");
    let resp = reqwest::get(url(&format!("/cameras/moving/events/{id}/frame.jpg")))
        .await
        .expect("frame");
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "image/jpeg");
    let jpeg = resp.bytes().await.expect("body");
    let mut d = zune_jpeg::JpegDecoder::new(&jpeg[..]);
    d.decode().expect("the best frame decodes");
    assert_eq!(d.dimensions(), Some((320, 240)));

    // Range queries, unknown events and cameras without motion detection.
    let from = (start - 60.0) as i64;
    let to = (start + 60.0) as i64;
    let inside = get_json(&url(&format!("/cameras/moving/events?from={from}&to={to}"))).await;
    assert_eq!(inside["events"].as_array().map(Vec::len), Some(1));
    let before = get_json(&url(&format!("/cameras/moving/events?to={from}"))).await;
    assert_eq!(before["events"].as_array().map(Vec::len), Some(0));
    for (path, status) in [
        ("/cameras/moving/events/999/frame.jpg", 404),
        ("/cameras/moving/events/x/frame.jpg", 400),
        ("/cameras/moving/events?from=yesterday", 400),
        ("/cameras/nope/events", 404),
    ] {
        let got = reqwest::get(url(path)).await.expect("request").status();
        assert_eq!(got, status, "{path}");
    }

    let metrics = reqwest::get(url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("text");
    assert!(
        metrics.contains("mjpegd_motion_events_total{camera=\"moving\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("mjpegd_motion_score{camera=\"still\"} 0"),
        "{metrics}"
    );
    let log = server.log();
    let starts = log
        .lines()
        .filter(|l| l.contains("motion event started") && l.contains("camera=moving"))
        .count();
    assert_eq!(starts, 1, "one start line for the moving camera:\n{log}");
}

#[test]
fn bad_motion_config_is_a_clear_startup_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (motion, want) in [
        (
            "threshold = 1.5",
            "cameras[0].motion.threshold: 1.5 is out of range 0..=1",
        ),
        (
            "mask = [{ x = 300, y = 0, width = 40, height = 10 }]",
            "cameras[0].motion.mask[0]: x 300 + width 40 / y 0 + height 10 reaches outside the 320x240 frame",
        ),
        ("treshold = 0.1", "unknown field `treshold`"),
    ] {
        let text = format!(
            "[[cameras]]\nname = \"a\"\nsource = \"testpattern\"\nsize = \"320x240\"\n[cameras.motion]\n{motion}\n"
        );
        let config = write_config(dir.path(), &text);
        let stderr = startup_error(&config, motion);
        assert!(stderr.contains(want), "{motion}: {stderr}");
    }
}
