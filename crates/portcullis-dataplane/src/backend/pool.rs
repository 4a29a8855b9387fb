//! Pooled upstream clients: HTTP/1.1 (with upgrades) and HTTP/2 prior knowledge (h2c).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::client::legacy::{Client, Error as ClientError, ResponseFuture};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use crate::body::ProxyBody;

/// The shared upstream clients; connections are pooled per endpoint and kept
/// across configuration changes.
#[derive(Clone, Debug)]
pub struct Clients {
    h1: Client<CountingConnector, ProxyBody>,
    h2: Client<CountingConnector, ProxyBody>,
}

/// hyper-util's connector, counting the connections it opens
/// (`portcullis_upstream_connections_total{client="hyper"}`) and those open
/// (`portcullis_upstream_connections_active{client="hyper"}`: each socket
/// carries its guard, so the count falls when hyper drops the connection,
/// pooled, upgraded or failed).
#[derive(Clone, Debug)]
pub struct CountingConnector(HttpConnector);

type ConnectFuture =
    Pin<Box<dyn Future<Output = Result<TokioIo<CountedTcp>, crate::body::BoxError>> + Send>>;

/// An upstream socket holding `G` until it closes: the connection gauges
/// (`portcullis_upstream_connections_active`), and for a backend with a
/// connection policy its `maxConnections` slot ([`super::hyper_pool`]).
#[derive(Debug)]
pub struct Holding<T, G> {
    io: T,
    _hold: G,
}

impl<T, G> Holding<T, G> {
    /// `io`, holding `hold` until dropped.
    pub fn new(io: T, hold: G) -> Self {
        Holding { io, _hold: hold }
    }
}

/// An upstream socket counted as open until dropped.
pub type CountedTcp = Holding<TcpStream, portcullis_obs::metrics::ActiveGuard>;

impl<G> Connection for Holding<TcpStream, G> {
    fn connected(&self) -> Connected {
        self.io.connected()
    }
}

impl<T: AsyncRead + Unpin, G: Unpin> AsyncRead for Holding<T, G> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin, G: Unpin> AsyncWrite for Holding<T, G> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl tower_service::Service<http::Uri> for CountingConnector {
    type Response = TokioIo<CountedTcp>;
    type Error = crate::body::BoxError;
    type Future = ConnectFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let connecting = self.0.call(uri);
        Box::pin(async move {
            let io = connecting.await?.into_inner();
            Ok(TokioIo::new(Holding::new(
                io,
                portcullis_obs::metrics().upstream_opened("hyper"),
            )))
        })
    }
}

impl Clients {
    /// Build both clients.
    pub fn new(connect_timeout: Duration, idle_timeout: Duration) -> Self {
        let mut conn = HttpConnector::new();
        conn.set_nodelay(true);
        conn.set_connect_timeout(Some(connect_timeout));
        conn.enforce_http(true);
        let base = || {
            let mut b = Client::builder(TokioExecutor::new());
            b.pool_timer(TokioTimer::new())
                .pool_idle_timeout(idle_timeout)
                .set_host(false);
            b
        };
        let conn = CountingConnector(conn);
        // Header case (`http1.preserveHeaderCase`) is kept when the request
        // carries hyper's record of it; requests without it are unchanged.
        let h1 = base().http1_preserve_header_case(true).build(conn.clone());
        let h2 = base().http2_only(true).timer(TokioTimer::new()).build(conn);
        Clients { h1, h2 }
    }

    /// Start sending a request (absolute URI naming the endpoint); the future owns what it needs.
    pub fn request(&self, h2: bool, req: Request<ProxyBody>) -> ResponseFuture {
        if h2 {
            self.h2.request(req)
        } else {
            self.h1.request(req)
        }
    }

    /// Send a request (absolute URI naming the endpoint).
    pub async fn send(
        &self,
        h2: bool,
        req: Request<ProxyBody>,
    ) -> Result<Response<Incoming>, ClientError> {
        if h2 {
            self.h2.request(req).await
        } else {
            self.h1.request(req).await
        }
    }
}
