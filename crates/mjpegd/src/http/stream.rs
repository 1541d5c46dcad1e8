//! The MJPEG stream body: one per viewer, paced by the viewer, fed by the camera's latest frame.
//!
//! The body sends the preamble boundary, then each frame's prebuilt part (headers, JPEG,
//! trailing boundary) as one shared `Bytes`: no per-viewer copy. Browsers get the
//! "advance headers" wire instead (see [`wants_advance_headers`]): the JPEG alone, as a slice of
//! the same shared buffer, then a static chunk holding the boundary and the next part's headers.
//! Over HTTP/1 the response is HTTP/1.0-style, delimited by the connection's close (as
//! µStreamer's), so the body needs no framing at all. hyper writes the response head; the
//! handler leaves its viewer in the connection's [`StreamSlot`], and the server then takes the
//! socket back and writes the parts itself, one `writev` per part, the way the zero-work ceiling
//! does: hyper's dispatcher cost about as much user time per part as all the rest of the send
//! path.
//!
//! Over HTTP/2 (and under any server but [`crate::server::Server`]) the viewer is the response
//! body instead. Each frame goes out as two chunks of the same shared buffer, the frame and its
//! last bytes, because hyper's HTTP/2 asks a body for its next chunk as soon as it has queued the
//! previous one and holds that chunk until the stream has room: held back that way, the tail
//! makes the next frame be chosen only once the previous one has left the stream's send buffer.
//!
//! Either way the viewer only asks for the next frame once the previous one has drained, so a
//! slow viewer simply gets the newest frame when it is ready and skips the rest. A viewer whose
//! socket stops draining altogether is cut by the server's write timeout.

use std::convert::Infallible;
use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Body;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Version, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use tokio::time::{Instant, Sleep, sleep_until};

use super::query::Query;
use super::state::ViewerSlots;
use super::{AppState, HttpError, PeerAddr};
use crate::frame::Frame;
use crate::hub::{Camera, SizedSubscription, Subscription, ViewerHandle};
use crate::mjpeg::STREAM_CONTENT_TYPE;
use crate::mjpeg::write::{ADVANCE_PREAMBLE, ADVANCE_TRAILER, STREAM_PREAMBLE, write_all_vectored};
use crate::shutdown::Closing;

/// `/stream`, `/video_feed`, `/?action=stream`: the first camera's stream.
pub(super) async fn first_camera(
    State(state): State<AppState>,
    principal: crate::auth::Principal,
    request: StreamRequest,
) -> Result<Response, HttpError> {
    let camera = super::access::camera_at(&state, &principal, 0)?;
    respond(&state, &camera, request)
}

/// What a stream request carries besides its camera: method, peer, where its viewer goes,
/// headers and query.
pub(super) struct StreamRequest {
    pub(super) method: Method,
    pub(super) version: Version,
    pub(super) peer: PeerAddr,
    pub(super) slot: StreamSlot,
    pub(super) headers: HeaderMap,
    pub(super) query: Option<String>,
}

impl<S: Send + Sync> FromRequestParts<S> for StreamRequest {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<StreamRequest, Infallible> {
        Ok(StreamRequest {
            method: parts.method.clone(),
            version: parts.version,
            peer: PeerAddr::from_request_parts(parts, state).await?,
            slot: StreamSlot::from_request_parts(parts, state).await?,
            headers: parts.headers.clone(),
            query: parts.uri.query().map(str::to_owned),
        })
    }
}

/// Whether a stream request gets the advance-headers wire: `?advance_headers=1|0` when given,
/// else whether the request comes from a browser's `<img>`.
///
/// Browsers ask for images in `Accept` (Chromium `image/avif,image/webp,image/apng,...,*/*;q=0.8`,
/// Firefox and Safari alike); ffmpeg, OpenCV, VLC, GStreamer, go2rtc, curl and Python clients
/// send `*/*` or no `Accept` at all. A lone media range (`Accept: image/jpeg`) is not taken for a
/// browser: a client that names exactly one type is a program, and programs may find frames by
/// `Content-Length`, which this mode cannot send.
pub(super) fn wants_advance_headers(
    query: &Query,
    request_headers: &HeaderMap,
) -> Result<bool, HttpError> {
    if let Some(raw) = query.get("advance_headers") {
        return match raw.trim() {
            "1" | "true" | "yes" => Ok(true),
            "0" | "false" | "no" => Ok(false),
            _ => Err(HttpError::BadRequest(format!(
                "bad advance_headers {raw:?}: use advance_headers=1 (headers of the next part sent \
                 right after each frame, for browsers) or advance_headers=0 (Content-Length on every part)"
            ))),
        };
    }
    let accept = request_headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok());
    Ok(accept.into_iter().any(accept_is_a_browser_image_request))
}

fn accept_is_a_browser_image_request(accept: &str) -> bool {
    let ranges = accept
        .split(',')
        .map(|r| r.split(';').next().unwrap_or("").trim())
        .filter(|r| !r.is_empty());
    let mut count = 0usize;
    let mut image = false;
    for r in ranges {
        count += 1;
        image |= r.len() > 6 && r.as_bytes()[..6].eq_ignore_ascii_case(b"image/");
    }
    image && count >= 2
}

/// Answers a stream request for `camera`.
pub(super) fn respond(
    state: &AppState,
    camera: &Arc<Camera>,
    request: StreamRequest,
) -> Result<Response, HttpError> {
    let StreamRequest {
        method,
        version,
        peer,
        slot,
        headers: request_headers,
        query,
    } = request;
    let query = Query::parse(query.as_deref());
    let min_interval = query.min_interval()?;
    let advance = wants_advance_headers(&query, &request_headers)?;
    let requested = query.stream_size()?;
    let headers = stream_headers();
    if method == Method::HEAD {
        // Headers only: a HEAD must not count as a viewer or start capture. The body has no
        // known length, so no misleading `Content-Length: 0` is sent.
        let endless = futures_util::stream::empty::<Result<Bytes, Infallible>>();
        return Ok(close_delimited(
            version,
            (StatusCode::OK, headers, Body::from_stream(endless)).into_response(),
        ));
    }
    let slots = state.viewer_slots(camera)?;
    // An asked size wins over the camera's stream_size; neither: the full size.
    let bounds = match (requested, camera.config().stream_size) {
        (Some((w, h)), _) => Some((w.unwrap_or(u32::MAX), h.unwrap_or(u32::MAX))),
        (None, Some(size)) => Some(size),
        (None, None) => None,
    };
    let feed = match bounds {
        Some(b) => Feed::Sized(
            camera
                .subscribe_sized(b)
                .map_err(|e| HttpError::BadRequest(e.to_string()))?,
        ),
        None => Feed::Full(camera.subscribe()),
    };
    let viewer = Viewer {
        handle: camera.register_viewer_as(
            peer.0,
            crate::hub::ViewerWire {
                advance_headers: advance,
                size: requested,
            },
        ),
        camera: Arc::clone(camera),
        feed,
        _slots: slots,
        min_interval,
        keepalive: state.0.config.keepalive,
        closing: {
            state.0.closing.watch();
            state.0.closing.clone()
        },
        // Far enough away to never fire before the first frame.
        timer: Box::pin(sleep_until(Instant::now() + NO_FRAME_YET)),
        last: None,
        started: false,
        advance,
    };
    tracing::debug!(camera = %camera.name(), peer = ?peer.0, advance_headers = advance, ?version, "viewer connected");
    let Some(cell) = slot.0 else {
        let body = Body::from_stream(viewer.into_stream());
        return Ok(close_delimited(
            version,
            (StatusCode::OK, headers, body).into_response(),
        ));
    };
    // Poison recovered: the slot is only ever swapped whole.
    *cell.lock().unwrap_or_else(PoisonError::into_inner) = Some(ClaimedStream(viewer));
    // hyper writes the head, and its body ends at once; the server then writes the parts. The
    // body has no known length, so hyper sends no misleading `Content-Length: 0`.
    let handed_off = futures_util::stream::empty::<Result<Bytes, Infallible>>();
    Ok(close_delimited(
        version,
        (StatusCode::OK, headers, Body::from_stream(handed_off)).into_response(),
    ))
}

/// Where a connection's stream viewer goes. On the server's HTTP/1 connections
/// ([`StreamSlot::default`]) a stream handler leaves its viewer there, and once hyper has
/// written the response head the server takes it and writes the parts to the socket itself.
/// Over HTTP/2 ([`StreamSlot::as_body`]), or when a request carries no slot, the viewer is the
/// response body.
#[derive(Clone)]
pub struct StreamSlot(Option<Arc<Mutex<Option<ClaimedStream>>>>);

impl Default for StreamSlot {
    fn default() -> StreamSlot {
        StreamSlot(Some(Arc::default()))
    }
}

impl StreamSlot {
    /// A slot that makes stream responses carry their viewer as the body (HTTP/2).
    pub fn as_body() -> StreamSlot {
        StreamSlot(None)
    }

    /// The viewer a stream handler left, if any; `None` once taken.
    pub fn take(&self) -> Option<ClaimedStream> {
        // Poison recovered: the slot is only ever swapped whole.
        self.0
            .as_ref()?
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
    }
}

impl<S: Send + Sync> FromRequestParts<S> for StreamSlot {
    type Rejection = Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<StreamSlot, Infallible> {
        Ok(parts
            .extensions
            .get::<StreamSlot>()
            .cloned()
            .unwrap_or_else(StreamSlot::as_body))
    }
}

/// Most bytes a stream viewer may send after its request before its connection is closed: a
/// stray CRLF or two is tolerated, a client that keeps talking is not read forever.
pub const MAX_IGNORED_INPUT: usize = 4096;

/// How long after its end of input a viewer's reset is awaited (see `send_to`): a loopback or
/// LAN peer answers within a millisecond; a slower one is noticed at its next writes instead.
const HANG_UP_PROBE: Duration = Duration::from_millis(300);

/// A viewer whose parts the server writes to its socket directly.
pub struct ClaimedStream(Viewer);

impl ClaimedStream {
    /// Writes parts to `io` until the viewer leaves (closes its side, or a write fails or times
    /// out), sends too much after its request (`already_sent` bytes of it were read with the
    /// request), or the server shuts down; then ends the stream cleanly.
    pub async fn send_to<W: AsyncRead + AsyncWrite + Unpin>(
        mut self,
        io: &mut W,
        already_sent: usize,
    ) -> io::Result<()> {
        // Reads only to notice a viewer that hung up while no frame is due (a 1 fps camera, a
        // source that is down): a write would notice only two writes later, and until then
        // the viewer counts as demand. A client has nothing to say after its request: a few
        // stray bytes are ignored, more close the connection. An end of input is a half-close
        // (`nc -N`, a client done sending), not a hang-up: the stream goes on, and writes
        // notice a viewer that is gone.
        let mut scratch = [0u8; 256];
        let mut ignored = already_sent;
        if ignored > MAX_IGNORED_INPUT {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the client sent more after its request than a viewer may",
            ));
        }
        let mut reading = true;
        loop {
            let next = tokio::select! {
                // Frames first: when a frame woke the task the read is not polled at all.
                biased;
                next = self.0.next_chunk() => next,
                read = io.read(&mut scratch), if reading => match read {
                    Ok(0) => {
                        reading = false;
                        // A full close and a half-close look alike here. Send the latest frame
                        // again (a keep-alive, as the viewer gets anyway when a source is
                        // quiet): a peer that is gone answers it with a reset, and the write
                        // after that fails; a peer that only stopped sending takes both, and
                        // the stream goes on. (A read reports the end of input, not the reset.)
                        for probe in 0..2 {
                            if probe == 1 {
                                tokio::time::sleep(HANG_UP_PROBE).await;
                            }
                            let Some((part, trailer)) = self.0.resend_latest() else {
                                break;
                            };
                            write_chunk(io, &part, trailer).await?;
                            io.flush().await?;
                        }
                        continue;
                    }
                    Ok(n) => {
                        ignored += n;
                        if ignored > MAX_IGNORED_INPUT {
                            tracing::debug!(bytes = ignored, "stream viewer sent data after its request; closing");
                            return Err(io::Error::new(
                                io::ErrorKind::InvalidData,
                                "the client kept sending after its request",
                            ));
                        }
                        continue;
                    }
                    Err(e) => return Err(e),
                },
            };
            let Some((part, trailer)) = next else { break };
            write_chunk(io, &part, trailer).await?;
        }
        io.shutdown().await
    }
}

/// Writes one chunk: a part, or (the browser wire) a JPEG and its static trailer in one `writev`.
async fn write_chunk<W: AsyncWrite + Unpin>(
    io: &mut W,
    part: &[u8],
    trailer: Option<&'static [u8]>,
) -> io::Result<()> {
    match trailer {
        None => io.write_all(part).await,
        Some(t) => write_all_vectored(io, [part, t]).await,
    }
}

/// Over HTTP/1, makes hyper send `response`'s body as is, ended by closing the connection: an
/// HTTP/1.0 response has no chunked framing, and `Connection: close` tells HTTP/1.1 clients too
/// that the body runs to the close. An endless stream never shares its connection with a next
/// request anyway. HTTP/2 frames every stream itself and has no connection headers.
fn close_delimited(version: Version, mut response: Response) -> Response {
    if version >= Version::HTTP_2 {
        return response;
    }
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
    super::headers::no_cache(&mut h);
    h.insert(
        header::EXPIRES,
        HeaderValue::from_static("Thu, 01 Jan 1970 00:00:00 GMT"),
    );
    // nginx would otherwise buffer the endless body.
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    h
}

/// Where a viewer's frames come from: the camera's own, or one of its shared sizes. Either way
/// it holds demand on the camera until dropped.
enum Feed {
    Full(Subscription),
    Sized(SizedSubscription),
}

impl Feed {
    fn frames(&mut self) -> &mut tokio::sync::watch::Receiver<Option<Frame>> {
        match self {
            Feed::Full(s) => s.frames(),
            Feed::Sized(s) => s.frames(),
        }
    }
}

/// One viewer's position in the camera's frame sequence.
struct Viewer {
    camera: Arc<Camera>,
    feed: Feed,
    handle: ViewerHandle,
    /// Released when the body is dropped, i.e. when the viewer is gone.
    _slots: ViewerSlots,
    min_interval: Option<Duration>,
    keepalive: Duration,
    /// Says whether the server is shutting down, for a load per frame; the frame channel's
    /// wake-up at shutdown makes the viewer look (see [`Closing`]).
    closing: Closing,
    /// The rate cap's and the keep-alive's deadline; only ever moved later while a frame is
    /// awaited, which tokio does without touching its timer wheel.
    timer: Pin<Box<Sleep>>,
    /// Sequence number and send time of the last frame sent.
    last: Option<(u64, Instant)>,
    started: bool,
    /// Advance-headers wire (browsers): frames go out as JPEG + [`ADVANCE_TRAILER`].
    advance: bool,
}

/// What goes out next: a part (or the preamble), and for browsers the static trailer after it.
type Chunk = (Bytes, Option<&'static [u8]>);

impl Viewer {
    /// What to write next; `None` ends the stream (server shutting down).
    async fn next_chunk(&mut self) -> Option<Chunk> {
        if !self.started {
            self.started = true;
            let preamble = if self.advance {
                ADVANCE_PREAMBLE
            } else {
                STREAM_PREAMBLE
            };
            return Some((Bytes::from_static(preamble), None));
        }
        if let (Some(min), Some((_, at))) = (self.min_interval, self.last) {
            self.timer.as_mut().reset(at + min);
            loop {
                // Frames arriving meanwhile only wake it to look for a shutdown.
                tokio::select! {
                    biased;
                    changed = self.feed.frames().changed() => {
                        if changed.is_err() || self.closing.is_closed() {
                            return None;
                        }
                    }
                    () = self.timer.as_mut() => break,
                }
            }
        }
        loop {
            if self.closing.is_closed() {
                return None;
            }
            let newest = self.feed.frames().borrow_and_update().clone();
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
                changed = self.feed.frames().changed() => {
                    if changed.is_err() {
                        return None;
                    }
                }
                () = self.timer.as_mut() => {
                    // No new frame for a while: send the latest again.
                    let latest = self.feed.frames().borrow_and_update().clone();
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

    /// The viewer as a response body: each frame as its bytes up to the last few, then those
    /// (both slices of the frame's shared buffer), so that hyper's HTTP/2, which holds the chunk
    /// after the one it queued until the stream has room, holds only the small tail and the
    /// next frame is picked once the previous one has gone (see the module's comment).
    fn into_stream(self) -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> + Send {
        /// Bytes held back from each chunk: any will do, as long as there is one.
        const TAIL: usize = 2;
        futures_util::stream::unfold((self, None), |(mut viewer, tail)| async move {
            if let Some(tail) = tail {
                return Some((Ok(tail), (viewer, None)));
            }
            let (mut chunk, trailer) = viewer.next_chunk().await?;
            let tail = match trailer {
                Some(t) => Bytes::from_static(t),
                None if chunk.len() > TAIL => chunk.split_off(chunk.len() - TAIL),
                None => return Some((Ok(chunk), (viewer, None))),
            };
            Some((Ok(chunk), (viewer, Some(tail))))
        })
    }

    /// The latest frame again, if one was sent before (a keep-alive out of turn).
    fn resend_latest(&mut self) -> Option<Chunk> {
        self.last?;
        let latest = self.feed.frames().borrow_and_update().clone()?;
        Some(self.send(latest))
    }

    fn send(&mut self, frame: Frame) -> Chunk {
        let stats = self.camera.stats();
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
        let (chunk, sent) = if self.advance {
            // The JPEG is a slice of the frame's shared buffer, the trailer a static: still no
            // per-viewer copy.
            let jpeg = frame.jpeg();
            let sent = jpeg.len() + ADVANCE_TRAILER.len();
            ((jpeg, Some(ADVANCE_TRAILER)), sent)
        } else {
            let part = frame.part();
            let sent = part.len();
            ((part, None), sent)
        };
        let now = Instant::now();
        stats.frames_sent.fetch_add(1, Ordering::Relaxed);
        let me = self.handle.info();
        me.frames.fetch_add(1, Ordering::Relaxed);
        me.rate.tick_at(now.into_std());
        stats.bytes_sent.fetch_add(sent as u64, Ordering::Relaxed);
        self.last = Some((frame.seq(), now));
        chunk
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        tracing::debug!(camera = %self.camera.name(), "viewer disconnected");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn advance(accept: Option<&str>, query: Option<&str>) -> Result<bool, HttpError> {
        let mut h = HeaderMap::new();
        if let Some(a) = accept {
            h.insert(
                header::ACCEPT,
                HeaderValue::from_str(a).expect("header value"),
            );
        }
        wants_advance_headers(&Query::parse(query), &h)
    }

    #[test]
    fn browsers_get_advance_headers_and_programs_do_not() {
        let browsers = [
            // Chromium, Firefox (old and new), Safari <img> requests.
            "image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8",
            "image/webp,*/*",
            "image/avif,image/webp,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5",
            "image/webp,image/avif,image/jxl,image/heic,image/heic-sequence,video/*;q=0.8,image/png,image/svg+xml,image/*;q=0.8,*/*;q=0.5",
        ];
        for a in browsers {
            assert_eq!(advance(Some(a), None).ok(), Some(true), "{a}");
        }
        // ffmpeg/OpenCV/VLC/curl send */*; go2rtc and Python's requests nothing or */*; a
        // program naming one type is a program.
        for a in [
            Some("*/*"),
            None,
            Some(""),
            Some("image/jpeg"),
            Some("multipart/x-mixed-replace"),
            Some("text/html,*/*"),
        ] {
            assert_eq!(advance(a, None).ok(), Some(false), "{a:?}");
        }
    }

    #[test]
    fn the_query_forces_either_mode() {
        let chrome = Some("image/avif,image/webp,image/apng,image/svg+xml,image/*,*/*;q=0.8");
        assert_eq!(advance(chrome, Some("advance_headers=0")).ok(), Some(false));
        assert_eq!(advance(None, Some("advance_headers=1")).ok(), Some(true));
        assert_eq!(
            advance(Some("*/*"), Some("advance_headers=true")).ok(),
            Some(true)
        );
        assert!(advance(None, Some("advance_headers=maybe")).is_err());
    }
}
