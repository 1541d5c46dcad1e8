//! Small, bounded measurement helpers: a recent-rate meter and a fixed-bucket histogram.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// Events remembered per meter: enough for 2 s at 120 fps, bounded whatever the rate.
const METER_EVENTS: usize = 256;
/// The window a rate is measured over.
const METER_WINDOW: Duration = Duration::from_secs(2);

/// Measures an event rate over the last couple of seconds.
#[derive(Debug, Default)]
pub struct RateMeter(Mutex<VecDeque<Instant>>);

impl RateMeter {
    /// Records one event now.
    pub fn tick(&self) {
        // Poison recovered: a queue of instants is consistent after any panic.
        let mut q = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if q.len() == METER_EVENTS {
            q.pop_front();
        }
        q.push_back(Instant::now());
    }

    /// Events per second over the recent window; 0 when there were none lately.
    pub fn rate(&self) -> f64 {
        // Poison recovered: a queue of instants is consistent after any panic.
        let q = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let recent: Vec<&Instant> = q
            .iter()
            .filter(|t| now.duration_since(**t) <= METER_WINDOW)
            .collect();
        match (recent.first(), recent.len()) {
            (Some(first), n) if n >= 2 => {
                // Measure up to now, so a source that stopped shows its rate falling.
                let span = now.duration_since(**first).as_secs_f64();
                if span > 0.0 {
                    (n - 1) as f64 / span
                } else {
                    0.0
                }
            }
            _ => 0.0,
        }
    }
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
    fn meter_without_events_is_zero() {
        let m = RateMeter::default();
        assert_eq!(m.rate(), 0.0);
        m.tick();
        assert_eq!(m.rate(), 0.0);
    }
}
