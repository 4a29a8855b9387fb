//! Pooled upstream clients: HTTP/1.1 (with upgrades) and HTTP/2 prior knowledge (h2c).

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Client, Error as ClientError, ResponseFuture};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
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
/// (`portcullis_upstream_connections_total{client="hyper"}`).
#[derive(Clone, Debug)]
pub struct CountingConnector(HttpConnector);

type ConnectFuture =
    Pin<Box<dyn Future<Output = Result<TokioIo<TcpStream>, crate::body::BoxError>> + Send>>;

impl tower_service::Service<http::Uri> for CountingConnector {
    type Response = TokioIo<TcpStream>;
    type Error = crate::body::BoxError;
    type Future = ConnectFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let connecting = self.0.call(uri);
        Box::pin(async move {
            let io = connecting.await?;
            portcullis_obs::metrics().upstream_connection("hyper").inc();
            Ok(io)
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
        let h1 = base().build(conn.clone());
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
