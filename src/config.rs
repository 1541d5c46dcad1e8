//! The TOML configuration file: data plus validation. Every error names the file, the key path
//! (`cameras[2].fps`) and what is accepted. See `docs/config.md` for the reference.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::hub::CameraConfig;
use crate::render::MAX_DIMENSION;
use crate::source::{Params, SourceSpec};
use crate::transform::{Flip, Rotate, Transform};

/// Lowest and highest capture rate accepted.
pub const FPS_RANGE: (f64, f64) = (0.01, 240.0);
/// Most cameras one server may declare.
pub const MAX_CAMERAS: usize = 64;
/// Largest configuration file read.
pub const MAX_FILE_BYTES: u64 = 1024 * 1024;

/// The whole file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Server-wide settings.
    #[serde(default)]
    pub server: ServerSection,
    /// The cameras, in order; the first is also served at the classic URLs.
    #[serde(default)]
    pub cameras: Vec<CameraSection>,
}

/// `[server]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    /// Address to listen on (default `127.0.0.1:8080`).
    pub listen: Option<String>,
    /// Most concurrent stream viewers in total (default 1000).
    pub max_viewers: Option<u64>,
    /// Seconds a viewer's socket may accept nothing before it is cut (default 10).
    pub send_timeout: Option<u64>,
}

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
}

/// A camera's settings before they are checked, shared by the CLI and the file.
#[derive(Debug, Clone, Default)]
pub struct CameraDraft {
    /// Name.
    pub name: String,
    /// Source spec text.
    pub source: String,
    /// `WxH`.
    pub size: Option<String>,
    /// Capture rate.
    pub fps: Option<f64>,
    /// JPEG quality.
    pub quality: Option<u64>,
    /// Idle timeout seconds.
    pub idle_timeout: Option<u64>,
    /// Source timeout seconds.
    pub source_timeout: Option<u64>,
    /// Rotation degrees.
    pub rotate: Option<u32>,
    /// Flip.
    pub flip: Option<String>,
}

impl From<CameraSection> for CameraDraft {
    fn from(c: CameraSection) -> CameraDraft {
        CameraDraft {
            name: c.name,
            source: c.source,
            size: c.size,
            fps: c.fps,
            quality: c.quality,
            idle_timeout: c.idle_timeout,
            source_timeout: c.source_timeout,
            rotate: c.rotate,
            flip: c.flip,
        }
    }
}

/// A configuration error: where (`key`) and what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The key path (`cameras[2].fps`) or flag (`--fps`).
    pub key: String,
    /// What is wrong and what is accepted.
    pub message: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

fn err(key: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError {
        key: key.into(),
        message: message.into(),
    }
}

/// Reads and parses a config file; errors start with the file name.
pub fn load(path: &Path) -> Result<FileConfig, String> {
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("{shown}: cannot read: {e}"))?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(format!(
            "{shown}: {} bytes is larger than the {MAX_FILE_BYTES}-byte limit for a config file",
            meta.len()
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("{shown}: cannot read: {e}"))?;
    parse(&text).map_err(|e| format!("{shown}: {e}"))
}

/// Parses config text; the error names the key path.
pub fn parse(text: &str) -> Result<FileConfig, String> {
    let de = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        // toml's message carries the line and a caret; keep only its first sentence line.
        let msg = inner.message().to_owned();
        let line = inner
            .span()
            .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
        match (path.as_str(), line) {
            (".", Some(l)) => format!("line {l}: {msg}"),
            (".", None) => msg,
            (p, Some(l)) => format!("{p} (line {l}): {msg}"),
            (p, None) => format!("{p}: {msg}"),
        }
    })
}

/// Server-level settings, checked.
#[derive(Debug, Clone)]
pub struct ServerSettings {
    /// Where to listen.
    pub listen: SocketAddr,
    /// Total viewer limit.
    pub max_viewers: usize,
    /// Send timeout.
    pub send_timeout: Duration,
}

/// Checks the `[server]` section.
pub fn check_server(s: &ServerSection, prefix: &str) -> Result<ServerSettings, ConfigError> {
    let listen = match &s.listen {
        Some(l) => l.parse().map_err(|_| {
            err(
                format!("{prefix}listen"),
                format!("expected ADDRESS:PORT such as 127.0.0.1:8080 or 0.0.0.0:8080 (got {l:?})"),
            )
        })?,
        None => SocketAddr::from(([127, 0, 0, 1], 8080)),
    };
    let max_viewers = in_range(s.max_viewers, 1000, 1, 1_000_000, &format!("{prefix}max_viewers"))?;
    let send_timeout = in_range(s.send_timeout, 10, 1, 3600, &format!("{prefix}send_timeout"))?;
    Ok(ServerSettings {
        listen,
        max_viewers: max_viewers as usize,
        send_timeout: Duration::from_secs(send_timeout),
    })
}

fn in_range(v: Option<u64>, default: u64, lo: u64, hi: u64, key: &str) -> Result<u64, ConfigError> {
    let v = v.unwrap_or(default);
    if (lo..=hi).contains(&v) {
        Ok(v)
    } else {
        Err(err(key, format!("{v} is out of range: accepted {lo} to {hi}")))
    }
}

/// Parses `WxH`.
pub fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let bad = || {
        format!("expected WIDTHxHEIGHT with each from 16 to {MAX_DIMENSION}, e.g. 1280x720 (got {s:?})")
    };
    let (w, h) = s.split_once(['x', 'X']).ok_or_else(bad)?;
    let w: u32 = w.trim().parse().map_err(|_| bad())?;
    let h: u32 = h.trim().parse().map_err(|_| bad())?;
    if !(16..=MAX_DIMENSION).contains(&w) || !(16..=MAX_DIMENSION).contains(&h) {
        return Err(bad());
    }
    Ok((w, h))
}

/// Parses and range-checks a frame rate.
pub fn parse_fps(s: &str) -> Result<f64, String> {
    let (lo, hi) = FPS_RANGE;
    match s.trim().parse::<f64>() {
        Ok(f) if (lo..=hi).contains(&f) => Ok(f),
        _ => Err(format!("expected a number of frames per second from {lo} to {hi} (got {s:?})")),
    }
}

/// True for names usable in URLs as they are.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

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
    let spec: SourceSpec = d.source.parse().map_err(|e: String| err(key("source"), e))?;
    let size = match &d.size {
        Some(s) => Some(parse_size(s).map_err(|e| err(key("size"), e))?),
        None => None,
    };
    let fps = match d.fps {
        Some(f) => parse_fps(&f.to_string()).map_err(|e| err(key("fps"), e))?,
        None => spec.default_fps(),
    };
    let quality = in_range(d.quality, 80, 1, 100, &key("quality"))? as u8;
    let idle = in_range(d.idle_timeout, 10, 0, 86_400, &key("idle_timeout"))?;
    let source_timeout = in_range(d.source_timeout, 5, 1, 3600, &key("source_timeout"))?;
    let rotate = Rotate::try_from(d.rotate.unwrap_or(0)).map_err(|e| err(key("rotate"), e))?;
    let flip = match &d.flip {
        Some(f) => Some(f.parse::<Flip>().map_err(|e| err(key("flip"), e))?),
        None => None,
    };
    // Generated sources render at the output size; other sources deliver their own size and
    // are downscaled to fit it only when a size is configured.
    let (width, height) = size.unwrap_or((1280, 720));
    let fit = if spec.is_generated() { None } else { size };
    let params = Params {
        width,
        height,
        fps,
        quality,
    };
    let opener = spec.opener(params).map_err(|e| err(key("source"), e.to_string()))?;
    // A slow source (images at 0.1 fps) is not a stalled one.
    let source_timeout =
        Duration::from_secs(source_timeout).max(Duration::from_secs_f64(3.0 / fps));
    Ok(CameraConfig {
        name: d.name.clone(),
        opener,
        width,
        height,
        quality,
        idle_timeout: Duration::from_secs(idle),
        source_timeout,
        transform: Transform {
            rotate,
            flip,
            fit,
            quality,
        },
        fps,
    })
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
            format!("{} cameras declared; the limit is {MAX_CAMERAS}", cameras.len()),
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
        out.push(check_camera(&CameraDraft::from(c.clone()), &key)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_refused_with_their_path() {
        let e = parse("[[cameras]]\nname = \"a\"\nsource = \"testpattern\"\nfpss = 3\n")
            .expect_err("unknown key");
        assert!(e.contains("cameras[0]") && e.contains("fpss"), "{e}");
        let e = parse("[server]\nlisten = 8080\n").expect_err("wrong type");
        assert!(e.contains("server.listen"), "{e}");
    }

    #[test]
    fn bad_values_name_the_key_and_the_accepted_range() {
        let file = parse(
            "[[cameras]]\nname = \"a\"\nsource = \"testpattern\"\n\
             [[cameras]]\nname = \"b\"\nsource = \"testpattern\"\n\
             [[cameras]]\nname = \"c\"\nsource = \"testpattern\"\nfps = 500\n",
        )
        .expect("parses");
        let e = check_cameras(&file.cameras).expect_err("fps out of range");
        assert_eq!(e.key, "cameras[2].fps");
        assert!(e.message.contains("from 0.01 to 240"), "{e}");

        let dup = parse(
            "[[cameras]]\nname = \"a\"\nsource = \"testpattern\"\n\
             [[cameras]]\nname = \"a\"\nsource = \"images\"\n",
        )
        .expect("parses");
        let e = check_cameras(&dup.cameras).expect_err("duplicate");
        assert_eq!(e.key, "cameras[1].name");

        for (field, value, key) in [
            ("rotate", "45", "cameras[0].rotate"),
            ("flip", "\"diagonal\"", "cameras[0].flip"),
            ("size", "\"big\"", "cameras[0].size"),
            ("quality", "0", "cameras[0].quality"),
            ("name", "\"a b\"", "cameras[0].name"),
        ] {
            let text = format!(
                "[[cameras]]\nname = \"a\"\nsource = \"testpattern\"\n{field} = {value}\n"
            )
            .replacen("name = \"a\"\n", if field == "name" { "" } else { "name = \"a\"\n" }, 1);
            let file = parse(&text).expect("parses");
            let e = check_cameras(&file.cameras).expect_err(field);
            assert_eq!(e.key, key, "{e}");
        }
    }

    #[test]
    fn server_section_is_checked() {
        let s = ServerSection {
            listen: Some("nowhere".into()),
            ..ServerSection::default()
        };
        assert_eq!(check_server(&s, "server.").expect_err("bad").key, "server.listen");
        let s = ServerSection {
            max_viewers: Some(0),
            ..ServerSection::default()
        };
        assert_eq!(check_server(&s, "server.").expect_err("bad").key, "server.max_viewers");
    }

    #[test]
    fn names_are_url_safe() {
        assert!(valid_name("porch_2-left"));
        assert!(!valid_name(""));
        assert!(!valid_name("a/b"));
        assert!(!valid_name("ä"));
        assert!(!valid_name(&"x".repeat(65)));
    }
}
