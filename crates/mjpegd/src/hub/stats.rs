//! Plain data that a camera and its capture task share: demand and counters.
//!
//! Below both `camera` and `capture` in the hub, so that neither reaches into the other.

use std::sync::atomic::AtomicU64;

use super::meter::{Histogram, RateMeter};

/// Demand on a camera and whether its capture task runs; both change under one lock (the
/// watch channel's), so a viewer arriving just as capture stops always restarts it. Only
/// [`super::Camera`]'s own methods change them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Demand {
    /// Viewers and snapshot requests currently holding a [`super::Subscription`].
    pub watchers: usize,
    /// Whether a capture task is running.
    pub running: bool,
}

/// Counters of a camera, for the state page and metrics.
#[derive(Debug, Default)]
pub struct CameraStats {
    /// Frames published from the source (not counting no-signal frames).
    pub frames_captured: AtomicU64,
    /// Frame parts sent to viewers, keep-alive re-sends included.
    pub frames_sent: AtomicU64,
    /// Bytes of parts sent to viewers.
    pub bytes_sent: AtomicU64,
    /// Frames viewers skipped because they were slower than the camera (or rate-capped).
    pub frames_skipped: AtomicU64,
    /// Source frames dropped unencoded because the encoder pool was behind (latest-frame rule).
    pub frames_dropped: AtomicU64,
    /// Times the source failed (open error, read error, stall).
    pub source_errors: AtomicU64,
    /// Of `source_errors`, those that need someone to act ([`crate::source::ErrorKind::Permanent`]).
    pub source_errors_permanent: AtomicU64,
    /// Of `source_errors`, those that can pass by themselves ([`crate::source::ErrorKind::Transient`]).
    pub source_errors_transient: AtomicU64,
    /// Times the capture task opened the source.
    pub source_opens: AtomicU64,
    /// Recent capture rate of live frames.
    pub capture_rate: RateMeter,
    /// Time from a source delivering a frame to its publication (transform included).
    pub capture_latency: Histogram,
    /// Frames not published for being byte-identical to the previous one (`drop_same_frames`).
    pub frames_same: AtomicU64,
}
