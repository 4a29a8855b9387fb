//! The separate metrics listener (`--metrics ADDR`): `/metrics` only.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
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
/// the background; returns the bound address and the server task.
pub async fn serve(addr: SocketAddr) -> io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                tokio::time::sleep(std::time::Duration::from_millis(20)).await;
                continue;
            };
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                        Ok::<_, Infallible>(respond(&req))
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok((local, task))
}
