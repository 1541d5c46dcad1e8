//! The MJPEG stream body: one per viewer, paced by the viewer, fed by the camera's latest frame.
//!
//! The body sends the preamble boundary, then each frame's prebuilt part (headers, JPEG,
//! trailing boundary) as one shared `Bytes`: no per-viewer copy. The response is HTTP/1.0-style,
//! delimited by the connection's close (as µStreamer's): hyper then writes each part as it is,
//! one buffer per write, instead of wrapping it in chunked framing (a size line and a CRLF
//! around every part, three buffers per write). It only asks for the next frame
//! when hyper polls it, which hyper does once the previous write has drained into the socket,
//! so a slow viewer simply gets the newest frame when it is ready and skips the rest. A viewer
//! whose socket stops draining altogether is cut by the server's write timeout.

use std::convert::Infallible;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, Sleep, sleep_until};
use tokio_util::sync::WaitForCancellationFutureOwned;

use super::query::Query;
use super::{AppState, HttpError, PeerAddr};
use crate::frame::Frame;
use crate::hub::{Camera, Subscription, ViewerHandle};
use crate::mjpeg::{STREAM_CONTENT_TYPE, write::STREAM_PREAMBLE};

/// `/stream`, `/video_feed`, `/?action=stream`: the first camera's stream.
pub(super) async fn first_camera(
    State(state): State<AppState>,
    principal: crate::auth::Principal,
    method: Method,
    peer: PeerAddr,
    RawQuery(raw): RawQuery,
) -> Result<Response, HttpError> {
    let camera = super::access::camera_at(&state, &principal, 0)?;
    respond(&state, &camera, &method, peer, raw.as_deref())
}

/// Answers a stream request for `camera`.
pub(super) fn respond(
    state: &AppState,
    camera: &Arc<Camera>,
    method: &Method,
    peer: PeerAddr,
    raw_query: Option<&str>,
) -> Result<Response, HttpError> {
    let min_interval = Query::parse(raw_query).min_interval()?;
    let headers = stream_headers();
    if method == Method::HEAD {
        // Headers only: a HEAD must not count as a viewer or start capture. The body has no
        // known length, so no misleading `Content-Length: 0` is sent.
        let endless = futures_util::stream::empty::<Result<Bytes, Infallible>>();
        return Ok(close_delimited(
            (StatusCode::OK, headers, Body::from_stream(endless)).into_response(),
        ));
    }
    let permit = Arc::clone(&state.0.viewer_slots)
        .try_acquire_owned()
        .map_err(|_| HttpError::TooManyViewers {
            limit: state.0.config.max_viewers,
        })?;
    let camera_permit = match state.camera_slots(camera) {
        Some(slots) => Some(
            slots
                .try_acquire_owned()
                .map_err(|_| HttpError::TooManyViewers {
                    limit: state.0.config.max_viewers_per_camera,
                })?,
        ),
        None => None,
    };
    let viewer = Viewer {
        handle: camera.register_viewer(peer.0),
        sub: camera.subscribe(),
        _permit: permit,
        _camera_permit: camera_permit,
        min_interval,
        keepalive: state.0.config.keepalive,
        shutdown: Box::pin(state.0.shutdown.clone().cancelled_owned()),
        // Far enough away to never fire before the first frame.
        timer: Box::pin(sleep_until(Instant::now() + NO_FRAME_YET)),
        last: None,
        started: false,
    };
    tracing::debug!(camera = %camera.name(), peer = ?peer.0, "viewer connected");
    let chunks = futures_util::stream::unfold(viewer, |mut v| async move {
        let chunk = v.next_chunk().await?;
        Some((Ok::<Bytes, Infallible>(chunk), v))
    });
    Ok(close_delimited(
        (StatusCode::OK, headers, Body::from_stream(chunks)).into_response(),
    ))
}

/// Makes hyper send `response`'s body as is, ended by closing the connection: an HTTP/1.0
/// response has no chunked framing, and `Connection: close` tells HTTP/1.1 clients too that the
/// body runs to the close. An endless stream never shares its connection with a next request
/// anyway.
fn close_delimited(mut response: Response) -> Response {
    *response.version_mut() = Version::HTTP_10;
    response
        .headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// The keep-alive timer's deadline before the first frame: never, in practice.
const NO_FRAME_YET: Duration = Duration::from_secs(86_400);

fn stream_headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(STREAM_CONTENT_TYPE),
    );
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("no-store, no-cache, must-revalidate, max-age=0"),
    );
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    h.insert(
        header::EXPIRES,
        HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"),
    );
    // nginx would otherwise buffer the endless body.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    h
}

/// One viewer's position in the camera's frame sequence.
struct Viewer {
    sub: Subscription,
    handle: ViewerHandle,
    /// Released when the body is dropped, i.e. when the viewer is gone.
    _permit: OwnedSemaphorePermit,
    _camera_permit: Option<OwnedSemaphorePermit>,
    min_interval: Option<Duration>,
    keepalive: Duration,
    /// Resolves when the server shuts down. Kept across frames, like `timer`, so that waiting for
    /// a frame registers no new waiter or timer each time (that was a cost per viewer per frame).
    shutdown: Pin<Box<WaitForCancellationFutureOwned>>,
    /// The rate cap's and the keep-alive's deadline; only ever moved later while a frame is
    /// awaited, which tokio does without touching its timer wheel.
    timer: Pin<Box<Sleep>>,
    /// Sequence number and send time of the last frame sent.
    last: Option<(u64, Instant)>,
    started: bool,
}

impl Viewer {
    /// The next chunk of the body; `None` ends the stream (server shutting down).
    async fn next_chunk(&mut self) -> Option<Bytes> {
        if !self.started {
            self.started = true;
            return Some(Bytes::from_static(STREAM_PREAMBLE));
        }
        if let (Some(min), Some((_, at))) = (self.min_interval, self.last) {
            self.timer.as_mut().reset(at + min);
            tokio::select! {
                biased;
                () = self.shutdown.as_mut() => return None,
                () = self.timer.as_mut() => {}
            }
        }
        loop {
            let newest = self.sub.frames().borrow_and_update().clone();
            if let Some(frame) = newest {
                if self.last.is_none_or(|(seq, _)| frame.seq() > seq) {
                    return Some(self.send(frame));
                }
            }
            if let Some((_, at)) = self.last {
                let keepalive_at = at + self.keepalive;
                if self.timer.deadline() != keepalive_at {
                    self.timer.as_mut().reset(keepalive_at);
                }
            }
            tokio::select! {
                biased;
                () = self.shutdown.as_mut() => return None,
                changed = self.sub.frames().changed() => {
                    if changed.is_err() {
                        return None;
                    }
                }
                () = self.timer.as_mut() => {
                    // No new frame for a while: send the latest again.
                    let latest = self.sub.frames().borrow_and_update().clone();
                    if let Some(frame) = latest {
                        return Some(self.send(frame));
                    }
                    if let Some((seq, _)) = self.last {
                        self.last = Some((seq, Instant::now()));
                    }
                }
            }
        }
    }

    fn send(&mut self, frame: Frame) -> Bytes {
        let stats = self.sub.camera().stats();
        if let Some((seq, _)) = self.last {
            let skipped = frame.seq().saturating_sub(seq).saturating_sub(1);
            if skipped > 0 {
                stats.frames_skipped.fetch_add(skipped, Ordering::Relaxed);
                self.handle
                    .info()
                    .skipped
                    .fetch_add(skipped, Ordering::Relaxed);
            }
        }
        let part = frame.part();
        let now = Instant::now();
        stats.frames_sent.fetch_add(1, Ordering::Relaxed);
        let me = self.handle.info();
        me.frames.fetch_add(1, Ordering::Relaxed);
        me.rate.tick_at(now.into_std());
        stats
            .bytes_sent
            .fetch_add(part.len() as u64, Ordering::Relaxed);
        self.last = Some((frame.seq(), now));
        part
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        tracing::debug!(camera = %self.sub.camera().name(), "viewer disconnected");
    }
}
