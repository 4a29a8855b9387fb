//! Endpoint health of every live backend, read when `/metrics` is scraped
//! or the dashboard renders.
//!
//! The data plane registers each compiled backend (a [`BackendHealth`])
//! when it builds a route table, as a weak reference: the registry never
//! keeps a backend alive, and a backend dropped by a reload disappears at
//! the next read. Nothing is counted on the request path: a read walks the
//! live backends and asks each endpoint its state (atomics the health
//! checks, outlier detection and slow start already keep).
//!
//! Two route rules that name the same backend compile it twice (each with
//! its own health checks); a read merges them by backend name and endpoint
//! address, keeping the worst state ([`EndpointHealth`] is ordered from
//! best to worst).
//!
//! Series: `portcullis_backend_endpoints{backend,state}` (4 per backend,
//! always), and, only with [`HealthRegistry::set_endpoint_labels`] (the
//! `--metrics-endpoint-labels` flag), `portcullis_endpoint_healthy{backend,endpoint}`
//! (one per endpoint).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, Weak};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;

/// The state of one endpoint, from best to worst.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EndpointHealth {
    /// In service.
    Healthy,
    /// In service, ramping up its share of traffic (slow start).
    SlowStart,
    /// Ejected by outlier detection for now.
    Ejected,
    /// Marked unhealthy by active health checks.
    Unhealthy,
}

impl EndpointHealth {
    /// Every state, in order.
    pub const ALL: [EndpointHealth; 4] = [
        EndpointHealth::Healthy,
        EndpointHealth::SlowStart,
        EndpointHealth::Ejected,
        EndpointHealth::Unhealthy,
    ];

    /// The `state` label value: `healthy`, `slow_start`, `ejected`, `unhealthy`.
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointHealth::Healthy => "healthy",
            EndpointHealth::SlowStart => "slow_start",
            EndpointHealth::Ejected => "ejected",
            EndpointHealth::Unhealthy => "unhealthy",
        }
    }

    /// Whether the endpoint gets traffic (healthy or ramping up).
    pub fn serving(self) -> bool {
        matches!(self, EndpointHealth::Healthy | EndpointHealth::SlowStart)
    }
}

/// A compiled backend whose endpoints can tell their state.
pub trait BackendHealth: Send + Sync {
    /// The backend's name (`namespace/name:port`).
    fn backend_name(&self) -> &str;
    /// Call `f` with each endpoint and its state now.
    fn endpoint_states(&self, f: &mut dyn FnMut(SocketAddr, EndpointHealth));
}

/// Endpoint states by backend name, then by endpoint address.
pub type Snapshot = BTreeMap<String, BTreeMap<SocketAddr, EndpointHealth>>;

/// The live backends of the process.
#[derive(Default)]
pub struct HealthRegistry {
    sets: Mutex<Vec<Weak<dyn BackendHealth>>>,
    per_endpoint: AtomicBool,
}

impl std::fmt::Debug for HealthRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HealthRegistry").finish_non_exhaustive()
    }
}

impl HealthRegistry {
    /// Register a compiled backend (when a table is built, never per
    /// request). Dead entries are dropped when the list has doubled.
    pub fn register(&self, b: Weak<dyn BackendHealth>) {
        let mut sets = self.sets.lock().unwrap_or_else(PoisonError::into_inner);
        if sets.len() >= 64 && sets.len().is_power_of_two() {
            sets.retain(|w| w.strong_count() > 0);
        }
        sets.push(b);
    }

    /// Expose `portcullis_endpoint_healthy{backend,endpoint}` too (one
    /// series per endpoint: opt-in).
    pub fn set_endpoint_labels(&self, on: bool) {
        self.per_endpoint.store(on, Ordering::Relaxed);
    }

    /// Whether the per-endpoint series are exposed.
    pub fn endpoint_labels(&self) -> bool {
        self.per_endpoint.load(Ordering::Relaxed)
    }

    /// The state of every endpoint of every live backend (merged by
    /// backend and address, worst state kept).
    pub fn snapshot(&self) -> Snapshot {
        let live: Vec<Arc<dyn BackendHealth>> = {
            let mut sets = self.sets.lock().unwrap_or_else(PoisonError::into_inner);
            sets.retain(|w| w.strong_count() > 0);
            sets.iter().filter_map(Weak::upgrade).collect()
        };
        let mut out = Snapshot::new();
        for b in live {
            let eps = out.entry(b.backend_name().to_owned()).or_default();
            b.endpoint_states(&mut |addr, s| {
                let e = eps.entry(addr).or_insert(s);
                *e = (*e).max(s);
            });
        }
        out
    }
}

/// Encodes [`HealthRegistry::snapshot`] at each scrape.
#[derive(Debug)]
pub(crate) struct HealthCollector(pub(crate) Arc<HealthRegistry>);

impl Collector for HealthCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let snap = self.0.snapshot();
        {
            let mut d = enc.encode_descriptor(
                "portcullis_backend_endpoints",
                "Endpoints of each backend by state (healthy, slow_start: ramping up, ejected: by outlier detection, unhealthy: by active health checks)",
                None,
                MetricType::Gauge,
            )?;
            for (backend, eps) in &snap {
                for s in EndpointHealth::ALL {
                    let n = eps.values().filter(|v| **v == s).count();
                    let l = [("backend", backend.as_str()), ("state", s.as_str())];
                    ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX))
                        .encode(d.encode_family(&l)?)?;
                }
            }
        }
        if self.0.endpoint_labels() {
            let mut d = enc.encode_descriptor(
                "portcullis_endpoint_healthy",
                "1 while the endpoint gets traffic (healthy or slow start), 0 while ejected or unhealthy (opt-in: --metrics-endpoint-labels)",
                None,
                MetricType::Gauge,
            )?;
            for (backend, eps) in &snap {
                for (addr, s) in eps {
                    let a = addr.to_string();
                    let l = [("backend", backend.as_str()), ("endpoint", a.as_str())];
                    ConstGauge::new(i64::from(s.serving())).encode(d.encode_family(&l)?)?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fake(&'static str, Vec<(SocketAddr, EndpointHealth)>);

    impl BackendHealth for Fake {
        fn backend_name(&self) -> &str {
            self.0
        }
        fn endpoint_states(&self, f: &mut dyn FnMut(SocketAddr, EndpointHealth)) {
            for (a, s) in &self.1 {
                f(*a, *s);
            }
        }
    }

    #[test]
    fn the_worst_state_wins_and_dropped_backends_disappear() {
        let r = HealthRegistry::default();
        let a: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let b: SocketAddr = "127.0.0.1:2".parse().unwrap();
        let one: Arc<dyn BackendHealth> = Arc::new(Fake(
            "ns/s:80",
            vec![(a, EndpointHealth::Healthy), (b, EndpointHealth::Healthy)],
        ));
        let two: Arc<dyn BackendHealth> =
            Arc::new(Fake("ns/s:80", vec![(a, EndpointHealth::Unhealthy)]));
        r.register(Arc::downgrade(&one));
        r.register(Arc::downgrade(&two));
        let s = r.snapshot();
        assert_eq!(s["ns/s:80"][&a], EndpointHealth::Unhealthy);
        assert_eq!(s["ns/s:80"][&b], EndpointHealth::Healthy);
        drop(two);
        assert_eq!(r.snapshot()["ns/s:80"][&a], EndpointHealth::Healthy);
        drop(one);
        assert!(r.snapshot().is_empty());
    }
}
