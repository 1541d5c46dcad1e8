//! Motion events going out, through the real binary with real ffmpeg scenes: the
//! `on_event_start` / `on_event_end` hooks (run with the camera name and event id, never
//! blocking capture, killed at `hook_timeout`), the events on a real nats-server
//! (`mjpegd.events.CAMERA`), and the startup errors of bad hook settings.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[cfg(feature = "bus")]
use common::nats::Nats;
use common::*;
#[cfg(feature = "bus")]
use futures_util::StreamExt;
use serde_json::Value;

const FFMPEG: &str = "ffmpeg -hide_banner -loglevel error -re -f lavfi";

fn toml_string(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// A grey 320x240 10 fps scene with a white 40x40 square at y = 100 that sweeps right from
/// 3 s to 5 s and is still (back at its place) after: one event that ends.
fn square_source() -> String {
    let x = "'if(between(t,3,5),20+(t-3)*100,20)'";
    format!(
        "exec:{FFMPEG} -i \"color=c=gray:s=320x240:r=10[bg];color=c=white:s=40x40:r=10[sq];\
         [bg][sq]overlay=x={x}:y=100:shortest=1[out0]\" -f mjpeg -q:v 5 -"
    )
}

fn camera(name: &str, motion: &str) -> String {
    format!(
        "[[cameras]]\nname = \"{name}\"\nsource = {}\nsize = \"320x240\"\n[cameras.motion]\n\
         min_frames = 2\nevent_gap = 1\n{motion}\n",
        toml_string(&square_source())
    )
}

fn write_config(dir: &Path, body: &str) -> PathBuf {
    let path = dir.join("mjpegd.toml");
    let text = format!("[server]\nlisten = \"127.0.0.1:0\"\n\n{body}");
    std::fs::write(&path, text).expect("write config");
    path
}

fn script(dir: &Path, name: &str, body: &str) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    path
}

async fn get_json(url: &str) -> Value {
    let resp = reqwest::get(url)
        .await
        .unwrap_or_else(|e| panic!("{url}: {e}"));
    assert_eq!(resp.status(), 200, "{url}");
    resp.json().await.expect("JSON")
}

fn lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Whether `pid` is gone (or a zombie waiting for its reaper).
fn gone(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
    }
}

async fn wait_for(
    what: &str,
    limit: Duration,
    log: impl Fn() -> String,
    mut ok: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + limit;
    while !ok() {
        assert!(
            Instant::now() < deadline,
            "{what} within {limit:?}:\n{}",
            log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hooks_run_with_camera_and_event_id_and_never_block_capture() {
    if !require_tool("ffmpeg") {
        return;
    }
    install_crypto_provider();
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("calls.txt");
    let pids = dir.path().join("pids.txt");
    let record = script(
        dir.path(),
        "record.sh",
        &format!("echo \"$*\" >> {}", out.display()),
    );
    let sleeper = script(
        dir.path(),
        "sleeper.sh",
        &format!("sleep 1000 &\necho \"$$ $!\" >> {}\nwait", pids.display()),
    );
    let body = [
        camera(
            "cam",
            &format!(
                "on_event_start = [{}, \"start\"]\non_event_end = [{}, \"end\"]",
                toml_string(&record.to_string_lossy()),
                toml_string(&record.to_string_lossy())
            ),
        ),
        camera(
            "stuck",
            &format!(
                "on_event_start = [{}]\non_event_end = [\"/nonexistent/motion-hook\"]\nhook_timeout = 2",
                toml_string(&sleeper.to_string_lossy())
            ),
        ),
    ]
    .concat();
    let config = write_config(dir.path(), &body);
    let server = MjpegdProcess::start(&[std::ffi::OsStr::new("--config"), config.as_os_str()])
        .unwrap_or_else(|e| panic!("{e}"));
    let url = |p: &str| format!("{}{p}", server.url);

    // The start hook of `cam` runs with its extra argument, the camera name and the event id.
    wait_for(
        "the start hook ran",
        Duration::from_secs(20),
        || server.log(),
        || lines(&out).iter().any(|l| l.starts_with("start ")),
    )
    .await;
    let events = get_json(&url("/cameras/cam/events")).await;
    let id = events["events"][0]["id"].as_u64().expect("an event");
    assert_eq!(lines(&out)[0], format!("start cam {id}"));

    // The stuck camera's start hook sleeps; capture and analysis go on meanwhile.
    wait_for(
        "the sleeping hook started",
        Duration::from_secs(10),
        || server.log(),
        || !lines(&pids).is_empty(),
    )
    .await;
    let analysed = |s: &Value| {
        s["motion"]["stuck"]["frames_analysed"]
            .as_u64()
            .unwrap_or(0)
    };
    let before = analysed(&get_json(&url("/api/state")).await);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let after = analysed(&get_json(&url("/api/state")).await);
    assert!(
        after >= before + 3,
        "frames kept being analysed while the hook slept: {before} -> {after}"
    );
    let snap = reqwest::get(url("/cameras/stuck/snapshot.jpg"))
        .await
        .expect("snapshot");
    assert_eq!(
        snap.status(),
        200,
        "frames are served while the hook sleeps"
    );

    // Past hook_timeout (2 s) the sleeper and its child are killed, and it is logged.
    let pid_line = lines(&pids)[0].clone();
    wait_for(
        "the sleeping hook was killed",
        Duration::from_secs(6),
        || server.log(),
        || pid_line.split_whitespace().all(gone),
    )
    .await;
    wait_for(
        "the timeout was logged",
        Duration::from_secs(2),
        || server.log(),
        || {
            server
                .log()
                .lines()
                .any(|l| l.contains("hook_timeout") && l.contains("camera=stuck"))
        },
    )
    .await;

    // The end hook runs once the event ends, with its duration; the missing end hook of the
    // stuck camera is logged with the camera, the event and the command, once.
    wait_for(
        "the end hook ran",
        Duration::from_secs(30),
        || server.log(),
        || lines(&out).iter().any(|l| l.starts_with("end ")),
    )
    .await;
    let calls = lines(&out);
    // Residual fading may start later events; the second call is this event's end.
    let end: Vec<&str> = calls[1].split(' ').collect();
    assert_eq!(&end[..3], ["end", "cam", &id.to_string()], "{calls:?}");
    let secs: f64 = end[3].parse().expect("duration in seconds");
    assert!(secs > 0.5 && secs < 60.0, "{calls:?}");
    let ended = get_json(&url("/cameras/cam/events")).await;
    assert!(ended["events"][0]["end"].is_string(), "{ended}");
    wait_for(
        "the missing hook was logged",
        Duration::from_secs(30),
        || server.log(),
        || {
            server
                .log()
                .lines()
                .any(|l| l.contains("/nonexistent/motion-hook") && l.contains("motion hook failed"))
        },
    )
    .await;
    let log = server.log();
    let failed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("/nonexistent/motion-hook"))
        .collect();
    assert!(
        failed
            .iter()
            .all(|l| l.contains("camera=stuck") && l.contains("event=")),
        "{log}"
    );
}

#[cfg(feature = "bus")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_published_on_the_bus() {
    if !require_tool("ffmpeg") || !require_tool("nats-server") {
        return;
    }
    install_crypto_provider();
    let nats = Nats::start(&[]);
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let mut sub = client
        .subscribe("mjpegd.events.cam")
        .await
        .expect("subscribe");
    client.flush().await.expect("flush");
    let dir = tempfile::tempdir().expect("tempdir");
    let body = format!(
        "[bus]\nurl = {}\npublish = true\n\n{}",
        toml_string(&nats.url()),
        camera("cam", "")
    );
    let config = write_config(dir.path(), &body);
    let server = MjpegdProcess::start(&[std::ffi::OsStr::new("--config"), config.as_os_str()])
        .unwrap_or_else(|e| panic!("{e}"));
    let mut got = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    while got.len() < 2 {
        let msg = tokio::time::timeout_at(deadline, sub.next())
            .await
            .unwrap_or_else(|_| panic!("start and end within 40 s, got {got:?}:\n{}", server.log()))
            .expect("subscription open");
        let v: Value = serde_json::from_slice(&msg.payload).expect("JSON");
        got.push(v);
    }
    let (start, end) = (&got[0], &got[1]);
    assert_eq!(start["camera"], "cam", "{start}");
    assert_eq!(start["state"], "start", "{start}");
    assert!(
        start["start"].is_string() && start["end"].is_null(),
        "{start}"
    );
    assert_eq!(end["state"], "end", "{end}");
    assert_eq!(end["id"], start["id"], "{got:?}");
    assert!(
        end["end"].is_string() && end["peak_score"].as_f64() > Some(0.0),
        "{end}"
    );
    assert_eq!(end["start"], start["start"], "{got:?}");
}

#[test]
fn bad_hook_config_is_a_clear_startup_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (motion, want) in [
        (
            "on_event_start = []",
            "cameras[0].motion.on_event_start: an empty list",
        ),
        (
            "on_event_end = [\"hooks/notify\"]",
            "cameras[0].motion.on_event_end: the command \"hooks/notify\" is a relative path",
        ),
        (
            "hook_timeout = 0",
            "cameras[0].motion.hook_timeout: 0 is out of range 1..=600",
        ),
        (
            "hook_timeout = 601",
            "cameras[0].motion.hook_timeout: 601 is out of range 1..=600",
        ),
    ] {
        let text = format!(
            "[[cameras]]\nname = \"a\"\nsource = \"testpattern\"\nsize = \"320x240\"\n[cameras.motion]\n{motion}\n"
        );
        let config = write_config(dir.path(), &text);
        let stderr = startup_error(&config, motion);
        assert!(stderr.contains(want), "{motion}: {stderr}");
    }
}
