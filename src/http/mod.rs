//! HTTP: every route in one place, the pages, the stream body and snapshots.
//!
//! This module maps URLs to cameras and viewer streams. It knows the hub's API but no concrete
//! source. Endless stream bodies watch the shutdown token themselves and hold their viewer
//! permit, because neither hyper's graceful shutdown nor a tower concurrency limit can.

mod error;
mod pages;
mod query;
mod snapshot;
mod state;
mod stream;

pub use error::HttpError;
pub use state::{AppState, HttpConfig};

use axum::Router;
use axum::extract::{RawQuery, State};
use axum::http::Method;
use axum::response::{IntoResponse, Response};
use axum::routing::get;

/// Builds the router for the given state.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(root))
        .route("/video_feed", get(stream::first_camera))
        .route("/stream", get(stream::first_camera))
        .route("/snapshot.jpg", get(snapshot::first_camera))
        .route("/snapshot", get(snapshot::first_camera))
        .fallback(not_found)
        .with_state(state)
}

/// `/`: the index page, or mjpg-streamer's `/?action=stream|snapshot` so OctoPrint and Home
/// Assistant configurations written for mjpg-streamer work unchanged.
async fn root(
    State(state): State<AppState>,
    method: Method,
    RawQuery(raw): RawQuery,
) -> Result<Response, HttpError> {
    let q = query::Query::parse(raw.as_deref());
    match q.get("action") {
        None => Ok(pages::index(&state).into_response()),
        Some("stream") => stream::first_camera(State(state), method, RawQuery(raw)).await,
        Some("snapshot") => snapshot::first_camera(State(state), method, RawQuery(raw)).await,
        Some(other) => Err(HttpError::NotFound(format!(
            "unknown action {other:?}: use ?action=stream or ?action=snapshot"
        ))),
    }
}

async fn not_found(uri: axum::http::Uri) -> HttpError {
    HttpError::NotFound(format!(
        "no such page: {} — the stream is at /stream, the snapshot at /snapshot.jpg",
        uri.path()
    ))
}
