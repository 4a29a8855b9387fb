//! A bound HTTP or HTTPS port: its accept loop, live table, TLS acceptor and drain.
//!
//! HTTPS: every accepted connection runs the TLS handshake on the port's
//! acceptor (certificate by SNI, client-certificate validation per listener,
//! ALPN `h2`/`http/1.1`), then HTTP as ALPN chose; see [`crate::frontend_tls`]
//! for rotation.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use portcullis_ir::{Port, PortProtocol};
use portcullis_l4::accept::AcceptBackoff;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::conn::{self, Builders, Proto};
use crate::drain::{Drain, DrainWatch};
use crate::frontend_tls::{self, FrontendTls};
use crate::handler::{PortCtx, Shared};
use crate::limits::ConnCap;
use crate::table::{BuildCtx, PortTable};
use crate::workers::bind_reuseport;

/// A running HTTP or HTTPS port.
pub struct PortHandle {
    /// Shared per-port state (the live table).
    pub ctx: Arc<PortCtx>,
    /// The IR the table was built from.
    pub ir: Port,
    /// HTTPS: the frontend TLS.
    tls: Option<FrontendTls>,
    drain: Drain,
    accept: Vec<JoinHandle<()>>,
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
        let workers = shared.workers.handles().to_vec();
        let listeners = bind_reuseport(port.bind, workers.len().max(1), retry_bind).await?;
        let table = PortTable::build(port, &BuildCtx::of(&shared));
        let shared_max = shared.opts.max_connections_per_port;
        let opts = crate::client_traffic::port_options(&shared.opts, port.client.as_ref());
        let (tls, tls_error) = if port.protocol == PortProtocol::Https {
            let (t, e) = FrontendTls::new(port, opts.header_read_timeout);
            (Some(t), e)
        } else {
            (None, None)
        };
        let ctx = Arc::new(PortCtx {
            table: ArcSwap::from_pointee(table),
            builders: Builders::new(&opts, port.client.as_ref()),
            shared,
            limit: port
                .client
                .as_ref()
                .and_then(|c| c.connection_limit)
                .map(|n| (usize::try_from(n).unwrap_or(usize::MAX), Arc::default())),
            client: port.client.clone(),
            opts,
            tls: tls.as_ref().map(|t| t.acceptor.clone()),
            conns: ConnCap::new("HTTP port", shared_max),
            stats: crate::l4::port_stats(port),
        });
        let drain = Drain::new();
        // One accept loop per worker, each on its own socket; without workers,
        // one on the caller's runtime.
        let mut accept = Vec::with_capacity(listeners.len());
        for (i, l) in listeners.into_iter().enumerate() {
            let (ctx, watch) = (ctx.clone(), drain.watch());
            let run = async move {
                match TcpListener::from_std(l) {
                    Ok(l) => accept_loop(l, ctx, watch).await,
                    Err(e) => tracing::error!(error = %e, "cannot register listener"),
                }
            };
            accept.push(match workers.get(i) {
                Some(h) => h.spawn(run),
                None => tokio::spawn(run),
            });
        }
        tracing::info!(bind = %port.bind, protocol = ?port.protocol, "listening");
        Ok((
            PortHandle {
                ctx,
                ir: port.clone(),
                tls,
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
        let error = self.tls.as_mut().and_then(|t| t.update(port));
        if !self.ir.same_as(port) {
            // What was compiled for rules that did not change is reused.
            let previous = self.ctx.table.load_full();
            let table =
                PortTable::build_reusing(port, &BuildCtx::of(&self.ctx.shared), Some(&previous));
            self.ctx.table.store(Arc::new(table));
            self.ir = port.clone();
        }
        error
    }

    /// Stop accepting (the socket is closed when this returns) and start
    /// draining connections; returns the drain to wait on.
    pub async fn stop(self, grace: Duration) -> Drain {
        self.drain.start(grace);
        for a in self.accept {
            let _ = a.await;
        }
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

/// Holds a place under a ClientTrafficPolicy connection limit.
struct Limited(Option<Arc<AtomicUsize>>);

impl Drop for Limited {
    fn drop(&mut self) {
        if let Some(n) = &self.0 {
            n.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// A place under the port's connection limit, `None` when it is full.
fn over_limit(ctx: &PortCtx) -> Option<Limited> {
    let Some((max, open)) = &ctx.limit else {
        return Some(Limited(None));
    };
    if open.fetch_add(1, Ordering::Relaxed) >= *max {
        open.fetch_sub(1, Ordering::Relaxed);
        tracing::debug!(limit = max, "connection limit reached; connection closed");
        return None;
    }
    Some(Limited(Some(open.clone())))
}

/// One connection: the PROXY protocol header first when the port's policy
/// asks for it (within the header-read timeout; a connection without a
/// valid one is closed), then TLS and HTTP.
async fn serve_one(
    mut stream: TcpStream,
    mut peer: SocketAddr,
    ctx: Arc<PortCtx>,
    watch: DrainWatch,
) {
    if ctx.client.as_ref().is_some_and(|c| c.proxy_protocol) {
        let read = crate::proxy_protocol::read_header(&mut stream);
        match tokio::time::timeout(ctx.opts.header_read_timeout, read).await {
            Ok(Ok(Some(source))) => peer = source,
            Ok(Ok(None)) => {}
            Ok(Err(e)) => {
                tracing::debug!(%peer, error = %e, "bad PROXY protocol header; connection closed");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "no PROXY protocol header in time; connection closed");
                return;
            }
        }
    }
    match &ctx.tls {
        None => conn::serve(stream, peer, ctx.clone(), watch, Proto::Auto, None).await,
        Some(acceptor) => {
            frontend_tls::serve(stream, peer, acceptor.clone(), ctx.clone(), watch).await
        }
    }
}

async fn accept_loop(listener: TcpListener, ctx: Arc<PortCtx>, mut watch: DrainWatch) {
    let mut backoff = AcceptBackoff::new("HTTP port");
    loop {
        // A permit first: at the cap, new connections wait in the backlog.
        let permit = tokio::select! {
            p = ctx.conns.acquire() => p,
            _ = watch.signaled() => break,
        };
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    backoff.accepted();
                    // ClientTrafficPolicy connectionLimit: past it, closed at once.
                    let Some(limited) = over_limit(&ctx) else {
                        drop(permit);
                        drop(stream);
                        continue;
                    };
                    let permit = ctx.conns.admit(permit);
                    let _ = stream.set_nodelay(true);
                    // Counts as an open connection until its task ends.
                    let active = ctx.stats.accepted();
                    let (ctx, watch) = (ctx.clone(), watch.clone());
                    tokio::spawn(async move {
                        let _active = active;
                        let _limited = limited;
                        serve_one(stream, peer, ctx, watch).await;
                        drop(permit);
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off (logged, rate-limited).
                    drop(permit);
                    let wait = backoff.failed(&e);
                    if !wait.is_zero() {
                        tokio::select! {
                            _ = tokio::time::sleep(wait) => {}
                            _ = watch.signaled() => break,
                        }
                    }
                }
            },
            _ = watch.signaled() => break,
        }
    }
}
