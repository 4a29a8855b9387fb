//! `/healthz` (always 200), `/readyz` (200 once ready, else 503), `/metrics`
//! (Prometheus, OpenMetrics text) and, on proxies, `/state` (what was applied,
//! [`crate::proxystate::ProxyState`], JSON; 404 where there is none) over HTTP/1.1,
//! served by [`portcullis_obs::control`] (header-read timeout, connection
//! cap, accept backoff). Nothing else is served there: no configuration, no keys.
//! `/readyz` and `/healthz` append a note when there is one (the controller lists
//! the Gateway API kinds it does not watch because they are not installed).

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use tokio::net::TcpListener;
use tokio::sync::watch;

/// Serve health endpoints on `addr`; returns the bound address and the server task.
/// `state` is the `/state` document (empty: 404).
pub async fn serve(
    addr: SocketAddr,
    ready: watch::Receiver<bool>,
    note: watch::Receiver<String>,
    state: watch::Receiver<String>,
) -> Result<(SocketAddr, tokio::task::JoinHandle<()>), crate::KubeModeError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| crate::KubeModeError::io(format!("cannot bind {addr}"), e))?;
    let local = listener
        .local_addr()
        .map_err(|e| crate::KubeModeError::io("local address", e))?;
    // A hardened server: header-read timeout, connection cap, accept backoff.
    let task = tokio::spawn(portcullis_obs::control::serve(
        listener,
        portcullis_obs::control::ControlLimits::default(),
        "health endpoints",
        move |req: http::Request<hyper::body::Incoming>| {
            let ok = match req.uri().path() {
                "/healthz" => Some(true),
                "/readyz" => Some(*ready.borrow()),
                _ => None,
            };
            let note = note.borrow().clone();
            let metrics = req.uri().path() == "/metrics";
            let state = (req.uri().path() == crate::proxystate::STATE_PATH)
                .then(|| state.borrow().clone())
                .filter(|s| !s.is_empty());
            async move {
                if let Some(state) = state {
                    let mut r = http::Response::new(Full::new(Bytes::from(state)));
                    r.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static("application/json"),
                    );
                    return r;
                }
                if metrics {
                    let mut r =
                        http::Response::new(Full::new(Bytes::from(portcullis_obs::render())));
                    r.headers_mut().insert(
                        http::header::CONTENT_TYPE,
                        http::HeaderValue::from_static(portcullis_obs::CONTENT_TYPE),
                    );
                    return r;
                }
                let (code, text) = match ok {
                    Some(true) => (200, "ok\n"),
                    Some(false) => (503, "not ready\n"),
                    None => (404, "not found\n"),
                };
                let text = if ok.is_some() {
                    format!("{text}{note}")
                } else {
                    text.to_string()
                };
                let mut r = http::Response::new(Full::new(Bytes::from(text)));
                *r.status_mut() = http::StatusCode::from_u16(code).expect("valid");
                r
            }
        },
    ));
    Ok((local, task))
}
