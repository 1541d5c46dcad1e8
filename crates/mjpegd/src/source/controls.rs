//! Camera controls (brightness, focus, exposure, white balance): what a source offers, the
//! values users set, and the memory that re-applies them whenever the camera is opened.
//!
//! Source-neutral: V4L2 implements [`Controls`] (`v4l2/controls.rs`); HTTP, the config file
//! and `--list-devices` see only these types. Values are integers, as V4L2 has them: booleans
//! are 0/1, menus the item's index (or, for integer menus, its index too).

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

/// Most controls read from one device: a guard against a driver that never ends its list.
pub const MAX_CONTROLS: usize = 1024;

/// Most values one request (or one config table) may set.
pub const MAX_SETTINGS: usize = 256;

/// Largest remembered-values file read back (a few hundred controls fit in a few KiB).
pub const MAX_MEMORY_FILE: u64 = 256 * 1024;

/// What kind of value a control takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ControlKind {
    /// An integer in `min..=max` by `step`.
    Integer,
    /// 0 or 1.
    Boolean,
    /// The index of one of `menu`'s items.
    Menu,
    /// The index of one of `menu`'s items, each naming a number.
    IntegerMenu,
    /// An action (autofocus once, reset pan/tilt): setting it to anything triggers it.
    Button,
    /// A 64-bit integer.
    Integer64,
    /// A set of bits within `max`.
    Bitmask,
    /// Text; listed, not settable here.
    String,
}

impl ControlKind {
    /// The short type name `v4l2-ctl --list-ctrls` prints.
    pub fn short(self) -> &'static str {
        match self {
            ControlKind::Integer => "int",
            ControlKind::Boolean => "bool",
            ControlKind::Menu => "menu",
            ControlKind::IntegerMenu => "intmenu",
            ControlKind::Button => "button",
            ControlKind::Integer64 => "int64",
            ControlKind::Bitmask => "bitmask",
            ControlKind::String => "str",
        }
    }

    /// True for mode switches (auto exposure, auto white balance): set before the values they
    /// make active, so one request can turn auto off and set the manual value.
    pub fn is_mode(self) -> bool {
        matches!(
            self,
            ControlKind::Boolean | ControlKind::Menu | ControlKind::IntegerMenu
        )
    }
}

/// One item of a menu control.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MenuItem {
    /// The value that selects it.
    pub index: i64,
    /// Its name (`Manual Mode`, `50 Hz`), or for integer menus the number as text.
    pub name: String,
}

/// One control as the driver describes it, with its current value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Control {
    /// The driver's id (V4L2 control ids: 9963776 is brightness).
    pub id: u32,
    /// The driver's name (`White Balance Temperature`).
    pub name: String,
    /// The name used in requests and config: lowercase, `_` between words, as `v4l2-ctl` has it.
    pub key: String,
    /// What kind of value it takes.
    #[serde(rename = "type")]
    pub kind: ControlKind,
    /// Smallest value.
    pub min: i64,
    /// Largest value.
    pub max: i64,
    /// Values are `min + k * step`.
    pub step: u64,
    /// The driver's default.
    pub default: i64,
    /// The current value; `None` for write-only controls (buttons) and text.
    pub value: Option<i64>,
    /// Menu items, for menus.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub menu: Vec<MenuItem>,
    /// `read-only`, `inactive`, `disabled`, `write-only`, `volatile`, `grabbed`.
    pub flags: Vec<&'static str>,
    /// The class heading it is listed under (`User Controls`, `Camera Controls`).
    pub group: String,
}

impl Control {
    /// True when the control has `flag` (one of the names in [`Control::flags`]).
    pub fn has(&self, flag: &str) -> bool {
        self.flags.contains(&flag)
    }

    /// The range as text for messages: `0..=255 step 1`, or the menu's items.
    pub fn range_text(&self) -> String {
        match self.kind {
            ControlKind::Menu | ControlKind::IntegerMenu => {
                let items: Vec<String> = self
                    .menu
                    .iter()
                    .map(|m| format!("{} ({})", m.index, m.name))
                    .collect();
                format!("one of {}", items.join(", "))
            }
            ControlKind::Boolean => "0 or 1".into(),
            ControlKind::Button => "any value (it is a button)".into(),
            _ if self.step > 1 => format!("{}..={} in steps of {}", self.min, self.max, self.step),
            _ => format!("{}..={}", self.min, self.max),
        }
    }

    /// Checks that `value` may be set now, except for `inactive` (which the caller checks
    /// after mode switches of the same request took effect); returns the value to send.
    pub fn check(&self, value: Setting) -> Result<i64, ControlError> {
        let refuse = |why: String| ControlError::Refused {
            control: self.key.clone(),
            why,
        };
        if self.has("read-only") {
            return Err(refuse("it is read-only".into()));
        }
        if self.has("disabled") {
            return Err(refuse("the driver has disabled it".into()));
        }
        if self.kind == ControlKind::String {
            return Err(refuse(
                "text controls cannot be set through mjpegd (use v4l2-ctl)".into(),
            ));
        }
        let v = match value {
            Setting::Default => self.default,
            Setting::Value(v) => v,
        };
        match self.kind {
            ControlKind::Button => Ok(1),
            ControlKind::Menu | ControlKind::IntegerMenu => {
                if self.menu.iter().any(|m| m.index == v) {
                    Ok(v)
                } else {
                    Err(refuse(format!("{v} is not {}", self.range_text())))
                }
            }
            ControlKind::Bitmask => {
                if v >= 0 && (v & !self.max) == 0 {
                    Ok(v)
                } else {
                    Err(refuse(format!(
                        "{v} has bits outside the mask {:#x}",
                        self.max
                    )))
                }
            }
            _ if v < self.min || v > self.max => Err(refuse(format!(
                "{v} is out of range: {}",
                self.range_text()
            ))),
            _ => Ok(v),
        }
    }
}

impl fmt::Display for Control {
    /// One line as `v4l2-ctl --list-ctrls` prints it, then one line per menu item.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:#010x} ({}):", self.key, self.id, self.kind.short())?;
        match self.kind {
            ControlKind::Integer | ControlKind::Integer64 => write!(
                f,
                " min={} max={} step={} default={}",
                self.min, self.max, self.step, self.default
            )?,
            ControlKind::Boolean | ControlKind::Menu | ControlKind::IntegerMenu => {
                write!(
                    f,
                    " min={} max={} default={}",
                    self.min, self.max, self.default
                )?;
            }
            ControlKind::Bitmask => write!(f, " max={:#x} default={:#x}", self.max, self.default)?,
            ControlKind::Button | ControlKind::String => {}
        }
        if let Some(v) = self.value {
            write!(f, " value={v}")?;
        }
        if !self.flags.is_empty() {
            write!(f, " flags={}", self.flags.join(","))?;
        }
        for m in &self.menu {
            write!(f, "\n    {}: {}", m.index, m.name)?;
        }
        Ok(())
    }
}

/// A value asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Setting {
    /// This value.
    Value(i64),
    /// The driver's default (and forget any remembered value).
    Default,
}

/// Why controls could not be listed or set.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ControlError {
    /// No control has that name or id.
    #[error("no control {key:?} on this camera; it has: {known}")]
    Unknown {
        /// The name or id asked for.
        key: String,
        /// The keys it has, comma-separated.
        known: String,
    },
    /// The control exists but does not take this value now.
    #[error("control {control:?}: {why}")]
    Refused {
        /// The control's key.
        control: String,
        /// Why, with the accepted range.
        why: String,
    },
    /// The device cannot be reached (unplugged, no permission).
    #[error("{0}")]
    Device(String),
}

/// A source's controls. Calls block (they are ioctls on a device that may take a USB round
/// trip): run them on a blocking thread.
pub trait Controls: Send + Sync + 'static {
    /// Every control with its current value.
    fn list(&self) -> Result<Vec<Control>, ControlError>;

    /// Sets the given controls (by key, driver name or id) and remembers them; returns the
    /// controls as the driver has them afterwards (drivers round to their step).
    fn set(&self, settings: &[(String, Setting)]) -> Result<Vec<Control>, ControlError>;

    /// Every settable control back to the driver's default, and nothing remembered; controls
    /// that a default mode makes inactive are skipped, not refused.
    fn reset(&self) -> Result<Vec<Control>, ControlError>;

    /// The memory of set values, to attach a file and config values to at startup.
    fn memory(&self) -> &Memory;
}

/// Finds the control a request names: its key, its driver name (any case) or its id (decimal,
/// or hex with `0x`).
pub fn find<'a>(controls: &'a [Control], name: &str) -> Result<&'a Control, ControlError> {
    let n = name.trim();
    let id = match n.strip_prefix("0x").or_else(|| n.strip_prefix("0X")) {
        Some(hex) => u32::from_str_radix(hex, 16).ok(),
        None => n.parse::<u32>().ok(),
    };
    controls
        .iter()
        .find(|c| Some(c.id) == id || c.key == n || c.name.eq_ignore_ascii_case(n))
        .ok_or_else(|| ControlError::Unknown {
            key: n.chars().take(64).collect(),
            known: if controls.is_empty() {
                "no controls".into()
            } else {
                controls
                    .iter()
                    .map(|c| c.key.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            },
        })
}

/// The key of a driver's control name, as `v4l2-ctl` derives it: lowercase ASCII letters and
/// digits, one `_` for each run of anything else, none at the ends.
pub fn key_of(name: &str) -> String {
    let mut key = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            key.push(c.to_ascii_lowercase());
        } else if !key.is_empty() && !key.ends_with('_') {
            key.push('_');
        }
    }
    while key.ends_with('_') {
        key.pop();
    }
    key
}

/// The values a user set on a camera, re-applied every time its source opens (at start, after
/// an unplug, after a restart), and the file that keeps them across restarts.
///
/// At startup the file's values are read first and the config's `[cameras.controls]` are laid
/// over them, so an edited config wins; a value set later over HTTP wins until the next restart.
#[derive(Debug, Default)]
pub struct Memory {
    inner: Mutex<MemoryInner>,
}

#[derive(Debug, Default)]
struct MemoryInner {
    values: BTreeMap<String, i64>,
    file: Option<PathBuf>,
}

impl Memory {
    /// The remembered values, by control key.
    pub fn values(&self) -> BTreeMap<String, i64> {
        self.lock().values.clone()
    }

    /// Keeps the values in `file` from now on: reads what it holds (a missing file is an empty
    /// memory; an unreadable one is reported and replaced on the next change), then lays
    /// `config` over it.
    pub fn attach(&self, file: Option<PathBuf>, config: &BTreeMap<String, i64>) -> Option<String> {
        let mut warning = None;
        let mut values = BTreeMap::new();
        if let Some(path) = &file {
            match read_memory(path) {
                Ok(v) => values = v,
                Err(e) => warning = Some(e),
            }
        }
        values.extend(config.iter().map(|(k, v)| (k.clone(), *v)));
        let mut inner = self.lock();
        inner.values = values;
        inner.file = file;
        warning
    }

    /// Forgets every value and writes the (empty) file.
    pub fn clear(&self) -> std::io::Result<()> {
        let keys: Vec<(String, Option<i64>)> = self
            .lock()
            .values
            .keys()
            .map(|k| (k.clone(), None))
            .collect();
        self.update(&keys)
    }

    /// Records what a request set (`None`: back to default, forgotten) and writes the file.
    pub fn update(&self, changes: &[(String, Option<i64>)]) -> std::io::Result<()> {
        let (values, file) = {
            let mut inner = self.lock();
            for (key, value) in changes {
                match value {
                    Some(v) => inner.values.insert(key.clone(), *v),
                    None => inner.values.remove(key),
                };
            }
            (inner.values.clone(), inner.file.clone())
        };
        match file {
            Some(path) => write_memory(&path, &values),
            None => Ok(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryInner> {
        // The data is a plain map: a panic elsewhere cannot leave it half-written.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Reads a memory file: a JSON object of control keys to integers.
fn read_memory(path: &Path) -> Result<BTreeMap<String, i64>, String> {
    let Some(text) = crate::persist::read_small(path, MAX_MEMORY_FILE)? else {
        return Ok(BTreeMap::new());
    };
    let values: BTreeMap<String, i64> = serde_json::from_str(&text).map_err(|e| {
        format!(
            "remembered controls {} is not a JSON object of integers ({e}); ignored",
            path.display()
        )
    })?;
    Ok(values.into_iter().take(MAX_SETTINGS).collect())
}

/// Writes a memory file atomically (`persist::write_atomic`).
fn write_memory(path: &Path, values: &BTreeMap<String, i64>) -> std::io::Result<()> {
    let mut text = serde_json::to_string_pretty(values).map_err(std::io::Error::other)?;
    text.push('\n');
    crate::persist::write_atomic(path, text.as_bytes())
}

/// Where a camera's remembered controls live in the state directory.
pub fn memory_file(state_dir: &Path, camera: &str) -> PathBuf {
    state_dir.join("controls").join(format!("{camera}.json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn control(kind: ControlKind) -> Control {
        Control {
            id: 0x0098_0900,
            name: "Brightness".into(),
            key: "brightness".into(),
            kind,
            min: 0,
            max: 255,
            step: 1,
            default: 128,
            value: Some(128),
            menu: Vec::new(),
            flags: Vec::new(),
            group: "User Controls".into(),
        }
    }

    #[test]
    fn keys_are_v4l2_ctl_names() {
        assert_eq!(key_of("Brightness"), "brightness");
        assert_eq!(
            key_of("White Balance Temperature, Auto"),
            "white_balance_temperature_auto"
        );
        assert_eq!(key_of("Exposure (Absolute)"), "exposure_absolute");
        assert_eq!(key_of("  Gain  "), "gain");
        assert_eq!(key_of("Integer 32 Bits"), "integer_32_bits");
    }

    #[test]
    fn values_are_checked_against_the_range() {
        let c = control(ControlKind::Integer);
        assert_eq!(c.check(Setting::Value(255)), Ok(255));
        assert_eq!(c.check(Setting::Default), Ok(128));
        let e = c.check(Setting::Value(256)).unwrap_err().to_string();
        assert!(e.contains("brightness") && e.contains("0..=255"), "{e}");
        let mut ro = control(ControlKind::Integer);
        ro.flags.push("read-only");
        assert!(
            ro.check(Setting::Value(1))
                .unwrap_err()
                .to_string()
                .contains("read-only")
        );
        let mut menu = control(ControlKind::Menu);
        menu.menu = vec![
            MenuItem {
                index: 0,
                name: "Off".into(),
            },
            MenuItem {
                index: 2,
                name: "On".into(),
            },
        ];
        assert_eq!(menu.check(Setting::Value(2)), Ok(2));
        let e = menu.check(Setting::Value(1)).unwrap_err().to_string();
        assert!(e.contains("0 (Off), 2 (On)"), "{e}");
    }

    #[test]
    fn controls_are_found_by_key_name_or_id() {
        let list = vec![control(ControlKind::Integer)];
        assert_eq!(find(&list, "brightness").map(|c| c.id), Ok(0x0098_0900));
        assert_eq!(find(&list, "BRIGHTNESS").map(|c| c.id), Ok(0x0098_0900));
        assert_eq!(find(&list, "9963776").map(|c| c.id), Ok(0x0098_0900));
        assert_eq!(find(&list, "0x00980900").map(|c| c.id), Ok(0x0098_0900));
        let e = find(&list, "focus").unwrap_err().to_string();
        assert!(e.contains("\"focus\"") && e.contains("brightness"), "{e}");
    }

    #[test]
    fn memory_survives_in_its_file_and_config_wins_at_attach() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = memory_file(dir.path(), "porch");
        let m = Memory::default();
        assert_eq!(m.attach(Some(path.clone()), &BTreeMap::new()), None);
        m.update(&[
            ("brightness".into(), Some(200)),
            ("contrast".into(), Some(10)),
        ])
        .expect("write");
        m.update(&[("contrast".into(), None)]).expect("write");
        let again = Memory::default();
        let config = BTreeMap::from([("saturation".to_owned(), 5)]);
        assert_eq!(again.attach(Some(path.clone()), &config), None);
        assert_eq!(
            again.values(),
            BTreeMap::from([("brightness".to_owned(), 200), ("saturation".to_owned(), 5)])
        );
        let config = BTreeMap::from([("brightness".to_owned(), 7)]);
        let third = Memory::default();
        third.attach(Some(path.clone()), &config);
        assert_eq!(third.values().get("brightness"), Some(&7), "config wins");

        std::fs::write(&path, "{not json").expect("write");
        let broken = Memory::default();
        let w = broken
            .attach(Some(path), &BTreeMap::new())
            .expect("a warning");
        assert!(w.contains("not a JSON object"), "{w}");
        assert!(broken.values().is_empty());
    }
}
