//! `[server]` and where to listen.

use std::time::Duration;

use std::net::SocketAddr;

use serde::Deserialize;

use crate::server::ListenSpec;

use super::{ConfigError, OneOrMany, err, in_range};

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
    /// Host names (or addresses) clients use for this server besides loopback ones; when set,
    /// requests for any other `Host` are refused on every listener.
    pub names: Option<Vec<String>>,
    /// Seconds in which an export must deliver 256 KiB to its client (default 60).
    pub export_rate_window: Option<u64>,
    /// Where mjpegd keeps what must survive a restart (camera controls set over HTTP); default
    /// `$STATE_DIRECTORY` (systemd), else `$XDG_STATE_HOME/mjpegd`, else `~/.local/state/mjpegd`.
    pub state_dir: Option<std::path::PathBuf>,
}

/// Most entries in `[server] names`.
pub const MAX_NAMES: usize = 64;

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
    /// `names`, lowercase, without a final dot.
    pub names: Vec<String>,
    /// `export_rate_window`.
    pub export_rate_window: Duration,
    /// `state_dir`, as given (the default is resolved by `cli`).
    pub state_dir: Option<std::path::PathBuf>,
}

/// Checks one entry of `names`: a DNS host name (RFC 1123 labels) or an IP address, no port.
fn check_name(name: &str) -> Result<String, String> {
    let n = name.trim().trim_end_matches('.').to_ascii_lowercase();
    let n = n
        .strip_prefix('[')
        .and_then(|v| v.strip_suffix(']'))
        .map_or(n.clone(), str::to_owned);
    if n.parse::<std::net::IpAddr>().is_ok() {
        return Ok(n);
    }
    let label_ok = |l: &str| {
        (1..=63).contains(&l.len())
            && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !l.starts_with('-')
            && !l.ends_with('-')
    };
    if n.contains(':') {
        return Err(format!(
            "{name:?}: give the name without a port (any port is accepted)"
        ));
    }
    if n.is_empty() || n.len() > 253 || !n.split('.').all(label_ok) {
        return Err(format!(
            "{name:?} is not a host name: letters, digits and '-' in dot-separated labels of 1 to 63 characters (e.g. \"cam.example\"), or an IP address"
        ));
    }
    Ok(n)
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
    let names = match &s.names {
        Some(list) if list.len() > MAX_NAMES => {
            return Err(err(
                key("names"),
                format!("{} names given; at most {MAX_NAMES}", list.len()),
            ));
        }
        Some(list) => list
            .iter()
            .map(|n| check_name(n))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| err(key("names"), e))?,
        None => Vec::new(),
    };
    if let Some(dir) = &s.state_dir {
        if dir.as_os_str().is_empty() {
            return Err(err(key("state_dir"), "an empty path: give a directory"));
        }
    }
    Ok(ServerSettings {
        state_dir: s.state_dir.clone(),
        names,
        export_rate_window: Duration::from_secs(in_range(
            s.export_rate_window,
            crate::http::EXPORT_RATE_WINDOW.as_secs(),
            1,
            3600,
            &key("export_rate_window"),
        )?),
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
