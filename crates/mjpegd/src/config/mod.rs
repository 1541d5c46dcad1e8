//! The TOML configuration file: data plus validation. Every error names the file, the key path
//! (`cameras[2].fps`) and what is accepted. See `docs/config.md` for the reference.

mod auth;
mod bus;
mod camera;
mod motion;
mod record;
mod server;
#[cfg(test)]
mod tests;

pub use crate::server::ListenSpec;
pub use auth::{AuthSection, UserSection, check_auth, login_form};
pub use bus::{BusSection, PublishSection, check_bus};
pub use camera::{CameraDraft, CameraSection, OverlaySection, check_camera, check_cameras};
pub use motion::{MotionSection, check_camera_motion, check_motions};
pub use record::{
    MAX_RECORD_AGE_SECS, RECORD_BYTES_RANGE, RecordSection, check_record, check_recordings,
    parse_age, parse_bytes,
};
pub use server::{MAX_NAMES, ServerSection, ServerSettings, check_server};

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::hub::FPS_RANGE;
use crate::render::MAX_DIMENSION;

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
    /// Users and token signing.
    #[serde(default)]
    pub auth: AuthSection,
    /// Scale-out over NATS: publish cameras, serve cameras from the bus.
    #[serde(default)]
    pub bus: BusSection,
}

/// One value or a list of them (`listen = "a"` or `listen = ["a", "b"]`; `[cameras.overlay]`
/// or `[[cameras.overlay]]`).
#[derive(Debug, Clone)]
pub enum OneOrMany<T = String> {
    /// A single value.
    One(T),
    /// Several values.
    Many(Vec<T>),
}

// By hand rather than `#[serde(untagged)]`: an untagged enum replaces the inner error (an
// unknown overlay field, a bad type) with "did not match any variant".
impl<'de, T: Deserialize<'de>> Deserialize<'de> for OneOrMany<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::value::{MapAccessDeserializer, SeqAccessDeserializer, StrDeserializer};
        struct Visit<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for Visit<T> {
            type Value = OneOrMany<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("one value or a list of them")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
                T::deserialize(StrDeserializer::<E>::new(v)).map(OneOrMany::One)
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<Self::Value, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(OneOrMany::One)
            }
            fn visit_seq<A: serde::de::SeqAccess<'de>>(
                self,
                seq: A,
            ) -> Result<Self::Value, A::Error> {
                Vec::<T>::deserialize(SeqAccessDeserializer::new(seq)).map(OneOrMany::Many)
            }
        }
        d.deserialize_any(Visit(std::marker::PhantomData))
    }
}

impl<T> OneOrMany<T> {
    fn into_vec(self) -> Vec<T> {
        match self {
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        }
    }

    /// The values, in order.
    pub fn as_slice(&self) -> &[T] {
        match self {
            OneOrMany::One(t) => std::slice::from_ref(t),
            OneOrMany::Many(v) => v,
        }
    }
}

/// A value written as a number or as text with a unit.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum NumberOrText {
    /// A plain number.
    Number(u64),
    /// Text such as `"10G"` or `"7d"`.
    Text(String),
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

impl std::error::Error for ConfigError {}

/// A [`ConfigError`] at `key`.
pub fn err(key: impl Into<String>, message: impl std::fmt::Display) -> ConfigError {
    ConfigError {
        key: key.into(),
        message: message.to_string(),
    }
}

/// A config file that cannot be used; every message starts with the file name.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("{}: cannot read: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than [`MAX_FILE_BYTES`].
    #[error("{}: {len} bytes is larger than the {MAX_FILE_BYTES}-byte limit for a config file", path.display())]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// Its length.
        len: u64,
    },
    /// The file is not valid TOML for this schema.
    #[error("{}: {source}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// Where and what.
        #[source]
        source: ParseError,
    },
}

/// Config text that does not parse: the key path (and line) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub String);

/// A value that does not parse or is out of range: what was given and what is accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

/// Reads and parses a config file; errors start with the file name.
pub fn load(path: &Path) -> Result<FileConfig, LoadError> {
    let read = |source| LoadError::Read {
        path: path.to_owned(),
        source,
    };
    let meta = std::fs::metadata(path).map_err(read)?;
    if meta.len() > MAX_FILE_BYTES {
        return Err(LoadError::TooLarge {
            path: path.to_owned(),
            len: meta.len(),
        });
    }
    let text = std::fs::read_to_string(path).map_err(read)?;
    parse(&text).map_err(|source| LoadError::Parse {
        path: path.to_owned(),
        source,
    })
}

/// Parses config text; the error names the key path.
pub fn parse(text: &str) -> Result<FileConfig, ParseError> {
    let de = toml::Deserializer::new(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        // toml's message carries the line and a caret; keep only its first sentence line.
        let msg = inner.message().to_owned();
        let line = inner
            .span()
            .map(|s| text[..s.start.min(text.len())].lines().count().max(1));
        ParseError(match (path.as_str(), line) {
            (".", Some(l)) => format!("line {l}: {msg}"),
            (".", None) => msg,
            (p, Some(l)) => format!("{p} (line {l}): {msg}"),
            (p, None) => format!("{p}: {msg}"),
        })
    })
}

fn in_range(v: Option<u64>, default: u64, lo: u64, hi: u64, key: &str) -> Result<u64, ConfigError> {
    let v = v.unwrap_or(default);
    if (lo..=hi).contains(&v) {
        Ok(v)
    } else {
        Err(err(
            key,
            format!("{v} is out of range: accepted {lo} to {hi}"),
        ))
    }
}

/// Parses `WxH`.
pub fn parse_size(s: &str) -> Result<(u32, u32), InvalidValue> {
    let bad = || {
        InvalidValue(format!(
            "expected WIDTHxHEIGHT with each from 16 to {MAX_DIMENSION}, e.g. 1280x720 (got {s:?})"
        ))
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
pub fn parse_fps(s: &str) -> Result<f64, InvalidValue> {
    let (lo, hi) = FPS_RANGE;
    match s.trim().parse::<f64>() {
        Ok(f) if (lo..=hi).contains(&f) => Ok(f),
        _ => Err(InvalidValue(format!(
            "expected a number of frames per second from {lo} to {hi} (got {s:?})"
        ))),
    }
}
