//! Recorded video over HTTP: the catalogue as JSON, replays (the live wire, paced by the
//! recorded times), single frames, downloadable exports with `Range`, and record start/stop.
//!
//! Everything reads from disk in bounded pieces: a replay holds one batch of frame references
//! and one JPEG; an export holds its frame list and one chunk. Only logged-in users allowed
//! the camera may use these URLs (URL tokens open live streams and snapshots only).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use super::query::Query;
use super::sendfile::{ClaimedExport, Sendfile};
use super::state::ViewerSlots;
use super::{AppState, HttpError, MAX_EXPORTS, Pace, PaceGuard, PeerAddr, access};
use crate::auth::Principal;
use crate::mjpeg::write::{STREAM_PREAMBLE, part, timestamp_value};
use crate::record::export::{Export, Format, Reader};
use crate::record::store::{FrameRef, SegFile};
use crate::record::time::{self, Micros};
use crate::record::{Recorder, read_frame};

/// Most frames in one export (24 bytes of memory each while it runs: 1M ≈ 9 h at 30 fps).
pub const MAX_EXPORT_FRAMES: usize = 1_000_000;
/// Most spans listed by one `/recordings` answer.
pub const MAX_SPANS: usize = 10_000;
/// `frame.jpg?at=` answers the nearest frame only within this distance.
pub const NEAREST_LIMIT: Duration = Duration::from_secs(60);
/// Slowest and fastest replay.
pub const SPEED_RANGE: (f64, f64) = (0.1, 64.0);
/// Longest timelapse step (`every=`), and shortest.
pub const EVERY_RANGE: (f64, f64) = (0.01, 86_400.0);
/// Frame references a replay fetches from the catalogue at a time.
const REPLAY_BATCH: usize = 64;

fn recorder_of(state: &AppState, p: &Principal, name: &str) -> Result<Arc<Recorder>, HttpError> {
    access::require_user(p)?;
    let camera = access::camera_named(state, p, name)?;
    state
        .recordings()
        .and_then(|r| r.get(camera.name()))
        .cloned()
        .ok_or_else(|| {
            HttpError::NotFound(format!(
                "camera {name:?} is not set up for recording: add a [cameras.record] section to its config (or run with --record DIR)"
            ))
        })
}

fn time_param(q: &Query, key: &str) -> Result<Option<Micros>, HttpError> {
    q.get(key)
        .map(|v| time::parse(v).map_err(|e| HttpError::BadRequest(format!("bad {key}: {e}"))))
        .transpose()
}

fn required_time(q: &Query, key: &str, example: &str) -> Result<Micros, HttpError> {
    time_param(q, key)?.ok_or_else(|| {
        HttpError::BadRequest(format!(
            "give {key}=TIME (RFC 3339 or Unix seconds), e.g. {example}"
        ))
    })
}

/// `from`/`to`, checked: `to` defaults to far in the future (the end of the recording).
fn time_range(q: &Query, need_to: bool) -> Result<(Micros, Micros), HttpError> {
    let example = "?from=2026-12-01T08:00:00Z&to=2026-12-01T09:00:00Z";
    let from = required_time(q, "from", example)?;
    let to = if need_to {
        required_time(q, "to", example)?
    } else {
        time_param(q, "to")?.unwrap_or(Micros::MAX / 4)
    };
    if from > to {
        return Err(HttpError::BadRequest(format!(
            "from ({}) is after to ({}): swap them",
            time::rfc3339(from),
            time::rfc3339(to)
        )));
    }
    Ok((from, to))
}

fn bounded_f64(
    q: &Query,
    key: &str,
    range: (f64, f64),
    what: &str,
) -> Result<Option<f64>, HttpError> {
    let Some(raw) = q.get(key) else {
        return Ok(None);
    };
    match raw.trim().parse::<f64>() {
        Ok(v) if (range.0..=range.1).contains(&v) => Ok(Some(v)),
        _ => Err(HttpError::BadRequest(format!(
            "bad {key} {raw:?}: {what} from {} to {}",
            range.0, range.1
        ))),
    }
}

/// `GET /cameras/NAME/recordings?from=T&to=T`: the recorded spans (both bounds optional).
pub(super) async fn list(
    State(state): State<AppState>,
    principal: Principal,
    peer: PeerAddr,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, HttpError> {
    let rec = recorder_of(&state, &principal, &name)?;
    let q = Query::parse(raw.as_deref());
    let from = time_param(&q, "from")?.unwrap_or(0);
    let to = time_param(&q, "to")?.unwrap_or(Micros::MAX / 4);
    if from > to {
        return Err(HttpError::BadRequest(format!(
            "from ({}) is after to ({}): swap them",
            time::rfc3339(from),
            time::rfc3339(to)
        )));
    }
    let (spans, truncated) = rec.spans(from, to, MAX_SPANS).await?;
    let body = serde_json::json!({
        "camera": name,
        "spans": spans,
        "truncated": truncated,
        "recording": access::recording_status(&rec, &principal, &peer),
    });
    let mut resp = Json(body).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// The recorder of `name` for a state-changing request: same origin, and a user who may control.
fn controlled(
    state: &AppState,
    p: &Principal,
    name: &str,
    headers: &HeaderMap,
) -> Result<Arc<Recorder>, HttpError> {
    access::require_same_origin(headers)?;
    let rec = recorder_of(state, p, name)?;
    access::require_control(p, rec.camera())?;
    Ok(rec)
}

/// `POST /cameras/NAME/record/start`.
pub(super) async fn start(
    State(state): State<AppState>,
    principal: Principal,
    peer: PeerAddr,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let rec = controlled(&state, &principal, &name, &headers)?;
    rec.start();
    tracing::info!(camera = %name, "recording started on request");
    Ok(Json(access::recording_status(&rec, &principal, &peer)).into_response())
}

/// `POST /cameras/NAME/record/stop`.
pub(super) async fn stop(
    State(state): State<AppState>,
    principal: Principal,
    peer: PeerAddr,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let rec = controlled(&state, &principal, &name, &headers)?;
    rec.stop();
    tracing::info!(camera = %name, "recording stopped on request");
    Ok(Json(access::recording_status(&rec, &principal, &peer)).into_response())
}

fn system_time(t: Micros) -> SystemTime {
    UNIX_EPOCH + Duration::from_micros(t.max(0) as u64)
}

/// `GET /cameras/NAME/frame.jpg?at=T`: the recorded frame nearest T.
pub(super) async fn frame(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, HttpError> {
    let rec = recorder_of(&state, &principal, &name)?;
    let q = Query::parse(raw.as_deref());
    let at = required_time(&q, "at", "?at=2026-12-01T08:04:20Z")?;
    let limit = NEAREST_LIMIT.as_micros() as Micros;
    let Some(found) = rec.nearest(at, limit).await? else {
        return Err(HttpError::NotFound(format!(
            "camera {name:?} has no recorded frame within {}s of {}; see /cameras/{name}/recordings",
            NEAREST_LIMIT.as_secs(),
            time::rfc3339(at)
        )));
    };
    let mut resp = (StatusCode::OK, Body::from(found.jpeg)).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("image/jpeg"));
    // A recorded frame never changes; it only disappears with retention.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=3600"),
    );
    if let Ok(v) = HeaderValue::from_str(&timestamp_value(system_time(found.t))) {
        h.insert("x-timestamp", v);
    }
    Ok(resp)
}

/// `GET /cameras/NAME/export.mkv`.
// Each argument is an axum extractor: the handler takes what an export request carries.
#[allow(clippy::too_many_arguments)]
pub(super) async fn export_mkv(
    state: State<AppState>,
    principal: Principal,
    name: Path<String>,
    raw: RawQuery,
    headers: HeaderMap,
    method: Method,
    pace: Pace,
    sendfile: Sendfile,
) -> Result<Response, HttpError> {
    let how = (method, pace, sendfile);
    export(state, principal, name, raw, headers, how, Format::Mkv).await
}

/// `GET /cameras/NAME/export.mjpeg`.
// Each argument is an axum extractor: the handler takes what an export request carries.
#[allow(clippy::too_many_arguments)]
pub(super) async fn export_mjpeg(
    state: State<AppState>,
    principal: Principal,
    name: Path<String>,
    raw: RawQuery,
    headers: HeaderMap,
    method: Method,
    pace: Pace,
    sendfile: Sendfile,
) -> Result<Response, HttpError> {
    let how = (method, pace, sendfile);
    export(state, principal, name, raw, headers, how, Format::Mjpeg).await
}

/// A requested byte range, or why it cannot be served.
#[derive(Debug, PartialEq, Eq)]
enum Wanted {
    All,
    Part(u64, u64),
    Unsatisfiable,
}

/// Reads a `Range` header against a body of `total` bytes. Multiple ranges and malformed
/// headers are ignored (the whole body is sent), as RFC 9110 allows.
fn wanted(value: Option<&str>, total: u64) -> Wanted {
    let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else {
        return Wanted::All;
    };
    if spec.contains(',') {
        return Wanted::All;
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Wanted::All;
    };
    let (a, b) = (a.trim(), b.trim());
    let parse = |s: &str| s.parse::<u64>().ok();
    let (start, end) = match (a.is_empty(), b.is_empty()) {
        (true, false) => match parse(b) {
            Some(0) => return Wanted::Unsatisfiable,
            Some(n) => (total.saturating_sub(n), total.saturating_sub(1)),
            None => return Wanted::All,
        },
        (false, _) => match (
            parse(a),
            if b.is_empty() {
                Some(u64::MAX)
            } else {
                parse(b)
            },
        ) {
            (Some(s), Some(e)) if s <= e => (s, e.min(total.saturating_sub(1))),
            _ => return Wanted::All,
        },
        (true, true) => return Wanted::All,
    };
    if start >= total {
        return Wanted::Unsatisfiable;
    }
    Wanted::Part(start, end)
}

fn download_name(camera: &str, e: &Export, every: Option<f64>, format: Format) -> String {
    let (a, b) = e.time_range();
    let lapse = every.map_or_else(String::new, |s| format!("_timelapse-{s}s"));
    format!(
        "{camera}_{}-{}{lapse}.{}",
        time::stamp(a),
        time::stamp(b),
        format.extension()
    )
}

async fn export(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
    (method, pace, Sendfile(handoff)): (Method, Pace, Sendfile),
    format: Format,
) -> Result<Response, HttpError> {
    let rec = recorder_of(&state, &principal, &name)?;
    let q = Query::parse(raw.as_deref());
    let (from, to) = time_range(&q, true)?;
    let every = bounded_f64(
        &q,
        "every",
        EVERY_RANGE,
        "seconds of recording per timelapse frame",
    )?;
    let permit = Arc::clone(&state.0.export_slots)
        .try_acquire_owned()
        .map_err(|_| {
            HttpError::Unavailable(format!(
                "{MAX_EXPORTS} exports are running, the limit; try again when one has finished"
            ))
        })?;
    let every_us = every.map(|s| (s * 1e6) as Micros);
    let sel = rec.select(from, to, every_us, MAX_EXPORT_FRAMES).await?;
    if sel.frames.is_empty() {
        return Err(HttpError::NotFound(format!(
            "camera {name:?} has no recording between {} and {}; see /cameras/{name}/recordings",
            time::rfc3339(from),
            time::rfc3339(to)
        )));
    }
    let laid_out =
        tokio::task::spawn_blocking(move || Export::new(format, sel, every.is_some())).await;
    let export =
        Arc::new(laid_out.map_err(|e| HttpError::Unavailable(format!("export task failed: {e}")))?);
    let total = export.len();
    let if_range_ok = headers
        .get(header::IF_RANGE)
        .is_none_or(|v| v.to_str().is_ok_and(|v| v.trim() == export.etag()));
    let range = if if_range_ok {
        wanted(
            headers.get(header::RANGE).and_then(|v| v.to_str().ok()),
            total,
        )
    } else {
        Wanted::All
    };
    let mut h = HeaderMap::new();
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(export.etag()) {
        h.insert(header::ETAG, v);
    }
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-cache"),
    );
    let (status, start, end) = match range {
        Wanted::All => (StatusCode::OK, 0, total),
        Wanted::Part(a, b) => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes {a}-{b}/{total}")) {
                h.insert(header::CONTENT_RANGE, v);
            }
            (StatusCode::PARTIAL_CONTENT, a, b + 1)
        }
        Wanted::Unsatisfiable => {
            if let Ok(v) = HeaderValue::from_str(&format!("bytes */{total}")) {
                h.insert(header::CONTENT_RANGE, v);
            }
            let msg = format!("the range asked for is past the end of this {total}-byte export\n");
            return Ok((StatusCode::RANGE_NOT_SATISFIABLE, h, msg).into_response());
        }
    };
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    let file_name = download_name(&name, &export, every, format);
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{file_name}\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    if let Ok(v) = HeaderValue::from_str(&export.frames().to_string()) {
        h.insert("x-frames", v);
    }
    if let Ok(v) = HeaderValue::from_str(&format!("{:.3}", export.duration().as_secs_f64())) {
        h.insert("x-duration", v);
    }
    tracing::debug!(camera = %name, bytes = end - start, frames = export.frames(), "export");
    // A client too slow to take the export would hold its slot for as long as it liked.
    let rule = pace.require(
        super::EXPORT_MIN_BYTES,
        state.0.config.export_rate_window,
        super::EXPORT_MAX_DURATION,
    );
    // Content-Length is set from the body's exact size hint by hyper only for full bodies
    // it can measure; say it explicitly.
    if let Ok(v) = HeaderValue::from_str(&(end - start).to_string()) {
        h.insert(header::CONTENT_LENGTH, v);
    }
    // A plain TCP connection takes the JPEG bytes with sendfile (see `http::sendfile`); a HEAD
    // has no body to send, and an empty range nothing to hand over.
    if let Some(slot) = handoff.filter(|_| method == Method::GET && end > start) {
        let claimed = ClaimedExport {
            export,
            pos: start,
            end,
            shutdown: state.0.shutdown.clone(),
            pace,
            _rule: rule,
            _permit: permit,
        };
        // hyper gives the connection back after this response, and does not get it again.
        h.insert(header::CONNECTION, HeaderValue::from_static("close"));
        return Ok((status, h, slot.hand_off(claimed)).into_response());
    }
    let body = ExportBody {
        export,
        pos: start,
        end,
        files: Some(Reader::default()),
        shutdown: state.0.shutdown.clone(),
        _pace: rule,
        _permit: permit,
    };
    let chunks = futures_util::stream::unfold(body, |mut b| async move {
        let chunk = b.next_chunk().await?;
        Some((chunk, b))
    });
    Ok((status, h, Body::from_stream(chunks)).into_response())
}

struct ExportBody {
    export: Arc<Export>,
    pos: u64,
    end: u64,
    files: Option<Reader>,
    shutdown: CancellationToken,
    _pace: PaceGuard,
    _permit: OwnedSemaphorePermit,
}

impl ExportBody {
    async fn next_chunk(&mut self) -> Option<Result<Bytes, std::io::Error>> {
        if self.pos >= self.end {
            return None;
        }
        if self.shutdown.is_cancelled() {
            // Ending short of Content-Length tells the client the download is incomplete.
            return Some(Err(std::io::Error::other("server shutting down")));
        }
        let export = Arc::clone(&self.export);
        let (pos, want) = (self.pos, self.end - self.pos);
        let mut files = self.files.take().unwrap_or_default();
        let read = tokio::task::spawn_blocking(move || {
            let r = export.read(pos, want, &mut files);
            (r, files)
        })
        .await;
        match read {
            Ok((Ok(chunk), files)) if !chunk.is_empty() => {
                self.files = Some(files);
                self.pos += chunk.len() as u64;
                Some(Ok(Bytes::from(chunk)))
            }
            Ok((Ok(_), _)) => Some(Err(std::io::Error::other("export ended early"))),
            Ok((Err(e), _)) => {
                tracing::warn!(error = %e, "export read failed; download cut short");
                self.pos = self.end;
                Some(Err(e))
            }
            Err(e) => Some(Err(std::io::Error::other(e.to_string()))),
        }
    }
}

/// `GET /cameras/NAME/replay?from=T[&to=T][&speed=S]`: the recording as a live-style stream.
pub(super) async fn replay(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
    RawQuery(raw): RawQuery,
) -> Result<Response, HttpError> {
    let rec = recorder_of(&state, &principal, &name)?;
    let q = Query::parse(raw.as_deref());
    let (from, to) = time_range(&q, false)?;
    let speed = bounded_f64(&q, "speed", SPEED_RANGE, "replay speed")?.unwrap_or(1.0);
    let first = rec.batch(from, to, REPLAY_BATCH).await?;
    if first.frames.is_empty() {
        return Err(HttpError::NotFound(format!(
            "camera {name:?} has no recording from {}{}; see /cameras/{name}/recordings",
            time::rfc3339(from),
            if to < Micros::MAX / 4 {
                format!(" to {}", time::rfc3339(to))
            } else {
                String::new()
            }
        )));
    }
    // A replay is a viewer of its camera: it counts against the server's viewer limit and the
    // camera's (`max_viewers_per_camera`), or replays alone could take every slot of a camera
    // whose live viewers are limited.
    let slots = state.viewer_slots(rec.camera())?;
    let mut r = Replay {
        gap: rec.span_gap(),
        rec,
        to,
        speed,
        queue: VecDeque::new(),
        next_from: from,
        anchor: None,
        last_t: None,
        shutdown: state.0.shutdown.clone(),
        started: false,
        _slots: slots,
    };
    r.enqueue(first);
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(crate::mjpeg::STREAM_CONTENT_TYPE),
    );
    super::headers::no_cache(&mut h);
    h.insert("x-accel-buffering", HeaderValue::from_static("no"));
    let chunks = futures_util::stream::unfold(r, |mut r| async move {
        let chunk = r.next_chunk().await?;
        Some((Ok::<Bytes, Infallible>(chunk), r))
    });
    Ok((StatusCode::OK, h, Body::from_stream(chunks)).into_response())
}

struct Replay {
    rec: Arc<Recorder>,
    to: Micros,
    speed: f64,
    gap: Micros,
    queue: VecDeque<(FrameRef, Arc<SegFile>)>,
    next_from: Micros,
    /// A recorded time and the moment it is (was) shown; gaps in the recording re-anchor it.
    anchor: Option<(Micros, Instant)>,
    last_t: Option<Micros>,
    shutdown: CancellationToken,
    started: bool,
    _slots: ViewerSlots,
}

impl Replay {
    fn enqueue(&mut self, sel: crate::record::store::Selection) {
        for f in sel.frames {
            if let Some(file) = sel.files.get(f.file as usize) {
                self.next_from = f.t + 1;
                self.queue.push_back((f, Arc::clone(file)));
            }
        }
    }

    async fn refill(&mut self) {
        if self.queue.len() < 2 && self.next_from <= self.to {
            match self.rec.batch(self.next_from, self.to, REPLAY_BATCH).await {
                Ok(sel) => self.enqueue(sel),
                // The replay ends with what it has (the runtime is stopping).
                Err(e) => tracing::debug!(error = %e, "replay batch failed"),
            }
        }
    }

    fn due(&mut self, t: Micros) -> Instant {
        let now = Instant::now();
        let jumped = self.last_t.is_some_and(|l| t - l > self.gap);
        let (t0, at) = match self.anchor {
            Some(a) if !jumped => a,
            _ => {
                // First frame, or the end of a gap: show it now rather than waiting out the gap.
                self.anchor = Some((t, now));
                (t, now)
            }
        };
        at + Duration::from_secs_f64(((t - t0).max(0) as f64 / 1e6) / self.speed)
    }

    async fn next_chunk(&mut self) -> Option<Bytes> {
        if !self.started {
            self.started = true;
            return Some(Bytes::from_static(STREAM_PREAMBLE));
        }
        loop {
            self.refill().await;
            let (f, file) = self.queue.pop_front()?;
            let due = self.due(f.t);
            self.last_t = Some(f.t);
            // A client slower than the replay skips frames instead of falling behind.
            self.refill().await;
            if let Some((next, _)) = self.queue.front() {
                if next.t - f.t <= self.gap && self.due_peek(next.t) <= Instant::now() {
                    continue;
                }
            }
            tokio::select! {
                biased;
                () = self.shutdown.cancelled() => return None,
                () = sleep_until(due) => {}
            }
            let jpeg = match read_frame(file, f.off, f.len).await {
                Ok(j) => j,
                Err(e @ crate::record::RecordError::Damaged { .. }) => {
                    // Skipped: the replay goes on with the next frame.
                    self.rec.count_damage(&e);
                    continue;
                }
                Err(e) => {
                    // Retention deleted it under us, or the disk failed: the replay ends.
                    tracing::debug!(error = %e, "replay ended");
                    return None;
                }
            };
            return Some(part(&jpeg, system_time(f.t)).0);
        }
    }

    fn due_peek(&self, t: Micros) -> Instant {
        match self.anchor {
            Some((t0, at)) => {
                at + Duration::from_secs_f64(((t - t0).max(0) as f64 / 1e6) / self.speed)
            }
            None => Instant::now(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_headers() {
        assert_eq!(wanted(None, 100), Wanted::All);
        assert_eq!(wanted(Some("bytes=0-9"), 100), Wanted::Part(0, 9));
        assert_eq!(wanted(Some("bytes=90-"), 100), Wanted::Part(90, 99));
        assert_eq!(wanted(Some("bytes=90-1000"), 100), Wanted::Part(90, 99));
        assert_eq!(wanted(Some("bytes=-10"), 100), Wanted::Part(90, 99));
        assert_eq!(wanted(Some("bytes=-1000"), 100), Wanted::Part(0, 99));
        assert_eq!(wanted(Some("bytes=99-99"), 100), Wanted::Part(99, 99));
        assert_eq!(wanted(Some("bytes=100-"), 100), Wanted::Unsatisfiable);
        assert_eq!(wanted(Some("bytes=-0"), 100), Wanted::Unsatisfiable);
        for ignored in [
            "bytes=5-2",
            "bytes=0-1,5-6",
            "items=0-1",
            "bytes=a-b",
            "bytes=-",
        ] {
            assert_eq!(wanted(Some(ignored), 100), Wanted::All, "{ignored}");
        }
    }
}
