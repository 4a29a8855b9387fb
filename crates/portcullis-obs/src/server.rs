//! The separate metrics listener (`--metrics ADDR`): `/metrics` only.

use std::io;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// The `/metrics` response (any other path: 404).
pub fn respond<B>(req: &Request<B>) -> Response<Full<Bytes>> {
    let mut r = if req.uri().path() == "/metrics" {
        let mut r = Response::new(Full::new(Bytes::from(crate::render())));
        r.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            hyper::header::HeaderValue::from_static(crate::CONTENT_TYPE),
        );
        r
    } else {
        Response::new(Full::new(Bytes::from_static(b"not found; try /metrics\n")))
    };
    if req.uri().path() != "/metrics" {
        *r.status_mut() = StatusCode::NOT_FOUND;
    }
    r
}

/// Bind `addr` (fails fast if taken) and serve `/metrics` over HTTP/1.1 in
/// the background, on the hardened control server ([`crate::control`]:
/// header-read timeout, bounded connection life and count, accept backoff);
/// returns the bound address and the server task.
pub async fn serve(addr: SocketAddr) -> io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let task = tokio::spawn(crate::control::serve(
        listener,
        crate::control::ControlLimits::default(),
        "metrics listener",
        |req: Request<hyper::body::Incoming>| async move { respond(&req) },
    ));
    Ok((local, task))
}
