//! Motion detection on running cameras: one task per camera with motion configured, holding a
//! subscription (the detector is demand: capture runs with nobody watching) and analysing the
//! frames it picks on the encoder pool, never on the capture or viewer path.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio_util::sync::CancellationToken;

use super::hooks::{HookRunner, Which};
use super::{Change, Detector, Event, MotionConfig, MotionError, Outcome};
use crate::hub::{Camera, Hub};
use crate::pool::{Ordered, Pool};
use crate::record::EventTrigger;

/// Most events kept in memory per camera; the oldest go first. Each holds one refcounted JPEG
/// (its best frame), so 1000 events of 100 KB frames is at most about 100 MB per camera.
pub const MAX_EVENTS: usize = 1000;

/// One camera's live motion state, shared with HTTP.
pub struct CameraMotion {
    name: String,
    config: MotionConfig,
    inner: Mutex<Live>,
    events_total: AtomicU64,
    frames_analysed: AtomicU64,
    frames_failed: AtomicU64,
    /// A motion-mode recorder of this camera, told of every event's start and end.
    trigger: Option<EventTrigger>,
    /// `on_event_start` / `on_event_end`.
    hooks: Option<HookRunner>,
    /// Where event starts and ends go to the bus (`mjpegd.events.CAMERA`), once the bus is up.
    bus: OnceLock<tokio::sync::mpsc::Sender<Vec<u8>>>,
}

/// Event messages queued for the bus per camera; past it they are dropped (and logged).
#[cfg(feature = "bus")]
const BUS_QUEUE: usize = 64;

/// Subject of a camera's motion events.
pub fn events_subject(camera: &str) -> String {
    format!("mjpegd.events.{camera}")
}

/// An event start or end as published on `mjpegd.events.CAMERA`: the `/cameras/NAME/events`
/// entry with the camera and the state.
#[derive(serde::Serialize)]
struct BusEvent<'a> {
    camera: &'a str,
    state: &'static str,
    #[serde(flatten)]
    info: EventInfo,
}

#[derive(Default)]
struct Live {
    score: f64,
    current: Option<Event>,
    /// Ended events, oldest first, at most [`MAX_EVENTS`].
    ended: VecDeque<Event>,
}

/// A point-in-time view of a camera's motion state.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MotionState {
    /// Score of the last analysed frame.
    pub score: f64,
    /// Whether an event is going on.
    pub in_event: bool,
    /// Events started since the server started.
    pub events_total: u64,
    /// Frames analysed.
    pub frames_analysed: u64,
    /// Frames that did not decode.
    pub frames_failed: u64,
}

/// An event as `/cameras/NAME/events` lists it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct EventInfo {
    /// Event id (unique per camera and process).
    pub id: u64,
    /// Start, RFC 3339 UTC.
    pub start: String,
    /// End, RFC 3339 UTC; `null` while it goes on.
    pub end: Option<String>,
    /// Start, Unix microseconds.
    pub start_us: i64,
    /// End, Unix microseconds.
    pub end_us: Option<i64>,
    /// Highest score.
    pub peak_score: f64,
    /// Analysed frames with motion.
    pub frames: u64,
    /// The best frame's URL.
    pub frame_url: String,
}

impl CameraMotion {
    /// The camera's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The settings.
    pub fn config(&self) -> &MotionConfig {
        &self.config
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Live> {
        // Every update leaves `Live` consistent, so a panic elsewhere cannot corrupt it.
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The current score and event flag.
    pub fn state(&self) -> MotionState {
        let live = self.lock();
        MotionState {
            score: live.score,
            in_event: live.current.is_some(),
            events_total: self.events_total.load(Ordering::Relaxed),
            frames_analysed: self.frames_analysed.load(Ordering::Relaxed),
            frames_failed: self.frames_failed.load(Ordering::Relaxed),
        }
    }

    /// Events overlapping `from..=to` (Unix microseconds), oldest first, the current one last.
    pub fn events(&self, from: i64, to: i64) -> Vec<EventInfo> {
        let live = self.lock();
        live.ended
            .iter()
            .chain(live.current.iter())
            .filter(|e| {
                let start = crate::record::time::of(e.start);
                let end = e.end.map_or(i64::MAX, crate::record::time::of);
                start <= to && end >= from
            })
            .map(|e| self.info(e))
            .collect()
    }

    /// The best frame of event `id`.
    pub fn best_frame(&self, id: u64) -> Option<Bytes> {
        let live = self.lock();
        live.ended
            .iter()
            .chain(live.current.iter())
            .find(|e| e.id == id)
            .map(|e| e.best_frame.clone())
    }

    fn info(&self, e: &Event) -> EventInfo {
        use crate::record::time::{of, rfc3339};
        EventInfo {
            id: e.id,
            start: rfc3339(of(e.start)),
            end: e.end.map(|t| rfc3339(of(t))),
            start_us: of(e.start),
            end_us: e.end.map(of),
            peak_score: e.peak,
            frames: e.frames,
            frame_url: format!("/cameras/{}/events/{}/frame.jpg", self.name, e.id),
        }
    }

    /// Runs the event's hook and queues its bus message; never waits.
    fn announce(&self, e: &Event, which: Which) {
        if let Some(h) = &self.hooks {
            let secs = (which == Which::End).then(|| {
                e.end
                    .and_then(|end| end.duration_since(e.start).ok())
                    .map_or(0.0, |d| d.as_secs_f64())
            });
            h.fire(which, e.id, secs);
        }
        if let Some(tx) = self.bus.get() {
            let msg = BusEvent {
                camera: &self.name,
                state: match which {
                    Which::Start => "start",
                    Which::End => "end",
                },
                info: self.info(e),
            };
            let Ok(json) = serde_json::to_vec(&msg) else {
                return;
            };
            if tx.try_send(json).is_err() {
                tracing::warn!(camera = %self.name, event = e.id, "bus: motion event message dropped (the bus is behind)");
            }
        }
    }

    /// Publishes this camera's event starts and ends on `mjpegd.events.CAMERA` from now on, in
    /// order, from one task; a message the server cannot take while disconnected is dropped.
    /// Must be called within the tokio runtime.
    #[cfg(feature = "bus")]
    pub fn publish_events(&self, link: Arc<crate::link::Link>, shutdown: CancellationToken) {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<u8>>(BUS_QUEUE);
        if self.bus.set(tx).is_err() {
            return;
        }
        let name = self.name.clone();
        tokio::spawn(async move {
            let subject = events_subject(&name);
            let client = tokio::select! {
                () = shutdown.cancelled() => return,
                c = link.client() => match c {
                    Ok(c) => c,
                    Err(e) => {
                        tracing::error!(camera = %name, "{e}; motion events are not published");
                        return;
                    }
                },
            };
            loop {
                let msg = tokio::select! {
                    () = shutdown.cancelled() => break,
                    m = rx.recv() => match m { Some(m) => m, None => break },
                };
                if let Err(e) = client.publish(subject.clone(), msg.into()).await {
                    tracing::warn!(camera = %name, error = %e, "bus: cannot publish a motion event");
                }
            }
            // What was queued before shutdown still goes out.
            while let Ok(m) = rx.try_recv() {
                let _ = client.publish(subject.clone(), m.into()).await;
            }
            let _ = client.flush().await;
        });
    }

    fn apply(&self, outcome: &Outcome, current: Option<&Event>) {
        let mut live = self.lock();
        live.score = outcome.score;
        match &outcome.change {
            Change::Started(e) => {
                self.events_total.fetch_add(1, Ordering::Relaxed);
                if let Some(t) = &self.trigger {
                    t.started(e.start);
                }
                tracing::info!(camera = %self.name, event = e.id, score = outcome.score, "motion event started");
                self.announce(e, Which::Start);
            }
            Change::Ended(e) => {
                let secs = e
                    .end
                    .and_then(|end| end.duration_since(e.start).ok())
                    .map_or(0.0, |d| d.as_secs_f64());
                tracing::info!(camera = %self.name, event = e.id, seconds = secs, peak = e.peak, "motion event ended");
                if let Some(t) = &self.trigger {
                    t.ended(e.end.unwrap_or(e.start));
                }
                self.announce(e, Which::End);
                if live.ended.len() >= MAX_EVENTS {
                    live.ended.pop_front();
                }
                live.ended.push_back(e.clone());
            }
            Change::None => {}
        }
        live.current = current.cloned();
    }

    fn end_current(&self, e: Event) {
        tracing::info!(camera = %self.name, event = e.id, peak = e.peak, "motion event ended (capture stopped)");
        if let Some(t) = &self.trigger {
            t.ended(e.end.unwrap_or(e.start));
        }
        self.announce(&e, Which::End);
        let mut live = self.lock();
        live.current = None;
        if live.ended.len() >= MAX_EVENTS {
            live.ended.pop_front();
        }
        live.ended.push_back(e);
    }
}

/// Every camera's motion detection.
pub struct Motion {
    cameras: HashMap<String, Arc<CameraMotion>>,
}

impl Motion {
    /// Starts a detector task per camera in `configs`; fails on a camera the hub does not have.
    /// `triggers` gives each motion-mode recorder's input by camera name (see
    /// [`crate::record::Recorder::trigger`] and [`Motion::lead`]). Must be called within the
    /// tokio runtime.
    pub fn start(
        hub: &Hub,
        configs: Vec<(String, MotionConfig)>,
        mut triggers: HashMap<String, EventTrigger>,
        shutdown: CancellationToken,
    ) -> Result<Arc<Motion>, String> {
        let mut cameras = HashMap::new();
        for (name, config) in configs {
            let camera = hub.get(&name).ok_or_else(|| {
                format!("motion detection for camera {name:?}: no such camera is declared")
            })?;
            let m = Arc::new(CameraMotion {
                name: name.clone(),
                config: config.clone(),
                inner: Mutex::new(Live::default()),
                events_total: AtomicU64::new(0),
                frames_analysed: AtomicU64::new(0),
                frames_failed: AtomicU64::new(0),
                trigger: triggers.remove(&name),
                hooks: HookRunner::new(&name, &config.hooks),
                bus: OnceLock::new(),
            });
            tokio::spawn(run(
                camera,
                hub.context().pool(),
                Arc::clone(&m),
                Detector::new(config),
                shutdown.child_token(),
            ));
            cameras.insert(name, m);
        }
        Ok(Arc::new(Motion { cameras }))
    }

    /// Longest time after an event's start before the detector can report it: `min_frames`
    /// analysed frames, plus a second for the analysis queue and decoding.
    pub fn lead(config: &MotionConfig) -> Duration {
        Duration::from_secs_f64(f64::from(config.min_frames) / config.fps.max(0.1) + 1.0)
    }

    /// A camera's motion state, if it has motion detection.
    pub fn get(&self, name: &str) -> Option<&Arc<CameraMotion>> {
        self.cameras.get(name)
    }

    /// Every camera with motion detection.
    pub fn cameras(&self) -> impl Iterator<Item = &Arc<CameraMotion>> {
        self.cameras.values()
    }
}

type Job = (Detector, Result<Outcome, MotionError>);

/// Picks frames at the analysis rate and analyses each on the pool; while a frame is being
/// analysed, newer ones coalesce in the camera's latest-frame channel.
async fn run(
    camera: Arc<Camera>,
    pool: Option<Arc<Pool>>,
    m: Arc<CameraMotion>,
    mut detector: Detector,
    shutdown: CancellationToken,
) {
    let mut sub = camera.subscribe();
    let mut pipeline: Option<Ordered<Job>> = pool.map(|p| Ordered::new(p, 1));
    let mut last_seq = 0;
    loop {
        tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            r = sub.frames().changed() => if r.is_err() { break },
        }
        let Some(frame) = sub.frames().borrow_and_update().clone() else {
            continue;
        };
        if !frame.online() || frame.seq() <= last_seq || !detector.due(frame.captured_mono()) {
            continue;
        }
        last_seq = frame.seq();
        let (jpeg, mono, wall): (Bytes, _, SystemTime) =
            (frame.jpeg(), frame.captured_mono(), frame.captured());
        let job = move || {
            let out = detector.analyse(&jpeg, mono, wall);
            (detector, out)
        };
        let done = match &mut pipeline {
            Some(p) => {
                p.submit(job);
                match p.next().await {
                    Some(Ok(done)) => done,
                    // The detector panicked (a bug) and is gone with its job: stop detecting
                    // rather than restart with a lost reference.
                    _ => {
                        tracing::error!(camera = %m.name, "motion analysis failed; motion detection stops for this camera");
                        return;
                    }
                }
            }
            None => match tokio::task::spawn_blocking(job).await {
                Ok(done) => done,
                Err(e) => {
                    tracing::error!(camera = %m.name, error = %e, "motion analysis failed; motion detection stops for this camera");
                    return;
                }
            },
        };
        detector = done.0;
        match done.1 {
            Ok(outcome) => {
                m.frames_analysed.fetch_add(1, Ordering::Relaxed);
                m.apply(&outcome, detector.current());
            }
            Err(e) => {
                // Per frame, so debug only; the count is in /api/state.
                m.frames_failed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(camera = %m.name, error = %e, "frame not analysed");
            }
        }
    }
    if let Some(e) = detector.finish() {
        m.end_current(e);
    }
}

impl Motion {
    /// Appends the motion families to a `/metrics` answer.
    pub fn write_metrics(&self, out: &mut String) {
        use std::fmt::Write;
        let mut cams: Vec<&Arc<CameraMotion>> = self.cameras.values().collect();
        cams.sort_by(|a, b| a.name.cmp(&b.name));
        type Value = fn(&MotionState) -> f64;
        let families: [(&str, &str, &str, Value); 4] = [
            (
                "mjpegd_motion_events_total",
                "counter",
                "Motion events started.",
                |s| s.events_total as f64,
            ),
            (
                "mjpegd_motion_score",
                "gauge",
                "Share of changed pixels in the last analysed frame.",
                |s| s.score,
            ),
            (
                "mjpegd_motion_in_event",
                "gauge",
                "1 while a motion event goes on.",
                |s| f64::from(u8::from(s.in_event)),
            ),
            (
                "mjpegd_motion_frames_analysed_total",
                "counter",
                "Frames analysed for motion.",
                |s| s.frames_analysed as f64,
            ),
        ];
        let states: Vec<(&str, MotionState)> =
            cams.iter().map(|c| (c.name.as_str(), c.state())).collect();
        for (name, kind, help, value) in families {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (cam, s) in &states {
                let _ = writeln!(out, "{name}{{camera=\"{cam}\"}} {}", value(s));
            }
        }
    }

    /// The `/api/state` section: per camera, the score and whether an event goes on.
    pub fn state_json(&self) -> serde_json::Value {
        let map: serde_json::Map<String, serde_json::Value> = self
            .cameras
            .values()
            .map(|c| {
                let v = serde_json::to_value(c.state()).unwrap_or(serde_json::Value::Null);
                (c.name.clone(), v)
            })
            .collect();
        serde_json::Value::Object(map)
    }
}
