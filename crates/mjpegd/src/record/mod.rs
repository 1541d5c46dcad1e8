//! Recording: every published frame of a camera written to disk, and read back as spans,
//! replays, single frames and exports.
//!
//! A [`Recorder`] is a consumer of its camera like any viewer: it holds a
//! [`crate::hub::Subscription`] (so capture runs while it records) and hands each frame to a
//! dedicated writer thread through a small bounded channel; when the disk is slower than the
//! camera, frames are dropped and counted, never queued. Frames are written exactly as
//! published (no re-encode). The hub knows nothing of this module; HTTP reads the catalogue
//! through it. See `docs/recording.md` for the format and the reasons behind it.
//!
//! - [`segment`]: the append-only segment file format (write, scan, repair).
//! - [`store`]: the in-memory catalogue rebuilt from the segments; retention; garbage list.
//! - [`export`]: computed exports (Matroska and raw multipart) laid out before the first byte.
//! - [`gate`]: which frames a recorder writes (the recording `fps`, motion mode's events with
//!   their pre- and post-capture).
//! - [`ring`]: motion mode's bounded pre-capture ring.
//! - [`time`]: RFC 3339 / Unix-seconds parsing and formatting.

pub mod export;
pub mod gate;
pub mod index;
pub mod ring;
pub mod segment;
pub mod store;
pub mod time;

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::frame::Frame;
use crate::hub::{Camera, Hub};
use gate::{EventSignal, Gate};
use segment::SegmentWriter;
use store::{SegFile, Selection, Store};
use time::Micros;

/// Frames queued between a camera and its writer thread: about half a second at 30 fps,
/// enough to ride out an `fdatasync`; past it frames are dropped and counted.
pub const WRITE_QUEUE: usize = 16;
/// How long a paused recorder (disk full, directory unwritable) waits before trying again.
pub const RETRY_INTERVAL: Duration = Duration::from_secs(2);
/// How often the writer applies retention and deletes released segments.
const MAINTENANCE_INTERVAL: Duration = Duration::from_secs(1);
/// Longest the writer sleeps without looking at its state (stop requests, syncs).
const TICK: Duration = Duration::from_millis(200);

/// Whether a camera records from startup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Record all the time (capture runs even without viewers).
    Continuous,
    /// Only when started with `POST /cameras/NAME/record/start`.
    Off,
    /// Only during motion events (with pre- and post-capture), and at the recording `fps`
    /// outside them when one is set.
    Motion,
}

impl Mode {
    /// The name used in the config file and `/api/state`.
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Continuous => "continuous",
            Mode::Off => "off",
            Mode::Motion => "motion",
        }
    }
}

/// Longest `pre_capture`: with [`ring::MAX_RING_FRAMES`] and [`ring::MAX_RING_BYTES`] it bounds
/// the memory a motion-mode camera holds.
pub const MAX_PRE_CAPTURE: Duration = Duration::from_secs(30);
/// Longest `post_capture`.
pub const MAX_POST_CAPTURE: Duration = Duration::from_secs(300);
/// Default `pre_capture` and `post_capture`.
pub const DEFAULT_CAPTURE_MARGIN: Duration = Duration::from_secs(5);

/// Recording settings of one camera, checked.
#[derive(Debug, Clone)]
pub struct RecordConfig {
    /// Base directory; the camera's segments go into `DIR/CAMERA/`.
    pub dir: PathBuf,
    /// Most bytes of segments kept; the oldest are deleted past it.
    pub max_bytes: u64,
    /// Most bytes kept by every camera recording into `dir`, oldest first across them.
    pub dir_max_bytes: Option<u64>,
    /// Segments whose last frame is older than this are deleted.
    pub max_age: Option<Duration>,
    /// Recording at startup, on motion, or only on request.
    pub mode: Mode,
    /// Length of one segment file.
    pub segment: Duration,
    /// Frames per second written (fewer than the camera's); in motion mode, outside events.
    pub fps: Option<f64>,
    /// Motion mode: recording begins this long before an event's start.
    pub pre_capture: Duration,
    /// Motion mode: recording goes on this long after an event's end.
    pub post_capture: Duration,
}

impl RecordConfig {
    /// Settings with the defaults: continuous, 10 GiB, no age limit, 60 s segments, every frame.
    pub fn new(dir: PathBuf) -> RecordConfig {
        RecordConfig {
            dir,
            max_bytes: 10 << 30,
            dir_max_bytes: None,
            max_age: None,
            mode: Mode::Continuous,
            segment: Duration::from_secs(60),
            fps: None,
            pre_capture: DEFAULT_CAPTURE_MARGIN,
            post_capture: DEFAULT_CAPTURE_MARGIN,
        }
    }
}

/// Counters of a recorder.
#[derive(Debug, Default)]
pub struct RecorderStats {
    /// Frames written to disk.
    pub frames_written: AtomicU64,
    /// Bytes written (records, headers included).
    pub bytes_written: AtomicU64,
    /// Frames not written: queue full (disk slower than the camera) or recording paused.
    pub frames_dropped: AtomicU64,
    /// Failed writes, creates and syncs.
    pub write_errors: AtomicU64,
    /// Segments deleted by retention.
    pub segments_deleted: AtomicU64,
    /// Recorded frames that failed their checksum when read (skipped, never served).
    pub frames_damaged: AtomicU64,
}

#[derive(Debug, Default)]
struct Health {
    /// Set while paused by an I/O error.
    error: Option<String>,
    since: Option<SystemTime>,
}

/// One camera's recorder.
pub struct Recorder {
    camera: Arc<Camera>,
    config: RecordConfig,
    dir: PathBuf,
    store: Mutex<Store>,
    enabled: watch::Sender<bool>,
    /// Motion mode: what the detector reports (see [`EventTrigger`]).
    events: Arc<watch::Sender<EventSignal>>,
    /// Whether the frames written now are an event's (pre-capture, event, post-capture).
    in_event: AtomicBool,
    health: Mutex<Health>,
    stats: RecorderStats,
    /// A pause between frames longer than this splits spans (3 frame intervals, at least 2 s).
    span_gap: Micros,
    /// Where the switch set over HTTP is kept across restarts (`STATE_DIR/recording/NAME.json`).
    switch_file: Option<PathBuf>,
}

/// Largest recording-switch file read back.
const MAX_SWITCH_FILE: u64 = 1024;

/// The switch set over HTTP before a restart, if one was kept.
fn remembered_switch(path: &Path) -> Result<Option<bool>, String> {
    let Some(text) = crate::persist::read_small(path, MAX_SWITCH_FILE)? else {
        return Ok(None);
    };
    let v: serde_json::Value = serde_json::from_str(&text)
        .map_err(|e| format!("{} is not JSON ({e}); ignored", path.display()))?;
    v.get("recording")
        .and_then(serde_json::Value::as_bool)
        .map(Some)
        .ok_or_else(|| {
            format!(
                "{} has no \"recording\": true/false; ignored",
                path.display()
            )
        })
}

/// The recording state shown in `/api/state`.
#[derive(Debug, serde::Serialize)]
pub struct RecorderStatus {
    /// `recording`, `paused` (I/O error, retrying) or `off`.
    pub state: &'static str,
    /// Configured mode: `continuous`, `motion` or `off`.
    pub mode: &'static str,
    /// Motion mode: whether recording is on now because of a motion event (its pre-capture,
    /// the event, its post-capture).
    pub event_active: bool,
    /// Recorded frames per second when fewer than the camera's (motion mode: outside events).
    pub fps: Option<f64>,
    /// Motion mode: seconds recorded before an event's start.
    pub pre_capture_seconds: Option<f64>,
    /// Motion mode: seconds recorded after an event's end.
    pub post_capture_seconds: Option<f64>,
    /// The I/O error that paused recording.
    pub error: Option<String>,
    /// The camera's segment directory; left out of answers to those who may not see it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dir: Option<String>,
    /// Bytes of segments on disk.
    pub bytes: u64,
    /// `max_bytes`.
    pub max_bytes: u64,
    /// `max_age` in seconds.
    pub max_age_seconds: Option<u64>,
    /// Segments in the catalogue.
    pub segments: usize,
    /// Frames in the catalogue.
    pub frames: usize,
    /// Oldest recorded frame (RFC 3339).
    pub oldest: Option<String>,
    /// Newest recorded frame (RFC 3339).
    pub newest: Option<String>,
    /// Frames written since start.
    pub frames_written: u64,
    /// Bytes written since start.
    pub bytes_written: u64,
    /// Frames not written (disk too slow, or paused).
    pub frames_dropped: u64,
    /// I/O errors.
    pub write_errors: u64,
    /// Segments deleted by retention.
    pub segments_deleted: u64,
    /// Recorded frames found damaged when read.
    pub frames_damaged: u64,
}

impl RecorderStatus {
    /// The same state without the on-disk path, in `dir` and in the error text: where the
    /// server keeps its files is the host's business, not every viewer's.
    pub fn without_paths(mut self) -> RecorderStatus {
        if let Some(dir) = self.dir.take() {
            self.error = self.error.map(|e| e.replace(&dir, "<recording directory>"));
        }
        self
    }
}

impl Recorder {
    /// The camera recorded.
    pub fn camera(&self) -> &Arc<Camera> {
        &self.camera
    }

    /// Counters.
    pub fn stats(&self) -> &RecorderStats {
        &self.stats
    }

    /// The catalogue, locked; hold it briefly (the writer takes it once per frame). Outside
    /// this module, use the query API ([`Recorder::spans`], [`Recorder::select`], ...).
    pub fn store(&self) -> MutexGuard<'_, Store> {
        self.store
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Gap between frames that splits spans.
    pub fn span_gap(&self) -> Micros {
        self.span_gap
    }

    /// Starts recording (idempotent), and keeps that across restarts.
    pub fn start(&self) {
        self.enabled.send_replace(true);
        self.keep_switch(true);
    }

    /// Stops recording (idempotent): the open segment is closed and capture may go idle. Kept
    /// across restarts.
    pub fn stop(&self) {
        self.enabled.send_replace(false);
        self.keep_switch(false);
    }

    fn keep_switch(&self, on: bool) {
        let Some(path) = &self.switch_file else {
            return;
        };
        let text = format!("{{\"recording\": {on}}}\n");
        if let Err(e) = crate::persist::write_atomic(path, text.as_bytes()) {
            tracing::warn!(
                camera = %self.camera.name(),
                "recording switched {} but not kept for the next start ({}): {e}",
                if on { "on" } else { "off" },
                path.display()
            );
        }
    }

    /// Whether recording is switched on.
    pub fn enabled(&self) -> bool {
        *self.enabled.borrow()
    }

    /// The settings.
    pub fn config(&self) -> &RecordConfig {
        &self.config
    }

    /// Motion mode: the input a detector reports its events to; `lead` is how long after an
    /// event's start the detector can report it at most (the ring keeps that much more than
    /// `pre_capture`). `None` in the other modes.
    pub fn trigger(&self, lead: Duration) -> Option<EventTrigger> {
        (self.config.mode == Mode::Motion).then(|| {
            self.events
                .send_modify(|s| s.lead = lead.as_micros() as Micros);
            EventTrigger(Arc::clone(&self.events))
        })
    }

    /// The I/O error recording is paused by, if any.
    pub fn error(&self) -> Option<String> {
        // Poison recovered: the health record is plain data, consistent after any panic.
        self.health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .error
            .clone()
    }

    /// The state for `/api/state`.
    pub fn status(&self) -> RecorderStatus {
        let error = self.error();
        let (bytes, segments, frames, range) = {
            let s = self.store();
            (s.bytes(), s.segments(), s.frames(), s.range())
        };
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        RecorderStatus {
            state: match (self.enabled(), error.is_some()) {
                (false, _) => "off",
                (true, false) => "recording",
                (true, true) => "paused",
            },
            mode: self.config.mode.as_str(),
            event_active: self.in_event.load(Ordering::Relaxed),
            fps: self.config.fps,
            pre_capture_seconds: (self.config.mode == Mode::Motion)
                .then_some(self.config.pre_capture.as_secs_f64()),
            post_capture_seconds: (self.config.mode == Mode::Motion)
                .then_some(self.config.post_capture.as_secs_f64()),
            error,
            dir: Some(self.dir.display().to_string()),
            bytes,
            max_bytes: self.config.max_bytes,
            max_age_seconds: self.config.max_age.map(|d| d.as_secs()),
            segments,
            frames,
            oldest: range.map(|r| time::rfc3339(r.0)),
            newest: range.map(|r| time::rfc3339(r.1)),
            frames_written: load(&self.stats.frames_written),
            bytes_written: load(&self.stats.bytes_written),
            frames_dropped: load(&self.stats.frames_dropped),
            write_errors: load(&self.stats.write_errors),
            segments_deleted: load(&self.stats.segments_deleted),
            frames_damaged: load(&self.stats.frames_damaged),
        }
    }

    fn pause(&self, what: &str, e: &std::io::Error) {
        self.stats.write_errors.fetch_add(1, Ordering::Relaxed);
        let msg = format!(
            "{what} in {}: {e} — recording paused, retrying every {}s; free disk space or fix the directory",
            self.dir.display(),
            RETRY_INTERVAL.as_secs()
        );
        let mut h = self
            .health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if h.error.is_none() {
            tracing::error!(camera = %self.camera.name(), "{msg}");
            h.since = Some(SystemTime::now());
        } else {
            tracing::debug!(camera = %self.camera.name(), "still failing: {msg}");
        }
        h.error = Some(msg);
    }

    fn resumed(&self) {
        let mut h = self
            .health
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if h.error.take().is_some() {
            let paused = h
                .since
                .take()
                .and_then(|s| s.elapsed().ok())
                .unwrap_or_default();
            tracing::info!(
                camera = %self.camera.name(),
                "recording resumed after {:.0}s paused",
                paused.as_secs_f64()
            );
        }
    }
}

/// A motion-mode recorder's input: the detector reports each event's start and end here.
#[derive(Clone)]
pub struct EventTrigger(Arc<watch::Sender<EventSignal>>);

impl EventTrigger {
    /// An event began at `start` (its first motion frame's capture time).
    pub fn started(&self, start: SystemTime) {
        self.0.send_modify(|s| {
            s.active = true;
            s.start = time::of(start);
        });
    }

    /// The event ended at `end` (its last motion frame's capture time).
    pub fn ended(&self, end: SystemTime) {
        self.0.send_modify(|s| {
            s.active = false;
            s.end = time::of(end);
        });
    }
}

/// What the record layer's queries can fail with.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The writer thread of a camera could not be started.
    #[error("cannot start the recording thread of camera {camera:?}: {source}")]
    Thread {
        /// The camera.
        camera: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// Recording is configured for a camera the server does not have.
    #[error("recording configured for unknown camera {0:?}")]
    UnknownCamera(String),
    /// A range holds more frames than one query may return.
    #[error(
        "that range holds more than {max} frames, the most one export may have: \
         export a shorter range, or a timelapse with every=SECONDS"
    )]
    TooManyFrames {
        /// The limit.
        max: usize,
    },
    /// A recorded frame failed its checksum: it is not served.
    #[error("the recording {} is damaged: {why}; the frame is skipped (mjpegd --check-recordings lists damaged ranges)", path.display())]
    Damaged {
        /// The segment file.
        path: PathBuf,
        /// Where and what.
        why: String,
    },
    /// A segment file could not be opened or read.
    #[error("cannot read the recording {}: {source}", path.display())]
    Read {
        /// The segment file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The blocking task doing the query failed (panicked or was cancelled at shutdown).
    #[error("the recording query task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

/// A recorded frame read back from disk.
#[derive(Debug)]
pub struct RecordedFrame {
    /// Capture time.
    pub t: Micros,
    /// The JPEG, as recorded.
    pub jpeg: Vec<u8>,
}

/// Reads one frame of a selection (or any frame reference) from its segment file, on a
/// blocking thread, and checks its record's CRC: a damaged frame is an error, never served.
pub async fn read_frame(file: Arc<SegFile>, off: u32, len: u32) -> Result<Vec<u8>, RecordError> {
    tokio::task::spawn_blocking(move || {
        let path = file.path();
        let f = segment::open_segment(&path, false).map_err(|source| RecordError::Read {
            path: path.clone(),
            source,
        })?;
        let jpeg =
            read_at(&f, u64::from(off), len as usize).map_err(|source| RecordError::Read {
                path: path.clone(),
                source,
            })?;
        segment::verify_record(&f, off, &jpeg).map_err(|e| match e.kind() {
            std::io::ErrorKind::InvalidData => RecordError::Damaged {
                path: path.clone(),
                why: e.to_string(),
            },
            _ => RecordError::Read {
                path: path.clone(),
                source: e,
            },
        })?;
        Ok(jpeg)
    })
    .await?
}

/// The query API: every catalogue walk runs on a blocking thread over a [`store::Snapshot`]
/// copied out under the lock, so neither the async runtime nor the writer thread (which takes
/// the lock once per frame) waits for a long range.
impl Recorder {
    /// The recorded spans in `from..=to`, at most `max` (and whether there were more).
    pub async fn spans(
        self: &Arc<Self>,
        from: Micros,
        to: Micros,
        max: usize,
    ) -> Result<(Vec<store::Span>, bool), RecordError> {
        let snap = self.store().snapshot(from, to);
        let gap = self.span_gap;
        Ok(tokio::task::spawn_blocking(move || snap.spans(from, to, gap, max)).await?)
    }

    /// The frames of `from..=to` for an export, one per `every` µs if given, at most `max`.
    pub async fn select(
        self: &Arc<Self>,
        from: Micros,
        to: Micros,
        every: Option<Micros>,
        max: usize,
    ) -> Result<Selection, RecordError> {
        let snap = self.store().snapshot(from, to);
        tokio::task::spawn_blocking(move || snap.select(from, to, every, max))
            .await?
            .map_err(|max| RecordError::TooManyFrames { max })
    }

    /// The next `max` frames of `from..=to` for a replay (their segments' frame lists may
    /// have to be loaded: on a blocking thread).
    pub async fn batch(
        self: &Arc<Self>,
        from: Micros,
        to: Micros,
        max: usize,
    ) -> Result<Selection, RecordError> {
        let snap = self.store().snapshot(from, to);
        Ok(tokio::task::spawn_blocking(move || snap.batch(from, to, max)).await?)
    }

    /// The recorded frame nearest `at` within `limit`, read from disk (`None`: no frame there).
    pub async fn nearest(
        &self,
        at: Micros,
        limit: Micros,
    ) -> Result<Option<RecordedFrame>, RecordError> {
        let snap = self.store().snapshot(at - limit, at + limit);
        let found = tokio::task::spawn_blocking(move || snap.nearest(at, limit)).await?;
        let Some((file, entry)) = found else {
            return Ok(None);
        };
        let jpeg = read_frame(file, entry.off, entry.len)
            .await
            .inspect_err(|e| self.count_damage(e))?;
        Ok(Some(RecordedFrame { t: entry.t, jpeg }))
    }

    /// Counts and logs a damaged frame found by a reader.
    pub fn count_damage(&self, e: &RecordError) {
        if matches!(e, RecordError::Damaged { .. }) {
            self.stats.frames_damaged.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(camera = %self.camera.name(), "{e}");
        }
    }
}

/// Reads `len` bytes at `off` of a segment file (blocking: call from a blocking thread).
pub fn read_at(file: &std::fs::File, off: u64, len: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, off)?;
    Ok(buf)
}

/// Deletes the oldest closed segments across `group` (the cameras recording into `dir`) until
/// they hold at most `limit` bytes together. Open segments are never deleted, so the total may
/// exceed the limit by what the cameras are writing now.
fn enforce_shared_limit(dir: &Path, limit: u64, group: &[Arc<Recorder>]) {
    let mut dropped = vec![0u64; group.len()];
    loop {
        let total: u64 = group.iter().map(|r| r.store().bytes()).sum();
        if total <= limit {
            break;
        }
        let oldest = group
            .iter()
            .enumerate()
            .filter_map(|(i, r)| r.store().oldest_closed().map(|t| (t, i)))
            .min();
        let Some((_, i)) = oldest else { break };
        if !group[i].store().drop_oldest() {
            break;
        }
        dropped[i] += 1;
    }
    for (rec, n) in group.iter().zip(dropped) {
        let errors = rec.store().collect_garbage();
        if n > 0 {
            rec.stats.segments_deleted.fetch_add(n, Ordering::Relaxed);
            tracing::debug!(camera = %rec.camera.name(), dir = %dir.display(), dropped = n, "shared retention deleted segments");
        }
        for e in errors {
            tracing::warn!(camera = %rec.camera.name(), "{e}");
        }
    }
}

/// What `mjpegd --check-recordings` found.
#[derive(Debug, Default)]
pub struct CheckReport {
    /// Segments read.
    pub segments: usize,
    /// Records whose CRC matched.
    pub good: u64,
    /// Each damaged range: the segment, and what is wrong where.
    pub damaged: Vec<(PathBuf, segment::Damage)>,
    /// Files that could not be read at all.
    pub unreadable: Vec<String>,
}

/// Reads every segment under `dir` (a camera's directory, or a recording directory holding
/// cameras' directories) and checks every record's CRC. Blocking; reads everything once.
pub fn check_recordings(dir: &Path) -> std::io::Result<CheckReport> {
    let mut report = CheckReport::default();
    let mut dirs = vec![dir.to_path_buf()];
    for e in std::fs::read_dir(dir)?.filter_map(Result::ok) {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            dirs.push(e.path());
        }
    }
    for d in dirs {
        let mut segs: Vec<PathBuf> = std::fs::read_dir(&d)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == segment::EXTENSION))
            .collect();
        segs.sort();
        for seg in segs {
            match segment::check(&seg) {
                Ok((good, damage)) => {
                    report.segments += 1;
                    report.good += good;
                    report
                        .damaged
                        .extend(damage.into_iter().map(|d| (seg.clone(), d)));
                }
                Err(e) => report.unreadable.push(format!("{}: {e}", seg.display())),
            }
        }
    }
    Ok(report)
}

/// Every camera's recorder.
pub struct Recordings {
    recorders: Vec<Arc<Recorder>>,
    writers: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

impl Recordings {
    /// Opens each camera's catalogue (scanning its segments, repairing a torn tail) and starts
    /// its recorder. A directory that cannot be used does not stop the server: that recorder
    /// starts paused with the error and retries. Must be called within a tokio runtime.
    pub fn start(
        hub: &Hub,
        configs: Vec<(String, RecordConfig)>,
        state_dir: Option<&Path>,
        shutdown: CancellationToken,
    ) -> Result<Arc<Recordings>, RecordError> {
        let mut recorders = Vec::with_capacity(configs.len());
        let mut writers = Vec::with_capacity(configs.len());
        // The catalogues are read side by side: a month of segments is mostly system calls
        // (a directory listing, one small index read per segment), per camera.
        let opened: Vec<std::io::Result<(Store, store::ScanReport)>> = std::thread::scope(|s| {
            let handles: Vec<_> = configs
                .iter()
                .map(|(name, config)| {
                    let dir = config.dir.join(name);
                    s.spawn(move || Store::open(&dir))
                })
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join().unwrap_or_else(|_| {
                        Err(std::io::Error::other("the catalogue scan panicked"))
                    })
                })
                .collect()
        });
        for ((name, config), opened) in configs.into_iter().zip(opened) {
            let camera = hub
                .get(&name)
                .ok_or_else(|| RecordError::UnknownCamera(name.clone()))?;
            let dir = config.dir.join(&name);
            let (store, error) = match opened {
                Ok((store, report)) => {
                    for r in &report.repaired {
                        tracing::warn!(camera = %name, "repaired a torn segment: {r}");
                    }
                    for s in &report.skipped {
                        tracing::warn!(camera = %name, "skipped a file that is not a usable segment: {s}");
                    }
                    tracing::info!(
                        camera = %name,
                        dir = %dir.display(),
                        segments = report.segments,
                        frames = report.frames,
                        bytes = report.bytes,
                        indexed = report.indexed,
                        "recordings catalogued in {:.1} ms",
                        report.took.as_secs_f64() * 1000.0
                    );
                    (store, None)
                }
                Err(e) => (Store::default(), Some(e)),
            };
            // Frames come at the slower of the camera's and the recording's rate.
            let fps = camera
                .config()
                .fps
                .min(config.fps.unwrap_or(f64::MAX))
                .max(0.01);
            let span_gap = Duration::from_secs_f64((3.0 / fps).max(2.0));
            // A switch set over HTTP wins over the configured mode until switched again.
            let switch_file = state_dir.map(|d| d.join("recording").join(format!("{name}.json")));
            let mut enabled = config.mode != Mode::Off;
            match switch_file.as_deref().map(remembered_switch) {
                Some(Ok(Some(on))) => {
                    if on != enabled {
                        tracing::info!(
                            camera = %name,
                            "recording is {} as switched over HTTP before the restart (config: mode = \"{}\"); POST /cameras/{name}/record/{} to change it",
                            if on { "on" } else { "off" },
                            config.mode.as_str(),
                            if on { "stop" } else { "start" }
                        );
                    }
                    enabled = on;
                }
                Some(Err(e)) => tracing::warn!(camera = %name, "{e}"),
                Some(Ok(None)) | None => {}
            }
            let rec = Arc::new(Recorder {
                camera,
                dir,
                store: Mutex::new(store),
                enabled: watch::channel(enabled).0,
                events: Arc::new(watch::channel(EventSignal::default()).0),
                in_event: AtomicBool::new(false),
                health: Mutex::new(Health::default()),
                stats: RecorderStats::default(),
                span_gap: span_gap.as_micros() as Micros,
                switch_file,
                config,
            });
            if let Some(e) = error {
                rec.pause("cannot open the recording directory", &e);
            }
            let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(WRITE_QUEUE);
            let writer = Arc::clone(&rec);
            let thread = std::thread::Builder::new()
                .name(format!("record-{name}"))
                .spawn(move || Writer::new(writer).run(&rx))
                .map_err(|source| RecordError::Thread {
                    camera: name.clone(),
                    source,
                })?;
            writers.push(thread);
            tokio::spawn(feed(Arc::clone(&rec), tx, shutdown.child_token()));
            recorders.push(rec);
        }
        // Directories with a limit shared by their cameras: one thread keeps each under it.
        let mut shared: Vec<(PathBuf, u64, Vec<Arc<Recorder>>)> = Vec::new();
        for rec in &recorders {
            let Some(limit) = rec.config.dir_max_bytes else {
                continue;
            };
            match shared.iter_mut().find(|(d, _, _)| *d == rec.config.dir) {
                Some((_, _, group)) => group.push(Arc::clone(rec)),
                None => shared.push((rec.config.dir.clone(), limit, vec![Arc::clone(rec)])),
            }
        }
        for (dir, limit, group) in shared {
            let stop = shutdown.clone();
            let thread = std::thread::Builder::new()
                .name("record-shared".into())
                .spawn(move || {
                    while !stop.is_cancelled() {
                        enforce_shared_limit(&dir, limit, &group);
                        std::thread::sleep(MAINTENANCE_INTERVAL);
                    }
                })
                .map_err(|source| RecordError::Thread {
                    camera: "(shared retention)".into(),
                    source,
                })?;
            writers.push(thread);
        }
        Ok(Arc::new(Recordings {
            recorders,
            writers: Mutex::new(writers),
        }))
    }

    /// After shutdown: waits (at most `limit`) for the writers to sync and close their open
    /// segments, so a clean stop leaves nothing unsynced. Blocking.
    pub fn wait_closed(&self, limit: Duration) {
        let deadline = Instant::now() + limit;
        let writers = std::mem::take(
            &mut *self
                .writers
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        );
        for w in writers {
            while !w.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            if w.is_finished() {
                let _ = w.join();
            } else {
                tracing::warn!(
                    "a recording writer did not finish in time; its last second may be unsynced"
                );
            }
        }
    }

    /// The recorder of camera `name`.
    pub fn get(&self, name: &str) -> Option<&Arc<Recorder>> {
        self.recorders.iter().find(|r| r.camera.name() == name)
    }

    /// Every recorder.
    pub fn all(&self) -> &[Arc<Recorder>] {
        &self.recorders
    }
}

/// What the feed hands the writer thread: one frame, or a motion event's pre-capture burst
/// (one queue slot, so a burst of frames from the ring is not cut by the 16-frame queue).
enum Job {
    One(Frame),
    Burst(Vec<Frame>),
}

impl Job {
    fn frames(&self) -> usize {
        match self {
            Job::One(_) => 1,
            Job::Burst(v) => v.len(),
        }
    }
}

/// Forwards the camera's frames that the [`Gate`] picks to the writer while recording is on;
/// the subscription it holds meanwhile keeps capture running (in motion mode all the time,
/// since the pre-capture ring needs the frames before an event).
async fn feed(rec: Arc<Recorder>, tx: SyncSender<Job>, shutdown: CancellationToken) {
    let mut enabled = rec.enabled.subscribe();
    let mut events = rec.events.subscribe();
    let send = |job: Job| -> bool {
        let n = job.frames() as u64;
        match tx.try_send(job) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                rec.stats.frames_dropped.fetch_add(n, Ordering::Relaxed);
                true
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    };
    loop {
        while !*enabled.borrow_and_update() {
            tokio::select! {
                () = shutdown.cancelled() => return,
                r = enabled.changed() => if r.is_err() { return },
            }
        }
        let mut gate = Gate::new(&rec.config);
        let mut out = Vec::new();
        // An event may be going on already (recording switched on during it).
        gate.on_event(*events.borrow_and_update(), &mut out);
        out.clear();
        let mut cut_warned = false;
        let mut sub = rec.camera.subscribe();
        loop {
            tokio::select! {
                biased;
                () = shutdown.cancelled() => return,
                r = enabled.changed() => {
                    if r.is_err() { return }
                    if !*enabled.borrow_and_update() { break }
                }
                r = events.changed() => {
                    if r.is_err() { return }
                    let signal = *events.borrow_and_update();
                    gate.on_event(signal, &mut out);
                    if !out.is_empty() && !send(Job::Burst(std::mem::take(&mut out))) {
                        return;
                    }
                }
                r = sub.frames().changed() => {
                    if r.is_err() { return }
                    let frame = sub.frames().borrow_and_update().clone();
                    let Some(frame) = frame else { continue };
                    // No-signal frames are not video: their absence is the gap in the catalogue.
                    if !frame.online() {
                        continue;
                    }
                    gate.on_frame(frame, &mut out);
                    for frame in out.drain(..) {
                        if !send(Job::One(frame)) {
                            return;
                        }
                    }
                }
            }
            rec.in_event.store(gate.in_event(), Ordering::Relaxed);
            if !cut_warned && gate.ring_cut() > 0 {
                cut_warned = true;
                // Once per switch-on: the caps, not the setting, bound the pre-capture.
                tracing::warn!(
                    camera = %rec.camera.name(),
                    "the pre-capture ring is full (at most {} frames, {} MiB): pre_capture is \
                     shorter than configured for this camera; lower pre_capture or the camera's \
                     fps or size",
                    ring::MAX_RING_FRAMES,
                    ring::MAX_RING_BYTES >> 20
                );
            }
        }
        rec.in_event.store(false, Ordering::Relaxed);
    }
}

/// The writer thread's state: the open segment and whether writing is paused.
struct Writer {
    rec: Arc<Recorder>,
    open: Option<(SegmentWriter, u64)>,
    retry_at: Option<Instant>,
    last_maintenance: Instant,
}

impl Writer {
    fn new(rec: Arc<Recorder>) -> Writer {
        let paused = rec.error().is_some();
        Writer {
            rec,
            open: None,
            retry_at: paused.then(|| Instant::now() + RETRY_INTERVAL),
            last_maintenance: Instant::now(),
        }
    }

    fn run(mut self, rx: &Receiver<Job>) {
        loop {
            match rx.recv_timeout(TICK) {
                Ok(Job::One(frame)) => self.write(&frame),
                Ok(Job::Burst(frames)) => {
                    for frame in &frames {
                        self.write(frame);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.close();
                    return;
                }
            }
            if !self.rec.enabled() {
                self.close();
                if self.retry_at.take().is_some() {
                    // Stopped while paused: nothing is failing any more.
                    self.rec.resumed();
                }
            }
            if let Some((w, _)) = &mut self.open {
                if let Err(e) = w.sync_if_due() {
                    self.rec.pause("cannot sync the segment", &e);
                    self.retry_at = Some(Instant::now() + RETRY_INTERVAL);
                    self.close();
                }
            }
            if self.last_maintenance.elapsed() >= MAINTENANCE_INTERVAL {
                self.last_maintenance = Instant::now();
                self.maintain();
            }
        }
    }

    fn write(&mut self, frame: &Frame) {
        let rec = Arc::clone(&self.rec);
        if self.retry_at.is_some_and(|at| Instant::now() < at) {
            rec.stats.frames_dropped.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let t = time::of(frame.captured());
        let jpeg = frame.jpeg();
        let size = (
            u16::try_from(frame.width()).unwrap_or(u16::MAX),
            u16::try_from(frame.height()).unwrap_or(u16::MAX),
        );
        let max_age = rec.config.segment.as_micros() as Micros;
        if self
            .open
            .as_ref()
            .is_some_and(|(w, _)| !w.fits(t, jpeg.len(), size.0, size.1, max_age))
        {
            self.close();
            self.maintain();
        }
        if self.open.is_none() {
            let created = store::create_dir(&rec.dir)
                .and_then(|()| SegmentWriter::create(&rec.dir, t, size.0, size.1));
            match created {
                Ok(w) => {
                    let id = rec.store().add_open(w.path().to_owned(), size, w.len());
                    self.open = Some((w, id));
                }
                Err(e) => {
                    rec.pause("cannot create a segment", &e);
                    self.retry_at = Some(Instant::now() + RETRY_INTERVAL);
                    rec.stats.frames_dropped.fetch_add(1, Ordering::Relaxed);
                    return;
                }
            }
        }
        let Some((w, id)) = &mut self.open else {
            return;
        };
        match w.append(t, frame.seq(), &jpeg) {
            Ok(entry) => {
                let len = w.len();
                let id = *id;
                rec.store().push(id, entry, len);
                rec.stats.frames_written.fetch_add(1, Ordering::Relaxed);
                rec.stats.bytes_written.fetch_add(
                    segment::RECORD_HEADER_LEN + jpeg.len() as u64,
                    Ordering::Relaxed,
                );
                if self.retry_at.take().is_some() {
                    rec.resumed();
                }
            }
            Err(e) => {
                rec.pause("cannot write a frame", &e);
                self.retry_at = Some(Instant::now() + RETRY_INTERVAL);
                rec.stats.frames_dropped.fetch_add(1, Ordering::Relaxed);
                self.close();
            }
        }
    }

    /// Syncs and closes the open segment, if any.
    fn close(&mut self) {
        let Some((w, id)) = self.open.take() else {
            return;
        };
        let path = w.path().to_owned();
        let empty = w.is_empty();
        if let Err(e) = w.finish() {
            self.rec.pause("cannot sync the segment", &e);
        }
        let sealed = self.rec.store().seal(id);
        // Outside the lock: readers and the next frames need not wait for the index.
        if let Some((seg, summary, entries)) = sealed {
            if let Err(e) = index::write(&seg, &summary, &entries) {
                tracing::warn!(segment = %seg.display(), "cannot write the segment's index (it is rebuilt when needed): {e}");
            }
            if let (Some(dir), Some(name)) = (seg.parent(), seg.file_name()) {
                if let Err(e) = index::append_catalogue(dir, name, &summary) {
                    tracing::warn!(dir = %dir.display(), "cannot add the segment to the catalogue file (its index is read instead): {e}");
                }
            }
        }
        if empty {
            tracing::debug!(path = %path.display(), "dropped an empty segment");
        }
    }

    /// Retention and deletion of released segments.
    fn maintain(&mut self) {
        let rec = &self.rec;
        let now = time::of(SystemTime::now());
        let max_age = rec.config.max_age.map(|d| d.as_micros() as Micros);
        let (dropped, errors) = {
            let mut store = rec.store();
            let dropped = store.retain(rec.config.max_bytes, max_age, now);
            (dropped, store.collect_garbage())
        };
        if dropped > 0 {
            rec.stats
                .segments_deleted
                .fetch_add(dropped as u64, Ordering::Relaxed);
            tracing::debug!(camera = %rec.camera.name(), dropped, "retention deleted segments");
        }
        for e in errors {
            tracing::warn!(camera = %rec.camera.name(), "{e}");
        }
    }
}
