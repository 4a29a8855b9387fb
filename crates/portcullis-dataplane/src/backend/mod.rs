//! Backends: weighted choice between a rule's backends, endpoints, upstream clients.

pub mod active;
pub mod balance;
pub mod endpoint;
pub mod h1;
mod h1pool;
pub mod hyper_pool;
pub mod pool;
pub mod session;
pub mod slow_start;
pub mod tls;
pub mod upstream;
pub mod zone;

use std::sync::Arc;

use portcullis_ir::{Backend, WeightedBackend};

use crate::filters::Filters;
use crate::table::BuildCtx;
use endpoint::EndpointSet;
use tls::TlsUpstream;

/// A Service backend, compiled.
#[derive(Debug)]
pub struct ServiceTarget {
    /// `namespace/name:port`.
    pub name: Box<str>,
    /// Endpoints.
    pub endpoints: EndpointSet,
    /// Speak HTTP/2 prior knowledge upstream (`kubernetes.io/h2c`).
    pub h2c: bool,
    /// Upstream TLS (BackendTLSPolicy): its pooled clients.
    pub tls: Option<Arc<TlsUpstream>>,
}

impl portcullis_obs::health::BackendHealth for ServiceTarget {
    fn backend_name(&self) -> &str {
        &self.name
    }

    fn endpoint_states(
        &self,
        f: &mut dyn FnMut(std::net::SocketAddr, portcullis_obs::health::EndpointHealth),
    ) {
        let now = crate::ratelimit::gcra::now_ns();
        for e in self.endpoints.all() {
            f(e.addr, self.endpoints.state_of(e, now));
        }
    }
}

/// Where a chosen backend entry sends traffic.
#[derive(Debug)]
pub enum Target {
    /// A Service.
    Service(Arc<ServiceTarget>),
    /// An unresolved reference: answered 500.
    Invalid(Box<str>),
}

impl Target {
    /// Compile an IR backend. A BackendTLSPolicy whose client config cannot
    /// be built makes the backend invalid (and is reported by the apply).
    pub fn new(
        b: &Backend,
        cx: &BuildCtx<'_>,
        policy: Option<&portcullis_ir::traffic::BackendTraffic>,
    ) -> Self {
        match b {
            Backend::Service(s) => {
                let tls = match &s.tls {
                    None => None,
                    Some(t) => match cx.upstream_tls.get(&s.name, t) {
                        Ok(u) => Some(u),
                        Err(e) => return Target::Invalid(format!("backend TLS: {e}").into()),
                    },
                };
                let t = Arc::new(ServiceTarget {
                    name: s.name.as_str().into(),
                    endpoints: EndpointSet::with_policy(
                        &s.endpoints,
                        cx.tokens,
                        policy,
                        Some((cx.births, &s.name)),
                        cx.zone,
                    ),
                    h2c: s.app_protocol.as_deref() == Some("kubernetes.io/h2c"),
                    tls,
                });
                // Endpoint health, read at scrape time (a weak reference:
                // dropped with the table).
                let w: std::sync::Weak<dyn portcullis_obs::health::BackendHealth> =
                    Arc::downgrade(&t) as _;
                portcullis_obs::metrics().health.register(w);
                Target::Service(t)
            }
            Backend::Invalid { reason } => Target::Invalid(reason.as_str().into()),
        }
    }
}

/// One weighted entry with its backendRef-level filters.
#[derive(Debug)]
pub struct BackendChoice {
    /// Target.
    pub target: Target,
    /// backendRef filters, applied after the rule's.
    pub filters: Filters,
}

/// A rule's backends with their weights precomputed
/// ([`portcullis_l4::Weighted`], the one weighted choice of HTTP and L4).
#[derive(Debug, Default)]
pub struct WeightedBackends {
    choices: Vec<BackendChoice>,
    weights: portcullis_l4::Weighted,
}

impl WeightedBackends {
    /// Compile. Entries of weight 0 are kept out (never chosen).
    pub fn new(
        list: &[WeightedBackend],
        compile_filters: impl Fn(&[portcullis_ir::HttpFilter]) -> Filters,
        cx: &BuildCtx<'_>,
        policy: Option<&portcullis_ir::traffic::BackendTraffic>,
    ) -> Self {
        let kept = || list.iter().filter(|b| b.weight > 0);
        WeightedBackends {
            choices: kept()
                .map(|b| BackendChoice {
                    target: Target::new(&b.backend, cx, policy),
                    filters: compile_filters(&b.filters),
                })
                .collect(),
            weights: portcullis_l4::Weighted::new(kept().map(|b| b.weight)),
        }
    }

    /// Whether nothing can be chosen (no backends, or all of weight 0).
    pub fn is_empty(&self) -> bool {
        self.weights.is_empty()
    }

    /// Weighted random choice.
    pub fn pick(&self) -> Option<&BackendChoice> {
        self.pick_indexed().map(|(_, c)| c)
    }

    /// The entries that can be chosen, in order (the IR's backends of
    /// weight above 0).
    pub fn choices(&self) -> &[BackendChoice] {
        &self.choices
    }

    /// Weighted random choice, with its index (the order of the IR's
    /// backends of weight above 0).
    pub fn pick_indexed(&self) -> Option<(usize, &BackendChoice)> {
        match self.choices.len() {
            0 => None,
            1 => Some((0, &self.choices[0])),
            _ => {
                let i = self.weights.pick(&mut rand::rng())?;
                self.choices.get(i).map(|c| (i, c))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_ir::{Endpoint, ServiceBackend};
    use std::hash::RandomState;
    use std::time::Duration;

    fn svc(name: &str) -> Backend {
        Backend::Service(ServiceBackend {
            name: name.into(),
            namespace: "ns".into(),
            app_protocol: None,
            endpoints: vec![Endpoint {
                addr: ([127, 0, 0, 1], 1).into(),
                terminating: false,
                zone: None,
                for_zones: vec![],
            }],
            tls: None,
        })
    }

    #[test]
    fn weights_are_respected_and_zero_never_chosen() {
        let list = vec![
            WeightedBackend {
                weight: 1,
                backend: svc("a"),
                filters: vec![],
            },
            WeightedBackend {
                weight: 0,
                backend: svc("zero"),
                filters: vec![],
            },
            WeightedBackend {
                weight: 3,
                backend: svc("b"),
                filters: vec![],
            },
        ];
        let tokens = RandomState::new();
        let tls = tls::UpstreamTlsCache::new(Duration::from_secs(1), Duration::from_secs(1));
        let jwks = crate::auth::JwksCache::default();
        let limiters = crate::ratelimit::Limiters::new(Default::default());
        let cx = BuildCtx {
            tokens: &tokens,
            upstream_tls: &tls,
            jwks: &jwks,
            limiters: &limiters,
            births: &Default::default(),
            zone: None,
        };
        let w = WeightedBackends::new(&list, |_| Filters::default(), &cx, None);
        let mut counts = std::collections::HashMap::new();
        for _ in 0..4000 {
            let Target::Service(s) = &w.pick().unwrap().target else {
                panic!()
            };
            *counts.entry(s.name.to_string()).or_insert(0) += 1;
        }
        assert!(!counts.contains_key("zero"));
        let b = counts["b"];
        assert!((2700..3300).contains(&b), "b chosen {b}/4000");
    }
}
