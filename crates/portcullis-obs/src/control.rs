//! A small, hardened HTTP/1.1 server for control endpoints (the admin API of
//! `portcullis run`, `/healthz` and `/readyz` of the Kubernetes-mode
//! processes): one request per connection, a header-read timeout, a cap on
//! open connections (past it, new ones wait in the accept backlog) and a
//! bound on each connection's life, so a slow or idle client cannot hold it,
//! and an accept loop that backs off instead of spinning when out of file
//! descriptors.

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::accept::AcceptBackoff;
use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::conncap::ConnCap;

/// Limits of a control server.
#[derive(Clone, Copy, Debug)]
pub struct ControlLimits {
    /// Time allowed for a request head to arrive.
    pub header_read_timeout: Duration,
    /// Longest life of one connection (request and response).
    pub connection_timeout: Duration,
    /// Most connections open at once.
    pub max_connections: usize,
}

impl Default for ControlLimits {
    fn default() -> Self {
        ControlLimits {
            header_read_timeout: Duration::from_secs(5),
            connection_timeout: Duration::from_secs(30),
            max_connections: 32,
        }
    }
}

/// Serve `handler` on `listener` until the returned future is dropped;
/// `what` names the server in the log.
pub async fn serve<F, Fut>(
    listener: TcpListener,
    limits: ControlLimits,
    what: &'static str,
    handler: F,
) where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let cap = Arc::new(ConnCap::new(what, limits.max_connections));
    let mut backoff = AcceptBackoff::new(what);
    loop {
        let permit = cap.acquire().await;
        let stream = match listener.accept().await {
            Ok((s, _)) => {
                backoff.accepted();
                s
            }
            Err(e) => {
                drop(permit);
                let wait = backoff.failed(&e);
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                continue;
            }
        };
        let handler = handler.clone();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |req| {
                let h = handler.clone();
                async move { Ok::<_, Infallible>(h(req).await) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_read_timeout)
                .keep_alive(false)
                .max_buf_size(16 * 1024)
                .serve_connection(TokioIo::new(stream), svc);
            let _ = tokio::time::timeout(limits.connection_timeout, conn).await;
            drop(permit);
        });
    }
}
