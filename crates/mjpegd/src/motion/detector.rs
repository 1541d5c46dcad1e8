//! Frame differencing and the event state machine.

use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;

use super::luma::{Luma, SCALE, small_luma};
use super::{MotionConfig, MotionError};

/// The reference keeps 4 fractional bits so that slow updates still move it.
const FRACTION: u32 = 4;
/// Each analysed frame moves the reference 1/16 of the way to it: about 3 s at 5 fps, so a
/// lighting drift or a parked car fades into the background while a walker does not.
const UPDATE_SHIFT: u32 = 4;

/// One motion event.
#[derive(Debug, Clone)]
pub struct Event {
    /// Unique per camera for the life of the process, from 1.
    pub id: u64,
    /// Wall time of the first analysed frame of the run that started the event.
    pub start: SystemTime,
    /// Wall time of the last analysed frame with motion; `None` while the event goes on.
    pub end: Option<SystemTime>,
    /// Highest score seen in the event (share of changed pixels).
    pub peak: f64,
    /// The frame with the peak score, refcounted (no copy).
    pub best_frame: Bytes,
    /// Analysed frames with motion in the event.
    pub frames: u64,
}

/// What one analysed frame changed.
#[derive(Debug, Clone)]
pub enum Change {
    /// Nothing: no event began or ended.
    None,
    /// An event began (its state at the start).
    Started(Event),
    /// The event ended (`end` is set).
    Ended(Event),
}

/// The result of analysing one frame.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Share of unmasked pixels that changed, 0..=1.
    pub score: f64,
    /// Whether the score reached the threshold.
    pub motion: bool,
    /// Whether an event began or ended.
    pub change: Change,
}

/// A run of frames with motion not yet long enough to be an event.
struct Run {
    frames: u32,
    start: SystemTime,
    peak: f64,
    best: Bytes,
}

struct Active {
    event: Event,
    last_motion: Instant,
    last_motion_wall: SystemTime,
}

/// The per-camera detector; feed it frames with [`Detector::analyse`] when [`Detector::due`].
pub struct Detector {
    config: MotionConfig,
    /// Reference luma << FRACTION, for the size in `size`.
    reference: Vec<u16>,
    /// `true` where a small pixel overlaps a mask rectangle.
    masked: Vec<bool>,
    size: (u32, u32),
    run: Option<Run>,
    active: Option<Active>,
    next_id: u64,
    last_analysed: Option<Instant>,
}

impl Detector {
    /// A detector with no reference yet: the first frame analysed becomes it.
    pub fn new(config: MotionConfig) -> Detector {
        Detector {
            config,
            reference: Vec::new(),
            masked: Vec::new(),
            size: (0, 0),
            run: None,
            active: None,
            next_id: 1,
            last_analysed: None,
        }
    }

    /// The settings.
    pub fn config(&self) -> &MotionConfig {
        &self.config
    }

    /// Whether a frame captured at `now` should be analysed, keeping to the analysis rate.
    pub fn due(&self, now: Instant) -> bool {
        // 10 % early is fine: a 30 fps camera analysed at 5 fps then takes every 6th frame
        // instead of beating between the 6th and the 7th.
        let interval = Duration::from_secs_f64(0.9 / self.config.fps);
        self.last_analysed
            .is_none_or(|last| now.saturating_duration_since(last) >= interval)
    }

    /// The event going on, if any.
    pub fn current(&self) -> Option<&Event> {
        self.active.as_ref().map(|a| &a.event)
    }

    /// Analyses one frame captured at `now` (monotonic) and `wall`.
    pub fn analyse(
        &mut self,
        jpeg: &Bytes,
        now: Instant,
        wall: SystemTime,
    ) -> Result<Outcome, MotionError> {
        self.last_analysed = Some(now);
        let luma = small_luma(jpeg)?;
        let score = self.difference(&luma);
        let motion = score > 0.0 && score >= self.config.threshold;
        let change = self.step(motion, score, jpeg, now, wall);
        Ok(Outcome {
            score,
            motion,
            change,
        })
    }

    /// Ends the event going on, if any, as at `wall` (the camera stopped or the server shuts
    /// down).
    pub fn finish(&mut self) -> Option<Event> {
        self.run = None;
        self.active.take().map(|a| {
            let mut e = a.event;
            e.end = Some(a.last_motion_wall);
            e
        })
    }

    /// Scores `luma` against the reference and moves the reference towards it.
    fn difference(&mut self, luma: &Luma) -> f64 {
        if self.size != (luma.frame_width, luma.frame_height) || self.reference.is_empty() {
            // A first frame, or the camera changed size: start over from this one.
            self.size = (luma.frame_width, luma.frame_height);
            self.reference = luma
                .pixels
                .iter()
                .map(|&p| u16::from(p) << FRACTION)
                .collect();
            self.masked = mask_cells(&self.config.mask, luma);
            return 0.0;
        }
        let sensitivity = u16::from(self.config.sensitivity);
        let (mut changed, mut counted) = (0u32, 0u32);
        for ((r, &p), &masked) in self
            .reference
            .iter_mut()
            .zip(&luma.pixels)
            .zip(&self.masked)
        {
            let cur = u16::from(p) << FRACTION;
            if !masked {
                counted += 1;
                if (*r >> FRACTION).abs_diff(u16::from(p)) > sensitivity {
                    changed += 1;
                }
            }
            // Signed step, rounded away from zero so that the reference reaches the frame.
            let diff = i32::from(cur) - i32::from(*r);
            let step = (diff + diff.signum() * ((1 << UPDATE_SHIFT) - 1)) >> UPDATE_SHIFT;
            *r = (i32::from(*r) + step).clamp(0, 255 << FRACTION) as u16;
        }
        if counted == 0 {
            0.0
        } else {
            f64::from(changed) / f64::from(counted)
        }
    }

    fn step(
        &mut self,
        motion: bool,
        score: f64,
        jpeg: &Bytes,
        now: Instant,
        wall: SystemTime,
    ) -> Change {
        if let Some(a) = &mut self.active {
            if motion {
                a.last_motion = now;
                a.last_motion_wall = wall;
                a.event.frames += 1;
                if score > a.event.peak {
                    a.event.peak = score;
                    a.event.best_frame = jpeg.clone();
                }
                return Change::None;
            }
            if now.saturating_duration_since(a.last_motion) < self.config.event_gap {
                return Change::None;
            }
            return match self.finish() {
                Some(e) => Change::Ended(e),
                None => Change::None,
            };
        }
        if !motion {
            self.run = None;
            return Change::None;
        }
        let run = self.run.get_or_insert_with(|| Run {
            frames: 0,
            start: wall,
            peak: 0.0,
            best: jpeg.clone(),
        });
        run.frames += 1;
        if score > run.peak {
            run.peak = score;
            run.best = jpeg.clone();
        }
        if run.frames < self.config.min_frames {
            return Change::None;
        }
        let Some(run) = self.run.take() else {
            return Change::None;
        };
        let event = Event {
            id: self.next_id,
            start: run.start,
            end: None,
            peak: run.peak,
            best_frame: run.best,
            frames: u64::from(run.frames),
        };
        self.next_id += 1;
        self.active = Some(Active {
            event: event.clone(),
            last_motion: now,
            last_motion_wall: wall,
        });
        Change::Started(event)
    }
}

/// Marks the small pixels whose 8x8 block overlaps a mask rectangle.
fn mask_cells(mask: &[super::MaskRect], luma: &Luma) -> Vec<bool> {
    let mut cells = vec![false; luma.pixels.len()];
    for m in mask {
        let x0 = m.x / SCALE;
        let y0 = m.y / SCALE;
        let x1 = (m.x.saturating_add(m.width))
            .div_ceil(SCALE)
            .min(luma.width);
        let y1 = (m.y.saturating_add(m.height))
            .div_ceil(SCALE)
            .min(luma.height);
        for y in y0..y1 {
            for x in x0..x1 {
                cells[(y * luma.width + x) as usize] = true;
            }
        }
    }
    cells
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::motion::MaskRect;
    use crate::render::Canvas;

    /// A grey 320x240 scene with a white 40x40 square at `x` (none when `None`).
    fn scene(square: Option<i64>) -> Bytes {
        let mut c = Canvas::new(320, 240, [90, 100, 110]);
        c.fill_rect(20, 180, 60, 30, [40, 40, 40]);
        if let Some(x) = square {
            c.fill_rect(x, 100, 40, 40, [250, 250, 250]);
        }
        c.encode(80).expect("encodes")
    }

    struct Clock {
        t0: Instant,
        w0: SystemTime,
        ms: u64,
    }

    impl Clock {
        fn new() -> Clock {
            Clock {
                t0: Instant::now(),
                w0: SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000),
                ms: 0,
            }
        }
        /// Advances 200 ms (5 fps) and returns the new time.
        fn tick(&mut self) -> (Instant, SystemTime) {
            self.ms += 200;
            let d = Duration::from_millis(self.ms);
            (self.t0 + d, self.w0 + d)
        }
    }

    fn feed(d: &mut Detector, clock: &mut Clock, frame: &Bytes) -> Outcome {
        let (now, wall) = clock.tick();
        assert!(d.due(now), "5 fps frames are due at 5 fps");
        d.analyse(frame, now, wall).expect("analyses")
    }

    fn config() -> MotionConfig {
        MotionConfig {
            event_gap: Duration::from_secs(2),
            ..MotionConfig::default()
        }
    }

    #[test]
    fn a_static_scene_gives_no_event() {
        let mut d = Detector::new(config());
        let mut clock = Clock::new();
        let frame = scene(None);
        for _ in 0..50 {
            let o = feed(&mut d, &mut clock, &frame);
            assert_eq!(o.score, 0.0);
            assert!(matches!(o.change, Change::None));
        }
    }

    #[test]
    fn a_moving_square_starts_one_event_after_min_frames_and_ends_after_the_gap() {
        let mut d = Detector::new(config());
        let mut clock = Clock::new();
        for _ in 0..10 {
            feed(&mut d, &mut clock, &scene(None));
        }
        let first_motion_wall = clock.w0 + Duration::from_millis(clock.ms + 200);
        let a = feed(&mut d, &mut clock, &scene(Some(50)));
        assert!(a.motion && a.score > 0.01, "score {}", a.score);
        assert!(
            matches!(a.change, Change::None),
            "one frame is below min_frames = 2"
        );
        let b = feed(&mut d, &mut clock, &scene(Some(70)));
        let Change::Started(started) = b.change else {
            panic!("second frame with motion starts the event: {b:?}");
        };
        assert_eq!(started.id, 1);
        assert_eq!(
            started.start, first_motion_wall,
            "the event starts at the run's start"
        );
        let mut peak_frame = Bytes::new();
        let mut last_motion_wall = first_motion_wall;
        for x in [90, 110, 130, 150] {
            let f = scene(Some(x));
            let (now, wall) = clock.tick();
            let o = d.analyse(&f, now, wall).expect("analyses");
            assert!(o.motion);
            last_motion_wall = wall;
            if d.current().is_some_and(|e| e.best_frame == f) {
                peak_frame = f;
            }
        }
        // The square parks at 150: it still differs from the reference until it has faded
        // into it (about 7 s at 1/16 a frame), and the event ends event_gap (2 s = 10
        // frames) after the last frame that differed.
        let parked = scene(Some(150));
        let mut ended = None;
        let mut since_motion = 0;
        for _ in 0..100 {
            let (now, wall) = clock.tick();
            let o = d.analyse(&parked, now, wall).expect("analyses");
            if o.motion {
                last_motion_wall = wall;
                since_motion = 0;
            } else {
                since_motion += 1;
            }
            if let Change::Ended(e) = o.change {
                ended = Some(e);
                break;
            }
        }
        let e = ended.expect("the event ends once the parked square has faded");
        assert_eq!(
            since_motion, 10,
            "ends on the first frame 2 s after the last motion"
        );
        assert_eq!(e.id, 1);
        assert_eq!(e.end, Some(last_motion_wall));
        assert!(e.peak >= started.peak);
        assert!(!peak_frame.is_empty() && e.best_frame == peak_frame);
        assert!(e.frames >= 6);
        // The parked square has faded into the reference: no new event.
        for _ in 0..20 {
            assert!(matches!(
                feed(&mut d, &mut clock, &parked).change,
                Change::None
            ));
        }
        assert!(d.current().is_none());
    }

    #[test]
    fn bursts_closer_than_the_gap_are_one_event_and_farther_ones_two() {
        let mut d = Detector::new(config());
        let mut clock = Clock::new();
        let still = scene(None);
        for _ in 0..5 {
            feed(&mut d, &mut clock, &still);
        }
        let mut starts = Vec::new();
        let mut ends = 0;
        // Burst, 1 s still (< 2 s gap), burst, 4 s still (> gap), burst.
        let plan = [
            (true, 4),
            (false, 5),
            (true, 4),
            (false, 20),
            (true, 4),
            (false, 15),
        ];
        let mut x = 0;
        for (moving, n) in plan {
            for _ in 0..n {
                let f = if moving {
                    x += 20;
                    scene(Some(x % 260))
                } else {
                    still.clone()
                };
                match feed(&mut d, &mut clock, &f).change {
                    Change::Started(e) => starts.push(e.id),
                    Change::Ended(_) => ends += 1,
                    Change::None => {}
                }
            }
        }
        assert_eq!(starts, vec![1, 2]);
        assert_eq!(ends, 2);
    }

    #[test]
    fn motion_inside_the_mask_is_ignored_and_outside_it_is_not() {
        let masked = MotionConfig {
            mask: vec![MaskRect {
                x: 0,
                y: 90,
                width: 320,
                height: 60,
            }],
            ..config()
        };
        let mut d = Detector::new(masked);
        let mut clock = Clock::new();
        feed(&mut d, &mut clock, &scene(None));
        for x in (0..280).step_by(10) {
            let o = feed(&mut d, &mut clock, &scene(Some(x)));
            assert_eq!(o.score, 0.0, "the square moves inside the mask");
        }
        // The same square one mask-height lower is seen.
        let mut d = Detector::new(MotionConfig {
            mask: vec![MaskRect {
                x: 0,
                y: 0,
                width: 320,
                height: 60,
            }],
            ..config()
        });
        feed(&mut d, &mut clock, &scene(None));
        assert!(feed(&mut d, &mut clock, &scene(Some(100))).motion);
    }

    #[test]
    fn small_noise_stays_below_the_threshold() {
        // Per-pixel noise of +-24 luma: far past the sensitivity per pixel, but the 8x8 means
        // average it out.
        let mut seed = 0x2545_f491_u32;
        let mut noisy = || {
            let mut c = Canvas::new(320, 240, [120, 120, 120]);
            for y in 0..240 {
                for px in c.row_mut(y).chunks_exact_mut(3) {
                    seed ^= seed << 13;
                    seed ^= seed >> 17;
                    seed ^= seed << 5;
                    let v = (120 + (seed % 49) as i32 - 24) as u8;
                    px.copy_from_slice(&[v, v, v]);
                }
            }
            c.encode(80).expect("encodes")
        };
        let mut d = Detector::new(config());
        let mut clock = Clock::new();
        for _ in 0..30 {
            let o = feed(&mut d, &mut clock, &noisy());
            assert!(!o.motion, "noise scored {}", o.score);
        }
    }

    #[test]
    fn analysis_keeps_to_its_rate_and_restarts_on_a_new_size() {
        let mut d = Detector::new(config());
        let t = Instant::now();
        let w = SystemTime::now();
        assert!(d.due(t));
        d.analyse(&scene(None), t, w).expect("analyses");
        assert!(
            !d.due(t + Duration::from_millis(33 * 5)),
            "5 frames of 30 fps"
        );
        assert!(
            d.due(t + Duration::from_millis(33 * 6)),
            "6 frames of 30 fps"
        );
        let other = Canvas::new(640, 480, [0, 0, 0])
            .encode(80)
            .expect("encodes");
        let o = d
            .analyse(&other, t + Duration::from_secs(1), w)
            .expect("analyses");
        assert_eq!(o.score, 0.0, "a new size is a new reference, not motion");
        assert!(d.analyse(&Bytes::from_static(b"junk"), t, w).is_err());
    }

    #[test]
    fn a_threshold_of_one_needs_every_pixel() {
        let mut d = Detector::new(MotionConfig {
            threshold: 1.0,
            min_frames: 1,
            ..config()
        });
        let mut clock = Clock::new();
        feed(&mut d, &mut clock, &scene(None));
        assert!(!feed(&mut d, &mut clock, &scene(Some(100))).motion);
        let white = Canvas::new(320, 240, [255, 255, 255])
            .encode(80)
            .expect("encodes");
        let o = feed(&mut d, &mut clock, &white);
        assert!(o.motion && matches!(o.change, Change::Started(_)), "{o:?}");
    }
}
