//! Layer-4 ports (`Tls`, `Tcp`, `Udp`), served by [`portcullis_l4::L4Port`].
//!
//! - `Tls` (passthrough by SNI, terminate to TCP, both mixed on one port) and
//!   `Tcp` ports: a bound `TcpListener` and [`L4Port::serve_tcp`].
//! - `Udp` ports: a bound `UdpSocket` and [`L4Port::serve_udp`].
//! - An apply that keeps the port swaps its IR ([`L4Port::swap`]): new
//!   connections and sessions use the new routes, open ones keep their
//!   backend. A TLS-terminate port rebuilds its certificates for the next
//!   handshake when its IR changes.
//! - HTTPS listeners sharing a TLS port with TLS listeners (same family, so
//!   the port's protocol is `Tls`): the port's [`Terminator`] hands
//!   connections whose SNI selects a listener with HTTP routes to the HTTP
//!   data plane (handshake with ALPN `h2`/`http/1.1`, routing, 421), and the
//!   others (TLSRoute `Terminate`) to [`TlsTerminator`]. The frontend TLS is
//!   built at apply time, so certificate errors of terminating listeners are
//!   reported like those of HTTPS ports.
//! - Drain: the serve functions get a future that resolves, when the port's
//!   [`Drain`] starts, to the force-close deadline. Accepting stops at once;
//!   open connections and UDP sessions may finish until the deadline. The
//!   serving task holds the drain's watch, so [`Drain::closed`] resolves
//!   when every connection has ended.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use portcullis_ir::{Port, PortProtocol};
use portcullis_l4::{L4Options, L4Port, Rewind, TerminateContext, Terminator, TlsTerminator};
use tokio::net::{TcpStream, UdpSocket};
use tokio::sync::oneshot;

use crate::conn::Builders;
use crate::drain::{Drain, DrainWatch};
use crate::frontend_tls::{self, FrontendTls};
use crate::handler::{PortCtx, Shared};
use crate::limits::ConnCap;
use crate::listener::bind_tcp;
use crate::table::{BuildCtx, PortTable};

/// The connection counters of a port: labels `port` (the bound address)
/// and `protocol` (the IR protocol in lower case).
pub fn port_stats(port: &Port) -> portcullis_obs::metrics::PortStats {
    let protocol = match port.protocol {
        PortProtocol::Http => "http",
        PortProtocol::Https => "https",
        PortProtocol::Tls => "tls",
        PortProtocol::Tcp => "tcp",
        PortProtocol::Udp => "udp",
    };
    portcullis_obs::metrics().port(&port.bind.to_string(), protocol)
}

/// A running layer-4 port.
pub struct L4Handle {
    port: L4Port,
    /// The IR being served.
    pub ir: Port,
    drain: Drain,
    /// Fires when the serving task stops accepting.
    stopping: oneshot::Receiver<()>,
    /// TCP ports: the HTTP side for HTTPS listeners on a TLS port.
    https: Option<HttpsSide>,
}

/// The HTTP data plane of a TLS port (table and frontend TLS).
struct HttpsSide {
    ctx: Arc<PortCtx>,
    tls: FrontendTls,
}

/// The [`Terminator`] of TCP ports: HTTPS listeners go to the HTTP data
/// plane, TLSRoute `Terminate` listeners to [`TlsTerminator`].
struct SharedTerminator {
    ctx: Arc<PortCtx>,
    fallback: TlsTerminator,
    drain: DrainWatch,
}

impl Terminator for SharedTerminator {
    fn terminate(
        &self,
        stream: Rewind<TcpStream>,
        ctx: TerminateContext,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        let https = ctx
            .port
            .listeners
            .get(ctx.listener)
            .is_some_and(|l| !l.http_routes.is_empty());
        match (&self.ctx.tls, https) {
            (Some(acceptor), true) => Box::pin(frontend_tls::serve(
                stream,
                ctx.peer,
                acceptor.clone(),
                self.ctx.clone(),
                self.drain.clone(),
            )),
            _ => self.fallback.terminate(stream, ctx),
        }
    }
}

impl L4Handle {
    /// Bind (TCP for `Tls`/`Tcp`, UDP for `Udp`) and start serving. With
    /// `retry_bind`, `AddrInUse` is retried briefly (the address was
    /// released by a port stopped in the same apply). Also returns the
    /// frontend TLS build error, if any.
    pub async fn start(
        port: &Port,
        shared: &Arc<Shared>,
        retry_bind: bool,
    ) -> io::Result<(Self, Option<String>)> {
        let options = L4Options {
            max_connections: shared.opts.max_connections_per_port,
            ..shared.opts.l4.clone()
        };
        let mut l4 = L4Port::new(Arc::new(port.clone())).with_options(options);
        let drain = Drain::new();
        let (mut https, mut tls_error) = (None, None);
        if port.protocol != PortProtocol::Udp {
            let (tls, e) = FrontendTls::new(port, shared.opts.header_read_timeout);
            let ctx = Arc::new(PortCtx {
                table: ArcSwap::from_pointee(PortTable::build(port, &BuildCtx::of(shared))),
                builders: Builders::new(&shared.opts, None),
                shared: shared.clone(),
                opts: shared.opts.clone(),
                client: None,
                limit: None,
                tls: Some(tls.acceptor.clone()),
                // Connections of this port are capped by its layer-4 accept loop.
                conns: ConnCap::new("HTTPS on a TLS port", usize::MAX),
                stats: port_stats(port),
            });
            l4 = l4.with_terminator(Arc::new(SharedTerminator {
                ctx: ctx.clone(),
                fallback: TlsTerminator::default(),
                drain: drain.watch(),
            }));
            https = Some(HttpsSide { ctx, tls });
            tls_error = e;
        }
        let mut watch = drain.watch();
        let (tx, stopping) = oneshot::channel();
        let signal = async move {
            let deadline = watch.signaled().await;
            let _ = tx.send(());
            // The watch lives as long as the serve future: until every
            // connection has ended.
            deadline
        };
        let bind = port.bind;
        // Held by the serving task until its socket is dropped, so that the
        // drain completes only once the port is released.
        let held = drain.watch();
        match port.protocol {
            PortProtocol::Udp => {
                let socket = bind_udp(bind, retry_bind).await?;
                let served = l4.clone();
                tokio::spawn(async move {
                    if let Err(e) = served.serve_udp(socket, signal).await {
                        tracing::warn!(%bind, error = %e, "UDP port failed");
                    }
                    drop(held);
                });
            }
            _ => {
                let listener = bind_tcp(bind, retry_bind).await?;
                let served = l4.clone();
                tokio::spawn(async move {
                    if let Err(e) = served.serve_tcp(listener, signal).await {
                        tracing::warn!(%bind, error = %e, "layer-4 port failed");
                    }
                    drop(held);
                });
            }
        }
        tracing::info!(%bind, protocol = ?port.protocol, "listening");
        let handle = L4Handle {
            port: l4,
            ir: port.clone(),
            drain,
            stopping,
            https,
        };
        Ok((handle, tls_error))
    }

    /// Whether this handle can serve `port` by swapping (same socket type).
    pub fn can_serve(&self, port: &Port) -> bool {
        let tcp = |p: PortProtocol| matches!(p, PortProtocol::Tls | PortProtocol::Tcp);
        self.ir.protocol == port.protocol || (tcp(self.ir.protocol) && tcp(port.protocol))
    }

    /// Serve `port` for new connections and sessions; returns the frontend
    /// TLS build error, if any (the previous TLS configuration stays).
    pub fn update(&mut self, port: &Port) -> Option<String> {
        let mut error = None;
        if let Some(h) = &mut self.https {
            error = h.tls.update(port);
            if self.ir != *port {
                let table = PortTable::build(port, &BuildCtx::of(&h.ctx.shared));
                h.ctx.table.store(Arc::new(table));
            }
        }
        if self.ir != *port {
            self.port.swap(Arc::new(port.clone()));
            self.ir = port.clone();
        }
        error
    }

    /// Stop accepting and start draining; returns the drain to wait on.
    pub async fn stop(self, grace: Duration) -> Drain {
        self.drain.start(grace);
        let _ = self.stopping.await;
        tracing::info!(bind = %self.ir.bind, protocol = ?self.ir.protocol, "stopped listening");
        self.drain
    }
}

async fn bind_udp(addr: SocketAddr, retry: bool) -> io::Result<UdpSocket> {
    let mut tries = if retry { 20 } else { 0 };
    loop {
        match UdpSocket::bind(addr).await {
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && tries > 0 => {
                tries -= 1;
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            r => return r,
        }
    }
}
