//! `/api/state` (JSON for people and the web page) and `/metrics` (Prometheus text format).

use std::fmt::Write as _;
use std::sync::atomic::Ordering;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

#[cfg(feature = "auth")]
use std::time::Duration;

use axum::extract::RawQuery;

#[cfg(feature = "auth")]
use super::query::Query;
use super::{AppState, HttpError};
#[cfg(feature = "auth")]
use crate::auth::MAX_TOKEN_TTL;
use crate::hub::Camera;
use crate::principal::Principal;

/// The whole server's state.
#[derive(Debug, Serialize)]
pub(crate) struct ServerState {
    version: &'static str,
    /// The JPEG encoder this build uses (`jpeg-encoder`, or `libjpeg-turbo` with the feature).
    jpeg_encoder: &'static str,
    uptime_seconds: f64,
    viewers: usize,
    max_viewers: usize,
    cameras: Vec<CameraState>,
    /// The mosaics made so far whose every input the user may watch.
    mosaics: Vec<MosaicState>,
    /// Sections added by other subsystems (`bus`).
    #[serde(flatten)]
    sections: serde_json::Map<String, serde_json::Value>,
}

/// One mosaic's state: its inputs, where to watch it, and its composing camera's state (whose
/// `width` and `configured_fps` are the mosaic's).
#[derive(Debug, Serialize)]
pub(crate) struct MosaicState {
    cameras: Vec<String>,
    /// Its stream; `.jpg` after `/mosaic` is one picture.
    url: String,
    #[serde(flatten)]
    state: CameraState,
}

/// One camera's state.
#[derive(Debug, Serialize)]
pub(crate) struct CameraState {
    name: String,
    source: String,
    /// `idle` (no capture), `online` (live frames) or `offline` (no signal).
    state: &'static str,
    online: bool,
    last_error: Option<String>,
    /// `permanent` (someone must act) or `transient` (can pass by itself), with `last_error`.
    last_error_kind: Option<&'static str>,
    /// What to do about `last_error`.
    last_error_hint: Option<&'static str>,
    capture_running: bool,
    configured_fps: f64,
    measured_fps: f64,
    width: Option<u32>,
    height: Option<u32>,
    frame_bytes: Option<usize>,
    transform: String,
    viewers: usize,
    frames_captured: u64,
    frames_sent: u64,
    bytes_sent: u64,
    frames_skipped: u64,
    frames_dropped: u64,
    source_errors: u64,
    source_opens: u64,
    viewer_list: Vec<ViewerState>,
    /// Frames not sent for being identical to the previous one (`drop_same_frames`).
    frames_same: u64,
    /// The per-request sizes computed now, each once per frame for all its viewers.
    sizes: Vec<SizeState>,
    /// Present when the camera is set up for recording.
    #[serde(skip_serializing_if = "Option::is_none")]
    recording: Option<crate::record::RecorderStatus>,
}

/// One size computed for viewers (`?width=`/`?height=`, or the camera's `stream_size`).
#[derive(Debug, Serialize)]
pub(crate) struct SizeState {
    /// Bound on the width; `None` when only a height was asked.
    width: Option<u32>,
    /// Bound on the height; `None` when only a width was asked.
    height: Option<u32>,
    viewers: usize,
    frames_scaled: u64,
}

/// One stream viewer.
#[derive(Debug, Serialize)]
pub(crate) struct ViewerState {
    address: Option<String>,
    connected_since: f64,
    connected_seconds: f64,
    fps: f64,
    frames: u64,
    skipped: u64,
    /// True for the browser wire (headers sent ahead, no `Content-Length`).
    advance_headers: bool,
    /// The `?width=` the viewer asked for, if any.
    requested_width: Option<u32>,
    /// The `?height=` the viewer asked for, if any.
    requested_height: Option<u32>,
}

fn unix(t: SystemTime) -> f64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn round2(x: f64) -> f64 {
    (x * 100.0).round() / 100.0
}

fn camera_state(c: &Camera) -> CameraState {
    let s = c.stats();
    let demand = c.demand();
    let latest = c.latest();
    let now = SystemTime::now();
    let online = demand.running && latest.as_ref().is_some_and(|f| f.online());
    let failure = c.last_failure();
    let viewer_list: Vec<ViewerState> = c
        .viewer_list()
        .iter()
        .map(|v| ViewerState {
            address: v.addr.map(|a| a.to_string()),
            connected_since: unix(v.since),
            connected_seconds: round2(now.duration_since(v.since).map_or(0.0, |d| d.as_secs_f64())),
            fps: round2(v.rate.rate()),
            frames: v.frames.load(Ordering::Relaxed),
            skipped: v.skipped.load(Ordering::Relaxed),
            advance_headers: v.wire.advance_headers,
            requested_width: v.wire.size.and_then(|s| s.0),
            requested_height: v.wire.size.and_then(|s| s.1),
        })
        .collect();
    CameraState {
        name: c.name().to_owned(),
        source: c.config().opener.describe(),
        state: match (demand.running, online) {
            (false, _) => "idle",
            (true, true) => "online",
            (true, false) => "offline",
        },
        online,
        last_error: failure.as_ref().map(|e| e.message().to_owned()),
        last_error_kind: failure.as_ref().map(|e| e.kind().as_str()),
        last_error_hint: failure.as_ref().map(|e| e.kind().hint()),
        capture_running: demand.running,
        configured_fps: c.config().fps,
        measured_fps: round2(s.capture_rate.rate()),
        width: latest.as_ref().map(|f| f.width()),
        height: latest.as_ref().map(|f| f.height()),
        frame_bytes: latest.as_ref().map(|f| f.jpeg_len()),
        transform: c.config().transform.to_string(),
        viewers: viewer_list.len(),
        frames_captured: s.frames_captured.load(Ordering::Relaxed),
        frames_sent: s.frames_sent.load(Ordering::Relaxed),
        bytes_sent: s.bytes_sent.load(Ordering::Relaxed),
        frames_skipped: s.frames_skipped.load(Ordering::Relaxed),
        frames_dropped: s.frames_dropped.load(Ordering::Relaxed),
        source_errors: s.source_errors.load(Ordering::Relaxed),
        source_opens: s.source_opens.load(Ordering::Relaxed),
        viewer_list,
        frames_same: s.frames_same.load(Ordering::Relaxed),
        sizes: c
            .sizes()
            .into_iter()
            .map(|z| SizeState {
                width: (z.bounds.0 != u32::MAX).then_some(z.bounds.0),
                height: (z.bounds.1 != u32::MAX).then_some(z.bounds.1),
                viewers: z.viewers,
                frames_scaled: z.frames_scaled,
            })
            .collect(),
        recording: None,
    }
}

/// `GET /api/state`.
pub(super) async fn state(
    State(state): State<AppState>,
    principal: Principal,
    peer: super::PeerAddr,
) -> Result<Response, HttpError> {
    if !state.config().public_state {
        super::access::require_user(&principal)?;
    }
    let body = ServerState {
        version: env!("CARGO_PKG_VERSION"),
        jpeg_encoder: crate::codec::ENCODER,
        uptime_seconds: round2(state.started().elapsed().as_secs_f64()),
        viewers: state.viewers(),
        max_viewers: state.0.config.max_viewers,
        cameras: state
            .hub()
            .cameras()
            .iter()
            .filter(|c| state.config().public_state || principal.may_watch(c.name()))
            .map(|c| {
                let mut cs = camera_state(c);
                cs.recording = state
                    .recordings()
                    .and_then(|r| r.get(c.name()))
                    .map(|r| super::access::recording_status(r, &principal, &peer));
                cs
            })
            .collect(),
        mosaics: state
            .mosaics()
            .list()
            .into_iter()
            .filter(|m| {
                state.config().public_state || m.cameras.iter().all(|c| principal.may_watch(c))
            })
            .map(|m| MosaicState {
                url: format!(
                    "/mosaic?{}",
                    form_urlencoded::Serializer::new(String::new())
                        .append_pair("cameras", &m.cameras.join(","))
                        .append_pair("width", &m.width.to_string())
                        .append_pair("fps", &m.fps.to_string())
                        .finish()
                ),
                state: camera_state(&m.camera),
                cameras: m.cameras,
            })
            .collect(),
        sections: state.state_sections(),
    };
    let mut resp = Json(body).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// Longest lifetime `/api/token` gives when not asked otherwise.
#[cfg(feature = "auth")]
const DEFAULT_TOKEN_TTL: Duration = Duration::from_secs(3600);

/// `GET /api/token?camera=NAME&ttl=SECONDS`: a signed token for URLs that cannot carry a
/// password (`<img src>`, VLC, Home Assistant): `/cameras/NAME/stream?token=…`.
pub(super) async fn token(
    State(state): State<AppState>,
    principal: Principal,
    RawQuery(raw): RawQuery,
) -> Result<Response, HttpError> {
    super::access::require_user(&principal)?;
    #[cfg(not(feature = "auth"))]
    let _ = (state, raw);
    #[cfg(not(feature = "auth"))]
    return Err(HttpError::NotFound(format!(
        "no URL tokens: {}",
        crate::auth::NOT_BUILT
    )));
    #[cfg(feature = "auth")]
    issue_token(&state, &principal, raw.as_deref())
}

/// Issues a token for the camera and lifetime the query names.
#[cfg(feature = "auth")]
fn issue_token(
    state: &AppState,
    principal: &Principal,
    raw: Option<&str>,
) -> Result<Response, HttpError> {
    let q = Query::parse(raw);
    let name = q
        .get("camera")
        .ok_or_else(|| HttpError::BadRequest("name the camera: /api/token?camera=NAME".into()))?;
    let camera = super::access::camera_named(state, principal, name)?;
    let ttl = match q.get("ttl") {
        None => DEFAULT_TOKEN_TTL,
        Some(t) => match t.parse::<u64>() {
            Ok(secs) if (1..=MAX_TOKEN_TTL.as_secs()).contains(&secs) => Duration::from_secs(secs),
            _ => {
                return Err(HttpError::BadRequest(format!(
                    "bad ttl {t:?}: seconds from 1 to {}",
                    MAX_TOKEN_TTL.as_secs()
                )));
            }
        },
    };
    let (token, expires) = state
        .config()
        .auth
        .issue_token(camera.name(), ttl)
        .ok_or_else(|| HttpError::Unavailable("cannot sign tokens".into()))?;
    let name = camera.name();
    let body = serde_json::json!({
        "camera": name,
        "token": token,
        "expires": expires,
        "stream": format!("/cameras/{name}/stream?token={token}"),
        "snapshot": format!("/cameras/{name}/snapshot.jpg?token={token}"),
    });
    let mut resp = Json(body).into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(resp)
}

/// `GET /metrics`: Prometheus text exposition, labelled by camera name only.
pub(super) async fn metrics(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Response, HttpError> {
    if !state.config().public_metrics {
        super::access::require_user(&principal)?;
    }
    // Like /api/state: a restricted user sees only the cameras it may watch.
    let visible = |name: &str| state.config().public_metrics || principal.may_watch(name);
    let cams: Vec<_> = state
        .hub()
        .cameras()
        .into_iter()
        .filter(|c| visible(c.name()))
        .collect();
    let mut out = String::with_capacity(4096);
    let mut family = |name: &str, kind: &str, help: &str, value: &dyn Fn(&Camera) -> f64| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for c in &cams {
            let _ = writeln!(out, "{name}{{camera=\"{}\"}} {}", c.name(), value(c));
        }
    };
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;
    family(
        "mjpegd_viewers",
        "gauge",
        "Stream viewers connected.",
        &|c| c.viewer_list().len() as f64,
    );
    family(
        "mjpegd_capture_running",
        "gauge",
        "1 while the capture task runs.",
        &|c| f64::from(u8::from(c.demand().running)),
    );
    family(
        "mjpegd_online",
        "gauge",
        "1 while the camera delivers live frames.",
        &|c| {
            f64::from(u8::from(
                c.demand().running && c.latest().is_some_and(|f| f.online()),
            ))
        },
    );
    family(
        "mjpegd_capture_fps",
        "gauge",
        "Measured capture rate.",
        &|c| c.stats().capture_rate.rate(),
    );
    family(
        "mjpegd_frames_captured_total",
        "counter",
        "Live frames captured.",
        &|c| load(&c.stats().frames_captured),
    );
    family(
        "mjpegd_frames_sent_total",
        "counter",
        "Frame parts sent to viewers.",
        &|c| load(&c.stats().frames_sent),
    );
    family(
        "mjpegd_bytes_sent_total",
        "counter",
        "Bytes of frame parts sent to viewers.",
        &|c| load(&c.stats().bytes_sent),
    );
    family(
        "mjpegd_frames_skipped_total",
        "counter",
        "Frames viewers skipped for being slower than the camera.",
        &|c| load(&c.stats().frames_skipped),
    );
    family(
        "mjpegd_frames_dropped_total",
        "counter",
        "Source frames dropped unencoded because the encoder pool was behind.",
        &|c| load(&c.stats().frames_dropped),
    );
    family(
        "mjpegd_source_errors_total",
        "counter",
        "Source failures (open errors, read errors, stalls).",
        &|c| load(&c.stats().source_errors),
    );
    family(
        "mjpegd_source_restarts_total",
        "counter",
        "Times the source was opened.",
        &|c| load(&c.stats().source_opens),
    );
    let name = "mjpegd_source_errors_by_kind_total";
    let _ = writeln!(
        out,
        "# HELP {name} Source failures by kind: permanent (someone must act) or transient.\n# TYPE {name} counter"
    );
    for c in &cams {
        let s = c.stats();
        for (kind, n) in [
            ("permanent", &s.source_errors_permanent),
            ("transient", &s.source_errors_transient),
        ] {
            let _ = writeln!(
                out,
                "{name}{{camera=\"{}\",kind=\"{kind}\"}} {}",
                c.name(),
                load(n)
            );
        }
    }
    let name = "mjpegd_capture_latency_seconds";
    let _ = writeln!(
        out,
        "# HELP {name} Time from a source delivering a frame to its publication.\n# TYPE {name} histogram"
    );
    for c in &cams {
        let (buckets, count, sum) = c.stats().capture_latency.snapshot();
        for (le, n) in buckets {
            let _ = writeln!(
                out,
                "{name}_bucket{{camera=\"{}\",le=\"{le}\"}} {n}",
                c.name()
            );
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{camera=\"{}\",le=\"+Inf\"}} {count}",
            c.name()
        );
        let _ = writeln!(out, "{name}_sum{{camera=\"{}\"}} {sum}", c.name());
        let _ = writeln!(out, "{name}_count{{camera=\"{}\"}} {count}", c.name());
    }
    if let Some(recs) = state.recordings() {
        recording_metrics(&mut out, recs, &visible);
    }
    if let Some(m) = state.motion() {
        m.write_metrics(&mut out);
    }
    let mut resp = out.into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    Ok(resp)
}

/// The recorders' families, for cameras that record.
fn recording_metrics(
    out: &mut String,
    recs: &crate::record::Recordings,
    visible: &dyn Fn(&str) -> bool,
) {
    type Value<'a> = dyn Fn(&crate::record::Recorder) -> f64 + 'a;
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed) as f64;
    let families: [(&str, &str, &str, &Value<'_>); 9] = [
        (
            "mjpegd_recording",
            "gauge",
            "1 while the camera records (0 when off or paused).",
            &|r| f64::from(u8::from(r.enabled() && r.error().is_none())),
        ),
        (
            "mjpegd_recording_paused",
            "gauge",
            "1 while recording is paused by a disk error (see /api/state).",
            &|r| f64::from(u8::from(r.enabled() && r.error().is_some())),
        ),
        (
            "mjpegd_recording_bytes",
            "gauge",
            "Bytes of recorded segments on disk.",
            &|r| r.store().bytes() as f64,
        ),
        (
            "mjpegd_recording_frames_written_total",
            "counter",
            "Frames written to disk.",
            &|r| load(&r.stats().frames_written),
        ),
        (
            "mjpegd_recording_bytes_written_total",
            "counter",
            "Bytes written to disk.",
            &|r| load(&r.stats().bytes_written),
        ),
        (
            "mjpegd_recording_frames_dropped_total",
            "counter",
            "Frames not recorded (disk too slow, or paused).",
            &|r| load(&r.stats().frames_dropped),
        ),
        (
            "mjpegd_recording_frames_damaged_total",
            "counter",
            "Recorded frames that failed their checksum when read (not served).",
            &|r| load(&r.stats().frames_damaged),
        ),
        (
            "mjpegd_recording_write_errors_total",
            "counter",
            "Disk errors while recording.",
            &|r| load(&r.stats().write_errors),
        ),
        (
            "mjpegd_recording_segments_deleted_total",
            "counter",
            "Segments deleted by retention.",
            &|r| load(&r.stats().segments_deleted),
        ),
    ];
    for (name, kind, help, value) in families {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for r in recs.all().iter().filter(|r| visible(r.camera().name())) {
            let _ = writeln!(
                out,
                "{name}{{camera=\"{}\"}} {}",
                r.camera().name(),
                value(r)
            );
        }
    }
}
