//! Camera controls over HTTP: `GET` and `POST /cameras/NAME/controls`, a reset, and
//! mjpg-streamer's `/?action=command` for Octolapse and OctoPrint plugins.
//!
//! Who may: with authentication on, users who may watch the camera and whose entry does not
//! say `control = false`; with it off, anyone who can reach the server (as for recording).
//! State-changing requests must come from this server's own pages or from a non-browser
//! client (`access::require_same_origin`), so a foreign page cannot move a camera through the
//! user's browser.

use std::sync::Arc;

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::{AppState, HttpError, access};
use crate::hub::Camera;
use crate::principal::Principal;
use crate::source::controls::{Control, ControlError, Controls, MAX_SETTINGS, Setting};

/// Largest `POST /cameras/NAME/controls` body: a few hundred settings fit in it.
pub const MAX_CONTROLS_BODY: usize = 16 * 1024;

/// The controls of `camera`, or why it has none.
fn controls_of(camera: &Camera) -> Result<Arc<dyn Controls>, String> {
    camera.config().opener.controls().ok_or_else(|| {
        format!(
            "camera {:?} ({}) has no controls mjpegd can set: only V4L2 cameras (v4l2:/dev/videoN) \
             have them",
            camera.name(),
            camera.config().opener.describe()
        )
    })
}

/// Runs a blocking controls call (ioctls) off the async workers.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ControlError> + Send + 'static,
    camera: &str,
) -> Result<T, HttpError> {
    let result = tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| HttpError::Unavailable(format!("camera {camera:?}: controls failed: {e}")))?;
    result.map_err(|e| match e {
        ControlError::Device(why) => HttpError::Unavailable(format!("camera {camera:?}: {why}")),
        e => HttpError::BadRequest(format!("camera {camera:?}: {e}")),
    })
}

fn no_store(mut resp: Response) -> Response {
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// `GET /cameras/NAME/controls`: every control with its range and current value.
pub(super) async fn list(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
) -> Result<Response, HttpError> {
    let camera = access::camera_named(&state, &principal, &name)?;
    let body = match controls_of(&camera) {
        Err(reason) => json!({ "camera": camera.name(), "controls": [], "reason": reason }),
        Ok(c) => {
            let list = blocking(move || c.list(), camera.name()).await?;
            json!({ "camera": camera.name(), "controls": list })
        }
    };
    Ok(no_store(Json(body).into_response()))
}

/// A state-changing controls request's camera and its controls: same origin, a user who may
/// control it, a camera that has controls.
fn controlled(
    state: &AppState,
    p: &Principal,
    camera: Arc<Camera>,
    headers: &HeaderMap,
) -> Result<(Arc<Camera>, Arc<dyn Controls>), HttpError> {
    access::require_same_origin(headers)?;
    access::require_control(p, &camera)?;
    let _ = state;
    let controls = controls_of(&camera).map_err(HttpError::BadRequest)?;
    Ok((camera, controls))
}

/// Parses `{"brightness": 140, "auto_exposure": 1, "focus_automatic_continuous": false,
/// "contrast": "default"}`.
fn parse_settings(body: &[u8]) -> Result<Vec<(String, Setting)>, HttpError> {
    let bad = |why: String| HttpError::BadRequest(format!("controls: {why}"));
    let value: Value =
        serde_json::from_slice(body).map_err(|e| bad(format!("the body is not JSON ({e})")))?;
    let Value::Object(map) = value else {
        return Err(bad(
            "send a JSON object of control names (or ids) to values, e.g. {\"brightness\": 140}"
                .into(),
        ));
    };
    if map.len() > MAX_SETTINGS {
        return Err(bad(format!(
            "{} controls in one request; at most {MAX_SETTINGS}",
            map.len()
        )));
    }
    let mut out = Vec::with_capacity(map.len());
    for (key, v) in map {
        let setting = match &v {
            Value::Bool(b) => Setting::Value(i64::from(*b)),
            Value::Number(n) => match n.as_i64() {
                Some(i) => Setting::Value(i),
                None => {
                    return Err(bad(format!(
                        "{key:?}: {n} is not an integer (values are whole numbers)"
                    )));
                }
            },
            Value::String(s) if s == "default" => Setting::Default,
            Value::String(s) => match s.trim().parse::<i64>() {
                Ok(i) => Setting::Value(i),
                Err(_) => {
                    return Err(bad(format!(
                        "{key:?}: {s:?} is not a value: give an integer, true/false or \"default\""
                    )));
                }
            },
            other => {
                return Err(bad(format!(
                    "{key:?}: {other} is not a value: give an integer, true/false or \"default\""
                )));
            }
        };
        out.push((key, setting));
    }
    Ok(out)
}

/// The answer to a change: what each named control holds now (as the driver took it), and the
/// whole list.
fn changed(camera: &Camera, asked: &[String], after: &[Control]) -> Response {
    let set: serde_json::Map<String, Value> = asked
        .iter()
        .filter_map(|name| {
            let c = crate::source::controls::find(after, name).ok()?;
            Some((c.key.clone(), c.value.map_or(Value::Null, Value::from)))
        })
        .collect();
    no_store(
        Json(json!({ "camera": camera.name(), "set": set, "controls": after })).into_response(),
    )
}

/// `POST /cameras/NAME/controls` with a JSON object: sets several controls at once.
pub(super) async fn set(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, HttpError> {
    let camera = access::camera_named(&state, &principal, &name)?;
    let (camera, controls) = controlled(&state, &principal, camera, &headers)?;
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|t| {
            t.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        });
    if !is_json {
        // A form or text/plain POST needs no CORS preflight; JSON does. Requiring it keeps
        // foreign pages out even for browsers that send no Origin.
        return Err(HttpError::BadRequest(
            "controls: send the values as Content-Type: application/json".into(),
        ));
    }
    let body = axum::body::to_bytes(body, MAX_CONTROLS_BODY)
        .await
        .map_err(|_| {
            HttpError::BadRequest(format!(
                "controls: the body is larger than {MAX_CONTROLS_BODY} bytes"
            ))
        })?;
    let settings = parse_settings(&body)?;
    let asked: Vec<String> = settings.iter().map(|(k, _)| k.clone()).collect();
    let after = blocking(move || controls.set(&settings), camera.name()).await?;
    tracing::info!(
        camera = %camera.name(),
        controls = %asked.join(","),
        "camera controls set on request"
    );
    Ok(changed(&camera, &asked, &after))
}

/// `POST /cameras/NAME/controls/reset`: every settable control back to the driver's default,
/// and nothing remembered.
pub(super) async fn reset(
    State(state): State<AppState>,
    principal: Principal,
    Path(name): Path<String>,
    headers: HeaderMap,
) -> Result<Response, HttpError> {
    let camera = access::camera_named(&state, &principal, &name)?;
    let (camera, controls) = controlled(&state, &principal, camera, &headers)?;
    let after = blocking(move || controls.reset(), camera.name()).await?;
    tracing::info!(camera = %camera.name(), "camera controls reset to defaults on request");
    let asked: Vec<String> = after.iter().map(|c| c.key.clone()).collect();
    Ok(changed(&camera, &asked, &after))
}

/// What mjpg-streamer's clients look for to know they talk to a compatible server: Octolapse
/// refuses a camera whose command and `input.json` answers lack it.
const MJPG_STREAMER_SERVER: &str = "MJPG-Streamer/0.2 (mjpegd)";

/// The leading integer of a query value, as mjpg-streamer's `strtol` reads it (`12abc` is 12,
/// nothing is 0).
fn leading_int(s: Option<&str>) -> i64 {
    let s = s.unwrap_or("").trim();
    let end = s
        .char_indices()
        .find(|&(i, c)| !(c.is_ascii_digit() || (i == 0 && c == '-')))
        .map_or(s.len(), |(i, _)| i);
    s[..end].parse().unwrap_or(0)
}

fn mjpg_streamer_text(body: String) -> Response {
    let mut resp = body.into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    h.insert(
        header::SERVER,
        HeaderValue::from_static(MJPG_STREAMER_SERVER),
    );
    no_store(resp)
}

/// mjpg-streamer's `/?action=command&dest=0&plugin=N&id=ID&group=1&value=V`: sets V4L2 control
/// `ID` of camera `N`. Answered as mjpg-streamer does, `200 text/plain` with `ID: 0` when the
/// control took the value and `ID: -1` when not (the reason is logged), so Octolapse's camera
/// templates work unchanged; a camera that does not exist or may not be controlled is an HTTP
/// error as for every other request.
pub(super) async fn command(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    q: &super::query::Query,
) -> Result<Response, HttpError> {
    let id_text: String = q
        .get("id")
        .unwrap_or("")
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .take(32)
        .collect();
    let id = leading_int(q.get("id"));
    let value = leading_int(q.get("value"));
    let dest = leading_int(q.get("dest"));
    let group = leading_int(q.get("group"));
    let plugin = usize::try_from(leading_int(q.get("plugin"))).unwrap_or(usize::MAX);
    let camera = access::camera_at(state, principal, plugin)?;
    let (camera, controls) = match controlled(state, principal, camera, headers) {
        Ok(c) => c,
        // A camera without controls answers as mjpg-streamer's input plugins do: -1.
        Err(HttpError::BadRequest(why)) => {
            tracing::info!("mjpg-streamer command {id_text}: {why}");
            return Ok(mjpg_streamer_text(format!("{id_text}: -1")));
        }
        Err(e) => return Err(e),
    };
    // dest 0 is the input plugin (the camera); group 0 and 1 are its generic and V4L2 controls.
    // Resolution (2) and JPEG quality (3) changes, and output plugins, are not controls here.
    if dest != 0 || !(0..=1).contains(&group) || id <= 0 {
        tracing::info!(
            camera = %camera.name(),
            "mjpg-streamer command id={id_text} dest={dest} group={group}: not a camera control; answered -1"
        );
        return Ok(mjpg_streamer_text(format!("{id_text}: -1")));
    }
    let settings = vec![(id.to_string(), Setting::Value(value))];
    let name = camera.name().to_owned();
    let rc = match blocking(move || controls.set(&settings), &name).await {
        Ok(_) => {
            tracing::info!(camera = %name, id, value, "camera control set by mjpg-streamer command");
            0
        }
        Err(e) => {
            tracing::info!(camera = %name, "mjpg-streamer command id={id} value={value} refused: {e}");
            -1
        }
    };
    Ok(mjpg_streamer_text(format!("{id_text}: {rc}")))
}

/// mjpg-streamer's `/input.json` and `/input_N.json`: camera N's controls in its format, every
/// value a string as mjpg-streamer writes them (Octolapse compares `type` with `"1"`).
pub(super) async fn input_json(
    state: &AppState,
    principal: &Principal,
    index: usize,
) -> Result<Response, HttpError> {
    let camera = access::camera_at(state, principal, index)?;
    let list = match controls_of(&camera) {
        Ok(c) => blocking(move || c.list(), camera.name()).await?,
        Err(_) => Vec::new(),
    };
    let controls: Vec<Value> = list
        .iter()
        .filter_map(|c| {
            use crate::source::controls::ControlKind as K;
            let kind = match c.kind {
                K::Integer => 1,
                K::Boolean => 2,
                K::Menu => 3,
                K::Button => 4,
                K::Integer64 => 5,
                K::IntegerMenu => 9,
                // mjpg-streamer lists neither bitmasks nor text.
                K::Bitmask | K::String => return None,
            };
            let mut o = json!({
                "name": c.name,
                "id": c.id.to_string(),
                "type": kind.to_string(),
                "min": c.min.to_string(),
                "max": c.max.to_string(),
                "step": c.step.to_string(),
                "default": c.default.to_string(),
                "value": c.value.unwrap_or(c.default).to_string(),
                "dest": "0",
                "flags": v4l2_flags(c).to_string(),
                "group": "1",
            });
            if !c.menu.is_empty() {
                let menu: serde_json::Map<String, Value> = c
                    .menu
                    .iter()
                    .map(|m| (m.index.to_string(), Value::from(m.name.clone())))
                    .collect();
                o["menu"] = Value::Object(menu);
            }
            Some(o)
        })
        .collect();
    let mut resp = Json(json!({ "controls": controls, "formats": [] })).into_response();
    resp.headers_mut().insert(
        header::SERVER,
        HeaderValue::from_static(MJPG_STREAMER_SERVER),
    );
    Ok(no_store(resp))
}

/// The `V4L2_CTRL_FLAG_*` bits of a control's flags, as mjpg-streamer passes them on.
fn v4l2_flags(c: &Control) -> u32 {
    [
        ("disabled", 0x0001),
        ("grabbed", 0x0002),
        ("read-only", 0x0004),
        ("inactive", 0x0010),
        ("write-only", 0x0040),
        ("volatile", 0x0080),
    ]
    .iter()
    .filter(|(f, _)| c.has(f))
    .map(|(_, b)| b)
    .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_integers_read_as_strtol_does() {
        assert_eq!(leading_int(Some("9963776")), 9_963_776);
        assert_eq!(leading_int(Some("-1")), -1);
        assert_eq!(leading_int(Some("128abc")), 128);
        assert_eq!(leading_int(Some("0x10")), 0);
        assert_eq!(leading_int(Some("")), 0);
        assert_eq!(leading_int(None), 0);
        assert_eq!(leading_int(Some("99999999999999999999999")), 0);
    }

    #[test]
    fn settings_bodies_are_checked() {
        let mut s = parse_settings(br#"{"brightness": 140, "auto": true, "contrast": "default"}"#)
            .expect("valid");
        s.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            s,
            vec![
                ("auto".to_owned(), Setting::Value(1)),
                ("brightness".to_owned(), Setting::Value(140)),
                ("contrast".to_owned(), Setting::Default),
            ]
        );
        for bad in [
            &b"[1]"[..],
            b"{\"a\": 1.5}",
            b"{\"a\": null}",
            b"{\"a\": \"loud\"}",
            b"nope",
        ] {
            assert!(
                parse_settings(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        let many: String = (0..=MAX_SETTINGS)
            .map(|i| format!("\"c{i}\": 1"))
            .collect::<Vec<_>>()
            .join(",");
        let e = parse_settings(format!("{{{many}}}").as_bytes()).unwrap_err();
        assert!(e.to_string().contains("at most"), "{e}");
    }
}
