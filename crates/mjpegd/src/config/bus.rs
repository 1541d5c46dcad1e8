//! `[bus]`: the NATS bus, merged with `--publish` and `--cameras-from`.

#[cfg(feature = "bus")]
use std::time::Duration;

use serde::Deserialize;

#[cfg(feature = "bus")]
use super::in_range;
use super::{ConfigError, OneOrMany, err};
#[cfg(feature = "bus")]
use crate::hub::MAX_CAMERAS;

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
#[cfg(feature = "bus")]
pub fn check_bus(
    b: &BusSection,
    cameras: &[String],
) -> Result<Option<crate::bus::BusSettings>, ConfigError> {
    use crate::bus::{BusSettings, Publish};
    use crate::link::{Auth, ConnectConfig};
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
                    crate::url::redact_url(url)
                ),
            )),
            Err(e) => Err(err(key, e.to_string())),
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
        if merged.servers.len() > crate::link::MAX_SERVERS {
            return Err(err(
                "bus.url",
                format!(
                    "{} servers; the limit is {}",
                    merged.servers.len(),
                    crate::link::MAX_SERVERS
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
                            crate::url::redact_url(u),
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

/// Refuses any bus setting in a build without the bus (`None` when none is given): a camera
/// node that silently stopped publishing would look like a network fault on every edge.
#[cfg(not(feature = "bus"))]
pub fn check_bus(
    b: &BusSection,
    _cameras: &[String],
) -> Result<Option<crate::bus::BusSettings>, ConfigError> {
    let given = [
        ("url", b.url.is_some()),
        ("publish", b.publish.is_some()),
        ("cameras_from", b.cameras_from.is_some()),
        ("token", b.token.is_some()),
        ("user", b.user.is_some()),
        ("password", b.password.is_some()),
        ("creds", b.creds.is_some()),
        ("tls_ca", b.tls_ca.is_some()),
        ("tls_cert", b.tls_cert.is_some()),
        ("tls_key", b.tls_key.is_some()),
        ("idle_timeout", b.idle_timeout.is_some()),
    ];
    match given.iter().find(|(_, set)| *set) {
        Some((key, _)) => Err(err(format!("bus.{key}"), crate::bus::NOT_BUILT)),
        None => Ok(None),
    }
}
