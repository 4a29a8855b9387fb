//! `/healthz` (always 200), `/readyz` (200 once ready, else 503) and
//! `/metrics` (Prometheus, OpenMetrics text) over HTTP/1.1.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Serve health endpoints on `addr`; returns the bound address and the server task.
pub async fn serve(
    addr: SocketAddr,
    ready: watch::Receiver<bool>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), crate::KubeModeError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| crate::KubeModeError::io(format!("cannot bind {addr}"), e))?;
    let local = listener
        .local_addr()
        .map_err(|e| crate::KubeModeError::io("local address", e))?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((sock, _)) = listener.accept().await else {
                continue;
            };
            let ready = ready.clone();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let ok = match req.uri().path() {
                            "/healthz" => Some(true),
                            "/readyz" => Some(*ready.borrow()),
                            _ => None,
                        };
                        let metrics = req.uri().path() == "/metrics";
                        async move {
                            if metrics {
                                let mut r = http::Response::new(Full::new(Bytes::from(
                                    portcullis_obs::render(),
                                )));
                                r.headers_mut().insert(
                                    http::header::CONTENT_TYPE,
                                    http::HeaderValue::from_static(portcullis_obs::CONTENT_TYPE),
                                );
                                return Ok::<_, Infallible>(r);
                            }
                            let (code, text) = match ok {
                                Some(true) => (200, "ok\n"),
                                Some(false) => (503, "not ready\n"),
                                None => (404, "not found\n"),
                            };
                            let mut r =
                                http::Response::new(Full::new(Bytes::from_static(text.as_bytes())));
                            *r.status_mut() = http::StatusCode::from_u16(code).expect("valid");
                            Ok::<_, Infallible>(r)
                        }
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(sock), svc)
                    .await;
            });
        }
    });
    Ok((local, task))
}
