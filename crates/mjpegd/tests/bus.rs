//! Scale-out over NATS with real `nats-server` processes on loopback: camera nodes publish,
//! edges discover and serve, demand flows back, and bus faults leave viewers connected.
//!
//! Needs `nats-server` (Debian package `nats-server`, installed by scripts/install-test-deps.sh):
//! a loud skip without it, a failure when MJPEGD_REQUIRE_TOOLS is set. Feature `bus` only.
#![cfg(feature = "bus")]

mod common;

use std::collections::HashMap;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::nats::*;
use common::*;
use mjpegd::config::{BusSection, OneOrMany, PublishSection};
use mjpegd::http::HttpConfig;
use mjpegd::hub::CameraConfig;
use mjpegd::server::ServerConfig;

fn have_nats() -> bool {
    require_tool("nats-server")
}

/// A scripted camera at 10 fps (numbered frames) with this idle timeout.
fn scripted(name: &str, idle: Duration) -> (CameraConfig, Arc<Scripted>) {
    let s = Scripted::new(Script {
        fps: 10.0,
        ..Script::default()
    });
    let mut c = camera(name, s.clone());
    c.idle_timeout = idle;
    (c, s)
}

async fn until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn state(server: &TestServer) -> serde_json::Value {
    reqwest::get(server.url("/api/state"))
        .await
        .expect("state")
        .json()
        .await
        .expect("state JSON")
}

fn camera_state<'a>(state: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    state["cameras"]
        .as_array()
        .expect("cameras")
        .iter()
        .find(|c| c["name"] == name)
        .unwrap_or_else(|| panic!("no camera {name} in {state}"))
}

/// The next part carrying a numbered (live) frame; no-signal parts are decoded and skipped.
async fn live_part(c: &mut MjpegClient) -> Part {
    loop {
        let p = c.part().await;
        p.decode();
        if seq_of(&p.jpeg).is_some() {
            return p;
        }
    }
}

/// The next no-signal part (a frame without a sequence number); live ones are decoded and skipped.
async fn no_signal_part(c: &mut MjpegClient) -> Part {
    loop {
        let p = c.part().await;
        p.decode();
        if seq_of(&p.jpeg).is_none() {
            return p;
        }
    }
}

async fn edge_has(edge: &TestServer, name: &str) {
    until(&format!("the edge to discover {name}"), || {
        edge.state.hub().get(name).is_some()
    })
    .await;
}

/// Live parts of one viewer for `dur`: seq → (X-Timestamp, JPEG).
async fn collect(mut c: MjpegClient, dur: Duration) -> HashMap<u64, (String, bytes::Bytes)> {
    let mut out = HashMap::new();
    let end = Instant::now() + dur;
    while Instant::now() < end {
        let p = live_part(&mut c).await;
        let ts = p.header("X-Timestamp").expect("X-Timestamp").to_owned();
        out.insert(p.seq(), (ts, p.jpeg.clone()));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_edges_serve_the_camera_nodes_frames_with_its_timestamps() {
    if !have_nats() {
        return;
    }
    let nats = Nats::start(&[]);
    let (cam, _) = scripted("cam", Duration::from_secs(10));
    let origin = node(vec![cam], publishing(&nats.url())).await;
    let e1 = node(vec![], edge(&nats.url())).await;
    let e2 = node(vec![], edge(&nats.url())).await;
    edge_has(&e1, "cam").await;
    edge_has(&e2, "cam").await;

    let direct = MjpegClient::connect(&origin.url("/cameras/cam/stream")).await;
    let v1 = MjpegClient::connect(&e1.url("/cameras/cam/stream")).await;
    let v2 = MjpegClient::connect(&e2.url("/cameras/cam/stream")).await;
    let dur = Duration::from_secs(4);
    let (direct, v1, v2) = tokio::join!(collect(direct, dur), collect(v1, dur), collect(v2, dur));
    for (name, edge_parts) in [("edge 1", &v1), ("edge 2", &v2)] {
        let mut same = 0;
        for (seq, (ts, jpeg)) in edge_parts {
            if let Some((dts, djpeg)) = direct.get(seq) {
                assert_eq!(ts, dts, "{name}: X-Timestamp of frame {seq}");
                assert_eq!(jpeg, djpeg, "{name}: bytes of frame {seq}");
                same += 1;
            }
        }
        assert!(
            same >= 10,
            "{name}: only {same} frames in common with the camera node ({} received)",
            edge_parts.len()
        );
    }
    let s = state(&e1).await;
    assert_eq!(s["bus"]["role"], "edge", "{s}");
    assert!(
        s["bus"]["cameras"]["cam"]["received"].as_u64() > Some(10),
        "{s}"
    );
    assert!(
        camera_state(&s, "cam")["source"]
            .as_str()
            .is_some_and(|src| src.starts_with("nats:"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_source_serves_one_camera_from_the_bus_under_another_name() {
    if !have_nats() {
        return;
    }
    let nats = Nats::start(&[]);
    let (cam, _) = scripted("cam", Duration::from_secs(10));
    let _origin = node(vec![cam], publishing(&nats.url())).await;
    let spec: mjpegd::source::SourceSpec = format!("{}/cam", nats.url()).parse().expect("spec");
    let opener = spec
        .opener(mjpegd::source::Params {
            width: 160,
            height: 120,
            fps: 30.0,
            quality: 70,
        })
        .expect("opener");
    let relay = TestServer::start(
        vec![camera("lobby", opener)],
        HttpConfig {
            public_state: true,
            ..HttpConfig::default()
        },
        ServerConfig::default(),
    )
    .await;
    let mut v = MjpegClient::connect(&relay.url("/cameras/lobby/stream")).await;
    let p = live_part(&mut v).await;
    assert!(p.seq() >= 1);
    let s = state(&relay).await;
    assert_eq!(camera_state(&s, "lobby")["state"], "online", "{s}");
    assert!(
        s["bus"]["sources"].as_array().is_some_and(|l| l
            .iter()
            .any(|x| x["cameras"]["cam"]["received"].as_u64() > Some(0))),
        "{s}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demand_follows_edge_viewers_and_the_camera_node_idles_without_them() {
    if !have_nats() {
        return;
    }
    let nats = Nats::start(&[]);
    let (cam, script) = scripted("cam", Duration::from_secs(1));
    let origin = node(vec![cam], publishing(&nats.url())).await;
    let e = node(vec![], edge(&nats.url())).await;
    edge_has(&e, "cam").await;
    // Discovered but unwatched: nothing asks the camera node for frames.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        script.opens(),
        0,
        "the camera must not capture for an edge nobody watches"
    );
    assert_eq!(camera_state(&state(&origin).await, "cam")["state"], "idle");

    let mut v = MjpegClient::connect(&e.url("/cameras/cam/stream")).await;
    live_part(&mut v).await;
    assert_eq!(script.opens(), 1);
    let s = state(&origin).await;
    assert_eq!(s["bus"]["cameras"]["cam"]["demand"], true, "{s}");
    drop(v);

    // Edge idle (1 s) + demand hold (3 s) + camera node idle (1 s), then idle everywhere.
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let s = state(&origin).await;
        if camera_state(&s, "cam")["state"] == "idle" {
            assert_eq!(s["bus"]["cameras"]["cam"]["demand"], false, "{s}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the camera node kept capturing: {s}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(camera_state(&state(&e).await, "cam")["state"], "idle");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_discovers_a_camera_node_started_later_and_forgets_it_when_gone() {
    if !have_nats() {
        return;
    }
    let nats = Nats::start(&[]);
    let e = node(vec![], edge(&nats.url())).await;
    let resp = reqwest::get(e.url("/cameras/late/stream"))
        .await
        .expect("get");
    assert_eq!(resp.status(), 404);

    let (cam, _) = scripted("late", Duration::from_secs(1));
    let origin = node(vec![cam], publishing(&nats.url())).await;
    edge_has(&e, "late").await;
    let mut v = MjpegClient::connect(&e.url("/cameras/late/stream")).await;
    let p = live_part(&mut v).await;
    assert!(p.seq() >= 1);
    let s = state(&e).await;
    assert_eq!(camera_state(&s, "late")["state"], "online", "{s}");
    drop(v);
    origin.stop().await;

    // Three missed announcements, and nobody watching: removed.
    let deadline = Instant::now() + Duration::from_secs(20);
    while e.state.hub().get("late").is_some() {
        assert!(
            Instant::now() < deadline,
            "the edge never forgot the camera"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let resp = reqwest::get(e.url("/cameras/late/stream"))
        .await
        .expect("get");
    assert_eq!(resp.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_server_restart_shows_no_signal_then_live_video_within_two_seconds() {
    if !have_nats() {
        return;
    }
    let mut nats = Nats::start(&[]);
    let (cam, _) = scripted("cam", Duration::from_secs(10));
    let _origin = node(vec![cam], publishing(&nats.url())).await;
    let e = node(vec![], edge(&nats.url())).await;
    edge_has(&e, "cam").await;
    let mut v = MjpegClient::connect(&e.url("/cameras/cam/stream")).await;
    live_part(&mut v).await;

    nats.stop();
    no_signal_part(&mut v).await;
    let s = state(&e).await;
    assert_eq!(s["bus"]["connected"], false, "{s}");
    assert_eq!(camera_state(&s, "cam")["state"], "offline", "{s}");
    // Down for longer than the demand hold: the camera node must be asked again.
    tokio::time::sleep(Duration::from_secs(4)).await;
    no_signal_part(&mut v).await;

    nats.restart();
    let back = Instant::now();
    live_part(&mut v).await;
    let took = back.elapsed();
    eprintln!("live video {took:?} after nats-server came back");
    assert!(
        took < Duration::from_secs(2),
        "live video took {took:?} after the server's return"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edges_resume_when_the_camera_node_restarts() {
    if !have_nats() {
        return;
    }
    let nats = Nats::start(&[]);
    let (cam, _) = scripted("cam", Duration::from_secs(10));
    let origin = node(vec![cam], publishing(&nats.url())).await;
    let e = node(vec![], edge(&nats.url())).await;
    edge_has(&e, "cam").await;
    let mut v = MjpegClient::connect(&e.url("/cameras/cam/stream")).await;
    let before = live_part(&mut v).await;

    origin.stop().await;
    no_signal_part(&mut v).await;
    let (cam, _) = scripted("cam", Duration::from_secs(10));
    let _origin = node(vec![cam], publishing(&nats.url())).await;
    let after = live_part(&mut v).await;
    assert!(
        after.timestamp() > before.timestamp(),
        "frames from the restarted camera node"
    );
}

/// Connections a cluster node serves, from its monitoring port.
async fn connections(monitor: u16) -> u64 {
    let v: serde_json::Value = reqwest::get(format!("http://127.0.0.1:{monitor}/connz"))
        .await
        .expect("connz")
        .json()
        .await
        .expect("connz JSON");
    v["num_connections"].as_u64().unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn video_continues_when_a_cluster_node_is_killed() {
    if !have_nats() {
        return;
    }
    let ports: Vec<(u16, u16, u16)> = (0..3)
        .map(|_| (free_port(), free_port(), free_port()))
        .collect();
    let mut servers: Vec<Nats> = (0..3)
        .map(|i| {
            let routes: Vec<String> = (0..3)
                .filter(|j| *j != i)
                .map(|j| format!("nats://127.0.0.1:{}", ports[j].1))
                .collect();
            Nats::start_on(
                ports[i].0,
                vec![
                    "--cluster_name".into(),
                    "mjpegd-test".into(),
                    "--cluster".into(),
                    format!("nats://127.0.0.1:{}", ports[i].1),
                    "--routes".into(),
                    routes.join(","),
                    "-m".into(),
                    ports[i].2.to_string(),
                ],
            )
        })
        .collect();
    // Wait for the full mesh of routes.
    for (_, _, m) in &ports {
        let deadline = Instant::now() + WAIT;
        loop {
            let v: serde_json::Value = reqwest::get(format!("http://127.0.0.1:{m}/routez"))
                .await
                .expect("routez")
                .json()
                .await
                .expect("routez JSON");
            if v["num_routes"].as_u64() >= Some(2) {
                break;
            }
            assert!(Instant::now() < deadline, "cluster did not form: {v}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let all: Vec<String> = ports
        .iter()
        .map(|p| format!("nats://127.0.0.1:{}", p.0))
        .collect();
    let (cam, _) = scripted("cam", Duration::from_secs(10));
    let _origin = node(
        vec![cam],
        BusSection {
            url: Some(OneOrMany::Many(all.clone())),
            publish: Some(PublishSection::All(true)),
            ..BusSection::default()
        },
    )
    .await;
    let e = node(
        vec![],
        BusSection {
            url: Some(OneOrMany::Many(all.clone())),
            cameras_from: Some(all.join(",")),
            idle_timeout: Some(1),
            ..BusSection::default()
        },
    )
    .await;
    edge_has(&e, "cam").await;
    let mut v = MjpegClient::connect(&e.url("/cameras/cam/stream")).await;
    live_part(&mut v).await;

    // Kill the node serving the most mjpegd connections: at least one side must fail over.
    let mut counts = Vec::new();
    for (_, _, m) in &ports {
        counts.push(connections(*m).await);
    }
    let victim = (0..3).max_by_key(|i| counts[*i]).expect("a node");
    assert!(counts[victim] >= 1, "no node has a connection: {counts:?}");
    if let Some(c) = servers[victim].child.as_mut() {
        // SIGKILL: no lame-duck notice, sockets just die.
        let _ = c.kill();
    }
    servers[victim].stop();
    let killed = Instant::now();
    let mut fresh = 0;
    let first = live_part(&mut v).await.timestamp();
    while fresh < 10 {
        let p = live_part(&mut v).await;
        if p.timestamp() > first {
            fresh += 1;
        }
        assert!(
            killed.elapsed() < WAIT,
            "video did not continue after a node died"
        );
    }
    eprintln!(
        "10 live frames {:?} after killing node {victim}",
        killed.elapsed()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frame_over_max_payload_is_a_clear_error_not_a_crash() {
    if !have_nats() {
        return;
    }
    let dir = tempfile::tempdir().expect("tmp");
    let conf = dir.path().join("nats.conf");
    std::fs::write(&conf, "max_payload: 20000\n").expect("write conf");
    let nats = Nats::start(&["-c", conf.to_str().expect("utf-8")]);
    let big = Scripted::new(Script {
        fps: 10.0,
        width: 320,
        height: 240,
        noise: true,
        ..Script::default()
    });
    let small = Scripted::new(Script {
        fps: 10.0,
        ..Script::default()
    });
    let origin = node(
        vec![camera("big", big), camera("small", small)],
        publishing(&nats.url()),
    )
    .await;
    let e = node(vec![], edge(&nats.url())).await;
    edge_has(&e, "big").await;
    edge_has(&e, "small").await;
    let mut vb = MjpegClient::connect(&e.url("/cameras/big/stream")).await;
    let mut vs = MjpegClient::connect(&e.url("/cameras/small/stream")).await;
    // The big camera's viewers see no-signal; the small camera on the same bus is unaffected.
    no_signal_part(&mut vb).await;
    live_part(&mut vs).await;
    let deadline = Instant::now() + WAIT;
    let err = loop {
        let s = state(&origin).await;
        let c = &s["bus"]["cameras"]["big"];
        if c["oversize"].as_u64() > Some(0) {
            break c["last_error"].as_str().expect("an error").to_owned();
        }
        assert!(Instant::now() < deadline, "no oversize error: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(err.contains("max_payload of 20000 bytes"), "{err}");
    assert!(
        err.contains("raise max_payload in the nats-server config"),
        "{err}"
    );
    let size: usize = err
        .split("a frame of ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no frame size in {err:?}"));
    assert!(size > 20000, "{err}");
    // Still serving, still connected.
    no_signal_part(&mut vb).await;
    live_part(&mut vs).await;
    let s = state(&origin).await;
    assert_eq!(s["bus"]["connected"], true, "{s}");
    assert_eq!(s["bus"]["cameras"]["big"]["published"], 0, "{s}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_messages_are_counted_and_skipped() {
    if !have_nats() {
        return;
    }
    let nats = Nats::start(&[]);
    let (cam, _) = scripted("cam", Duration::from_secs(10));
    let _origin = node(vec![cam], publishing(&nats.url())).await;
    let e = node(vec![], edge(&nats.url())).await;
    edge_has(&e, "cam").await;
    let mut v = MjpegClient::connect(&e.url("/cameras/cam/stream")).await;
    live_part(&mut v).await;

    let rogue = async_nats::connect(nats.url()).await.expect("connect");
    let jpeg = numbered_jpeg(999_999, 160, 120, false);
    let mut good = async_nats::HeaderMap::new();
    for (k, val) in [
        ("Mjpegd-Seq", "1"),
        ("Mjpegd-Captured-Us", "1764000000000000"),
        ("Mjpegd-Width", "160"),
        ("Mjpegd-Height", "120"),
        ("Mjpegd-Online", "1"),
    ] {
        good.insert(k, val);
    }
    let mut wrong_size = good.clone();
    wrong_size.insert("Mjpegd-Width", "4000");
    let mut bad_seq = good.clone();
    bad_seq.insert("Mjpegd-Seq", "many");
    let sends: Vec<(Option<async_nats::HeaderMap>, bytes::Bytes)> = vec![
        (None, jpeg.clone()),
        (
            Some(good.clone()),
            bytes::Bytes::from_static(b"not a jpeg at all"),
        ),
        (Some(wrong_size), jpeg.clone()),
        (Some(bad_seq), jpeg.clone()),
        (Some(good), jpeg.slice(..jpeg.len() / 2)),
    ];
    let n = sends.len() as u64;
    for (h, payload) in sends {
        match h {
            Some(h) => rogue
                .publish_with_headers("mjpegd.frames.cam", h, payload)
                .await
                .expect("publish"),
            None => rogue
                .publish("mjpegd.frames.cam", payload)
                .await
                .expect("publish"),
        }
        // One at a time, so the edge reads each rather than skipping to the newest.
        rogue.flush().await.expect("flush");
        tokio::time::sleep(Duration::from_millis(150)).await;
    }
    let deadline = Instant::now() + WAIT;
    loop {
        let s = state(&e).await;
        let c = &s["bus"]["cameras"]["cam"];
        if c["malformed"].as_u64() >= Some(n) {
            assert!(
                c["last_error"]
                    .as_str()
                    .is_some_and(|e| e.contains("malformed")),
                "{s}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "malformed messages not counted: {s}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // The garbage was never shown; live frames go on.
    for _ in 0..5 {
        let p = live_part(&mut v).await;
        assert_ne!(p.seq(), 999_999, "a malformed message reached a viewer");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_stay_out_of_state_and_logs() {
    if !have_nats() {
        return;
    }
    const SECRET: &str = "S3cret-pw-77";
    let nats = Nats::start(&["--user", "alice", "--pass", SECRET]);
    let url = format!("nats://alice:{SECRET}@127.0.0.1:{}", nats.port);
    // Binaries, so their whole log (debug level, the NATS client's included) can be read.
    let (mut origin, origin_url, origin_log) = spawn_logged(&[
        "--source",
        "testpattern",
        "--size",
        "160x120",
        "--fps",
        "5",
        "--public-state",
        "--publish",
        &url,
    ]);
    let (mut edge, edge_url, edge_log) = spawn_logged(&["--public-state", "--cameras-from", &url]);
    let deadline = Instant::now() + WAIT;
    loop {
        let s = reqwest::get(format!("{edge_url}/api/state"))
            .await
            .expect("state")
            .text()
            .await
            .expect("text");
        if s.contains("\"default\"") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "edge never discovered the camera: {s}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Authenticated: frames flow from the camera node through the bus.
    let mut v = MjpegClient::connect(&format!("{edge_url}/cameras/default/stream")).await;
    let deadline = Instant::now() + WAIT;
    loop {
        v.part().await.decode();
        let s: serde_json::Value = reqwest::get(format!("{edge_url}/api/state"))
            .await
            .expect("state")
            .json()
            .await
            .expect("json");
        if s["bus"]["cameras"]["default"]["received"].as_u64() >= Some(3) {
            break;
        }
        assert!(Instant::now() < deadline, "no frames over the bus: {s}");
    }
    drop(v);
    for base in [&origin_url, &edge_url] {
        let s = reqwest::get(format!("{base}/api/state"))
            .await
            .expect("state")
            .text()
            .await
            .expect("text");
        assert!(!s.contains(SECRET), "password in {base}/api/state: {s}");
        assert!(s.contains("127.0.0.1"), "servers shown: {s}");
    }
    for c in [&mut origin, &mut edge] {
        let _ = c.kill();
        let _ = c.wait();
    }
    for log in [origin_log, edge_log] {
        let text = log.lock().expect("log").join("\n");
        assert!(text.contains("bus: connected"), "{text}");
        assert!(!text.contains(SECRET), "password in the log:\n{text}");
    }
}

type Log = Arc<std::sync::Mutex<Vec<String>>>;

/// Starts the binary at debug level; returns it, its base URL and its collected log lines.
fn spawn_logged(args: &[&str]) -> (Child, String, Log) {
    use std::io::{BufRead, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_mjpegd"))
        .args(["--listen", "127.0.0.1:0"])
        .args(args)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn mjpegd");
    let stderr = child.stderr.take().expect("stderr");
    let log: Log = Arc::default();
    let (tx, rx) = std::sync::mpsc::channel();
    let l = Arc::clone(&log);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(at) = line.find("streaming at http") {
                let url = line[at + "streaming at ".len()..]
                    .split_whitespace()
                    .next()
                    .unwrap_or("");
                let _ = tx.send(url.trim_end_matches('/').to_owned());
            }
            if let Ok(mut l) = l.lock() {
                l.push(line);
            }
        }
    });
    let url = rx.recv_timeout(WAIT).expect("mjpegd did not log its URL");
    (child, url, log)
}
