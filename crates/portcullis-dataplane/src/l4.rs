//! Layer-4 ports (`Tls`, `Tcp`, `Udp`), served by [`portcullis_l4::L4Port`].
//!
//! - `Tls` (passthrough by SNI, terminate to TCP, both mixed on one port) and
//!   `Tcp` ports: a bound `TcpListener` and [`L4Port::serve_tcp`].
//! - `Udp` ports: a bound `UdpSocket` and [`L4Port::serve_udp`].
//! - An apply that keeps the port swaps its IR ([`L4Port::swap`]): new
//!   connections and sessions use the new routes, open ones keep their
//!   backend. A TLS-terminate port rebuilds its certificates for the next
//!   handshake when its IR changes.
//! - Drain: the serve functions get a future that resolves, when the port's
//!   [`Drain`] starts, to the force-close deadline. Accepting stops at once;
//!   open connections and UDP sessions may finish until the deadline. The
//!   serving task holds the drain's watch, so [`Drain::closed`] resolves
//!   when every connection has ended.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use portcullis_ir::{Port, PortProtocol};
use portcullis_l4::{L4Options, L4Port};
use tokio::net::UdpSocket;
use tokio::sync::oneshot;

use crate::drain::Drain;
use crate::listener::bind_tcp;

/// A running layer-4 port.
pub struct L4Handle {
    port: L4Port,
    /// The IR being served.
    pub ir: Port,
    drain: Drain,
    /// Fires when the serving task stops accepting.
    stopping: oneshot::Receiver<()>,
}

impl L4Handle {
    /// Bind (TCP for `Tls`/`Tcp`, UDP for `Udp`) and start serving. With
    /// `retry_bind`, `AddrInUse` is retried briefly (the address was
    /// released by a port stopped in the same apply).
    pub async fn start(port: &Port, opts: &L4Options, retry_bind: bool) -> io::Result<Self> {
        let l4 = L4Port::new(Arc::new(port.clone())).with_options(opts.clone());
        let drain = Drain::new();
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
        match port.protocol {
            PortProtocol::Udp => {
                let socket = bind_udp(bind, retry_bind).await?;
                let served = l4.clone();
                tokio::spawn(async move {
                    if let Err(e) = served.serve_udp(socket, signal).await {
                        tracing::warn!(%bind, error = %e, "UDP port failed");
                    }
                });
            }
            _ => {
                let listener = bind_tcp(bind, retry_bind).await?;
                let served = l4.clone();
                tokio::spawn(async move {
                    if let Err(e) = served.serve_tcp(listener, signal).await {
                        tracing::warn!(%bind, error = %e, "layer-4 port failed");
                    }
                });
            }
        }
        tracing::info!(%bind, protocol = ?port.protocol, "listening");
        Ok(L4Handle {
            port: l4,
            ir: port.clone(),
            drain,
            stopping,
        })
    }

    /// Whether this handle can serve `port` by swapping (same socket type).
    pub fn can_serve(&self, port: &Port) -> bool {
        let tcp = |p: PortProtocol| matches!(p, PortProtocol::Tls | PortProtocol::Tcp);
        self.ir.protocol == port.protocol || (tcp(self.ir.protocol) && tcp(port.protocol))
    }

    /// Serve `port` for new connections and sessions.
    pub fn update(&mut self, port: &Port) {
        if self.ir != *port {
            self.port.swap(Arc::new(port.clone()));
            self.ir = port.clone();
        }
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
