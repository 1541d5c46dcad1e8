//! The HTML pages, embedded in the binary (no external assets).

use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};

use super::AppState;

const INDEX: &str = include_str!("../../assets/index.html");

/// The classic page: an `<img>` whose source is the never-ending stream.
pub(super) fn index(state: &AppState) -> Response {
    let name = state.hub().first().map(|c| c.name().to_owned()).unwrap_or_default();
    let page = INDEX.replace("{{camera}}", &html_escape(&name));
    let mut resp = Html(page).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

fn html_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
