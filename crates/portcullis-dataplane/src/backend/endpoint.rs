//! Endpoints of one backend, and picking one: least-request power of two
//! choices by default, or the BackendTrafficPolicy's balancer, skipping
//! endpoints ejected by outlier detection (see [`super::balance`]).

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::uri::Authority;
use portcullis_ir::Endpoint;
use portcullis_obs::health::EndpointHealth;
use rand::Rng;

use super::balance::{Balancer, Health, Outcome, Outliers, PickCtx};

/// One endpoint with its in-flight request count.
#[derive(Debug)]
pub struct EndpointState {
    /// Address.
    pub addr: SocketAddr,
    /// `ip:port` as a URI authority, precomputed.
    pub authority: Authority,
    /// Opaque session-persistence token naming this endpoint.
    pub token: Box<str>,
    inflight: AtomicUsize,
    /// Requests in flight to every endpoint of the set (circuit breaker).
    total: Arc<AtomicUsize>,
    /// Outlier-detection state.
    pub health: Health,
    /// Slow start: when the endpoint's ramp began (with a slow-start window).
    pub ramp: Option<super::slow_start::RampStart>,
}

/// Counts a request against an endpoint until dropped.
#[derive(Debug)]
pub struct InflightGuard(Arc<EndpointState>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::Relaxed);
        self.0.total.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts a retry in flight against a backend until dropped.
#[derive(Debug)]
pub struct RetryGuard(Arc<AtomicUsize>);

impl Drop for RetryGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl EndpointState {
    /// Start counting a request.
    pub fn acquire(self: &Arc<Self>) -> InflightGuard {
        self.inflight.fetch_add(1, Ordering::Relaxed);
        self.total.fetch_add(1, Ordering::Relaxed);
        InflightGuard(self.clone())
    }

    /// Start counting a request unless `max` are in flight to the set
    /// already (the circuit breaker's `maxParallelRequests`).
    pub fn try_acquire(self: &Arc<Self>, max: usize) -> Option<InflightGuard> {
        if self.total.fetch_add(1, Ordering::AcqRel) >= max {
            self.total.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        self.inflight.fetch_add(1, Ordering::Relaxed);
        Some(InflightGuard(self.clone()))
    }

    /// Requests in flight.
    pub fn inflight(&self) -> usize {
        self.inflight.load(Ordering::Relaxed)
    }
}

/// The endpoints used for a backend: the non-terminating ones, or the
/// terminating ones when no other is left.
#[derive(Debug, Default)]
pub struct EndpointSet {
    eps: Vec<Arc<EndpointState>>,
    by_token: HashMap<Box<str>, usize>,
    balancer: Balancer,
    outliers: Option<Outliers>,
    /// Endpoints marked unhealthy by active health checks.
    down: Arc<AtomicUsize>,
    /// The active health checks' tasks (stopped when the set is dropped).
    _prober: Option<super::active::Prober>,
    total: Arc<AtomicUsize>,
    retrying: Arc<AtomicUsize>,
    /// Circuit breaker: requests in flight at once (unbounded without a policy).
    pub max_parallel_requests: usize,
    max_parallel_retries: usize,
    /// Upstream connection limits and timeouts (a policy's).
    conn: Option<Arc<super::upstream::ConnPolicy>>,
    /// Slow-start window, in nanoseconds.
    slow_start_ns: Option<u64>,
    /// Zone-aware routing.
    zones: Option<super::zone::Zones>,
}

impl EndpointSet {
    /// Build from the IR, naming each endpoint with a keyed hash of its address.
    pub fn new(endpoints: &[Endpoint], tokens: &impl BuildHasher) -> Self {
        Self::with_policy(endpoints, tokens, None, None, None)
    }

    /// Build with a BackendTrafficPolicy's balancer and outlier detection;
    /// `births` (the registry and the backend's name) gives endpoints their
    /// slow-start ramp when the policy has a window; `zone` is the proxy's
    /// (zone-aware routing).
    pub fn with_policy(
        endpoints: &[Endpoint],
        tokens: &impl BuildHasher,
        policy: Option<&portcullis_ir::traffic::BackendTraffic>,
        births: Option<(&super::slow_start::Births, &str)>,
        zone: Option<&str>,
    ) -> Self {
        let ready: Vec<_> = endpoints.iter().filter(|e| !e.terminating).collect();
        let chosen = if ready.is_empty() {
            endpoints.iter().collect()
        } else {
            ready
        };
        let total = Arc::new(AtomicUsize::new(0));
        let slow_start_ns = policy
            .and_then(|p| p.slow_start_window_ms)
            .map(|ms| ms.saturating_mul(1_000_000));
        let mut ramps = match (slow_start_ns, births) {
            (Some(_), Some((b, name))) => {
                let addrs: Vec<_> = chosen.iter().map(|e| e.addr).collect();
                b.starts(name, &addrs).into_iter().map(Some).collect()
            }
            _ => vec![None; chosen.len()],
        }
        .into_iter();
        let zones = policy
            .and_then(|p| p.zone_aware.as_ref())
            .and_then(|z| super::zone::Zones::new(z, zone, &chosen));
        let mut eps = Vec::with_capacity(chosen.len());
        let mut by_token = HashMap::with_capacity(chosen.len());
        for e in chosen {
            let ramp = ramps.next().flatten();
            // An IP and port always make an authority.
            let Ok(authority) = Authority::try_from(e.addr.to_string()) else {
                continue;
            };
            let token: Box<str> = format!("{:016x}", tokens.hash_one(e.addr)).into();
            by_token.insert(token.clone(), eps.len());
            eps.push(Arc::new(EndpointState {
                addr: e.addr,
                authority,
                token,
                inflight: AtomicUsize::new(0),
                total: total.clone(),
                health: Health::default(),
                ramp,
            }));
        }
        let (balancer, outliers) = match policy {
            None => (Balancer::default(), None),
            Some(p) => {
                let names: Vec<String> = eps.iter().map(|e| e.addr.to_string()).collect();
                (
                    Balancer::new(&p.load_balancer, &names),
                    p.outlier.as_ref().map(Outliers::new),
                )
            }
        };
        let down = Arc::new(AtomicUsize::new(0));
        let prober = policy
            .and_then(|p| p.active.as_ref())
            .map(|a| super::active::Prober::start(&eps, a, &down));
        let cb = policy.and_then(|p| p.circuit_breaker.as_ref());
        let limit = |v: Option<u64>, default: usize| {
            v.map_or(default, |v| usize::try_from(v).unwrap_or(usize::MAX))
        };
        EndpointSet {
            eps,
            by_token,
            balancer,
            outliers,
            down,
            _prober: prober,
            total,
            retrying: Arc::default(),
            max_parallel_requests: limit(cb.map(|c| c.max_parallel_requests), usize::MAX),
            max_parallel_retries: limit(cb.map(|c| c.max_parallel_retries), 1024),
            conn: policy.and_then(super::upstream::ConnPolicy::from_ir),
            slow_start_ns,
            zones,
        }
    }

    /// The upstream connection policy, if the backend's policy has one.
    pub fn conn_policy(&self) -> Option<&Arc<super::upstream::ConnPolicy>> {
        self.conn.as_ref()
    }

    /// Requests in flight to the set.
    pub fn inflight(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }

    /// Permission for one more retry: the retry budget allows retries up to
    /// 20 % of the requests in flight (at least 3), and the circuit breaker's
    /// `maxParallelRetries`, so that retries cannot multiply the load on a
    /// failing backend.
    pub fn try_retry(&self) -> Option<RetryGuard> {
        let budget = (self.inflight() / 5).max(3).min(self.max_parallel_retries);
        if self.retrying.fetch_add(1, Ordering::AcqRel) >= budget {
            self.retrying.fetch_sub(1, Ordering::Relaxed);
            return None;
        }
        Some(RetryGuard(self.retrying.clone()))
    }

    /// The balancer.
    pub fn balancer(&self) -> &Balancer {
        &self.balancer
    }

    /// Count an attempt's outcome (outlier detection), if the policy has it.
    pub fn record(&self, ep: &EndpointState, o: Outcome) {
        if let Some(out) = &self.outliers {
            out.record(&self.eps, ep, o);
        }
    }

    /// Indices of the endpoints in service, when some are ejected (and not
    /// all: then every endpoint is a candidate, panic mode).
    fn in_service(&self) -> Option<Vec<usize>> {
        let out = self.outliers.as_ref().filter(|o| o.any());
        let down = self.down.load(Ordering::Relaxed) > 0;
        if out.is_none() && !down {
            return None;
        }
        let now = crate::ratelimit::gcra::now_ns();
        let ejected = out.map_or(0, |o| o.sweep(&self.eps, now));
        if ejected == 0 && !down {
            return None;
        }
        let ok: Vec<usize> = (0..self.eps.len())
            .filter(|i| self.eps[*i].health.available(now))
            .collect();
        (!ok.is_empty()).then_some(ok)
    }

    /// Pick for a request with the policy's balancer; `generated` is the
    /// value of a consistent-hash cookie the response will set, if any.
    pub fn pick_for(
        &self,
        cx: &PickCtx<'_>,
        generated: Option<&str>,
    ) -> Option<&Arc<EndpointState>> {
        let n = self.eps.len();
        if n == 0 {
            return None;
        }
        let in_service = self.in_service();
        // Zone-aware routing narrows the candidates (not for Maglev, whose
        // keys must keep their endpoint).
        let live: Option<std::borrow::Cow<'_, [usize]>> = match &self.zones {
            Some(z) if !matches!(self.balancer, Balancer::Maglev { .. }) => {
                z.candidates(in_service.as_deref())
            }
            _ => in_service.as_deref().map(std::borrow::Cow::Borrowed),
        };
        let ok = |i: usize| live.as_ref().is_none_or(|l| l.binary_search(&i).is_ok());
        match &self.balancer {
            Balancer::LeastRequest => {
                let mut picked = self.pick_among(live.as_deref());
                // Slow start: a ramping endpoint's pick is kept with its
                // share; else look again (twice at most).
                for _ in 0..2 {
                    match picked {
                        Some(e) if !self.admit(e) => picked = self.pick_among(live.as_deref()),
                        _ => break,
                    }
                }
                picked
            }
            Balancer::Random => Some(match &live {
                None => &self.eps[super::balance::random_below(n)],
                Some(l) => &self.eps[l[super::balance::random_below(l.len())]],
            }),
            Balancer::RoundRobin(next) => {
                let mut fallback = None;
                for _ in 0..n {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % n;
                    if ok(i) {
                        // Slow start: a ramping endpoint's turn is taken
                        // with its share, else by the next one.
                        if self.admit(&self.eps[i]) {
                            return Some(&self.eps[i]);
                        }
                        fallback.get_or_insert(i);
                    }
                }
                Some(&self.eps[fallback.unwrap_or(0)])
            }
            Balancer::Maglev { table, .. } => {
                let Some(key) = self.balancer.key(cx, generated) else {
                    return self.pick_among(live.as_deref());
                };
                let m = table.len();
                let start = (key % m as u64) as usize;
                // An ejected endpoint's keys go to the next slot's owner.
                (0..m)
                    .map(|k| table[(start + k) % m] as usize)
                    .find(|i| *i < n && ok(*i))
                    .map(|i| &self.eps[i])
            }
        }
    }

    /// Whether a pick of `e` is kept under slow start (always without it).
    fn admit(&self, e: &EndpointState) -> bool {
        match (self.slow_start_ns, &e.ramp) {
            (Some(w), Some(r)) => super::slow_start::admit(super::slow_start::share_permille(
                r,
                w,
                crate::ratelimit::gcra::now_ns(),
            )),
            _ => true,
        }
    }

    /// Least request among `live` (all when `None`).
    fn pick_among(&self, live: Option<&[usize]>) -> Option<&Arc<EndpointState>> {
        match live {
            None => self.p2c(self.eps.len(), |i| i),
            Some(l) => self.p2c(l.len(), |i| l[i]),
        }
    }

    /// The state of `e` at `now` ([`crate::ratelimit::gcra::now_ns`]), for
    /// metrics and the dashboard: unhealthy (active health checks) before
    /// ejected (outlier detection) before ramping up (slow start).
    pub fn state_of(&self, e: &EndpointState, now: u64) -> EndpointHealth {
        if e.health.unhealthy() {
            EndpointHealth::Unhealthy
        } else if e.health.ejected(now) {
            EndpointHealth::Ejected
        } else if matches!((self.slow_start_ns, &e.ramp),
            (Some(w), Some(r)) if super::slow_start::share_permille(r, w, now) < 1000)
        {
            EndpointHealth::SlowStart
        } else {
            EndpointHealth::Healthy
        }
    }

    /// Whether there is no endpoint.
    pub fn is_empty(&self) -> bool {
        self.eps.is_empty()
    }

    /// All endpoints.
    pub fn all(&self) -> &[Arc<EndpointState>] {
        &self.eps
    }

    /// The endpoint a session token names, if it still exists.
    pub fn by_token(&self, token: &str) -> Option<&Arc<EndpointState>> {
        self.by_token.get(token).map(|i| &self.eps[*i])
    }

    /// Least-request power of two choices: two random endpoints, the one with
    /// fewer requests in flight wins.
    pub fn pick(&self) -> Option<&Arc<EndpointState>> {
        let live = self.in_service();
        self.pick_among(live.as_deref())
    }

    /// Like [`EndpointSet::pick`], avoiding `prev` (the endpoint a failed
    /// attempt used) when there is another.
    pub fn pick_excluding(&self, prev: &Arc<EndpointState>) -> Option<&Arc<EndpointState>> {
        let skip = self.eps.iter().position(|e| Arc::ptr_eq(e, prev));
        match (skip, self.in_service()) {
            (Some(skip), None) if self.eps.len() > 1 => {
                self.p2c(self.eps.len() - 1, |i| if i >= skip { i + 1 } else { i })
            }
            (Some(skip), Some(mut live)) => {
                if live.len() > 1 {
                    live.retain(|i| *i != skip);
                }
                self.pick_among(Some(&live))
            }
            _ => self.pick(),
        }
    }

    /// P2C over `n` candidates, `idx` mapping a candidate to an endpoint index.
    fn p2c(&self, n: usize, idx: impl Fn(usize) -> usize) -> Option<&Arc<EndpointState>> {
        match n {
            0 => None,
            1 => Some(&self.eps[idx(0)]),
            n => {
                let mut rng = rand::rng();
                let a = rng.random_range(0..n);
                let mut b = rng.random_range(0..n - 1);
                if b >= a {
                    b += 1;
                }
                let (ea, eb) = (&self.eps[idx(a)], &self.eps[idx(b)]);
                Some(if eb.inflight() < ea.inflight() {
                    eb
                } else {
                    ea
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::RandomState;

    fn ep(port: u16, terminating: bool) -> Endpoint {
        Endpoint {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            terminating,
            zone: None,
            for_zones: vec![],
        }
    }

    #[test]
    fn prefers_ready_then_terminating() {
        let k = RandomState::new();
        let s = EndpointSet::new(&[ep(1, true), ep(2, false)], &k);
        assert_eq!(s.all().len(), 1);
        assert_eq!(s.all()[0].addr.port(), 2);
        let s = EndpointSet::new(&[ep(1, true), ep(3, true)], &k);
        assert_eq!(s.all().len(), 2);
        assert!(EndpointSet::new(&[], &k).pick().is_none());
    }

    #[test]
    fn an_endpoint_back_from_an_ejection_ramps_up_again() {
        use portcullis_ir::traffic::{BackendTraffic, LoadBalancer, Outlier};
        let k = RandomState::new();
        let policy = BackendTraffic {
            load_balancer: LoadBalancer::RoundRobin,
            slow_start_window_ms: Some(60_000),
            outlier: Some(Outlier {
                split_local_origin: false,
                interval_ms: 1,
                consecutive_local_origin: 0,
                consecutive_gateway: 0,
                consecutive_5xx: 1,
                base_ejection_ms: 1,
                max_ejection_percent: 100,
            }),
            ..Default::default()
        };
        let births = super::super::slow_start::Births::default();
        let eps = [ep(1, false), ep(2, false)];
        let s = EndpointSet::with_policy(&eps, &k, Some(&policy), Some((&births, "svc")), None);
        let now = crate::ratelimit::gcra::now_ns;
        // The endpoints of a backend seen for the first time do not ramp.
        let a = s.all()[0].clone();
        assert_eq!(s.state_of(&a, now()), EndpointHealth::Healthy);
        s.record(&a, Outcome::Status(503));
        assert_eq!(s.state_of(&a, now()), EndpointHealth::Ejected);
        // The ejection (1 ms on a 1 ms grid) ends; the next pick notices it
        // and the endpoint starts its ramp from the ejection's end.
        std::thread::sleep(std::time::Duration::from_millis(20));
        let cx = PickCtx {
            client: std::net::Ipv4Addr::LOCALHOST.into(),
            headers: &http::HeaderMap::new(),
        };
        s.pick_for(&cx, None);
        assert_eq!(s.state_of(&a, now()), EndpointHealth::SlowStart);
        assert_eq!(s.state_of(&s.all()[1], now()), EndpointHealth::Healthy);
        let share = super::super::slow_start::share_permille(
            a.ramp.as_ref().unwrap(),
            60_000_000_000,
            now(),
        );
        assert_eq!(share, 100, "back at the minimum share");
    }

    #[test]
    fn p2c_avoids_the_busier_endpoint_and_tokens_are_opaque() {
        let k = RandomState::new();
        let s = EndpointSet::new(&[ep(1, false), ep(2, false)], &k);
        let busy = s.all()[0].clone();
        let _g: Vec<_> = (0..5).map(|_| busy.acquire()).collect();
        for _ in 0..50 {
            assert_eq!(s.pick().unwrap().addr.port(), 2);
        }
        let t = &s.all()[1].token;
        assert!(!t.contains("127.0.0.1"));
        assert_eq!(s.by_token(t).unwrap().addr.port(), 2);
        drop(_g);
        assert_eq!(busy.inflight(), 0);
        for _ in 0..20 {
            let other = s.pick_excluding(&busy).unwrap();
            assert_eq!(other.addr.port(), 2, "a retry avoids the failed endpoint");
        }
    }
}
