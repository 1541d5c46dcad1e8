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
