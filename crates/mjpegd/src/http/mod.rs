//! HTTP: every route in one place, the pages, the stream body, snapshots, state and metrics.
//!
//! This module maps URLs to cameras and viewer streams. It knows the hub's API but no concrete
//! source. Endless stream bodies watch the shutdown token themselves and hold their viewer
//! permit, because neither hyper's graceful shutdown nor a tower concurrency limit can.

mod access;
mod controls;
mod error;
mod events;
mod headers;
#[cfg(feature = "auth")]
mod login;
mod mosaic;
mod pace;
mod pages;
pub mod query;
pub mod recordings;
mod sendfile;
mod snapshot;
mod state;
mod status;
mod stream;

pub use controls::MAX_CONTROLS_BODY;
pub use error::HttpError;
pub use pace::{
    EXPORT_MAX_DURATION, EXPORT_MIN_BYTES, EXPORT_RATE_WINDOW, MAX_EXPORTS, Pace, PaceGuard,
};
pub use sendfile::{ClaimedExport, ExportSlot};
pub use state::{AppState, HttpConfig, StateSection};
pub use stream::{ClaimedStream, MAX_IGNORED_INPUT, StreamSlot};

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts, Path, RawQuery, State};
use axum::http::Method;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};

use crate::auth::Principal;

/// Builds the router for the given state.
pub fn router(state: AppState) -> Router {
    let mut router = Router::new();
    // mjpg-streamer's control listings, `/input.json` (camera 0) and `/input_N.json`: the
    // router has no pattern for part of a segment, so each number is a route of its own.
    router = router.route(
        "/input.json",
        get(|s: State<AppState>, p: Principal| input_json(s, p, 0)),
    );
    for i in 0..crate::hub::MAX_CAMERAS {
        router = router.route(
            &format!("/input_{i}.json"),
            get(move |s: State<AppState>, p: Principal| input_json(s, p, i)),
        );
    }
    let router = router
        .route("/", get(root))
        .route("/video_feed", get(stream::first_camera))
        .route("/stream", get(stream::first_camera))
        .route("/snapshot.jpg", get(snapshot::first_camera))
        .route("/snapshot", get(snapshot::first_camera))
        .route("/mosaic", get(mosaic::stream))
        .route("/mosaic.jpg", get(mosaic::snapshot))
        .route("/cameras/{name}", get(camera_page))
        .route("/cameras/{name}/stream", get(camera_stream))
        .route("/cameras/{name}/video_feed", get(camera_stream))
        .route("/cameras/{name}/snapshot.jpg", get(camera_snapshot))
        .route("/cameras/{name}/snapshot", get(camera_snapshot))
        .route("/cameras/{name}/recordings", get(recordings::list))
        .route("/cameras/{name}/replay", get(recordings::replay))
        .route("/cameras/{name}/frame.jpg", get(recordings::frame))
        .route("/cameras/{name}/export.mkv", get(recordings::export_mkv))
        .route(
            "/cameras/{name}/export.mjpeg",
            get(recordings::export_mjpeg),
        )
        .route("/cameras/{name}/record/start", post(recordings::start))
        .route("/cameras/{name}/record/stop", post(recordings::stop))
        .route(
            "/cameras/{name}/controls",
            get(controls::list).post(controls::set),
        )
        .route("/cameras/{name}/controls/reset", post(controls::reset))
        .route("/cameras/{name}/events", get(events::list))
        .route("/cameras/{name}/events/{id}/frame.jpg", get(events::frame))
        .route("/api/state", get(status::state))
        .route("/metrics", get(status::metrics))
        .route("/api/token", get(status::token));
    #[cfg(feature = "auth")]
    let router = router
        .route("/login", get(login::form).post(login::submit))
        .route("/logout", post(login::logout))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            login::to_the_form,
        ));
    router
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(state.clone(), cors))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            known_host,
        ))
        .with_state(state)
}

/// Refuses, before any route runs, a request for a name this server does not answer to
/// (`access::require_known_host`: the DNS rebinding guard).
async fn known_host(
    State(state): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    match access::require_known_host(&state, req.headers()) {
        Ok(()) => next.run(req).await,
        Err(e) => e.into_response(),
    }
}

/// Adds `Access-Control-Allow-Origin` when `--allow-origin` is set (off by default: a page on
/// another site must not read streams or state through the user's browser).
async fn cors(
    State(state): State<AppState>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let mut resp = next.run(req).await;
    if let Some(origin) = &state.config().allow_origin {
        if let Ok(v) = axum::http::HeaderValue::from_str(origin) {
            resp.headers_mut()
                .insert(axum::http::header::ACCESS_CONTROL_ALLOW_ORIGIN, v);
        }
    }
    resp
}

/// The peer's address, when the connection has one (TCP).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub Option<SocketAddr>);

impl<S: Send + Sync> FromRequestParts<S> for PeerAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<PeerAddr, Self::Rejection> {
        Ok(PeerAddr(
            parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0),
        ))
    }
}

/// `/`: the camera grid, or mjpg-streamer's `/?action=stream|snapshot[_N]` so OctoPrint and
/// Home Assistant configurations written for mjpg-streamer work unchanged.
async fn root(
    State(state): State<AppState>,
    principal: Principal,
    request: stream::StreamRequest,
) -> Result<Response, HttpError> {
    let q = query::Query::parse(request.query.as_deref());
    let Some(action) = q.get("action") else {
        access::require_user(&principal)?;
        // One HTTP/2 connection carries every camera: no six-connection limit to plan for.
        let multiplexed = request.version >= axum::http::Version::HTTP_2;
        return Ok(pages::index(&state, &principal, multiplexed));
    };
    // mjpg-streamer numbers its inputs from 0: `stream_1` is the second camera.
    let (verb, index) = match action.split_once('_') {
        Some((verb, n)) => match n.parse::<usize>() {
            Ok(i) => (verb, i),
            Err(_) => return Err(unknown_action(action)),
        },
        None => (action, 0),
    };
    if verb == "command" {
        // Before the camera lookup by position: `plugin=` names the camera, not a suffix.
        return controls::command(&state, &principal, &request.headers, &q).await;
    }
    if !matches!(verb, "stream" | "snapshot") {
        return Err(unknown_action(action));
    }
    let camera = access::camera_at(&state, &principal, index)?;
    match verb {
        "stream" => stream::respond(&state, &camera, request),
        "snapshot" => {
            snapshot::respond(
                &state,
                &camera,
                &request.method,
                request.peer,
                request.query.as_deref(),
            )
            .await
        }
        _ => Err(unknown_action(action)),
    }
}

/// `/input.json`, `/input_N.json`: mjpg-streamer's listing of camera N's controls.
async fn input_json(
    State(state): State<AppState>,
    principal: Principal,
    index: usize,
) -> Result<Response, HttpError> {
    access::require_user(&principal)?;
    controls::input_json(&state, &principal, index).await
}

fn unknown_action(action: &str) -> HttpError {
    HttpError::NotFound(format!(
        "unknown action {action:?}: use ?action=stream or ?action=snapshot (or stream_N / snapshot_N for camera N), or ?action=command to set a camera control"
    ))
}

async fn camera_page(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
) -> Result<Response, HttpError> {
    access::require_user(&principal)?;
    let camera = access::camera_named(&state, &principal, &name)?;
    let records = state
        .recordings()
        .is_some_and(|r| r.get(camera.name()).is_some());
    Ok(pages::camera(&camera, &principal, records))
}

async fn camera_stream(
    State(state): State<AppState>,
    Path(name): Path<String>,
    principal: Principal,
    request: stream::StreamRequest,
) -> Result<Response, HttpError> {
    let camera = access::camera_named(&state, &principal, &name)?;
    stream::respond(&state, &camera, request)
}

async fn camera_snapshot(
    State(state): State<AppState>,
    Path(name): Path<String>,
    method: Method,
    peer: PeerAddr,
    principal: Principal,
    RawQuery(raw): RawQuery,
) -> Result<Response, HttpError> {
    let camera = access::camera_named(&state, &principal, &name)?;
    snapshot::respond(&state, &camera, &method, peer, raw.as_deref()).await
}

async fn not_found(uri: axum::http::Uri) -> Response {
    HttpError::NotFound(format!(
        "no such page: {} — streams are at /stream and /cameras/NAME/stream, snapshots at /snapshot.jpg",
        uri.path()
    ))
    .into_response()
}
