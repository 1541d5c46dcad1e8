//! The capture lifecycle's own timing (idle timeout, source timeout, no-signal interval,
//! backoff) on a paused tokio clock: exact to the millisecond and instant to run, where real
//! time would take minutes and only allow loose bounds. The end-to-end behaviour over real
//! sockets is in `tests/lifecycle.rs`.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use bytes::Bytes;
use tokio::time::{Instant, sleep};
use tokio_util::sync::CancellationToken;

use super::{Camera, CameraConfig, Demand};
use crate::frame::{Frame, Image};
use crate::render::Canvas;
use crate::source::{BoxFuture, Opener, Source, SourceError};

/// What one opening of the [`Scripted`] source does.
#[derive(Clone, Copy, Debug)]
enum Opening {
    /// The open fails at once.
    Fail,
    /// Delivers frames at 10 fps for this long, then fails.
    FramesFor(Duration),
    /// Delivers frames at 10 fps until closed.
    Forever,
    /// Delivers this many frames, then never another.
    HangAfter(u32),
}

const FRAME_INTERVAL: Duration = Duration::from_millis(100);

#[derive(Default)]
struct Log {
    opens: Vec<Instant>,
    frames: usize,
}

/// A source following a script of openings (the last one repeats), logging on the paused clock.
struct Scripted {
    script: Mutex<VecDeque<Opening>>,
    log: Arc<Mutex<Log>>,
    jpeg: Bytes,
}

struct ScriptedSource {
    opening: Opening,
    opened: Instant,
    sent: u32,
    log: Arc<Mutex<Log>>,
    jpeg: Bytes,
}

impl Opener for Scripted {
    fn open(&self) -> BoxFuture<'_, Result<Box<dyn Source>, SourceError>> {
        Box::pin(async move {
            let opening = {
                let mut script = self.script.lock().unwrap_or_else(PoisonError::into_inner);
                match script.len() {
                    0 => Opening::Forever,
                    1 => script[0],
                    _ => script.pop_front().unwrap_or(Opening::Forever),
                }
            };
            lock(&self.log).opens.push(Instant::now());
            if let Opening::Fail = opening {
                return Err(SourceError::new("scripted open failure"));
            }
            let s: Box<dyn Source> = Box::new(ScriptedSource {
                opening,
                opened: Instant::now(),
                sent: 0,
                log: Arc::clone(&self.log),
                jpeg: self.jpeg.clone(),
            });
            Ok(s)
        })
    }

    fn describe(&self) -> String {
        "scripted (paused clock)".into()
    }
}

impl Source for ScriptedSource {
    fn next_frame(&mut self) -> BoxFuture<'_, Result<Image, SourceError>> {
        Box::pin(async move {
            match self.opening {
                Opening::FramesFor(d) if self.opened.elapsed() >= d => {
                    return Err(SourceError::new("scripted failure"));
                }
                Opening::HangAfter(n) if self.sent >= n => std::future::pending::<()>().await,
                _ => {}
            }
            // The first frame at once, then one per interval.
            if self.sent > 0 {
                sleep(FRAME_INTERVAL).await;
            }
            self.sent += 1;
            lock(&self.log).frames += 1;
            Ok(Image {
                jpeg: self.jpeg.clone(),
                width: 16,
                height: 16,
            })
        })
    }
}

fn lock(log: &Mutex<Log>) -> std::sync::MutexGuard<'_, Log> {
    log.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A camera with the scripted source; capture runs on the test's (paused) runtime.
fn camera(script: &[Opening], idle_timeout: Duration) -> (Arc<Camera>, Arc<Mutex<Log>>) {
    let log = Arc::new(Mutex::new(Log::default()));
    let opener = Arc::new(Scripted {
        script: Mutex::new(script.iter().copied().collect()),
        log: Arc::clone(&log),
        jpeg: Canvas::new(16, 16, [200, 30, 30])
            .encode(70)
            .expect("encode"),
    });
    let config = CameraConfig {
        name: "paused".into(),
        opener,
        width: 32,
        height: 24,
        quality: 50,
        idle_timeout,
        source_timeout: Duration::from_secs(5),
        transform: crate::transform::Transform::default(),
        fps: 10.0,
        stream_size: None,
        drop_same_frames: false,
        overlay: None,
        controls: Default::default(),
    };
    (
        Arc::new(Camera::new(
            config,
            Arc::default(),
            CancellationToken::new(),
        )),
        log,
    )
}

async fn wait_demand(camera: &Camera, pred: impl Fn(&Demand) -> bool) {
    let mut rx = camera.watch_demand();
    // On a paused clock a wait that never ends would auto-advance forever: bound it.
    tokio::time::timeout(Duration::from_secs(3600), rx.wait_for(|d| pred(d)))
        .await
        .expect("demand condition never reached")
        .expect("camera gone");
}

/// Tolerance for "exactly": the timer wheel's millisecond resolution.
fn about(got: Duration, want: Duration) -> bool {
    got >= want && got <= want + Duration::from_millis(2)
}

#[tokio::test(start_paused = true)]
async fn capture_stops_exactly_one_idle_timeout_after_the_last_watcher_leaves() {
    let idle = Duration::from_secs(10);
    let (cam, log) = camera(&[Opening::Forever], idle);
    let mut sub = cam.subscribe();
    sub.frames().changed().await.expect("a first frame");
    sleep(Duration::from_secs(3)).await;
    drop(sub);
    let left = Instant::now();
    wait_demand(&cam, |d| !d.running).await;
    let took = left.elapsed();
    assert!(
        about(took, idle),
        "capture stopped {took:?} after the last watcher left, not {idle:?}"
    );
    assert!(
        cam.latest().is_none(),
        "a stopped camera keeps no stale frame"
    );
    let frames = lock(&log).frames;
    sleep(Duration::from_secs(60)).await;
    assert_eq!(
        lock(&log).frames,
        frames,
        "no frames are produced while idle"
    );
    assert_eq!(lock(&log).opens.len(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_watcher_returning_before_the_idle_timeout_keeps_the_same_capture() {
    let idle = Duration::from_secs(10);
    let (cam, log) = camera(&[Opening::Forever], idle);
    let mut sub = cam.subscribe();
    sub.frames().changed().await.expect("a first frame");
    drop(sub);
    sleep(idle - Duration::from_millis(5)).await;
    let mut again = cam.subscribe();
    assert!(
        cam.demand().running,
        "still capturing just before the idle timeout"
    );
    // Long past the first idle deadline: the returned watcher keeps capture alive.
    sleep(Duration::from_secs(30)).await;
    again.frames().changed().await.expect("frames keep coming");
    assert!(cam.demand().running);
    assert_eq!(lock(&log).opens.len(), 1, "the source was not reopened");
    // ...and the idle timer starts over from its leaving.
    drop(again);
    let left = Instant::now();
    wait_demand(&cam, |d| !d.running).await;
    assert!(about(left.elapsed(), idle), "{:?}", left.elapsed());
}

#[tokio::test(start_paused = true)]
async fn an_idle_timeout_of_zero_stops_capture_as_the_last_watcher_leaves() {
    let (cam, _log) = camera(&[Opening::Forever], Duration::ZERO);
    let mut sub = cam.subscribe();
    sub.frames().changed().await.expect("a first frame");
    drop(sub);
    let left = Instant::now();
    wait_demand(&cam, |d| !d.running).await;
    assert!(
        about(left.elapsed(), Duration::ZERO),
        "{:?}",
        left.elapsed()
    );
}

/// Records the instant of every published frame and whether it was live.
fn record_frames(cam: &Arc<Camera>) -> Arc<Mutex<Vec<(Instant, bool)>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut sub = cam.subscribe();
    let out = Arc::clone(&seen);
    tokio::spawn(async move {
        while sub.frames().changed().await.is_ok() {
            let online = sub
                .frames()
                .borrow_and_update()
                .as_ref()
                .map(|f| f.online());
            if let Some(online) = online {
                out.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((Instant::now(), online));
            }
        }
    });
    seen
}

fn gaps(times: &[Instant]) -> Vec<Duration> {
    times.windows(2).map(|w| w[1] - w[0]).collect()
}

fn secs(s: &[u64]) -> Vec<Duration> {
    s.iter().map(|&s| Duration::from_secs(s)).collect()
}

#[tokio::test(start_paused = true)]
async fn a_failing_source_is_retried_with_doubling_backoff_up_to_30s_and_no_signal_every_second() {
    let (cam, log) = camera(&[Opening::Fail], Duration::from_secs(10));
    let frames = record_frames(&cam);
    sleep(Duration::from_secs(200)).await;
    let opens = lock(&log).opens.clone();
    // Opens at 0, 1, 3, 7, 15, 31, 61, 91, 121, 151, 181 s.
    assert_eq!(
        gaps(&opens),
        secs(&[1, 2, 4, 8, 16, 30, 30, 30, 30, 30]),
        "retry delays"
    );
    let frames = frames
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    assert!(
        frames.iter().all(|&(_, online)| !online),
        "only no-signal frames"
    );
    let times: Vec<Instant> = frames.iter().map(|&(t, _)| t).collect();
    assert!(
        about(times[0] - opens[0], Duration::ZERO),
        "no-signal from the first failure on"
    );
    // One no-signal frame a second through the whole outage, across every retry.
    let interval = gaps(&times);
    assert!(
        interval.len() >= 199,
        "{} no-signal frames in 200 s",
        times.len()
    );
    assert!(
        interval.iter().all(|&g| about(g, Duration::from_secs(1))),
        "no-signal intervals {interval:?}"
    );
    assert_eq!(
        cam.last_error().as_deref(),
        Some("scripted open failure"),
        "the error is shown while it lasts"
    );
}

#[tokio::test(start_paused = true)]
async fn backoff_starts_over_after_a_minute_of_health_and_not_before() {
    use Opening::*;
    let script = [
        Fail,                               // open 0 s; retry in 1 s
        Fail,                               // open 1 s; retry in 2 s
        FramesFor(Duration::from_secs(59)), // open 3 s, fails at 62 s; retry in 4 s
        FramesFor(Duration::from_secs(61)), // open 66 s, fails at 127 s (healthy); retry in 1 s
        Fail,                               // open 128 s; retry in 2 s
        Forever,                            // open 130 s
    ];
    let (cam, log) = camera(&script, Duration::from_secs(10));
    let _frames = record_frames(&cam);
    sleep(Duration::from_secs(200)).await;
    let opens = lock(&log).opens.clone();
    assert_eq!(opens.len(), 6, "{opens:?}");
    let gaps = gaps(&opens);
    // Opening 3 delivered for 59 s: not long enough to count as healthy, so backoff goes on (4 s).
    assert!(about(gaps[0], Duration::from_secs(1)), "{gaps:?}");
    assert!(about(gaps[1], Duration::from_secs(2)), "{gaps:?}");
    assert!(
        about(gaps[2], Duration::from_secs(59) + Duration::from_secs(4)),
        "{gaps:?}"
    );
    // Opening 4 delivered for 61 s: its failure retries after 1 s again, then 2 s.
    assert!(
        about(gaps[3], Duration::from_secs(61) + Duration::from_secs(1)),
        "{gaps:?}"
    );
    assert!(about(gaps[4], Duration::from_secs(2)), "{gaps:?}");
    assert!(
        cam.last_error().is_none(),
        "cleared once the source delivers"
    );
}

#[tokio::test(start_paused = true)]
async fn a_stalled_source_gives_no_signal_after_the_source_timeout() {
    let (cam, log) = camera(
        &[Opening::HangAfter(3), Opening::Forever],
        Duration::from_secs(10),
    );
    let frames = record_frames(&cam);
    sleep(Duration::from_secs(20)).await;
    let frames = frames
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .clone();
    let last_live = frames
        .iter()
        .take_while(|&&(_, online)| online)
        .last()
        .map(|&(t, _)| t)
        .expect("live frames first");
    let first_dead = frames
        .iter()
        .find(|&&(_, online)| !online)
        .map(|&(t, _)| t)
        .expect("a no-signal frame");
    let stall = first_dead - last_live;
    assert!(
        about(stall, cam.config().source_timeout),
        "no-signal {stall:?} after the last frame, not the source timeout"
    );
    // Reopened after the first backoff (1 s), and live again.
    let opens = lock(&log).opens.clone();
    assert_eq!(opens.len(), 2, "{opens:?}");
    assert!(about(opens[1] - first_dead, Duration::from_secs(1)));
    assert!(frames.last().is_some_and(|&(_, online)| online));
    assert_eq!(
        cam.last_error(),
        None,
        "the stall's error is cleared once frames flow again"
    );
}

/// Frames published off the viewers' runtime (capture runs on its own thread) reach the
/// channel through tasks on the viewers' runtime: they arrive, and a publish still on its way
/// when capture stops never brings that stale frame back.
#[tokio::test(flavor = "current_thread")]
async fn publishes_from_the_capture_thread_arrive_and_never_revive_a_stopped_capture() {
    let (cam, _) = camera(&[Opening::Forever], Duration::from_secs(1));
    let image = Image {
        jpeg: Canvas::new(16, 16, [10, 200, 10])
            .encode(70)
            .expect("encode"),
        width: 16,
        height: 16,
    };
    let runtime = tokio::runtime::Handle::current();
    let mut rx = cam.frames_unwatched();
    // Three frames published from another thread; this runtime is busy in the test until it
    // awaits, so their tasks are all still queued when capture stops.
    std::thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..3 {
                cam.publish(&image, true);
            }
        });
    });
    assert!(cam.stop_if_idle(), "nobody watches: capture stops");
    assert!(
        rx.borrow_and_update().is_none(),
        "stopping clears the frame"
    );
    // Tasks queued from outside run in order: once this marker has run, so have the three.
    runtime.spawn(async {}).await.expect("marker task");
    assert!(
        rx.borrow().is_none(),
        "a stopped capture's frame came back: seq {:?}",
        rx.borrow().as_ref().map(Frame::seq)
    );
    assert!(
        !rx.has_changed().expect("open"),
        "no wake for refused frames"
    );
    // A frame of the next capture is delivered.
    std::thread::scope(|s| {
        s.spawn(|| cam.publish(&image, true));
    });
    tokio::time::timeout(Duration::from_secs(5), rx.changed())
        .await
        .expect("delivered")
        .expect("open");
    assert_eq!(rx.borrow().as_ref().map(Frame::seq), Some(4));
}

/// The capture task itself, driven by hand on the paused clock.
mod capture_task {
    use std::sync::atomic::AtomicUsize;

    use tokio_util::sync::CancellationToken;

    use std::sync::Arc;
    use std::sync::atomic::Ordering;
    use std::time::Duration;

    use tokio::time::sleep;

    use crate::frame::Image;
    use crate::hub::CameraConfig;
    use crate::hub::camera::Camera;
    use crate::hub::capture::run;
    use crate::source::{BoxFuture, Opener, Source, SourceError};

    /// Counts its openings; its sources never deliver (nor fail) within a test.
    #[derive(Default)]
    struct CountingOpener(AtomicUsize);

    struct Silent;

    impl Source for Silent {
        fn next_frame(&mut self) -> BoxFuture<'_, Result<Image, SourceError>> {
            Box::pin(std::future::pending())
        }
    }

    impl Opener for CountingOpener {
        fn open(&self) -> BoxFuture<'_, Result<Box<dyn Source>, SourceError>> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Box::pin(async { Ok(Box::new(Silent) as Box<dyn Source>) })
        }
        fn describe(&self) -> String {
            "counting".into()
        }
    }

    const IDLE: Duration = Duration::from_secs(10);

    fn camera(opener: Arc<CountingOpener>) -> Arc<Camera> {
        let config = CameraConfig {
            name: "cam".into(),
            opener,
            width: 64,
            height: 48,
            quality: 70,
            idle_timeout: IDLE,
            source_timeout: Duration::from_secs(3600),
            transform: crate::transform::Transform::default(),
            fps: 30.0,
            stream_size: None,
            drop_same_frames: false,
            overlay: None,
            controls: Default::default(),
        };
        Arc::new(Camera::new(
            config,
            Arc::default(),
            CancellationToken::new(),
        ))
    }

    async fn settle() {
        for _ in 0..20 {
            tokio::task::yield_now().await;
        }
    }

    fn watch(camera: &Camera) -> bool {
        camera.add_watcher()
    }

    fn unwatch(camera: &Camera) {
        camera.remove_watcher();
    }

    /// Issue 11, defect 1: a viewer arriving just as the idle timer fires must keep the running
    /// source, not reopen it (ffmpeg killed and restarted, a V4L2 stream stopped).
    #[tokio::test(start_paused = true)]
    async fn defect_1_idle_timer_racing_a_new_viewer_keeps_the_running_source() {
        let opener = Arc::new(CountingOpener::default());
        let camera = camera(Arc::clone(&opener));
        // Capture runs on this test's paused clock, not on the capture thread.
        assert!(watch(&camera));
        tokio::spawn(run(Arc::clone(&camera), None));
        settle().await;
        let mut expected = 1;
        assert_eq!(opener.0.load(Ordering::SeqCst), expected);
        let mut raced = 0;
        for _ in 0..50 {
            unwatch(&camera);
            settle().await;
            // Wake at the very instant the idle timer fires, and arrive as a viewer.
            sleep(IDLE).await;
            if watch(&camera) {
                // The capture task stopped first: a new capture legitimately opens again.
                tokio::spawn(run(Arc::clone(&camera), None));
                expected += 1;
            } else {
                raced += 1;
            }
            settle().await;
            assert_eq!(
                opener.0.load(Ordering::SeqCst),
                expected,
                "the source was reopened while capture kept running ({raced} races)"
            );
            assert!(camera.demand().running);
        }
        assert!(raced > 0, "the race was never set up");
    }
}
