//! Local rate-limit buckets: the generic cell rate algorithm (GCRA), the
//! token bucket written as one number per bucket, the "theoretical arrival
//! time" (TAT). A bucket of `requests` tokens refilled over `unit` has the
//! emission interval `T = unit / requests`; a request of cost `c` passes when
//! `max(TAT, now) + c·T − now ≤ unit`, and then sets `TAT = max(TAT, now) + c·T`.
//! A bucket whose TAT is in the past is full, which is why a forgotten bucket
//! and a full one are the same thing, and memory can be bounded by forgetting.
//!
//! The global (Redis) limiter runs the same arithmetic in a Lua script, so a
//! rule means the same locally and globally.
//!
//! - [`Cell`]: one bucket, an `AtomicU64` updated by compare-and-swap (no lock).
//! - [`Keyed`]: one bucket per distinct key (a header value, a client address),
//!   in shards of bounded size, keyed by a 64-bit SipHash of the key with a
//!   per-process random key (so no one can aim a collision at another's bucket).
//!   A full shard first forgets full buckets, then the fullest one left.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The outcome of taking from a bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Decision {
    /// The request fits.
    pub allowed: bool,
    /// Tokens left (after this request when it was allowed).
    pub remaining: u64,
    /// Nanoseconds until the bucket is full again.
    pub reset_ns: u64,
    /// Refused requests: nanoseconds until this request would fit.
    pub retry_after_ns: u64,
}

/// A bucket's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Limit {
    /// Tokens in a full bucket.
    pub requests: u64,
    /// The time to refill a whole bucket, in nanoseconds.
    pub unit_ns: u64,
}

impl Limit {
    /// `requests` per `unit`.
    pub fn new(requests: u64, unit: Duration) -> Self {
        Limit {
            requests: requests.max(1),
            unit_ns: u64::try_from(unit.as_nanos()).unwrap_or(u64::MAX / 4),
        }
    }

    fn interval(&self) -> u64 {
        (self.unit_ns / self.requests).max(1)
    }

    /// Take `cost` tokens from a bucket whose TAT is `tat` at `now`; the
    /// decision and the new TAT (unchanged when refused).
    pub fn take(&self, tat: u64, now: u64, cost: u64) -> (Decision, u64) {
        let t = self.interval();
        let base = tat.max(now);
        let new_tat = base.saturating_add(cost.saturating_mul(t));
        let horizon = now.saturating_add(self.unit_ns);
        if new_tat <= horizon {
            let d = Decision {
                allowed: true,
                remaining: (horizon - new_tat) / t,
                reset_ns: new_tat - now,
                retry_after_ns: 0,
            };
            (d, new_tat)
        } else {
            let d = Decision {
                allowed: false,
                remaining: horizon.saturating_sub(base) / t,
                reset_ns: base - now,
                retry_after_ns: new_tat - horizon,
            };
            (d, tat)
        }
    }
}

/// Nanoseconds since the process's first call (monotonic).
pub fn now_ns() -> u64 {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let start = *START.get_or_init(Instant::now);
    // Start a little after zero, so that an empty bucket's TAT (0) is in the past.
    u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX / 4) + 1
}

/// One bucket, updated without a lock.
#[derive(Debug, Default)]
pub struct Cell {
    tat: AtomicU64,
}

impl Cell {
    /// Take `cost` tokens at `now`.
    pub fn take(&self, limit: &Limit, now: u64, cost: u64) -> Decision {
        let mut cur = self.tat.load(Ordering::Relaxed);
        loop {
            let (d, new) = limit.take(cur, now, cost);
            if !d.allowed || new == cur {
                return d;
            }
            match self
                .tat
                .compare_exchange_weak(cur, new, Ordering::AcqRel, Ordering::Relaxed)
            {
                Ok(_) => return d,
                Err(seen) => cur = seen,
            }
        }
    }
}

const SHARDS: usize = 64;

/// One bucket per key, with at most `max_keys` buckets remembered.
#[derive(Debug)]
pub struct Keyed {
    shards: Box<[Mutex<HashMap<u64, u64>>]>,
    per_shard: usize,
    hasher: std::collections::hash_map::RandomState,
}

impl Keyed {
    /// Room for about `max_keys` buckets.
    pub fn new(max_keys: usize) -> Self {
        Keyed {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard: max_keys.div_ceil(SHARDS).max(1),
            hasher: std::collections::hash_map::RandomState::new(),
        }
    }

    /// A hasher for a key made of several parts (hash each, then [`Self::take`]).
    pub fn hasher(&self) -> std::collections::hash_map::DefaultHasher {
        self.hasher.build_hasher()
    }

    /// Buckets remembered now.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map(|m| m.len()).unwrap_or(0))
            .sum()
    }

    /// Whether no bucket is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Take `cost` tokens from the bucket of `key` (a hash from [`Self::hasher`]).
    pub fn take(&self, key: u64, limit: &Limit, now: u64, cost: u64) -> Decision {
        let shard = &self.shards[(key as usize) % SHARDS];
        let mut m = shard.lock().unwrap_or_else(|e| e.into_inner());
        let tat = m.get(&key).copied().unwrap_or(0);
        let (d, new) = limit.take(tat, now, cost);
        if new != tat {
            if !m.contains_key(&key) && m.len() >= self.per_shard {
                // Forget full buckets; if none is full, the one closest to full.
                m.retain(|_, t| *t > now);
                if m.len() >= self.per_shard
                    && let Some((&k, _)) = m.iter().min_by_key(|(_, t)| **t)
                {
                    m.remove(&k);
                }
            }
            m.insert(key, new);
        }
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn a_full_bucket_admits_exactly_its_size_then_refills_at_the_rate() {
        let l = Limit::new(5, Duration::from_secs(10));
        let c = Cell::default();
        let now = 100 * S;
        for left in (0..5).rev() {
            let d = c.take(&l, now, 1);
            assert!(d.allowed);
            assert_eq!(d.remaining, left);
        }
        let d = c.take(&l, now, 1);
        assert!(!d.allowed);
        assert_eq!(d.remaining, 0);
        assert_eq!(d.retry_after_ns, 2 * S, "one token per 2 s");
        assert_eq!(d.reset_ns, 10 * S);
        assert!(!c.take(&l, now + 2 * S - 1, 1).allowed);
        assert!(c.take(&l, now + 2 * S, 1).allowed);
        assert!(!c.take(&l, now + 2 * S, 1).allowed);
    }

    #[test]
    fn cost_takes_several_tokens_and_zero_only_checks() {
        let l = Limit::new(10, Duration::from_secs(1));
        let c = Cell::default();
        let now = 5 * S;
        assert_eq!(c.take(&l, now, 7).remaining, 3);
        let d = c.take(&l, now, 4);
        assert!(!d.allowed, "4 > 3 left");
        assert_eq!(d.remaining, 3, "a refused request takes nothing");
        assert!(c.take(&l, now, 0).allowed);
        assert_eq!(c.take(&l, now, 3).remaining, 0);
        assert!(!c.take(&l, now, 1).allowed);
    }

    #[test]
    fn keyed_buckets_are_separate_and_memory_is_bounded() {
        let l = Limit::new(2, Duration::from_secs(60));
        let k = Keyed::new(640);
        let now = 10 * S;
        for key in [1u64, 2] {
            assert!(k.take(key, &l, now, 1).allowed);
            assert!(k.take(key, &l, now, 1).allowed);
            assert!(!k.take(key, &l, now, 1).allowed);
        }
        for key in 0..100_000u64 {
            k.take(key.wrapping_mul(0x9E37_79B9_7F4A_7C15), &l, now, 1);
        }
        assert!(k.len() <= 640, "{} buckets", k.len());
    }

    #[test]
    fn concurrent_takes_admit_exactly_the_bucket() {
        let l = Limit::new(1000, Duration::from_secs(3600));
        let c = std::sync::Arc::new(Cell::default());
        let now = 3 * S;
        let admitted: u64 = (0..4)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || (0..500).filter(|_| c.take(&l, now, 1).allowed).count())
            })
            .map(|h| h.join().unwrap() as u64)
            .sum();
        assert_eq!(admitted, 1000);
    }
}
