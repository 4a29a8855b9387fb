//! Slow start (BackendTrafficPolicy `loadBalancer.slowStart.window`, with
//! `RoundRobin` and `LeastRequest`): an endpoint that joined a backend,
//! that active health checks found healthy again, or whose outlier ejection
//! ended (as Envoy ramps a host returning to service), gets a share of the
//! traffic that grows linearly over the window, from 10 % of its normal
//! share (Envoy's default minimum weight) to all of it.
//!
//! When an endpoint joined is known across configuration changes through
//! [`Births`], a registry of weak references like the rate-limit buckets':
//! the compiled backends hold each endpoint's start time, and a rebuild
//! finds the start times of the endpoints it already had while the previous
//! table is still alive. The endpoints of a backend seen for the first time
//! (a fresh start, a new route) are not ramped: there is nothing to ramp
//! them against.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};

use crate::ratelimit::gcra::now_ns;

/// When an endpoint started its ramp ([`now_ns`] time; 0: not ramping).
pub type RampStart = Arc<AtomicU64>;

/// The share of an endpoint's traffic at the start of its window, in
/// thousandths.
const MIN_SHARE_PERMILLE: u64 = 100;

/// The start times of endpoints, by backend, kept across rebuilds.
#[derive(Debug, Default)]
pub struct Births {
    by_backend: Mutex<ByBackend>,
}

#[derive(Debug, Default)]
struct ByBackend {
    map: HashMap<Box<str>, HashMap<SocketAddr, Weak<AtomicU64>>>,
    /// Calls since every backend was last pruned of dead entries.
    since_prune: usize,
}

/// Every backend is pruned of endpoints no table holds once per this many
/// calls (a backend's own entries are pruned at each call); the same for
/// [`super::SharedTargets`].
pub(super) const PRUNE_EVERY: usize = 256;

impl Births {
    /// The ramp start of each of `addrs` of `backend`: the one it had in a
    /// table still alive, else now (or 0, not ramping, when the backend has
    /// no endpoint in any live table).
    pub fn starts(&self, backend: &str, addrs: &[SocketAddr]) -> Vec<RampStart> {
        let mut guard = self.by_backend.lock().unwrap_or_else(|e| e.into_inner());
        let b = &mut *guard;
        b.since_prune += 1;
        if b.since_prune >= PRUNE_EVERY {
            b.since_prune = 0;
            b.map.retain(|_, eps| {
                eps.retain(|_, w| w.strong_count() > 0);
                !eps.is_empty()
            });
        }
        let eps = b.map.entry(backend.into()).or_default();
        eps.retain(|_, w| w.strong_count() > 0);
        let known = !eps.is_empty();
        let now = now_ns();
        addrs
            .iter()
            .map(|a| {
                if let Some(s) = eps.get(a).and_then(Weak::upgrade) {
                    return s;
                }
                let s = Arc::new(AtomicU64::new(if known { now } else { 0 }));
                eps.insert(*a, Arc::downgrade(&s));
                s
            })
            .collect()
    }
}

/// Restart an endpoint's ramp (it became healthy again).
pub fn restart(s: &AtomicU64) {
    restart_at(s, now_ns());
}

/// Restart an endpoint's ramp from `at` ([`now_ns`] time; an ejection's
/// end, which the balancer notices at the first pick after it).
pub fn restart_at(s: &AtomicU64, at: u64) {
    s.store(at.max(1), Ordering::Relaxed);
}

/// The endpoint's share of its normal traffic at `now`, in thousandths.
pub fn share_permille(start: &AtomicU64, window_ns: u64, now: u64) -> u64 {
    let from = start.load(Ordering::Relaxed);
    let elapsed = now.saturating_sub(from);
    if from == 0 || elapsed >= window_ns {
        return 1000;
    }
    (elapsed.saturating_mul(1000) / window_ns.max(1)).max(MIN_SHARE_PERMILLE)
}

/// Whether a pick of an endpoint at `share` thousandths is kept (else the
/// balancer looks again).
pub fn admit(share: u64) -> bool {
    share >= 1000 || (super::balance::random_below(1000) as u64) < share
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_endpoints_of_a_known_backend_ramp_and_known_ones_keep_their_start() {
        let b = Births::default();
        let a1: SocketAddr = "10.0.0.1:80".parse().unwrap();
        let a2: SocketAddr = "10.0.0.2:80".parse().unwrap();
        let first = b.starts("svc", &[a1]);
        assert_eq!(
            first[0].load(Ordering::Relaxed),
            0,
            "a new backend: no ramp"
        );
        let second = b.starts("svc", &[a1, a2]);
        assert!(Arc::ptr_eq(&first[0], &second[0]));
        let start = second[1].load(Ordering::Relaxed);
        assert!(start > 0, "an endpoint that joined ramps");
        let w = 10_000_000_000; // 10 s
        assert_eq!(share_permille(&second[0], w, start), 1000);
        assert_eq!(share_permille(&second[1], w, start), MIN_SHARE_PERMILLE);
        assert_eq!(share_permille(&second[1], w, start + w / 2), 500);
        assert_eq!(share_permille(&second[1], w, start + w), 1000);
        // Once no table holds the backend, it is forgotten.
        drop((first, second));
        assert_eq!(b.starts("svc", &[a2])[0].load(Ordering::Relaxed), 0);
    }

    #[test]
    fn admission_follows_the_share() {
        let kept = (0..10_000).filter(|_| admit(200)).count();
        assert!((1_500..2_500).contains(&kept), "{kept}");
        assert!((0..100).all(|_| admit(1000)));
    }
}
