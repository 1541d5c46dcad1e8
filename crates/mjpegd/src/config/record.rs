//! `[cameras.record]`: recording to disk (see docs/recording.md).

use std::time::Duration;

use serde::Deserialize;

use super::{CameraSection, ConfigError, InvalidValue, NumberOrText, err, in_range};

/// `[cameras.record]`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordSection {
    /// Base directory; segments go into `DIR/CAMERA/`.
    pub dir: std::path::PathBuf,
    /// Most bytes kept, as a number or `"500M"`, `"10G"`, `"1T"` (default `"10G"`).
    pub max_bytes: Option<NumberOrText>,
    /// Most bytes kept by every camera recording into `dir` together, oldest first across
    /// them (default: no shared limit); cameras sharing a `dir` must agree on it.
    pub dir_max_bytes: Option<NumberOrText>,
    /// Delete recordings older than this: seconds or `"90s"`, `"30m"`, `"12h"`, `"7d"` (default: no age limit).
    pub max_age: Option<NumberOrText>,
    /// `"continuous"` (default), `"motion"` (during motion events; needs `[cameras.motion]`) or
    /// `"off"` (only when started by `POST /cameras/NAME/record/start`).
    pub mode: Option<String>,
    /// Length of one segment file in seconds, 1-3600 (default 60).
    pub segment_seconds: Option<u64>,
    /// Frames per second recorded, fewer than the camera's (motion mode: outside events).
    pub fps: Option<f64>,
    /// Motion mode: seconds recorded before an event's start, 0-30 (default 5).
    pub pre_capture: Option<f64>,
    /// Motion mode: seconds recorded after an event's end, 0-300 (default 5).
    pub post_capture: Option<f64>,
}

/// Seconds in `0..=max`, or the default; `key` names the field in errors.
fn seconds_in(
    v: Option<f64>,
    default: Duration,
    max: Duration,
    key: String,
) -> Result<Duration, ConfigError> {
    match v {
        None => Ok(default),
        Some(s) if s.is_finite() && (0.0..=max.as_secs_f64()).contains(&s) => {
            Ok(Duration::from_secs_f64(s))
        }
        Some(s) => Err(err(
            key,
            format!(
                "{s} seconds is out of range: accepted 0 to {}",
                max.as_secs()
            ),
        )),
    }
}

/// Smallest and largest `max_bytes` (1 MiB: a few frames; 1 PiB: any disk).
pub const RECORD_BYTES_RANGE: (u64, u64) = (1 << 20, 1 << 50);
/// Longest `max_age`: ten years.
pub const MAX_RECORD_AGE_SECS: u64 = 10 * 366 * 86_400;

/// Parses `123`, `500K`, `500M`, `10G`, `1T` (powers of 1024; a trailing `B`/`iB` is allowed).
pub fn parse_bytes(v: &NumberOrText) -> Result<u64, InvalidValue> {
    let text = match v {
        NumberOrText::Number(n) => return Ok(*n),
        NumberOrText::Text(t) => t.trim(),
    };
    let bad = || {
        InvalidValue(format!(
            "expected bytes such as 500M, 10G or 1T (got {text:?})"
        ))
    };
    let upper = text.to_ascii_uppercase();
    let digits = upper.trim_end_matches("IB").trim_end_matches('B');
    let (num, mult) = match digits.chars().last() {
        Some('K') => (&digits[..digits.len() - 1], 1u64 << 10),
        Some('M') => (&digits[..digits.len() - 1], 1 << 20),
        Some('G') => (&digits[..digits.len() - 1], 1 << 30),
        Some('T') => (&digits[..digits.len() - 1], 1 << 40),
        _ => (digits, 1),
    };
    let n: f64 = num.trim().parse().map_err(|_| bad())?;
    if !n.is_finite() || n < 0.0 || n * mult as f64 > u64::MAX as f64 / 2.0 {
        return Err(bad());
    }
    Ok((n * mult as f64) as u64)
}

/// Parses seconds, or `90s`, `30m`, `12h`, `7d`.
pub fn parse_age(v: &NumberOrText) -> Result<u64, InvalidValue> {
    let text = match v {
        NumberOrText::Number(n) => return Ok(*n),
        NumberOrText::Text(t) => t.trim(),
    };
    let bad = || {
        InvalidValue(format!(
            "expected an age such as 3600, 90s, 30m, 12h or 7d (got {text:?})"
        ))
    };
    let (num, mult) = match text.chars().last() {
        Some('s') => (&text[..text.len() - 1], 1u64),
        Some('m') => (&text[..text.len() - 1], 60),
        Some('h') => (&text[..text.len() - 1], 3600),
        Some('d') => (&text[..text.len() - 1], 86_400),
        _ => (text, 1),
    };
    let n: u64 = num.trim().parse().map_err(|_| bad())?;
    n.checked_mul(mult).ok_or_else(bad)
}

/// Checks a `[cameras.record]` section; `key` names each field in errors.
pub fn check_record(
    r: &RecordSection,
    key: &dyn Fn(&str) -> String,
) -> Result<crate::record::RecordConfig, ConfigError> {
    use crate::record::{
        DEFAULT_CAPTURE_MARGIN, MAX_POST_CAPTURE, MAX_PRE_CAPTURE, Mode, RecordConfig,
    };
    if r.dir.as_os_str().is_empty() {
        return Err(err(key("dir"), "give the directory to record into"));
    }
    let (lo, hi) = RECORD_BYTES_RANGE;
    let max_bytes = match &r.max_bytes {
        Some(v) => parse_bytes(v).map_err(|e| err(key("max_bytes"), e))?,
        None => 10 << 30,
    };
    if !(lo..=hi).contains(&max_bytes) {
        return Err(err(
            key("max_bytes"),
            format!("{max_bytes} is out of range: accepted 1M to 1024T"),
        ));
    }
    let dir_max_bytes = match &r.dir_max_bytes {
        Some(v) => {
            let b = parse_bytes(v).map_err(|e| err(key("dir_max_bytes"), e))?;
            if !(lo..=hi).contains(&b) {
                return Err(err(
                    key("dir_max_bytes"),
                    format!("{b} is out of range: accepted 1M to 1024T"),
                ));
            }
            Some(b)
        }
        None => None,
    };
    let max_age = match &r.max_age {
        Some(v) => {
            let secs = parse_age(v).map_err(|e| err(key("max_age"), e))?;
            if !(1..=MAX_RECORD_AGE_SECS).contains(&secs) {
                return Err(err(
                    key("max_age"),
                    format!("{secs} seconds is out of range: accepted 1 s to 10 years"),
                ));
            }
            Some(Duration::from_secs(secs))
        }
        None => None,
    };
    let mode = match r.mode.as_deref() {
        None | Some("continuous") => Mode::Continuous,
        Some("off") => Mode::Off,
        Some("motion") => Mode::Motion,
        Some(other) => {
            return Err(err(
                key("mode"),
                format!(
                    "{other:?} is not a recording mode: use \"continuous\", \"motion\" or \"off\""
                ),
            ));
        }
    };
    let segment = in_range(r.segment_seconds, 60, 1, 3600, &key("segment_seconds"))?;
    let fps = match r.fps {
        Some(f) => Some(crate::config::parse_fps(&f.to_string()).map_err(|e| err(key("fps"), e))?),
        None => None,
    };
    let pre_capture = seconds_in(
        r.pre_capture,
        DEFAULT_CAPTURE_MARGIN,
        MAX_PRE_CAPTURE,
        key("pre_capture"),
    )?;
    let post_capture = seconds_in(
        r.post_capture,
        DEFAULT_CAPTURE_MARGIN,
        MAX_POST_CAPTURE,
        key("post_capture"),
    )?;
    Ok(RecordConfig {
        dir: r.dir.clone(),
        max_bytes,
        dir_max_bytes,
        max_age,
        mode,
        segment: Duration::from_secs(segment),
        fps,
        pre_capture,
        post_capture,
    })
}

/// Checks the `[cameras.record]` sections of every camera.
pub fn check_recordings(
    cameras: &[CameraSection],
) -> Result<Vec<(String, crate::record::RecordConfig)>, ConfigError> {
    let mut out = Vec::new();
    for (i, c) in cameras.iter().enumerate() {
        if let Some(r) = &c.record {
            let key = |f: &str| format!("cameras[{i}].record.{f}");
            let config = check_record(r, &key)?;
            if config.mode == crate::record::Mode::Motion && c.motion.is_none() {
                return Err(err(
                    key("mode"),
                    format!(
                        "\"motion\" records during motion events, but camera {:?} has no motion \
                         detection: add a [cameras.motion] section to it, or use mode = \"continuous\"",
                        c.name
                    ),
                ));
            }
            // One shared limit per directory: two different ones would make "oldest first
            // across cameras" mean two things.
            if let Some((other, o)) =
                out.iter()
                    .find(|(_, o): &&(String, crate::record::RecordConfig)| {
                        o.dir == config.dir && o.dir_max_bytes != config.dir_max_bytes
                    })
            {
                return Err(err(
                    key("dir_max_bytes"),
                    format!(
                        "camera {other:?} records into the same dir {} with dir_max_bytes {}: \
                         cameras sharing a dir share one limit; give them the same value",
                        config.dir.display(),
                        o.dir_max_bytes
                            .map_or_else(|| "unset".to_owned(), |b| b.to_string())
                    ),
                ));
            }
            out.push((c.name.clone(), config));
        }
    }
    Ok(out)
}
