//! Pooled upstream clients: HTTP/1.1 (with upgrades) and HTTP/2 prior knowledge (h2c).

use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Client, Error as ClientError, ResponseFuture};
use hyper_util::rt::{TokioExecutor, TokioTimer};

use crate::body::ProxyBody;

/// The shared upstream clients; connections are pooled per endpoint and kept
/// across configuration changes.
#[derive(Clone, Debug)]
pub struct Clients {
    h1: Client<HttpConnector, ProxyBody>,
    h2: Client<HttpConnector, ProxyBody>,
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
