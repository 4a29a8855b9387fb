//! The admin API: `/healthz`, `/readyz`, `/status`, `/config`, `/metrics`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use portcullis_ir::Config;
use portcullis_store::Snapshot;
use portcullis_store::status::Statuses;
use tokio::net::TcpListener;

use crate::report::status_document;

/// What the admin API shows; replaced atomically on every applied
/// configuration. Documents are rendered when asked for, not on every reload.
pub struct AdminView {
    /// The snapshot translated.
    pub snapshot: Arc<Snapshot>,
    /// Its statuses (see [`crate::report::status_document`]).
    pub statuses: Arc<Statuses>,
    /// The IR applied.
    pub config: Arc<Config>,
}

impl AdminView {
    /// The status document as JSON.
    pub fn status_json(&self) -> Bytes {
        let doc = status_document(&self.snapshot, &self.statuses);
        Bytes::from(serde_json::to_vec(&doc).unwrap_or_default())
    }

    /// The IR as JSON.
    pub fn config_json(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(&*self.config).unwrap_or_default())
    }
}

/// Shared admin state; `None` until the first configuration is applied.
pub type AdminState = Arc<ArcSwapOption<AdminView>>;

fn respond(code: StatusCode, ctype: &str, body: Bytes) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .header("content-type", ctype)
        .body(Full::new(body))
        .expect("valid response")
}

async fn handle(
    state: AdminState,
    req: Request<hyper::body::Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let view = state.load_full();
    Ok(match req.uri().path() {
        "/healthz" => respond(StatusCode::OK, "text/plain", Bytes::from_static(b"ok\n")),
        "/metrics" => respond(
            StatusCode::OK,
            portcullis_obs::CONTENT_TYPE,
            Bytes::from(portcullis_obs::render()),
        ),
        "/readyz" => match view {
            Some(_) => respond(StatusCode::OK, "text/plain", Bytes::from_static(b"ready\n")),
            None => respond(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                Bytes::from_static(b"first configuration not applied yet\n"),
            ),
        },
        "/status" => match view {
            Some(v) => respond(StatusCode::OK, "application/json", v.status_json()),
            None => respond(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                Bytes::from_static(b"not ready\n"),
            ),
        },
        "/config" => match view {
            Some(v) => respond(StatusCode::OK, "application/json", v.config_json()),
            None => respond(
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain",
                Bytes::from_static(b"not ready\n"),
            ),
        },
        _ => respond(
            StatusCode::NOT_FOUND,
            "text/plain",
            Bytes::from_static(b"not found; try /healthz /readyz /status /config /metrics\n"),
        ),
    })
}

/// Bind the admin listener (fails fast if the address is taken) and serve it in the background.
pub async fn serve(addr: SocketAddr, state: AdminState) -> anyhow::Result<()> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| anyhow::anyhow!("admin API: cannot bind {addr}: {e}"))?;
    tracing::info!(%addr, "admin API listening");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let state = state.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req| handle(state.clone(), req));
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(())
}
