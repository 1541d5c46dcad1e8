//! The HTML pages, rendered here and embedded in the binary (no external assets, no CDN).
//!
//! `/` is a grid of every camera; over HTTP/1.1, with more cameras than a browser's ~6
//! connections per host allow, tiles show refreshed snapshots instead of one stream each (over
//! HTTP/2 every tile streams). `/cameras/{name}` is one
//! camera, larger, with snapshot and fullscreen buttons, the recordings timeline and the camera
//! controls when it has them. Both update name, fps, viewers and
//! online state from `/api/state`.

use std::fmt::Write as _;

use axum::http::{HeaderValue, header};
use axum::response::{Html, IntoResponse, Response};

use super::AppState;
use crate::auth::Principal;
use crate::hub::Camera;

const STYLE: &str = include_str!("../../assets/style.css");
const SCRIPT: &str = include_str!("../../assets/app.js");

/// Most stream tiles over HTTP/1.1: browsers open about 6 connections per host and a stream
/// holds one for ever; what is left serves state polls, snapshots and clicks.
const MAX_STREAM_TILES: usize = 4;

/// A whole HTML document: the shared head and style, `body`, and the pages' script when
/// `script`.
fn document(title: &str, body: &str, script: bool) -> String {
    let script = if script {
        format!("<script>\n{SCRIPT}</script>\n")
    } else {
        String::new()
    };
    format!(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>{}</title>\n<style>\n{STYLE}</style>\n</head>\n<body>\n{body}\n{script}</body>\n</html>\n",
        escape(title)
    )
}

fn page(title: &str, body: &str) -> Response {
    let mut resp = Html(document(title, body, true)).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}

fn meta(camera: &Camera) -> String {
    let name = escape(camera.name());
    format!(
        "<div class=\"meta\"><span class=\"name\">{name}</span><span class=\"state\">…</span>\
         <span class=\"fps\"></span><span class=\"viewers\"></span></div><div class=\"error\"></div>"
    )
}

/// `/`: the grid of all cameras. The first camera's tile uses the classic `/video_feed` URL.
/// Over HTTP/2 (`multiplexed`) every tile streams; over HTTP/1.1 only up to
/// [`MAX_STREAM_TILES`], the rest refreshed snapshots.
pub(super) fn index(state: &AppState, principal: &Principal, multiplexed: bool) -> Response {
    let all = state.hub().cameras();
    let first_name = all.first().map(|c| c.name().to_owned());
    let cams: Vec<&std::sync::Arc<Camera>> = all
        .iter()
        .filter(|c| principal.may_watch(c.name()))
        .collect();
    let snapshots = !multiplexed && cams.len() > MAX_STREAM_TILES;
    let mut body = String::from("<header><h1>mjpegd</h1>");
    if let Some(first) = cams
        .first()
        .filter(|c| Some(c.name()) == first_name.as_deref())
    {
        let _ = write!(
            body,
            "<a href=\"/snapshot.jpg\" download=\"{}.jpg\">snapshot</a>",
            escape(first.name())
        );
    }
    if cams.len() > 1 {
        body.push_str("<a href=\"/mosaic\">mosaic</a>");
    }
    body.push_str("<a href=\"/api/state\">state</a><a href=\"/metrics\">metrics</a>");
    body.push_str(&logout(principal));
    body.push_str("</header>\n<main class=\"grid\">\n");
    for (i, c) in cams.iter().enumerate() {
        let name = escape(c.name());
        let classic = i == 0 && Some(c.name()) == first_name.as_deref();
        let (src, mode) = match (snapshots, classic) {
            (true, _) => (
                format!("/cameras/{name}/snapshot.jpg?width=480"),
                "snapshot",
            ),
            (false, true) => ("/video_feed".to_owned(), "stream"),
            (false, false) => (format!("/cameras/{name}/stream"), "stream"),
        };
        // The classic page's `<img src="/video_feed">` is kept literally for the first camera so
        // it works even without JavaScript.
        let src_attr = if mode == "stream" && classic {
            format!(" src=\"{src}\"")
        } else {
            String::new()
        };
        let _ = writeln!(
            body,
            "<div class=\"tile\" data-camera=\"{name}\"><a href=\"/cameras/{name}\">\
             <img id=\"{}\"{src_attr} data-src=\"{src}\" data-mode=\"{mode}\" alt=\"live video from {name}\"></a>{}</div>",
            if i == 0 { "video" } else { "" },
            meta(c)
        );
    }
    body.push_str("</main>");
    page("mjpegd", &body)
}

/// The recordings panel of a camera page: a timeline of the recorded spans (click: replay from
/// there; drag: select a range), export and start/stop buttons. Filled in by app.js.
fn recordings_panel(name: &str) -> String {
    format!(
        "<section class=\"recordings\" id=\"recordings\" data-camera=\"{name}\">\
         <div class=\"rec-bar\"><span class=\"rec-title\">Recordings</span>\
         <span class=\"rec-status\"></span><span class=\"rec-position\"></span>\
         <button type=\"button\" id=\"rec-live\">Live</button>\
         <button type=\"button\" id=\"rec-export\">Export selection (.mkv)</button>\
         <button type=\"button\" id=\"rec-toggle\">Stop recording</button></div>\
         <div class=\"timeline\" id=\"timeline\" title=\"click: replay from there; drag: select a range to export\">\
         <div class=\"sel\"></div><div class=\"cursor\"></div></div>\
         <div class=\"axis\"><span class=\"t0\"></span><span class=\"t1\"></span></div>\
         <div class=\"rec-error error\"></div></section>"
    )
}

/// The camera controls panel (sliders, switches, menus, buttons, each with a reset), filled in
/// by app.js from `/cameras/NAME/controls`; only for cameras that have controls.
fn controls_panel(name: &str) -> String {
    format!(
        "<section class=\"controls\" id=\"controls\" data-camera=\"{name}\">\
         <div class=\"ctl-bar\"><span class=\"ctl-title\">Camera controls</span>\
         <span class=\"ctl-note\">kept across restarts</span>\
         <button type=\"button\" id=\"ctl-reset\">Reset all to defaults</button></div>\
         <div class=\"ctl-list\"></div><div class=\"ctl-error error\"></div></section>"
    )
}

/// `/cameras/{name}`: one camera, larger, with snapshot and fullscreen buttons, and the
/// recordings timeline when the camera records.
pub(super) fn camera(camera: &Camera, principal: &Principal, records: bool) -> Response {
    let name = escape(camera.name());
    let mut panel = if records {
        recordings_panel(&name)
    } else {
        String::new()
    };
    if camera.config().opener.controls().is_some() {
        panel.push_str(&controls_panel(&name));
    }
    let body = format!(
        "<header><h1><a href=\"/\">mjpegd</a> / {name}</h1>\
         <a href=\"/cameras/{name}/snapshot.jpg\" download=\"{name}.jpg\"><button type=\"button\">Snapshot</button></a>\
         <button type=\"button\" id=\"fullscreen\">Fullscreen</button>\
         <a href=\"/cameras/{name}/stream\">raw stream</a>{}</header>\n\
         <main><div class=\"tile single\" data-camera=\"{name}\">\
         <img data-src=\"/cameras/{name}/stream\" data-mode=\"stream\" alt=\"live video from {name}\">{}</div>{panel}</main>",
        logout(principal),
        meta(camera)
    );
    page(&format!("mjpegd — {}", camera.name()), &body)
}

/// The header's user name and "log out" button, for a logged-in user (nothing otherwise).
fn logout(principal: &Principal) -> String {
    match principal {
        Principal::User { name, .. } => format!(
            "<form class=\"logout\" method=\"post\" action=\"/logout\"><span>{}</span>\
             <button type=\"submit\">log out</button></form>",
            escape(name)
        ),
        _ => String::new(),
    }
}

/// `/login`: the login form, returning to `next` (a path on this server) once logged in, with
/// `error` above it after a failed attempt. No script: nothing on it needs one.
#[cfg(feature = "auth")]
pub(super) fn login(next: &str, error: Option<&str>, status: axum::http::StatusCode) -> Response {
    let error = error.map_or_else(String::new, |e| {
        format!("<p class=\"error\" role=\"alert\">{}</p>", escape(e))
    });
    let body = format!(
        "<main class=\"login\">\n<h1>mjpegd</h1>\n{error}\
         <form method=\"post\" action=\"/login\">\n\
         <label>User <input name=\"user\" autocomplete=\"username\" autocapitalize=\"none\" required autofocus></label>\n\
         <label>Password <input name=\"password\" type=\"password\" autocomplete=\"current-password\" required></label>\n\
         <input type=\"hidden\" name=\"next\" value=\"{}\">\n\
         <button type=\"submit\">Log in</button>\n</form>\n</main>",
        escape(next)
    );
    let mut resp = (status, Html(document("mjpegd: log in", &body, false))).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}
