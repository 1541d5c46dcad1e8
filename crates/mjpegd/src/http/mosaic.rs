//! `/mosaic` and `/mosaic.jpg`: cameras composed into one stream or picture (see
//! [`crate::mosaic`]). `?cameras=a,b,c` picks and orders them (default: every camera the user
//! may watch), `?width=` sets the composed width and `?fps=` its rate; every other stream
//! parameter works as on a camera's stream.

use std::sync::Arc;

use axum::extract::{RawQuery, State};
use axum::http::Method;
use axum::response::Response;

use super::query::Query;
use super::stream::StreamRequest;
use super::{AppState, HttpError, PeerAddr, access};
use crate::auth::Principal;
use crate::hub::Camera;
use crate::mosaic::{DEFAULT_FPS, DEFAULT_WIDTH, MAX_TILES, MosaicError};

/// The parameters that choose the mosaic rather than how it is streamed.
const MOSAIC_KEYS: [&str; 3] = ["cameras", "width", "fps"];

/// `/mosaic`: the composed stream.
pub(super) async fn stream(
    State(state): State<AppState>,
    principal: Principal,
    mut request: StreamRequest,
) -> Result<Response, HttpError> {
    let query = Query::parse(request.query.as_deref());
    let camera = mosaic_for(&state, &principal, &query)?;
    request.query = query.without(&MOSAIC_KEYS);
    super::stream::respond(&state, &camera, request)
}

/// `/mosaic.jpg`: one composed picture.
pub(super) async fn snapshot(
    State(state): State<AppState>,
    principal: Principal,
    method: Method,
    peer: PeerAddr,
    RawQuery(raw): RawQuery,
) -> Result<Response, HttpError> {
    let query = Query::parse(raw.as_deref());
    let camera = mosaic_for(&state, &principal, &query)?;
    let rest = query.without(&MOSAIC_KEYS);
    super::snapshot::respond(&state, &camera, &method, peer, rest.as_deref()).await
}

/// The mosaic `query` asks for, made if it is the first to.
fn mosaic_for(
    state: &AppState,
    principal: &Principal,
    query: &Query,
) -> Result<Arc<Camera>, HttpError> {
    access::require_user(principal)?;
    let cameras = match query.get("cameras") {
        Some(list) => {
            let names: Vec<&str> = list
                .split(',')
                .map(str::trim)
                .filter(|n| !n.is_empty())
                .collect();
            if names.len() > MAX_TILES {
                return Err(MosaicError::TooManyTiles(names.len()).into());
            }
            names
                .iter()
                .map(|n| access::camera_named(state, principal, n))
                .collect::<Result<Vec<_>, _>>()?
        }
        None => state
            .hub()
            .cameras()
            .into_iter()
            .filter(|c| principal.may_watch(c.name()))
            .take(MAX_TILES)
            .collect(),
    };
    let width = match query.get("width") {
        None => DEFAULT_WIDTH,
        Some(w) => w.trim().parse().map_err(|_| {
            HttpError::BadRequest(format!(
                "bad width {w:?}: give the mosaic's width in pixels, e.g. width=1280"
            ))
        })?,
    };
    let fps = match query.get("fps") {
        None => DEFAULT_FPS,
        Some(f) => f
            .trim()
            .parse::<f64>()
            .ok()
            .filter(|f| f.is_finite())
            .ok_or_else(|| {
                HttpError::BadRequest(format!(
                    "bad fps {f:?}: give frames per second, e.g. fps=10"
                ))
            })?,
    };
    Ok(state.mosaics().get(cameras, width, fps)?)
}

impl From<MosaicError> for HttpError {
    fn from(e: MosaicError) -> HttpError {
        match e {
            MosaicError::Full => HttpError::Unavailable(e.to_string()),
            _ => HttpError::BadRequest(e.to_string()),
        }
    }
}
