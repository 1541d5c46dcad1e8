//! The composition root: builds the hub and router, runs the accept loops, and drains on shutdown.
//!
//! Connections are served by hyper directly (not `axum::serve`) so that each socket gets a
//! write timeout (hyper has none, and a viewer whose socket stops draining must be cut rather
//! than kept forever), connection limits in total and per address are enforced before any
//! byte is parsed, and TLS, unix sockets and systemd socket activation share one code path.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::http::{self, AppState, HttpConfig};

mod h2;
use crate::hub::{CameraConfig, Hub};
use crate::tls::TlsConfig;

/// Connection-level settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// A connection whose socket accepts no bytes for this long while we have data to send is closed.
    pub send_timeout: Duration,
    /// Longest time a client may take to send a request head (slowloris guard); also the
    /// longest an idle keep-alive connection is kept, and the TLS handshake limit.
    pub header_read_timeout: Duration,
    /// How long open connections get to finish after shutdown starts.
    pub shutdown_grace: Duration,
    /// Most open connections in total; past it new ones get a 503 and are closed.
    pub max_connections: usize,
    /// Most open connections from one IP address.
    pub max_connections_per_ip: usize,
    /// Threads of the encoder pool shared by every camera (0: one per core).
    pub encode_workers: usize,
}

impl Default for ServerConfig {
    fn default() -> ServerConfig {
        ServerConfig {
            send_timeout: Duration::from_secs(10),
            header_read_timeout: Duration::from_secs(10),
            shutdown_grace: Duration::from_millis(1500),
            max_connections: 10_000,
            max_connections_per_ip: 256,
            encode_workers: 0,
        }
    }
}

/// Largest request head (and the per-connection write queue: hyper stops asking the body for
/// more once this much is queued, so a slow viewer holds about one frame beyond its socket buffer).
pub const MAX_BUF_SIZE: usize = 64 * 1024;
/// Most request headers accepted.
pub const MAX_HEADERS: usize = 64;

/// Where to listen: a TCP address or `unix:PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenSpec {
    /// `ADDR:PORT`.
    Tcp(SocketAddr),
    /// `unix:/run/mjpegd.sock`.
    Unix(std::path::PathBuf),
}

/// A listen address that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadListen(String);

impl std::str::FromStr for ListenSpec {
    type Err = BadListen;
    fn from_str(s: &str) -> Result<ListenSpec, BadListen> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(BadListen(
                    "unix: needs a socket path, e.g. unix:/run/mjpegd.sock".into(),
                ));
            }
            return Ok(ListenSpec::Unix(path.into()));
        }
        s.parse().map(ListenSpec::Tcp).map_err(|_| {
            BadListen(format!("expected ADDRESS:PORT such as 127.0.0.1:8080 or 0.0.0.0:8080, or unix:PATH (got {s:?})"))
        })
    }
}

impl std::fmt::Display for ListenSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ListenSpec::Tcp(a) => write!(f, "{a}"),
            ListenSpec::Unix(p) => write!(f, "unix:{}", p.display()),
        }
    }
}

/// What can keep a server from starting; each says where and what to do.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A TCP address could not be bound.
    #[error(
        "cannot listen on {addr}: {source} — is another server using that port? choose another with --listen"
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// A unix socket could not be bound or given its mode.
    #[error("cannot {what} unix:{}: {source}", path.display())]
    Unix {
        /// What failed: `listen on` or `set the mode of`.
        what: &'static str,
        /// The socket's path.
        path: std::path::PathBuf,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// Socket activation passed something unusable.
    #[error("socket activation: {0}")]
    SocketActivation(String),
    /// Recording could not start (the catalogue scan, the directory).
    #[error("{0}")]
    Recordings(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Motion detection could not start (a camera that does not exist).
    #[error("{0}")]
    Motion(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// A bound socket to serve.
#[derive(Debug)]
pub enum Listener {
    /// TCP (plain, or TLS when the server has a certificate).
    Tcp(TcpListener),
    /// A unix domain socket (always plain: the file mode is the access control).
    Unix(UnixListener),
}

/// Longest wait at shutdown for recording writers to sync and close their segments.
const RECORDINGS_CLOSE: Duration = Duration::from_secs(3);
/// Longest wait at shutdown for captures to stop (an exec child's SIGTERM grace is 2 s).
const CAPTURE_STOP: Duration = Duration::from_millis(2500);

/// A server ready to run: the hub and the HTTP state over it, with optional TLS, bus and
/// recordings; it owns their whole lifecycle, from start to the last segment synced.
pub struct Server {
    state: AppState,
    config: ServerConfig,
    shutdown: CancellationToken,
    tls: Option<TlsConfig>,
    bus: Option<crate::bus::BusSettings>,
    /// Where state that survives a restart is kept ([`Server::with_state_dir`]).
    state_dir: Option<std::path::PathBuf>,
}

impl Server {
    /// Builds cameras and the HTTP state. `shutdown` stops capture, streams and the accept loops.
    pub fn new(
        cameras: Vec<CameraConfig>,
        http_config: HttpConfig,
        config: ServerConfig,
        shutdown: CancellationToken,
    ) -> Server {
        let hub = Arc::new(Hub::with_context(
            cameras,
            capture_context(config.encode_workers),
            shutdown.clone(),
        ));
        Server {
            state: AppState::new(hub, http_config, shutdown.clone()),
            config,
            shutdown,
            tls: None,
            bus: None,
            state_dir: None,
        }
    }

    /// Publishes cameras on, and discovers cameras from, a NATS bus (started by `run_all`).
    pub fn with_bus(mut self, bus: crate::bus::BusSettings) -> Server {
        self.bus = Some(bus);
        self
    }

    /// Starts recording the cameras in `configs` (scanning their catalogues first). Must be
    /// called within the tokio runtime that will run the server.
    pub fn with_recordings(
        self,
        configs: Vec<(String, crate::record::RecordConfig)>,
    ) -> Result<Server, ServerError> {
        if !configs.is_empty() {
            let r = crate::record::Recordings::start(
                self.state.hub(),
                configs,
                self.state_dir.as_deref(),
                self.shutdown.clone(),
            )
            .map_err(|e| ServerError::Recordings(e.into()))?;
            self.state.set_recordings(r);
        }
        Ok(self)
    }

    /// Starts motion detection on the cameras in `configs`, with its `/api/state` section
    /// (`motion`); motion-mode recorders (started before, by [`Server::with_recordings`])
    /// follow the events. Must be called within the tokio runtime that will run the server.
    pub fn with_motion(
        self,
        configs: Vec<(String, crate::motion::MotionConfig)>,
    ) -> Result<Server, ServerError> {
        if !configs.is_empty() {
            // Motion-mode recorders follow their camera's events.
            let triggers = configs
                .iter()
                .filter_map(|(name, config)| {
                    let rec = self.state.recordings()?.get(name)?;
                    let t = rec.trigger(crate::motion::Motion::lead(config))?;
                    Some((name.clone(), t))
                })
                .collect();
            let m = crate::motion::Motion::start(
                self.state.hub(),
                configs,
                triggers,
                self.shutdown.clone(),
            )
            .map_err(|e| ServerError::Motion(e.into()))?;
            let section = Arc::clone(&m);
            self.state
                .add_state_section("motion", Arc::new(move || section.state_json()));
            self.state.set_motion(m);
        }
        Ok(self)
    }

    /// Remembers camera controls set over HTTP in `dir` (`controls/CAMERA.json`), and loads
    /// what an earlier run remembered, with the config's `[cameras.controls]` over it; and the
    /// recording switch (`recording/CAMERA.json`, call before [`Server::with_recordings`]).
    /// Without a directory, both last until the server stops.
    pub fn with_state_dir(mut self, dir: Option<&std::path::Path>) -> Server {
        self.state_dir = dir.map(std::path::Path::to_path_buf);
        for camera in self.state.hub().cameras() {
            let config = camera.config();
            let Some(controls) = config.opener.controls() else {
                continue;
            };
            let file = dir.map(|d| crate::source::controls::memory_file(d, camera.name()));
            if let Some(warning) = controls.memory().attach(file, &config.controls) {
                tracing::warn!(camera = %camera.name(), "{warning}");
            }
        }
        self
    }

    /// Serves TCP listeners over TLS with this configuration.
    pub fn with_tls(mut self, tls: TlsConfig) -> Server {
        self.tls = Some(tls);
        self
    }

    /// The HTTP state (and through it the hub), for tests and status.
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Serves one TCP listener until shutdown.
    pub async fn run(self, listener: TcpListener) -> io::Result<()> {
        self.run_all(vec![Listener::Tcp(listener)]).await
    }

    /// Serves every listener until shutdown, then drains connections within the grace period.
    pub async fn run_all(self, listeners: Vec<Listener>) -> io::Result<()> {
        // A server reachable only from this machine checks `Host` (DNS rebinding guard).
        let loopback_only = listeners.iter().all(|l| match l {
            Listener::Tcp(t) => t.local_addr().is_ok_and(|a| a.ip().is_loopback()),
            Listener::Unix(_) => true,
        });
        self.state.set_loopback_only(loopback_only);
        #[cfg(feature = "bus")]
        let bus = self.bus.as_ref().map(|b| self.start_bus(b));
        #[cfg(feature = "bus")]
        if bus.is_none() && !bus_sources(self.state.hub()).is_empty() {
            // `nats://` sources without a [bus]: still show their counters.
            let hub = Arc::clone(self.state.hub());
            self.state.add_state_section(
                "bus",
                Arc::new(move || serde_json::json!({ "sources": bus_sources(&hub) })),
            );
        }
        #[cfg(not(feature = "bus"))]
        if let Some(b) = &self.bus {
            match *b {}
        }
        let shared = Arc::new(Shared {
            router: http::router(self.state.clone()),
            config: self.config.clone(),
            shutdown: self.shutdown.clone(),
            tls: self.tls.clone(),
            total: Arc::new(Semaphore::new(self.config.max_connections)),
            per_ip: Mutex::new(HashMap::new()),
            tracker: TaskTracker::new(),
        });
        let mut loops = Vec::new();
        for l in listeners {
            loops.push(tokio::spawn(accept_loop(Arc::clone(&shared), l)));
        }
        for l in loops {
            let _ = l.await;
        }
        #[cfg(feature = "bus")]
        if let Some(link) = bus {
            // Unsubscribe and flush at once: edges see this node leave now, not at a ping timeout.
            if let Ok(client) = link.client().await {
                let _ = tokio::time::timeout(Duration::from_secs(1), client.drain()).await;
            }
        }
        shared.tracker.close();
        if tokio::time::timeout(self.config.shutdown_grace, shared.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                open = shared.tracker.len(),
                "connections still open after the shutdown grace period; closing them"
            );
        }
        self.finish().await;
        Ok(())
    }

    /// The end of a run, after the connections: recording writers sync and close their last
    /// segment, captures stop (an exec child gets its SIGTERM and grace), and whatever is still
    /// running then is killed. Each wait is bounded, so a stuck disk or child cannot hold the
    /// stop; an embedder that runs a `Server` gets the same clean stop as the binary.
    async fn finish(&self) {
        if let Some(r) = self.state.recordings().cloned() {
            // Writers stop when shutdown ends their feeds: let them sync their last segment.
            let _ = tokio::task::spawn_blocking(move || r.wait_closed(RECORDINGS_CLOSE)).await;
        }
        let hub = self.state.hub();
        let stopped = async {
            for cam in hub.cameras() {
                let mut demand = cam.watch_demand();
                let _ = demand.wait_for(|d| !d.running).await;
            }
        };
        if tokio::time::timeout(CAPTURE_STOP, stopped).await.is_err() {
            tracing::debug!("a capture was still stopping at the end of the shutdown");
        }
        for cam in hub.cameras() {
            cam.config().opener.stop_now();
        }
    }
}

#[cfg(feature = "bus")]
impl Server {
    /// Wires the bus: a publisher per published camera, the announcer, discovery, and the
    /// `bus` section of `/api/state`. The hub and HTTP know nothing of it.
    fn start_bus(&self, bus: &crate::bus::BusSettings) -> Arc<crate::link::Link> {
        use crate::bus::{Publish, directory, publisher};
        use crate::link::Link;
        let link = Link::new(bus.connect.clone());
        let hub = self.state.hub();
        let published: Vec<Arc<crate::hub::Camera>> = match &bus.publish {
            Publish::None => Vec::new(),
            Publish::All => hub.cameras(),
            Publish::Only(names) => names.iter().filter_map(|n| hub.get(n)).collect(),
        };
        for cam in &published {
            publisher::spawn(Arc::clone(&link), Arc::clone(cam), self.shutdown.clone());
            // Motion events of published cameras go out on `mjpegd.events.CAMERA`.
            if let Some(m) = self.state.motion().and_then(|m| m.get(cam.name())) {
                m.publish_events(Arc::clone(&link), self.shutdown.clone());
            }
        }
        let role = match (published.is_empty(), bus.discover) {
            (false, true) => "camera node and edge",
            (false, false) => "camera node",
            (true, true) => "edge",
            (true, false) => "connected",
        };
        if !published.is_empty() {
            directory::announce(Arc::clone(&link), published, self.shutdown.clone());
        }
        if bus.discover {
            directory::discover(
                Arc::clone(&link),
                Arc::clone(hub),
                bus.edge,
                self.shutdown.clone(),
            );
        }
        let stats = Arc::clone(link.stats());
        let servers = link.describe();
        let hub = Arc::clone(hub);
        self.state.add_state_section(
            "bus",
            Arc::new(move || {
                let mut v = stats.to_json(&servers, role);
                if let Some(o) = v.as_object_mut() {
                    o.insert("sources".into(), bus_sources(&hub).into());
                }
                v
            }),
        );
        // Connect now rather than at the first use, so the state page shows the bus at once.
        let l = Arc::clone(&link);
        tokio::spawn(async move {
            if let Err(e) = l.client().await {
                tracing::error!("{e}");
            }
        });
        link
    }
}

/// A capture thread and an encoder pool of `workers` threads (0: one per core). Either one that
/// the system refuses to start is logged, and capture runs on the server's threads or encodes
/// inline instead: slower, but serving.
fn capture_context(workers: usize) -> crate::hub::Context {
    let pool = match crate::pool::Pool::new(workers) {
        Ok(p) => Some(Arc::new(p)),
        Err(e) => {
            tracing::error!(error = %e, "cannot start the encoder threads; encoding inline");
            None
        }
    };
    match crate::hub::Context::new(true, pool.clone()) {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "cannot start the capture thread; capturing on the server's threads");
            crate::hub::Context::new(false, pool).unwrap_or_default()
        }
    }
}

/// The counters of every `nats://` source's own bus connection, one entry per link.
#[cfg(feature = "bus")]
fn bus_sources(hub: &Hub) -> Vec<serde_json::Value> {
    let mut links: Vec<Arc<crate::link::Link>> = Vec::new();
    for cam in hub.cameras() {
        if let Some(l) = cam.config().opener.own_link() {
            if !links.iter().any(|k| Arc::ptr_eq(k, &l)) {
                links.push(l);
            }
        }
    }
    links
        .iter()
        .map(|l| l.stats().to_json(&l.describe(), "source"))
        .collect()
}

struct Shared {
    router: Router,
    config: ServerConfig,
    shutdown: CancellationToken,
    tls: Option<TlsConfig>,
    total: Arc<Semaphore>,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    tracker: TaskTracker,
}

/// Holds a connection's places in the total and per-address counts.
struct ConnSlot {
    _total: OwnedSemaphorePermit,
    ip: Option<IpAddr>,
    shared: Arc<Shared>,
}

impl Drop for ConnSlot {
    fn drop(&mut self) {
        let Some(ip) = self.ip else { return };
        // Poison recovered: every change under this lock is one insert, increment, decrement
        // or remove, so a panic elsewhere cannot leave a count half changed; refusing the lock
        // would leak this slot for good.
        let mut m = self
            .shared
            .per_ip
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(n) = m.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(&ip);
            }
        }
    }
}

/// Takes a connection slot, or says which limit is reached.
fn admit(shared: &Arc<Shared>, ip: Option<IpAddr>) -> Result<ConnSlot, &'static str> {
    let total = Arc::clone(&shared.total)
        .try_acquire_owned()
        .map_err(|_| "the server's connection limit")?;
    if let Some(ip) = ip {
        // Poison recovered, as in `ConnSlot::drop`: refusing it refused every connection
        // from then on.
        let mut m = shared.per_ip.lock().unwrap_or_else(PoisonError::into_inner);
        let n = m.entry(ip).or_insert(0);
        if *n >= shared.config.max_connections_per_ip {
            return Err("the per-address connection limit");
        }
        *n += 1;
    }
    Ok(ConnSlot {
        _total: total,
        ip,
        shared: Arc::clone(shared),
    })
}

const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nRetry-After: 5\r\nConnection: close\r\nContent-Length: 36\r\n\r\ntoo many connections; try again later\n";

async fn accept_loop(shared: Arc<Shared>, listener: Listener) {
    loop {
        let accepted = tokio::select! {
            biased;
            () = shared.shutdown.cancelled() => return,
            a = accept(&listener) => a,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let slot = match admit(&shared, peer.map(|p| p.ip())) {
            Ok(s) => s,
            Err(which) => {
                tracing::debug!(?peer, "connection refused: {which}");
                let mut stream = stream;
                // Answer briefly and close; never wait long on a client we are refusing.
                shared.tracker.spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(1), stream.write_all(REFUSED))
                        .await;
                });
                continue;
            }
        };
        let shared2 = Arc::clone(&shared);
        shared.tracker.spawn(async move {
            let _slot = slot;
            match (&shared2.tls, stream) {
                #[cfg(not(feature = "tls"))]
                (Some(tls), _) => match *tls {},
                #[cfg(feature = "tls")]
                (Some(tls), Stream::Tcp(tcp)) => {
                    let handshake = tokio::time::timeout(
                        shared2.config.header_read_timeout,
                        tls.acceptor().accept(tcp),
                    )
                    .await;
                    match handshake {
                        Ok(Ok(s)) => {
                            let h2 = s.get_ref().1.alpn_protocol() == Some(b"h2");
                            serve_connection(s, peer, &shared2, h2).await;
                        }
                        Ok(Err(e)) => tracing::debug!(?peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(?peer, "TLS handshake timed out"),
                    }
                }
                (_, Stream::Tcp(tcp)) => sniff_and_serve(tcp, peer, &shared2).await,
                (_, Stream::Unix(u)) => sniff_and_serve(u, peer, &shared2).await,
            }
        });
    }
}

enum Stream {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

impl Stream {
    async fn write_all(&mut self, data: &[u8]) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.write_all(data).await,
            Stream::Unix(s) => s.write_all(data).await,
        }
    }
}

async fn accept(l: &Listener) -> io::Result<(Stream, Option<SocketAddr>)> {
    match l {
        Listener::Tcp(t) => {
            let (s, peer) = t.accept().await?;
            let _ = s.set_nodelay(true);
            Ok((Stream::Tcp(s), Some(peer)))
        }
        Listener::Unix(u) => {
            let (s, _) = u.accept().await?;
            Ok((Stream::Unix(s), None))
        }
    }
}

/// Serves a plain connection as HTTP/2 when it opens with HTTP/2's preface (h2c with prior
/// knowledge: `curl --http2-prior-knowledge`, gRPC-style clients, proxies), else as HTTP/1.
/// The first bytes get the request head's time limit.
async fn sniff_and_serve<S>(stream: S, peer: Option<SocketAddr>, shared: &Shared)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let sniffed = tokio::time::timeout(
        shared.config.header_read_timeout,
        h2::Prefixed::sniff(stream),
    )
    .await;
    match sniffed {
        Ok(Ok(Some((stream, h2)))) => serve_connection(stream, peer, shared, h2).await,
        Ok(Ok(None)) => {}
        Ok(Err(e)) => tracing::debug!(?peer, error = %e, "connection ended before a request"),
        Err(_) => tracing::debug!(?peer, "no request within the time limit; closed"),
    }
}

async fn serve_connection<S>(stream: S, peer: Option<SocketAddr>, shared: &Shared, h2: bool)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let config = &shared.config;
    // Bytes written to this socket, and the minimum rate an export response sets on it.
    let pace = http::Pace::default();
    let mut io = WriteTimeout::new(stream, config.send_timeout, pace.clone());
    if h2 {
        return h2::serve(io, pace, peer, shared).await;
    }
    // Where an export handler leaves its export on a plain TCP connection: once hyper has
    // flushed the head (the socket wrapper tells the slot), the JPEG bytes go out with
    // sendfile (see `http::sendfile`). TLS and unix sockets keep the response body.
    let export = http::ExportSlot::default();
    let sendfile = cfg!(target_os = "linux") && plain_tcp(&io.inner).is_some();
    let export_handoff = sendfile.then(|| export.clone());
    io.export = export_handoff.clone();
    let io = TokioIo::new(io);
    let router = shared.router.clone();
    // Where a stream handler leaves its viewer: once hyper has written the head, the parts go
    // to the socket without hyper (see `http::stream`).
    let slot = http::StreamSlot::default();
    let handoff = slot.clone();
    let watched = pace.clone();
    let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
        if let Some(p) = peer {
            req.extensions_mut().insert(ConnectInfo(p));
        }
        req.extensions_mut().insert(handoff.clone());
        req.extensions_mut().insert(pace.clone());
        if let Some(e) = &export_handoff {
            req.extensions_mut().insert(e.clone());
        }
        // Boxed: `poll_without_shutdown` needs an `Unpin` service future (once per request).
        Box::pin(router.clone().oneshot(req))
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // A client that half-closes after its request (`nc -N`) still wants the answer: by
        // default hyper drops the connection when it reads that end of input while the handler
        // runs, and the stream viewer lost its stream (issue 18 item 5).
        .half_close(true)
        .header_read_timeout(config.header_read_timeout)
        .max_buf_size(MAX_BUF_SIZE)
        .max_headers(MAX_HEADERS);
    let mut conn = builder.serve_connection(io, service);
    // Without shutdown: a stream response is done for hyper once its head is out (its body
    // ends at once, the viewer having been claimed), and the socket is needed after that.
    let result = tokio::select! {
        r = std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)) => r,
        // An export's head is out and its body parked: the socket is ours now.
        () = export.ready() => Ok(()),
        // Dropping the connection drops the response body, and with it the slot it holds.
        why = watched.breached() => {
            tracing::info!(?peer, "closed a connection whose client reads too slowly: {why}");
            return;
        }
        () = shared.shutdown.cancelled() => {
            Pin::new(&mut conn).graceful_shutdown();
            tokio::select! {
                r = std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)) => r,
                () = export.ready() => Ok(()),
            }
        }
    };
    if let Err(e) = result {
        tracing::debug!(?peer, error = %e, "connection ended with an error");
        return;
    }
    let viewer = slot.take();
    let parts = conn.into_parts();
    // Bytes the client sent after its request that hyper already read count against its limit.
    let early = parts.read_buf.len();
    let mut io = parts.io.into_inner();
    let ended = match (viewer, export.take()) {
        // Outside tokio's cooperative budget: the loop waits for a new frame before every
        // write, so it cannot starve other tasks, and the budget's bookkeeping on every poll
        // was a measurable part of the per-frame cost at 1000 viewers.
        (Some(v), _) => tokio::task::unconstrained(v.send_to(&mut io, early)).await,
        (None, Some(e)) => {
            // Only plain TCP connections are offered the slot, and hyper has read the bytes
            // that were sniffed (they began the request).
            let Some(tcp) = plain_tcp(&io.inner).and_then(h2::Prefixed::drained) else {
                return;
            };
            let sent = tokio::select! {
                r = e.send_to(tcp, config.send_timeout) => r,
                why = watched.breached() => {
                    tracing::info!(?peer, "closed a connection whose client reads too slowly: {why}");
                    return;
                }
            };
            match sent {
                Ok(()) => io.shutdown().await,
                Err(e) => Err(e),
            }
        }
        (None, None) => io.shutdown().await,
    };
    if let Err(e) = ended {
        tracing::debug!(?peer, error = %e, "connection ended with an error");
    }
}

/// The sniffed TCP socket of a plain connection (not TLS, not a unix socket), for sendfile.
fn plain_tcp<S: 'static>(stream: &S) -> Option<&h2::Prefixed<tokio::net::TcpStream>> {
    (stream as &dyn std::any::Any).downcast_ref()
}

/// A socket that fails a write which has made no progress for `timeout`.
///
/// hyper polls a response body only once its previous writes have drained, so a stalled viewer
/// never gets more frames queued; this makes sure it also does not keep its connection forever.
struct WriteTimeout<S> {
    inner: S,
    timeout: Duration,
    stall: Pin<Box<Sleep>>,
    armed: bool,
    /// Counts what reaches the socket, for a response's minimum-rate rule.
    pace: http::Pace,
    /// Told of every completed flush: an export's head is out once one follows its parking.
    export: Option<http::ExportSlot>,
}

impl<S> WriteTimeout<S> {
    fn new(inner: S, timeout: Duration, pace: http::Pace) -> WriteTimeout<S> {
        WriteTimeout {
            inner,
            timeout,
            stall: Box::pin(tokio::time::sleep(timeout)),
            armed: false,
            pace,
            export: None,
        }
    }

    fn counted(&self, polled: Poll<io::Result<usize>>) -> Poll<io::Result<usize>> {
        if let Poll::Ready(Ok(n)) = &polled {
            self.pace.wrote(*n);
        }
        polled
    }

    fn check<T>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<io::Result<T>>,
    ) -> Poll<io::Result<T>> {
        match polled {
            Poll::Ready(r) => {
                self.armed = false;
                Poll::Ready(r)
            }
            Poll::Pending => {
                if !self.armed {
                    self.armed = true;
                    let deadline = tokio::time::Instant::now() + self.timeout;
                    self.stall.as_mut().reset(deadline);
                }
                match self.stall.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::TimedOut,
                        format!("client accepted no data for {:?}", self.timeout),
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for WriteTimeout<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for WriteTimeout<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        let polled = self.check(cx, polled);
        self.counted(polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        let polled = self.check(cx, polled);
        self.counted(polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        if let (Poll::Ready(Ok(())), Some(e)) = (&polled, &self.export) {
            e.flushed();
        }
        self.check(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.check(cx, polled)
    }
}

/// Binds every address; errors say which address and what to do.
pub async fn bind(specs: &[ListenSpec], unix_mode: u32) -> Result<Vec<Listener>, ServerError> {
    use std::os::unix::fs::PermissionsExt;
    let mut out = Vec::with_capacity(specs.len());
    for spec in specs {
        match spec {
            ListenSpec::Tcp(addr) => {
                let l = bind_tcp(*addr).map_err(|source| ServerError::Bind {
                    addr: *addr,
                    source,
                })?;
                out.push(Listener::Tcp(l));
            }
            ListenSpec::Unix(path) => {
                // A socket file left by a previous run would make bind fail; remove only sockets.
                if let Ok(meta) = std::fs::symlink_metadata(path) {
                    use std::os::unix::fs::FileTypeExt;
                    if meta.file_type().is_socket() {
                        let _ = std::fs::remove_file(path);
                    }
                }
                let unix = |what: &'static str| {
                    move |source| ServerError::Unix {
                        what,
                        path: path.clone(),
                        source,
                    }
                };
                let l = UnixListener::bind(path).map_err(unix("listen on"))?;
                std::fs::set_permissions(path, std::fs::Permissions::from_mode(unix_mode))
                    .map_err(unix("set the mode of"))?;
                out.push(Listener::Unix(l));
            }
        }
    }
    Ok(out)
}

/// Pending connections the kernel queues for each TCP listener. Hundreds of viewers connecting
/// at once (a wall of dashboards reloading) overflow a small queue, and every refused SYN is
/// retried by the client only after 1 s: that was the 1 s tail of time to first frame.
/// `net.core.somaxconn` caps it (4096 by default since Linux 5.4, 128 before).
pub const LISTEN_BACKLOG: i32 = 4096;

/// The kernel's cap on listen backlogs, when readable.
fn somaxconn() -> Option<i32> {
    std::fs::read_to_string("/proc/sys/net/core/somaxconn")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Binds a TCP listener with [`LISTEN_BACKLOG`] (std and tokio listen with 128).
fn bind_tcp(addr: SocketAddr) -> io::Result<TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // As std and tokio do on unix: a restarted server can bind while old connections linger.
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    match somaxconn() {
        Some(cap) if cap < LISTEN_BACKLOG => tracing::info!(
            %addr,
            backlog = cap,
            wanted = LISTEN_BACKLOG,
            "listen backlog capped by net.core.somaxconn; raise it (sysctl -w net.core.somaxconn={LISTEN_BACKLOG}) if many viewers connect at once"
        ),
        _ => tracing::debug!(%addr, backlog = LISTEN_BACKLOG, "listening"),
    }
    TcpListener::from_std(socket.into())
}

/// Sockets passed by systemd socket activation (`LISTEN_PID`/`LISTEN_FDS`), if any are for us.
pub fn systemd_listeners() -> Result<Vec<Listener>, ServerError> {
    let for_us = std::env::var("LISTEN_PID")
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
        .is_some_and(|p| p == std::process::id());
    if !for_us {
        return Ok(Vec::new());
    }
    let n: i32 = std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse().ok())
        .filter(|n| (0..=64).contains(n))
        .ok_or_else(|| {
            ServerError::SocketActivation("LISTEN_FDS is not a number from 0 to 64".into())
        })?;
    let mut out = Vec::new();
    for fd in 3..3 + n {
        out.push(systemd::listener_from_fd(fd).map_err(ServerError::SocketActivation)?);
    }
    Ok(out)
}

#[allow(unsafe_code)]
mod systemd {
    use std::os::fd::{FromRawFd, OwnedFd, RawFd};

    use super::Listener;

    /// Wraps an inherited, listening socket descriptor.
    pub(super) fn listener_from_fd(fd: RawFd) -> Result<Listener, String> {
        // Refuse anything that is not an open socket before claiming ownership of it.
        let mut stat = std::mem::MaybeUninit::<libc::stat>::uninit();
        // SAFETY: fstat only writes into the buffer we own; an invalid fd yields an error.
        let rc = unsafe { libc::fstat(fd, stat.as_mut_ptr()) };
        if rc != 0 {
            return Err(format!("LISTEN_FDS: descriptor {fd} is not open"));
        }
        // SAFETY: fstat succeeded, so the buffer is initialised.
        let mode = unsafe { stat.assume_init() }.st_mode;
        if mode & libc::S_IFMT != libc::S_IFSOCK {
            return Err(format!("LISTEN_FDS: descriptor {fd} is not a socket"));
        }
        // Inherited descriptors arrive without close-on-exec (they had to survive our own
        // exec); without it every exec: child would inherit the listening socket and keep the
        // port after mjpegd died.
        // SAFETY: fcntl reads and sets the flags of a descriptor fstat just found open.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFD) };
        // SAFETY: as above; only FD_CLOEXEC is added.
        if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC) } != 0 {
            return Err(format!(
                "LISTEN_FDS: descriptor {fd}: cannot set close-on-exec: {}",
                std::io::Error::last_os_error()
            ));
        }
        // SAFETY: systemd passes these descriptors to us to own (sd_listen_fds(3)); we take
        // each exactly once.
        let owned = unsafe { OwnedFd::from_raw_fd(fd) };
        let mut domain: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        let mut len = std::mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
        // SAFETY: getsockname writes at most `len` bytes into `domain`, which we own.
        let rc =
            unsafe { libc::getsockname(fd, (&raw mut domain).cast::<libc::sockaddr>(), &mut len) };
        if rc != 0 {
            return Err(format!("LISTEN_FDS: descriptor {fd}: getsockname failed"));
        }
        if i32::from(domain.ss_family) == libc::AF_UNIX {
            let l = std::os::unix::net::UnixListener::from(owned);
            l.set_nonblocking(true).map_err(|e| e.to_string())?;
            Ok(Listener::Unix(
                tokio::net::UnixListener::from_std(l).map_err(|e| e.to_string())?,
            ))
        } else {
            let l = std::net::TcpListener::from(owned);
            l.set_nonblocking(true).map_err(|e| e.to_string())?;
            Ok(Listener::Tcp(
                tokio::net::TcpListener::from_std(l).map_err(|e| e.to_string())?,
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shared(max_per_ip: usize) -> Arc<Shared> {
        let shutdown = CancellationToken::new();
        let hub = Arc::new(Hub::new(vec![], shutdown.clone()));
        let state = AppState::new(hub, HttpConfig::default(), shutdown.clone());
        Arc::new(Shared {
            router: http::router(state),
            config: ServerConfig {
                max_connections_per_ip: max_per_ip,
                ..ServerConfig::default()
            },
            shutdown,
            tls: None,
            total: Arc::new(Semaphore::new(10)),
            per_ip: Mutex::new(HashMap::new()),
            tracker: TaskTracker::new(),
        })
    }

    /// Issue 11, defect 4: a panic while the per-address map was locked used to make every
    /// later connection fail ("internal error").
    #[test]
    fn defect_4_poisoned_per_address_map_still_admits_and_limits() {
        let shared = shared(2);
        let poisoned = std::thread::scope(|s| {
            s.spawn(|| {
                let _held = shared.per_ip.lock();
                panic!("a panic while holding the per-address map (expected by this test)");
            })
            .join()
        });
        assert!(poisoned.is_err() && shared.per_ip.is_poisoned());
        let ip = Some(IpAddr::from([10, 0, 0, 1]));
        let first = admit(&shared, ip).expect("admitted after the poisoning");
        let _second = admit(&shared, ip).expect("admitted");
        assert_eq!(
            admit(&shared, ip).err(),
            Some("the per-address connection limit")
        );
        drop(first);
        assert!(admit(&shared, ip).is_ok(), "a slot freed is reusable");
    }
}
