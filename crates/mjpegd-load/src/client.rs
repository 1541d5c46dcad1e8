//! The load run: N reading viewers (plus M stalled ones) of one URL, all on the current thread.
//!
//! Built to ingest gigabytes per second on one core: viewers share a single read buffer (reads
//! happen synchronously inside a poll, so no two viewers ever hold it at once, and a buffer that
//! stays in cache is much cheaper than thousands of cold ones), parsing is incremental and
//! zero-copy ([`super::parse`]), and latency goes into one fixed-size histogram.
//!
//! Over `https://` each HTTP/1.1 viewer is a TLS connection (the shared buffer then receives
//! the decrypted bytes); with `--http2` viewers are h2 streams, several per connection, run by
//! [`super::multiplex`] through the same per-viewer accounting.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::poll_fn;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{Instant, timeout_at};

use super::Error;
use super::multiplex;
use super::parse::{Invalid, MAX_RESPONSE_HEAD, Part, StreamParser, parse_response_head};
use super::procfs::{self, Meter, Proc, TcpState, Usage};
use super::report::{Errors, Latency, MB, ProcUsage, RunReport, Spread, Stalled};
use super::stats::{Histogram, median_sorted};
use super::tls::{ALPN_H2, ALPN_HTTP1, Connector, Trust};

/// The shared read buffer: large enough that one read usually takes all a socket has.
const READ_BUF: usize = 256 * 1024;

/// Longest wait for a TCP connection (and TLS handshake, and HTTP/2 preface) and the request
/// write.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Receive buffer of stalled viewers: small, so the server's writes block soon.
const STALLED_RCVBUF: u32 = 4 * 1024;

/// Bound on deciding the stalled viewers' fate at the end (see [`stalled_fate`]).
const STALLED_CHECK: Duration = Duration::from_secs(5);

/// How many distinct error messages a report keeps.
const ERROR_SAMPLES: usize = 5;

/// Pause before a churning viewer whose session failed joins again, so that a server refusing
/// connections is not hammered in a tight loop.
const REJOIN_AFTER_ERROR: Duration = Duration::from_millis(200);

/// An `http://` or `https://host[:port]/path` URL, the kinds the client speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// `https://`: every connection is TLS.
    pub tls: bool,
    /// `host[:port]` as given, for the `Host` header.
    pub authority: String,
    /// The host name or address.
    pub host: String,
    /// The TCP port.
    pub port: u16,
    /// Path and query, starting with `/`.
    pub path: String,
}

impl Target {
    /// Parses an `http://` or `https://` URL.
    pub fn parse(url: &str) -> Result<Target, Error> {
        let bad = |why: &str| Error::Usage(format!("bad URL {url:?}: {why}"));
        let (tls, rest) = match (url.strip_prefix("http://"), url.strip_prefix("https://")) {
            (Some(rest), _) => (false, rest),
            (None, Some(rest)) => (true, rest),
            (None, None) => return Err(bad("only http:// and https:// URLs are supported")),
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'?' => (&rest[..i], format!("/{}", &rest[i..])),
            Some(i) => (&rest[..i], rest[i..].to_owned()),
            None => (rest, "/".to_owned()),
        };
        if authority.is_empty() || authority.contains('@') {
            return Err(bad(
                "missing host (or credentials, which are not supported)",
            ));
        }
        let (host, port) = match authority.rsplit_once(':') {
            // An IPv6 literal without port, e.g. `[::1]`, has colons but no port.
            Some((h, p)) if !p.contains(']') => (h, p.parse::<u16>().map_err(|_| bad("bad port"))?),
            _ => (authority, if tls { 443 } else { 80 }),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Ok(Target {
            tls,
            authority: authority.to_owned(),
            host: host.to_owned(),
            port,
            path,
        })
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct RunConfig {
    /// The stream URL.
    pub url: String,
    /// Reading viewers.
    pub viewers: u32,
    /// Viewers that send the request and never read.
    pub stalled: u32,
    /// Length of the run, from the first connection.
    pub duration: Duration,
    /// Connections are spread evenly over this time.
    pub ramp: Duration,
    /// At most this many connections are being opened at once.
    pub connect_concurrency: usize,
    /// Process to measure (the server).
    pub pid: Option<u32>,
    /// Free-form label copied into the report.
    pub label: Option<String>,
    /// Join/leave churn: sessions last a random 0.5–1.5 × this, back to back (zero: one
    /// session for the whole run).
    pub churn: Duration,
    /// How an `https://` server's certificate is checked (required for `https://`).
    pub trust: Option<Trust>,
    /// Speak HTTP/2 (ALPN `h2` over TLS, prior knowledge on `http://`) instead of HTTP/1.1.
    pub http2: bool,
    /// With `http2`: viewers multiplexed as streams on each connection (the last connection
    /// takes the remainder).
    pub streams_per_connection: u32,
    /// With `http2`: the largest DATA frame the server may send (SETTINGS_MAX_FRAME_SIZE);
    /// `None` keeps the protocol's default of 16 KiB, which browsers keep too.
    pub h2_max_frame_size: Option<u32>,
}

/// State shared by every viewer of a run (single-threaded: `Rc`/`RefCell`).
pub(crate) struct Shared {
    pub(crate) addr: SocketAddr,
    pub(crate) target: Target,
    /// The HTTP/1.1 request, sent as is.
    request: Box<[u8]>,
    buf: RefCell<Box<[u8]>>,
    pub(crate) latency: RefCell<Histogram>,
    pub(crate) connects: Semaphore,
    /// For `https://`: the handshake every connection makes.
    pub(crate) tls: Option<Connector>,
    /// `--h2-max-frame-size`.
    pub(crate) h2_max_frame_size: Option<u32>,
}

/// Why a viewer stopped.
#[derive(Debug, Clone)]
pub(crate) enum End {
    /// The run is over (the normal end).
    Deadline,
    Connect(String),
    Status(u16),
    Disconnected(String),
    Protocol(String),
}

/// What one viewer saw.
#[derive(Debug)]
pub(crate) struct ViewerResult {
    end: End,
    /// The response was a 200 multipart stream.
    streaming: bool,
    frames: u64,
    invalid: [u64; Invalid::ALL.len()],
    missing_timestamp: u64,
    bytes: u64,
    ttff: Option<Duration>,
    fps: f64,
}

impl ViewerResult {
    /// A viewer that ended before it had a response.
    pub(crate) fn failed(end: End) -> ViewerResult {
        ViewerResult {
            end,
            streaming: false,
            frames: 0,
            invalid: [0; Invalid::ALL.len()],
            missing_timestamp: 0,
            bytes: 0,
            ttff: None,
            fps: 0.0,
        }
    }

    /// What a viewer saw until it ended with `end` (at `ended_at`).
    pub(crate) fn finish(v: &Viewer, end: End, deadline: Instant) -> ViewerResult {
        let ended_at = match end {
            End::Deadline => deadline,
            _ => Instant::now(),
        };
        let c = &v.counts;
        ViewerResult {
            streaming: v.streaming(),
            end,
            frames: c.frames,
            invalid: c.invalid,
            missing_timestamp: c.missing_timestamp,
            bytes: c.bytes,
            ttff: c.first_frame.map(|t| t - c.connected_at),
            // Frames after the first over the time since the first: the rate while streaming,
            // not diluted by connection set-up or the server's first-frame delay.
            fps: match c.first_frame {
                Some(first) if c.frames >= 2 && ended_at > first => {
                    (c.frames - 1) as f64 / (ended_at - first).as_secs_f64()
                }
                _ => 0.0,
            },
        }
    }
}

pub(crate) enum Phase {
    Head(Vec<u8>),
    Body(StreamParser),
}

/// Per-viewer counters, kept apart from the parser so the part callback can borrow them while
/// the parser is borrowed too.
pub(crate) struct Counts {
    connected_at: Instant,
    first_frame: Option<Instant>,
    frames: u64,
    invalid: [u64; Invalid::ALL.len()],
    missing_timestamp: u64,
    bytes: u64,
}

impl Counts {
    fn on_part(&mut self, part: Part, now_us: &mut Option<u64>, latency: &RefCell<Histogram>) {
        match part.verdict {
            Ok(()) => {
                self.frames += 1;
                if self.first_frame.is_none() {
                    self.first_frame = Some(Instant::now());
                }
                match part.timestamp_us {
                    Some(ts) => {
                        // One clock read per socket read, however many parts it completed.
                        let now = *now_us.get_or_insert_with(wall_clock_us);
                        latency.borrow_mut().record(now.saturating_sub(ts));
                    }
                    None => self.missing_timestamp += 1,
                }
            }
            Err(reason) => self.invalid[reason.index()] += 1,
        }
    }
}

fn wall_clock_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

pub(crate) struct Viewer {
    phase: Phase,
    counts: Counts,
}

impl Viewer {
    /// A viewer whose response head is still to come, connected (or connecting) since `at`.
    fn new(phase: Phase, connected_at: Instant) -> Viewer {
        Viewer {
            phase,
            counts: Counts {
                connected_at,
                first_frame: None,
                frames: 0,
                invalid: [0; Invalid::ALL.len()],
                missing_timestamp: 0,
                bytes: 0,
            },
        }
    }

    /// A viewer whose response head was taken by the transport (HTTP/2): its body bytes go
    /// straight to the part parser.
    pub(crate) fn body(parser: StreamParser, connected_at: Instant) -> Viewer {
        Viewer::new(Phase::Body(parser), connected_at)
    }

    /// Handles bytes just read; `Err` ends the viewer.
    pub(crate) fn on_data(&mut self, data: &[u8], latency: &RefCell<Histogram>) -> Result<(), End> {
        self.counts.bytes += data.len() as u64;
        let Viewer { phase, counts } = self;
        let mut now_us = None;
        let parser = match phase {
            Phase::Body(parser) => parser,
            Phase::Head(head) => {
                let take = (MAX_RESPONSE_HEAD - head.len()).min(data.len());
                head.extend_from_slice(&data[..take]);
                let (len, resp) = match parse_response_head(head) {
                    Ok(Some(h)) => h,
                    Ok(None) => return Ok(()),
                    Err(e) => return Err(End::Protocol(e.to_string())),
                };
                if resp.status != 200 {
                    return Err(End::Status(resp.status));
                }
                let Some(boundary) = resp.boundary else {
                    return Err(End::Protocol("response is not multipart".to_owned()));
                };
                let mut parser = StreamParser::new(resp.framing, &boundary);
                let rest = head.split_off(len);
                let mut ended = parser
                    .feed(&rest, &mut |p| counts.on_part(p, &mut now_us, latency))
                    .map_err(|e| End::Protocol(e.to_string()))?;
                ended |= parser
                    .feed(&data[take..], &mut |p| {
                        counts.on_part(p, &mut now_us, latency)
                    })
                    .map_err(|e| End::Protocol(e.to_string()))?;
                *phase = Phase::Body(parser);
                return if ended {
                    Err(End::Disconnected("the server ended the body".to_owned()))
                } else {
                    Ok(())
                };
            }
        };
        let ended = parser
            .feed(data, &mut |p| counts.on_part(p, &mut now_us, latency))
            .map_err(|e| End::Protocol(e.to_string()))?;
        if ended {
            return Err(End::Disconnected("the server ended the body".to_owned()));
        }
        Ok(())
    }

    fn streaming(&self) -> bool {
        matches!(self.phase, Phase::Body(_))
    }
}

/// An HTTP/1.1 viewer's connection.
enum Conn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

/// One read into the shared buffer, parsed before the buffer is released.
fn poll_read_once(
    cx: &mut Context<'_>,
    stream: &mut Conn,
    shared: &Shared,
    viewer: &mut Viewer,
) -> Poll<Result<(), End>> {
    let mut buf = shared.buf.borrow_mut();
    let mut rb = ReadBuf::new(&mut buf);
    // tokio's poll_read clears readiness after a short read, saving a WouldBlock syscall.
    // rustls's fills the buffer with as much plaintext as the socket has ready.
    let read = match stream {
        Conn::Plain(s) => Pin::new(s).poll_read(cx, &mut rb),
        Conn::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, &mut rb),
    };
    if let Err(e) = ready!(read) {
        return Poll::Ready(Err(End::Disconnected(e.to_string())));
    }
    let data = rb.filled();
    if data.is_empty() {
        return Poll::Ready(Err(End::Disconnected(
            "connection closed by server".to_owned(),
        )));
    }
    Poll::Ready(viewer.on_data(data, &shared.latency))
}

/// A TCP connection to the server (before any TLS or request).
pub(crate) async fn connect_tcp(shared: &Shared, rcvbuf: Option<u32>) -> io::Result<TcpStream> {
    let socket = if shared.addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    if let Some(size) = rcvbuf {
        // Must be set before connect: the window scale is fixed by the handshake.
        socket.set_recv_buffer_size(size)?;
    }
    socket.connect(shared.addr).await
}

/// A stalled viewer's connection: the request sent, nothing read.
async fn connect(shared: &Shared, rcvbuf: Option<u32>) -> io::Result<TcpStream> {
    let mut stream = connect_tcp(shared, rcvbuf).await?;
    stream.write_all(&shared.request).await?;
    Ok(stream)
}

/// An HTTP/1.1 viewer's connection, over TLS for `https://`, with the request sent.
async fn connect_viewer(shared: &Shared) -> io::Result<Conn> {
    let tcp = connect_tcp(shared, None).await?;
    let mut conn = match &shared.tls {
        None => Conn::Plain(tcp),
        Some(tls) => Conn::Tls(Box::new(tls.connect(tcp).await?)),
    };
    match &mut conn {
        Conn::Plain(s) => s.write_all(&shared.request).await?,
        Conn::Tls(s) => {
            s.write_all(&shared.request).await?;
            s.flush().await?;
        }
    }
    Ok(conn)
}

pub(crate) fn io_context(what: &str, e: &io::Error) -> String {
    let hint = if e.raw_os_error() == Some(24) {
        " (raise the open file limit: ulimit -n 65536)"
    } else {
        ""
    };
    format!("{what}: {e}{hint}")
}

async fn viewer(shared: Rc<Shared>, start_at: Instant, deadline: Instant) -> ViewerResult {
    tokio::time::sleep_until(start_at).await;
    let (mut stream, connected_at) = {
        let Ok(Ok(_permit)) = timeout_at(deadline, shared.connects.acquire()).await else {
            return ViewerResult::failed(End::Connect(
                "run ended before a connection slot was free".to_owned(),
            ));
        };
        let t0 = Instant::now();
        match timeout_at(deadline.min(t0 + CONNECT_TIMEOUT), connect_viewer(&shared)).await {
            Ok(Ok(s)) => (s, t0),
            Ok(Err(e)) => return ViewerResult::failed(End::Connect(io_context("connect", &e))),
            Err(_) => return ViewerResult::failed(End::Connect("connect timed out".to_owned())),
        }
    };
    let mut v = Viewer::new(Phase::Head(Vec::with_capacity(512)), connected_at);
    let sleep = tokio::time::sleep_until(deadline);
    tokio::pin!(sleep);
    let end = loop {
        let step = tokio::select! {
            biased;
            () = &mut sleep => break End::Deadline,
            step = poll_fn(|cx| poll_read_once(cx, &mut stream, &shared, &mut v)) => step,
        };
        if let Err(end) = step {
            break end;
        }
    };
    ViewerResult::finish(&v, end, deadline)
}

/// A uniform number in [0, 1) from a splitmix64 state (deterministic per viewer, no dependency).
fn unit(state: &mut u64) -> f64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    (z >> 11) as f64 / (1u64 << 53) as f64
}

/// One viewer's sessions: a single one without churn; with churn, sessions of a random
/// 0.5–1.5 × `churn` back to back until `deadline`, each a fresh connection (a leave and a join).
async fn viewer_sessions(
    shared: Rc<Shared>,
    start_at: Instant,
    deadline: Instant,
    churn: Duration,
    seed: u64,
) -> Vec<ViewerResult> {
    if churn.is_zero() {
        return vec![viewer(shared, start_at, deadline).await];
    }
    let mut state = seed;
    let mut sessions = Vec::new();
    let mut at = start_at;
    while at < deadline {
        let end = deadline.min(at + churn.mul_f64(0.5 + unit(&mut state)));
        let r = viewer(shared.clone(), at, end).await;
        let failed = !matches!(r.end, End::Deadline);
        sessions.push(r);
        at = Instant::now()
            + if failed {
                REJOIN_AFTER_ERROR
            } else {
                Duration::ZERO
            };
    }
    sessions
}

enum StalledFate {
    ConnectError(String),
    Rejected,
    Closed,
    Open,
}

/// Decides a stalled viewer's fate without disturbing the others: the response status by
/// peeking (reading would let the server's writes progress), then the server's side of the
/// connection in `/proc/net/tcp` (`server_side`, found when the server is on this host), and
/// only failing that by draining the socket until EOF or `limit`: a closed connection yields
/// the server's unsent buffer then EOF, an open one streams on.
async fn stalled_fate(
    mut stream: TcpStream,
    server_side: Option<TcpState>,
    limit: Instant,
) -> StalledFate {
    let mut head = [0u8; 16];
    match timeout_at(limit, stream.peek(&mut head)).await {
        Ok(Ok(0)) => return StalledFate::Closed,
        Ok(Ok(n)) if n >= 12 && !(head.starts_with(b"HTTP/1.") && &head[9..12] == b"200") => {
            return StalledFate::Rejected;
        }
        _ => {}
    }
    if let Ok(Some(_)) = stream.take_error() {
        return StalledFate::Closed;
    }
    match server_side {
        Some(state) if state.closed_locally() => return StalledFate::Closed,
        Some(_) => return StalledFate::Open,
        None => {}
    }
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match timeout_at(limit, stream.read(&mut buf)).await {
            Err(_) => return StalledFate::Open,
            Ok(Ok(0) | Err(_)) => return StalledFate::Closed,
            Ok(Ok(_)) => {}
        }
    }
}

async fn resolve(target: &Target) -> Result<SocketAddr, Error> {
    let mut addrs = tokio::net::lookup_host((target.host.as_str(), target.port))
        .await
        .map_err(|e| Error::io(format!("resolving {}", target.host), e))?;
    addrs
        .next()
        .ok_or_else(|| Error::Usage(format!("{} has no address", target.host)))
}

/// Warns when the open file limit is below what the run needs (no `unsafe` to raise it here).
fn check_fd_limit(needed: u64) {
    let soft = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|l| {
            l.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_ascii_whitespace().nth(3)?.parse::<u64>().ok())
        });
    if let Some(soft) = soft.filter(|&s| s < needed) {
        eprintln!(
            "mjpegd-load: warning: open file limit {soft} < {needed} needed; run `ulimit -n 65536` first"
        );
    }
}

fn to_proc_usage(pid: u32, u: Usage) -> ProcUsage {
    ProcUsage {
        pid,
        cpu_percent: u.cpu_percent,
        peak_rss_mb: u.peak_rss as f64 / MB,
        rss_end_mb: u.rss_end as f64 / MB,
    }
}

fn spread(mut values: Vec<f64>) -> Spread {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    Spread {
        count: n as u64,
        min: values.first().copied().unwrap_or(0.0),
        median: median_sorted(&values).unwrap_or(0.0),
        max: values.last().copied().unwrap_or(0.0),
        mean: if n == 0 {
            0.0
        } else {
            values.iter().sum::<f64>() / n as f64
        },
    }
}

/// Runs the load and measures it. Must run inside a [`tokio::task::LocalSet`] on a
/// current-thread runtime.
pub async fn run(cfg: RunConfig) -> Result<RunReport, Error> {
    let target = Target::parse(&cfg.url)?;
    if cfg.ramp >= cfg.duration && !cfg.ramp.is_zero() {
        return Err(Error::Usage(
            "--ramp must be shorter than --duration".to_owned(),
        ));
    }
    let tls = match (target.tls, &cfg.trust) {
        (false, _) => None,
        (true, None) => {
            return Err(Error::Usage(
                "https:// needs --ca FILE (the server's certificate or its CA) or --insecure"
                    .to_owned(),
            ));
        }
        (true, Some(trust)) => Some(Connector::new(
            &target.host,
            trust,
            if cfg.http2 { ALPN_H2 } else { ALPN_HTTP1 },
        )?),
    };
    if cfg.streams_per_connection == 0 {
        return Err(Error::Usage(
            "--streams-per-connection must be at least 1".to_owned(),
        ));
    }
    if !cfg.http2 && cfg.streams_per_connection != 1 {
        return Err(Error::Usage(
            "--streams-per-connection needs --http2 (HTTP/1.1 carries one stream per connection)"
                .to_owned(),
        ));
    }
    // Stalled viewers are judged by peeking at the plaintext status line and churn reconnects
    // one HTTP/1.1 viewer; neither is built for TLS or multiplexed streams yet.
    if (target.tls || cfg.http2) && cfg.stalled > 0 {
        return Err(Error::Usage(
            "--stalled works over plain http:// HTTP/1.1 only".to_owned(),
        ));
    }
    if cfg.h2_max_frame_size.is_some() && !cfg.http2 {
        return Err(Error::Usage("--h2-max-frame-size needs --http2".to_owned()));
    }
    if let Some(n) = cfg
        .h2_max_frame_size
        .filter(|n| !(16_384..=16_777_215).contains(n))
    {
        return Err(Error::Usage(format!(
            "--h2-max-frame-size {n}: HTTP/2 allows 16384 to 16777215 (RFC 9113 §6.5.2)"
        )));
    }
    if cfg.http2 && !cfg.churn.is_zero() {
        return Err(Error::Usage(
            "--churn does not work with --http2 yet".to_owned(),
        ));
    }
    let transport = format!(
        "{}{}",
        if cfg.http2 {
            format!(
                "HTTP/2, {} streams per connection{}",
                cfg.streams_per_connection,
                cfg.h2_max_frame_size
                    .map_or(String::new(), |n| format!(", {n}-byte frames"))
            )
        } else {
            "HTTP/1.1".to_owned()
        },
        if target.tls { " over TLS" } else { "" }
    );
    let addr = resolve(&target).await?;
    let connections = if cfg.http2 {
        cfg.viewers.div_ceil(cfg.streams_per_connection)
    } else {
        cfg.viewers
    };
    check_fd_limit(u64::from(connections) + u64::from(cfg.stalled) + 32);
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: mjpegd-load\r\nAccept: */*\r\n\r\n",
        target.path, target.authority
    );
    let shared = Rc::new(Shared {
        addr,
        target,
        request: request.into_bytes().into(),
        buf: RefCell::new(vec![0; READ_BUF].into()),
        latency: RefCell::new(Histogram::new()),
        connects: Semaphore::new(cfg.connect_concurrency.max(1)),
        tls,
        h2_max_frame_size: cfg.h2_max_frame_size,
    });
    let mut server = match cfg.pid {
        Some(pid) => Some(
            Meter::start(Proc::Pid(pid))
                .map_err(|e| Error::io(format!("measuring server process {pid}"), e))?,
        ),
        None => None,
    };
    let client = Meter::start(Proc::Myself).ok();

    let start = Instant::now();
    let deadline = start + cfg.duration;
    let stalled: Vec<_> = (0..cfg.stalled)
        .map(|_| {
            let shared = shared.clone();
            tokio::task::spawn_local(async move {
                let _permit = shared.connects.acquire().await;
                match tokio::time::timeout(CONNECT_TIMEOUT, connect(&shared, Some(STALLED_RCVBUF)))
                    .await
                {
                    Ok(Ok(s)) => Ok(s),
                    Ok(Err(e)) => Err(io_context("connect", &e)),
                    Err(_) => Err("connect timed out".to_owned()),
                }
            })
        })
        .collect();
    let n = connections.max(1);
    let viewers: Vec<_> = (0..connections)
        .map(|i| {
            let offset = cfg.ramp.mul_f64(f64::from(i) / f64::from(n));
            if cfg.http2 {
                let streams = cfg
                    .streams_per_connection
                    .min(cfg.viewers - i * cfg.streams_per_connection);
                tokio::task::spawn_local(multiplex::connection(
                    shared.clone(),
                    streams,
                    start + offset,
                    deadline,
                ))
            } else {
                tokio::task::spawn_local(viewer_sessions(
                    shared.clone(),
                    start + offset,
                    deadline,
                    cfg.churn,
                    u64::from(i),
                ))
            }
        })
        .collect();

    // Sample the server's RSS while the viewers run, to catch peaks without VmHWM.
    loop {
        let now = Instant::now();
        if now >= deadline {
            break;
        }
        tokio::time::sleep((deadline - now).min(Duration::from_millis(250))).await;
        if let Some(m) = server.as_mut() {
            m.sample();
        }
    }
    let server_usage = match (server, cfg.pid) {
        (Some(m), Some(pid)) => Some(to_proc_usage(
            pid,
            m.finish()
                .map_err(|e| Error::io(format!("measuring server process {pid}"), e))?,
        )),
        _ => None,
    };
    let client_cpu = client.and_then(|m| m.finish().ok()).map(|u| u.cpu_percent);
    let measured = start.elapsed().as_secs_f64();

    // One entry per viewer, holding its sessions (an h2 stream is a viewer of one session).
    let mut results = Vec::with_capacity(cfg.viewers as usize);
    for h in viewers {
        match h.await {
            Ok(r) if cfg.http2 => results.extend(r.into_iter().map(|s| vec![s])),
            Ok(r) => results.push(r),
            Err(e) => return Err(Error::Usage(format!("viewer task failed: {e}"))),
        }
    }

    let mut stalled_errors = Vec::new();
    let stalled_report = if cfg.stalled > 0 {
        let mut opened = Vec::with_capacity(stalled.len());
        for h in stalled {
            opened.push(
                h.await
                    .map_err(|e| Error::Usage(format!("stalled task failed: {e}")))?,
            );
        }
        // One snapshot for all: a remote server simply is not in it (then we drain).
        let sockets = procfs::tcp_sockets().unwrap_or_default();
        let limit = Instant::now() + STALLED_CHECK;
        let mut checks = Vec::new();
        for o in opened {
            let server_side = o.as_ref().ok().and_then(|s| {
                let key = (s.peer_addr().ok()?, s.local_addr().ok()?);
                sockets.get(&key).copied()
            });
            checks.push(tokio::task::spawn_local(async move {
                match o {
                    Ok(s) => stalled_fate(s, server_side, limit).await,
                    Err(e) => StalledFate::ConnectError(e),
                }
            }));
        }
        let mut s = Stalled {
            requested: cfg.stalled,
            ..Stalled::default()
        };
        for c in checks {
            match c
                .await
                .map_err(|e| Error::Usage(format!("stalled check failed: {e}")))?
            {
                StalledFate::ConnectError(e) => {
                    s.connect_errors += 1;
                    stalled_errors.push(format!("stalled viewer: {e}"));
                }
                StalledFate::Rejected => s.rejected += 1,
                StalledFate::Closed => s.closed_by_server += 1,
                StalledFate::Open => s.still_open += 1,
            }
        }
        s.opened = s.requested - s.connect_errors;
        Some(s)
    } else {
        None
    };

    let mut errors = Errors::default();
    let mut invalid = [0u64; Invalid::ALL.len()];
    let (mut frames, mut bytes, mut missing_timestamp) = (0, 0, 0);
    let mut fps = Vec::new();
    let mut ttff = Vec::new();
    let streaming = results
        .iter()
        .filter(|sessions| sessions.iter().any(|r| r.streaming))
        .count() as u32;
    let sessions = results.iter().map(|s| s.len() as u64).sum();
    for r in results.iter().flatten() {
        frames += r.frames;
        bytes += r.bytes;
        missing_timestamp += r.missing_timestamp;
        for (a, b) in invalid.iter_mut().zip(r.invalid) {
            *a += b;
        }
        if r.streaming {
            fps.push(r.fps);
        }
        if let Some(t) = r.ttff {
            ttff.push(t.as_secs_f64() * 1e3);
        }
        let message = match &r.end {
            End::Deadline => None,
            End::Connect(m) => {
                errors.connect += 1;
                Some(m.clone())
            }
            End::Status(code) => {
                errors.http_status += 1;
                *errors.status_codes.entry(code.to_string()).or_default() += 1;
                Some(format!("HTTP status {code}"))
            }
            End::Disconnected(m) => {
                errors.disconnected += 1;
                Some(m.clone())
            }
            End::Protocol(m) => {
                errors.protocol += 1;
                Some(m.clone())
            }
        };
        if let Some(m) = message {
            if errors.samples.len() < ERROR_SAMPLES && !errors.samples.contains(&m) {
                errors.samples.push(m);
            }
        }
    }
    for m in stalled_errors {
        if errors.samples.len() < ERROR_SAMPLES && !errors.samples.contains(&m) {
            errors.samples.push(m);
        }
    }
    let latency = shared.latency.borrow();
    let ms = |us: u64| us as f64 / 1e3;
    let invalid_by_reason: BTreeMap<String, u64> = Invalid::ALL
        .iter()
        .zip(invalid)
        .filter(|&(_, n)| n > 0)
        .map(|(r, n)| (r.name().to_owned(), n))
        .collect();
    Ok(RunReport {
        label: cfg.label,
        url: cfg.url,
        viewers: cfg.viewers,
        transport,
        connections,
        duration_s: measured,
        ramp_s: cfg.ramp.as_secs_f64(),
        viewers_streaming: streaming,
        sessions,
        fps: spread(fps),
        frames,
        bytes,
        mbytes_per_s: if measured > 0.0 {
            bytes as f64 / MB / measured
        } else {
            0.0
        },
        ttff_ms: spread(ttff),
        latency_ms: Latency {
            samples: latency.count(),
            p50: ms(latency.quantile(0.5)),
            p99: ms(latency.quantile(0.99)),
            max: ms(latency.max()),
            mean: latency.mean() / 1e3,
        },
        invalid_parts: invalid.iter().sum(),
        invalid_by_reason,
        missing_timestamp,
        errors,
        stalled: stalled_report,
        server: server_usage,
        client_cpu_percent: client_cpu,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    fn config(addr: SocketAddr, viewers: u32, stalled: u32) -> RunConfig {
        RunConfig {
            url: format!("http://{addr}/stream"),
            viewers,
            stalled,
            duration: Duration::from_millis(700),
            ramp: Duration::ZERO,
            connect_concurrency: 4,
            pid: Some(std::process::id()),
            label: None,
            churn: Duration::ZERO,
            trust: None,
            http2: false,
            streams_per_connection: 1,
            h2_max_frame_size: None,
        }
    }

    fn jpeg() -> Vec<u8> {
        let mut j = vec![0xFF, 0xD8];
        j.extend(std::iter::repeat_n(0x55, 3000));
        j.extend([0xFF, 0xD9]);
        j
    }

    #[test]
    fn measures_the_ceiling_server() {
        let report = crate::block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("addr");
            tokio::task::spawn_local(crate::ceiling::serve_on(listener, jpeg().into(), 50.0));
            run(config(addr, 3, 1)).await
        })
        .expect("runtime")
        .expect("run");
        assert_eq!(report.viewers_streaming, 3);
        assert_eq!(report.invalid_parts, 0);
        assert_eq!(report.errors.total(), 0, "{:?}", report.errors);
        assert!(report.frames >= 3 * 20, "{} frames", report.frames);
        assert!(
            (35.0..65.0).contains(&report.fps.median),
            "{:?}",
            report.fps
        );
        assert_eq!(report.latency_ms.samples, report.frames);
        assert_eq!(report.ttff_ms.count, 3);
        let stalled = report.stalled.expect("stalled requested");
        assert_eq!((stalled.opened, stalled.still_open), (1, 1));
        assert!(report.server.is_some_and(|s| s.peak_rss_mb > 0.0));
    }

    /// A chunked server whose every third part is invalid, and which hangs up after 10 parts.
    async fn chunked_server(listener: TcpListener) {
        loop {
            let Ok((mut s, _)) = listener.accept().await else {
                return;
            };
            tokio::task::spawn_local(async move {
                let mut req = [0u8; 1024];
                let _ = s.read(&mut req).await;
                let mut out = b"HTTP/1.1 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary=\"frame\"\r\nTransfer-Encoding: chunked\r\n\r\n9\r\n--frame\r\n\r\n".to_vec();
                let j = jpeg();
                for i in 0..10 {
                    let ct = if i % 3 == 2 {
                        "text/plain"
                    } else {
                        "image/jpeg"
                    };
                    let head = format!(
                        "Content-Type: {ct}\r\nContent-Length: {}\r\nX-Timestamp: {}\r\n\r\n",
                        j.len(),
                        mjpegd::mjpeg::write::timestamp_value(SystemTime::now())
                    );
                    for piece in [head.as_bytes(), &j, b"\r\n--frame\r\n"] {
                        out.extend(format!("{:x}\r\n", piece.len()).bytes());
                        out.extend_from_slice(piece);
                        out.extend_from_slice(b"\r\n");
                    }
                    if s.write_all(&out).await.is_err() {
                        return;
                    }
                    out.clear();
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                let _ = s.write_all(b"0\r\n\r\n").await;
            });
        }
    }

    #[test]
    fn churn_rejoins_without_counting_leaves_as_errors() {
        let report = crate::block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("addr");
            tokio::task::spawn_local(crate::ceiling::serve_on(listener, jpeg().into(), 50.0));
            let mut cfg = config(addr, 3, 0);
            cfg.duration = Duration::from_millis(2000);
            cfg.churn = Duration::from_millis(400);
            run(cfg).await
        })
        .expect("runtime")
        .expect("run");
        assert_eq!(report.viewers_streaming, 3);
        assert_eq!(report.errors.total(), 0, "{:?}", report.errors);
        assert_eq!(report.invalid_parts, 0);
        // Sessions last 200-600 ms in a 2 s run: at least 3 per viewer, at most 10.
        assert!(
            (9..=30).contains(&report.sessions),
            "{} sessions",
            report.sessions
        );
        assert_eq!(report.ttff_ms.count, report.sessions);
    }

    #[test]
    fn counts_invalid_parts_and_disconnects() {
        let report = crate::block_on(async {
            let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
            let addr = listener.local_addr().expect("addr");
            tokio::task::spawn_local(chunked_server(listener));
            run(config(addr, 2, 0)).await
        })
        .expect("runtime")
        .expect("run");
        assert_eq!(report.frames, 2 * 7);
        assert_eq!(report.invalid_parts, 2 * 3);
        assert_eq!(report.invalid_by_reason.get("content_type"), Some(&6));
        assert_eq!(report.errors.disconnected, 2);
        assert_eq!(report.latency_ms.samples, 14);
    }

    #[test]
    fn refuses_what_it_cannot_run_before_connecting() {
        let addr: SocketAddr = "127.0.0.1:1".parse().expect("addr");
        let refused = |cfg: RunConfig| match crate::block_on(run(cfg)).expect("runtime") {
            Err(Error::Usage(m)) => m,
            other => panic!("expected a usage error, got {other:?}"),
        };
        let mut https = config(addr, 1, 0);
        https.url = "https://127.0.0.1:1/stream".into();
        assert!(refused(https.clone()).contains("--ca"));
        https.trust = Some(Trust::Insecure);
        https.stalled = 1;
        assert!(refused(https).contains("--stalled"));
        let mut c = config(addr, 4, 0);
        c.streams_per_connection = 2;
        assert!(refused(c.clone()).contains("--http2"));
        c.http2 = true;
        c.streams_per_connection = 0;
        assert!(refused(c.clone()).contains("at least 1"));
        c.streams_per_connection = 2;
        c.h2_max_frame_size = Some(16_383);
        assert!(refused(c.clone()).contains("16384 to 16777215"));
        c.h2_max_frame_size = None;
        c.churn = Duration::from_secs(1);
        assert!(refused(c).contains("--churn"));
    }

    #[test]
    fn urls() {
        let t = Target::parse("http://127.0.0.1:8080/stream?fps=5").expect("valid");
        assert_eq!(
            (
                t.authority.as_str(),
                t.host.as_str(),
                t.port,
                t.path.as_str()
            ),
            ("127.0.0.1:8080", "127.0.0.1", 8080, "/stream?fps=5")
        );
        let t = Target::parse("http://localhost").expect("valid");
        assert_eq!((t.port, t.path.as_str()), (80, "/"));
        let t = Target::parse("http://[::1]:9/x").expect("valid");
        assert_eq!((t.host.as_str(), t.port), ("::1", 9));
        let t = Target::parse("http://h?action=stream").expect("valid");
        assert_eq!(t.path, "/?action=stream");
        let t = Target::parse("https://cam.example/stream").expect("valid");
        assert_eq!((t.tls, t.port, t.host.as_str()), (true, 443, "cam.example"));
        assert!(!Target::parse("http://x/").expect("valid").tls);
        assert!(Target::parse("ftp://x/").is_err());
        assert!(Target::parse("http://x:99999/").is_err());
        assert!(Target::parse("http:///").is_err());
    }
}
