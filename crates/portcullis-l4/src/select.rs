//! Pure layer-4 routing decisions: listener and route by SNI, the oldest
//! route of a TCP/UDP port, weighted backends and endpoint order.

use std::net::SocketAddr;

use portcullis_ir::{Backend, L4Route, Listener, Port, TlsMode, WeightedBackend};
use portcullis_tls::names::{self, MatchRank};
use rand::Rng;

/// Why a connection or datagram is not forwarded.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No listener on the port matches the SNI.
    #[error("no listener matches SNI {0:?}")]
    NoListener(Option<String>),
    /// The listener has no route (matching the SNI).
    #[error("no route on listener {0}")]
    NoRoute(String),
    /// Every backend has weight 0 (or there are none).
    #[error("route {0} has no backend with a non-zero weight")]
    NoBackend(String),
    /// The chosen backend reference is invalid.
    #[error("invalid backend: {0}")]
    InvalidBackend(String),
    /// The chosen Service has no endpoint.
    #[error("backend {0} has no endpoint")]
    NoEndpoints(String),
    /// The route's BackendTrafficPolicy `circuitBreaker.maxConnections` are open.
    #[error("route {0}: maxConnections reached (upstream overflow)")]
    Overflow(String),
}

/// How a TLS port handles a connection, decided by its SNI.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TlsAction {
    /// Splice the bytes untouched to the listener's TLSRoute backend.
    Passthrough,
    /// Terminate TLS at the gateway, then plain TCP to the backend.
    Terminate,
}

/// The listener of `port` that `sni` selects: exact hostname, then the most
/// specific wildcard, then the listener without hostname.
pub fn select_listener(port: &Port, sni: Option<&str>) -> Option<usize> {
    names::select(sni, port.listeners.iter().map(|l| l.hostname.as_deref()))
}

/// Whether the listener passes TLS through or terminates it (a TLS listener
/// without TLS settings is treated as passthrough: there is no certificate to terminate with).
pub fn tls_action(listener: &Listener) -> TlsAction {
    match listener.tls.as_ref().map(|t| t.mode) {
        Some(TlsMode::Terminate) => TlsAction::Terminate,
        Some(TlsMode::Passthrough) | None => TlsAction::Passthrough,
    }
}

/// The TLSRoute of `listener` for `sni`: the most specific hostname match
/// (exact > wildcard > a route without hostnames), the oldest on ties.
pub fn select_tls_route<'a>(listener: &'a Listener, sni: Option<&str>) -> Option<&'a L4Route> {
    let mut best: Option<(MatchRank, &L4Route)> = None;
    for route in &listener.l4_routes {
        if let Some(rank) = names::best_rank(&route.hostnames, sni)
            && best.is_none_or(|(b, _)| rank > b)
        {
            best = Some((rank, route));
        }
    }
    best.map(|(_, r)| r)
}

/// The route that carries a TCP or UDP port's traffic: the oldest route
/// attached to any of its listeners (by creation time, then namespace/name).
pub fn oldest_route(port: &Port) -> Option<&L4Route> {
    port.listeners
        .iter()
        .flat_map(|l| &l.l4_routes)
        .min_by(|a, b| {
            (&a.meta.creation_timestamp, &a.meta.namespace, &a.meta.name).cmp(&(
                &b.meta.creation_timestamp,
                &b.meta.namespace,
                &b.meta.name,
            ))
        })
}

/// A backend chosen in proportion to its weight; weight 0 is never chosen
/// (the data plane's one weighted choice, [`crate::weighted`]).
pub fn pick_backend<'a, R: Rng + ?Sized>(
    backends: &'a [WeightedBackend],
    rng: &mut R,
) -> Option<&'a Backend> {
    crate::weighted::pick_once(backends.iter().map(|b| b.weight), rng).map(|i| &backends[i].backend)
}

/// Endpoints to try, in order: the ready ones (or, if none is ready, the
/// terminating ones) starting at a random one.
pub fn endpoint_order<R: Rng + ?Sized>(
    backend: &Backend,
    rng: &mut R,
) -> Result<Vec<SocketAddr>, Refusal> {
    endpoint_order_from(backend, rng, None)
}

/// [`endpoint_order`], starting at endpoint `turn` (modulo their number)
/// when given (round robin), else at a random one.
pub fn endpoint_order_from<R: Rng + ?Sized>(
    backend: &Backend,
    rng: &mut R,
    turn: Option<usize>,
) -> Result<Vec<SocketAddr>, Refusal> {
    let svc = match backend {
        Backend::Service(s) => s,
        Backend::Invalid { reason } => return Err(Refusal::InvalidBackend(reason.clone())),
    };
    let ready: Vec<SocketAddr> = svc
        .endpoints
        .iter()
        .filter(|e| !e.terminating)
        .map(|e| e.addr)
        .collect();
    let mut eps = if ready.is_empty() {
        svc.endpoints.iter().map(|e| e.addr).collect()
    } else {
        ready
    };
    if eps.is_empty() {
        return Err(Refusal::NoEndpoints(svc.name.clone()));
    }
    let start = match turn {
        Some(t) => t % eps.len(),
        None => rng.random_range(0..eps.len()),
    };
    eps.rotate_left(start);
    Ok(eps)
}

/// Backend choice for one connection or session: weighted backend, then endpoints to try.
pub fn upstreams<R: Rng + ?Sized>(
    route: &L4Route,
    rng: &mut R,
) -> Result<Vec<SocketAddr>, Refusal> {
    upstreams_from(route, rng, None)
}

/// [`upstreams`], the endpoints starting at `turn` when given (round robin).
pub fn upstreams_from<R: Rng + ?Sized>(
    route: &L4Route,
    rng: &mut R,
    turn: Option<usize>,
) -> Result<Vec<SocketAddr>, Refusal> {
    let route_name = || format!("{}/{}", route.meta.namespace, route.meta.name);
    let backend =
        pick_backend(&route.backends, rng).ok_or_else(|| Refusal::NoBackend(route_name()))?;
    endpoint_order_from(backend, rng, turn)
}

#[cfg(test)]
mod tests {
    use portcullis_ir::{Endpoint, ListenerTls, PortProtocol, RouteMeta, ServiceBackend};

    use super::*;

    fn meta(name: &str, ts: &str) -> RouteMeta {
        RouteMeta {
            kind: "TLSRoute".into(),
            namespace: "ns".into(),
            name: name.into(),
            creation_timestamp: ts.into(),
            rule_index: 0,
            rule_name: None,
        }
    }

    fn svc(name: &str, eps: &[(&str, bool)]) -> Backend {
        Backend::Service(ServiceBackend {
            name: name.into(),
            namespace: "ns".into(),
            app_protocol: None,
            endpoints: eps
                .iter()
                .map(|(a, t)| Endpoint {
                    addr: a.parse().unwrap(),
                    terminating: *t,
                    zone: None,
                    for_zones: vec![],
                })
                .collect(),
            tls: None,
        })
    }

    fn wb(weight: u32, backend: Backend) -> WeightedBackend {
        WeightedBackend {
            weight,
            backend,
            filters: vec![],
        }
    }

    fn route(name: &str, ts: &str, hostnames: &[&str]) -> L4Route {
        L4Route {
            meta: meta(name, ts),
            hostnames: hostnames.iter().map(|h| h.to_string()).collect(),
            backends: vec![],
            traffic: None,
        }
    }

    fn listener(hostname: Option<&str>, mode: Option<TlsMode>, routes: Vec<L4Route>) -> Listener {
        Listener {
            name: format!("gw/{}", hostname.unwrap_or("any")),
            hostname: hostname.map(str::to_owned),
            tls: mode.map(|mode| ListenerTls {
                mode,
                certificates: vec![],
                client_validation: None,
            }),
            http_routes: vec![],
            l4_routes: routes,
            client: None,
        }
    }

    #[test]
    fn listener_and_route_by_sni() {
        let port = Port {
            client: None,
            bind: "127.0.0.1:443".parse().unwrap(),
            protocol: PortProtocol::Tls,
            listeners: vec![
                listener(Some("a.example.com"), Some(TlsMode::Terminate), vec![]),
                listener(
                    Some("*.example.com"),
                    Some(TlsMode::Passthrough),
                    vec![
                        route("old-any", "2020-01-01T00:00:00Z", &[]),
                        route("wild", "2021-01-01T00:00:00Z", &["*.example.com"]),
                        route("exact", "2022-01-01T00:00:00Z", &["b.example.com"]),
                        route("exact-newer", "2023-01-01T00:00:00Z", &["b.example.com"]),
                    ],
                ),
            ],
        };
        assert_eq!(select_listener(&port, Some("a.example.com")), Some(0));
        assert_eq!(tls_action(&port.listeners[0]), TlsAction::Terminate);
        assert_eq!(select_listener(&port, Some("b.example.com")), Some(1));
        assert_eq!(select_listener(&port, Some("example.com")), None);
        assert_eq!(select_listener(&port, None), None);
        let l = &port.listeners[1];
        assert_eq!(tls_action(l), TlsAction::Passthrough);
        assert_eq!(
            select_tls_route(l, Some("b.example.com"))
                .unwrap()
                .meta
                .name,
            "exact"
        );
        assert_eq!(
            select_tls_route(l, Some("c.example.com"))
                .unwrap()
                .meta
                .name,
            "wild"
        );
        assert_eq!(select_tls_route(l, None).unwrap().meta.name, "old-any");
        let only_named = listener(None, None, vec![route("r", "t", &["x.org"])]);
        assert!(select_tls_route(&only_named, Some("y.org")).is_none());
        assert!(select_tls_route(&only_named, None).is_none());
    }

    #[test]
    fn oldest_route_across_listeners() {
        let port = Port {
            client: None,
            bind: "127.0.0.1:9000".parse().unwrap(),
            protocol: PortProtocol::Tcp,
            listeners: vec![
                listener(
                    None,
                    None,
                    vec![route("newer", "2024-05-01T00:00:00Z", &[])],
                ),
                listener(
                    None,
                    None,
                    vec![route("older", "2024-01-01T00:00:00Z", &[])],
                ),
            ],
        };
        assert_eq!(oldest_route(&port).unwrap().meta.name, "older");
    }

    #[test]
    fn weights_are_proportional_and_zero_is_never_chosen() {
        let mut rng = rand::rng();
        let backends = vec![
            wb(1, svc("a", &[("10.0.0.1:80", false)])),
            wb(0, svc("zero", &[("10.0.0.9:80", false)])),
            wb(3, svc("b", &[("10.0.0.2:80", false)])),
        ];
        let mut counts = std::collections::HashMap::new();
        for _ in 0..40_000 {
            let Backend::Service(s) = pick_backend(&backends, &mut rng).unwrap() else {
                panic!()
            };
            *counts.entry(s.name.clone()).or_insert(0u32) += 1;
        }
        assert_eq!(counts.get("zero"), None);
        let a = f64::from(counts["a"]) / 40_000.0;
        assert!((a - 0.25).abs() < 0.02, "a got {a}");
        assert!(pick_backend(&[wb(0, svc("z", &[]))], &mut rng).is_none());
        assert!(pick_backend(&[], &mut rng).is_none());
    }

    #[test]
    fn endpoints_prefer_ready_and_refuse_invalid_or_empty() {
        let mut rng = rand::rng();
        let b = svc(
            "s",
            &[
                ("10.0.0.1:80", true),
                ("10.0.0.2:80", false),
                ("10.0.0.3:80", false),
            ],
        );
        for _ in 0..50 {
            let eps = endpoint_order(&b, &mut rng).unwrap();
            assert_eq!(eps.len(), 2);
            assert!(!eps.contains(&"10.0.0.1:80".parse().unwrap()));
        }
        let only_terminating = svc("t", &[("10.0.0.1:80", true)]);
        assert_eq!(
            endpoint_order(&only_terminating, &mut rng).unwrap().len(),
            1
        );
        assert_eq!(
            endpoint_order(&svc("e", &[]), &mut rng),
            Err(Refusal::NoEndpoints("e".into()))
        );
        let invalid = Backend::Invalid {
            reason: "missing Service".into(),
        };
        assert!(matches!(
            endpoint_order(&invalid, &mut rng),
            Err(Refusal::InvalidBackend(_))
        ));
        let mut r = route("r", "t", &[]);
        r.backends = vec![wb(0, svc("a", &[("10.0.0.1:80", false)]))];
        assert!(matches!(
            upstreams(&r, &mut rng),
            Err(Refusal::NoBackend(_))
        ));
    }
}
