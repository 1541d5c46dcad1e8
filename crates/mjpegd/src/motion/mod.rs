//! Motion detection: a small luma image per analysed frame, differenced against a slowly
//! updated reference, and the event state machine on top (see docs/motion.md).
//!
//! Everything here is pure CPU work over one JPEG at a time, with no I/O and no clock of its
//! own (callers pass the time in), so it runs on the encoder pool and is tested without one;
//! [`live`] runs it on the cameras.

pub mod config;
mod detector;
pub mod hooks;
pub mod live;
mod luma;

pub use config::{MaskRect, MotionConfig};
pub use detector::{Change, Detector, Event, Outcome};
pub use live::{CameraMotion, MAX_EVENTS, Motion, events_subject};
pub use luma::{Luma, LumaPath, SCALE, small_luma, small_luma_with};

/// A frame the detector could not analyse.
#[derive(Debug, thiserror::Error)]
pub enum MotionError {
    /// The JPEG did not decode.
    #[error("cannot decode the frame for motion analysis: {0}; the frame is skipped")]
    Decode(String),
}
