//! Motion events: `/cameras/NAME/events?from&to` (JSON) and
//! `/cameras/NAME/events/ID/frame.jpg` (the event's best frame, from memory).

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::query::Query;
use super::{AppState, HttpError, access};
use crate::auth::Principal;
use crate::motion::CameraMotion;
use crate::record::time;

fn motion_of(state: &AppState, p: &Principal, name: &str) -> Result<Arc<CameraMotion>, HttpError> {
    access::require_user(p)?;
    let camera = access::camera_named(state, p, name)?;
    state
        .motion()
        .and_then(|m| m.get(camera.name()))
        .cloned()
        .ok_or_else(|| {
            HttpError::NotFound(format!(
                "camera {name:?} has no motion detection: add a [cameras.motion] section to its config (or run with --motion)"
            ))
        })
}

fn bound(q: &Query, key: &str, default: i64) -> Result<i64, HttpError> {
    match q.get(key) {
        Some(v) => time::parse(v).map_err(|e| {
            HttpError::BadRequest(format!(
                "bad {key}: {e}; give RFC 3339 or Unix seconds, e.g. {key}=2026-12-01T08:00:00Z"
            ))
        }),
        None => Ok(default),
    }
}

/// `GET /cameras/NAME/events?from=T&to=T`: events overlapping the range (default: all kept).
pub(super) async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, HttpError> {
    let m = motion_of(&state, &principal, &name)?;
    let q = Query::parse(raw.as_deref());
    let from = bound(&q, "from", i64::MIN)?;
    let to = bound(&q, "to", i64::MAX)?;
    if from > to {
        return Err(HttpError::BadRequest(format!(
            "from ({from} us) is after to ({to} us)"
        )));
    }
    let body = serde_json::json!({
        "camera": m.name(),
        "state": m.state(),
        "events": m.events(from, to),
    });
    Ok(Json(body).into_response())
}

/// `GET /cameras/NAME/events/ID/frame.jpg`: the event's peak frame.
pub(super) async fn frame(
    State(state): State<AppState>,
    principal: Principal,
    Path((name, id)): Path<(String, String)>,
) -> Result<Response, HttpError> {
    let m = motion_of(&state, &principal, &name)?;
    let id: u64 = id
        .parse()
        .map_err(|_| HttpError::BadRequest(format!("event id {id:?} is not a number")))?;
    let jpeg = m.best_frame(id).ok_or_else(|| {
        HttpError::NotFound(format!(
            "camera {name:?} has no event {id} in memory (the newest {} are kept)",
            crate::motion::MAX_EVENTS
        ))
    })?;
    let mut resp = (StatusCode::OK, Body::from(jpeg)).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg"));
    Ok(resp)
}
