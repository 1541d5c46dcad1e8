//! Snapshots: one `image/jpeg` of the newest frame.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::query::Query;
use super::{AppState, HttpError, PeerAddr};
use crate::frame::Image;
use crate::hub::Camera;
use crate::mjpeg::{JPEG_CONTENT_TYPE, write::timestamp_value};
use crate::transform::thumbnail;

/// `/snapshot.jpg`, `/snapshot`, `/?action=snapshot`: the first camera's newest frame.
pub(super) async fn first_camera(
    State(state): State<AppState>,
    principal: crate::auth::Principal,
    method: Method,
    peer: PeerAddr,
    RawQuery(raw): RawQuery,
) -> Result<Response, HttpError> {
    let camera = super::access::camera_at(&state, &principal, 0)?;
    respond(&state, &camera, &method, peer, raw.as_deref()).await
}

/// Answers a snapshot of `camera`. When capture was idle this starts it and waits (bounded) for
/// a fresh frame rather than returning a stale one; capture then runs for the idle timeout, so
/// clients polling snapshots (OctoPrint, Home Assistant) get fresh frames without a restart each time.
pub(super) async fn respond(
    state: &AppState,
    camera: &Arc<Camera>,
    _method: &Method,
    peer: PeerAddr,
    raw_query: Option<&str>,
) -> Result<Response, HttpError> {
    let width = Query::parse(raw_query).thumbnail_width()?;
    if let Err(wait) = state.take_snapshot_token(peer.0.map(|a| a.ip())) {
        return Err(HttpError::TooManyRequests { retry_after: wait });
    }
    let mut sub = camera.subscribe();
    let wait = state.0.config.snapshot_wait;
    let frame = match tokio::time::timeout(wait, sub.frames().wait_for(Option::is_some)).await {
        // Clone out of the channel's read guard at once: it must not be held across an await.
        Ok(Ok(frame)) => frame.clone(),
        _ => None,
    };
    let Some(frame) = frame else {
        return Err(HttpError::Unavailable(format!(
            "camera {:?} produced no frame within {}s; its source may be failing — see the server log",
            camera.name(),
            wait.as_secs_f64()
        )));
    };
    let jpeg = match width {
        Some(w) if w < frame.width() => {
            let image = Image {
                jpeg: frame.jpeg(),
                width: frame.width(),
                height: frame.height(),
            };
            let quality = camera.config().quality;
            let small = tokio::task::spawn_blocking(move || thumbnail(&image, w, quality)).await;
            match small {
                Ok(Ok(img)) => img.jpeg,
                Ok(Err(e)) => {
                    return Err(HttpError::Unavailable(format!(
                        "cannot make a thumbnail of camera {:?}: {e}",
                        camera.name()
                    )));
                }
                Err(e) => {
                    return Err(HttpError::Unavailable(format!(
                        "thumbnail task failed: {e}"
                    )));
                }
            }
        }
        _ => frame.jpeg(),
    };
    let mut resp = (StatusCode::OK, Body::from(jpeg)).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(JPEG_CONTENT_TYPE),
    );
    super::headers::no_cache(h);
    if let Ok(v) = HeaderValue::from_str(&timestamp_value(frame.captured())) {
        h.insert("x-timestamp", v);
    }
    h.insert(
        "x-mjpegd-online",
        HeaderValue::from_static(if frame.online() { "true" } else { "false" }),
    );
    Ok(resp)
}
