//! The link to a NATS bus: connection settings, the lazily connected client, subjects, the frame
//! wire format ([`wire`]) and the counters of a connection.
//!
//! The low layer of the scale-out bus. It knows frames, JPEG and NATS, nothing of cameras,
//! the hub or the configuration: `source::nats` (a bus subject as a source) and the node layer
//! above the hub (`bus`: publisher and directory) both build on it.
//!
//! Core NATS (no JetStream) carries everything, so any plain `nats-server` or cluster works:
//!
//! - `mjpegd.frames.CAMERA`: one message per frame, the JPEG as the payload and its stamp in
//!   headers ([`wire`]). Core NATS delivers at most once and drops for a slow subscriber, which
//!   is latest-frame semantics across machines.
//! - `mjpegd.demand.CAMERA`: heartbeats from every edge whose copy of the camera is capturing.
//! - `mjpegd.directory` and `mjpegd.directory.query`: camera nodes' announcements (`bus::directory`).
//! - `mjpegd.events.CAMERA`: a published camera's motion event starts and ends, JSON (`motion::live`).

pub mod wire;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;

/// Subject of a camera's frames.
pub fn frames_subject(camera: &str) -> String {
    format!("mjpegd.frames.{camera}")
}

/// Subject of a camera's demand heartbeats.
pub fn demand_subject(camera: &str) -> String {
    format!("mjpegd.demand.{camera}")
}

/// Where camera nodes announce their cameras.
pub const DIRECTORY_SUBJECT: &str = "mjpegd.directory";
/// Where edges ask camera nodes to announce at once.
pub const QUERY_SUBJECT: &str = "mjpegd.directory.query";

/// How often an edge capturing a camera says so.
pub const DEMAND_INTERVAL: Duration = Duration::from_secs(1);
/// How long a camera node keeps capturing for the bus after the last heartbeat: three missed.
pub const DEMAND_HOLD: Duration = Duration::from_secs(3);
/// How often camera nodes announce their cameras.
pub const ANNOUNCE_INTERVAL: Duration = Duration::from_secs(2);
/// An edge forgets an unwatched camera not announced for this long: three missed announcements.
pub const FORGET_AFTER: Duration = Duration::from_secs(6);
/// Messages async-nats buffers per subscription before it drops (and reports a slow consumer):
/// tiny, so an edge that falls behind drops frames instead of queueing them.
pub const SUBSCRIPTION_CAPACITY: usize = 4;
/// Outgoing commands async-nats queues before `publish` waits: small, so frames are not queued
/// for a server that is away (the publisher also skips frames while disconnected).
pub const CLIENT_CAPACITY: usize = 16;
/// Longest wait between reconnection attempts: live video resumes within about this much of
/// the server's return.
pub const RECONNECT_DELAY_MAX: Duration = Duration::from_millis(250);
/// The payload limit of a stock nats-server, used until the server says its own.
pub const DEFAULT_MAX_PAYLOAD: usize = 1024 * 1024;

/// What can go wrong on the link: a bad URL or setting (the operator fixes the config) or a
/// failed connection attempt.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// A bus URL that cannot be used; `url` has its credentials redacted.
    #[error("bus URL {url:?}: {why}")]
    Url {
        /// The URL as given, credentials redacted.
        url: String,
        /// What is wrong with it and what is expected.
        why: String,
    },
    /// A server address async-nats cannot parse.
    #[error("bus: bad server address {addr:?}: {source}")]
    ServerAddress {
        /// The address.
        addr: String,
        /// Why it was refused.
        #[source]
        source: std::io::Error,
    },
    /// The `.creds` file could not be read or parsed.
    #[error("bus: cannot read the credentials file {}: {source} — check [bus] creds", path.display())]
    Credentials {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The client could not be set up (TLS files, options).
    #[error("bus: cannot connect to {servers}: {source}")]
    Connect {
        /// The servers, without credentials.
        servers: String,
        /// Why.
        #[source]
        source: async_nats::ConnectError,
    },
}

/// How a client proves who it is to nats-server.
#[derive(Clone, Default, PartialEq, Eq)]
pub enum Auth {
    /// No credentials.
    #[default]
    None,
    /// A token (`authorization { token: ... }`).
    Token(String),
    /// A user and password.
    UserPassword {
        /// The user.
        user: String,
        /// The password.
        password: String,
    },
    /// A `.creds` file (JWT and nkey seed), read at connect time.
    CredsFile(PathBuf),
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print a secret, not even in debug output.
        match self {
            Auth::None => f.write_str("none"),
            Auth::Token(_) => f.write_str("token ***"),
            Auth::UserPassword { user, .. } => write!(f, "user {user:?} password ***"),
            Auth::CredsFile(p) => write!(f, "creds file {}", p.display()),
        }
    }
}

/// How to reach the bus: servers (without credentials), credentials, TLS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnectConfig {
    /// `nats://host:port` URLs, credentials removed; several for a cluster.
    pub servers: Vec<String>,
    /// Credentials.
    pub auth: Auth,
    /// PEM CA certificate to trust for TLS (implies TLS).
    pub tls_ca: Option<PathBuf>,
    /// PEM client certificate and key for TLS client authentication.
    pub tls_client: Option<(PathBuf, PathBuf)>,
}

/// Most servers one bus URL may list.
pub const MAX_SERVERS: usize = 16;

impl ConnectConfig {
    /// Parses `nats://[user:pass@|token@]host:port[,host:port...][/CAMERA]` into the servers,
    /// the credentials and the camera name (the path), if any. `tls://` asks for TLS.
    pub fn parse_url(url: &str) -> Result<(ConnectConfig, Option<String>), BusError> {
        let shown = crate::url::redact_url(url);
        let bad = |why: String| BusError::Url {
            url: shown.clone(),
            why,
        };
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| bad("expected nats://HOST:PORT (or tls://HOST:PORT)".into()))?;
        if !matches!(scheme, "nats" | "tls") {
            return Err(bad(format!(
                "the scheme must be nats:// or tls://, not {scheme}://"
            )));
        }
        // `nats://a:1,nats://b:2/CAM`: later servers may repeat the scheme.
        let rest = rest.replace(",nats://", ",").replace(",tls://", ",");
        let (hosts, camera) = match rest.split_once('/') {
            Some((h, c)) => (h, Some(c.trim_end_matches('/'))),
            None => (rest.as_str(), None),
        };
        let (auth, hosts) = match hosts.rsplit_once('@') {
            Some((userinfo, hosts)) => {
                let auth = match userinfo.split_once(':') {
                    Some((u, p)) => Auth::UserPassword {
                        user: percent_decode(u),
                        password: percent_decode(p),
                    },
                    None => Auth::Token(percent_decode(userinfo)),
                };
                (auth, hosts)
            }
            None => (Auth::None, hosts),
        };
        let mut servers = Vec::new();
        for h in hosts.split(',') {
            let h = h.trim();
            if h.is_empty() {
                return Err(bad("a server is missing: expected HOST:PORT".into()));
            }
            if h.contains(['@', '/', ' ']) {
                return Err(bad("expected HOST:PORT for each server".into()));
            }
            let with_port = if h
                .rsplit_once(':')
                .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
            {
                h.to_owned()
            } else {
                format!("{h}:4222")
            };
            servers.push(format!("{scheme}://{with_port}"));
        }
        if servers.len() > MAX_SERVERS {
            return Err(bad(format!(
                "{} servers listed; the limit is {MAX_SERVERS}",
                servers.len()
            )));
        }
        let camera = match camera {
            Some("") | None => None,
            Some(c) if crate::name::valid_name(c) => Some(c.to_owned()),
            Some(c) => {
                return Err(bad(format!(
                    "{c:?} is not a camera name ({})",
                    crate::name::NAME_RULE
                )));
            }
        };
        Ok((
            ConnectConfig {
                servers,
                auth,
                tls_ca: None,
                tls_client: None,
            },
            camera,
        ))
    }

    /// The servers, for logs and the state page (never credentials).
    pub fn describe(&self) -> String {
        self.servers.join(",")
    }
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let Some(b) = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
            {
                out.push(b);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Bus counters of one camera (published on a camera node, received on an edge).
#[derive(Debug, Default)]
pub struct CameraBusStats {
    /// Frames published to the bus.
    pub published: AtomicU64,
    /// Payload bytes published.
    pub published_bytes: AtomicU64,
    /// Frames not published because they exceed the server's `max_payload`.
    pub oversize: AtomicU64,
    /// Frames skipped because the bus was disconnected or a publish failed.
    pub publish_skipped: AtomicU64,
    /// True while the camera node captures for edges (heartbeats arriving).
    pub demand: AtomicBool,
    /// Frames received from the bus.
    pub received: AtomicU64,
    /// Frames the bus or this edge dropped (sequence gaps, or skipped to stay current).
    pub dropped: AtomicU64,
    /// Messages refused: missing or bad headers, payload not a JPEG.
    pub malformed: AtomicU64,
    /// The last problem, shown on the state page.
    pub last_error: Mutex<Option<String>>,
}

impl CameraBusStats {
    /// Records a problem for the state page.
    pub fn set_error(&self, e: impl Into<String>) {
        // Poison recovered: an Option<String> is consistent after any panic.
        *self
            .last_error
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(e.into());
    }
}

/// Counters of one bus connection.
#[derive(Debug, Default)]
pub struct BusStats {
    /// True while connected to a server.
    pub connected: AtomicBool,
    /// Successful connections (the first and every reconnection).
    pub connects: AtomicU64,
    /// Times the connection was lost.
    pub disconnects: AtomicU64,
    /// Times the client dropped messages of a subscription that was not read fast enough.
    pub slow_consumer_drops: AtomicU64,
    /// Directory announcements refused (too large, not valid JSON, too many cameras).
    pub malformed_announcements: AtomicU64,
    /// The last error the server or the client reported.
    pub last_error: Mutex<Option<String>>,
    cameras: Mutex<BTreeMap<String, Arc<CameraBusStats>>>,
}

/// Cameras whose bus counters are kept (a camera seen on the bus and later gone keeps its
/// counters until this many are known; then unknown ones are dropped).
const MAX_CAMERA_STATS: usize = 1024;

impl BusStats {
    /// The counters of `camera`, created on first use.
    pub fn camera(&self, camera: &str) -> Arc<CameraBusStats> {
        let mut m = self.cameras.lock().unwrap_or_else(|e| e.into_inner());
        if !m.contains_key(camera) && m.len() >= MAX_CAMERA_STATS {
            m.retain(|_, s| Arc::strong_count(s) > 1);
        }
        Arc::clone(m.entry(camera.to_owned()).or_default())
    }

    /// The state page's `bus` section.
    pub fn to_json(&self, servers: &str, role: &str) -> serde_json::Value {
        #[derive(Serialize)]
        struct Cam {
            published: u64,
            published_bytes: u64,
            oversize: u64,
            publish_skipped: u64,
            demand: bool,
            received: u64,
            dropped: u64,
            malformed: u64,
            last_error: Option<String>,
        }
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let cams: BTreeMap<String, Cam> = self
            .cameras
            .lock()
            .map(|m| {
                m.iter()
                    .map(|(k, s)| {
                        (
                            k.clone(),
                            Cam {
                                published: load(&s.published),
                                published_bytes: load(&s.published_bytes),
                                oversize: load(&s.oversize),
                                publish_skipped: load(&s.publish_skipped),
                                demand: s.demand.load(Ordering::Relaxed),
                                received: load(&s.received),
                                dropped: load(&s.dropped),
                                malformed: load(&s.malformed),
                                last_error: s
                                    .last_error
                                    .lock()
                                    .unwrap_or_else(std::sync::PoisonError::into_inner)
                                    .clone(),
                            },
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        serde_json::json!({
            "servers": servers,
            "role": role,
            "connected": self.connected.load(Ordering::Relaxed),
            "connects": load(&self.connects),
            "disconnects": load(&self.disconnects),
            "slow_consumer_drops": load(&self.slow_consumer_drops),
            "malformed_announcements": load(&self.malformed_announcements),
            "last_error": self.last_error.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone(),
            "cameras": cams,
        })
    }
}

/// A lazily connected, shared bus client with its counters.
pub struct Link {
    config: ConnectConfig,
    stats: Arc<BusStats>,
    client: tokio::sync::OnceCell<async_nats::Client>,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("servers", &self.config.servers)
            .field("auth", &self.config.auth)
            .finish_non_exhaustive()
    }
}

impl Link {
    /// A link to the bus; nothing connects until [`Link::client`] is first called.
    pub fn new(config: ConnectConfig) -> Arc<Link> {
        Arc::new(Link {
            config,
            stats: Arc::default(),
            client: tokio::sync::OnceCell::new(),
        })
    }

    /// The servers, without credentials.
    pub fn describe(&self) -> String {
        self.config.describe()
    }

    /// The connection's counters.
    pub fn stats(&self) -> &Arc<BusStats> {
        &self.stats
    }

    /// The client, connecting on first use. The client connects in the background and
    /// reconnects by itself (subscriptions included), so this fails only on bad settings
    /// (an unreadable creds file or certificate).
    pub async fn client(&self) -> Result<async_nats::Client, BusError> {
        self.client
            .get_or_try_init(|| connect(&self.config, Arc::clone(&self.stats)))
            .await
            .cloned()
    }
}

/// Connects (in the background: the server may come later) with tiny buffers and fast reconnects.
async fn connect(
    cfg: &ConnectConfig,
    stats: Arc<BusStats>,
) -> Result<async_nats::Client, BusError> {
    crate::crypto::install_crypto_provider();
    let servers: Vec<async_nats::ServerAddr> = cfg
        .servers
        .iter()
        .map(|s| {
            s.parse::<async_nats::ServerAddr>()
                .map_err(|source| BusError::ServerAddress {
                    addr: s.clone(),
                    source,
                })
        })
        .collect::<Result<_, _>>()?;
    let shown = cfg.describe();
    let mut opts = match &cfg.auth {
        Auth::None => async_nats::ConnectOptions::new(),
        Auth::Token(t) => async_nats::ConnectOptions::with_token(t.clone()),
        Auth::UserPassword { user, password } => {
            async_nats::ConnectOptions::with_user_and_password(user.clone(), password.clone())
        }
        Auth::CredsFile(path) => async_nats::ConnectOptions::with_credentials_file(path)
            .await
            .map_err(|source| BusError::Credentials {
                path: path.clone(),
                source,
            })?,
    };
    if let Some(ca) = &cfg.tls_ca {
        opts = opts.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let Some((cert, key)) = &cfg.tls_client {
        opts = opts
            .add_client_certificate(cert.clone(), key.clone())
            .require_tls(true);
    }
    let events = Arc::clone(&stats);
    let shown2 = shown.clone();
    opts = opts
        .name(concat!("mjpegd/", env!("CARGO_PKG_VERSION")))
        .retry_on_initial_connect()
        .max_reconnects(None)
        .subscription_capacity(SUBSCRIPTION_CAPACITY)
        .client_capacity(CLIENT_CAPACITY)
        .connection_timeout(Duration::from_secs(2))
        // Missed pongs reveal a dead server that did not close its sockets (a killed cluster node).
        .ping_interval(Duration::from_secs(5))
        .reconnect_delay_callback(|attempts| {
            (Duration::from_millis(50) * attempts.min(5) as u32).min(RECONNECT_DELAY_MAX)
        })
        .event_callback(move |event| {
            let stats = Arc::clone(&events);
            let shown = shown2.clone();
            async move { on_event(&stats, &shown, event) }
        });
    opts.connect(servers)
        .await
        .map_err(|source| BusError::Connect {
            servers: shown,
            source,
        })
}

fn on_event(stats: &BusStats, shown: &str, event: async_nats::Event) {
    use async_nats::Event;
    match event {
        Event::Connected => {
            stats.connected.store(true, Ordering::Relaxed);
            stats.connects.fetch_add(1, Ordering::Relaxed);
            tracing::info!(servers = %shown, "bus: connected");
        }
        Event::Disconnected => {
            stats.connected.store(false, Ordering::Relaxed);
            stats.disconnects.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(servers = %shown, "bus: disconnected; reconnecting");
        }
        Event::SlowConsumer(_) => {
            // One per dropped message: counted, logged only at debug level.
            stats.slow_consumer_drops.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(servers = %shown, "bus: slow consumer, a message dropped");
        }
        other => {
            let msg = other.to_string();
            tracing::warn!(servers = %shown, "bus: {msg}");
            // Poison recovered: an Option<String> is consistent after any panic.
            *stats
                .last_error
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(msg);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bus_urls() {
        let (c, cam) = ConnectConfig::parse_url("nats://127.0.0.1:4222/porch").expect("ok");
        assert_eq!(c.servers, ["nats://127.0.0.1:4222"]);
        assert_eq!(cam.as_deref(), Some("porch"));
        assert_eq!(c.auth, Auth::None);

        let (c, cam) =
            ConnectConfig::parse_url("nats://al%40ce:s3cr%3At@a:1,b,nats://c:3").expect("ok");
        assert_eq!(c.servers, ["nats://a:1", "nats://b:4222", "nats://c:3"]);
        assert_eq!(cam, None);
        assert_eq!(
            c.auth,
            Auth::UserPassword {
                user: "al@ce".into(),
                password: "s3cr:t".into()
            }
        );
        assert!(
            !format!("{c:?}").contains("s3cr"),
            "Debug never shows secrets"
        );

        let (c, cam) = ConnectConfig::parse_url("nats://a:1,nats://b:2/cam").expect("ok");
        assert_eq!(c.servers, ["nats://a:1", "nats://b:2"]);
        assert_eq!(cam.as_deref(), Some("cam"));

        let (c, _) = ConnectConfig::parse_url("tls://tok3n@h:4443/").expect("ok");
        assert_eq!(c.auth, Auth::Token("tok3n".into()));
        assert_eq!(c.describe(), "tls://h:4443");

        for bad in [
            "http://h:1/x",
            "nats://",
            "nats://h:1/a b",
            "h:4222",
            "nats://a,,b",
        ] {
            let e = ConnectConfig::parse_url(bad).expect_err(bad).to_string();
            assert!(e.contains("bus URL"), "{e}");
        }
        let many = format!("nats://{}", vec!["h"; MAX_SERVERS + 1].join(","));
        assert!(ConnectConfig::parse_url(&many).is_err());
        let at_limit = format!("nats://{}", vec!["h"; MAX_SERVERS].join(","));
        assert!(ConnectConfig::parse_url(&at_limit).is_ok());
    }

    #[test]
    fn url_errors_never_show_credentials() {
        let e = ConnectConfig::parse_url("nats://u:hunter2@h:1/bad name")
            .expect_err("bad")
            .to_string();
        assert!(!e.contains("hunter2"), "{e}");
    }
}
