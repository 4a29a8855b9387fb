//! Endpoint choice (BackendTrafficPolicy `loadBalancer`) and outlier
//! detection (`healthCheck.passive`), on the endpoints of one backend.
//!
//! - **LeastRequest** (the default): power of two choices by requests in flight.
//! - **RoundRobin**: a shared counter, in turn.
//! - **Random**: uniformly.
//! - **ConsistentHash**: Maglev (Eisenbud et al., NSDI 2016): a lookup table
//!   of a prime size `M` filled from each endpoint's permutation of the slots,
//!   so every endpoint owns about `M / n` slots and adding or removing one
//!   moves about `1 / n` of the keys. Endpoints are named by their address
//!   with a fixed hash, so every proxy builds the same table. The key is the
//!   client address, a header, or a cookie (generated when absent).
//!
//! Outlier detection counts consecutive failures per endpoint (5xx answers,
//! 502/503/504, local-origin failures: connect, reset, timeout) and ejects an
//! endpoint past a threshold for `baseEjectionTime × ejections`, rounded up
//! to the `interval` grid, while at most `maxEjectionPercent` of the
//! endpoints (but always one) are out. An ejected endpoint gets no traffic;
//! when every endpoint is ejected, traffic is spread over all of them (panic
//! mode) rather than refused. With a slow-start window, an endpoint whose
//! ejection ended ramps up again (see [`super::slow_start`]).

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use http::HeaderMap;
use portcullis_ir::traffic::{self as ir, HashOn};
use rand::Rng;

use super::endpoint::EndpointState;
use crate::ratelimit::gcra::now_ns;

/// What a request offers to a consistent hash.
#[derive(Clone, Copy)]
pub struct PickCtx<'a> {
    /// The client address.
    pub client: IpAddr,
    /// The request headers.
    pub headers: &'a HeaderMap,
}

/// A 64-bit FNV-1a hash with a seed: fixed, so every proxy agrees.
fn fnv(seed: u64, bytes: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed.wrapping_mul(0x100_0000_01b3);
    for b in bytes {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x100_0000_01b3);
    }
    // Final avalanche (FNV alone mixes the last bytes poorly).
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^ (h >> 33)
}

/// The Maglev lookup table for endpoints named `names`, of prime size `m`.
pub fn maglev(names: &[String], m: usize) -> Box<[u32]> {
    let n = names.len();
    let mut table = vec![u32::MAX; m].into_boxed_slice();
    if n == 0 || m == 0 {
        return table;
    }
    let perms: Vec<(usize, usize)> = names
        .iter()
        .map(|name| {
            let offset = (fnv(0xdead_beef, name.as_bytes()) % m as u64) as usize;
            let skip = (fnv(0x0bad_cafe, name.as_bytes()) % (m as u64 - 1)) as usize + 1;
            (offset, skip)
        })
        .collect();
    let mut next = vec![0usize; n];
    let mut filled = 0;
    'fill: loop {
        for i in 0..n {
            let (offset, skip) = perms[i];
            let mut c = (offset + next[i] * skip) % m;
            while table[c] != u32::MAX {
                next[i] += 1;
                c = (offset + next[i] * skip) % m;
            }
            table[c] = i as u32;
            next[i] += 1;
            filled += 1;
            if filled == m {
                break 'fill;
            }
        }
    }
    table
}

/// The compiled choice policy of one backend.
#[derive(Debug, Default)]
pub enum Balancer {
    /// Power of two choices.
    #[default]
    LeastRequest,
    /// In turn.
    RoundRobin(AtomicUsize),
    /// Uniformly.
    Random,
    /// Maglev.
    Maglev {
        /// The lookup table (endpoint indices).
        table: Box<[u32]>,
        /// What is hashed.
        on: HashOn,
    },
}

impl Balancer {
    /// Compile for endpoints named `names`.
    pub fn new(lb: &ir::LoadBalancer, names: &[String]) -> Self {
        match lb {
            ir::LoadBalancer::LeastRequest => Balancer::LeastRequest,
            ir::LoadBalancer::RoundRobin => Balancer::RoundRobin(AtomicUsize::new(0)),
            ir::LoadBalancer::Random => Balancer::Random,
            ir::LoadBalancer::ConsistentHash { on, table_size } => Balancer::Maglev {
                table: maglev(names, usize::try_from(*table_size).unwrap_or(65_537)),
                on: on.clone(),
            },
        }
    }

    /// The cookie a consistent hash reads, if any: (name, ttl seconds).
    pub fn hash_cookie(&self) -> Option<(&str, Option<u64>)> {
        match self {
            Balancer::Maglev {
                on: HashOn::Cookie { name, ttl_seconds },
                ..
            } => Some((name, *ttl_seconds)),
            _ => None,
        }
    }

    /// The hash of the request's key; `None` when the key is missing (a
    /// missing header or cookie: any endpoint).
    pub fn key(&self, cx: &PickCtx<'_>, generated: Option<&str>) -> Option<u64> {
        let Balancer::Maglev { on, .. } = self else {
            return None;
        };
        Some(match on {
            HashOn::SourceIp => match cx.client {
                IpAddr::V4(a) => fnv(1, &a.octets()),
                IpAddr::V6(a) => fnv(1, &a.octets()),
            },
            HashOn::Header(name) => fnv(2, cx.headers.get(name.as_str())?.as_bytes()),
            HashOn::Cookie { name, .. } => match cookie(cx.headers, name) {
                Some(v) => fnv(3, v),
                None => fnv(3, generated?.as_bytes()),
            },
        })
    }
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    headers
        .get_all(http::header::COOKIE)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b';'))
        .find_map(|pair| {
            let pair = pair.trim_ascii();
            let eq = pair.iter().position(|b| *b == b'=')?;
            (pair[..eq].trim_ascii() == name.as_bytes()).then(|| pair[eq + 1..].trim_ascii())
        })
}

/// Per-endpoint outlier state.
#[derive(Debug, Default)]
pub struct Health {
    consecutive_5xx: AtomicU32,
    consecutive_gateway: AtomicU32,
    consecutive_local: AtomicU32,
    ejections: AtomicU32,
    /// 0: in service; else ejected until this time ([`now_ns`]).
    ejected_until: AtomicU64,
    /// Marked unhealthy by active health checks.
    unhealthy: std::sync::atomic::AtomicBool,
}

impl Health {
    /// Whether the endpoint is ejected at `now`.
    pub fn ejected(&self, now: u64) -> bool {
        let u = self.ejected_until.load(Ordering::Relaxed);
        u != 0 && u > now
    }

    /// Whether active health checks marked the endpoint unhealthy.
    pub fn unhealthy(&self) -> bool {
        self.unhealthy.load(Ordering::Relaxed)
    }

    /// Mark the endpoint (un)healthy; whether that changed its state.
    pub fn set_unhealthy(&self, v: bool) -> bool {
        self.unhealthy.swap(v, Ordering::AcqRel) != v
    }

    /// Whether the endpoint may get traffic at `now`.
    pub fn available(&self, now: u64) -> bool {
        !self.unhealthy() && !self.ejected(now)
    }
}

/// What an attempt on an endpoint came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// A response with this status.
    Status(u16),
    /// A local-origin failure: connect, reset, timeout.
    LocalFailure,
}

/// Compiled outlier detection of one backend.
#[derive(Debug)]
pub struct Outliers {
    cfg: ir::Outlier,
    /// Endpoints whose `ejected_until` is set (maybe expired).
    ejected: AtomicUsize,
}

impl Outliers {
    /// Compile.
    pub fn new(cfg: &ir::Outlier) -> Self {
        Outliers {
            cfg: cfg.clone(),
            ejected: AtomicUsize::new(0),
        }
    }

    /// Whether any endpoint may be ejected (a cheap test before filtering).
    pub fn any(&self) -> bool {
        self.ejected.load(Ordering::Relaxed) > 0
    }

    /// Clear expired ejections among `eps`; the number still ejected.
    pub fn sweep(&self, eps: &[Arc<EndpointState>], now: u64) -> usize {
        let mut out = 0;
        for e in eps {
            let u = e.health.ejected_until.load(Ordering::Relaxed);
            if u == 0 {
                continue;
            }
            if u <= now {
                if e.health
                    .ejected_until
                    .compare_exchange(u, 0, Ordering::AcqRel, Ordering::Relaxed)
                    .is_ok()
                {
                    self.ejected.fetch_sub(1, Ordering::Relaxed);
                    // Slow start: an endpoint back from an ejection ramps
                    // up again, from the end of its ejection.
                    if let Some(r) = &e.ramp {
                        super::slow_start::restart_at(r, u);
                    }
                    tracing::info!(endpoint = %e.addr, "outlier detection: endpoint back in service");
                }
            } else {
                out += 1;
            }
        }
        out
    }

    /// Count an attempt's outcome on `ep` (one of `eps`), ejecting it past a threshold.
    pub fn record(&self, eps: &[Arc<EndpointState>], ep: &EndpointState, o: Outcome) {
        let h = &ep.health;
        let c = &self.cfg;
        let (five, gw, local) = match o {
            Outcome::Status(s) if s < 500 => {
                h.consecutive_5xx.store(0, Ordering::Relaxed);
                h.consecutive_gateway.store(0, Ordering::Relaxed);
                h.consecutive_local.store(0, Ordering::Relaxed);
                return;
            }
            Outcome::Status(s) => (true, matches!(s, 502..=504), false),
            // Unless split, a local-origin failure counts as a gateway error.
            Outcome::LocalFailure if c.split_local_origin => (false, false, true),
            Outcome::LocalFailure => (true, true, false),
        };
        let bump = |a: &AtomicU32, on: bool, limit: u32| {
            if on {
                limit > 0 && a.fetch_add(1, Ordering::Relaxed) + 1 >= limit
            } else {
                a.store(0, Ordering::Relaxed);
                false
            }
        };
        let over = bump(&h.consecutive_5xx, five, c.consecutive_5xx)
            | bump(&h.consecutive_gateway, gw, c.consecutive_gateway)
            | bump(&h.consecutive_local, local, c.consecutive_local_origin);
        if over {
            self.eject(eps, ep);
        }
    }

    fn eject(&self, eps: &[Arc<EndpointState>], ep: &EndpointState) {
        let now = now_ns();
        let h = &ep.health;
        if h.ejected(now) {
            return;
        }
        let out = self.sweep(eps, now);
        let max = (eps.len() * self.cfg.max_ejection_percent as usize / 100).max(1);
        if out >= max {
            tracing::debug!(endpoint = %ep.addr, "outlier detection: at maxEjectionPercent, not ejected");
            return;
        }
        let n = u64::from(h.ejections.fetch_add(1, Ordering::Relaxed) + 1);
        let grid = self.cfg.interval_ms.max(1) * 1_000_000;
        let until = now + self.cfg.base_ejection_ms * 1_000_000 * n;
        let until = until.div_ceil(grid) * grid;
        if h.ejected_until
            .compare_exchange(0, until, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
        {
            self.ejected.fetch_add(1, Ordering::Relaxed);
            h.consecutive_5xx.store(0, Ordering::Relaxed);
            h.consecutive_gateway.store(0, Ordering::Relaxed);
            h.consecutive_local.store(0, Ordering::Relaxed);
            tracing::warn!(endpoint = %ep.addr, ejections = n, "outlier detection: endpoint ejected");
        }
    }
}

/// A random index below `n` (n > 0).
pub fn random_below(n: usize) -> usize {
    rand::rng().random_range(0..n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (0..n)
            .map(|i| format!("10.0.{}.{}:8080", i / 250, i % 250))
            .collect()
    }

    #[test]
    fn maglev_spreads_evenly_and_moves_few_keys_when_an_endpoint_is_added() {
        let m = 65_537;
        let before = maglev(&names(10), m);
        let mut counts = [0usize; 10];
        for e in before.iter() {
            counts[*e as usize] += 1;
        }
        for c in counts {
            assert!((5_900..=7_200).contains(&c), "{counts:?}");
        }
        let after = maglev(&names(11), m);
        let moved = before
            .iter()
            .zip(after.iter())
            .filter(|(a, b)| a != b)
            .count();
        let share = moved as f64 / m as f64;
        // Ideal: 1/11 ≈ 0.091 of the keys move to the new endpoint.
        assert!(share < 0.13, "moved share {share}");
        assert!(share > 0.08, "moved share {share}");
        let removed = maglev(&names(9), m);
        let moved = before
            .iter()
            .zip(removed.iter())
            .filter(|(a, b)| a != b)
            .count();
        assert!(
            (moved as f64 / m as f64) < 0.16,
            "removing one moved {moved}"
        );
    }

    #[test]
    fn cookies_are_found_among_several() {
        let mut h = HeaderMap::new();
        h.append(
            http::header::COOKIE,
            "a=1; sess = xyz ;b=2".parse().unwrap(),
        );
        assert_eq!(cookie(&h, "sess"), Some(&b"xyz"[..]));
        assert_eq!(cookie(&h, "b"), Some(&b"2"[..]));
        assert_eq!(cookie(&h, "c"), None);
    }
}
