//! Shared test support: an in-process server on 127.0.0.1:0, a scripted source, a strict
//! client-side reader of the MJPEG wire format that decodes every JPEG with a real decoder, and
//! one helper each for starting the binary, finding a tool and signalling a process; `page` has
//! what the browser tests share.
#![allow(dead_code, unreachable_pub, missing_docs)]

#[cfg(feature = "bus")]
pub mod nats;
pub mod page;
pub mod paint;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant, SystemTime};

use bytes::{Buf, Bytes, BytesMut};
use futures_util::StreamExt;
use mjpegd::frame::Image;
use mjpegd::http::{AppState, HttpConfig};
use mjpegd::hub::{Camera, CameraConfig};
use mjpegd::render::Canvas;
use mjpegd::server::{Server, ServerConfig};
use mjpegd::source::{BoxFuture, Opener, Source, SourceError};
pub use nix::sys::signal::Signal;
use nix::sys::signal::killpg;
use nix::unistd::Pid;
use tokio_util::sync::CancellationToken;

/// Bound on every wait in tests: long enough for a loaded CI machine, short enough to fail.
pub const WAIT: Duration = Duration::from_secs(10);

pub struct TestServer {
    pub addr: SocketAddr,
    pub state: AppState,
    pub shutdown: CancellationToken,
    pub task: Option<tokio::task::JoinHandle<std::io::Result<()>>>,
}

impl TestServer {
    pub async fn start(
        cameras: Vec<CameraConfig>,
        http: HttpConfig,
        server: ServerConfig,
    ) -> TestServer {
        // reqwest (the tests' HTTP client, and the relay's) runs on rustls with ring.
        install_crypto_provider();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        let srv = Server::new(cameras, http, server, shutdown.clone());
        let state = srv.state().clone();
        let task = Some(tokio::spawn(srv.run(listener)));
        TestServer {
            addr,
            state,
            shutdown,
            task,
        }
    }

    /// As [`TestServer::start`], serving HTTPS with the certificate and key at these paths.
    #[cfg(feature = "tls")]
    pub async fn start_tls(cameras: Vec<CameraConfig>, tls: mjpegd::tls::TlsConfig) -> TestServer {
        install_crypto_provider();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let shutdown = CancellationToken::new();
        let srv = Server::new(
            cameras,
            HttpConfig::default(),
            ServerConfig::default(),
            shutdown.clone(),
        )
        .with_tls(tls);
        let state = srv.state().clone();
        let task = Some(tokio::spawn(srv.run(listener)));
        TestServer {
            addr,
            state,
            shutdown,
            task,
        }
    }

    pub async fn with_source(opener: Arc<dyn Opener>) -> TestServer {
        TestServer::start(
            vec![camera("cam", opener)],
            HttpConfig::default(),
            ServerConfig::default(),
        )
        .await
    }

    /// Shuts the server down and waits until it has stopped serving.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.task.take() {
            let _ = t.await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn camera(&self) -> Arc<Camera> {
        self.state.hub().first().expect("a camera")
    }

    /// Waits until the server's open viewer count satisfies `pred`.
    pub async fn await_viewers(&self, pred: impl Fn(usize) -> bool) {
        tokio::time::timeout(WAIT, async {
            while !pred(self.state.viewers()) {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("viewer count stuck at {}", self.state.viewers()));
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

pub fn camera(name: &str, opener: Arc<dyn Opener>) -> CameraConfig {
    CameraConfig {
        name: name.into(),
        opener,
        width: 160,
        height: 120,
        quality: 70,
        idle_timeout: Duration::from_secs(10),
        source_timeout: Duration::from_secs(5),
        transform: mjpegd::transform::Transform {
            quality: 70,
            ..Default::default()
        },
        fps: 30.0,
        stream_size: None,
        drop_same_frames: false,
        overlay: None,
        controls: Default::default(),
    }
}

/// A JPEG whose comment segment carries `seq`, so a client can tell frames apart.
pub fn numbered_jpeg(seq: u64, width: u32, height: u32, noise: bool) -> Bytes {
    let jpeg = if noise {
        noise_jpeg(width, height)
    } else {
        let mut c = Canvas::new(width, height, [(seq * 37 % 256) as u8, 90, 160]);
        c.text(2, 2, 1, [255, 255, 255], &seq.to_string());
        c.encode(60).expect("encode")
    };
    let comment = format!("seq={seq};");
    let mut out = Vec::with_capacity(jpeg.len() + comment.len() + 4);
    out.extend_from_slice(&jpeg[..2]);
    out.extend_from_slice(&[0xFF, 0xFE]);
    out.extend_from_slice(&((comment.len() + 2) as u16).to_be_bytes());
    out.extend_from_slice(comment.as_bytes());
    out.extend_from_slice(&jpeg[2..]);
    Bytes::from(out)
}

/// A large, incompressible JPEG (encoded once per size): big frames fill socket buffers quickly.
fn noise_jpeg(width: u32, height: u32) -> Bytes {
    static CACHE: std::sync::Mutex<Vec<((u32, u32), Bytes)>> = std::sync::Mutex::new(Vec::new());
    let mut cache = CACHE.lock().expect("cache");
    if let Some((_, j)) = cache.iter().find(|(k, _)| *k == (width, height)) {
        return j.clone();
    }
    let mut c = Canvas::new(width, height, [0, 0, 0]);
    let mut x: u32 = 0x9E37_79B9;
    for y in 0..height {
        for b in c.row_mut(y) {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            *b = x as u8;
        }
    }
    let jpeg = c.encode(100).expect("encode");
    cache.push(((width, height), jpeg.clone()));
    jpeg
}

/// The `seq=N` a [`numbered_jpeg`] carries.
pub fn seq_of(jpeg: &[u8]) -> Option<u64> {
    let at = memchr::memmem::find(jpeg, b"seq=")?;
    let rest = &jpeg[at + 4..];
    let end = rest.iter().position(|&b| b == b';')?;
    std::str::from_utf8(&rest[..end]).ok()?.parse().ok()
}

/// What a scripted source does on each opening.
#[derive(Clone, Debug)]
pub struct Script {
    pub fps: f64,
    pub width: u32,
    pub height: u32,
    pub noise: bool,
    /// After this many frames of one opening, fail (None: never).
    pub fail_after: Option<u64>,
    /// Openings numbered from 1 that fail at once.
    pub failing_opens: Vec<usize>,
    /// Delay before an opening succeeds.
    pub open_delay: Duration,
    /// After this many frames, stop producing (hang) without failing.
    pub hang_after: Option<u64>,
}

impl Default for Script {
    fn default() -> Script {
        Script {
            fps: 30.0,
            width: 160,
            height: 120,
            noise: false,
            fail_after: None,
            failing_opens: vec![],
            open_delay: Duration::ZERO,
            hang_after: None,
        }
    }
}

/// A source for tests: numbered frames at a rate, failing or hanging as scripted.
pub struct Scripted {
    pub script: Script,
    pub opens: Arc<AtomicUsize>,
    pub produced: Arc<AtomicUsize>,
}

impl Scripted {
    pub fn new(script: Script) -> Arc<Scripted> {
        Arc::new(Scripted {
            script,
            opens: Arc::default(),
            produced: Arc::default(),
        })
    }
    pub fn opens(&self) -> usize {
        self.opens.load(Ordering::SeqCst)
    }
}

struct ScriptedSource {
    script: Script,
    produced: Arc<AtomicUsize>,
    n: u64,
    ticks: tokio::time::Interval,
}

impl Opener for Scripted {
    fn open(&self) -> BoxFuture<'_, Result<Box<dyn Source>, SourceError>> {
        Box::pin(async move {
            let n = self.opens.fetch_add(1, Ordering::SeqCst) + 1;
            tokio::time::sleep(self.script.open_delay).await;
            if self.script.failing_opens.contains(&n) {
                return Err(SourceError::new(format!("scripted open failure #{n}")));
            }
            let mut ticks = tokio::time::interval(Duration::from_secs_f64(1.0 / self.script.fps));
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            let s: Box<dyn Source> = Box::new(ScriptedSource {
                script: self.script.clone(),
                produced: Arc::clone(&self.produced),
                n: 0,
                ticks,
            });
            Ok(s)
        })
    }
    fn describe(&self) -> String {
        "scripted".into()
    }
}

impl Source for ScriptedSource {
    fn next_frame(&mut self) -> BoxFuture<'_, Result<Image, SourceError>> {
        Box::pin(async move {
            if self.script.fail_after.is_some_and(|f| self.n >= f) {
                return Err(SourceError::new("scripted failure"));
            }
            if self.script.hang_after.is_some_and(|h| self.n >= h) {
                std::future::pending::<()>().await;
            }
            self.ticks.tick().await;
            self.n += 1;
            let id = self.produced.fetch_add(1, Ordering::SeqCst) as u64 + 1;
            let (w, h, noise) = (self.script.width, self.script.height, self.script.noise);
            let jpeg = tokio::task::spawn_blocking(move || numbered_jpeg(id, w, h, noise))
                .await
                .map_err(|e| SourceError::new(e.to_string()))?;
            Ok(Image {
                jpeg,
                width: w,
                height: h,
            })
        })
    }
}

/// One received part.
#[derive(Debug, Clone)]
pub struct Part {
    pub headers: Vec<(String, String)>,
    pub jpeg: Bytes,
    pub received: SystemTime,
}

impl Part {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
    pub fn timestamp(&self) -> f64 {
        self.header("X-Timestamp")
            .expect("X-Timestamp")
            .parse()
            .expect("X-Timestamp is a number")
    }
    pub fn seq(&self) -> u64 {
        seq_of(&self.jpeg).expect("a numbered frame")
    }
    /// Decodes the JPEG with a real decoder and returns its size.
    pub fn decode(&self) -> (usize, usize) {
        let mut d = zune_jpeg::JpegDecoder::new(&self.jpeg[..]);
        let pixels = d
            .decode()
            .unwrap_or_else(|e| panic!("undecodable JPEG: {e:?}"));
        let (w, h) = d.dimensions().expect("dimensions");
        assert_eq!(pixels.len(), w * h * 3, "decoded size");
        (w, h)
    }
}

/// A strict reader of our wire format over an HTTP response body.
pub struct MjpegClient {
    pub response_headers: reqwest::header::HeaderMap,
    body: futures_util::stream::BoxStream<'static, Result<Bytes, String>>,
    buf: BytesMut,
    started: bool,
}

impl MjpegClient {
    pub async fn connect(url: &str) -> MjpegClient {
        install_crypto_provider();
        let resp = reqwest::get(url).await.expect("request");
        assert_eq!(resp.status(), 200, "status of {url}");
        MjpegClient::from_response(resp)
    }

    pub fn from_response(resp: reqwest::Response) -> MjpegClient {
        let headers = resp.headers().clone();
        let body = resp.bytes_stream().map(|c| c.map_err(|e| e.to_string()));
        MjpegClient::from_body(headers, body.boxed())
    }

    /// Reads the wire format from any body (an HTTP/2 stream read frame by frame, say).
    pub fn from_body(
        response_headers: reqwest::header::HeaderMap,
        body: futures_util::stream::BoxStream<'static, Result<Bytes, String>>,
    ) -> MjpegClient {
        MjpegClient {
            response_headers,
            body,
            buf: BytesMut::new(),
            started: false,
        }
    }

    async fn fill(&mut self, need: usize) -> bool {
        while self.buf.len() < need {
            match tokio::time::timeout(WAIT, self.body.next())
                .await
                .expect("stream stalled")
            {
                Some(Ok(chunk)) => self.buf.extend_from_slice(&chunk),
                Some(Err(e)) => panic!("stream error: {e}"),
                None => return false,
            }
        }
        true
    }

    /// The next part, checked against the wire format; `None` when the stream ended cleanly.
    pub async fn next_part(&mut self) -> Option<Part> {
        if !self.started {
            assert!(self.fill(9).await, "stream ended before its first boundary");
            assert_eq!(
                &self.buf[..9],
                b"--frame\r\n",
                "the body must start with the boundary"
            );
            self.buf.advance(9);
            self.started = true;
        }
        let head_end = loop {
            if let Some(i) = memchr::memmem::find(&self.buf, b"\r\n\r\n") {
                break i;
            }
            assert!(self.buf.len() < 4096, "part headers too long");
            let need = self.buf.len() + 1;
            if !self.fill(need).await {
                assert!(self.buf.is_empty(), "stream ended inside part headers");
                return None;
            }
        };
        let head = std::str::from_utf8(&self.buf[..head_end])
            .expect("ASCII headers")
            .to_owned();
        self.buf.advance(head_end + 4);
        let headers: Vec<(String, String)> = head
            .split("\r\n")
            .map(|l| {
                let (k, v) = l
                    .split_once(": ")
                    .unwrap_or_else(|| panic!("bad header line {l:?}"));
                (k.to_owned(), v.to_owned())
            })
            .collect();
        let names: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(
            names,
            ["Content-Type", "Content-Length", "X-Timestamp"],
            "part headers"
        );
        assert_eq!(headers[0].1, "image/jpeg");
        let len: usize = headers[1].1.parse().expect("Content-Length");
        assert!(self.fill(len + 11).await, "stream ended inside a part");
        let jpeg = self.buf.split_to(len).freeze();
        assert_eq!(
            &self.buf[..11],
            b"\r\n--frame\r\n",
            "boundary must follow each frame at once"
        );
        self.buf.advance(11);
        assert_eq!(&jpeg[..2], b"\xff\xd8", "JPEG SOI");
        assert_eq!(&jpeg[len - 2..], b"\xff\xd9", "JPEG EOI");
        Some(Part {
            headers,
            jpeg,
            received: SystemTime::now(),
        })
    }

    pub async fn part(&mut self) -> Part {
        self.next_part().await.expect("a part")
    }
}

/// Runs the binary with `--config config`, which must refuse to start; returns its stderr.
/// `case` names the case in the panic message.
pub fn startup_error(config: &std::path::Path, case: &str) -> String {
    let out = mjpegd_command()
        .arg("--config")
        .arg(config)
        .output()
        .expect("run mjpegd");
    assert!(!out.status.success(), "{case}: started anyway");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Fails loudly when a required external tool is missing and CI demands it (see [`find_tool`]).
pub fn require_tool(tool: &str) -> bool {
    find_tool(tool, &[tool], None).is_some()
}

/// This process's resident memory in KiB (the in-process server and its clients).
pub fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0)
}

/// Installs ring as rustls's provider for the tests' HTTP client (reqwest on rustls, as the
/// relay is), whatever features the server was built with.
/// Two users with the password `correct horse`: `alice` may watch every camera, `bob` only
/// `porch` (and control it when `bob_control`).
#[cfg(feature = "auth")]
pub fn alice_and_bob(bob_control: bool) -> Arc<mjpegd::auth::Auth> {
    use mjpegd::auth::{Auth, User, hash_password};
    let hash = hash_password("correct horse").expect("hash");
    Arc::new(Auth::new(
        vec![
            User {
                name: "alice".into(),
                password_hash: hash.clone(),
                cameras: None,
                control: true,
            },
            User {
                name: "bob".into(),
                password_hash: hash,
                cameras: Some(["porch".to_string()].into_iter().collect()),
                control: bob_control,
            },
        ],
        Some("a test secret of some length"),
    ))
}

pub fn install_crypto_provider() {
    // Err means it is installed already (by an earlier test, or by the relay in-process).
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// An HTTP client whose connections come from `ip` (another loopback address), so limits and
/// login brakes keyed by address do not mix between a test's clients.
pub fn client_from(ip: [u8; 4]) -> reqwest::Client {
    install_crypto_provider();
    reqwest::Client::builder()
        .local_address(std::net::IpAddr::from(ip))
        .build()
        .expect("client")
}

/// Writes a fresh self-signed certificate for `localhost` and its key; returns the certificate PEM.
pub fn write_self_signed(cert: &std::path::Path, key: &std::path::Path) -> String {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("cert");
    std::fs::write(cert, ck.cert.pem()).expect("write cert");
    std::fs::write(key, ck.key_pair.serialize_pem()).expect("write key");
    ck.cert.pem()
}

/// An HTTPS client that trusts only `pem` and reaches `localhost` at `addr`.
pub fn tls_client(pem: &str, addr: SocketAddr) -> reqwest::Client {
    install_crypto_provider();
    reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(pem.as_bytes()).expect("pem"))
        .resolve("localhost", addr)
        .build()
        .expect("client")
}

// External processes: the binary under test, tools on PATH, signals. One helper for each duty.

/// A command running the `mjpegd` binary under test.
pub fn mjpegd_command() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_mjpegd"));
    // Each server keeps its state (camera controls, the recording switch) apart: by default it
    // would be the user's ~/.local/state/mjpegd, shared by every test and run, and a test that
    // stops recording would stop it for the next. Tests of that state give --state-dir.
    c.env("MJPEGD_STATE_DIR", fresh_state_dir());
    c
}

/// A new, empty state directory under the target's temporary directory.
pub fn fresh_state_dir() -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join("state")
        .join(format!("{}-{n}", std::process::id()))
}

/// The first of `names` on PATH (or the path in the environment variable `override_var`), or
/// `None` after a loud SKIPPED notice naming `tool`. With MJPEGD_REQUIRE_TOOLS set (as in CI) a
/// missing tool fails the test instead.
pub fn find_tool(tool: &str, names: &[&str], override_var: Option<&str>) -> Option<PathBuf> {
    // Looked up on PATH rather than run: not every tool has a harmless version flag.
    let found = override_var
        .and_then(std::env::var_os)
        .map(PathBuf::from)
        .or_else(|| {
            let path = std::env::var_os("PATH")?;
            std::env::split_paths(&path)
                .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
                .find(|p| p.is_file())
        });
    if found.is_none() {
        if std::env::var_os("MJPEGD_REQUIRE_TOOLS").is_some() {
            panic!("{tool} is required (MJPEGD_REQUIRE_TOOLS is set) but was not found");
        }
        eprintln!(
            "\n*** SKIPPED: {tool} not found; install it (scripts/install-test-deps.sh) ***\n"
        );
    }
    found
}

/// Starts or stops (`action`) the recording of `camera` on the server at `base` over HTTP, as an
/// operator would; checking the response is the caller's.
pub async fn record_control(base: &str, camera: &str, action: &str) -> reqwest::Response {
    install_crypto_provider();
    reqwest::Client::new()
        .post(format!("{base}/cameras/{camera}/record/{action}"))
        .send()
        .await
        .expect(action)
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

/// Starts mjpegd (with `args`) under `systemd-socket-activate` listening on 127.0.0.1:`port`,
/// in its own process group. mjpegd also gets a `--listen` below `dir` that cannot be bound, so
/// an answer on `port` proves the server used the socket it was handed.
pub fn spawn_socket_activated(port: u16, dir: &std::path::Path, args: &[&str]) -> Child {
    let unbindable = format!("unix:{}/no/such/dir/mjpegd.sock", dir.display());
    Command::new("systemd-socket-activate")
        .args(["-l", &format!("127.0.0.1:{port}")])
        .arg(env!("CARGO_BIN_EXE_mjpegd"))
        .args(["--listen", &unbindable])
        .args(args)
        .process_group(0)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn systemd-socket-activate")
}

/// The first answer on a socket-activated `url`: the activator listens at once and starts
/// mjpegd on the first connection, so connections are retried for up to [`WAIT`].
pub async fn first_activated_answer(url: &str) -> reqwest::Response {
    tokio::time::timeout(WAIT, async {
        loop {
            if let Ok(r) = reqwest::get(url).await {
                break r;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("no answer on the activated socket")
}

/// Sends `signal` to the process `pid`.
pub fn signal(pid: u32, signal: Signal) {
    let pid = Pid::from_raw(i32::try_from(pid).expect("pid fits in i32"));
    nix::sys::signal::kill(pid, signal).unwrap_or_else(|e| panic!("{signal} to {pid}: {e}"));
}

/// Sends `signal` to the process group led by `pid` (a child spawned with `process_group(0)`).
pub fn signal_group(pid: u32, signal: Signal) {
    let pid = Pid::from_raw(i32::try_from(pid).expect("pid fits in i32"));
    killpg(pid, signal).unwrap_or_else(|e| panic!("{signal} to group {pid}: {e}"));
}

/// Waits up to `limit` for `child` to exit.
pub fn wait_exit(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if start.elapsed() >= limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Ends a process group we started: SIGTERM first (so it can take its helpers down with it and
/// end its streams), SIGKILL after 5 s.
pub fn stop_group(child: &mut Child) {
    if matches!(child.try_wait(), Ok(Some(_))) {
        return;
    }
    let Ok(pid) = i32::try_from(child.id()) else {
        return;
    };
    let group = Pid::from_raw(pid);
    let _ = killpg(group, Signal::SIGTERM);
    if wait_exit(child, Duration::from_secs(5)).is_none() {
        let _ = killpg(group, Signal::SIGKILL);
        let _ = child.wait();
    }
}

/// Reads a child's stderr on a thread: keeps its recent lines for failure messages, and sends
/// each line that `pick` accepts. Draining it also keeps a chatty child from blocking on a
/// full pipe.
pub fn watch_log(
    stderr: impl Read + Send + 'static,
    pick: fn(&str) -> Option<String>,
) -> (mpsc::Receiver<String>, Arc<Mutex<Vec<String>>>) {
    let (tx, rx) = mpsc::channel();
    let log = Arc::new(Mutex::new(Vec::new()));
    let keep = Arc::clone(&log);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(found) = pick(&line) {
                let _ = tx.send(found);
            }
            let mut lines = keep.lock().unwrap_or_else(PoisonError::into_inner);
            if lines.len() == 200 {
                lines.remove(0);
            }
            lines.push(line);
        }
    });
    (rx, log)
}

/// The lines a [`watch_log`] kept, for a failure message.
pub fn joined(log: &Mutex<Vec<String>>) -> String {
    log.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .join("\n")
}

/// The real `mjpegd` binary in its own process group, stopped (group and all) when dropped.
pub struct MjpegdProcess {
    pub child: Child,
    /// `http://127.0.0.1:PORT` (or `https://`), from the server's own log line.
    pub url: String,
    pub log: Arc<Mutex<Vec<String>>>,
}

impl MjpegdProcess {
    /// Starts the binary with `args` and waits until it logs where it serves. `Err` carries the
    /// log of a server that exited or never said (a port still taken, say).
    pub fn start<S: AsRef<std::ffi::OsStr>>(args: &[S]) -> Result<MjpegdProcess, String> {
        let mut child = mjpegd_command()
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .process_group(0)
            .spawn()
            .expect("spawn mjpegd");
        let (urls, log) = watch_log(child.stderr.take().expect("stderr"), |line| {
            let at = line.find("streaming at http")?;
            let url = line[at + "streaming at ".len()..]
                .split_whitespace()
                .next()?;
            Some(url.trim_end_matches('/').to_owned())
        });
        let mut server = MjpegdProcess {
            child,
            url: String::new(),
            log,
        };
        match urls.recv_timeout(WAIT) {
            Ok(url) => {
                server.url = url;
                Ok(server)
            }
            Err(_) => {
                stop_group(&mut server.child);
                Err(format!(
                    "mjpegd {:?} did not start; its log:\n{}",
                    args.iter().map(|a| a.as_ref()).collect::<Vec<_>>(),
                    joined(&server.log)
                ))
            }
        }
    }

    /// The process id (also its process group's).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it logged so far (the last 200 lines).
    pub fn log(&self) -> String {
        joined(&self.log)
    }
}

impl Drop for MjpegdProcess {
    fn drop(&mut self) {
        stop_group(&mut self.child);
    }
}
