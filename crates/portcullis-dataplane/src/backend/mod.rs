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
    /// `retries`: whether the rule retries (its retries draw on the target's
    /// retry budget, which must then stay the rule's own; see
    /// [`SharedTargets`]).
    pub fn new(
        b: &Backend,
        cx: &BuildCtx<'_>,
        policy: Option<&portcullis_ir::traffic::BackendTraffic>,
        retries: bool,
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
                let make = || {
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
                    // Endpoint health, read at scrape time (a weak
                    // reference: dropped with the table).
                    let w: std::sync::Weak<dyn portcullis_obs::health::BackendHealth> =
                        Arc::downgrade(&t) as _;
                    portcullis_obs::metrics().health.register(w);
                    t
                };
                if policy.is_none() && s.tls.is_none() && !retries {
                    Target::Service(cx.targets.get_or_make(s, make))
                } else {
                    Target::Service(make())
                }
            }
            Backend::Invalid { reason } => Target::Invalid(reason.as_str().into()),
        }
    }
}

/// Compiled targets of Service backends of rules that have no
/// BackendTrafficPolicy, no BackendTLSPolicy and no retries, shared by every
/// such rule whose IR backend is equal (name, endpoints, appProtocol):
/// 10,000 rules sending to one Service hold one target, not 10,000 endpoint
/// sets. Such a rule has no state in its target it could call its own (no
/// circuit-breaker limits, outlier detection, health checks, slow start,
/// and no retry drawing on the retry budget); what is shared is the
/// balancer's position and the endpoints' in-flight counts, as one Envoy
/// cluster would share them. Any other rule keeps its own target, as Envoy
/// Gateway makes a cluster per route rule. Entries are weak: a target lives
/// as long as a compiled rule holds it; a backend's dead entries are pruned
/// when it is looked up, every backend's once per 256 lookups
/// (`slow_start::PRUNE_EVERY`, as [`slow_start::Births`] does), so a Service
/// no rule sends to any more leaves nothing behind.
#[derive(Debug, Default)]
pub struct SharedTargets(std::sync::Mutex<SharedMap>);

#[derive(Debug, Default)]
struct SharedMap {
    by_name: std::collections::HashMap<String, Vec<SharedEntry>>,
    /// Lookups since every backend was last pruned of dead entries.
    since_prune: usize,
}

/// A backend as compiled, and its target while a rule holds it.
type SharedEntry = (
    portcullis_ir::ServiceBackend,
    std::sync::Weak<ServiceTarget>,
);

impl SharedTargets {
    /// The live target compiled for a backend equal to `s`, else `make()`'s.
    fn get_or_make(
        &self,
        s: &portcullis_ir::ServiceBackend,
        make: impl FnOnce() -> Arc<ServiceTarget>,
    ) -> Arc<ServiceTarget> {
        let mut guard = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let m = &mut *guard;
        let alive = |(_, w): &SharedEntry| w.strong_count() > 0;
        m.since_prune += 1;
        if m.since_prune >= slow_start::PRUNE_EVERY {
            m.since_prune = 0;
            m.by_name.retain(|_, l| {
                l.retain(alive);
                !l.is_empty()
            });
        }
        let list = match m.by_name.get_mut(&s.name) {
            Some(l) => l,
            None => m.by_name.entry(s.name.clone()).or_default(),
        };
        list.retain(alive);
        if let Some(t) = list
            .iter()
            .find(|(b, _)| b == s)
            .and_then(|(_, w)| w.upgrade())
        {
            return t;
        }
        let t = make();
        list.push((s.clone(), Arc::downgrade(&t)));
        t
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
        retries: bool,
    ) -> Self {
        let kept = || list.iter().filter(|b| b.weight > 0);
        WeightedBackends {
            choices: kept()
                .map(|b| BackendChoice {
                    target: Target::new(&b.backend, cx, policy, retries),
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

    /// What a [`BuildCtx`] borrows.
    struct Deps {
        tokens: RandomState,
        tls: tls::UpstreamTlsCache,
        jwks: crate::auth::JwksCache,
        limiters: crate::ratelimit::Limiters,
        births: slow_start::Births,
        targets: SharedTargets,
    }

    impl Deps {
        fn new() -> Self {
            Deps {
                tokens: RandomState::new(),
                tls: tls::UpstreamTlsCache::new(Duration::from_secs(1), Duration::from_secs(1)),
                jwks: crate::auth::JwksCache::default(),
                limiters: crate::ratelimit::Limiters::new(Default::default()),
                births: Default::default(),
                targets: SharedTargets::default(),
            }
        }

        fn cx(&self) -> BuildCtx<'_> {
            BuildCtx {
                tokens: &self.tokens,
                upstream_tls: &self.tls,
                jwks: &self.jwks,
                limiters: &self.limiters,
                births: &self.births,
                targets: &self.targets,
                zone: None,
            }
        }
    }

    #[test]
    fn rules_without_a_policy_share_a_target_and_rules_with_one_do_not() {
        let deps = Deps::new();
        let cx = deps.cx();
        let targets = &deps.targets;
        let service = |t: &Target| match t {
            Target::Service(s) => s.clone(),
            Target::Invalid(r) => panic!("invalid: {r}"),
        };
        let a = Target::new(&svc("a"), &cx, None, false);
        let a2 = Target::new(&svc("a"), &cx, None, false);
        let b = Target::new(&svc("b"), &cx, None, false);
        assert!(Arc::ptr_eq(&service(&a), &service(&a2)));
        assert!(!Arc::ptr_eq(&service(&a), &service(&b)));
        // Other endpoints: another target.
        let Backend::Service(mut moved) = svc("a") else {
            unreachable!()
        };
        moved.endpoints[0].addr = ([127, 0, 0, 1], 2).into();
        let a3 = Target::new(&Backend::Service(moved), &cx, None, false);
        assert!(!Arc::ptr_eq(&service(&a), &service(&a3)));
        // With a BackendTrafficPolicy each rule keeps its own (its limits
        // and counters are the rule's, as Envoy Gateway's per-rule clusters).
        let policy = portcullis_ir::traffic::BackendTraffic::default();
        let p1 = Target::new(&svc("a"), &cx, Some(&policy), false);
        let p2 = Target::new(&svc("a"), &cx, Some(&policy), false);
        assert!(!Arc::ptr_eq(&service(&p1), &service(&p2)));
        assert!(!Arc::ptr_eq(&service(&a), &service(&p1)));
        // A rule that retries keeps its own (its retries' budget is its own).
        let r1 = Target::new(&svc("a"), &cx, None, true);
        assert!(!Arc::ptr_eq(&service(&a), &service(&r1)));
        // Entries are weak: once every holder is gone the entry is dead,
        // and the next lookup prunes it and makes a new target.
        let weak = Arc::downgrade(&service(&a));
        drop((a, a2, a3));
        assert_eq!(weak.strong_count(), 0);
        let again = Target::new(&svc("a"), &cx, None, false);
        assert_eq!(
            targets.0.lock().unwrap().by_name["a"].len(),
            1,
            "the dead entries were pruned"
        );
        // A backend no rule holds any more is forgotten within
        // PRUNE_EVERY lookups of other backends.
        drop(b);
        let held: Vec<Target> = (0..slow_start::PRUNE_EVERY)
            .map(|_| Target::new(&svc("a"), &cx, None, false))
            .collect();
        let m = targets.0.lock().unwrap();
        assert!(!m.by_name.contains_key("b"), "{:?}", m.by_name.keys());
        assert_eq!(m.by_name["a"].len(), 1);
        drop((again, held));
    }

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
        let deps = Deps::new();
        let cx = deps.cx();
        let w = WeightedBackends::new(&list, |_| Filters::default(), &cx, None, false);
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
