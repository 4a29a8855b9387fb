//! The Portcullis data plane.
//!
//! [`Dataplane::apply`] makes an IR [`Config`] live: ports that are new are
//! bound, ports that disappeared stop accepting and drain, and ports that
//! stay get their compiled [`table::PortTable`] swapped atomically (arc-swap),
//! so open connections, in-flight requests, streams and WebSockets are never
//! cut by a configuration change. The request path reads the table with one
//! `load_full` and takes no lock.
//!
//! Layout (each concern its own module, so HTTPS/TLS/TCP/UDP can be added as
//! siblings): [`listener`] (bind + accept loop + drain per port), [`conn`]
//! (serving one connection), [`handler`] (one request), [`table`] (compiled
//! per-port state), [`filters`], [`cors`], [`mirror`], [`retry`],
//! [`websocket`], [`forward`] (hop-by-hop, X-Forwarded-*), [`backend`]
//! (weighted choice, endpoints, pool, session persistence), [`error`] (every
//! gateway-generated error in one place) and [`drain`].
//!
//! Only `PortProtocol::Http` is served for now; other ports are skipped with
//! a warning.
#![deny(missing_docs)]

pub mod backend;
pub mod body;
pub mod conn;
pub mod cors;
pub mod drain;
pub mod error;
pub mod filters;
pub mod forward;
pub mod handler;
pub mod listener;
pub mod mirror;
pub mod retry;
pub mod table;
pub mod websocket;

use std::collections::{BTreeMap, HashMap};
use std::hash::RandomState;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use portcullis_ir::{Config, PortProtocol};
use tokio::sync::Mutex;

use backend::pool::Clients;
use drain::Drain;
use handler::Shared;
use listener::PortHandle;

/// Data plane tuning.
#[derive(Clone, Debug)]
pub struct Options {
    /// Largest request head (HTTP/1 buffer, HTTP/2 header list); larger heads get 431.
    pub max_header_bytes: usize,
    /// Largest request body; `None` for no limit. Larger declared bodies get 413.
    pub max_body_bytes: Option<u64>,
    /// Time allowed for a request head to arrive (slowloris), and for the
    /// first request on a new connection.
    pub header_read_timeout: Duration,
    /// Keep-alive connections with nothing in flight are closed after this.
    pub idle_timeout: Duration,
    /// How long draining waits for in-flight work before force-closing.
    pub drain_timeout: Duration,
    /// Trusted proxy hops in front of the gateway: 0 discards incoming
    /// X-Forwarded-For/-Proto/-Host; more keeps and appends to them.
    pub trusted_hops: u32,
    /// Request bodies with a Content-Length up to this are buffered, which
    /// makes them retryable and mirrorable.
    pub buffer_body_bytes: usize,
    /// Upstream connect timeout.
    pub connect_timeout: Duration,
    /// Idle pooled upstream connections are closed after this.
    pub upstream_idle_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_header_bytes: 64 * 1024,
            max_body_bytes: None,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            drain_timeout: Duration::from_secs(30),
            trusted_hops: 0,
            buffer_body_bytes: 64 * 1024,
            connect_timeout: Duration::from_secs(5),
            upstream_idle_timeout: Duration::from_secs(90),
        }
    }
}

/// What [`Dataplane::apply`] could not do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Ports that could not be bound, with the OS error.
    pub bind_errors: BTreeMap<SocketAddr, String>,
}

/// The running data plane; cheap to clone.
#[derive(Clone)]
pub struct Dataplane {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    ports: HashMap<SocketAddr, PortHandle>,
    last: Option<Arc<Config>>,
    draining: Vec<Drain>,
    shut: bool,
}

impl Dataplane {
    /// A data plane with no ports.
    pub fn new(opts: Options) -> Self {
        let clients = Clients::new(opts.connect_timeout, opts.upstream_idle_timeout);
        let shared = Arc::new(Shared {
            opts,
            clients,
            tokens: RandomState::new(),
        });
        Dataplane {
            inner: Arc::new(Inner {
                shared,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// Make `config` live: bind ports that are new, stop ports that
    /// disappeared (drain their connections), and atomically swap the route
    /// tables of ports that stay (in-flight requests and open keep-alive,
    /// WebSocket and streaming connections on kept ports are never cut). An
    /// identical config is a no-op. Returns the ports that could not be
    /// bound, with the OS error (they are retried by the next apply).
    pub async fn apply(&self, config: Arc<Config>) -> ApplyReport {
        let mut report = ApplyReport::default();
        let mut st = self.inner.state.lock().await;
        if st.shut {
            return report;
        }
        if st
            .last
            .as_ref()
            .is_some_and(|l| Arc::ptr_eq(l, &config) || **l == *config)
        {
            return report;
        }
        let shared = &self.inner.shared;
        let mut wanted = HashMap::new();
        for p in &config.ports {
            if p.protocol == PortProtocol::Http {
                wanted.insert(p.bind, p);
            } else {
                tracing::warn!(bind = %p.bind, protocol = ?p.protocol, "port protocol not served yet; skipped");
            }
        }
        let gone: Vec<SocketAddr> = st
            .ports
            .keys()
            .filter(|a| !wanted.contains_key(a))
            .copied()
            .collect();
        for addr in gone {
            if let Some(h) = st.ports.remove(&addr) {
                let d = h.stop(shared.opts.drain_timeout).await;
                st.draining.push(d);
            }
        }
        st.draining.retain(|d| d.watchers() > 0);
        for (addr, port) in wanted {
            match st.ports.get_mut(&addr) {
                Some(h) => h.update(port),
                None => match PortHandle::start(port, shared.clone()).await {
                    Ok(h) => {
                        st.ports.insert(addr, h);
                    }
                    Err(e) => {
                        tracing::warn!(bind = %addr, error = %e, "bind failed");
                        report.bind_errors.insert(addr, e.to_string());
                    }
                },
            }
        }
        st.last = report.bind_errors.is_empty().then_some(config);
        report
    }

    /// Stop accepting, finish in-flight requests, close idle connections;
    /// force-close after the drain deadline.
    pub async fn shutdown(&self) {
        let mut st = self.inner.state.lock().await;
        st.shut = true;
        let grace = self.inner.shared.opts.drain_timeout;
        let ports: Vec<PortHandle> = st.ports.drain().map(|(_, h)| h).collect();
        let mut drains = std::mem::take(&mut st.draining);
        for h in ports {
            drains.push(h.stop(grace).await);
        }
        let all = futures_util::future::join_all(drains.iter().map(|d| d.closed()));
        if tokio::time::timeout(grace + Duration::from_secs(1), all)
            .await
            .is_err()
        {
            tracing::warn!("drain did not finish in time");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}
    fn assert_sync<T: Send + Sync + Clone + 'static>() {}

    #[tokio::test]
    async fn futures_are_send_and_empty_config_applies() {
        assert_sync::<Dataplane>();
        let dp = Dataplane::new(Options::default());
        let f = dp.apply(Arc::new(Config::default()));
        assert_send(&f);
        assert!(f.await.bind_errors.is_empty());
        let s = dp.shutdown();
        assert_send(&s);
        s.await;
    }
}
