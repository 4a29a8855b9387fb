//! The compiled, immutable routing state of one port, swapped atomically.
//!
//! Listener choice: the most specific listener hostname matching the
//! request host wins (exact > longest wildcard suffix > no hostname). Each
//! listener has its own [`RouteTable`]; every rule carries its compiled
//! [`RuleAction`] (filters, weighted backends, timeouts, retry, session).

use std::collections::HashMap;
use std::hash::RandomState;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use portcullis_ir::{HttpAction, HttpRouteRule, Listener, Port, PortProtocol};
use portcullis_obs::http::{HttpKey, HttpStats};
use portcullis_route::RouteTable;
use portcullis_route::host::{self, HostPattern};

use crate::backend::WeightedBackends;
use crate::backend::session::SessionPolicy;
use crate::backend::tls::UpstreamTlsCache;
use crate::filters::Filters;
use crate::handler::Shared;
use crate::retry::RetryPolicy;

/// Maps built with each table (foldhash: SipHash was a fifth of a table build).
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// What compiling a table needs besides the IR.
#[derive(Clone, Copy)]
pub struct BuildCtx<'a> {
    /// Key for session-persistence tokens.
    pub tokens: &'a RandomState,
    /// Upstream TLS clients by BackendTLSPolicy content.
    pub upstream_tls: &'a UpstreamTlsCache,
    /// Remote JWKS (SecurityPolicy JWT providers).
    pub jwks: &'a crate::auth::JwksCache,
    /// Rate-limit buckets (BackendTrafficPolicy).
    pub limiters: &'a crate::ratelimit::Limiters,
    /// Slow-start ramps of endpoints, kept across rebuilds.
    pub births: &'a crate::backend::slow_start::Births,
    /// Compiled Service targets shared by rules without a policy.
    pub targets: &'a crate::backend::SharedTargets,
    /// The proxy's zone (zone-aware routing).
    pub zone: Option<&'a str>,
}

impl<'a> BuildCtx<'a> {
    /// The context of the data plane's shared state.
    pub fn of(shared: &'a Shared) -> Self {
        BuildCtx {
            tokens: &shared.tokens,
            upstream_tls: &shared.upstream_tls,
            jwks: &shared.jwks,
            limiters: &shared.limiters,
            births: &shared.births,
            targets: &shared.targets,
            zone: shared.opts.zone.as_deref(),
        }
    }
}

/// What a matched rule does, compiled.
#[derive(Debug)]
pub struct RuleAction {
    /// `namespace/name` of the route, for logs.
    pub route: Box<str>,
    /// The rule's name, else its index, for logs.
    pub rule: Box<str>,
    /// Rule-level filters.
    pub filters: Filters,
    /// Weighted backends.
    pub backends: WeightedBackends,
    /// Whole-request timeout.
    pub request_timeout: Option<Duration>,
    /// Per-attempt timeout.
    pub backend_timeout: Option<Duration>,
    /// Retry policy.
    pub retry: Option<RetryPolicy>,
    /// Session persistence.
    pub session: Option<SessionPolicy>,
    /// From a GRPCRoute: always HTTP/2 upstream.
    pub grpc: bool,
    /// The effective SecurityPolicy.
    pub security: Option<Arc<crate::auth::Security>>,
    /// The effective BackendTrafficPolicy rate limits.
    pub rate_limit: Option<crate::ratelimit::RateLimit>,
    /// The effective BackendTrafficPolicy backend settings (faults and
    /// response overrides are read from it on the request path).
    pub traffic: Option<Arc<portcullis_ir::traffic::BackendTraffic>>,
}

impl RuleAction {
    fn new(meta: &portcullis_ir::RouteMeta, a: &HttpAction, grpc: bool, cx: &BuildCtx<'_>) -> Self {
        let ms = |v: Option<u64>| v.filter(|m| *m > 0).map(Duration::from_millis);
        RuleAction {
            route: format!("{}/{}", meta.namespace, meta.name).into(),
            rule: match &meta.rule_name {
                Some(n) => n.as_str().into(),
                None => meta.rule_index.to_string().into(),
            },
            filters: Filters::new(&a.filters, cx),
            backends: WeightedBackends::new(
                &a.backends,
                |f| Filters::new(f, cx),
                cx,
                a.backend_traffic.as_deref(),
                a.retry.is_some(),
            ),
            request_timeout: ms(a.request_timeout_ms),
            backend_timeout: ms(a.backend_request_timeout_ms),
            retry: a.retry.as_ref().map(RetryPolicy::new),
            session: a.session_persistence.as_ref().and_then(SessionPolicy::new),
            grpc,
            security: a
                .security
                .as_ref()
                .map(|s| Arc::new(crate::auth::Security::new(s, cx.jwks))),
            rate_limit: a
                .rate_limit
                .as_ref()
                .and_then(|r| crate::ratelimit::RateLimit::new(r, cx.limiters)),
            traffic: a.backend_traffic.clone(),
        }
    }
}

/// A rule as matched on one listener: its compiled action (shared by every
/// listener of the port the rule is attached to) and its statistics there.
#[derive(Debug)]
pub struct Routed {
    /// What the rule does.
    pub action: Arc<RuleAction>,
    /// Its statistics on this listener.
    pub stats: Arc<RuleStats>,
}

impl Routed {
    /// The statistics of backend choice `i` (the order of the action's
    /// backends); past the last, those of answers given before a backend
    /// was chosen.
    #[inline]
    pub fn backend_stats(&self, i: usize) -> &Arc<HttpStats> {
        let last = self.stats.cells.len() - 1;
        let i = i.min(last);
        self.stats.cells[i].get_or_init(|| {
            let backend = match self.action.backends.choices().get(i).map(|c| &c.target) {
                Some(crate::backend::Target::Service(s)) => &*s.name,
                _ => "",
            };
            portcullis_obs::metrics().http.get(HttpKey::new(
                &self.stats.listener,
                &self.action.route,
                backend,
            ))
        })
    }

    /// The statistics of answers given before a backend was chosen.
    #[inline]
    pub fn no_backend_stats(&self) -> &Arc<HttpStats> {
        self.backend_stats(usize::MAX)
    }
}

/// A rule's statistics on one listener: one entry per backend that can be
/// chosen (the compiled order), then one for answers given before a backend
/// was chosen. Each entry is taken from the registry by the first request
/// that records to it, not when the table is built: at 10,000 routes that
/// are mostly idle, eager entries were ≈ 1.5 KiB per rule (two per rule,
/// each with two histograms), 15 MiB in all. After that first request the
/// request path reads the entry with one atomic load.
#[derive(Debug)]
pub struct RuleStats {
    /// The listener's IR name (`namespace/gateway/listener`), shared.
    listener: Arc<str>,
    cells: Box<[OnceLock<Arc<HttpStats>>]>,
}

impl RuleStats {
    fn new(listener: Arc<str>, action: &RuleAction) -> Self {
        RuleStats {
            listener,
            cells: (0..=action.backends.choices().len())
                .map(|_| OnceLock::new())
                .collect(),
        }
    }
}

/// One listener's routes.
#[derive(Debug)]
pub struct ListenerRoutes {
    /// Listener name, for logs.
    pub name: Box<str>,
    /// Its route table.
    pub routes: RouteTable<Routed>,
    /// Statistics of requests no route of the listener matched.
    pub unmatched: Arc<HttpStats>,
    /// ClientTrafficPolicy request settings.
    pub client: Option<crate::client_traffic::ListenerClient>,
}

/// Everything needed to serve one port.
#[derive(Debug)]
pub struct PortTable {
    /// Listener port (for redirects).
    pub port: u16,
    /// `http` or `https`.
    pub scheme: &'static str,
    index: ListenerIndex,
    listeners: Vec<ListenerRoutes>,
    /// The port's listeners without their routes, for the misdirected-request
    /// (421) check on HTTPS ports.
    pub hostnames: Vec<Listener>,
    /// Statistics of requests answered before a listener was chosen.
    pub unrouted: Arc<HttpStats>,
}

impl PortTable {
    /// Compile a port of the IR.
    pub fn build(port: &Port, cx: &BuildCtx<'_>) -> Self {
        Self::build_reusing(port, cx, None)
    }

    /// Compile a port of the IR, reusing from `previous` (the table it
    /// replaces) what was compiled for rules that are the same `Arc` on a
    /// listener of the same name: their actions and statistics are taken
    /// as they are, so an apply compiles only the rules that changed. A
    /// rule that is the same `Arc` is the same rule (the previous table
    /// holds it alive while this one is built), so what was compiled for
    /// it still holds.
    pub fn build_reusing(port: &Port, cx: &BuildCtx<'_>, previous: Option<&PortTable>) -> Self {
        let mut t = PortTable {
            port: port.bind.port(),
            scheme: if matches!(port.protocol, PortProtocol::Https | PortProtocol::Tls) {
                "https"
            } else {
                "http"
            },
            index: ListenerIndex::new(&port.listeners),
            listeners: Vec::with_capacity(port.listeners.len()),
            hostnames: port
                .listeners
                .iter()
                .map(|l| Listener {
                    tls: None,
                    ..without_routes(l)
                })
                .collect(),
            unrouted: portcullis_obs::metrics().http.get(HttpKey::default()),
        };
        let http = &portcullis_obs::metrics().http;
        // Matches of one rule share its compiled action (when their IR
        // actions are equal, as translation makes them).
        let mut actions: FastMap<RuleKey<'_>, (&HttpAction, Arc<RuleAction>)> = FastMap::default();
        for l in &port.listeners {
            let idx = t.listeners.len();
            let reuse: FastMap<*const HttpRouteRule, &Routed> = previous
                .and_then(|p| p.listeners.iter().find(|pl| *pl.name == *l.name))
                .map(|pl| {
                    pl.routes
                        .rules()
                        .iter()
                        .map(|c| (Arc::as_ptr(c.shared_rule()), c.value()))
                        .collect()
                })
                .unwrap_or_default();
            let listener_name: Arc<str> = l.name.as_str().into();
            let mut stats: FastMap<RuleKey<'_>, Arc<RuleStats>> =
                FastMap::with_capacity_and_hasher(l.http_routes.len(), Default::default());
            actions.reserve(l.http_routes.len());
            let rules = l.http_routes.iter().map(|r| {
                let m = &r.meta;
                let key = (
                    m.kind.as_str(),
                    m.namespace.as_str(),
                    m.name.as_str(),
                    m.rule_index,
                );
                let done = reuse.get(&Arc::as_ptr(r));
                let action = match actions.get(&key) {
                    Some((ir, a)) if std::ptr::eq(*ir, &r.action) || **ir == r.action => a.clone(),
                    _ => {
                        let a = match done {
                            Some(d) => d.action.clone(),
                            None => Arc::new(RuleAction::new(m, &r.action, r.matches.grpc, cx)),
                        };
                        actions.insert(key, (&r.action, a.clone()));
                        a
                    }
                };
                let stats = match done {
                    Some(d) => stats.entry(key).or_insert_with(|| d.stats.clone()).clone(),
                    None => stats
                        .entry(key)
                        .or_insert_with(|| Arc::new(RuleStats::new(listener_name.clone(), &action)))
                        .clone(),
                };
                (r.clone(), Routed { action, stats })
            });
            let routes = RouteTable::build(rules);
            for e in routes.errors() {
                tracing::warn!(listener = %l.name, error = %e, "route rule left out");
            }
            debug_assert_eq!(idx, t.listeners.len());
            t.listeners.push(ListenerRoutes {
                name: l.name.as_str().into(),
                routes,
                unmatched: http.get(HttpKey::new(&l.name, "", "")),
                client: crate::client_traffic::ListenerClient::new(l.client.as_deref()),
            });
        }
        t
    }

    /// Whether a request for `host` on a connection whose ClientHello named
    /// `sni` must be answered 421 (another listener owns the host).
    pub fn misdirected(&self, sni: Option<&str>, host: &str) -> bool {
        misdirected(&self.hostnames, sni, host)
    }

    /// The listener serving a (normalised) host.
    pub fn listener(&self, host: &str) -> Option<&ListenerRoutes> {
        self.index.find(host).map(|i| &self.listeners[i])
    }
}

/// Whether a request for `host` on a connection whose ClientHello named
/// `sni` must be answered 421 (another listener of the port owns the host):
/// the rule [`PortTable::misdirected`] applies, over the port's listeners.
pub fn misdirected(listeners: &[Listener], sni: Option<&str>, host: &str) -> bool {
    sni.is_some() && !portcullis_tls::host_allowed_for_sni(sni, host, listeners)
}

/// Listener choice on one port: the most specific listener hostname
/// matching the request host wins (exact > longest wildcard suffix > no
/// hostname); among equal hostnames the first listener (the IR's order).
/// Pure, so tools (`portcullis explain`) choose as the data plane does.
#[derive(Debug, Default)]
pub struct ListenerIndex {
    exact: FastMap<Box<str>, usize>,
    wildcard: FastMap<Box<str>, usize>,
    any: Option<usize>,
}

impl ListenerIndex {
    /// Index a port's listeners (positions in `listeners`).
    pub fn new(listeners: &[Listener]) -> Self {
        let mut t = ListenerIndex::default();
        for (idx, l) in listeners.iter().enumerate() {
            match l.hostname.as_deref().map(host::classify) {
                None | Some(HostPattern::Any) => {
                    t.any.get_or_insert(idx);
                }
                Some(HostPattern::Exact(h)) => {
                    t.exact.entry(h.into()).or_insert(idx);
                }
                Some(HostPattern::Wildcard(s)) => {
                    t.wildcard.entry(s.into()).or_insert(idx);
                }
            }
        }
        t
    }

    /// The position of the listener serving a (normalised) host.
    pub fn find(&self, host: &str) -> Option<usize> {
        if let Some(i) = self.exact.get(host) {
            return Some(*i);
        }
        if !self.wildcard.is_empty() {
            for s in host::wildcard_suffixes(host) {
                if let Some(i) = self.wildcard.get(s) {
                    return Some(*i);
                }
            }
        }
        self.any
    }
}

/// A rule by route kind, namespace, name and index.
type RuleKey<'a> = (&'a str, &'a str, &'a str, usize);

/// A rule's statistics, by backend choice then one without backend.
/// A listener's name, hostname and TLS, without its routes.
pub fn without_routes(l: &Listener) -> Listener {
    Listener {
        name: l.name.clone(),
        hostname: l.hostname.clone(),
        tls: l.tls.clone(),
        http_routes: vec![],
        l4_routes: vec![],
        client: None,
    }
}
