//! BackendTrafficPolicy on TCPRoutes: the fields that make sense for a TCP
//! proxy (`timeout.tcp.connectTimeout`, `circuitBreaker.maxConnections`,
//! `loadBalancer.type` `RoundRobin`/`Random`), carried by
//! [`portcullis_ir::L4Route::traffic`].
//!
//! The counters of a route (connections open, the round-robin turn) live in
//! a registry by route, found once per connection (one short lock, as the
//! route's statistics): one small entry per TCP route with a policy, kept
//! for the process's life (pruned of idle entries past 4096 routes).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::Duration;

use portcullis_ir::L4Route;
use portcullis_ir::traffic::TcpTraffic;

/// The counters of one TCP route.
#[derive(Debug, Default)]
pub struct RouteState {
    open: AtomicUsize,
    turn: AtomicUsize,
}

/// A connection counted against its route's `maxConnections` until dropped.
#[derive(Debug)]
pub struct ConnCount(Arc<RouteState>);

impl Drop for ConnCount {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
    }
}

static STATES: LazyLock<Mutex<HashMap<String, Arc<RouteState>>>> = LazyLock::new(Default::default);

/// Past this many routes, entries without an open connection are dropped.
const PRUNE_PAST: usize = 4096;

/// The state of `route`.
fn state(route: &L4Route) -> Arc<RouteState> {
    let key = format!(
        "{}/{}/{}",
        route.meta.kind, route.meta.namespace, route.meta.name
    );
    let mut m = STATES.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(s) = m.get(&key) {
        return s.clone();
    }
    if m.len() >= PRUNE_PAST {
        m.retain(|_, s| Arc::strong_count(s) > 1);
    }
    let s = Arc::new(RouteState::default());
    m.insert(key, s.clone());
    s
}

/// What a TCP connection of a route with a policy gets: its place in the
/// route's `maxConnections` and, with `RoundRobin`, the endpoint turn.
#[derive(Debug)]
pub struct Admitted {
    /// Held for the connection's life.
    pub count: ConnCount,
    /// The index to start the endpoint order at (`RoundRobin`), else random.
    pub turn: Option<usize>,
}

/// Admit a connection of `route` under `t`; `None` past `maxConnections`.
pub fn admit(route: &L4Route, t: &TcpTraffic) -> Option<Admitted> {
    let s = state(route);
    let max = t
        .max_connections
        .map_or(usize::MAX, |m| usize::try_from(m).unwrap_or(usize::MAX));
    if s.open.fetch_add(1, Ordering::AcqRel) >= max {
        s.open.fetch_sub(1, Ordering::AcqRel);
        return None;
    }
    let turn = t
        .round_robin
        .then(|| s.turn.fetch_add(1, Ordering::Relaxed));
    Some(Admitted {
        count: ConnCount(s),
        turn,
    })
}

/// The connect timeout of a route's policy, else `default`.
pub fn connect_timeout(t: Option<&TcpTraffic>, default: Duration) -> Duration {
    t.and_then(|t| t.connect_timeout_ms)
        .map_or(default, Duration::from_millis)
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_ir::RouteMeta;

    fn route(name: &str) -> L4Route {
        L4Route {
            meta: RouteMeta {
                kind: "TCPRoute".into(),
                namespace: "ns".into(),
                name: name.into(),
                creation_timestamp: String::new(),
                rule_index: 0,
                rule_name: None,
            },
            hostnames: vec![],
            backends: vec![],
            traffic: None,
        }
    }

    #[test]
    fn connections_are_bounded_and_turns_advance_across_connections() {
        let r = route("bounded");
        let t = TcpTraffic {
            max_connections: Some(2),
            round_robin: true,
            ..Default::default()
        };
        let a = admit(&r, &t).unwrap();
        let b = admit(&r, &t).unwrap();
        assert_eq!((a.turn, b.turn), (Some(0), Some(1)));
        assert!(admit(&r, &t).is_none(), "a third is refused");
        drop(a);
        drop(b);
        let c = admit(&r, &t).unwrap();
        assert_eq!(c.turn, Some(2), "the turn survives idle periods");
        let random = TcpTraffic::default();
        assert_eq!(admit(&route("random"), &random).unwrap().turn, None);
        assert_eq!(
            connect_timeout(
                Some(&TcpTraffic {
                    connect_timeout_ms: Some(300),
                    ..Default::default()
                }),
                Duration::from_secs(5)
            ),
            Duration::from_millis(300)
        );
        assert_eq!(
            connect_timeout(None, Duration::from_secs(5)),
            Duration::from_secs(5)
        );
    }
}
