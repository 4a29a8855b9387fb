//! A bound port: its accept loop, live table and drain.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use portcullis_ir::Port;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::conn;
use crate::drain::{Drain, DrainWatch};
use crate::handler::{PortCtx, Shared};
use crate::table::PortTable;

/// A running HTTP port.
pub struct PortHandle {
    /// Shared per-port state (the live table).
    pub ctx: Arc<PortCtx>,
    /// The IR the table was built from.
    pub ir: Port,
    drain: Drain,
    accept: JoinHandle<()>,
}

impl PortHandle {
    /// Bind and start accepting.
    pub async fn start(port: &Port, shared: Arc<Shared>) -> io::Result<Self> {
        let listener = TcpListener::bind(port.bind).await?;
        let table = PortTable::build(port, &shared.tokens);
        let builder = conn::builder(&shared.opts);
        let ctx = Arc::new(PortCtx {
            table: ArcSwap::from_pointee(table),
            shared,
            builder,
        });
        let drain = Drain::new();
        let accept = tokio::spawn(accept_loop(listener, ctx.clone(), drain.watch()));
        tracing::info!(bind = %port.bind, "listening");
        Ok(PortHandle {
            ctx,
            ir: port.clone(),
            drain,
            accept,
        })
    }

    /// Swap in a new table; connections and in-flight requests are untouched.
    pub fn update(&mut self, port: &Port) {
        if self.ir != *port {
            self.ctx
                .table
                .store(Arc::new(PortTable::build(port, &self.ctx.shared.tokens)));
            self.ir = port.clone();
        }
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

async fn accept_loop(listener: TcpListener, ctx: Arc<PortCtx>, mut watch: DrainWatch) {
    loop {
        tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, peer)) => {
                    tokio::spawn(conn::serve(stream, peer, ctx.clone(), watch.clone()));
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
