//! The login form, for browsers: `GET /login` shows it, `POST /login` checks the user and
//! password exactly as Basic credentials are checked (the argon2 thread, the failure brake) and
//! sets a signed session cookie, `POST /logout` clears it. Programs (ffmpeg, OpenCV, Home
//! Assistant, OctoPrint) keep using Basic credentials or URL tokens; [`to_the_form`] only sends
//! a browser's page navigation to the form.
//!
//! The cookie is `HttpOnly` (no script reads it), `SameSite=Lax` (another site's `<img>`,
//! `fetch` or POST form sends no cookie, so it can neither embed the streams nor post to this
//! server as the user; a link from another site still opens the page logged in, and a GET
//! that changes something, mjpg-streamer's command URL, is refused cross-site by its own
//! same-origin check), and `Secure` when the form was posted from an `https://` page.

use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::query::Query;
use super::{AppState, HttpError, PeerAddr, access, pages};
use crate::auth::{Refusal, SESSION_COOKIE, SESSION_TTL};

/// Largest login form body: a user name, a password and a return path.
pub(super) const MAX_BODY: usize = 4096;
/// Longest return path kept (`next`); a longer one returns to `/`.
const MAX_NEXT: usize = 1024;

/// `GET /login`: the form. `?next=PATH` is where a successful login goes.
pub(super) async fn form(State(state): State<AppState>, uri: axum::http::Uri) -> Response {
    let next = safe_next(Query::parse(uri.query()).get("next"));
    if !state.0.config.auth.enabled() {
        // Nothing to log in to: the pages are open.
        return see_other(&next, None);
    }
    pages::login(&next, None, StatusCode::OK)
}

/// `POST /login` with `user`, `password` and `next` (`application/x-www-form-urlencoded`).
pub(super) async fn submit(
    State(state): State<AppState>,
    peer: PeerAddr,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Response, HttpError> {
    access::require_same_origin(&headers)?;
    let body = axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        HttpError::BadRequest(format!(
            "login: the form is larger than {MAX_BODY} bytes (or was cut off)"
        ))
    })?;
    let fields = Query::parse(std::str::from_utf8(&body).ok());
    let next = safe_next(fields.get("next"));
    let auth = std::sync::Arc::clone(&state.0.config.auth);
    if !auth.enabled() {
        return Ok(see_other(&next, None));
    }
    let ip = peer.0.map(|a| a.ip());
    if let Err(Refusal::TooManyFailures(wait)) = auth.check_blocked(ip) {
        let wait = wait.max(Duration::from_secs(1));
        let text = format!(
            "Too many failed logins from this address; try again in {} s.",
            wait.as_secs()
        );
        let mut resp = pages::login(&next, Some(&text), StatusCode::TOO_MANY_REQUESTS);
        if let Ok(v) = HeaderValue::from_str(&wait.as_secs().to_string()) {
            resp.headers_mut().insert(header::RETRY_AFTER, v);
        }
        return Ok(resp);
    }
    let user = fields.get("user").unwrap_or("").to_owned();
    let password = fields.get("password").unwrap_or("").to_owned();
    match auth.verify(user.clone(), password).await {
        Ok(Some(_)) => {
            let session = auth
                .issue_session(&user)
                .ok_or_else(|| HttpError::Unavailable("cannot sign a session".into()))?;
            tracing::info!(peer = ?peer.0, user, "logged in through the form");
            let secure = headers
                .get(header::ORIGIN)
                .and_then(|o| o.to_str().ok())
                .is_some_and(|o| o.starts_with("https://"));
            let cookie = format!(
                "{SESSION_COOKIE}={session}; Path=/; Max-Age={}; HttpOnly; SameSite=Lax{}",
                SESSION_TTL.as_secs(),
                if secure { "; Secure" } else { "" }
            );
            Ok(see_other(&next, Some(&cookie)))
        }
        Ok(None) => {
            auth.record_failure(ip);
            tracing::warn!(peer = ?peer.0, user, "authentication failed: wrong user or password (login form)");
            Ok(pages::login(
                &next,
                Some("Wrong user or password."),
                StatusCode::UNAUTHORIZED,
            ))
        }
        Err(_busy) => Err(HttpError::TooManyRequests {
            retry_after: Duration::from_secs(1),
        }),
    }
}

/// `POST /logout`: clears the session cookie and shows the form.
pub(super) async fn logout(headers: HeaderMap) -> Result<Response, HttpError> {
    access::require_same_origin(&headers)?;
    let cookie = format!("{SESSION_COOKIE}=; Path=/; Max-Age=0; HttpOnly; SameSite=Lax");
    Ok(see_other("/login", Some(&cookie)))
}

/// Sends a browser's page request that needs a login to the form: a `GET` that accepts HTML,
/// carries no `Authorization` (a failed Basic attempt keeps its 401) and was answered 401.
/// Everything else (streams opened by programs, `fetch` calls, snapshots) is untouched.
pub(super) async fn to_the_form(
    State(state): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let page_request = state.0.config.login_form
        && state.0.config.auth.enabled()
        && req.method() == Method::GET
        && !req.headers().contains_key(header::AUTHORIZATION)
        && accepts_html(req.headers());
    // Kept only for page requests: every stream and snapshot passes through here too.
    let target = page_request.then(|| {
        req.uri()
            .path_and_query()
            .map_or_else(|| "/".to_owned(), |p| p.as_str().to_owned())
    });
    let resp = next.run(req).await;
    let Some(target) = target.filter(|_| resp.status() == StatusCode::UNAUTHORIZED) else {
        return resp;
    };
    let location = format!(
        "/login?{}",
        form_urlencoded::Serializer::new(String::new())
            .append_pair("next", &target)
            .finish()
    );
    see_other(&location, None)
}

/// A browser navigation asks for HTML first (`text/html,application/xhtml+xml,...`); `<img>`,
/// `fetch` and programs do not.
fn accepts_html(headers: &HeaderMap) -> bool {
    super::headers::items(headers, header::ACCEPT, ',').any(|r| {
        r.split(';')
            .next()
            .is_some_and(|t| t.trim().eq_ignore_ascii_case("text/html"))
    })
}

/// `next` when it is a path on this server, else `/`: a login must never forward to another
/// site (`//evil.example`, `/\evil.example` and absolute URLs are refused), and the path goes
/// into a `Location` header and the form, so control characters are refused too.
fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && n.len() <= MAX_NEXT
                && !n.starts_with("/login")
                && n.bytes().all(|b| (0x21..0x7f).contains(&b)) =>
        {
            n.to_owned()
        }
        _ => "/".to_owned(),
    }
}

/// 303 See Other to `location` (a path on this server), with an optional `Set-Cookie`.
fn see_other(location: &str, cookie: Option<&str>) -> Response {
    let mut resp = StatusCode::SEE_OTHER.into_response();
    let headers = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(location) {
        headers.insert(header::LOCATION, v);
    }
    if let Some(v) = cookie.and_then(|c| HeaderValue::from_str(c).ok()) {
        headers.insert(header::SET_COOKIE, v);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_on_this_server() {
        for (given, kept) in [
            (Some("/cameras/porch?x=1"), "/cameras/porch?x=1"),
            (Some("/"), "/"),
            (None, "/"),
            (Some("//evil.example/"), "/"),
            (Some("/\\evil.example"), "/"),
            (Some("https://evil.example/"), "/"),
            (Some("evil"), "/"),
            (Some("/a\r\nSet-Cookie: x=1"), "/"),
            (Some("/login?next=/x"), "/"),
            (Some(&*format!("/{}", "a".repeat(MAX_NEXT))), "/"),
        ] {
            assert_eq!(safe_next(given), kept, "{given:?}");
        }
    }

    #[test]
    fn only_navigations_accept_html() {
        let h = |a: &str| {
            let mut m = HeaderMap::new();
            m.insert(header::ACCEPT, HeaderValue::from_str(a).expect("value"));
            m
        };
        assert!(accepts_html(&h(
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
        )));
        assert!(!accepts_html(&h("*/*")));
        assert!(!accepts_html(&h("image/avif,image/webp,*/*;q=0.8")));
        assert!(!accepts_html(&HeaderMap::new()));
    }
}
