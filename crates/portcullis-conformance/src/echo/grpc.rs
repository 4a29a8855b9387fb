//! Seam for the gRPC echo (`GRPC_ECHO_SERVER`, upstream `gateway_api_conformance.echo_basic.grpcecho.GrpcEcho`).
//!
//! The real service (Echo / EchoTwo / EchoThree returning the request metadata and
//! pod context) is not implemented yet. Until it is, a gRPC-mode echo process
//! listens on `HTTP_PORT` with HTTP/2 (h2c) and answers every call with the gRPC
//! status `UNIMPLEMENTED` (12), so that endpoints are reachable and clients get a
//! well-formed gRPC error rather than a connection failure.

use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderValue, Response};
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use super::{EchoConfig, EchoError};

/// Serves the placeholder gRPC endpoint until the listener fails.
pub async fn run(config: EchoConfig) -> Result<(), EchoError> {
    let addr = SocketAddr::new(config.bind, config.http_port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| EchoError::Bind { addr, source })?;
    super::log!(
        "Starting gRPC placeholder server, listening on port {}",
        config.http_port
    );
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            let svc = service_fn(|_req| async {
                let mut resp = Response::new(Full::new(Bytes::new()));
                let h = resp.headers_mut();
                h.insert("content-type", HeaderValue::from_static("application/grpc"));
                h.insert("grpc-status", HeaderValue::from_static("12"));
                h.insert(
                    "grpc-message",
                    HeaderValue::from_static("portcullis-echo: gRPC echo not implemented yet"),
                );
                Ok::<_, std::convert::Infallible>(resp)
            });
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
