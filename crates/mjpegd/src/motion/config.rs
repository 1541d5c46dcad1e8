//! Checked motion settings and their defaults and limits; the `[cameras.motion]` section that
//! becomes them is read and checked in `config::motion`.

use std::time::Duration;

use serde::Deserialize;

/// Default share of changed small-image pixels that counts as motion (0.5 %).
pub const DEFAULT_THRESHOLD: f64 = 0.005;
/// Default per-pixel luma change (0-255) that counts a small-image pixel as changed.
pub const DEFAULT_SENSITIVITY: u8 = 16;
/// Default analysed frames in a row with motion before an event starts.
pub const DEFAULT_MIN_FRAMES: u32 = 2;
/// Default seconds without motion that end an event.
pub const DEFAULT_EVENT_GAP: f64 = 10.0;
/// Default analysed frames per second.
pub const DEFAULT_FPS: f64 = 5.0;
/// Accepted analysis rates.
pub const FPS_RANGE: (f64, f64) = (0.1, 30.0);
/// Accepted `event_gap`, seconds.
pub const EVENT_GAP_RANGE: (f64, f64) = (0.0, 3600.0);
/// Most `min_frames`.
pub const MAX_MIN_FRAMES: u64 = 1000;
/// Most mask rectangles per camera.
pub const MAX_MASKS: usize = 64;
/// Default longest run of an event hook, seconds.
pub const DEFAULT_HOOK_TIMEOUT: f64 = 30.0;
/// Accepted `hook_timeout`, seconds.
pub const HOOK_TIMEOUT_RANGE: (f64, f64) = (1.0, 600.0);

/// The commands run when an event starts and ends (argv, exec'd without a shell; mjpegd appends
/// the camera name and the event id, and for the end hook the event's duration in seconds).
#[derive(Debug, Clone, PartialEq)]
pub struct Hooks {
    /// `on_event_start`.
    pub on_start: Option<Vec<String>>,
    /// `on_event_end`.
    pub on_end: Option<Vec<String>>,
    /// Longest run of one hook; its process group is killed past it.
    pub timeout: Duration,
}

impl Default for Hooks {
    fn default() -> Hooks {
        Hooks {
            on_start: None,
            on_end: None,
            timeout: Duration::from_secs_f64(DEFAULT_HOOK_TIMEOUT),
        }
    }
}

/// One rectangle of `mask`, in pixels of the camera's frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MaskRect {
    /// Left edge.
    pub x: u32,
    /// Top edge.
    pub y: u32,
    /// Width, at least 1.
    pub width: u32,
    /// Height, at least 1.
    pub height: u32,
}

/// Checked motion settings.
#[derive(Debug, Clone, PartialEq)]
pub struct MotionConfig {
    /// Share of changed pixels that counts as motion.
    pub threshold: f64,
    /// Luma change that counts one pixel as changed.
    pub sensitivity: u8,
    /// Frames in a row with motion before an event starts.
    pub min_frames: u32,
    /// Time without motion that ends an event.
    pub event_gap: Duration,
    /// Analysed frames per second.
    pub fps: f64,
    /// Ignored rectangles.
    pub mask: Vec<MaskRect>,
    /// Commands run on events.
    pub hooks: Hooks,
}

impl Default for MotionConfig {
    fn default() -> MotionConfig {
        MotionConfig {
            threshold: DEFAULT_THRESHOLD,
            sensitivity: DEFAULT_SENSITIVITY,
            min_frames: DEFAULT_MIN_FRAMES,
            event_gap: Duration::from_secs_f64(DEFAULT_EVENT_GAP),
            fps: DEFAULT_FPS,
            mask: Vec::new(),
            hooks: Hooks::default(),
        }
    }
}
