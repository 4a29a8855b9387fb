//! Endpoints of one backend and least-request power-of-two-choices picking.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use http::uri::Authority;
use portcullis_ir::Endpoint;
use rand::Rng;

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
}

/// Counts a request against an endpoint until dropped.
#[derive(Debug)]
pub struct InflightGuard(Arc<EndpointState>);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.inflight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl EndpointState {
    /// Start counting a request.
    pub fn acquire(self: &Arc<Self>) -> InflightGuard {
        self.inflight.fetch_add(1, Ordering::Relaxed);
        InflightGuard(self.clone())
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
}

impl EndpointSet {
    /// Build from the IR, naming each endpoint with a keyed hash of its address.
    pub fn new(endpoints: &[Endpoint], tokens: &impl BuildHasher) -> Self {
        let ready: Vec<_> = endpoints.iter().filter(|e| !e.terminating).collect();
        let chosen = if ready.is_empty() {
            endpoints.iter().collect()
        } else {
            ready
        };
        let mut eps = Vec::with_capacity(chosen.len());
        let mut by_token = HashMap::with_capacity(chosen.len());
        for e in chosen {
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
            }));
        }
        EndpointSet { eps, by_token }
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
        self.p2c(self.eps.len(), |i| i)
    }

    /// Like [`EndpointSet::pick`], avoiding `prev` (the endpoint a failed
    /// attempt used) when there is another.
    pub fn pick_excluding(&self, prev: &Arc<EndpointState>) -> Option<&Arc<EndpointState>> {
        match self.eps.iter().position(|e| Arc::ptr_eq(e, prev)) {
            Some(skip) if self.eps.len() > 1 => {
                self.p2c(self.eps.len() - 1, |i| if i >= skip { i + 1 } else { i })
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
