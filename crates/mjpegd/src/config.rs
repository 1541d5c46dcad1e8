//! The TOML configuration file: data plus validation. Every error names the file, the key path
//! (`cameras[2].fps`) and what is accepted. See `docs/config.md` for the reference.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::hub::CameraConfig;
use crate::render::MAX_DIMENSION;
use crate::source::{Params, SourceSpec};
use crate::transform::{Flip, Rotate, Transform};

/// Lowest and highest capture rate accepted.
pub const FPS_RANGE: (f64, f64) = (0.01, 240.0);
/// Most cameras one server may declare.
pub const MAX_CAMERAS: usize = 64;
/// Largest configuration file read.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Server-wide settings.
    #[serde(default)]
    pub server: ServerSection,
    /// The cameras, in order; the first is also served at the classic URLs.
    #[serde(default)]
    pub cameras: Vec<CameraSection>,
    /// Users and token signing.
    #[serde(default)]
    pub auth: AuthSection,
    /// Scale-out over NATS: publish cameras, serve cameras from the bus.
    #[serde(default)]
    pub bus: BusSection,
}

/// `[bus]`: the NATS bus (see docs/config.md, "Scale-out over NATS").
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusSection {
    /// Server URL(s), `nats://HOST:4222`; list every node of a cluster.
    pub url: Option<OneOrMany>,
    /// Cameras to publish: `true` for all, or a list of names (default: none).
    pub publish: Option<PublishSection>,
    /// Serve every camera announced on this bus (`nats://HOST:4222`), each under its own name.
    pub cameras_from: Option<String>,
    /// Token (`authorization { token: ... }` in nats-server).
    pub token: Option<String>,
    /// User name (with `password`).
    pub user: Option<String>,
    /// Password of `user`.
    pub password: Option<String>,
    /// A `.creds` file (JWT + nkey seed).
    pub creds: Option<std::path::PathBuf>,
    /// PEM CA certificate to trust; turns on TLS.
    pub tls_ca: Option<std::path::PathBuf>,
    /// PEM client certificate (with `tls_key`) for TLS client authentication.
    pub tls_cert: Option<std::path::PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<std::path::PathBuf>,
    /// Seconds a discovered camera keeps asking for frames after its last viewer (default 10).
    pub idle_timeout: Option<u64>,
}

/// `publish = true` or `publish = ["a", "b"]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PublishSection {
    /// All cameras (`true`) or none (`false`).
    All(bool),
    /// These cameras.
    Only(Vec<String>),
}

/// Checks `[bus]` (merged with `--publish` / `--cameras-from`) against the camera names;
/// `None` when the bus is not used.
pub fn check_bus(
    b: &BusSection,
    cameras: &[String],
) -> Result<Option<crate::bus::BusSettings>, ConfigError> {
    use crate::bus::{Auth, BusSettings, ConnectConfig, Publish};
    let publish = match &b.publish {
        None | Some(PublishSection::All(false)) => Publish::None,
        Some(PublishSection::All(true)) => Publish::All,
        Some(PublishSection::Only(names)) => {
            if let Some(unknown) = names.iter().find(|n| !cameras.contains(n)) {
                return Err(err(
                    "bus.publish",
                    format!(
                        "no camera named {unknown:?}; cameras: {}",
                        cameras.join(", ")
                    ),
                ));
            }
            Publish::Only(names.clone())
        }
    };
    let parse = |key: &str, url: &str| -> Result<ConnectConfig, ConfigError> {
        match ConnectConfig::parse_url(url) {
            Ok((c, None)) => Ok(c),
            Ok((_, Some(_))) => Err(err(
                key,
                format!(
                    "{:?}: give the server only (nats://HOST:4222), without a camera",
                    crate::bus::redact(url)
                ),
            )),
            Err(e) => Err(err(key, e)),
        }
    };
    let mut connect: Option<ConnectConfig> = None;
    if let Some(urls) = b.url.clone() {
        let urls = urls.into_vec();
        if urls.is_empty() {
            return Err(err("bus.url", "give at least one nats://HOST:4222"));
        }
        let mut merged = ConnectConfig::default();
        for u in &urls {
            let c = parse("bus.url", u)?;
            if c.auth != Auth::None {
                merged.auth = c.auth;
            }
            merged.servers.extend(c.servers);
        }
        if merged.servers.len() > crate::bus::MAX_SERVERS {
            return Err(err(
                "bus.url",
                format!(
                    "{} servers; the limit is {}",
                    merged.servers.len(),
                    crate::bus::MAX_SERVERS
                ),
            ));
        }
        connect = Some(merged);
    }
    let discover = match &b.cameras_from {
        Some(u) => {
            let c = parse("bus.cameras_from", u)?;
            match &connect {
                Some(existing) if existing.servers != c.servers => {
                    return Err(err(
                        "bus.cameras_from",
                        format!(
                            "{:?} is not the bus of bus.url ({}): one server has one bus",
                            crate::bus::redact(u),
                            existing.describe()
                        ),
                    ));
                }
                Some(_) => {}
                None => connect = Some(c),
            }
            true
        }
        None => false,
    };
    let Some(mut connect) = connect else {
        if publish != Publish::None {
            return Err(err(
                "bus.url",
                "bus.publish is set: say which NATS server to publish to (url = \"nats://HOST:4222\")",
            ));
        }
        return Ok(None);
    };
    let given = [
        b.token.is_some(),
        b.user.is_some() || b.password.is_some(),
        b.creds.is_some(),
    ];
    if given.iter().filter(|g| **g).count() > 1 {
        return Err(err("bus", "give one of token, user + password, or creds"));
    }
    if let Some(t) = &b.token {
        connect.auth = Auth::Token(t.clone());
    }
    match (&b.user, &b.password) {
        (Some(u), Some(p)) => {
            connect.auth = Auth::UserPassword {
                user: u.clone(),
                password: p.clone(),
            }
        }
        (None, None) => {}
        (Some(_), None) => {
            return Err(err(
                "bus.password",
                "bus.user is set: give its password too",
            ));
        }
        (None, Some(_)) => return Err(err("bus.user", "bus.password is set: give the user too")),
    }
    if let Some(c) = &b.creds {
        connect.auth = Auth::CredsFile(c.clone());
    }
    connect.tls_ca = b.tls_ca.clone();
    connect.tls_client = match (&b.tls_cert, &b.tls_key) {
        (Some(c), Some(k)) => Some((c.clone(), k.clone())),
        (None, None) => None,
        (Some(_), None) => return Err(err("bus.tls_key", "bus.tls_cert is set: give its key too")),
        (None, Some(_)) => {
            return Err(err(
                "bus.tls_cert",
                "bus.tls_key is set: give its certificate too",
            ));
        }
    };
    let idle = in_range(b.idle_timeout, 10, 0, 86_400, "bus.idle_timeout")?;
    Ok(Some(BusSettings {
        connect,
        publish,
        discover,
        edge: crate::bus::directory::EdgeDefaults {
            idle_timeout: Duration::from_secs(idle),
            source_timeout: Duration::from_secs(5),
            quality: 80,
            max_cameras: MAX_CAMERAS,
        },
    }))
}

/// One value or a list of them (`listen = "a"` or `listen = ["a", "b"]`).
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// A single value.
    One(String),
    /// Several values.
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_vec(self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }
}

/// `[auth]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSection {
    /// Secret that signs URL tokens; random per process when absent (tokens then die with it).
    pub secret: Option<String>,
    /// The users; none means authentication is off.
    #[serde(default)]
    pub users: Vec<UserSection>,
}

/// One `[[auth.users]]` entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserSection {
    /// Login name.
    pub name: String,
    /// argon2 hash from `mjpegd hash-password`.
    pub password_hash: String,
    /// Cameras the user may watch; all when absent.
    pub cameras: Option<Vec<String>>,
}

/// Where to listen: a TCP address or `unix:PATH`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListenSpec {
    /// `ADDR:PORT`.
    Tcp(SocketAddr),
    /// `unix:/run/mjpegd.sock`.
    Unix(std::path::PathBuf),
}

impl std::str::FromStr for ListenSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<ListenSpec, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err("unix: needs a socket path, e.g. unix:/run/mjpegd.sock".into());
            }
            return Ok(ListenSpec::Unix(path.into()));
        }
        s.parse().map(ListenSpec::Tcp).map_err(|_| {
            format!("expected ADDRESS:PORT such as 127.0.0.1:8080 or 0.0.0.0:8080, or unix:PATH (got {s:?})")
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

/// `[server]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Address(es) to listen on (default `127.0.0.1:8080`); `unix:PATH` for a unix socket.
    pub listen: Option<OneOrMany>,
    /// File mode of unix sockets, octal (default `"0660"`).
    pub unix_mode: Option<String>,
    /// PEM certificate chain: serve HTTPS.
    pub tls_cert: Option<std::path::PathBuf>,
    /// PEM private key of `tls_cert`.
    pub tls_key: Option<std::path::PathBuf>,
    /// Open connections in total (default 10000).
    pub max_connections: Option<u64>,
    /// Open connections from one IP address (default 256).
    pub max_connections_per_ip: Option<u64>,
    /// Stream viewers of one camera (default: the total limit).
    pub max_viewers_per_camera: Option<u64>,
    /// Snapshot requests per second across the server (default 100).
    pub snapshot_rate: Option<u64>,
    /// Snapshot requests per second from one address, within `snapshot_rate` (default 20).
    pub snapshot_rate_per_ip: Option<u64>,
    /// Seconds a client may take to send a request head; also the idle keep-alive limit (default 10).
    pub header_timeout: Option<u64>,
    /// `Access-Control-Allow-Origin` value (off when absent).
    pub allow_origin: Option<String>,
    /// Serve `/metrics` without authentication (default false).
    pub public_metrics: Option<bool>,
    /// Serve `/api/state` without authentication (default false).
    pub public_state: Option<bool>,
    /// Most concurrent stream viewers in total (default 1000).
    pub max_viewers: Option<u64>,
    /// Seconds a viewer's socket may accept nothing before it is cut (default 10).
    pub send_timeout: Option<u64>,
    /// Threads that encode and transform frames, shared by every camera (0, the default: one per core).
    pub encode_workers: Option<u64>,
}

/// One `[[cameras]]` entry.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraSection {
    /// URL-safe unique name: letters, digits, `-` and `_`.
    pub name: String,
    /// Source spec, as for `--source`.
    pub source: String,
    /// Output size `WxH`: generated sources render at it; larger frames are downscaled to fit.
    pub size: Option<String>,
    /// Capture rate.
    pub fps: Option<f64>,
    /// JPEG quality 1-100 of frames mjpegd encodes.
    pub quality: Option<u64>,
    /// Seconds capture keeps running after the last viewer leaves (default 10).
    pub idle_timeout: Option<u64>,
    /// Seconds without a frame before no-signal and a source restart (default 5).
    pub source_timeout: Option<u64>,
    /// Clockwise rotation: 0, 90, 180 or 270.
    pub rotate: Option<u32>,
    /// `"horizontal"` or `"vertical"`.
    pub flip: Option<String>,
    /// Size `WxH` streams fit in when the viewer asks for none; snapshots keep the full size.
    pub stream_size: Option<String>,
    /// Skip frames byte-identical to the previous one (default false).
    pub drop_same_frames: Option<bool>,
    /// `[cameras.record]`: record this camera to disk (see docs/recording.md).
    pub record: Option<RecordSection>,
    /// `[cameras.motion]`: motion detection (see docs/motion.md).
    pub motion: Option<crate::motion::MotionSection>,
}

/// `[cameras.record]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordSection {
    /// Base directory; segments go into `DIR/CAMERA/`.
    pub dir: std::path::PathBuf,
    /// Most bytes kept, as a number or `"500M"`, `"10G"`, `"1T"` (default `"10G"`).
    pub max_bytes: Option<NumberOrText>,
    /// Delete recordings older than this: seconds or `"90s"`, `"30m"`, `"12h"`, `"7d"` (default: no age limit).
    pub max_age: Option<NumberOrText>,
    /// `"continuous"` (default) or `"off"` (only when started by `POST /cameras/NAME/record/start`).
    pub mode: Option<String>,
    /// Length of one segment file in seconds, 1-3600 (default 60).
    pub segment_seconds: Option<u64>,
}

/// A value written as a number or as text with a unit.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum NumberOrText {
    /// A plain number.
    Number(u64),
    /// Text such as `"10G"` or `"7d"`.
    Text(String),
}

/// Smallest and largest `max_bytes` (1 MiB: a few frames; 1 PiB: any disk).
pub const RECORD_BYTES_RANGE: (u64, u64) = (1 << 20, 1 << 50);
/// Longest `max_age`: ten years.
pub const MAX_RECORD_AGE_SECS: u64 = 10 * 366 * 86_400;

/// Parses `123`, `500K`, `500M`, `10G`, `1T` (powers of 1024; a trailing `B`/`iB` is allowed).
pub fn parse_bytes(v: &NumberOrText) -> Result<u64, String> {
    let text = match v {
        NumberOrText::Number(n) => return Ok(*n),
        NumberOrText::Text(t) => t.trim(),
    };
    let bad = || format!("expected bytes such as 500M, 10G or 1T (got {text:?})");
    let upper = text.to_ascii_uppercase();
    let digits = upper.trim_end_matches("IB").trim_end_matches('B');
    let (num, mult) = match digits.chars().last() {
        Some('K') => (&digits[..digits.len() - 1], 1u64 << 10),
        Some('M') => (&digits[..digits.len() - 1], 1 << 20),
        Some('G') => (&digits[..digits.len() - 1], 1 << 30),
        Some('T') => (&digits[..digits.len() - 1], 1 << 40),
        _ => (digits, 1),
    };
    let n: f64 = num.trim().parse().map_err(|_| bad())?;
    if !n.is_finite() || n < 0.0 || n * mult as f64 > u64::MAX as f64 / 2.0 {
        return Err(bad());
    }
    Ok((n * mult as f64) as u64)
}

/// Parses seconds, or `90s`, `30m`, `12h`, `7d`.
pub fn parse_age(v: &NumberOrText) -> Result<u64, String> {
    let text = match v {
        NumberOrText::Number(n) => return Ok(*n),
        NumberOrText::Text(t) => t.trim(),
    };
    let bad = || format!("expected an age such as 3600, 90s, 30m, 12h or 7d (got {text:?})");
    let (num, mult) = match text.chars().last() {
        Some('s') => (&text[..text.len() - 1], 1u64),
        Some('m') => (&text[..text.len() - 1], 60),
        Some('h') => (&text[..text.len() - 1], 3600),
        Some('d') => (&text[..text.len() - 1], 86_400),
        _ => (text, 1),
    };
    let n: u64 = num.trim().parse().map_err(|_| bad())?;
    n.checked_mul(mult).ok_or_else(bad)
}

/// Checks a `[cameras.record]` section; `key` names each field in errors.
pub fn check_record(
    r: &RecordSection,
    key: &dyn Fn(&str) -> String,
) -> Result<crate::record::RecordConfig, ConfigError> {
    use crate::record::{Mode, RecordConfig};
    if r.dir.as_os_str().is_empty() {
        return Err(err(key("dir"), "give the directory to record into"));
    }
    let (lo, hi) = RECORD_BYTES_RANGE;
    let max_bytes = match &r.max_bytes {
        Some(v) => parse_bytes(v).map_err(|e| err(key("max_bytes"), e))?,
        None => 10 << 30,
    };
    if !(lo..=hi).contains(&max_bytes) {
        return Err(err(
            key("max_bytes"),
            format!("{max_bytes} is out of range: accepted 1M to 1024T"),
        ));
    }
    let max_age = match &r.max_age {
        Some(v) => {
            let secs = parse_age(v).map_err(|e| err(key("max_age"), e))?;
            if !(1..=MAX_RECORD_AGE_SECS).contains(&secs) {
                return Err(err(
                    key("max_age"),
                    format!("{secs} seconds is out of range: accepted 1 s to 10 years"),
                ));
            }
            Some(Duration::from_secs(secs))
        }
        None => None,
    };
    let mode = match r.mode.as_deref() {
        None | Some("continuous") => Mode::Continuous,
        Some("off") => Mode::Off,
        Some(other) => {
            return Err(err(
                key("mode"),
                format!("{other:?} is not a recording mode: use \"continuous\" or \"off\""),
            ));
        }
    };
    let segment = in_range(r.segment_seconds, 60, 1, 3600, &key("segment_seconds"))?;
    Ok(RecordConfig {
        dir: r.dir.clone(),
        max_bytes,
        max_age,
        mode,
        segment: Duration::from_secs(segment),
    })
}

/// Checks the `[cameras.record]` sections of every camera.
pub fn check_recordings(
    cameras: &[CameraSection],
) -> Result<Vec<(String, crate::record::RecordConfig)>, ConfigError> {
    let mut out = Vec::new();
    for (i, c) in cameras.iter().enumerate() {
        if let Some(r) = &c.record {
            let key = |f: &str| format!("cameras[{i}].record.{f}");
            out.push((c.name.clone(), check_record(r, &key)?));
        }
    }
    Ok(out)
}

/// A camera's settings before they are checked: the CLI builds one from its flags, so flags and
/// file share one checker.
pub type CameraDraft = CameraSection;

/// A configuration error: where (`key`) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The key path (`cameras[2].fps`) or flag (`--fps`).
    pub key: String,
    /// What is wrong and what is accepted.
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

fn err(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        message: message.into(),
    }
}

/// Reads and parses a config file; errors start with the file name.
pub fn load(path: &Path) -> Result<FileConfig, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("{shown}: cannot read: {e}"))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!(
            "{shown}: {} bytes is larger than the {MAX_FILE_BYTES}-byte limit for a config file",
            meta.len()
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{shown}: cannot read: {e}"))?;
    parse(&text).map_err(|e| format!("{shown}: {e}"))
}

/// Parses config text; the error names the key path.
pub fn parse(text: &str) -> Result<FileConfig, String> {
    let de = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        // toml's message carries the line and a caret; keep only its first sentence line.
        let msg = inner.message().to_owned();
        let line = inner
            .span()
            .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
        match (path.as_str(), line) {
            (".", Some(l)) => format!("line {l}: {msg}"),
            (".", None) => msg,
            (p, Some(l)) => format!("{p} (line {l}): {msg}"),
            (p, None) => format!("{p}: {msg}"),
        }
    })
}

/// Server-level settings, checked.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Where to listen.
    pub listen: Vec<ListenSpec>,
    /// Total viewer limit.
    pub max_viewers: usize,
    /// Send timeout.
    pub send_timeout: Duration,
    /// Unix socket file mode.
    pub unix_mode: u32,
    /// Certificate and key paths.
    pub tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
    /// Connection limits: total, per IP.
    pub max_connections: usize,
    /// Per-IP connection limit.
    pub max_connections_per_ip: usize,
    /// Per-camera viewer limit; the total limit when unset.
    pub max_viewers_per_camera: Option<usize>,
    /// Snapshots per second.
    pub snapshot_rate: u32,
    /// Snapshots per second from one address.
    pub snapshot_rate_per_ip: u32,
    /// Request head timeout.
    pub header_timeout: Duration,
    /// CORS origin.
    pub allow_origin: Option<String>,
    /// Open metrics.
    pub public_metrics: bool,
    /// Open state.
    pub public_state: bool,
    /// Encoder threads (0: one per core).
    pub encode_workers: usize,
}

/// Checks the `[server]` section.
pub fn check_server(s: &ServerSection, prefix: &str) -> Result<ServerSettings, ConfigError> {
    let key = |k: &str| format!("{prefix}{k}");
    let listen = match s.listen.clone() {
        Some(l) => {
            let l = l.into_vec();
            if l.is_empty() || l.len() > 16 {
                return Err(err(key("listen"), "give 1 to 16 addresses"));
            }
            l.iter()
                .map(|a| a.parse::<ListenSpec>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| err(key("listen"), e))?
        }
        None => vec![ListenSpec::Tcp(SocketAddr::from(([127, 0, 0, 1], 8080)))],
    };
    let unix_mode = match &s.unix_mode {
        Some(m) => u32::from_str_radix(m.trim_start_matches("0o"), 8)
            .ok()
            .filter(|m| *m <= 0o777)
            .ok_or_else(|| {
                err(
                    key("unix_mode"),
                    format!("expected an octal file mode such as \"0660\" (got {m:?})"),
                )
            })?,
        None => 0o660,
    };
    let tls = match (&s.tls_cert, &s.tls_key) {
        (Some(c), Some(k)) => Some((c.clone(), k.clone())),
        (None, None) => None,
        (Some(_), None) => {
            return Err(err(
                key("tls_key"),
                "tls_cert is set: give its private key too",
            ));
        }
        (None, Some(_)) => {
            return Err(err(
                key("tls_cert"),
                "tls_key is set: give its certificate too",
            ));
        }
    };
    Ok(ServerSettings {
        listen,
        max_viewers: in_range(s.max_viewers, 1000, 1, 1_000_000, &key("max_viewers"))? as usize,
        send_timeout: Duration::from_secs(in_range(
            s.send_timeout,
            10,
            1,
            3600,
            &key("send_timeout"),
        )?),
        unix_mode,
        tls,
        max_connections: in_range(
            s.max_connections,
            10_000,
            1,
            1_000_000,
            &key("max_connections"),
        )? as usize,
        max_connections_per_ip: in_range(
            s.max_connections_per_ip,
            256,
            1,
            1_000_000,
            &key("max_connections_per_ip"),
        )? as usize,
        max_viewers_per_camera: match s.max_viewers_per_camera {
            Some(v) => {
                Some(in_range(Some(v), v, 1, 1_000_000, &key("max_viewers_per_camera"))? as usize)
            }
            None => None,
        },
        snapshot_rate: in_range(s.snapshot_rate, 100, 1, 100_000, &key("snapshot_rate"))? as u32,
        snapshot_rate_per_ip: in_range(
            s.snapshot_rate_per_ip,
            20,
            1,
            100_000,
            &key("snapshot_rate_per_ip"),
        )? as u32,
        header_timeout: Duration::from_secs(in_range(
            s.header_timeout,
            10,
            1,
            3600,
            &key("header_timeout"),
        )?),
        allow_origin: s.allow_origin.clone(),
        public_metrics: s.public_metrics.unwrap_or(false),
        public_state: s.public_state.unwrap_or(false),
        encode_workers: in_range(
            s.encode_workers,
            0,
            0,
            crate::pool::MAX_WORKERS as u64,
            &key("encode_workers"),
        )? as usize,
    })
}

fn in_range(v: Option<u64>, default: u64, lo: u64, hi: u64, key: &str) -> Result<u64, ConfigError> {
    let v = v.unwrap_or(default);
    if (lo..=hi).contains(&v) {
        Ok(v)
    } else {
        Err(err(
            key,
            format!("{v} is out of range: accepted {lo} to {hi}"),
        ))
    }
}

/// Parses `WxH`.
pub fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let bad = || {
        format!(
            "expected WIDTHxHEIGHT with each from 16 to {MAX_DIMENSION}, e.g. 1280x720 (got {s:?})"
        )
    };
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let w: u32 = w.trim().parse().map_err(|_| bad())?;
    let h: u32 = h.trim().parse().map_err(|_| bad())?;
    if !(16..=MAX_DIMENSION).contains(&w) || !(16..=MAX_DIMENSION).contains(&h) {
        return Err(bad());
    }
    Ok((w, h))
}

/// Parses and range-checks a frame rate.
pub fn parse_fps(s: &str) -> Result<f64, String> {
    let (lo, hi) = FPS_RANGE;
    match s.trim().parse::<f64>() {
        Ok(f) if (lo..=hi).contains(&f) => Ok(f),
        _ => Err(format!(
            "expected a number of frames per second from {lo} to {hi} (got {s:?})"
        )),
    }
}

/// True for names usable in URLs as they are.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Checks one camera; `key` prefixes every error (`cameras[2]` or `` for flags, with `flag`
/// mapping a field to the CLI flag that sets it).
pub fn check_camera(
    d: &CameraDraft,
    key: &dyn Fn(&str) -> String,
) -> Result<CameraConfig, ConfigError> {
    if !valid_name(&d.name) {
        return Err(err(
            key("name"),
            format!(
                "{:?} is not a usable camera name: use 1 to 64 letters, digits, '-' or '_'",
                d.name
            ),
        ));
    }
    let spec: SourceSpec = d
        .source
        .parse()
        .map_err(|e: String| err(key("source"), e))?;
    let size = match &d.size {
        Some(s) => Some(parse_size(s).map_err(|e| err(key("size"), e))?),
        None => None,
    };
    let fps = match d.fps {
        Some(f) => parse_fps(&f.to_string()).map_err(|e| err(key("fps"), e))?,
        None => spec.default_fps(),
    };
    let quality = in_range(d.quality, 80, 1, 100, &key("quality"))? as u8;
    let idle = in_range(d.idle_timeout, 10, 0, 86_400, &key("idle_timeout"))?;
    let source_timeout = in_range(d.source_timeout, 5, 1, 3600, &key("source_timeout"))?;
    let rotate = Rotate::try_from(d.rotate.unwrap_or(0)).map_err(|e| err(key("rotate"), e))?;
    let flip = match &d.flip {
        Some(f) => Some(f.parse::<Flip>().map_err(|e| err(key("flip"), e))?),
        None => None,
    };
    let stream_size = match &d.stream_size {
        Some(s) => Some(parse_size(s).map_err(|e| err(key("stream_size"), e))?),
        None => None,
    };
    // Generated sources render at the output size; other sources deliver their own size and
    // are downscaled to fit it only when a size is configured.
    let (width, height) = size.unwrap_or((1280, 720));
    let fit = if spec.is_generated() { None } else { size };
    let params = Params {
        width,
        height,
        fps,
        quality,
    };
    let opener = spec
        .opener(params)
        .map_err(|e| err(key("source"), e.to_string()))?;
    // A slow source (images at 0.1 fps) is not a stalled one.
    let source_timeout =
        Duration::from_secs(source_timeout).max(Duration::from_secs_f64(3.0 / fps));
    Ok(CameraConfig {
        name: d.name.clone(),
        opener,
        width,
        height,
        quality,
        idle_timeout: Duration::from_secs(idle),
        source_timeout,
        transform: Transform {
            rotate,
            flip,
            fit,
            quality,
        },
        fps,
        stream_size,
        drop_same_frames: d.drop_same_frames.unwrap_or(false),
    })
}

/// Checks every camera of a file: names unique, count bounded.
pub fn check_cameras(cameras: &[CameraSection]) -> Result<Vec<CameraConfig>, ConfigError> {
    if cameras.is_empty() {
        return Err(err(
            "cameras",
            "no camera declared: add at least one [[cameras]] table with a name and a source",
        ));
    }
    if cameras.len() > MAX_CAMERAS {
        return Err(err(
            "cameras",
            format!(
                "{} cameras declared; the limit is {MAX_CAMERAS}",
                cameras.len()
            ),
        ));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(cameras.len());
    for (i, c) in cameras.iter().enumerate() {
        if !seen.insert(c.name.clone()) {
            return Err(err(
                format!("cameras[{i}].name"),
                format!("duplicate camera name {:?}: names must be unique", c.name),
            ));
        }
        let key = |field: &str| format!("cameras[{i}].{field}");
        out.push(check_camera(c, &key)?);
    }
    Ok(out)
}

/// Checks `[auth]` against the declared camera names and builds the users.
pub fn check_auth(
    a: &AuthSection,
    cameras: &[String],
) -> Result<Vec<crate::auth::User>, ConfigError> {
    let mut seen = HashSet::new();
    let mut users = Vec::with_capacity(a.users.len());
    for (i, u) in a.users.iter().enumerate() {
        let key = |f: &str| format!("auth.users[{i}].{f}");
        if u.name.is_empty() || u.name.contains(':') || u.name.len() > 128 {
            return Err(err(
                key("name"),
                "a user name is 1 to 128 characters without ':'",
            ));
        }
        if !seen.insert(u.name.clone()) {
            return Err(err(key("name"), format!("duplicate user {:?}", u.name)));
        }
        crate::auth::check_hash(&u.password_hash).map_err(|e| err(key("password_hash"), e))?;
        if let Some(cams) = &u.cameras {
            if let Some(unknown) = cams.iter().find(|c| !cameras.contains(c)) {
                return Err(err(
                    key("cameras"),
                    format!(
                        "no camera named {unknown:?}; cameras: {}",
                        cameras.join(", ")
                    ),
                ));
            }
        }
        users.push(crate::auth::User {
            name: u.name.clone(),
            password_hash: u.password_hash.clone(),
            cameras: u.cameras.as_ref().map(|c| c.iter().cloned().collect()),
        });
    }
    if a.secret.as_ref().is_some_and(|s| s.len() < 16) {
        return Err(err(
            "auth.secret",
            "use at least 16 characters (or leave it out for a random one)",
        ));
    }
    Ok(users)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_refused_with_their_path() {
        let e = parse("[[cameras]]\nname = \"a\"\nsource = \"testpattern\"\nfpss = 3\n")
            .expect_err("unknown key");
        assert!(e.contains("cameras[0]") && e.contains("fpss"), "{e}");
        let e = parse("[server]\nlisten = 8080\n").expect_err("wrong type");
        assert!(e.contains("server.listen"), "{e}");
    }

    #[test]
    fn bad_values_name_the_key_and_the_accepted_range() {
        let file = parse(
            "[[cameras]]\nname = \"a\"\nsource = \"testpattern\"\n\
             [[cameras]]\nname = \"b\"\nsource = \"testpattern\"\n\
             [[cameras]]\nname = \"c\"\nsource = \"testpattern\"\nfps = 500\n",
        )
        .expect("parses");
        let e = check_cameras(&file.cameras).expect_err("fps out of range");
        assert_eq!(e.key, "cameras[2].fps");
        assert!(e.message.contains("from 0.01 to 240"), "{e}");

        let dup = parse(
            "[[cameras]]\nname = \"a\"\nsource = \"testpattern\"\n\
             [[cameras]]\nname = \"a\"\nsource = \"images\"\n",
        )
        .expect("parses");
        let e = check_cameras(&dup.cameras).expect_err("duplicate");
        assert_eq!(e.key, "cameras[1].name");

        for (field, value, key) in [
            ("rotate", "45", "cameras[0].rotate"),
            ("flip", "\"diagonal\"", "cameras[0].flip"),
            ("size", "\"big\"", "cameras[0].size"),
            ("stream_size", "\"640\"", "cameras[0].stream_size"),
            ("quality", "0", "cameras[0].quality"),
            ("name", "\"a b\"", "cameras[0].name"),
        ] {
            let text =
                format!("[[cameras]]\nname = \"a\"\nsource = \"testpattern\"\n{field} = {value}\n")
                    .replacen(
                        "name = \"a\"\n",
                        if field == "name" {
                            ""
                        } else {
                            "name = \"a\"\n"
                        },
                        1,
                    );
            let file = parse(&text).expect("parses");
            let e = check_cameras(&file.cameras).expect_err(field);
            assert_eq!(e.key, key, "{e}");
        }
    }

    #[test]
    fn stream_size_and_drop_same_frames() {
        let file = parse(
            "[[cameras]]\nname = \"a\"\nsource = \"testpattern\"\nstream_size = \"640x360\"\ndrop_same_frames = true\n\
             [[cameras]]\nname = \"b\"\nsource = \"testpattern\"\n",
        )
        .expect("parses");
        let cams = check_cameras(&file.cameras).expect("valid");
        assert_eq!(cams[0].stream_size, Some((640, 360)));
        assert!(cams[0].drop_same_frames);
        assert_eq!(cams[1].stream_size, None);
        assert!(!cams[1].drop_same_frames);
        let e = parse("[[cameras]]\nname = \"a\"\nsource = \"images\"\ndrop_same_frames = 1\n")
            .expect_err("not a boolean");
        assert!(e.contains("drop_same_frames"), "{e}");
    }

    #[test]
    fn server_section_is_checked() {
        let s = ServerSection {
            listen: Some(OneOrMany::One("nowhere".into())),
            ..ServerSection::default()
        };
        assert_eq!(
            check_server(&s, "server.").expect_err("bad").key,
            "server.listen"
        );
        let s = ServerSection {
            max_viewers: Some(0),
            ..ServerSection::default()
        };
        assert_eq!(
            check_server(&s, "server.").expect_err("bad").key,
            "server.max_viewers"
        );
    }

    #[test]
    fn record_sections_are_checked_with_their_key_paths() {
        let file = parse(
            "[[cameras]]\nname = \"a\"\nsource = \"testpattern\"\n\
             [cameras.record]\ndir = \"/tmp/r\"\nmax_bytes = \"2G\"\nmax_age = \"7d\"\nmode = \"off\"\n",
        )
        .expect("parses");
        let r = check_recordings(&file.cameras).expect("valid");
        assert_eq!(r[0].0, "a");
        assert_eq!(r[0].1.max_bytes, 2 << 30);
        assert_eq!(r[0].1.max_age, Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(r[0].1.mode, crate::record::Mode::Off);
        assert_eq!(r[0].1.segment, Duration::from_secs(60));
        for (field, value) in [
            ("max_bytes", "\"lots\""),
            ("max_bytes", "1000"),
            ("max_age", "\"7w\""),
            ("max_age", "0"),
            ("mode", "\"sometimes\""),
            ("segment_seconds", "0"),
            ("segment_seconds", "3601"),
        ] {
            let text = format!(
                "[[cameras]]\nname = \"a\"\nsource = \"testpattern\"\n[cameras.record]\ndir = \"/tmp/r\"\n{field} = {value}\n"
            );
            let e = check_recordings(&parse(&text).expect("parses").cameras).expect_err(field);
            assert_eq!(e.key, format!("cameras[0].record.{field}"), "{e}");
        }
        let e = parse("[[cameras]]\nname = \"a\"\nsource = \"x\"\n[cameras.record]\ndir = \"/r\"\nmax_size = 3\n")
            .expect_err("unknown key");
        assert!(e.contains("record") && e.contains("max_size"), "{e}");
        assert_eq!(
            parse_bytes(&NumberOrText::Text("1.5GiB".into())),
            Ok(3 << 29)
        );
        assert_eq!(parse_age(&NumberOrText::Text("90s".into())), Ok(90));
    }

    #[test]
    fn encode_workers_is_bounded() {
        let with = |n| ServerSection {
            encode_workers: Some(n),
            ..ServerSection::default()
        };
        let at_limit = check_server(&with(crate::pool::MAX_WORKERS as u64), "server.");
        assert_eq!(
            at_limit.expect("at the limit").encode_workers,
            crate::pool::MAX_WORKERS
        );
        let past = check_server(&with(crate::pool::MAX_WORKERS as u64 + 1), "server.");
        assert_eq!(
            past.expect_err("past the limit").key,
            "server.encode_workers"
        );
        let default = check_server(&ServerSection::default(), "server.").expect("default");
        assert_eq!(default.encode_workers, 0);
    }

    #[test]
    fn names_are_url_safe() {
        assert!(valid_name("porch_2-left"));
        assert!(!valid_name(""));
        assert!(!valid_name("a/b"));
        assert!(!valid_name("ä"));
        assert!(!valid_name(&"x".repeat(65)));
    }
}
