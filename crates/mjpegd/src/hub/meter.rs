//! Small, bounded measurement helpers: a recent-rate meter and a fixed-bucket histogram.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The window a rate is measured over.
const METER_WINDOW: Duration = Duration::from_secs(2);
/// Buckets the window is split into (plus the one being filled).
const METER_BUCKETS: u64 = 8;
/// Width of one bucket.
const BUCKET_NANOS: u64 = METER_WINDOW.as_nanos() as u64 / METER_BUCKETS;
/// Low bits of a slot hold its count, the high bits the bucket number it counts.
const COUNT_BITS: u32 = 24;
const COUNT_MASK: u64 = (1 << COUNT_BITS) - 1;

/// The meters' common time origin: bucket numbers are counted from it.
fn origin() -> Instant {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// Measures an event rate over the last couple of seconds.
///
/// Lock-free: every stream viewer ticks its meter on every frame, so a tick is one atomic add
/// on a time bucket (a compare-and-swap when a new bucket starts), never a lock. Memory is
/// fixed whatever the rate.
#[derive(Debug, Default)]
pub struct RateMeter {
    /// `METER_BUCKETS + 1` slots, each `bucket number << COUNT_BITS | count`.
    slots: [AtomicU64; METER_BUCKETS as usize + 1],
    /// Nanoseconds after [`origin`] of the first event, plus one (0: none yet).
    first: AtomicU64,
}

impl RateMeter {
    /// Records one event now.
    pub fn tick(&self) {
        self.tick_at(Instant::now());
    }

    /// Records one event that happened at `at` (a time the caller already has).
    pub fn tick_at(&self, at: Instant) {
        let nanos = nanos_since_origin(at);
        if self.first.load(Ordering::Relaxed) == 0 {
            let _ = self.first.compare_exchange(
                0,
                nanos.saturating_add(1),
                Ordering::Relaxed,
                Ordering::Relaxed,
            );
        }
        let bucket = nanos / BUCKET_NANOS;
        let slot = &self.slots[(bucket % (METER_BUCKETS + 1)) as usize];
        let mut cur = slot.load(Ordering::Relaxed);
        loop {
            let next = if cur >> COUNT_BITS == bucket {
                if cur & COUNT_MASK == COUNT_MASK {
                    return; // Saturated: 16 M events in one bucket.
                }
                cur + 1
            } else {
                (bucket << COUNT_BITS) | 1
            };
            match slot.compare_exchange_weak(cur, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return,
                Err(seen) => cur = seen,
            }
        }
    }

    /// Events per second over the recent window; 0 when there were none lately.
    pub fn rate(&self) -> f64 {
        self.rate_at(Instant::now())
    }

    fn rate_at(&self, now: Instant) -> f64 {
        let first = self.first.load(Ordering::Relaxed);
        if first == 0 {
            return 0.0;
        }
        let now_nanos = nanos_since_origin(now);
        let current = now_nanos / BUCKET_NANOS;
        // The full buckets of the window plus the one being filled.
        let oldest = current.saturating_sub(METER_BUCKETS - 1);
        let n: u64 = self
            .slots
            .iter()
            .map(|s| s.load(Ordering::Relaxed))
            .filter(|v| (oldest..=current).contains(&(v >> COUNT_BITS)))
            .map(|v| v & COUNT_MASK)
            .sum();
        let first = first - 1;
        let window_start = oldest * BUCKET_NANOS;
        let (events, since) = if first >= window_start {
            // Young meter: the first event starts the span, so one event is no rate yet.
            (n.saturating_sub(1), first)
        } else {
            (n, window_start)
        };
        // Measured up to now, so a source that stopped shows its rate falling.
        let span = now_nanos.saturating_sub(since) as f64 / 1e9;
        if events == 0 || span <= 0.0 {
            0.0
        } else {
            events as f64 / span
        }
    }
}

fn nanos_since_origin(t: Instant) -> u64 {
    // Saturating: an instant from before the origin counts as the origin.
    u64::try_from(t.saturating_duration_since(origin()).as_nanos()).unwrap_or(u64::MAX)
}

/// Upper bounds, in seconds, of the latency histogram buckets.
pub const LATENCY_BUCKETS: [f64; 9] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0];

/// A Prometheus-style cumulative histogram with fixed buckets.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    /// Records one observation.
    pub fn observe(&self, d: Duration) {
        let s = d.as_secs_f64();
        for (b, le) in self.buckets.iter().zip(LATENCY_BUCKETS) {
            if s <= le {
                b.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(
            d.as_micros().min(u128::from(u64::MAX)) as u64,
            Ordering::Relaxed,
        );
    }

    /// Cumulative counts per bucket, the total count, and the sum in seconds.
    pub fn snapshot(&self) -> (Vec<(f64, u64)>, u64, f64) {
        let b = LATENCY_BUCKETS
            .iter()
            .zip(&self.buckets)
            .map(|(le, c)| (*le, c.load(Ordering::Relaxed)))
            .collect();
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        (b, self.count.load(Ordering::Relaxed), sum)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_is_cumulative() {
        let h = Histogram::default();
        h.observe(Duration::from_micros(500));
        h.observe(Duration::from_millis(30));
        let (b, n, sum) = h.snapshot();
        assert_eq!(n, 2);
        assert_eq!(b[0], (0.001, 1));
        assert_eq!(b.last().copied(), Some((1.0, 2)));
        assert!((sum - 0.0305).abs() < 1e-9);
    }

    #[test]
    fn meter_measures_a_steady_rate() {
        let m = RateMeter::default();
        // The common origin first: an instant from before it would count as the origin itself.
        let t0 = origin().max(Instant::now());
        // 30 events a second for 5 s: the window holds the last 2 s of them.
        for i in 0..150u32 {
            m.tick_at(t0 + Duration::from_secs(i.into()) / 30);
        }
        let r = m.rate_at(t0 + Duration::from_secs(5));
        assert!((r - 30.0).abs() < 2.0, "rate {r}");
        // A young meter: 10 events 0.1 s apart.
        let m = RateMeter::default();
        for i in 0..10u32 {
            m.tick_at(t0 + Duration::from_millis(100 * u64::from(i)));
        }
        let r = m.rate_at(t0 + Duration::from_millis(900));
        assert!((r - 10.0).abs() < 0.5, "rate {r}");
    }

    #[test]
    fn meter_falls_to_zero_when_events_stop() {
        let m = RateMeter::default();
        // The common origin first: an instant from before it would count as the origin itself.
        let t0 = origin().max(Instant::now());
        for i in 0..60u32 {
            m.tick_at(t0 + Duration::from_secs(i.into()) / 30);
        }
        let later = t0 + Duration::from_secs(2);
        let falling = m.rate_at(later + Duration::from_secs(1));
        assert!(falling > 0.0 && falling < 30.0, "rate {falling}");
        assert_eq!(m.rate_at(later + Duration::from_secs(3)), 0.0);
    }

    #[test]
    fn meter_counts_ticks_from_many_threads() {
        let m = std::sync::Arc::new(RateMeter::default());
        // The common origin first: an instant from before it would count as the origin itself.
        let t0 = origin().max(Instant::now());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let m = std::sync::Arc::clone(&m);
                std::thread::spawn(move || {
                    for _ in 0..1000 {
                        m.tick_at(t0);
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().expect("ticking thread");
        }
        // 4000 events in one instant, measured 1 s later: the first starts the span.
        let r = m.rate_at(t0 + Duration::from_secs(1));
        assert!((r - 3999.0).abs() < 1.0, "rate {r}");
    }

    #[test]
    fn meter_without_events_is_zero() {
        let m = RateMeter::default();
        assert_eq!(m.rate(), 0.0);
        m.tick();
        assert_eq!(m.rate(), 0.0);
    }
}
