//! Which of a camera's frames a recorder writes: every frame, one per recording-`fps` period,
//! or (motion mode) the frames of motion events with their pre- and post-capture, plus the
//! `fps` trickle outside events when one is set.
//!
//! Pure decisions over frames and event signals, no I/O and no clock of its own (frame capture
//! times are the clock), so the recorder's feed task runs it and its tests need no camera.

use super::ring::Ring;
use super::time::{self, Micros};
use super::{Mode, RecordConfig};
use crate::frame::Frame;

/// What the motion detector last reported to a motion-mode recorder.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EventSignal {
    /// Whether an event goes on.
    pub active: bool,
    /// The latest event's start (capture time of its first motion frame).
    pub start: Micros,
    /// The latest ended event's end (capture time of its last motion frame).
    pub end: Micros,
    /// How long after an event's start the detector reports it at most.
    pub lead: Micros,
}

/// A recorder's frame selection.
pub struct Gate {
    /// Recording fps as a period in µs.
    period: Option<Micros>,
    pre: Micros,
    post: Micros,
    /// Motion mode only.
    ring: Option<Ring>,
    lead: Micros,
    /// Newest frame seen (sequence number).
    last_seen: u64,
    /// The `fps` period the last written frame fell in.
    last_bucket: Option<i64>,
    active: bool,
    /// After an event: frames up to this capture time are still the event's.
    hold_until: Option<Micros>,
}

fn micros(d: std::time::Duration) -> Micros {
    Micros::try_from(d.as_micros()).unwrap_or(Micros::MAX)
}

impl Gate {
    /// The selection for `config`.
    pub fn new(config: &RecordConfig) -> Gate {
        let pre = micros(config.pre_capture);
        Gate {
            period: config
                .fps
                .filter(|f| f.is_finite() && *f > 0.0)
                .map(|f| ((1e6 / f) as Micros).max(1)),
            pre,
            post: micros(config.post_capture),
            ring: (config.mode == Mode::Motion).then(|| Ring::new(pre)),
            lead: 0,
            last_seen: 0,
            last_bucket: None,
            active: false,
            hold_until: None,
        }
    }

    /// Takes the detector's latest report; when an event has just begun, puts into `out` the
    /// ring's frames from `pre_capture` before its start (and, before that, those the `fps`
    /// trickle keeps), to be written first.
    pub fn on_event(&mut self, s: EventSignal, out: &mut Vec<Frame>) {
        let Some(ring) = &mut self.ring else {
            return;
        };
        if s.lead != self.lead {
            self.lead = s.lead;
            ring.set_window(self.pre.saturating_add(s.lead));
        }
        if s.active && !self.active {
            self.active = true;
            self.hold_until = None;
            let from = s.start.saturating_sub(self.pre);
            let (period, mut last_bucket) = (self.period, self.last_bucket);
            for (t, f) in ring.drain() {
                let bucket = period.map(|p| t.div_euclid(p));
                if t >= from || (period.is_some() && bucket != last_bucket) {
                    last_bucket = bucket;
                    out.push(f);
                }
            }
            self.last_bucket = last_bucket;
        } else if !s.active && self.active {
            self.active = false;
            self.hold_until = Some(s.end.saturating_add(self.post));
        }
    }

    fn bucket(&self, t: Micros) -> Option<i64> {
        self.period.map(|p| t.div_euclid(p))
    }

    /// Puts into `out` the frames to write now: `frame` itself, or (motion mode, outside
    /// events) the frames leaving the pre-capture ring that the `fps` trickle keeps, so the
    /// trickle runs `pre_capture` behind and every frame is written in capture order.
    pub fn on_frame(&mut self, frame: Frame, out: &mut Vec<Frame>) {
        if frame.seq() <= self.last_seen {
            return;
        }
        self.last_seen = frame.seq();
        let t = time::of(frame.captured());
        if self.hold_until.is_some_and(|h| t > h) {
            self.hold_until = None;
        }
        if self.in_event() {
            self.last_bucket = self.bucket(t);
            out.push(frame);
            return;
        }
        let period = self.period;
        match &mut self.ring {
            Some(ring) => {
                let last_bucket = &mut self.last_bucket;
                ring.push(t, frame, |t, f| {
                    let bucket = period.map(|p| t.div_euclid(p));
                    if period.is_some() && bucket != *last_bucket {
                        *last_bucket = bucket;
                        out.push(f);
                    }
                });
            }
            None => {
                let bucket = self.bucket(t);
                if period.is_none() || bucket != self.last_bucket {
                    self.last_bucket = bucket;
                    out.push(frame);
                }
            }
        }
    }

    /// Whether the frames written now are an event's (the event or its post-capture).
    pub fn in_event(&self) -> bool {
        self.active || self.hold_until.is_some()
    }

    /// Frames the ring's caps evicted while inside the pre-capture window.
    pub fn ring_cut(&self) -> u64 {
        self.ring.as_ref().map_or(0, Ring::cut)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Image;
    use std::time::{Duration, UNIX_EPOCH};

    /// Frame `seq` of a 10 fps camera: captured at `seq` tenths of a second.
    fn frame(seq: u64) -> Frame {
        let image = Image {
            jpeg: bytes::Bytes::from_static(&[0xFF, 0xD8, 0, 0, 0xFF, 0xD9]),
            width: 16,
            height: 16,
        };
        Frame::new(
            seq,
            &image,
            UNIX_EPOCH + Duration::from_millis(seq * 100),
            true,
        )
    }

    fn config(mode: Mode, fps: Option<f64>) -> RecordConfig {
        RecordConfig {
            mode,
            fps,
            pre_capture: Duration::from_secs(2),
            post_capture: Duration::from_secs(3),
            ..RecordConfig::new("/unused".into())
        }
    }

    fn written(gate: &mut Gate, seqs: std::ops::RangeInclusive<u64>) -> Vec<u64> {
        let mut out = Vec::new();
        for s in seqs {
            gate.on_frame(frame(s), &mut out);
        }
        out.iter().map(Frame::seq).collect()
    }

    fn signal(gate: &mut Gate, active: bool, start: Micros, end: Micros) -> Vec<u64> {
        let mut out = Vec::new();
        let lead = 1_000_000;
        gate.on_event(
            EventSignal {
                active,
                start,
                end,
                lead,
            },
            &mut out,
        );
        out.iter().map(Frame::seq).collect()
    }

    #[test]
    fn continuous_writes_every_frame_or_one_per_fps_period() {
        let mut all = Gate::new(&config(Mode::Continuous, None));
        assert_eq!(written(&mut all, 1..=30).len(), 30);
        assert!(
            written(&mut all, 30..=30).is_empty(),
            "a frame is written once"
        );
        let mut slow = Gate::new(&config(Mode::Continuous, Some(1.0)));
        // 10 s at 10 fps (seq 1..=100 is 0.1 s..=10 s): one frame per second, at each second.
        assert_eq!(
            written(&mut slow, 1..=100),
            vec![1, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100]
        );
    }

    #[test]
    fn motion_writes_pre_capture_the_event_and_post_capture_only() {
        let mut gate = Gate::new(&config(Mode::Motion, None));
        // The ring's window is 2 s of pre-capture plus the 1 s detection lead.
        signal(&mut gate, false, 0, 0);
        assert!(written(&mut gate, 1..=100).is_empty(), "no event, nothing");
        // The detector reports, 0.5 s late, an event that began at frame 95 (9.5 s).
        let burst = signal(&mut gate, true, 9_500_000, 0);
        assert_eq!(
            burst,
            (75..=100).collect::<Vec<_>>(),
            "2 s before the start"
        );
        assert!(gate.in_event());
        assert_eq!(
            written(&mut gate, 101..=150),
            (101..=150).collect::<Vec<_>>()
        );
        // It ended at 14 s, reported at 15 s: 3 s of post-capture from the end, to 17 s.
        assert!(signal(&mut gate, false, 9_500_000, 14_000_000).is_empty());
        assert_eq!(
            written(&mut gate, 151..=200),
            (151..=170).collect::<Vec<_>>()
        );
        assert!(!gate.in_event());
    }

    #[test]
    fn motion_with_fps_trickles_outside_events_in_capture_order() {
        let mut gate = Gate::new(&config(Mode::Motion, Some(1.0)));
        signal(&mut gate, false, 0, 0);
        // The trickle is written as frames leave the 3 s ring: up to 4.9 s by frame 80 (8 s).
        let mut all = written(&mut gate, 1..=80);
        assert_eq!(all, vec![1, 10, 20, 30, 40]);
        // An event from 7 s: everything the ring holds from 2 s before it, 5 s on.
        let burst = signal(&mut gate, true, 7_000_000, 0);
        assert_eq!(burst, (50..=80).collect::<Vec<_>>());
        all.extend(burst);
        assert!(
            all.windows(2).all(|w| w[0] < w[1]),
            "capture order: {all:?}"
        );
        assert_eq!(written(&mut gate, 81..=85), vec![81, 82, 83, 84, 85]);
        // After the event and its post-capture, the trickle again, one frame per second.
        assert!(signal(&mut gate, false, 7_000_000, 8_500_000).is_empty());
        let after = written(&mut gate, 86..=200);
        assert_eq!(
            &after[..30],
            &(86..=115).collect::<Vec<_>>()[..],
            "to 11.5 s"
        );
        assert_eq!(&after[30..], &[120, 130, 140, 150, 160], "3 s behind");
    }
}
