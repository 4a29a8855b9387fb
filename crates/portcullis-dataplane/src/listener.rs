//! A bound HTTP or HTTPS port: its accept loop, live table, TLS acceptor and drain.
//!
//! HTTPS: every accepted connection runs the TLS handshake on the port's
//! [`SwappableAcceptor`] (certificate by SNI, client-certificate validation
//! per listener, ALPN `h2`/`http/1.1`), then HTTP as ALPN chose. When an
//! apply changes a listener's TLS (a rotated Secret, a new certificate or
//! validation), a new [`ServerTls`] is stored in the acceptor: the next
//! handshake uses it, open connections keep theirs. A TLS configuration that
//! cannot be built keeps the previous one and is reported.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use portcullis_ir::{Listener, Port, PortProtocol};
use portcullis_tls::{Alpn, ServerTls, SwappableAcceptor};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::conn::{self, Builders, Proto};
use crate::drain::{Drain, DrainWatch};
use crate::handler::{PortCtx, Shared};
use crate::table::{BuildCtx, PortTable, without_routes};

/// A running HTTP or HTTPS port.
pub struct PortHandle {
    /// Shared per-port state (the live table).
    pub ctx: Arc<PortCtx>,
    /// The IR the table was built from.
    pub ir: Port,
    /// HTTPS: the listeners (without routes) the acceptor's configuration was
    /// built from; `None` while none could be built.
    tls_from: Option<Vec<Listener>>,
    drain: Drain,
    accept: JoinHandle<()>,
}

/// The TLS configuration of an HTTPS port's listeners.
fn server_tls(port: &Port) -> Result<ServerTls, String> {
    ServerTls::build(&port.listeners, Alpn::Http).map_err(|e| e.to_string())
}

impl PortHandle {
    /// Bind and start accepting. For HTTPS, also returns the TLS build error
    /// if the certificates could not be loaded: the port is bound but every
    /// handshake fails until an apply brings a usable configuration.
    pub async fn start(
        port: &Port,
        shared: Arc<Shared>,
        retry_bind: bool,
    ) -> io::Result<(Self, Option<String>)> {
        let listener = bind_tcp(port.bind, retry_bind).await?;
        let table = PortTable::build(port, &BuildCtx::of(&shared));
        let (mut tls, mut tls_error, mut tls_from) = (None, None, None);
        if port.protocol == PortProtocol::Https {
            let built = match server_tls(port) {
                Ok(t) => {
                    tls_from = Some(port.listeners.iter().map(without_routes).collect());
                    t
                }
                Err(e) => {
                    tracing::warn!(bind = %port.bind, error = %e, "TLS configuration failed; handshakes are refused");
                    tls_error = Some(e);
                    ServerTls::build::<Listener>(&[], Alpn::Http)
                        .map_err(|e| io::Error::other(e.to_string()))?
                }
            };
            tls = Some(Arc::new(
                SwappableAcceptor::new(built)
                    .with_handshake_timeout(shared.opts.header_read_timeout),
            ));
        }
        let ctx = Arc::new(PortCtx {
            table: ArcSwap::from_pointee(table),
            builders: Builders::new(&shared.opts),
            shared,
            tls,
        });
        let drain = Drain::new();
        let accept = tokio::spawn(accept_loop(listener, ctx.clone(), drain.watch()));
        tracing::info!(bind = %port.bind, protocol = ?port.protocol, "listening");
        Ok((
            PortHandle {
                ctx,
                ir: port.clone(),
                tls_from,
                drain,
                accept,
            },
            tls_error,
        ))
    }

    /// Swap in a new table, and on HTTPS a new TLS configuration when the
    /// listeners' TLS changed; connections and in-flight requests are
    /// untouched. Returns the TLS build error, if any (the previous TLS
    /// configuration stays in use).
    pub fn update(&mut self, port: &Port) -> Option<String> {
        let mut error = None;
        if let Some(acceptor) = &self.ctx.tls {
            let wanted: Vec<Listener> = port.listeners.iter().map(without_routes).collect();
            if self.tls_from.as_ref() != Some(&wanted) {
                match server_tls(port) {
                    Ok(t) => {
                        acceptor.store(t);
                        self.tls_from = Some(wanted);
                        tracing::info!(bind = %port.bind, "TLS configuration updated");
                    }
                    Err(e) => {
                        tracing::warn!(bind = %port.bind, error = %e, "TLS configuration failed; the previous one stays");
                        error = Some(e);
                    }
                }
            }
        }
        if self.ir != *port {
            let table = PortTable::build(port, &BuildCtx::of(&self.ctx.shared));
            self.ctx.table.store(Arc::new(table));
            self.ir = port.clone();
        }
        error
    }

    /// Stop accepting (the socket is closed when this returns) and start
    /// draining connections; returns the drain to wait on.
    pub async fn stop(self, grace: Duration) -> Drain {
        self.drain.start(grace);
        let _ = self.accept.await;
        tracing::info!(bind = %self.ir.bind, "stopped listening");
        self.drain
    }
}

/// Bind a TCP listener. With `retry`, the address was released by a port
/// stopped in the same apply: `AddrInUse` is retried for a short while.
pub(crate) async fn bind_tcp(addr: SocketAddr, retry: bool) -> io::Result<TcpListener> {
    let mut tries = if retry { 20 } else { 0 };
    loop {
        match TcpListener::bind(addr).await {
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && tries > 0 => {
                tries -= 1;
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            r => return r,
        }
    }
}

async fn accept_loop(listener: TcpListener, ctx: Arc<PortCtx>, mut watch: DrainWatch) {
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    match &ctx.tls {
                        None => {
                            tokio::spawn(conn::serve(stream, peer, ctx.clone(), watch.clone(), Proto::Auto, None));
                        }
                        Some(acceptor) => {
                            tokio::spawn(serve_tls(stream, peer, acceptor.clone(), ctx.clone(), watch.clone()));
                        }
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            _ = watch.signaled() => break,
        }
    }
}

/// Handshake (abandoned if the port starts draining), then HTTP as ALPN chose.
async fn serve_tls(
    stream: TcpStream,
    peer: SocketAddr,
    acceptor: Arc<SwappableAcceptor>,
    ctx: Arc<PortCtx>,
    mut watch: DrainWatch,
) {
    let accepted = tokio::select! {
        r = acceptor.accept(stream) => r,
        _ = watch.signaled() => return,
    };
    match accepted {
        Ok((tls, info)) => {
            let proto = if info.is_h2() {
                Proto::Http2
            } else {
                Proto::Http1
            };
            tracing::trace!(%peer, sni = ?info.sni, listener = ?info.listener, client_cert = ?info.client_cert, "TLS handshake done");
            conn::serve(tls, peer, ctx, watch, proto, info.sni.map(Into::into)).await;
        }
        Err(e) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
    }
}
