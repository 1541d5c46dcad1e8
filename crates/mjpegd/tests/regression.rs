//! One test per fixed defect, named after it (issue 11, "Defects"). Each failed before its fix.

// The relay cases need the relay feature; without it their imports go unused.
#![cfg_attr(not(feature = "relay"), allow(unused_imports, dead_code))]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use mjpegd::http::HttpConfig;
use mjpegd::render::Canvas;
use mjpegd::server::ServerConfig;
use mjpegd::source::Params;
use mjpegd::source::exec::ExecOpener;
#[cfg(feature = "relay")]
use mjpegd::source::relay::RelayOpener;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Starts the binary with `args` on a free port (the shared helper: it waits for the URL the
/// server logs and stops the process group when dropped).
fn spawn_mjpegd(args: &[&str]) -> MjpegdProcess {
    let mut all = vec!["--listen", "127.0.0.1:0"];
    all.extend_from_slice(args);
    MjpegdProcess::start(&all).unwrap_or_else(|log| panic!("mjpegd did not start: {log}"))
}

/// A small JPEG file for shell-loop exec sources.
fn write_frame(dir: &Path) -> PathBuf {
    let path = dir.join("frame.jpg");
    let jpeg = Canvas::new(64, 48, [200, 40, 40])
        .encode(80)
        .expect("encode");
    std::fs::write(&path, &jpeg).expect("write frame");
    path
}

/// `(state, process group)` of a process from /proc, `None` once it is gone.
fn proc_stat(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: the fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, pgrp))
}

/// Live (not zombie) processes in process group `pgid`.
fn live_group_members(pgid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return vec![];
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| proc_stat(*pid).is_some_and(|(s, g)| g == pgid && s != 'Z' && s != 'X'))
        .collect()
}

/// Waits until `file` holds a pid (written by the exec child's shell) and returns it.
async fn await_pid_file(file: &Path) -> u32 {
    tokio::time::timeout(WAIT, async {
        loop {
            if let Some(pid) = std::fs::read_to_string(file)
                .ok()
                .and_then(|s| s.trim().parse().ok())
            {
                break pid;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
    .expect("the exec child never started")
}

/// Polls until no live process is left in group `pgid`; panics with the survivors after `limit`.
async fn assert_group_dies_within(pgid: u32, limit: Duration, what: &str) {
    let start = Instant::now();
    loop {
        let alive = live_group_members(pgid);
        if alive.is_empty() {
            return;
        }
        if start.elapsed() > limit {
            for pid in &alive {
                // Already gone is fine: this only cleans up before failing.
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(i32::try_from(*pid).expect("pid")),
                    Signal::SIGKILL,
                );
            }
            panic!("{what}: exec children {alive:?} still alive {limit:?} later");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Issue 11, defect 2: `kill -9` of mjpegd must not leave its exec child running (it kept the
/// camera busy, so the restarted server got EBUSY).
#[tokio::test]
async fn defect_2_exec_children_die_when_mjpegd_is_killed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let frame = write_frame(dir.path());
    let pid_file = dir.path().join("child.pid");
    // The shell itself never writes to the pipe, so only a death signal can end its loop.
    let source = format!(
        "exec:echo $$ > {}; while true; do cat {}; sleep 0.1; done",
        pid_file.display(),
        frame.display()
    );
    let mut server = spawn_mjpegd(&["--source", &source]);
    let url = server.url.clone();
    let mut viewer = MjpegClient::connect(&format!("{url}/stream")).await;
    viewer.part().await.decode();
    let child = await_pid_file(&pid_file).await;
    assert_eq!(
        proc_stat(child).map(|(_, g)| g),
        Some(child),
        "the child leads its own group"
    );
    signal(server.child.id(), Signal::SIGKILL);
    let _ = server.child.wait();
    assert_group_dies_within(child, Duration::from_secs(1), "after kill -9 of mjpegd").await;
}

/// Issue 11, defect 2: the second SIGINT exits at once; it must kill the exec process groups
/// first, even children that ignore the SIGTERM of the graceful path.
#[tokio::test]
async fn defect_2_second_signal_kills_the_exec_process_groups() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Large incompressible frames fill a stalled viewer's socket quickly.
    let frame = dir.path().join("frame.jpg");
    std::fs::write(&frame, numbered_jpeg(1, 640, 480, true)).expect("write frame");
    let pid_file = dir.path().join("child.pid");
    // `sleep` in the background inherits the ignored SIGTERM and never touches the pipe.
    let source = format!(
        "exec:trap '' TERM; sleep 1000 & echo $$ > {}; while true; do cat {}; sleep 0.05; done",
        pid_file.display(),
        frame.display()
    );
    let mut server = spawn_mjpegd(&["--source", &source]);
    let url = server.url.clone();
    let addr: std::net::SocketAddr = url.trim_start_matches("http://").parse().expect("addr");
    // A viewer that never reads keeps the graceful shutdown waiting for its grace period, so
    // the second signal surely comes during it.
    let stalled = tokio::net::TcpSocket::new_v4().expect("socket");
    stalled.set_recv_buffer_size(4096).expect("rcvbuf");
    let mut stalled = stalled.connect(addr).await.expect("connect");
    stalled
        .write_all(b"GET /stream HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .await
        .expect("request");
    let mut viewer = MjpegClient::connect(&format!("{url}/stream")).await;
    // Enough frames that the stalled viewer's buffers are full.
    for _ in 0..20 {
        viewer.part().await;
    }
    let child = await_pid_file(&pid_file).await;
    assert!(
        live_group_members(child).len() >= 2,
        "the shell and its background sleep"
    );
    signal(server.child.id(), Signal::SIGINT);
    tokio::time::sleep(Duration::from_millis(200)).await;
    signal(server.child.id(), Signal::SIGINT);
    let status = server.child.wait().expect("wait");
    // The children first: a failure there also kills the survivors.
    assert_group_dies_within(child, Duration::from_secs(1), "after the second SIGINT").await;
    assert_eq!(status.code(), Some(130), "the immediate exit");
    drop(stalled);
}

/// Issue 11, defect 2: a graceful exit (one signal) must not leave behind an exec child that
/// ignores SIGTERM either: the server is done before the child's grace period.
#[tokio::test]
async fn defect_2_graceful_exit_kills_children_that_ignore_sigterm() {
    let dir = tempfile::tempdir().expect("tempdir");
    let frame = write_frame(dir.path());
    let pid_file = dir.path().join("child.pid");
    let source = format!(
        "exec:trap '' TERM; sleep 1000 & echo $$ > {}; while true; do cat {}; sleep 0.1; done",
        pid_file.display(),
        frame.display()
    );
    let mut server = spawn_mjpegd(&["--source", &source]);
    let url = server.url.clone();
    let mut viewer = MjpegClient::connect(&format!("{url}/stream")).await;
    viewer.part().await.decode();
    let child = await_pid_file(&pid_file).await;
    signal(server.child.id(), Signal::SIGTERM);
    let status = server.child.wait().expect("wait");
    assert_group_dies_within(child, Duration::from_secs(1), "after a graceful exit").await;
    assert!(status.success(), "graceful exit: {status:?}");
}

/// Issue 11, defect 3: descriptors passed by socket activation must not leak into exec
/// children (they kept the port after mjpegd died).
#[tokio::test]
async fn defect_3_socket_activated_listeners_do_not_leak_into_exec_children() {
    if !require_tool("systemd-socket-activate") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let frame = write_frame(dir.path());
    let pid_file = dir.path().join("child.pid");
    let source = format!(
        "exec:echo $$ > {}; while true; do cat {}; sleep 0.1; done",
        pid_file.display(),
        frame.display()
    );
    let port = free_port();
    let mut activator = spawn_socket_activated(port, dir.path(), &["--source", &source]);
    let url = format!("http://127.0.0.1:{port}/stream");
    let resp = first_activated_answer(&url).await;
    let mut viewer = MjpegClient::from_response(resp);
    viewer.part().await.decode();
    let child = await_pid_file(&pid_file).await;
    let fds: Vec<String> = std::fs::read_dir(format!("/proc/{child}/fd"))
        .expect("the child's descriptors")
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .map(|target| target.display().to_string())
        .collect();
    let group = i32::try_from(activator.id()).expect("pid");
    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(group), Signal::SIGTERM);
    Command::new("kill")
        .args(["-TERM", "--", &(-group).to_string()])
        .status()
        .ok();
    let _ = activator.wait();
    assert!(!fds.is_empty(), "read the child's descriptors");
    let sockets: Vec<&String> = fds.iter().filter(|t| t.starts_with("socket:")).collect();
    assert!(
        sockets.is_empty(),
        "the exec child inherited sockets {sockets:?} (all: {fds:?})"
    );
}

/// Issue 11, defect 5: `--check-config FILE` validates exactly that file; `MJPEGD_*` variables
/// (which would refuse it here: camera flags do not mix with a config) are not merged in.
#[test]
fn defect_5_check_config_ignores_mjpegd_environment_variables() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("mjpegd.toml");
    std::fs::write(
        &file,
        "[server]\nlisten = \"127.0.0.1:18999\"\n\n[[cameras]]\nname = \"porch\"\nsource = \"testpattern\"\n",
    )
    .expect("write config");
    let out = Command::new(env!("CARGO_BIN_EXE_mjpegd"))
        .arg("--check-config")
        .arg(&file)
        .env("MJPEGD_FPS", "3")
        .env("MJPEGD_LISTEN", "127.0.0.1:1")
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("listen 127.0.0.1:18999") && err.contains("porch"),
        "{err}"
    );
    assert!(
        !err.contains("127.0.0.1:1,") && !err.contains("127.0.0.1:1 "),
        "{err}"
    );
}

/// Issue 11, defect 6: one address using up its snapshot budget (a browser's grid of tiles)
/// must not make another address's snapshot fail.
#[tokio::test]
async fn defect_6_one_address_exhausting_snapshots_does_not_starve_another() {
    let http = HttpConfig {
        snapshot_rate: 6,
        snapshot_rate_per_ip: 3,
        ..HttpConfig::default()
    };
    let srv = TestServer::start(
        vec![camera("cam", Scripted::new(Script::default()))],
        http,
        ServerConfig::default(),
    )
    .await;
    let greedy = client_from([127, 0, 0, 1]);
    let mut codes = vec![];
    // As many requests as the whole server allows in a second.
    for _ in 0..6 {
        let r = greedy
            .get(srv.url("/snapshot.jpg"))
            .send()
            .await
            .expect("snapshot");
        codes.push(r.status().as_u16());
    }
    assert_eq!(codes[..3], [200, 200, 200], "{codes:?}");
    assert!(codes[3..].iter().all(|c| *c == 429), "{codes:?}");
    let other = client_from([127, 0, 0, 2]);
    let r = other
        .get(srv.url("/snapshot.jpg"))
        .send()
        .await
        .expect("snapshot");
    assert_eq!(r.status(), 200, "another address was starved");
    Part {
        headers: vec![],
        jpeg: r.bytes().await.expect("body"),
        received: std::time::SystemTime::now(),
    }
    .decode();
}

/// Polls `/api/state` until the first camera has a last error; returns that camera's JSON.
async fn await_camera_error(srv: &TestServer) -> serde_json::Value {
    tokio::time::timeout(WAIT, async {
        loop {
            let state: serde_json::Value = reqwest::get(srv.url("/api/state"))
                .await
                .expect("state")
                .json()
                .await
                .expect("state JSON");
            let cam = state["cameras"][0].clone();
            if cam["last_error"].is_string() {
                break cam;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the camera never reported an error")
}

/// The value of `/metrics` series `name{labels}`.
async fn metric(srv: &TestServer, series: &str) -> Option<f64> {
    let text = reqwest::get(srv.url("/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

async fn starts_capture(srv: &TestServer) -> reqwest::Response {
    // A stream starts capture; it shows no-signal frames while the source fails.
    reqwest::get(srv.url("/stream")).await.expect("stream")
}

/// Issue 11, defect 8: a command that does not exist is a permanent error, shown as such with
/// what to do, and counted by kind; it is still retried.
#[tokio::test]
async fn defect_8_missing_exec_command_is_a_permanent_error_with_a_hint() {
    let opener = Arc::new(ExecOpener::new("mjpegd-test-no-such-command --x".into()));
    let srv = TestServer::with_source(opener).await;
    let _viewer = starts_capture(&srv).await;
    let cam = await_camera_error(&srv).await;
    assert_eq!(cam["last_error_kind"], "permanent", "{cam}");
    let hint = cam["last_error_hint"].as_str().unwrap_or_default();
    assert!(hint.contains("source"), "a hint saying what to fix: {cam}");
    assert!(
        cam["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("not found")),
        "{cam}"
    );
    let counted = metric(
        &srv,
        "mjpegd_source_errors_by_kind_total{camera=\"cam\",kind=\"permanent\"}",
    )
    .await;
    assert!(counted.is_some_and(|n| n >= 1.0), "{counted:?}");
    assert_eq!(
        metric(
            &srv,
            "mjpegd_source_errors_by_kind_total{camera=\"cam\",kind=\"transient\"}"
        )
        .await,
        Some(0.0)
    );
}

/// An upstream answering every request with `head` and then closing the connection.
#[cfg(feature = "relay")]
async fn closing_upstream(head: &'static str) -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        while let Ok((mut sock, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut req = [0u8; 1024];
                let _ = sock.read(&mut req).await;
                let _ = sock.write_all(head.as_bytes()).await;
            });
        }
    });
    addr
}

#[cfg(feature = "relay")]
fn relay_to(addr: std::net::SocketAddr, path: &str) -> Arc<RelayOpener> {
    let params = Params {
        width: 160,
        height: 120,
        fps: 5.0,
        quality: 70,
    };
    Arc::new(RelayOpener::new(&format!("http://{addr}{path}"), params).expect("relay URL"))
}

/// Issue 11, defect 8: an upstream that closes its stream is a transient error.
#[cfg(feature = "relay")]
#[tokio::test]
async fn defect_8_relay_upstream_that_closes_is_a_transient_error() {
    let addr = closing_upstream(
        "HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace;boundary=frame\r\n\r\n",
    )
    .await;
    let srv = TestServer::with_source(relay_to(addr, "/stream")).await;
    let _viewer = starts_capture(&srv).await;
    let cam = await_camera_error(&srv).await;
    assert_eq!(cam["last_error_kind"], "transient", "{cam}");
    assert!(
        cam["last_error_hint"]
            .as_str()
            .is_some_and(|h| !h.is_empty()),
        "{cam}"
    );
    let counted = metric(
        &srv,
        "mjpegd_source_errors_by_kind_total{camera=\"cam\",kind=\"transient\"}",
    )
    .await;
    assert!(counted.is_some_and(|n| n >= 1.0), "{counted:?}");
}

/// Issue 11, defect 8: a relay URL that does not exist (404) is permanent; a 5xx is transient.
#[cfg(feature = "relay")]
#[tokio::test]
async fn defect_8_relay_http_status_sets_the_kind() {
    for (head, kind) in [
        (
            "HTTP/1.0 404 Not Found\r\nContent-Length: 0\r\n\r\n",
            "permanent",
        ),
        (
            "HTTP/1.0 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n",
            "transient",
        ),
    ] {
        let addr = closing_upstream(head).await;
        let srv = TestServer::with_source(relay_to(addr, "/video.mjpg")).await;
        let _viewer = starts_capture(&srv).await;
        let cam = await_camera_error(&srv).await;
        assert_eq!(cam["last_error_kind"], kind, "{head:?}: {cam}");
    }
}
