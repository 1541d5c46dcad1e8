//! V4L2 controls: listed with `VIDIOC_QUERY_EXT_CTRL` and `VIDIOC_QUERYMENU`, read with
//! `VIDIOC_G_EXT_CTRLS`, set with `VIDIOC_S_EXT_CTRLS`.
//!
//! Each call opens the device node on its own: V4L2 lets any number of file handles change
//! controls while another one streams, so controls work whether or not anyone is watching, and
//! never wait for the capture thread.

use std::io;
use std::path::{Path, PathBuf};

use super::device::Device;
use super::sys;
use crate::source::controls::{
    self, Control, ControlError, ControlKind, Controls, MAX_CONTROLS, MAX_SETTINGS, Memory,
    MenuItem, Setting,
};

/// Most items read from one menu (drivers' menus have a handful).
const MAX_MENU_ITEMS: u32 = 64;

/// The controls of one V4L2 device node, and the values to re-apply when it opens.
#[derive(Debug)]
pub(super) struct V4l2Controls {
    device: PathBuf,
    memory: Memory,
}

impl V4l2Controls {
    /// The controls of `device`, with nothing remembered yet.
    pub(super) fn new(device: PathBuf) -> V4l2Controls {
        V4l2Controls {
            device,
            memory: Memory::default(),
        }
    }

    fn open(&self) -> Result<Device, ControlError> {
        Device::open(&self.device)
            .map_err(|e| ControlError::Device(super::open_error(&self.device, &e).to_string()))
    }

    /// Sets the remembered values on `device` (just opened for capture). A value the device no
    /// longer takes is logged and skipped: a camera with one stale setting still streams.
    pub(super) fn restore(&self, device: &Device) {
        let remembered = self.memory.values();
        if remembered.is_empty() {
            return;
        }
        let list = match list(device) {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(device = %self.device.display(), "cannot restore camera controls: {e}");
                return;
            }
        };
        let mut wanted = Vec::new();
        for (key, value) in &remembered {
            match controls::find(&list, key).and_then(|c| Ok((c, c.check(Setting::Value(*value))?)))
            {
                Ok((c, v)) => wanted.push((c.clone(), v)),
                Err(e) => {
                    tracing::warn!(device = %self.device.display(), "remembered control not restored: {e}")
                }
            }
        }
        match apply(device, &wanted, false) {
            Ok(()) => tracing::info!(
                device = %self.device.display(),
                controls = %remembered.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join(" "),
                "camera controls restored"
            ),
            Err(e) => {
                tracing::warn!(device = %self.device.display(), "camera controls partly restored: {e}")
            }
        }
    }
}

impl Controls for V4l2Controls {
    fn list(&self) -> Result<Vec<Control>, ControlError> {
        let device = self.open()?;
        list(&device).map_err(|e| self.io_error("list the controls of", &e))
    }

    fn set(&self, settings: &[(String, Setting)]) -> Result<Vec<Control>, ControlError> {
        if settings.len() > MAX_SETTINGS {
            return Err(ControlError::Refused {
                control: format!("{} controls", settings.len()),
                why: format!("at most {MAX_SETTINGS} can be set at once"),
            });
        }
        let device = self.open()?;
        let before = list(&device).map_err(|e| self.io_error("list the controls of", &e))?;
        let mut wanted = Vec::with_capacity(settings.len());
        let mut remember = Vec::with_capacity(settings.len());
        for (name, setting) in settings {
            let c = controls::find(&before, name)?;
            let v = c.check(*setting)?;
            wanted.push((c.clone(), v));
            if c.kind != ControlKind::Button {
                remember.push((c.key.clone(), *setting));
            }
        }
        apply(&device, &wanted, true)?;
        let after = list(&device).map_err(|e| self.io_error("read back the controls of", &e))?;
        // Remember what the driver took (it rounds to its step), or forget on a reset.
        let changes: Vec<(String, Option<i64>)> = remember
            .into_iter()
            .map(|(key, setting)| {
                let taken = after.iter().find(|c| c.key == key).and_then(|c| c.value);
                (
                    key,
                    if setting == Setting::Default {
                        None
                    } else {
                        taken
                    },
                )
            })
            .collect();
        if let Err(e) = self.memory.update(&changes) {
            tracing::warn!(device = %self.device.display(), "controls set but not saved for the next start: {e}");
        }
        Ok(after)
    }

    fn reset(&self) -> Result<Vec<Control>, ControlError> {
        let device = self.open()?;
        let before = list(&device).map_err(|e| self.io_error("list the controls of", &e))?;
        let wanted: Vec<(Control, i64)> = before
            .into_iter()
            .filter(|c| c.kind != ControlKind::Button && !c.has("write-only"))
            .filter_map(|c| c.check(Setting::Default).ok().map(|v| (c, v)))
            .collect();
        apply(&device, &wanted, false)?;
        if let Err(e) = self.memory.clear() {
            tracing::warn!(device = %self.device.display(), "controls reset but the memory file was not updated: {e}");
        }
        list(&device).map_err(|e| self.io_error("read back the controls of", &e))
    }

    fn memory(&self) -> &Memory {
        &self.memory
    }
}

impl V4l2Controls {
    fn io_error(&self, what: &str, e: &io::Error) -> ControlError {
        ControlError::Device(format!(
            "v4l2: cannot {what} {}: {}",
            self.device.display(),
            super::os_text(e)
        ))
    }
}

/// Every control of `device` (at most [`MAX_CONTROLS`]) with its current value.
pub(super) fn list(device: &Device) -> io::Result<Vec<Control>> {
    let mut out = Vec::new();
    let mut group = String::new();
    let mut id = 0;
    while out.len() < MAX_CONTROLS {
        let Some(q) = device.next_control(id)? else {
            break;
        };
        // A driver that does not move on would loop forever.
        if q.id <= id && id != 0 {
            break;
        }
        id = q.id;
        let name = sys::c_str(&q.name);
        let kind = match q.type_ {
            sys::CTRL_TYPE_CTRL_CLASS => {
                group = name;
                continue;
            }
            sys::CTRL_TYPE_INTEGER => ControlKind::Integer,
            sys::CTRL_TYPE_BOOLEAN => ControlKind::Boolean,
            sys::CTRL_TYPE_MENU => ControlKind::Menu,
            sys::CTRL_TYPE_INTEGER_MENU => ControlKind::IntegerMenu,
            sys::CTRL_TYPE_BUTTON => ControlKind::Button,
            sys::CTRL_TYPE_INTEGER64 => ControlKind::Integer64,
            sys::CTRL_TYPE_BITMASK => ControlKind::Bitmask,
            sys::CTRL_TYPE_STRING => ControlKind::String,
            // Arrays and codec state: nothing a camera page sets.
            _ => continue,
        };
        let mut flags = Vec::new();
        for (bit, text) in [
            (sys::CTRL_FLAG_READ_ONLY, "read-only"),
            (sys::CTRL_FLAG_INACTIVE, "inactive"),
            (sys::CTRL_FLAG_DISABLED, "disabled"),
            (sys::CTRL_FLAG_WRITE_ONLY, "write-only"),
            (sys::CTRL_FLAG_VOLATILE, "volatile"),
            (sys::CTRL_FLAG_GRABBED, "grabbed"),
        ] {
            if q.flags & bit != 0 {
                flags.push(text);
            }
        }
        let menu = if matches!(kind, ControlKind::Menu | ControlKind::IntegerMenu) {
            menu_items(device, &q, kind)?
        } else {
            Vec::new()
        };
        out.push(Control {
            id: q.id,
            key: controls::key_of(&name),
            name,
            kind,
            min: q.minimum,
            max: q.maximum,
            step: q.step,
            default: q.default_value,
            value: None,
            menu,
            flags,
            group: group.clone(),
        });
    }
    read_values(device, &mut out);
    Ok(out)
}

/// The items of a menu control, skipping the gaps drivers leave.
fn menu_items(
    device: &Device,
    q: &sys::QueryExtCtrl,
    kind: ControlKind,
) -> io::Result<Vec<MenuItem>> {
    let mut items = Vec::new();
    let (Ok(first), Ok(last)) = (u32::try_from(q.minimum), u32::try_from(q.maximum)) else {
        return Ok(items);
    };
    for index in first..=last.min(first.saturating_add(MAX_MENU_ITEMS - 1)) {
        if let Some(m) = device.menu_item(q.id, index)? {
            let name = if kind == ControlKind::IntegerMenu {
                m.value().to_string()
            } else {
                let name = m.name;
                sys::c_str(&name)
            };
            items.push(MenuItem {
                index: i64::from(index),
                name,
            });
        }
    }
    Ok(items)
}

/// True when the control's value is the 64-bit member of the union.
fn is_64(kind: ControlKind) -> bool {
    kind == ControlKind::Integer64
}

/// A control for `S_EXT_CTRLS`: bitmasks are `__u32` in the 32-bit member, so their high bit
/// travels as the sign bit.
fn ext(c: &Control, v: i64) -> sys::ExtControl {
    let v = if c.kind == ControlKind::Bitmask {
        i64::from(v as u32 as i32)
    } else {
        v
    };
    sys::ExtControl::new(c.id, is_64(c.kind), v)
}

/// The value of a control read back by `G_EXT_CTRLS` (bitmasks unsigned again).
fn value_of(c: &Control, got: &sys::ExtControl) -> i64 {
    let v = got.get(is_64(c.kind));
    if c.kind == ControlKind::Bitmask {
        i64::from(v as i32 as u32)
    } else {
        v
    }
}

/// Fills in the current values: all in one `G_EXT_CTRLS`, or one by one when the driver
/// refuses the batch (one unreadable control must not hide the others).
fn read_values(device: &Device, list: &mut [Control]) {
    let readable: Vec<usize> = (0..list.len())
        .filter(|&i| {
            let c = &list[i];
            !matches!(c.kind, ControlKind::Button | ControlKind::String) && !c.has("write-only")
        })
        .collect();
    let mut batch: Vec<sys::ExtControl> = readable.iter().map(|&i| ext(&list[i], 0)).collect();
    if device.ext_controls(false, &mut batch).is_ok() {
        for (&i, got) in readable.iter().zip(&batch) {
            list[i].value = Some(value_of(&list[i], got));
        }
        return;
    }
    for &i in &readable {
        let mut one = [ext(&list[i], 0)];
        if device.ext_controls(false, &mut one).is_ok() {
            list[i].value = Some(value_of(&list[i], &one[0]));
        }
    }
}

/// Sets checked values: mode switches first (auto exposure off makes exposure settable), then
/// the rest, refusing a value for a control that is still inactive when `strict`.
fn apply(device: &Device, wanted: &[(Control, i64)], strict: bool) -> Result<(), ControlError> {
    let (modes, values): (Vec<_>, Vec<_>) = wanted.iter().partition(|(c, _)| c.kind.is_mode());
    set_batch(device, &modes, strict)?;
    if values.is_empty() {
        return Ok(());
    }
    let now = if modes.is_empty() {
        None
    } else {
        list(device).ok()
    };
    let mut active = Vec::with_capacity(values.len());
    for item in values {
        let c = &item.0;
        let inactive = match &now {
            Some(list) => list.iter().any(|n| n.id == c.id && n.has("inactive")),
            None => c.has("inactive"),
        };
        if inactive {
            let e = ControlError::Refused {
                control: c.key.clone(),
                why: "it is inactive: an automatic mode controls it; turn that mode off (for \
                      example auto_exposure or white_balance_automatic) in the same request"
                    .into(),
            };
            if strict {
                return Err(e);
            }
            tracing::warn!("remembered control not restored: {e}");
            continue;
        }
        active.push(item);
    }
    set_batch(device, &active, strict)
}

/// One `S_EXT_CTRLS` for `batch`; when the driver refuses it, finds and names the control
/// (`strict`), or sets the others one by one and logs the refusals.
fn set_batch(device: &Device, batch: &[&(Control, i64)], strict: bool) -> Result<(), ControlError> {
    if batch.is_empty() {
        return Ok(());
    }
    let mut raw: Vec<sys::ExtControl> = batch.iter().map(|(c, v)| ext(c, *v)).collect();
    let (e, idx) = match device.ext_controls(true, &mut raw) {
        Ok(()) => return Ok(()),
        Err(failure) => failure,
    };
    if !strict {
        for item in batch {
            let (c, v) = (&item.0, item.1);
            let mut one = [ext(c, v)];
            if let Err((e, _)) = device.ext_controls(true, &mut one) {
                tracing::warn!(control = %c.key, value = v, "the driver refused a control: {}", super::os_text(&e));
            }
        }
        return Ok(());
    }
    let culprit = match idx {
        Some(i) => Some(i),
        // The driver did not say which: try them one by one.
        None => batch.iter().position(|(c, v)| {
            let mut one = [ext(c, *v)];
            device.ext_controls(true, &mut one).is_err()
        }),
    };
    let (c, v) = match culprit.and_then(|i| batch.get(i)) {
        Some(&(c, v)) => (c, v),
        None => {
            return Err(ControlError::Device(format!(
                "the driver refused the controls: {}",
                super::os_text(&e)
            )));
        }
    };
    let why = match e.raw_os_error() {
        Some(libc::EACCES) => {
            "the driver refused it now (EACCES): an automatic mode or streaming state \
                  controls it"
                .to_owned()
        }
        Some(libc::ERANGE) => format!("{v} is out of range: {}", c.range_text()),
        Some(libc::EBUSY) => "the control is busy (another program holds it)".to_owned(),
        _ => format!("the driver refused {v}: {}", super::os_text(&e)),
    };
    Err(ControlError::Refused {
        control: c.key.clone(),
        why,
    })
}

/// The controls of the device at `path`, for `--list-devices`.
pub(super) fn describe(device: &Device, path: &Path) -> Vec<String> {
    match list(device) {
        Ok(list) if list.is_empty() => vec!["  controls: none".into()],
        Ok(list) => {
            let mut lines = vec![
                "  controls (set with [cameras.controls] or POST /cameras/NAME/controls):".into(),
            ];
            for c in list {
                for line in c.to_string().lines() {
                    lines.push(format!("    {line}"));
                }
            }
            lines
        }
        Err(e) => vec![format!(
            "  controls: cannot list ({}: {})",
            path.display(),
            super::os_text(&e)
        )],
    }
}
