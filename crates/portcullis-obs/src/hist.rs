//! A fixed-bucket histogram of durations made of atomics: observing is a
//! handful of relaxed atomic adds, no lock and no allocation.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds of the duration buckets, in seconds (`+Inf` is implicit).
pub const BUCKETS: [f64; 13] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The same bounds in nanoseconds.
const BOUNDS_NS: [u64; 13] = [
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
    2_500_000_000,
    5_000_000_000,
    10_000_000_000,
];

/// Series one histogram exposes: every bucket, `+Inf`, `_sum` and `_count`.
pub const SERIES: usize = BUCKETS.len() + 3;

/// A duration histogram (non-cumulative bucket counts; cumulated when encoded).
#[derive(Debug, Default)]
pub struct DurationHistogram {
    buckets: [AtomicU64; BUCKETS.len() + 1],
    sum_ns: AtomicU64,
}

impl DurationHistogram {
    /// Record one observation.
    #[inline]
    pub fn observe(&self, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        let i = BOUNDS_NS.partition_point(|b| *b < ns);
        self.buckets[i].fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
    }

    /// Observations so far.
    pub fn count(&self) -> u64 {
        self.buckets.iter().map(|b| b.load(Ordering::Relaxed)).sum()
    }

    /// `(sum in seconds, count, per-bucket counts)` as prometheus-client's
    /// encoder wants them: not cumulative (it cumulates), `+Inf` as `f64::MAX`.
    pub fn snapshot(&self) -> (f64, u64, Vec<(f64, u64)>) {
        let mut acc = 0;
        let mut out = Vec::with_capacity(BUCKETS.len() + 1);
        for (i, b) in self.buckets.iter().enumerate() {
            let n = b.load(Ordering::Relaxed);
            acc += n;
            out.push((BUCKETS.get(i).copied().unwrap_or(f64::MAX), n));
        }
        let sum = self.sum_ns.load(Ordering::Relaxed) as f64 / 1e9;
        (sum, acc, out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_bounds_are_inclusive() {
        let h = DurationHistogram::default();
        h.observe(Duration::from_millis(1));
        h.observe(Duration::from_millis(3));
        h.observe(Duration::from_secs(60));
        let (sum, count, b) = h.snapshot();
        assert_eq!(count, 3);
        assert!((sum - 60.004).abs() < 1e-9);
        assert_eq!(b[0], (0.001, 1));
        assert_eq!(b[1], (0.0025, 0));
        assert_eq!(b[2], (0.005, 1));
        assert_eq!(b[13], (f64::MAX, 1));
    }
}
