//! The compiled, immutable routing state of one port, swapped atomically.
//!
//! Listener choice: the most specific listener hostname matching the
//! request host wins (exact > longest wildcard suffix > no hostname). Each
//! listener has its own [`RouteTable`]; every rule carries its compiled
//! [`RuleAction`] (filters, weighted backends, timeouts, retry, session).

use std::collections::HashMap;
use std::hash::RandomState;
use std::sync::Arc;
use std::time::Duration;

use portcullis_ir::{HttpAction, Listener, Port, PortProtocol};
use portcullis_route::RouteTable;
use portcullis_route::host::{self, HostPattern};

use crate::backend::WeightedBackends;
use crate::backend::session::SessionPolicy;
use crate::backend::tls::UpstreamTlsCache;
use crate::filters::Filters;
use crate::handler::Shared;
use crate::retry::RetryPolicy;

/// What compiling a table needs besides the IR.
#[derive(Clone, Copy)]
pub struct BuildCtx<'a> {
    /// Key for session-persistence tokens.
    pub tokens: &'a RandomState,
    /// Upstream TLS clients by BackendTLSPolicy content.
    pub upstream_tls: &'a UpstreamTlsCache,
    /// Remote JWKS (SecurityPolicy JWT providers).
    pub jwks: &'a crate::auth::JwksCache,
}

impl<'a> BuildCtx<'a> {
    /// The context of the data plane's shared state.
    pub fn of(shared: &'a Shared) -> Self {
        BuildCtx {
            tokens: &shared.tokens,
            upstream_tls: &shared.upstream_tls,
            jwks: &shared.jwks,
        }
    }
}

/// What a matched rule does, compiled.
#[derive(Debug)]
pub struct RuleAction {
    /// `namespace/name` of the route, for logs.
    pub route: Box<str>,
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
}

impl RuleAction {
    fn new(route: String, a: &HttpAction, grpc: bool, cx: &BuildCtx<'_>) -> Self {
        let ms = |v: Option<u64>| v.filter(|m| *m > 0).map(Duration::from_millis);
        RuleAction {
            route: route.into(),
            filters: Filters::new(&a.filters, cx),
            backends: WeightedBackends::new(&a.backends, |f| Filters::new(f, cx), cx),
            request_timeout: ms(a.request_timeout_ms),
            backend_timeout: ms(a.backend_request_timeout_ms),
            retry: a.retry.as_ref().map(RetryPolicy::new),
            session: a.session_persistence.as_ref().and_then(SessionPolicy::new),
            grpc,
            security: a
                .security
                .as_ref()
                .map(|s| Arc::new(crate::auth::Security::new(s, cx.jwks))),
        }
    }
}

/// One listener's routes.
#[derive(Debug)]
pub struct ListenerRoutes {
    /// Listener name, for logs.
    pub name: Box<str>,
    /// Its route table.
    pub routes: RouteTable<Arc<RuleAction>>,
}

/// Everything needed to serve one port.
#[derive(Debug)]
pub struct PortTable {
    /// Listener port (for redirects).
    pub port: u16,
    /// `http` or `https`.
    pub scheme: &'static str,
    exact: HashMap<Box<str>, usize>,
    wildcard: HashMap<Box<str>, usize>,
    any: Option<usize>,
    listeners: Vec<ListenerRoutes>,
    /// The port's listeners without their routes, for the misdirected-request
    /// (421) check on HTTPS ports.
    pub hostnames: Vec<Listener>,
}

impl PortTable {
    /// Compile a port of the IR.
    pub fn build(port: &Port, cx: &BuildCtx<'_>) -> Self {
        let mut t = PortTable {
            port: port.bind.port(),
            scheme: if matches!(port.protocol, PortProtocol::Https | PortProtocol::Tls) {
                "https"
            } else {
                "http"
            },
            exact: HashMap::new(),
            wildcard: HashMap::new(),
            any: None,
            listeners: Vec::with_capacity(port.listeners.len()),
            hostnames: port
                .listeners
                .iter()
                .map(|l| Listener {
                    tls: None,
                    ..without_routes(l)
                })
                .collect(),
        };
        let mut actions: HashMap<(String, String, String, usize), Arc<RuleAction>> = HashMap::new();
        for l in &port.listeners {
            let idx = t.listeners.len();
            let rules = l.http_routes.iter().map(|r| {
                let m = &r.meta;
                let key = (
                    m.kind.clone(),
                    m.namespace.clone(),
                    m.name.clone(),
                    m.rule_index,
                );
                let action = actions
                    .entry(key)
                    .or_insert_with(|| {
                        Arc::new(RuleAction::new(
                            format!("{}/{}", m.namespace, m.name),
                            &r.action,
                            r.matches.grpc,
                            cx,
                        ))
                    })
                    .clone();
                (r.clone(), action)
            });
            let routes = RouteTable::build(rules);
            for e in routes.errors() {
                tracing::warn!(listener = %l.name, error = %e, "route rule left out");
            }
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
            t.listeners.push(ListenerRoutes {
                name: l.name.as_str().into(),
                routes,
            });
        }
        t
    }

    /// Whether a request for `host` on a connection whose ClientHello named
    /// `sni` must be answered 421 (another listener owns the host).
    pub fn misdirected(&self, sni: Option<&str>, host: &str) -> bool {
        sni.is_some() && !portcullis_tls::host_allowed_for_sni(sni, host, &self.hostnames)
    }

    /// The listener serving a (normalised) host.
    pub fn listener(&self, host: &str) -> Option<&ListenerRoutes> {
        if let Some(i) = self.exact.get(host) {
            return Some(&self.listeners[*i]);
        }
        if !self.wildcard.is_empty() {
            for s in host::wildcard_suffixes(host) {
                if let Some(i) = self.wildcard.get(s) {
                    return Some(&self.listeners[*i]);
                }
            }
        }
        self.any.map(|i| &self.listeners[i])
    }
}

/// A listener's name, hostname and TLS, without its routes.
pub fn without_routes(l: &Listener) -> Listener {
    Listener {
        name: l.name.clone(),
        hostname: l.hostname.clone(),
        tls: l.tls.clone(),
        http_routes: vec![],
        l4_routes: vec![],
    }
}
