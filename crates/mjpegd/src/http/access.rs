//! Who may do what: turns a request's credentials into a [`Principal`], and the checks every
//! handler makes before it touches a camera. Failed attempts are logged with the address and,
//! past a few, refused outright for a while.

use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};

use super::{AppState, HttpError};
use crate::hub::Camera;
use crate::principal::Principal;

impl FromRequestParts<AppState> for Principal {
    type Rejection = HttpError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Principal, HttpError> {
        if !state.0.config.auth.enabled() {
            return Ok(Principal::Open);
        }
        #[cfg(feature = "auth")]
        return authenticate(parts, state).await;
        #[cfg(not(feature = "auth"))]
        let _ = parts;
        #[cfg(not(feature = "auth"))]
        Err(HttpError::Unauthorized(format!(
            "users are configured but {}",
            crate::auth::NOT_BUILT
        )))
    }
}

/// Checks a request's token or Basic credentials (authentication is on).
#[cfg(feature = "auth")]
async fn authenticate(parts: &mut Parts, state: &AppState) -> Result<Principal, HttpError> {
    use super::PeerAddr;
    use super::query::Query;
    use crate::auth::{Refusal, parse_basic};
    use axum::http::header;
    use std::time::Duration;

    let auth = Arc::clone(&state.0.config.auth);
    let peer = PeerAddr::from_request_parts(parts, state)
        .await
        .unwrap_or(PeerAddr(None));
    let ip = peer.0.map(|a| a.ip());
    let refuse = |r: Refusal, what: &str| -> HttpError {
        match r {
            Refusal::TooManyFailures(wait) => HttpError::TooManyRequests {
                retry_after: wait.max(Duration::from_secs(1)),
            },
            Refusal::BadCredentials => {
                auth.record_failure(ip);
                tracing::warn!(peer = ?peer.0, "authentication failed: {what}");
                HttpError::Unauthorized(format!("{what}: log in with a valid user and password"))
            }
        }
    };
    auth.check_blocked(ip).map_err(|r| refuse(r, ""))?;
    if let Some(token) = Query::parse(parts.uri.query()).get("token") {
        return match auth.verify_token(token) {
            Ok(camera) => Ok(Principal::Token { camera }),
            Err(why) => Err(refuse(Refusal::BadCredentials, why)),
        };
    }
    let Some(value) = parts.headers.get(header::AUTHORIZATION) else {
        // A login made through the form. A cookie that no longer verifies (expired, a changed
        // password, another server's) is no attack worth counting: the browser is sent to
        // the form again.
        if let Some(session) = session_cookie(&parts.headers) {
            match auth.verify_session(session) {
                Ok(p) => return Ok(p),
                Err(why) => tracing::debug!(peer = ?peer.0, why, "session cookie refused"),
            }
        }
        return Ok(Principal::Anonymous);
    };
    let Some((user, password)) = value.to_str().ok().and_then(parse_basic) else {
        return Err(refuse(
            Refusal::BadCredentials,
            "malformed Authorization header",
        ));
    };
    match auth.verify(user, password).await {
        Ok(Some(p)) => Ok(p),
        Ok(None) => Err(refuse(Refusal::BadCredentials, "wrong user or password")),
        Err(_busy) => Err(HttpError::TooManyRequests {
            retry_after: Duration::from_secs(1),
        }),
    }
}

/// The value of the login session cookie, if the request carries one.
#[cfg(feature = "auth")]
pub(super) fn session_cookie(headers: &HeaderMap) -> Option<&str> {
    super::headers::items(headers, header::COOKIE, ';').find_map(|c| {
        let (name, value) = c.split_once('=')?;
        (name == crate::auth::SESSION_COOKIE).then_some(value)
    })
}

/// Requires a logged-in user (pages, state, token issuing); URL tokens do not qualify.
pub(super) fn require_user(p: &Principal) -> Result<(), HttpError> {
    match p {
        Principal::Open | Principal::User { .. } => Ok(()),
        Principal::Anonymous => Err(HttpError::Unauthorized("log in to see this page".into())),
        Principal::Token { .. } => Err(HttpError::Forbidden(
            "a camera token only opens that camera's stream and snapshot".into(),
        )),
    }
}

/// Requires that a request's `Host` names this server, when the check is on (see
/// [`AppState::checks_host`]): a loopback-only server is otherwise open to DNS rebinding, where
/// a page on `evil.example` re-points its name at 127.0.0.1 and then reads streams, state and
/// recordings as same-origin. Accepted: loopback addresses (127.0.0.0/8, `[::1]`), `localhost`,
/// and the configured `[server] names`, each with any port. A request
/// without `Host` (HTTP/1.0 by hand) passes: browsers always send one. Refused with 421
/// Misdirected Request, not 403: nothing is wrong with who asks, only with the name asked for.
pub(super) fn require_known_host(state: &AppState, headers: &HeaderMap) -> Result<(), HttpError> {
    if !state.checks_host() {
        return Ok(());
    }
    let Some(value) = headers.get(header::HOST) else {
        return Ok(());
    };
    let raw = value.to_str().unwrap_or("");
    let host = host_name(raw);
    let names = &state.0.config.host_names;
    if is_loopback_host(&host) || names.contains(&host) {
        return Ok(());
    }
    tracing::warn!(
        host = raw,
        "refused a request for a name this server does not answer to"
    );
    Err(HttpError::MisdirectedHost(format!(
        "Host {raw:?} is not a name of this server, so the request is refused (421) — this \
         protects a server on loopback from DNS rebinding; use http://localhost or \
         http://127.0.0.1, or add the name to `names` in the [server] section of the config"
    )))
}

/// The host of a `Host` value, lowercase, without port, brackets or a final dot.
fn host_name(value: &str) -> String {
    let v = value.trim();
    let host = match v.strip_prefix('[') {
        // `[::1]:8080`: the address is inside the brackets.
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => v.rsplit_once(':').map_or(v, |(h, _port)| h),
    };
    host.trim_end_matches('.').to_ascii_lowercase()
}

/// Loopback addresses and `localhost`.
fn is_loopback_host(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Requires that a state-changing request (record start/stop) comes from this server's own
/// pages: a form on any other site can POST here with the browser's cached Basic credentials
/// and no preflight. Refused: an `Origin` whose host and port are not the `Host` asked for
/// (or `Origin: null`), and, without `Origin`, `Sec-Fetch-Site: cross-site`. Clients that send
/// neither (curl, scripts) are not browsers on a foreign page and pass.
pub(super) fn require_same_origin(headers: &HeaderMap) -> Result<(), HttpError> {
    let text = |name: header::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    let refuse = |why: String| {
        tracing::warn!("refused a cross-site state-changing request: {why}");
        Err(HttpError::Forbidden(format!(
            "{why}: recording, camera controls and logins only take requests from this server's own pages"
        )))
    };
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        let authority = origin
            .strip_prefix("http://")
            .or_else(|| origin.strip_prefix("https://"))
            .map(|a| a.trim_end_matches('/'));
        let host = text(header::HOST);
        return match (authority, host) {
            (Some(a), Some(h)) if !a.is_empty() && a.eq_ignore_ascii_case(h.trim()) => Ok(()),
            _ => refuse(format!(
                "Origin {origin:?} is not this server (Host {:?})",
                host.unwrap_or("")
            )),
        };
    }
    match headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        Some(site) if site.trim().eq_ignore_ascii_case("cross-site") => {
            refuse("Sec-Fetch-Site: cross-site".into())
        }
        _ => Ok(()),
    }
}

/// May `p`, asking from `peer`, see where the recordings are on disk? With authentication on:
/// users who may watch and control every camera (no `cameras` list, `control` not false), the
/// nearest this model has to an administrator. With it off: requests from this machine (a
/// loopback address or a unix socket), since anyone who can reach the server is `Open`.
pub(super) fn sees_paths(p: &Principal, peer: &super::PeerAddr) -> bool {
    match p {
        Principal::User {
            cameras: None,
            control: true,
            ..
        } => true,
        Principal::Open => peer.0.is_none_or(|a| a.ip().is_loopback()),
        _ => false,
    }
}

/// The recording state of `rec` as `p` (asking from `peer`) may see it.
pub(super) fn recording_status(
    rec: &crate::record::Recorder,
    p: &Principal,
    peer: &super::PeerAddr,
) -> crate::record::RecorderStatus {
    let status = rec.status();
    if sees_paths(p, peer) {
        status
    } else {
        status.without_paths()
    }
}

/// Requires that `p` may control `camera` (record start/stop): users whose config says
/// `control = false` may only watch.
pub(super) fn require_control(p: &Principal, camera: &Camera) -> Result<(), HttpError> {
    if p.may_control(camera.name()) {
        return Ok(());
    }
    Err(HttpError::Forbidden(format!(
        "you may watch camera {:?} but not control it (its user entry has control = false)",
        camera.name()
    )))
}

/// Requires that `p` may watch `camera`. A camera `p` may not watch is answered as one that
/// does not exist (`not_found`): a 403 would tell a restricted user which names are taken.
fn require_camera(
    p: &Principal,
    camera: &Camera,
    not_found: impl FnOnce() -> HttpError,
) -> Result<(), HttpError> {
    if p.may_watch(camera.name()) {
        return Ok(());
    }
    match p {
        Principal::Anonymous => Err(HttpError::Unauthorized(
            "log in, or use a URL with a ?token= from /api/token".into(),
        )),
        _ => Err(not_found()),
    }
}

/// Looks a camera up by name for `p`: anonymous callers learn nothing about which exist.
pub(super) fn camera_named(
    state: &AppState,
    p: &Principal,
    name: &str,
) -> Result<Arc<Camera>, HttpError> {
    if matches!(p, Principal::Anonymous) {
        return Err(HttpError::Unauthorized("log in to watch cameras".into()));
    }
    let camera = state.camera_named(name, p)?;
    require_camera(p, &camera, || state.no_camera_named(name, p))?;
    Ok(camera)
}

/// Looks a camera up by position for `p`.
pub(super) fn camera_at(
    state: &AppState,
    p: &Principal,
    index: usize,
) -> Result<Arc<Camera>, HttpError> {
    if matches!(p, Principal::Anonymous) {
        return Err(HttpError::Unauthorized("log in to watch cameras".into()));
    }
    let camera = state.camera_at(index)?;
    require_camera(p, &camera, || {
        HttpError::NotFound(format!("no camera number {index} that you may watch"))
    })?;
    Ok(camera)
}
