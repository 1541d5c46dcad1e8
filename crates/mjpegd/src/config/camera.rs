//! `[[cameras]]`: each camera, checked into the hub's `CameraConfig`.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::{ConfigError, OneOrMany, RecordSection, err, in_range, parse_fps, parse_size};
use crate::hub::{
    CameraConfig, DEFAULT_IDLE_TIMEOUT, DEFAULT_QUALITY, DEFAULT_SIZE, DEFAULT_SOURCE_TIMEOUT,
    MAX_CAMERAS,
};
use crate::name::valid_name;
use crate::overlay::{Overlay, OverlayError, Position, Text};
use crate::source::{Params, SourceSpec};
use crate::transform::{Flip, Rotate, Transform};

/// One `[[cameras]]` entry.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CameraSection {
    /// URL-safe unique name: letters, digits, `-` and `_`.
    pub name: String,
    /// Source spec, as for `--source`.
    pub source: String,
    /// Output size `WxH`: generated sources render at it; larger frames are downscaled to fit.
    pub size: Option<String>,
    /// Capture rate.
    pub fps: Option<f64>,
    /// JPEG quality 1-100 of frames mjpegd encodes.
    pub quality: Option<u64>,
    /// Seconds capture keeps running after the last viewer leaves (default 10).
    pub idle_timeout: Option<u64>,
    /// Seconds without a frame before no-signal and a source restart (default 5).
    pub source_timeout: Option<u64>,
    /// Clockwise rotation: 0, 90, 180 or 270.
    pub rotate: Option<u32>,
    /// `"horizontal"` or `"vertical"`.
    pub flip: Option<String>,
    /// Size `WxH` streams fit in when the viewer asks for none; snapshots keep the full size.
    pub stream_size: Option<String>,
    /// Skip frames byte-identical to the previous one (default false).
    pub drop_same_frames: Option<bool>,
    /// `[cameras.record]`: record this camera to disk (see docs/recording.md).
    pub record: Option<RecordSection>,
    /// `[cameras.motion]`: motion detection (see docs/motion.md).
    pub motion: Option<super::MotionSection>,
    /// `[cameras.overlay]` or `[[cameras.overlay]]`: text painted into every frame.
    pub overlay: Option<OneOrMany<OverlaySection>>,
    /// `[cameras.controls]`: V4L2 control values set whenever the camera opens, by control
    /// name (`brightness = 140`, as `mjpegd --list-devices` lists them) or id.
    pub controls: Option<std::collections::BTreeMap<String, toml::Value>>,
}

/// One overlay text (see docs/config.md, "Overlays").
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverlaySection {
    /// The text: strftime `%` fields (local time), `{camera}`, `{fps}`, `\n` between lines.
    pub text: String,
    /// `top-left` (default), `top`, `top-right`, `bottom-left`, `bottom`, `bottom-right`.
    pub position: Option<String>,
    /// Line height in pixels, 8 to 128; default about 1/36 of the frame height.
    pub size: Option<u32>,
}

/// Checks a camera's overlay texts.
fn check_overlay(
    o: &OneOrMany<OverlaySection>,
    key: &dyn Fn(&str) -> String,
) -> Result<Overlay, ConfigError> {
    let sections = o.as_slice();
    let mut texts = Vec::with_capacity(sections.len());
    for (i, s) in sections.iter().enumerate() {
        let k = |field: &str| match o {
            OneOrMany::One(_) => key(&format!("overlay.{field}")),
            OneOrMany::Many(_) => key(&format!("overlay[{i}].{field}")),
        };
        let position = match &s.position {
            Some(p) => p
                .parse::<Position>()
                .map_err(|e| err(k("position"), e.to_string()))?,
            None => Position::default(),
        };
        let text = Text::new(&s.text, position, s.size).map_err(|e| {
            let field = if matches!(e, OverlayError::Size(_)) {
                "size"
            } else {
                "text"
            };
            err(k(field), e.to_string())
        })?;
        texts.push(text);
    }
    Overlay::new(texts).map_err(|e| err(key("overlay"), e.to_string()))
}

/// A camera's settings before they are checked: the CLI builds one from its flags, so flags and
/// file share one checker.
pub type CameraDraft = CameraSection;

/// Checks one camera; `key` prefixes every error (`cameras[2]` or `` for flags, with `flag`
/// mapping a field to the CLI flag that sets it).
pub fn check_camera(
    d: &CameraDraft,
    key: &dyn Fn(&str) -> String,
) -> Result<CameraConfig, ConfigError> {
    if !valid_name(&d.name) {
        return Err(err(
            key("name"),
            format!(
                "{:?} is not a usable camera name: use 1 to 64 letters, digits, '-' or '_'",
                d.name
            ),
        ));
    }
    let spec: SourceSpec = d
        .source
        .parse()
        .map_err(|e: String| err(key("source"), e))?;
    let size = match &d.size {
        Some(s) => Some(parse_size(s).map_err(|e| err(key("size"), e))?),
        None => None,
    };
    let fps = match d.fps {
        Some(f) => parse_fps(&f.to_string()).map_err(|e| err(key("fps"), e))?,
        None => spec.default_fps(),
    };
    let quality = in_range(
        d.quality,
        u64::from(DEFAULT_QUALITY),
        1,
        100,
        &key("quality"),
    )? as u8;
    let idle = in_range(
        d.idle_timeout,
        DEFAULT_IDLE_TIMEOUT.as_secs(),
        0,
        86_400,
        &key("idle_timeout"),
    )?;
    let source_timeout = in_range(
        d.source_timeout,
        DEFAULT_SOURCE_TIMEOUT.as_secs(),
        1,
        3600,
        &key("source_timeout"),
    )?;
    let rotate = Rotate::try_from(d.rotate.unwrap_or(0)).map_err(|e| err(key("rotate"), e))?;
    let flip = match &d.flip {
        Some(f) => Some(f.parse::<Flip>().map_err(|e| err(key("flip"), e))?),
        None => None,
    };
    let stream_size = match &d.stream_size {
        Some(s) => Some(parse_size(s).map_err(|e| err(key("stream_size"), e))?),
        None => None,
    };
    // Generated sources render at the output size; other sources deliver their own size and
    // are downscaled to fit it only when a size is configured.
    let (width, height) = size.unwrap_or(DEFAULT_SIZE);
    let fit = if spec.is_generated() { None } else { size };
    let params = Params {
        width,
        height,
        fps,
        quality,
    };
    let opener = spec
        .opener(params)
        .map_err(|e| err(key("source"), e.to_string()))?;
    let mut camera = CameraConfig::new(d.name.clone(), opener, params)
        .with_source_timeout(Duration::from_secs(source_timeout));
    camera.idle_timeout = Duration::from_secs(idle);
    camera.transform = Transform {
        rotate,
        flip,
        fit,
        quality,
    };
    camera.stream_size = stream_size;
    camera.drop_same_frames = d.drop_same_frames.unwrap_or(false);
    if let Some(o) = &d.overlay {
        camera.overlay = Some(Arc::new(check_overlay(o, key)?));
    }
    if let Some(c) = &d.controls {
        if camera.opener.controls().is_none() {
            return Err(err(
                key("controls"),
                format!(
                    "source {} has no controls mjpegd can set: only V4L2 cameras \
                     (v4l2:/dev/videoN) have them",
                    spec
                ),
            ));
        }
        camera.controls = check_controls(c, &|k| key(&format!("controls.{k}")))?;
    }
    Ok(camera)
}

/// Checks `[cameras.controls]`: integers or booleans under names or ids, a bounded count.
fn check_controls(
    c: &std::collections::BTreeMap<String, toml::Value>,
    key: &dyn Fn(&str) -> String,
) -> Result<std::collections::BTreeMap<String, i64>, ConfigError> {
    use crate::source::controls::MAX_SETTINGS;
    if c.len() > MAX_SETTINGS {
        return Err(err(
            key(""),
            format!("{} controls; at most {MAX_SETTINGS}", c.len()),
        ));
    }
    let mut out = std::collections::BTreeMap::new();
    for (name, value) in c {
        if name.trim().is_empty() || name.len() > 64 {
            return Err(err(
                key(name),
                "a control name: 1 to 64 characters, as mjpegd --list-devices lists them",
            ));
        }
        let v = match value {
            toml::Value::Integer(i) => *i,
            toml::Value::Boolean(b) => i64::from(*b),
            other => {
                return Err(err(
                    key(name),
                    format!(
                        "expected an integer or true/false (menus take the item's number, see \
                         mjpegd --list-devices), got {other}"
                    ),
                ));
            }
        };
        out.insert(name.trim().to_owned(), v);
    }
    Ok(out)
}

/// Checks every camera of a file: names unique, count bounded.
pub fn check_cameras(cameras: &[CameraSection]) -> Result<Vec<CameraConfig>, ConfigError> {
    if cameras.is_empty() {
        return Err(err(
            "cameras",
            "no camera declared: add at least one [[cameras]] table with a name and a source",
        ));
    }
    if cameras.len() > MAX_CAMERAS {
        return Err(err(
            "cameras",
            format!(
                "{} cameras declared; the limit is {MAX_CAMERAS}",
                cameras.len()
            ),
        ));
    }
    let mut seen = HashSet::new();
    let mut out = Vec::with_capacity(cameras.len());
    for (i, c) in cameras.iter().enumerate() {
        if !seen.insert(c.name.clone()) {
            return Err(err(
                format!("cameras[{i}].name"),
                format!("duplicate camera name {:?}: names must be unique", c.name),
            ));
        }
        let key = |field: &str| format!("cameras[{i}].{field}");
        out.push(check_camera(c, &key)?);
    }
    Ok(out)
}
