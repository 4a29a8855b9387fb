//! [`L4Port`]: one bound TCP/TLS or UDP port, its hot-swappable IR and the TCP accept loop.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use portcullis_ir::{Port, PortProtocol};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::client_hello::read_client_hello;
use crate::rewind::Rewind;
use crate::select::{self, Refusal, TlsAction};
use crate::splice::splice;
use crate::terminate::TlsTerminator;

/// Timeouts and limits of layer-4 proxying.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct L4Options {
    /// Bound on each connection attempt to an endpoint.
    pub connect_timeout: Duration,
    /// A TCP connection with no bytes moving either way for this long is closed.
    pub idle_timeout: Option<Duration>,
    /// Bound on receiving the whole ClientHello on TLS ports (and on the
    /// handshake, for terminated TLS).
    pub client_hello_timeout: Duration,
    /// A UDP session with no datagram either way for this long is forgotten.
    pub udp_idle_timeout: Duration,
    /// Most UDP sessions per port; the least recently active is evicted beyond it.
    pub udp_max_sessions: usize,
    /// Most TCP connections open at once on one port; past it, new
    /// connections wait in the kernel's accept backlog.
    pub max_connections: usize,
}

impl Default for L4Options {
    fn default() -> Self {
        L4Options {
            connect_timeout: Duration::from_secs(5),
            idle_timeout: Some(Duration::from_secs(3600)),
            client_hello_timeout: Duration::from_secs(10),
            udp_idle_timeout: Duration::from_secs(60),
            udp_max_sessions: 4096,
            max_connections: 10_000,
        }
    }
}

/// Everything a [`Terminator`] needs about a connection it takes over.
#[derive(Clone, Debug)]
pub struct TerminateContext {
    /// The port configuration loaded when the connection was accepted.
    pub port: Arc<Port>,
    /// Index in `port.listeners` of the listener the SNI selected (mode `Terminate`).
    pub listener: usize,
    /// The SNI from the peeked ClientHello.
    pub sni: Option<String>,
    /// The client's address.
    pub peer: SocketAddr,
    /// The port's options.
    pub options: L4Options,
}

/// Takes over connections whose SNI selects a `Terminate` listener on a TLS port.
///
/// The stream replays the ClientHello already read, so a TLS acceptor can run
/// on it as if nothing had been read. The default is [`TlsTerminator`].
pub trait Terminator: Send + Sync + 'static {
    /// Serves one connection to completion.
    fn terminate(
        &self,
        stream: Rewind<TcpStream>,
        ctx: TerminateContext,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>>;
}

struct Inner {
    port: Arc<ArcSwap<Port>>,
    options: L4Options,
    terminator: Arc<dyn Terminator>,
}

/// A layer-4 port (protocol `Tls`, `Tcp` or `Udp`) serving the IR in an
/// `ArcSwap<Port>`: each new connection (or UDP session) reads the current
/// configuration; connections already open keep the backend they chose.
#[derive(Clone)]
pub struct L4Port {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for L4Port {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("L4Port")
            .field("bind", &self.inner.port.load().bind)
            .field("options", &self.inner.options)
            .finish()
    }
}

impl L4Port {
    /// A port serving `port`, with default options and TLS termination.
    pub fn new(port: Arc<Port>) -> Self {
        Self::from_shared(Arc::new(ArcSwap::new(port)))
    }

    /// A port serving whatever is stored in `port` (swap it to change routes).
    pub fn from_shared(port: Arc<ArcSwap<Port>>) -> Self {
        Self::build(
            port,
            L4Options::default(),
            Arc::new(TlsTerminator::default()),
        )
    }

    fn build(
        port: Arc<ArcSwap<Port>>,
        options: L4Options,
        terminator: Arc<dyn Terminator>,
    ) -> Self {
        L4Port {
            inner: Arc::new(Inner {
                port,
                options,
                terminator,
            }),
        }
    }

    /// With other timeouts and limits.
    pub fn with_options(self, options: L4Options) -> Self {
        Self::build(
            self.inner.port.clone(),
            options,
            self.inner.terminator.clone(),
        )
    }

    /// With another handler for `Terminate` listeners of mixed TLS ports.
    pub fn with_terminator(self, terminator: Arc<dyn Terminator>) -> Self {
        Self::build(
            self.inner.port.clone(),
            self.inner.options.clone(),
            terminator,
        )
    }

    /// Replaces the configuration for new connections and sessions.
    pub fn swap(&self, port: Arc<Port>) {
        self.inner.port.store(port);
    }

    /// The shared configuration cell.
    pub fn shared(&self) -> Arc<ArcSwap<Port>> {
        self.inner.port.clone()
    }

    /// The options in force.
    pub fn options(&self) -> &L4Options {
        &self.inner.options
    }

    /// Accepts on `listener` until `drain` resolves (with the force-close
    /// deadline), then stops accepting, lets open connections finish until
    /// the deadline and closes what is left.
    pub async fn serve_tcp<D>(&self, listener: TcpListener, drain: D) -> io::Result<()>
    where
        D: Future<Output = Instant> + Send,
    {
        let mut conns = JoinSet::new();
        let mut backoff = crate::accept::AcceptBackoff::new("layer-4 port");
        let max = self.inner.options.max_connections.max(1);
        let (mut full, mut cap_log) = (false, crate::accept::CapLog::default());
        let stats = {
            let port = self.inner.port.load();
            let protocol = if port.protocol == PortProtocol::Tls {
                "tls"
            } else {
                "tcp"
            };
            portcullis_obs::metrics().port(&port.bind.to_string(), protocol)
        };
        tokio::pin!(drain);
        let deadline = loop {
            // At the cap, stop accepting: new connections wait in the backlog.
            if conns.len() >= max && !full {
                cap_log.reached("layer-4 port", max);
            }
            full = conns.len() >= max;
            tokio::select! {
                deadline = &mut drain => break deadline,
                accepted = listener.accept(), if !full => match accepted {
                    Ok((stream, peer)) => {
                        backoff.accepted();
                        let port = self.inner.port.load_full();
                        let active = stats.accepted();
                        let conn = handle(self.inner.clone(), stream, peer, port);
                        conns.spawn(async move { let _active = active; conn.await });
                    }
                    Err(e) => {
                        // Out of descriptors and the like: back off, keep serving.
                        let wait = backoff.failed(&e);
                        if !wait.is_zero() {
                            tokio::time::sleep(wait).await;
                        }
                    }
                },
                Some(_) = conns.join_next(), if !conns.is_empty() => {}
            }
        };
        drop(listener);
        let finish = async { while conns.join_next().await.is_some() {} };
        if tokio::time::timeout_at(deadline, finish).await.is_err() {
            tracing::debug!(
                open = conns.len(),
                "drain deadline: closing open connections"
            );
            conns.shutdown().await;
        }
        Ok(())
    }
}

/// [`L4Port::serve_tcp`] with default options.
pub async fn serve_tcp<D>(
    listener: TcpListener,
    port: Arc<ArcSwap<Port>>,
    drain: D,
) -> io::Result<()>
where
    D: Future<Output = Instant> + Send,
{
    L4Port::from_shared(port).serve_tcp(listener, drain).await
}

async fn handle(inner: Arc<Inner>, stream: TcpStream, peer: SocketAddr, port: Arc<Port>) {
    let _ = stream.set_nodelay(true);
    let result = match port.protocol {
        PortProtocol::Tcp => tcp(&inner, stream, &port).await,
        PortProtocol::Tls => tls(&inner, stream, peer, port.clone()).await,
        other => {
            tracing::warn!(bind = %port.bind, protocol = ?other, "not a layer-4 port");
            Ok(())
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, bind = %port.bind, error = %e, "layer-4 connection closed");
    }
}

/// Connection-level failures, for logs.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConnError {
    #[error(transparent)]
    Refused(#[from] Refusal),
    #[error("ClientHello: {0}")]
    Hello(#[from] crate::client_hello::PeekError),
    #[error("connecting to {addr}: {source}")]
    Connect { addr: SocketAddr, source: io::Error },
    #[error(transparent)]
    Io(#[from] io::Error),
}

async fn tcp(inner: &Inner, stream: TcpStream, port: &Port) -> Result<(), ConnError> {
    let route = select::oldest_route(port).ok_or_else(|| {
        Refusal::NoRoute(
            port.listeners
                .first()
                .map(|l| l.name.clone())
                .unwrap_or_default(),
        )
    })?;
    // BackendTrafficPolicy: maxConnections, round robin, connect timeout.
    let traffic = route.traffic.as_deref();
    let admitted = match traffic {
        None => None,
        Some(t) => Some(crate::traffic::admit(route, t).ok_or_else(|| {
            Refusal::Overflow(format!("{}/{}", route.meta.namespace, route.meta.name))
        })?),
    };
    let turn = admitted.as_ref().and_then(|a| a.turn);
    let targets = select::upstreams_from(route, &mut rand::rng(), turn)?;
    let timeout = crate::traffic::connect_timeout(traffic, inner.options.connect_timeout);
    let upstream = connect_any(&targets, timeout).await?;
    let listener = port
        .listeners
        .iter()
        .find(|l| l.l4_routes.iter().any(|r| std::ptr::eq(r, route)))
        .map_or("", |l| l.name.as_str());
    let stats = route_stats(listener, route, "tcp");
    let _active = stats.open();
    let (rx, tx) = splice(stream, upstream, inner.options.idle_timeout).await?;
    stats.bytes(rx, tx);
    Ok(())
}

/// The session counters of a layer-4 route (one short lock, once per session).
pub(crate) fn route_stats(
    listener: &str,
    route: &portcullis_ir::L4Route,
    protocol: &'static str,
) -> portcullis_obs::metrics::L4Stats {
    let name = format!("{}/{}", route.meta.namespace, route.meta.name);
    portcullis_obs::metrics().l4(listener, &name, protocol)
}

async fn tls(
    inner: &Inner,
    mut stream: TcpStream,
    peer: SocketAddr,
    port: Arc<Port>,
) -> Result<(), ConnError> {
    let (hello, bytes) = read_client_hello(&mut stream, inner.options.client_hello_timeout).await?;
    let sni = hello.sni;
    let index =
        select::select_listener(&port, sni.as_deref()).ok_or(Refusal::NoListener(sni.clone()))?;
    let listener = &port.listeners[index];
    match select::tls_action(listener) {
        TlsAction::Passthrough => {
            let route = select::select_tls_route(listener, sni.as_deref())
                .ok_or_else(|| Refusal::NoRoute(listener.name.clone()))?;
            let targets = select::upstreams(route, &mut rand::rng())?;
            let upstream = connect_any(&targets, inner.options.connect_timeout).await?;
            let stats = route_stats(&listener.name, route, "tls");
            let _active = stats.open();
            // The peeked bytes go first, through the same splice, untouched.
            let (rx, tx) = splice(
                Rewind::new(bytes, stream),
                upstream,
                inner.options.idle_timeout,
            )
            .await?;
            stats.bytes(rx, tx);
        }
        TlsAction::Terminate => {
            let ctx = TerminateContext {
                port: port.clone(),
                listener: index,
                sni,
                peer,
                options: inner.options.clone(),
            };
            inner
                .terminator
                .terminate(Rewind::new(bytes, stream), ctx)
                .await;
        }
    }
    Ok(())
}

/// Connects to the first endpoint that answers, each attempt bounded by `timeout`.
pub(crate) async fn connect_any(
    targets: &[SocketAddr],
    timeout: Duration,
) -> Result<TcpStream, ConnError> {
    let mut last = None;
    for &addr in targets.iter().take(3) {
        match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            Ok(Ok(s)) => {
                let _ = s.set_nodelay(true);
                return Ok(s);
            }
            Ok(Err(source)) => last = Some(ConnError::Connect { addr, source }),
            Err(_) => {
                last = Some(ConnError::Connect {
                    addr,
                    source: io::Error::new(io::ErrorKind::TimedOut, "connect timeout"),
                })
            }
        }
    }
    Err(last.unwrap_or(ConnError::Io(io::Error::new(
        io::ErrorKind::NotFound,
        "no endpoint",
    ))))
}
