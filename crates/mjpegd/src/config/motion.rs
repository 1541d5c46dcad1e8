//! `[cameras.motion]`: the settings as written, and `validate()` into a checked
//! [`MotionConfig`] whose errors name the key path (`cameras[0].motion.threshold`).

use std::time::Duration;

use serde::Deserialize;

use super::{CameraSection, ConfigError};
use crate::motion::config::*;
use crate::render::MAX_DIMENSION;

/// `[cameras.motion]` as written; every key is optional.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MotionSection {
    /// Share of changed pixels, 0..=1, that counts as motion (default 0.005).
    pub threshold: Option<f64>,
    /// Luma change 1..=255 that counts one pixel as changed (default 16).
    pub sensitivity: Option<u64>,
    /// Analysed frames in a row with motion before an event starts (default 2).
    pub min_frames: Option<u64>,
    /// Seconds without motion that end an event (default 10).
    pub event_gap: Option<f64>,
    /// Analysed frames per second (default 5).
    pub fps: Option<f64>,
    /// Rectangles, in frame pixels, where motion is ignored.
    #[serde(default)]
    pub mask: Vec<MaskRect>,
    /// Command (argv, no shell) run when an event starts; the camera name and event id are
    /// appended.
    pub on_event_start: Option<Vec<String>>,
    /// Command run when an event ends; the camera name, event id and duration in seconds are
    /// appended.
    pub on_event_end: Option<Vec<String>>,
    /// Longest run of a hook, seconds 1..=600 (default 30).
    pub hook_timeout: Option<f64>,
}

/// Checks one hook's argv: not empty, a program that is an absolute path or a bare name (found
/// on `PATH` when it runs), no NUL byte.
fn check_argv(argv: &Option<Vec<String>>, key: String) -> Result<Option<Vec<String>>, ConfigError> {
    let Some(argv) = argv else { return Ok(None) };
    let Some(program) = argv.first() else {
        return Err(err(
            key,
            "an empty list; give the command and its arguments, e.g. [\"/usr/local/bin/notify\", \"--motion\"]".into(),
        ));
    };
    if program.is_empty() {
        return Err(err(key, "the command (first element) is empty".into()));
    }
    if program.contains('/') && !program.starts_with('/') {
        return Err(err(
            key,
            format!(
                "the command {program:?} is a relative path; give an absolute path or a bare name found on PATH"
            ),
        ));
    }
    if argv.iter().any(|a| a.contains('\0')) {
        return Err(err(key, "an argument contains a NUL byte".into()));
    }
    Ok(Some(argv.clone()))
}

fn err(key: String, message: String) -> ConfigError {
    ConfigError { key, message }
}

fn float_in(
    v: Option<f64>,
    default: f64,
    (lo, hi): (f64, f64),
    key: String,
) -> Result<f64, ConfigError> {
    let v = v.unwrap_or(default);
    if v.is_finite() && (lo..=hi).contains(&v) {
        Ok(v)
    } else {
        Err(err(key, format!("{v} is out of range {lo}..={hi}")))
    }
}

impl MotionSection {
    /// Checks the section; `key` turns a field into its path (`cameras[0].motion.threshold`),
    /// and `frame` is the camera's frame size where it is known before capture (masks must lie
    /// inside it).
    pub fn validate(
        &self,
        key: &dyn Fn(&str) -> String,
        frame: Option<(u32, u32)>,
    ) -> Result<MotionConfig, ConfigError> {
        let threshold = float_in(
            self.threshold,
            DEFAULT_THRESHOLD,
            (0.0, 1.0),
            key("threshold"),
        )?;
        let sensitivity = match self.sensitivity {
            None => DEFAULT_SENSITIVITY,
            Some(s) => u8::try_from(s)
                .ok()
                .filter(|s| *s >= 1)
                .ok_or_else(|| err(key("sensitivity"), format!("{s} is out of range 1..=255")))?,
        };
        let min_frames = match self.min_frames {
            None => DEFAULT_MIN_FRAMES,
            Some(n) if (1..=MAX_MIN_FRAMES).contains(&n) => n as u32,
            Some(n) => {
                return Err(err(
                    key("min_frames"),
                    format!("{n} is out of range 1..={MAX_MIN_FRAMES}"),
                ));
            }
        };
        let event_gap = float_in(
            self.event_gap,
            DEFAULT_EVENT_GAP,
            EVENT_GAP_RANGE,
            key("event_gap"),
        )?;
        let fps = float_in(self.fps, DEFAULT_FPS, FPS_RANGE, key("fps"))?;
        if self.mask.len() > MAX_MASKS {
            return Err(err(
                key("mask"),
                format!("{} rectangles; the limit is {MAX_MASKS}", self.mask.len()),
            ));
        }
        let (fw, fh) = frame.unwrap_or((MAX_DIMENSION, MAX_DIMENSION));
        for (i, m) in self.mask.iter().enumerate() {
            let right = u64::from(m.x) + u64::from(m.width);
            let bottom = u64::from(m.y) + u64::from(m.height);
            if m.width == 0 || m.height == 0 {
                return Err(err(
                    key(&format!("mask[{i}]")),
                    "width and height must be at least 1".into(),
                ));
            }
            if right > u64::from(fw) || bottom > u64::from(fh) {
                return Err(err(
                    key(&format!("mask[{i}]")),
                    format!(
                        "x {} + width {} / y {} + height {} reaches outside the {fw}x{fh} frame",
                        m.x, m.width, m.y, m.height
                    ),
                ));
            }
        }
        let hooks = Hooks {
            on_start: check_argv(&self.on_event_start, key("on_event_start"))?,
            on_end: check_argv(&self.on_event_end, key("on_event_end"))?,
            timeout: Duration::from_secs_f64(float_in(
                self.hook_timeout,
                DEFAULT_HOOK_TIMEOUT,
                HOOK_TIMEOUT_RANGE,
                key("hook_timeout"),
            )?),
        };
        Ok(MotionConfig {
            threshold,
            sensitivity,
            min_frames,
            event_gap: Duration::from_secs_f64(event_gap),
            fps,
            mask: self.mask.clone(),
            hooks,
        })
    }
}

/// The frame size a camera is known to deliver before capture: its `size` if set (generated
/// sources render at it, others are downscaled to fit it), else 1280x720 for generated sources.
fn known_frame(c: &CameraSection) -> Option<(u32, u32)> {
    let size = c
        .size
        .as_deref()
        .and_then(|s| crate::config::parse_size(s).ok());
    let generated = c
        .source
        .parse::<crate::source::SourceSpec>()
        .is_ok_and(|s| s.is_generated());
    size.or(generated.then_some((1280, 720)))
}

/// Checks one camera's motion section, if any; `key` is as for [`MotionSection::validate`].
pub fn check_camera_motion(
    c: &CameraSection,
    key: &dyn Fn(&str) -> String,
) -> Result<Option<MotionConfig>, ConfigError> {
    c.motion
        .as_ref()
        .map(|m| m.validate(key, known_frame(c)))
        .transpose()
}

/// Checks the `[cameras.motion]` sections of every camera.
pub fn check_motions(
    cameras: &[CameraSection],
) -> Result<Vec<(String, MotionConfig)>, ConfigError> {
    let mut out = Vec::new();
    for (i, c) in cameras.iter().enumerate() {
        let key = |f: &str| format!("cameras[{i}].motion.{f}");
        if let Some(m) = check_camera_motion(c, &key)? {
            out.push((c.name.clone(), m));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse;

    fn check(motion: &str) -> Result<Vec<(String, MotionConfig)>, String> {
        let text = format!(
            "[[cameras]]\nname = \"a\"\nsource = \"testpattern\"\nsize = \"640x480\"\n[cameras.motion]\n{motion}"
        );
        let file = parse(&text).map_err(|e| e.to_string())?;
        check_motions(&file.cameras).map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_values_are_taken() {
        let m = check("").expect("valid");
        assert_eq!(m[0].0, "a");
        assert_eq!(m[0].1, MotionConfig::default());
        let m = check(
            "threshold = 0.02\nsensitivity = 255\nmin_frames = 1000\nevent_gap = 0\nfps = 30\n\
             mask = [{ x = 0, y = 0, width = 640, height = 480 }]\n",
        )
        .expect("valid at every limit");
        let c = &m[0].1;
        assert_eq!(
            (c.threshold, c.sensitivity, c.min_frames),
            (0.02, 255, 1000)
        );
        assert_eq!((c.event_gap, c.fps), (Duration::ZERO, 30.0));
        assert_eq!(c.mask.len(), 1);
    }

    #[test]
    fn bad_values_name_the_key_path_and_the_range() {
        for (line, want) in [
            (
                "threshold = 1.5",
                "cameras[0].motion.threshold: 1.5 is out of range 0..=1",
            ),
            (
                "threshold = -0.1",
                "cameras[0].motion.threshold: -0.1 is out of range 0..=1",
            ),
            (
                "sensitivity = 0",
                "cameras[0].motion.sensitivity: 0 is out of range 1..=255",
            ),
            (
                "sensitivity = 256",
                "cameras[0].motion.sensitivity: 256 is out of range 1..=255",
            ),
            (
                "min_frames = 0",
                "cameras[0].motion.min_frames: 0 is out of range 1..=1000",
            ),
            (
                "min_frames = 1001",
                "cameras[0].motion.min_frames: 1001 is out of range 1..=1000",
            ),
            (
                "event_gap = 3601",
                "cameras[0].motion.event_gap: 3601 is out of range 0..=3600",
            ),
            (
                "fps = 0.05",
                "cameras[0].motion.fps: 0.05 is out of range 0.1..=30",
            ),
            (
                "fps = 31",
                "cameras[0].motion.fps: 31 is out of range 0.1..=30",
            ),
            (
                "mask = [{ x = 600, y = 0, width = 41, height = 10 }]",
                "cameras[0].motion.mask[0]: x 600 + width 41 / y 0 + height 10 reaches outside the 640x480 frame",
            ),
            (
                "mask = [{ x = 0, y = 0, width = 0, height = 10 }]",
                "cameras[0].motion.mask[0]: width and height must be at least 1",
            ),
        ] {
            assert_eq!(check(line).expect_err(line), want);
        }
        let many = format!(
            "mask = [{}]",
            vec!["{ x = 0, y = 0, width = 1, height = 1 }"; MAX_MASKS + 1].join(", ")
        );
        assert!(
            check(&many)
                .expect_err("too many")
                .contains("65 rectangles; the limit is 64")
        );
        let at_limit = format!(
            "mask = [{}]",
            vec!["{ x = 0, y = 0, width = 1, height = 1 }"; MAX_MASKS].join(", ")
        );
        assert_eq!(
            check(&at_limit).expect("at the limit")[0].1.mask.len(),
            MAX_MASKS
        );
    }

    #[test]
    fn hooks_are_checked_and_name_their_key() {
        let m = check(
            "on_event_start = [\"/usr/bin/logger\", \"-t\", \"motion\"]\n\
             on_event_end = [\"notify-send\"]\nhook_timeout = 600\n",
        )
        .expect("valid");
        let h = &m[0].1.hooks;
        assert_eq!(
            h.on_start.as_deref(),
            Some(&["/usr/bin/logger".to_owned(), "-t".into(), "motion".into()][..])
        );
        assert_eq!(h.on_end.as_deref(), Some(&["notify-send".to_owned()][..]));
        assert_eq!(h.timeout, Duration::from_secs(600));
        assert_eq!(
            check("").expect("valid")[0].1.hooks.timeout,
            Duration::from_secs(30)
        );
        for (line, want) in [
            (
                "on_event_start = []",
                "cameras[0].motion.on_event_start: an empty list",
            ),
            (
                "on_event_end = []",
                "cameras[0].motion.on_event_end: an empty list",
            ),
            (
                "on_event_start = [\"\"]",
                "cameras[0].motion.on_event_start: the command (first element) is empty",
            ),
            (
                "on_event_end = [\"bin/notify\"]",
                "cameras[0].motion.on_event_end: the command \"bin/notify\" is a relative path",
            ),
            (
                "hook_timeout = 0.5",
                "cameras[0].motion.hook_timeout: 0.5 is out of range 1..=600",
            ),
            (
                "hook_timeout = 601",
                "cameras[0].motion.hook_timeout: 601 is out of range 1..=600",
            ),
        ] {
            let e = check(line).expect_err(line);
            assert!(e.starts_with(want), "{line}: {e}");
        }
        let e = check("on_event_start = \"/bin/true\"").expect_err("a string");
        assert!(e.contains("on_event_start"), "{e}");
    }

    #[test]
    fn unknown_keys_are_refused_with_their_path() {
        let e = check("treshold = 0.1").expect_err("unknown");
        assert!(
            e.contains("cameras[0].motion") && e.contains("treshold"),
            "{e}"
        );
        let e = check("mask = [{ x = 0, y = 0, w = 1, height = 1 }]").expect_err("unknown");
        assert!(e.contains("mask") && e.contains('w'), "{e}");
    }

    #[test]
    fn masks_of_cameras_of_unknown_size_are_bounded_by_the_largest_frame() {
        let text = "[[cameras]]\nname = \"a\"\nsource = \"images:/tmp\"\n[cameras.motion]\n\
                    mask = [{ x = 8000, y = 0, width = 192, height = 1 }]\n";
        let file = parse(text).expect("parses");
        assert!(check_motions(&file.cameras).is_ok());
        let past = text.replace("192", "193");
        let file = parse(&past).expect("parses");
        let e = check_motions(&file.cameras).expect_err("outside");
        assert!(e.message.contains("8192x8192"), "{e}");
    }
}
