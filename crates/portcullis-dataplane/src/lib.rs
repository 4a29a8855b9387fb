//! The Portcullis data plane.
//!
//! [`Dataplane::apply`] makes an IR [`Config`] live: ports that are new are
//! bound, ports that disappeared stop accepting and drain, and ports that
//! stay get their compiled [`table::PortTable`] swapped atomically (arc-swap),
//! so open connections, in-flight requests, streams and WebSockets are never
//! cut by a configuration change. The request path reads the table with one
//! `load_full` and takes no lock.
//!
//! Ports by protocol:
//!
//! | IR protocol | served by |
//! |---|---|
//! | `Http` | [`listener`] → [`conn`] (HTTP/1.1 + h2c prior knowledge) → [`handler`] |
//! | `Https` | [`listener`] (TLS handshake on a `portcullis_tls::SwappableAcceptor`, ALPN `h2`/`http/1.1`) → [`conn`] → [`handler`] (421 on misdirected requests) |
//! | `Tls`, `Tcp` | [`l4`] → `portcullis_l4::L4Port::serve_tcp` (passthrough by SNI, terminate to TCP, plain TCP; HTTPS listeners sharing a TLS port go back to [`frontend_tls`] → [`conn`] → [`handler`]) |
//! | `Udp` | [`l4`] → `portcullis_l4::L4Port::serve_udp` |
//!
//! Other modules: [`table`] (compiled per-port state), [`filters`], [`cors`],
//! [`mirror`], [`retry`], [`websocket`], [`forward`] (hop-by-hop,
//! X-Forwarded-*), [`backend`] (weighted choice, endpoints, pools, upstream
//! TLS, session persistence), [`error`] (every gateway-generated error in one
//! place, gRPC-shaped for gRPC requests) and [`drain`].
//!
//! What an apply could not do is in the [`ApplyReport`]: ports that could not
//! be bound, HTTPS ports whose TLS configuration could not be built (the
//! previous configuration stays in use) and backends whose BackendTLSPolicy
//! client configuration could not be built (they answer as invalid backends).
#![deny(missing_docs)]

pub mod auth;
pub mod backend;
pub mod body;
#[cfg(feature = "cli")]
pub mod cli;
pub mod client_ip;
pub mod client_traffic;
pub mod compress;
pub mod conn;
/// The hardened server of control endpoints (admin API, health).
pub use portcullis_obs::control;
pub mod cors;
pub mod ctx;
pub mod drain;
pub mod error;
pub mod faults;
pub mod filters;
pub mod forward;
pub mod frontend_tls;
pub mod h1_trailers;
pub mod handler;
pub mod header_case;
pub mod http1;
pub mod l4;
pub mod limits;
pub mod listener;
pub mod mirror;
pub mod observe;
pub mod proxy_protocol;
pub mod ratelimit;
mod reqbody;
pub mod retry;
pub mod table;
pub mod websocket;
pub mod workers;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::RandomState;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use portcullis_ir::{Config, Port, PortProtocol};
use tokio::sync::Mutex;

use backend::pool::Clients;
use backend::tls::UpstreamTlsCache;
use drain::Drain;
use handler::Shared;
use l4::L4Handle;
use listener::PortHandle;

pub use portcullis_l4::L4Options;

/// Data plane tuning.
#[derive(Clone, Debug)]
pub struct Options {
    /// Largest request head (HTTP/1 buffer, HTTP/2 header list); larger heads get 431.
    pub max_header_bytes: usize,
    /// Largest request body; `None` for no limit. Larger declared bodies get
    /// 413; a streamed body that grows past it is cut and answered 413 when
    /// no response has started. Default 100 MiB.
    pub max_body_bytes: Option<u64>,
    /// Time allowed for a request head to arrive (slowloris), and for the
    /// first request on a new connection.
    pub header_read_timeout: Duration,
    /// Keep-alive connections with nothing in flight are closed after this.
    pub idle_timeout: Duration,
    /// Longest wait between two reads of a request body (slowly trickling
    /// bodies); past it the request is answered 408 if nothing was sent yet
    /// and the connection is closed. Not applied to gRPC streams.
    pub body_idle_timeout: Duration,
    /// Longest time to receive a whole request body, from the end of its
    /// head; past it, as for `body_idle_timeout`. Not applied to gRPC streams.
    pub body_timeout: Duration,
    /// Longest wait for an upstream response head once the request (head and
    /// body) was sent; past it the request is answered 504. A route's
    /// `timeouts.backendRequest` replaces it. Not applied to what follows
    /// the head (a response body, a gRPC stream, an upgraded connection).
    pub upstream_header_timeout: Duration,
    /// Most client connections open at once on one port (HTTP and HTTPS
    /// ports, across worker threads); past it, new connections wait in the
    /// kernel's accept backlog (and are refused by the kernel when it is full).
    pub max_connections_per_port: usize,
    /// How long draining waits for in-flight work before force-closing.
    pub drain_timeout: Duration,
    /// Who may tell the gateway the client's address (trusted hops and
    /// CIDRs); by default no one, and inbound forwarding headers are replaced.
    pub client_ip: client_ip::ClientIpDetection,
    /// Request bodies with a Content-Length up to this are buffered, which
    /// makes them retryable and mirrorable.
    pub buffer_body_bytes: usize,
    /// Upstream connect timeout.
    pub connect_timeout: Duration,
    /// Idle pooled upstream connections are closed after this.
    pub upstream_idle_timeout: Duration,
    /// Layer-4 (TLS, TCP, UDP) timeouts and limits.
    pub l4: L4Options,
    /// Worker threads for HTTP(S) ports, each with its own single-threaded
    /// runtime and `SO_REUSEPORT` accept socket per port (see [`workers`]);
    /// 0 serves everything on the caller's runtime.
    pub workers: usize,
    /// BackendTrafficPolicy rate limits: Redis, failure mode, memory bound.
    pub rate_limit: ratelimit::RateLimitOptions,
    /// The zone this proxy runs in (zone-aware routing), if known.
    pub zone: Option<String>,
    /// Expose `portcullis_endpoint_healthy{backend,endpoint}`, one series per
    /// endpoint (off by default: series then grow with backends only).
    pub metrics_endpoint_labels: bool,
    /// HTTP/1 trailers are proxied (default); `false` on a port whose
    /// ClientTrafficPolicy sets `http1.enableTrailers: false` (see
    /// [`h1_trailers`]).
    pub http1_trailers: bool,
    /// HTTP/1.1 header names keep their case (ClientTrafficPolicy
    /// `http1.preserveHeaderCase`, see [`header_case`]); `false`: lower-cased.
    pub http1_preserve_case: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_header_bytes: 64 * 1024,
            max_body_bytes: Some(100 * 1024 * 1024),
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            body_idle_timeout: Duration::from_secs(60),
            body_timeout: Duration::from_secs(300),
            upstream_header_timeout: Duration::from_secs(60),
            max_connections_per_port: 10_000,
            drain_timeout: Duration::from_secs(10),
            client_ip: client_ip::ClientIpDetection::default(),
            buffer_body_bytes: 64 * 1024,
            connect_timeout: Duration::from_secs(5),
            upstream_idle_timeout: Duration::from_secs(90),
            l4: L4Options::default(),
            workers: 0,
            rate_limit: ratelimit::RateLimitOptions::default(),
            zone: None,
            metrics_endpoint_labels: false,
            http1_trailers: true,
            http1_preserve_case: false,
        }
    }
}

/// What [`Dataplane::apply`] could not do.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApplyReport {
    /// Ports that could not be bound, with the OS error.
    pub bind_errors: BTreeMap<SocketAddr, String>,
    /// Ports (HTTPS, and TLS ports with terminating listeners) whose TLS
    /// configuration could not be built. A port that was already serving
    /// keeps its previous configuration; a new port is bound but refuses
    /// those handshakes.
    pub tls_errors: BTreeMap<SocketAddr, String>,
    /// Backends (`namespace/name:port`) whose BackendTLSPolicy client
    /// configuration could not be built; they are answered as invalid.
    pub backend_tls_errors: BTreeMap<String, String>,
}

/// Client connections of an HTTP(S) port.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ConnStats {
    /// Connections open now.
    pub open: usize,
    /// How many times accepting paused at [`Options::max_connections_per_port`].
    pub cap_reached: u64,
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

/// A running port of any protocol.
enum Running {
    Http(PortHandle),
    L4(L4Handle),
}

/// Ports are keyed by address and socket type (TCP or UDP).
type PortKey = (SocketAddr, bool);

fn key(p: &Port) -> PortKey {
    (p.bind, p.protocol == PortProtocol::Udp)
}

impl Running {
    async fn start(
        port: &Port,
        shared: &Arc<Shared>,
        retry_bind: bool,
    ) -> std::io::Result<(Self, Option<String>)> {
        match port.protocol {
            PortProtocol::Http | PortProtocol::Https => {
                let (h, e) = PortHandle::start(port, shared.clone(), retry_bind).await?;
                Ok((Running::Http(h), e))
            }
            PortProtocol::Tls | PortProtocol::Tcp | PortProtocol::Udp => {
                let (h, e) = L4Handle::start(port, shared, retry_bind).await?;
                Ok((Running::L4(h), e))
            }
        }
    }

    /// Whether `port` can be served by updating this one in place.
    fn can_serve(&self, port: &Port) -> bool {
        match self {
            // ClientTrafficPolicy connection settings are fixed at start.
            Running::Http(h) => h.ir.protocol == port.protocol && h.ir.client == port.client,
            Running::L4(h) => h.can_serve(port),
        }
    }

    /// Update in place; returns a TLS error for the report.
    fn update(&mut self, port: &Port) -> Option<String> {
        match self {
            Running::Http(h) => h.update(port),
            Running::L4(h) => h.update(port),
        }
    }

    async fn stop(self, grace: Duration) -> Drain {
        match self {
            Running::Http(h) => h.stop(grace).await,
            Running::L4(h) => h.stop(grace).await,
        }
    }
}

#[derive(Default)]
struct State {
    ports: HashMap<PortKey, Running>,
    last: Option<Arc<Config>>,
    /// TLS errors of `last`, reported again when it is applied again.
    last_tls_errors: BTreeMap<SocketAddr, String>,
    draining: Vec<Drain>,
    shut: bool,
}

impl Dataplane {
    /// A data plane with no ports.
    ///
    /// # Panics
    /// If `opts.workers` threads cannot be started.
    pub fn new(opts: Options) -> Self {
        portcullis_obs::metrics()
            .health
            .set_endpoint_labels(opts.metrics_endpoint_labels);
        let workers = workers::Workers::start(opts.workers).expect("data-plane worker threads");
        let clients = Clients::new(opts.connect_timeout, opts.upstream_idle_timeout);
        let upstream_tls = UpstreamTlsCache::new(opts.connect_timeout, opts.upstream_idle_timeout);
        let h1 = backend::h1::H1Client::new(opts.connect_timeout, opts.upstream_idle_timeout);
        let limiters = ratelimit::Limiters::new(opts.rate_limit.clone());
        let shared = Arc::new(Shared {
            limiters,
            births: Default::default(),
            targets: Default::default(),
            opts,
            clients,
            h1,
            upstream_tls,
            tokens: RandomState::new(),
            workers,
            jwks: auth::JwksCache::default(),
        });
        Dataplane {
            inner: Arc::new(Inner {
                shared,
                state: Mutex::new(State::default()),
            }),
        }
    }

    /// Make `config` live: bind ports that are new, stop ports that
    /// disappeared or changed protocol (drain their connections), and
    /// atomically swap the route tables (and TLS configurations) of ports
    /// that stay (in-flight requests and open keep-alive, WebSocket, TLS,
    /// TCP and streaming connections on kept ports are never cut). An
    /// identical config is a no-op. Returns what could not be done: ports
    /// that could not be bound, with the OS error (retried by the next
    /// apply), and TLS configurations that could not be built.
    pub async fn apply(&self, config: Arc<Config>) -> ApplyReport {
        let mut report = ApplyReport::default();
        let mut st = self.inner.state.lock().await;
        if st.shut {
            return report;
        }
        if st
            .last
            .as_ref()
            .is_some_and(|l| Arc::ptr_eq(l, &config) || l.same_as(&config))
        {
            // Still true of what is served: the previous TLS configuration
            // keeps serving those ports.
            report.tls_errors = st.last_tls_errors.clone();
            return report;
        }
        let shared = &self.inner.shared;
        let wanted: HashMap<PortKey, &Port> = config.ports.iter().map(|p| (key(p), p)).collect();
        let gone: Vec<PortKey> = st
            .ports
            .iter()
            .filter(|(k, r)| wanted.get(k).is_none_or(|p| !r.can_serve(p)))
            .map(|(k, _)| *k)
            .collect();
        let mut released = HashSet::new();
        for k in gone {
            if let Some(h) = st.ports.remove(&k) {
                let d = h.stop(shared.opts.drain_timeout).await;
                st.draining.push(d);
                released.insert(k);
            }
        }
        st.draining.retain(|d| d.watchers() > 0);
        for port in &config.ports {
            let k = key(port);
            if wanted.get(&k).is_none_or(|p| !std::ptr::eq(*p, port)) {
                tracing::warn!(bind = %port.bind, "port listed twice; the last one is served");
                continue;
            }
            match st.ports.get_mut(&k) {
                Some(h) => {
                    if let Some(e) = h.update(port) {
                        report.tls_errors.insert(port.bind, e);
                    }
                }
                None => match Running::start(port, shared, released.contains(&k)).await {
                    Ok((h, tls_error)) => {
                        st.ports.insert(k, h);
                        if let Some(e) = tls_error {
                            report.tls_errors.insert(port.bind, e);
                        }
                    }
                    Err(e) => {
                        tracing::warn!(bind = %port.bind, error = %e, "bind failed");
                        report.bind_errors.insert(port.bind, e.to_string());
                    }
                },
            }
        }
        report.backend_tls_errors = shared.upstream_tls.finish();
        for (backend, e) in &report.backend_tls_errors {
            tracing::warn!(%backend, error = %e, "backend TLS configuration failed");
        }
        st.last = report.bind_errors.is_empty().then_some(config);
        st.last_tls_errors = report.tls_errors.clone();
        report
    }

    /// Client connections of every HTTP(S) port.
    pub async fn connection_stats(&self) -> BTreeMap<SocketAddr, ConnStats> {
        let st = self.inner.state.lock().await;
        st.ports
            .values()
            .filter_map(|r| match r {
                Running::Http(h) => Some((
                    h.ir.bind,
                    ConnStats {
                        open: h.ctx.conns.open(),
                        cap_reached: h.ctx.conns.reached(),
                    },
                )),
                Running::L4(_) => None,
            })
            .collect()
    }

    /// Stop accepting, finish in-flight requests, close idle connections;
    /// force-close after the drain deadline.
    pub async fn shutdown(&self) {
        let mut st = self.inner.state.lock().await;
        st.shut = true;
        let grace = self.inner.shared.opts.drain_timeout;
        let ports: Vec<Running> = st.ports.drain().map(|(_, h)| h).collect();
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
        // The access log batches lines: write the last ones.
        tokio::task::spawn_blocking(|| portcullis_obs::accesslog::flush(Duration::from_secs(1)))
            .await
            .ok();
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
