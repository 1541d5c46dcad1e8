//! Issue 18: one test per finding of the review of recording, the bus and the direct send path,
//! each over the real binary (the input comes over HTTP or NATS), named after its finding.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::*;
use serde_json::Value;

fn client() -> reqwest::Client {
    mjpegd::crypto::install_crypto_provider();
    reqwest::Client::new()
}

/// A config with camera `cam` (320x240 test pattern, recording with `record`) and `plain`;
/// `extra` is appended (sections of its own).
fn write_config(dir: &Path, record: &str, extra: &str) -> PathBuf {
    let path = dir.join("mjpegd.toml");
    let text = format!(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[[cameras]]\nname = \"cam\"\nsource = \"testpattern\"\n\
         size = \"320x240\"\nfps = 30\n\n[cameras.record]\ndir = \"{}\"\nsegment_seconds = 1\n{record}\n\
         [[cameras]]\nname = \"plain\"\nsource = \"testpattern\"\nsize = \"160x120\"\n{extra}",
        dir.join("rec").display()
    );
    std::fs::write(&path, text).expect("write config");
    path
}

fn start(config: &Path) -> MjpegdProcess {
    let args = [std::ffi::OsStr::new("--config"), config.as_os_str()];
    MjpegdProcess::start(&args).unwrap_or_else(|e| panic!("{e}"))
}

/// Polls `/api/state` until camera `cam` has recorded at least `frames` frames.
async fn await_recorded(srv: &MjpegdProcess, frames: u64) {
    let deadline = Instant::now() + 2 * WAIT;
    loop {
        let state: Value = client()
            .get(format!("{}/api/state", srv.url))
            .send()
            .await
            .expect("state")
            .json()
            .await
            .expect("json");
        let written = state["cameras"][0]["recording"]["frames"]
            .as_u64()
            .unwrap_or(0);
        if written >= frames {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never recorded {frames} frames: {state}\n{}",
            srv.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Item 4: a non-ASCII time zone was sliced inside a UTF-8 character (a panic, the request
/// dropped); it must be a 400 naming the accepted forms, and the server must keep serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_non_ascii_time_zone_is_a_400_not_a_panic() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = start(&write_config(dir.path(), "", ""));
    await_recorded(&srv, 1).await;
    for path in [
        "/cameras/cam/frame.jpg?at=2025-12-01T08:04:20%C3%A90:00",
        "/cameras/cam/export.mkv?from=2025-12-01T08:04:20%C3%A90:00&to=1",
        "/cameras/cam/recordings?from=2025-12-01T08:04:20.5%C3%A90:00",
    ] {
        let r = client()
            .get(format!("{}{path}", srv.url))
            .send()
            .await
            .unwrap_or_else(|e| panic!("{path}: no answer ({e}); log:\n{}", srv.log()));
        assert_eq!(r.status(), 400, "{path}");
        let body = r.text().await.expect("body");
        assert!(body.contains("RFC 3339"), "{path}: {body}");
    }
    assert!(!srv.log().contains("panicked"), "{}", srv.log());
}

/// Item 1: a timelapse export from 1970 with the shortest step walked the cursor one step at a
/// time on a runtime worker while holding the catalogue lock, so `/api/state` (and the writer)
/// hung for minutes. With it running, `/api/state` and a live stream must answer within 2 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_export_request_cannot_stall_the_server() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = start(&write_config(dir.path(), "", ""));
    await_recorded(&srv, 5).await;
    let export = format!(
        "{}/cameras/cam/export.mkv?from=0&to=2100-01-01T00:00:00Z&every=0.01",
        srv.url
    );
    let background = tokio::spawn(async move { client().get(export).send().await });
    // Give the request time to reach the server and start its selection.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let limit = Duration::from_secs(2);
    let started = Instant::now();
    let state =
        tokio::time::timeout(limit, client().get(format!("{}/api/state", srv.url)).send()).await;
    assert!(
        matches!(&state, Ok(Ok(r)) if r.status() == 200),
        "/api/state did not answer within {limit:?} during the export: {state:?}"
    );
    let live = tokio::time::timeout(limit, async {
        let mut c = MjpegClient::connect(&format!("{}/cameras/plain/stream", srv.url)).await;
        c.part().await
    })
    .await;
    assert!(
        live.is_ok(),
        "no live frame within {limit:?} during the export"
    );
    // And the export itself finishes quickly (a handful of frames, one per recorded second).
    let done = tokio::time::timeout(WAIT, background).await;
    let resp = done
        .expect("the export never answered")
        .expect("task")
        .expect("export request");
    assert_eq!(resp.status(), 200, "{}", srv.log());
    eprintln!("state and stream answered in {:?}", started.elapsed());
}

/// Item 3: with `stream_size` set, four `?width=` streams took every size slot and a plain
/// `/stream` (which fits `stream_size`) got 400. The configured size keeps its slot: the fourth
/// asked-for size is the one refused, and plain viewers still get frames.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_viewers_keep_the_stream_size_slot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("mjpegd.toml");
    std::fs::write(
        &config,
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[[cameras]]\nname = \"cam\"\nsource = \"testpattern\"\n\
         size = \"320x240\"\nfps = 15\nstream_size = \"200x150\"\n",
    )
    .expect("write config");
    let srv = start(&config);
    let mut sized = Vec::new();
    for w in 100..103 {
        let url = format!("{}/cameras/cam/stream?width={w}", srv.url);
        let mut c = MjpegClient::connect(&url).await;
        let part = c.part().await;
        assert_eq!(part.decode().0, w, "{url}");
        sized.push(c);
    }
    let fourth = client()
        .get(format!("{}/cameras/cam/stream?width=103", srv.url))
        .send()
        .await
        .expect("request");
    assert_eq!(
        fourth.status(),
        400,
        "a fourth asked-for size must not take the stream_size slot"
    );
    let mut plain = MjpegClient::connect(&format!("{}/cameras/cam/stream", srv.url)).await;
    assert_eq!(plain.part().await.decode(), (200, 150));
    // The sized viewers were not disturbed.
    for c in &mut sized {
        c.part().await;
    }
}

/// Item 2: a form on any site could POST `/cameras/NAME/record/stop` with the browser's cached
/// Basic credentials. Refused now: a foreign `Origin`, or `Sec-Fetch-Site: cross-site` without
/// one; this server's own origin passes. A user with `control = false` may watch, not control.
#[cfg(feature = "auth")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_site_posts_cannot_start_or_stop_recording() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hash = mjpegd::auth::hash_password("pw").expect("hash");
    let users = format!(
        "\n[auth]\n[[auth.users]]\nname = \"owner\"\npassword_hash = \"{hash}\"\n\
         [[auth.users]]\nname = \"watcher\"\npassword_hash = \"{hash}\"\ncontrol = false\n"
    );
    let srv = start(&write_config(dir.path(), "mode = \"off\"\n", &users));
    let post = |path: &str, user: &str| {
        client()
            .post(format!("{}{path}", srv.url))
            .basic_auth(user, Some("pw"))
    };
    let state = |user: &'static str| {
        let url = format!("{}/api/state", srv.url);
        async move {
            let v: Value = client()
                .get(url)
                .basic_auth(user, Some("pw"))
                .send()
                .await
                .expect("state")
                .json()
                .await
                .expect("json");
            v["cameras"][0]["recording"]["state"]
                .as_str()
                .unwrap_or("")
                .to_owned()
        }
    };
    let start_url = "/cameras/cam/record/start";
    for (header, value) in [
        ("origin", "http://evil.example"),
        ("origin", "null"),
        ("sec-fetch-site", "cross-site"),
    ] {
        let r = post(start_url, "owner")
            .header(header, value)
            .send()
            .await
            .expect("post");
        assert_eq!(r.status(), 403, "{header}: {value}");
        assert_eq!(
            state("owner").await,
            "off",
            "{header}: {value} started recording"
        );
    }
    // A lookalike origin on another port is another origin.
    let port = srv.url.rsplit(':').next().expect("port");
    let other_port = format!(
        "http://127.0.0.1:{}",
        port.parse::<u16>().expect("port") ^ 1
    );
    let r = post(start_url, "owner")
        .header("origin", &other_port)
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 403, "{other_port}");
    // The server's own page, and a client that sends no Origin (curl), may.
    let r = post(start_url, "owner")
        .header("origin", &srv.url)
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap_or_default());
    assert_eq!(state("owner").await, "recording");
    // Watch, not control.
    let r = post("/cameras/cam/record/stop", "watcher")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 403);
    assert!(r.text().await.expect("body").contains("control"));
    assert_eq!(state("owner").await, "recording");
    let r = client()
        .get(format!("{}/cameras/cam/recordings", srv.url))
        .basic_auth("watcher", Some("pw"))
        .send()
        .await
        .expect("get");
    assert_eq!(r.status(), 200, "a watcher still sees recordings");
    let r = post("/cameras/cam/record/stop", "owner")
        .send()
        .await
        .expect("post");
    assert_eq!(r.status(), 200);
    assert_eq!(state("owner").await, "off");
}

/// A camera node of the real binary: one 160x120 test pattern at `fps` named `default`, with
/// `extra` arguments.
fn pattern_node(fps: u32, extra: &[&str]) -> MjpegdProcess {
    let fps = fps.to_string();
    let mut args = vec![
        "--listen",
        "127.0.0.1:0",
        "--public-state",
        "--source",
        "testpattern",
        "--size",
        "160x120",
        "--fps",
        &fps,
    ];
    args.extend_from_slice(extra);
    MjpegdProcess::start(&args).unwrap_or_else(|e| panic!("{e}"))
}

/// A raw-socket stream viewer: the request is written by hand, so the test decides what else
/// the client sends and when it half-closes.
struct RawViewer {
    sock: tokio::net::TcpStream,
    buf: Vec<u8>,
}

impl RawViewer {
    async fn connect(base: &str, path: &str) -> RawViewer {
        use tokio::io::AsyncWriteExt;
        let addr = base.trim_start_matches("http://");
        let mut sock = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
        sock.write_all(req.as_bytes()).await.expect("request");
        RawViewer {
            sock,
            buf: Vec::new(),
        }
    }

    /// Reads more bytes; false at the end of the stream (or a reset, which is also an end).
    async fn fill(&mut self) -> bool {
        use tokio::io::AsyncReadExt;
        let mut chunk = [0u8; 16 * 1024];
        match tokio::time::timeout(WAIT, self.sock.read(&mut chunk)).await {
            Ok(Ok(0)) | Ok(Err(_)) => false,
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                true
            }
            Err(_) => panic!("the stream stalled for {WAIT:?}"),
        }
    }

    /// The next whole JPEG of the stream (the response head is skipped on the way), decoded
    /// with a real decoder; returns its size.
    async fn frame(&mut self) -> (usize, usize) {
        loop {
            if let Some(jpeg) = self.take_jpeg() {
                let mut d = zune_jpeg::JpegDecoder::new(&jpeg[..]);
                let pixels = d
                    .decode()
                    .unwrap_or_else(|e| panic!("undecodable JPEG: {e:?}"));
                let (w, h) = d.dimensions().expect("dimensions");
                assert_eq!(pixels.len(), w * h * 3);
                return (w, h);
            }
            assert!(self.fill().await, "the stream ended before a whole frame");
        }
    }

    fn take_jpeg(&mut self) -> Option<Vec<u8>> {
        let text = &self.buf;
        let key = b"Content-Length: ";
        let at = text.windows(key.len()).position(|w| w == key)?;
        let line_end = at + text[at..].windows(2).position(|w| w == b"\r\n")?;
        let len: usize = std::str::from_utf8(&text[at + key.len()..line_end])
            .expect("ASCII length")
            .parse()
            .expect("a length");
        let body = line_end + text[line_end..].windows(4).position(|w| w == b"\r\n\r\n")? + 4;
        if text.len() < body + len {
            return None;
        }
        let jpeg = text[body..body + len].to_vec();
        self.buf.drain(..body + len);
        Some(jpeg)
    }

    /// Reads until the server closes the connection; panics if it does not within `WAIT`.
    async fn until_closed(&mut self) {
        let deadline = Instant::now() + WAIT;
        while self.fill().await {
            self.buf.clear();
            assert!(
                Instant::now() < deadline,
                "the server kept the connection open"
            );
        }
    }
}

/// Item 5: bytes a stream viewer sent after its request were read and discarded forever. Up to
/// `MAX_IGNORED_INPUT` of them are tolerated (the stream goes on); one more closes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_after_a_stream_request_is_bounded() {
    use tokio::io::AsyncWriteExt;
    let limit = mjpegd::http::MAX_IGNORED_INPUT;
    let srv = pattern_node(30, &[]);
    let mut v = RawViewer::connect(&srv.url, "/cameras/default/stream").await;
    assert_eq!(v.frame().await, (160, 120));
    v.sock
        .write_all(&vec![b'x'; limit])
        .await
        .expect("write up to the limit");
    // At the limit: the stream goes on (frames over a second or so, while the server reads).
    for _ in 0..30 {
        assert_eq!(v.frame().await, (160, 120), "{}", srv.log());
    }
    v.sock.write_all(b"x").await.expect("write one more byte");
    v.until_closed().await;
    // Others are served as before.
    let mut other = RawViewer::connect(&srv.url, "/cameras/default/stream").await;
    other.frame().await;
}

/// Item 5: a client that half-closes after its request (`nc -N`, `shutdown(Write)`) is done
/// sending, not gone: it still gets the stream.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_closed_viewer_still_gets_the_stream() {
    use tokio::io::AsyncWriteExt;
    let srv = pattern_node(30, &[]);
    let mut v = RawViewer::connect(&srv.url, "/cameras/default/stream").await;
    v.sock.shutdown().await.expect("half-close");
    let started = Instant::now();
    for _ in 0..30 {
        assert_eq!(v.frame().await, (160, 120), "{}", srv.log());
    }
    // 30 frames at 30 fps: the stream kept going for about a second after the half-close.
    eprintln!("30 frames in {:?} after the half-close", started.elapsed());
}

/// A `nats-server` on a free loopback port, killed on drop.
#[cfg(feature = "bus")]
struct Nats {
    child: std::process::Child,
    url: String,
}

#[cfg(feature = "bus")]
impl Nats {
    /// None (after a loud skip, or a failure under MJPEGD_REQUIRE_TOOLS) without `nats-server`.
    fn start() -> Option<Nats> {
        if !require_tool("nats-server") {
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let child = std::process::Command::new("nats-server")
            .args(["-a", "127.0.0.1", "-p", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("start nats-server");
        let deadline = Instant::now() + WAIT;
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nats-server did not listen");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(Nats {
            child,
            url: format!("nats://127.0.0.1:{port}"),
        })
    }
}

#[cfg(feature = "bus")]
impl Drop for Nats {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An edge of the real binary: serves every camera announced on `nats`.
#[cfg(feature = "bus")]
fn edge_node(nats: &Nats) -> MjpegdProcess {
    MjpegdProcess::start(&[
        "--listen",
        "127.0.0.1:0",
        "--public-state",
        "--cameras-from",
        &nats.url,
    ])
    .unwrap_or_else(|e| panic!("{e}"))
}

/// The names of the cameras `srv` serves, from `/api/state`.
#[cfg(feature = "bus")]
async fn camera_names(srv: &MjpegdProcess) -> Vec<String> {
    let state: Value = client()
        .get(format!("{}/api/state", srv.url))
        .send()
        .await
        .expect("state")
        .json()
        .await
        .expect("json");
    state["cameras"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|c| c["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Polls `/api/state` of `srv` until `cond` holds for its camera names, within `limit`.
#[cfg(feature = "bus")]
async fn until_cameras(
    srv: &MjpegdProcess,
    limit: Duration,
    what: &str,
    cond: impl Fn(&[String]) -> bool,
) {
    let deadline = Instant::now() + limit;
    loop {
        let names = camera_names(srv).await;
        if cond(&names) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: not within {limit:?}; cameras: {names:?}\n{}",
            srv.log()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// An announcement of these 160x120 cameras, as camera nodes send it.
#[cfg(feature = "bus")]
fn announcement(names: &[String]) -> bytes::Bytes {
    let cameras: Vec<Value> = names
        .iter()
        .map(|n| serde_json::json!({"name": n, "width": 160, "height": 120, "fps": 10.0}))
        .collect();
    serde_json::to_vec(&serde_json::json!({ "cameras": cameras }))
        .expect("json")
        .into()
}

/// Publishes one frame of camera `name` as a peer would, with these header values.
#[cfg(feature = "bus")]
async fn publish_frame(
    peer: &async_nats::Client,
    name: &str,
    seq: u64,
    captured_us: u64,
    jpeg_seq: u64,
) {
    let mut h = async_nats::HeaderMap::new();
    h.insert("Mjpegd-Seq", seq.to_string().as_str());
    h.insert("Mjpegd-Captured-Us", captured_us.to_string().as_str());
    h.insert("Mjpegd-Width", "160");
    h.insert("Mjpegd-Height", "120");
    h.insert("Mjpegd-Online", "1");
    peer.publish_with_headers(
        mjpegd::link::frames_subject(name),
        h,
        numbered_jpeg(jpeg_seq, 160, 120, false),
    )
    .await
    .expect("publish");
    peer.flush().await.expect("flush");
}

#[cfg(feature = "bus")]
fn now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_micros() as u64
}

/// A peer that announces camera `name` every second and publishes a frame every 100 ms, its
/// sequence number and capture time from `stamp(i)`, until dropped. Frames carry `i` as their
/// picture number.
#[cfg(feature = "bus")]
fn rogue_camera(
    peer: async_nats::Client,
    name: &'static str,
    stamp: impl Fn(u64) -> (u64, u64) + Send + 'static,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let ann = announcement(&[name.to_owned()]);
        for i in 0u64.. {
            if i % 10 == 0 {
                let _ = peer
                    .publish(mjpegd::link::DIRECTORY_SUBJECT, ann.clone())
                    .await;
            }
            let (seq, us) = stamp(i);
            publish_frame(&peer, name, seq, us, i).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// Item 6a: 64 made-up names re-announced every 2 s filled an edge's camera limit (64), so a
/// real camera node was never served. Made-up cameras never send a frame: a real one now gets a
/// place within a few seconds, and its frames reach a viewer.
#[cfg(feature = "bus")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn made_up_names_cannot_keep_real_cameras_off_an_edge() {
    let Some(nats) = Nats::start() else { return };
    let edge = edge_node(&nats);
    let peer = async_nats::connect(&nats.url).await.expect("connect");
    let fakes: Vec<String> = (0..64).map(|i| format!("fake{i:02}")).collect();
    let ann = announcement(&fakes);
    let flood = {
        let peer = peer.clone();
        tokio::spawn(async move {
            loop {
                let _ = peer
                    .publish(mjpegd::link::DIRECTORY_SUBJECT, ann.clone())
                    .await;
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
        })
    };
    until_cameras(
        &edge,
        WAIT,
        "the edge to fill up with made-up cameras",
        |n| n.len() >= 64,
    )
    .await;
    let camera = pattern_node(10, &["--publish", &nats.url]);
    until_cameras(
        &edge,
        Duration::from_secs(5),
        "the real camera on the full edge",
        |n| n.iter().any(|c| c == "default"),
    )
    .await;
    let mut v = MjpegClient::connect(&format!("{}/cameras/default/stream", edge.url)).await;
    // Live frames (the camera node's test pattern), not the edge's no-signal frame.
    let deadline = Instant::now() + WAIT;
    loop {
        let p = v.part().await;
        assert_eq!(p.decode(), (160, 120));
        let state: Value = client()
            .get(format!("{}/api/state", edge.url))
            .send()
            .await
            .expect("state")
            .json()
            .await
            .expect("json");
        if state["bus"]["cameras"]["default"]["received"].as_u64() >= Some(3) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no frames from the real camera: {state}"
        );
    }
    // Watched and delivering: the made-up names' next rounds do not push it out.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(camera_names(&edge).await.iter().any(|c| c == "default"));
    assert!(
        edge.log()
            .contains("dropped a discovered camera that never sent a frame"),
        "{}",
        edge.log()
    );
    flood.abort();
    drop(camera);
}

/// Item 6b: a peer's `Mjpegd-Captured-Us` was the frame time as sent. Alternating past and
/// future times now reach viewers within `PEER_CLOCK_SKEW` (5 s) of now and never going back.
#[cfg(feature = "bus")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_capture_times_are_clamped_and_monotonic() {
    let Some(nats) = Nats::start() else { return };
    let edge = edge_node(&nats);
    let peer = async_nats::connect(&nats.url).await.expect("connect");
    let hour = 3_600_000_000u64;
    let rogue = rogue_camera(peer, "rogue", move |i| {
        let now = now_us();
        let us = match i % 4 {
            0 => now + hour,
            1 => now - hour,
            2 => 1,
            _ => now + 10 * hour,
        };
        (i + 1, us)
    });
    until_cameras(&edge, WAIT, "the rogue camera on the edge", |n| {
        n.iter().any(|c| c == "rogue")
    })
    .await;
    let mut v = MjpegClient::connect(&format!("{}/cameras/rogue/stream", edge.url)).await;
    let skew = mjpegd::source::nats::PEER_CLOCK_SKEW.as_secs_f64();
    let mut last = 0.0f64;
    let mut live = 0;
    let deadline = Instant::now() + 2 * WAIT;
    while live < 20 {
        let p = v.part().await;
        p.decode();
        assert!(Instant::now() < deadline, "only {live} live frames");
        if seq_of(&p.jpeg).is_none() {
            continue; // the edge's own no-signal frame before the first peer frame
        }
        live += 1;
        let ts = p.timestamp();
        let now = now_us() as f64 / 1e6;
        assert!(
            ts <= now + skew,
            "X-Timestamp {ts} is more than {skew} s after {now}"
        );
        // Half a second for the trip through nats-server and the edge.
        assert!(
            ts >= now - skew - 0.5,
            "X-Timestamp {ts} is more than {skew} s before {now}"
        );
        assert!(ts >= last, "X-Timestamp went back from {last} to {ts}");
        last = ts;
    }
    rogue.abort();
}

/// Item 6c: `Mjpegd-Seq = u64::MAX` then `1` overflowed the gap count (a panic in this debug
/// build, killing the camera's source). The edge goes on serving the peer's frames.
#[cfg(feature = "bus")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_sequence_at_u64_max_does_not_overflow() {
    let Some(nats) = Nats::start() else { return };
    let edge = edge_node(&nats);
    let peer = async_nats::connect(&nats.url).await.expect("connect");
    // The edge reads the subject only while watched: wrap every ten frames, so wraps come
    // while the viewer below watches. Each round is 1..=9, u64::MAX, then 1 again.
    let rogue = rogue_camera(peer, "rogue", |i| {
        let seq = match i % 10 {
            9 => u64::MAX,
            n => n + 1,
        };
        (seq, now_us())
    });
    until_cameras(&edge, WAIT, "the rogue camera on the edge", |n| {
        n.iter().any(|c| c == "rogue")
    })
    .await;
    let mut v = MjpegClient::connect(&format!("{}/cameras/rogue/stream", edge.url)).await;
    let mut first = None;
    // Pictures sent 25 after the first one seen come after two wraps: they must arrive.
    let deadline = Instant::now() + 3 * WAIT;
    loop {
        let p = v.part().await;
        p.decode();
        if let Some(n) = seq_of(&p.jpeg) {
            let first = *first.get_or_insert(n);
            if n > first + 25 {
                break;
            }
        }
        assert!(
            Instant::now() < deadline,
            "no frame after two wraps\n{}",
            edge.log()
        );
    }
    assert!(!edge.log().contains("panicked"), "{}", edge.log());
    rogue.abort();
}

/// Item 6d: every message on `mjpegd.directory.query` made every camera node announce at once.
/// Under a flood of queries a camera node announces at most once per `QUERY_MIN_INTERVAL` (1 s).
#[cfg(feature = "bus")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_flood_is_answered_at_most_once_a_second() {
    use futures_util::StreamExt;
    let Some(nats) = Nats::start() else { return };
    let peer = async_nats::connect(&nats.url).await.expect("connect");
    let mut directory = peer
        .subscribe(mjpegd::link::DIRECTORY_SUBJECT)
        .await
        .expect("subscribe");
    peer.flush().await.expect("flush");
    let _camera = pattern_node(5, &["--publish", &nats.url]);
    // The node is up once it has announced.
    tokio::time::timeout(WAIT, directory.next())
        .await
        .expect("no announcement")
        .expect("subscription");
    let window = Duration::from_secs(4);
    let started = Instant::now();
    let mut queries = 0u64;
    let mut announced = 0u64;
    while started.elapsed() < window {
        for _ in 0..20 {
            peer.publish(mjpegd::link::QUERY_SUBJECT, bytes::Bytes::new())
                .await
                .expect("query");
            queries += 1;
        }
        peer.flush().await.expect("flush");
        tokio::time::sleep(Duration::from_millis(10)).await;
        while let Ok(Some(_)) =
            tokio::time::timeout(Duration::from_millis(1), directory.next()).await
        {
            announced += 1;
        }
    }
    // Late answers to the last queries.
    while let Ok(Some(_)) = tokio::time::timeout(Duration::from_millis(300), directory.next()).await
    {
        announced += 1;
    }
    let min = mjpegd::bus::directory::QUERY_MIN_INTERVAL.as_secs_f64();
    let most = (window.as_secs_f64() / min).ceil() as u64 + 1;
    eprintln!("{queries} queries in {window:?}: {announced} announcements");
    assert!(queries >= 1000, "only {queries} queries sent");
    assert!(
        announced <= most,
        "{announced} announcements for {queries} queries in {window:?}; at most {most}"
    );
    // And queries are still answered (the throttle is not a mute).
    assert!(announced >= 2, "{announced} announcements in {window:?}");
}

/// Item 7: a restricted user got 403 for a camera it may not see and 404 for one that does not
/// exist, which told it which names are taken; and `/metrics` listed every camera. Both are
/// answered as absent now, and `/metrics` lists only the cameras the user may watch.
#[cfg(feature = "auth")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restricted_users_cannot_learn_other_cameras() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hash = mjpegd::auth::hash_password("pw").expect("hash");
    let users = format!(
        "\n[auth]\n[[auth.users]]\nname = \"owner\"\npassword_hash = \"{hash}\"\n\
         [[auth.users]]\nname = \"other\"\npassword_hash = \"{hash}\"\ncameras = [\"plain\"]\n"
    );
    let srv = start(&write_config(dir.path(), "mode = \"off\"\n", &users));
    let get = |path: String, user: &str| {
        client()
            .get(format!("{}{path}", srv.url))
            .basic_auth(user, Some("pw"))
            .send()
    };
    for (path, method_post) in [
        ("/cameras/NAME/stream", false),
        ("/cameras/NAME/frame.jpg", false),
        ("/cameras/NAME/recordings", false),
        ("/cameras/NAME/export.mkv?from=0&to=1", false),
        ("/cameras/NAME/replay?from=0", false),
        ("/cameras/NAME/record/start", true),
    ] {
        let mut answers = Vec::new();
        for name in ["cam", "nosuch"] {
            let url = format!("{}{}", srv.url, path.replace("NAME", name));
            let req = if method_post {
                client().post(&url)
            } else {
                client().get(&url)
            };
            let r = req
                .basic_auth("other", Some("pw"))
                .send()
                .await
                .expect("request");
            let status = r.status();
            let body = r
                .text()
                .await
                .expect("body")
                .replace(&format!("{name:?}"), "\"NAME\"");
            answers.push((status, body));
        }
        assert_eq!(answers[0].0, 404, "{path} for a hidden camera: {answers:?}");
        assert_eq!(
            answers[0], answers[1],
            "{path}: a hidden camera is told apart from a missing one"
        );
    }
    // The camera it may watch still works, and the owner still sees both.
    let r = get("/cameras/plain/snapshot.jpg".into(), "other")
        .await
        .expect("get");
    assert_eq!(r.status(), 200);
    let metrics = |user: &'static str| {
        let url = format!("{}/metrics", srv.url);
        async move {
            let r = client()
                .get(url)
                .basic_auth(user, Some("pw"))
                .send()
                .await
                .expect("metrics");
            assert_eq!(r.status(), 200);
            r.text().await.expect("body")
        }
    };
    let theirs = metrics("other").await;
    assert!(theirs.contains("camera=\"plain\""), "{theirs}");
    assert!(
        !theirs.contains("camera=\"cam\""),
        "/metrics shows a camera the user may not watch:\n{theirs}"
    );
    let owners = metrics("owner").await;
    assert!(owners.contains("camera=\"cam\""), "{owners}");
    assert!(
        owners.contains("mjpegd_recording_bytes{camera=\"cam\"}"),
        "{owners}"
    );
}

/// Item 7: segment files and the recording directories were created with the default modes
/// (0644/0755 under the usual umask): every local user could watch the recordings. Now files are
/// at most 0640 and directories at most 0750.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recordings_are_not_readable_by_other_users() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = start(&write_config(dir.path(), "", ""));
    await_recorded(&srv, 5).await;
    let mut seen = (0, 0);
    let mut todo = vec![dir.path().join("rec")];
    while let Some(d) = todo.pop() {
        let mode = std::fs::metadata(&d).expect("stat").permissions().mode() & 0o777;
        assert_eq!(mode & 0o027, 0, "{}: directory mode {mode:o}", d.display());
        seen.0 += 1;
        for e in std::fs::read_dir(&d).expect("read_dir") {
            let path = e.expect("entry").path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let mode = std::fs::metadata(&path).expect("stat").permissions().mode() & 0o777;
                assert_eq!(mode & 0o137, 0, "{}: file mode {mode:o}", path.display());
                seen.1 += 1;
            }
        }
    }
    assert!(seen.0 >= 2 && seen.1 >= 1, "nothing checked: {seen:?}");
}

/// `write_config` with `server` lines added to its `[server]` section.
fn write_config_with_server(dir: &Path, server: &str, record: &str, extra: &str) -> PathBuf {
    let path = write_config(dir, record, extra);
    let text = std::fs::read_to_string(&path).expect("read config");
    let listen = "listen = \"127.0.0.1:0\"\n";
    std::fs::write(
        &path,
        text.replacen(listen, &format!("{listen}{server}\n"), 1),
    )
    .expect("write config");
    path
}

/// Polls `url` until it answers `status`, within `WAIT`; returns that response.
async fn until_status(url: &str, status: u16, srv: &MjpegdProcess) -> reqwest::Response {
    let deadline = Instant::now() + WAIT;
    loop {
        let r = client().get(url).send().await.expect("request");
        if r.status() == status {
            return r;
        }
        assert!(
            Instant::now() < deadline,
            "{url} never answered {status} (last {})\n{}",
            r.status(),
            srv.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Item 7: a replay took a server-wide viewer slot but not one of its camera, so replays were
/// not bounded by `max_viewers_per_camera`. They share the camera's slots with live viewers now:
/// with a limit of 1, a live viewer keeps a replay out and a replay keeps a live viewer out.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replays_take_a_viewer_slot_of_their_camera() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = start(&write_config_with_server(
        dir.path(),
        "max_viewers_per_camera = 1",
        "",
        "",
    ));
    await_recorded(&srv, 5).await;
    let live_url = format!("{}/cameras/cam/stream", srv.url);
    let replay_url = format!("{}/cameras/cam/replay?from=0&speed=0.1", srv.url);
    let mut live = MjpegClient::connect(&live_url).await;
    live.part().await;
    let r = client().get(&replay_url).send().await.expect("replay");
    assert_eq!(r.status(), 503, "a replay past the camera's viewer limit");
    assert!(r.headers().contains_key("retry-after"));
    let body = r.text().await.expect("body");
    assert!(body.contains("too many viewers (limit 1)"), "{body}");
    // The live viewer leaves: its slot goes to the replay, which then keeps live viewers out.
    drop(live);
    let replay = until_status(&replay_url, 200, &srv).await;
    let mut replay = MjpegClient::from_response(replay);
    replay.part().await.decode();
    let r = client().get(&live_url).send().await.expect("live");
    assert_eq!(
        r.status(),
        503,
        "a live viewer past the limit, a replay running"
    );
    // Another camera's slots are its own.
    let mut other = MjpegClient::connect(&format!("{}/cameras/plain/stream", srv.url)).await;
    other.part().await;
}

/// One request written by hand (`Host` as given, or none with HTTP/1.0); the status and body.
async fn raw_get(addr: &str, path: &str, host: Option<&str>) -> (u16, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut sock = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = match host {
        Some(h) => format!("GET {path} HTTP/1.1\r\nHost: {h}\r\nConnection: close\r\n\r\n"),
        None => format!("GET {path} HTTP/1.0\r\n\r\n"),
    };
    sock.write_all(req.as_bytes()).await.expect("request");
    let mut answer = Vec::new();
    tokio::time::timeout(WAIT, sock.read_to_end(&mut answer))
        .await
        .expect("no answer in time")
        .expect("read");
    let text = String::from_utf8_lossy(&answer).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

/// Item 2: a server on loopback answered any `Host`, so a page on `evil.example` whose name
/// was re-pointed at 127.0.0.1 (DNS rebinding) could read it as same-origin. Such a server now
/// answers only loopback names and addresses (any port) and the configured `[server] names`;
/// others get 421 with the reason and the fix.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_loopback_server_refuses_foreign_host_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let srv = start(&write_config(dir.path(), "mode = \"off\"\n", ""));
    let addr = srv.url.trim_start_matches("http://").to_owned();
    let port = addr.rsplit(':').next().expect("port").to_owned();
    for host in ["evil.example", &format!("evil.example:{port}"), "192.0.2.9"] {
        let (status, body) = raw_get(&addr, "/api/state", Some(host)).await;
        assert_eq!(status, 421, "Host {host}: {body}");
        assert!(
            body.contains("DNS rebinding") && body.contains("names"),
            "Host {host}: {body}"
        );
        // One sentence, as a reader sees it: no run of spaces from a badly wrapped literal.
        assert!(!body.contains("  "), "Host {host}: {body:?}");
        let (status, _) = raw_get(&addr, "/cameras/cam/stream", Some(host)).await;
        assert_eq!(status, 421, "stream with Host {host}");
    }
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("[::1]:{port}"),
        "LocalHost".to_owned(),
        "127.0.0.2".to_owned(),
    ] {
        let (status, body) = raw_get(&addr, "/api/state", Some(&host)).await;
        assert_eq!(status, 200, "Host {host}: {body}");
    }
    let (status, _) = raw_get(&addr, "/api/state", None).await;
    assert_eq!(status, 200, "a request without Host (HTTP/1.0)");
    assert!(
        srv.log().contains("refused a request for a name"),
        "{}",
        srv.log()
    );

    // A configured name is answered (any case, any port); other names still are not.
    let dir2 = tempfile::tempdir().expect("tempdir");
    let named = start(&write_config_with_server(
        dir2.path(),
        "names = [\"cam.example\"]",
        "mode = \"off\"\n",
        "",
    ));
    let addr = named.url.trim_start_matches("http://").to_owned();
    for (host, want) in [
        ("cam.example", 200),
        ("CAM.example:8443", 200),
        ("localhost", 200),
        ("evil.example", 421),
    ] {
        let (status, body) = raw_get(&addr, "/api/state", Some(host)).await;
        assert_eq!(status, want, "Host {host} with names set: {body}");
    }
}

/// Item 2: the check is for servers only this machine can reach; one listening on the network
/// answers any `Host` unless `names` is set, which then applies there too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_host_check_on_the_network_needs_names() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), "mode = \"off\"\n", "");
    let text = std::fs::read_to_string(&config).expect("read");
    std::fs::write(&config, text.replace("127.0.0.1:0", "0.0.0.0:0")).expect("write");
    let open = start(&config);
    let port = open.url.rsplit(':').next().expect("port").to_owned();
    let (status, _) = raw_get(
        &format!("127.0.0.1:{port}"),
        "/api/state",
        Some("evil.example"),
    )
    .await;
    assert_eq!(status, 200, "no names, listening on 0.0.0.0: no Host check");
    drop(open);
    let named = write_config_with_server(
        dir.path(),
        "names = [\"cam.example\"]",
        "mode = \"off\"\n",
        "",
    );
    let text = std::fs::read_to_string(&named).expect("read");
    std::fs::write(&named, text.replace("127.0.0.1:0", "0.0.0.0:0")).expect("write");
    let srv = start(&named);
    let addr = format!("127.0.0.1:{}", srv.url.rsplit(':').next().expect("port"));
    let (status, _) = raw_get(&addr, "/api/state", Some("evil.example")).await;
    assert_eq!(
        status, 421,
        "names set: the check applies on every listener"
    );
    let (status, _) = raw_get(&addr, "/api/state", Some("cam.example:80")).await;
    assert_eq!(status, 200);
}

/// A torn segment: a valid file header, then 14 bytes of a record that never finished. A scan
/// that reaches it cuts it back to its 16-byte header.
fn torn_segment() -> Vec<u8> {
    let mut bytes = b"MJPEGDS1".to_vec();
    bytes.extend_from_slice(&1_000_000i64.to_le_bytes());
    bytes.extend_from_slice(b"MJRF\x10\x00\x00\x00junkjunk!!");
    bytes
}

/// Item 7: the startup scan and tail repair followed symbolic links, so a link planted in a
/// recording directory made the server cut (or delete) a file anywhere it may write. A linked
/// segment is now skipped with a warning, a linked camera directory pauses that camera's
/// recording with the reason; neither target is touched, and the server starts and records.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recordings_never_follow_symbolic_links() {
    let dir = tempfile::tempdir().expect("tempdir");
    let outside = dir.path().join("outside");
    std::fs::create_dir_all(&outside).expect("mkdir");
    let target = outside.join("precious.seg");
    std::fs::write(&target, torn_segment()).expect("write target");
    let cam_dir = dir.path().join("rec").join("cam");
    std::fs::create_dir_all(&cam_dir).expect("mkdir");
    std::os::unix::fs::symlink(&target, cam_dir.join("29991231T000000.000000Z.seg"))
        .expect("symlink");
    // The second camera's whole directory is a link to a directory elsewhere.
    let elsewhere = dir.path().join("elsewhere");
    std::fs::create_dir_all(&elsewhere).expect("mkdir");
    std::fs::write(
        elsewhere.join("20000101T000000.000000Z.seg"),
        torn_segment(),
    )
    .expect("write");
    std::os::unix::fs::symlink(&elsewhere, dir.path().join("rec").join("plain")).expect("symlink");
    let plain_record = format!(
        "\n[cameras.record]\ndir = \"{}\"\nsegment_seconds = 1\n",
        dir.path().join("rec").display()
    );
    let srv = start(&write_config(dir.path(), "", &plain_record));
    await_recorded(&srv, 5).await;
    // The linked directory's recorder has retried (and refused) at least once more.
    let deadline = Instant::now() + 2 * WAIT;
    let plain = loop {
        let state: Value = client()
            .get(format!("{}/api/state", srv.url))
            .send()
            .await
            .expect("state")
            .json()
            .await
            .expect("json");
        let plain = state["cameras"][1]["recording"].clone();
        if plain["write_errors"].as_u64() >= Some(2) {
            break plain;
        }
        assert!(Instant::now() < deadline, "plain never retried: {state}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(plain["state"], "paused", "{plain}");
    assert!(
        plain["error"]
            .as_str()
            .unwrap_or("")
            .contains("symbolic link"),
        "{plain}"
    );
    assert_eq!(std::fs::read(&target).expect("read target"), torn_segment());
    let names: Vec<_> = std::fs::read_dir(&elsewhere)
        .expect("ls")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names.len(), 1, "files appeared behind the link: {names:?}");
    assert_eq!(
        std::fs::read(elsewhere.join("20000101T000000.000000Z.seg")).expect("read"),
        torn_segment()
    );
    assert!(
        std::fs::symlink_metadata(cam_dir.join("29991231T000000.000000Z.seg"))
            .expect("link")
            .file_type()
            .is_symlink()
    );
    assert!(
        srv.log().contains("a symbolic link, not followed"),
        "{}",
        srv.log()
    );
}

/// Item 7: `/recordings` (and `/api/state`, and record start/stop) showed the recording
/// directory to anyone allowed the camera. With authentication on only users who may watch and
/// control every camera see it; the path is gone from the others' answers, error text included.
#[cfg(feature = "auth")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_full_users_see_the_recording_path() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hash = mjpegd::auth::hash_password("pw").expect("hash");
    let users = format!(
        "\n[auth]\n[[auth.users]]\nname = \"owner\"\npassword_hash = \"{hash}\"\n\
         [[auth.users]]\nname = \"watcher\"\npassword_hash = \"{hash}\"\ncontrol = false\n\
         [[auth.users]]\nname = \"other\"\npassword_hash = \"{hash}\"\ncameras = [\"cam\"]\n"
    );
    let srv = start(&write_config(dir.path(), "", &users));
    await_recorded_as(&srv, "owner").await;
    let secret = dir.path().display().to_string();
    for (user, sees) in [("owner", true), ("watcher", false), ("other", false)] {
        for path in ["/cameras/cam/recordings", "/api/state"] {
            let body = client()
                .get(format!("{}{path}", srv.url))
                .basic_auth(user, Some("pw"))
                .send()
                .await
                .expect("get")
                .text()
                .await
                .expect("body");
            assert_eq!(body.contains(&secret), sees, "{user} {path}: {body}");
            assert!(body.contains("\"frames\""), "{user} {path}: {body}");
        }
    }
}

#[cfg(feature = "auth")]
async fn await_recorded_as(srv: &MjpegdProcess, user: &str) {
    let deadline = Instant::now() + 2 * WAIT;
    loop {
        let state: Value = client()
            .get(format!("{}/api/state", srv.url))
            .basic_auth(user, Some("pw"))
            .send()
            .await
            .expect("state")
            .json()
            .await
            .expect("json");
        if state["cameras"][0]["recording"]["frames"].as_u64() >= Some(1) {
            return;
        }
        assert!(Instant::now() < deadline, "nothing recorded: {state}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Item 7, authentication off: everyone is allowed everything, so the path is shown only to
/// requests from this machine (loopback, unix socket), not to the network.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_auth_only_this_machine_sees_the_recording_path() {
    let Some(ip) = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("8.8.8.8:53").map(|()| s))
        .and_then(|s| s.local_addr())
        .ok()
        .map(|a| a.ip())
        .filter(|ip| !ip.is_loopback())
    else {
        eprintln!("\n*** SKIPPED: no non-loopback address on this machine ***\n");
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path(), "", "");
    let text = std::fs::read_to_string(&config).expect("read");
    std::fs::write(&config, text.replace("127.0.0.1:0", "0.0.0.0:0")).expect("write");
    let srv = start(&config);
    await_recorded(&srv, 1).await;
    let port = srv.url.rsplit(':').next().expect("port");
    let secret = dir.path().display().to_string();
    let local = client()
        .get(format!("http://127.0.0.1:{port}/cameras/cam/recordings"))
        .send()
        .await
        .expect("get")
        .text()
        .await
        .expect("body");
    assert!(local.contains(&secret), "loopback: {local}");
    let remote_client = reqwest::Client::builder()
        .local_address(ip)
        .build()
        .expect("client");
    for path in ["/cameras/cam/recordings", "/api/state"] {
        let remote = remote_client
            .get(format!("http://{ip}:{port}{path}"))
            .send()
            .await
            .expect("get")
            .text()
            .await
            .expect("body");
        assert!(remote.contains("\"frames\""), "{path} from {ip}: {remote}");
        assert!(!remote.contains(&secret), "{path} from {ip}: {remote}");
    }
}

/// A client that reads an export at about 5 KB/s with a small receive buffer: sends the request,
/// says when the response head has arrived, then reads 1 KB every 200 ms until the server
/// closes. Returns the `Content-Length` and the body bytes read.
async fn trickle_export(
    addr: String,
    path: String,
    head: tokio::sync::oneshot::Sender<u16>,
) -> (u64, u64) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.set_recv_buffer_size(4096).expect("SO_RCVBUF");
    let mut s = sock
        .connect(addr.parse().expect("addr"))
        .await
        .expect("connect");
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    s.write_all(req.as_bytes()).await.expect("request");
    let mut buf = Vec::new();
    let mut chunk = [0u8; 1024];
    let (status, length, mut body) = loop {
        let n = tokio::time::timeout(WAIT, s.read(&mut chunk))
            .await
            .expect("no response head")
            .expect("read");
        assert!(n > 0, "closed before the response head");
        buf.extend_from_slice(&chunk[..n]);
        if let Some(end) = memchr::memmem::find(&buf, b"\r\n\r\n") {
            let text = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let status = text
                .split(' ')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            let length = text
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            break (status, length, (buf.len() - end - 4) as u64);
        }
    };
    let _ = head.send(status);
    loop {
        tokio::time::sleep(Duration::from_millis(200)).await;
        match s.read(&mut chunk).await {
            Ok(0) | Err(_) => return (length, body),
            Ok(n) => body += n as u64,
        }
        assert!(body < length, "the whole export was read");
    }
}

/// Item 7: an export read at 1 KB/s held one of the 4 export slots for as long as the reader
/// liked (every accepted byte reset the send timeout). An export must now deliver 256 KiB per
/// `export_rate_window` (2 s here, 60 s by default): four trickling readers are cut within a
/// few windows, which frees the slots, while a reader at full speed gets the whole file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_trickling_export_reader_loses_its_slot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("mjpegd.toml");
    std::fs::write(
        &config,
        format!(
            "[server]\nlisten = \"127.0.0.1:0\"\nexport_rate_window = 2\nsend_timeout = 120\n\n\
             [[cameras]]\nname = \"cam\"\nsource = \"testpattern\"\nsize = \"1280x720\"\n\
             fps = 30\nquality = 90\n\n[cameras.record]\ndir = \"{}\"\nsegment_seconds = 1\n",
            dir.path().join("rec").display()
        ),
    )
    .expect("write config");
    let srv = start(&config);
    // More than the socket buffers can hold (about 4 MB on the server's side), so a
    // trickling reader really is still reading.
    let deadline = Instant::now() + 6 * WAIT;
    loop {
        let state: Value = client()
            .get(format!("{}/api/state", srv.url))
            .send()
            .await
            .expect("state")
            .json()
            .await
            .expect("json");
        if state["cameras"][0]["recording"]["bytes"].as_u64() >= Some(10_000_000) {
            break;
        }
        assert!(Instant::now() < deadline, "not enough recorded: {state}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let addr = srv.url.trim_start_matches("http://").to_owned();
    let path = "/cameras/cam/export.mjpeg?from=0&to=2100-01-01T00:00:00Z".to_owned();
    let started = Instant::now();
    let mut readers = Vec::new();
    for _ in 0..mjpegd::http::MAX_EXPORTS {
        let (tx, rx) = tokio::sync::oneshot::channel();
        readers.push(tokio::spawn(trickle_export(addr.clone(), path.clone(), tx)));
        assert_eq!(rx.await.expect("head"), 200, "{}", srv.log());
    }
    let url = format!("{}{path}", srv.url);
    let r = client().get(&url).send().await.expect("fifth export");
    assert_eq!(r.status(), 503, "the slots are taken");
    drop(r);
    // The server closes them; what its socket buffers already hold still trickles out to
    // them afterwards, so the proof is the slots, free again within a few windows.
    let r = until_status(&url, 200, &srv).await;
    let freed = started.elapsed();
    eprintln!("export slots free again {freed:?} after the trickling readers started");
    let bound = Duration::from_secs(2) * 4;
    assert!(freed < bound, "the slots came back only after {freed:?}");
    let length = r.content_length().expect("Content-Length");
    let body = r
        .bytes()
        .await
        .expect("a full-speed reader gets the whole export");
    assert_eq!(body.len() as u64, length);
    // Each reader is cut in its own connection's task: on a loaded machine the last ones may
    // log a moment after the first freed a slot.
    let deadline = Instant::now() + WAIT;
    while srv.log().matches("reads too slowly").count() < readers.len() {
        assert!(
            Instant::now() < deadline,
            "not every trickling reader was cut: {}",
            srv.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        srv.log().matches("reads too slowly").count(),
        readers.len(),
        "{}",
        srv.log()
    );
    for reader in readers {
        reader.abort();
    }
}
