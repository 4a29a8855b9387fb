//! The admin API: `/healthz`, `/readyz`, `/status`, `/config`, `/metrics`,
//! `/explain` (see [`crate::explain`]) and the dashboard `/ui` (see [`crate::ui`]).
//!
//! - `/config` and `/status` never carry key material: every private key in
//!   the IR (`key_pem`) and any string holding a PEM private key is replaced
//!   by [`REDACTED`] before it is served.
//! - With a bearer token (`--admin-token-file`), every document (`/status`,
//!   `/config`, `/metrics`, `/explain`, the dashboard's `/ui/api/state`)
//!   answers 401 to a request without `Authorization: Bearer <token>`;
//!   `/healthz` and `/readyz` stay open for probes, and so do the
//!   dashboard's static assets (`/ui`, `/ui/app.js`, `/ui/style.css`: no
//!   data, embedded in the binary), so that the page can load and send the
//!   token it is given (`/ui#token=...`, or a prompt) with its requests. The token is required
//!   when the admin address is not a loopback address: [`check_binding`]
//!   refuses to start otherwise, and warns when a token protects a
//!   non-loopback address.
//! - The server is [`portcullis_dataplane::control`]: one request per
//!   connection, a header-read timeout, a connection cap and an accept loop
//!   that backs off on errors.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwapOption;
use bytes::Bytes;
use http_body_util::Full;
use hyper::{Request, Response, StatusCode, header};
use portcullis_dataplane::control::{self, ControlLimits};
use portcullis_ir::Config;
use portcullis_store::Snapshot;
use portcullis_store::status::Statuses;
use serde_json::Value;
use tokio::net::TcpListener;

use crate::report::status_document;

/// What replaces key material in admin documents.
pub const REDACTED: &str = "[redacted]";

/// What the admin API shows; replaced atomically on every applied
/// configuration. Documents are rendered when asked for, not on every reload.
#[derive(Clone)]
pub struct AdminView {
    /// The snapshot translated.
    pub snapshot: Arc<Snapshot>,
    /// Its statuses (see [`crate::report::status_document`]).
    pub statuses: Arc<Statuses>,
    /// The IR applied.
    pub config: Arc<Config>,
    /// Every problem of the files, with file:line (as `portcullis validate`).
    pub problems: Arc<Vec<crate::validate::Problem>>,
    /// Kubernetes mode (`portcullis controller --dashboard`): no files, the
    /// IR holds every Gateway on its internal address.
    pub kubernetes: bool,
    /// Where the traffic is counted when it is not in this process: the
    /// `/metrics` addresses of the connected proxies (Kubernetes mode).
    pub proxy_metrics: Option<ProxyMetrics>,
}

/// The `/metrics` addresses of the proxies serving the traffic, now.
pub type ProxyMetrics = Arc<dyn Fn() -> Vec<SocketAddr> + Send + Sync>;

impl AdminView {
    /// The status document as JSON (key material redacted).
    pub fn status_json(&self) -> Bytes {
        let mut doc = status_document(&self.snapshot, &self.statuses);
        redact(&mut doc);
        Bytes::from(serde_json::to_vec(&doc).unwrap_or_default())
    }

    /// The IR as JSON, private keys redacted.
    pub fn config_json(&self) -> Bytes {
        let mut doc = serde_json::to_value(&*self.config).unwrap_or_default();
        redact(&mut doc);
        Bytes::from(serde_json::to_vec(&doc).unwrap_or_default())
    }
}

/// Replace key material in a JSON document: the value of every `key_pem`
/// field, and every string that holds a PEM private key.
pub fn redact(v: &mut Value) {
    match v {
        Value::String(s) if s.contains("PRIVATE KEY-----") => *s = REDACTED.into(),
        Value::Array(a) => a.iter_mut().for_each(redact),
        Value::Object(o) => {
            for (k, v) in o.iter_mut() {
                if k == "key_pem" && !v.is_null() {
                    *v = Value::String(REDACTED.into());
                } else {
                    redact(v);
                }
            }
        }
        _ => {}
    }
}

/// Shared admin state; `None` until the first configuration is applied.
pub type AdminState = Arc<ArcSwapOption<AdminView>>;

/// Why the admin API cannot start.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// A non-loopback address without a token.
    #[error(
        "refusing to serve the admin API on {0} without a token: it is not a loopback address, \
         and /status, /config and /ui describe the whole configuration; give --admin-token-file \
         (a file holding a bearer token) or bind it to 127.0.0.1"
    )]
    TokenRequired(SocketAddr),
    /// The token file cannot be read or is empty.
    #[error("admin token file {path}: {reason}")]
    TokenFile {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The address cannot be bound.
    #[error("admin API: cannot bind {0}: {1}")]
    Bind(SocketAddr, std::io::Error),
}

/// Read a bearer token: the file's content without surrounding whitespace.
pub fn read_token(path: &Path) -> Result<String, AdminError> {
    let err = |reason: String| AdminError::TokenFile {
        path: path.display().to_string(),
        reason,
    };
    let raw = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    let token = raw.trim();
    if token.is_empty() {
        return Err(err("empty".into()));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(err("a token is one word of printable ASCII".into()));
    }
    Ok(token.to_string())
}

/// Refuse a non-loopback address without a token; warn about one with a token.
pub fn check_binding(addr: SocketAddr, token: Option<&str>) -> Result<(), AdminError> {
    if addr.ip().is_loopback() {
        return Ok(());
    }
    if token.is_none() {
        return Err(AdminError::TokenRequired(addr));
    }
    tracing::warn!(
        %addr,
        "the admin API is reachable from other hosts (not a loopback address); \
         /status, /config, /explain and the dashboard's data require the bearer token"
    );
    Ok(())
}

fn respond(code: StatusCode, ctype: &str, body: Bytes) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .header("content-type", ctype)
        .body(Full::new(body))
        .expect("valid response")
}

/// Compare without stopping at the first difference.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn authorized<B>(req: &Request<B>, token: Option<&str>) -> bool {
    let Some(token) = token else { return true };
    req.headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
        .is_some_and(|given| same(given.trim_ascii(), token.as_bytes()))
}

/// Paths served without the token: probes and the dashboard's static assets.
fn open_path(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz") || crate::ui::asset(path).is_some()
}

/// `extra`: the proxies' metrics exposition for the dashboard's traffic
/// numbers (Kubernetes mode), fetched by [`serve`] before the call.
fn handle<B>(
    state: &AdminState,
    token: Option<&str>,
    req: Request<B>,
    extra: &str,
) -> Response<Full<Bytes>> {
    let text =
        |code, s: &'static str| respond(code, "text/plain", Bytes::from_static(s.as_bytes()));
    let path = req.uri().path();
    if !open_path(path) && !authorized(&req, token) {
        let mut r = text(StatusCode::UNAUTHORIZED, "unauthorized\n");
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return r;
    }
    if let Some((ctype, body)) = crate::ui::asset(path) {
        let mut r = respond(StatusCode::OK, ctype, Bytes::from_static(body.as_bytes()));
        let h = r.headers_mut();
        h.insert(
            header::CACHE_CONTROL,
            header::HeaderValue::from_static("no-store"),
        );
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            header::HeaderValue::from_static(crate::ui::CSP),
        );
        h.insert(
            header::X_CONTENT_TYPE_OPTIONS,
            header::HeaderValue::from_static("nosniff"),
        );
        return r;
    }
    let view = state.load_full();
    match (path, view) {
        ("/healthz", _) => text(StatusCode::OK, "ok\n"),
        ("/metrics", _) => respond(
            StatusCode::OK,
            portcullis_obs::CONTENT_TYPE,
            Bytes::from(portcullis_obs::render()),
        ),
        ("/readyz", Some(_)) => text(StatusCode::OK, "ready\n"),
        ("/readyz", None) => text(
            StatusCode::SERVICE_UNAVAILABLE,
            "first configuration not applied yet\n",
        ),
        ("/status", Some(v)) => respond(StatusCode::OK, "application/json", v.status_json()),
        ("/config", Some(v)) => respond(StatusCode::OK, "application/json", v.config_json()),
        ("/explain", Some(v)) => explain(&v, req.uri().query().unwrap_or("")),
        (crate::ui::STATE_PATH, v) => respond(
            StatusCode::OK,
            "application/json",
            crate::ui::state_json(v.as_deref(), extra),
        ),
        ("/status" | "/config" | "/explain", None) => {
            text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "not found; try /healthz /readyz /status /config /metrics /explain /ui\n",
        ),
    }
}

/// `/explain?request=GET%20https://host/path&header=name:%20value&gateway=ns/name&format=text`:
/// [`crate::explain::explain`] on the configuration being served; JSON by
/// default, the CLI's text with `format=text`; 400 for a bad request.
fn explain(view: &AdminView, query: &str) -> Response<Full<Bytes>> {
    let (mut request, mut headers, mut gateway, mut text) = (None, vec![], None, false);
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let v = v.replace('+', " ");
        let v = portcullis_route::matchers::percent_decode(&v).into_owned();
        match k {
            "request" => request = Some(v),
            "header" => headers.push(v),
            "gateway" if !v.is_empty() => gateway = Some(v),
            "format" => text = v == "text",
            _ => {}
        }
    }
    let parsed = crate::explain::Request::parse(request.as_deref().unwrap_or(""), &headers);
    let req = match parsed {
        Ok(r) => r,
        Err(e) => {
            return respond(
                StatusCode::BAD_REQUEST,
                "text/plain",
                Bytes::from(format!("{e}\n")),
            );
        }
    };
    let ex = crate::explain::explain(&view.config, &req, gateway.as_deref());
    if text {
        return respond(
            StatusCode::OK,
            "text/plain; charset=utf-8",
            Bytes::from(crate::explain::text::render(&ex)),
        );
    }
    respond(
        StatusCode::OK,
        "application/json",
        Bytes::from(serde_json::to_vec(&ex).unwrap_or_default()),
    )
}

/// Check the binding, bind the admin listener (fails fast if the address is
/// taken) and serve it in the background; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    token: Option<String>,
    state: AdminState,
) -> Result<SocketAddr, AdminError> {
    check_binding(addr, token.as_deref())?;
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| AdminError::Bind(addr, e))?;
    let local = listener
        .local_addr()
        .map_err(|e| AdminError::Bind(addr, e))?;
    tracing::info!(addr = %local, token = token.is_some(), "admin API listening");
    let token: Option<Arc<str>> = token.map(Into::into);
    tokio::spawn(control::serve(
        listener,
        ControlLimits::default(),
        "admin API",
        move |req| {
            let (state, token) = (state.clone(), token.clone());
            async move {
                // The dashboard's traffic in Kubernetes mode: read from the
                // proxies for an authorized request for its document only.
                let remote = state.load_full().and_then(|v| v.proxy_metrics.clone());
                let extra = match remote {
                    Some(addrs)
                        if req.uri().path() == crate::ui::STATE_PATH
                            && authorized(&req, token.as_deref()) =>
                    {
                        crate::kube_dashboard::scrape(addrs()).await
                    }
                    _ => String::new(),
                };
                handle(&state, token.as_deref(), req, &extra)
            }
        },
    ));
    Ok(local)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_are_redacted_wherever_they_are() {
        let mut v = json!({
            "listeners": [{"tls": {"certificates": [{
                "source": "ns/s", "cert_pem": "-----BEGIN CERTIFICATE-----\nA\n-----END CERTIFICATE-----\n",
                "key_pem": "anything"
            }]}}],
            "note": "-----BEGIN RSA PRIVATE KEY-----\nB\n-----END RSA PRIVATE KEY-----",
            "client_certificate": null,
        });
        redact(&mut v);
        let s = v.to_string();
        assert!(!s.contains("anything") && !s.contains("PRIVATE KEY"), "{s}");
        assert!(
            s.contains("BEGIN CERTIFICATE"),
            "certificates are public: {s}"
        );
        assert_eq!(v["client_certificate"], Value::Null);
    }

    #[test]
    fn a_non_loopback_address_needs_a_token() {
        let lo: SocketAddr = "127.0.0.1:9901".parse().unwrap();
        let lo6: SocketAddr = "[::1]:9901".parse().unwrap();
        let any: SocketAddr = "0.0.0.0:9901".parse().unwrap();
        assert!(check_binding(lo, None).is_ok());
        assert!(check_binding(lo6, None).is_ok());
        let e = check_binding(any, None).unwrap_err();
        assert!(e.to_string().contains("--admin-token-file"), "{e}");
        assert!(check_binding(any, Some("t")).is_ok());
    }

    #[test]
    fn bearer_tokens_are_compared_whole() {
        let req = |auth: Option<&str>| {
            let mut b = Request::builder().uri("/config");
            if let Some(a) = auth {
                b = b.header("authorization", a);
            }
            b.body(()).unwrap()
        };
        assert!(authorized(&req(None), None));
        assert!(!authorized(&req(None), Some("s3cret")));
        assert!(authorized(&req(Some("Bearer s3cret")), Some("s3cret")));
        assert!(!authorized(&req(Some("Bearer s3cre")), Some("s3cret")));
        assert!(!authorized(&req(Some("Bearer s3cretX")), Some("s3cret")));
        assert!(!authorized(&req(Some("Basic s3cret")), Some("s3cret")));
    }

    fn call(
        state: &AdminState,
        token: Option<&str>,
        uri: &str,
        auth: Option<&str>,
    ) -> (u16, String) {
        let mut b = Request::builder().uri(uri);
        if let Some(a) = auth {
            b = b.header("authorization", a);
        }
        let r = handle(state, token, b.body(()).unwrap(), "");
        let status = r.status().as_u16();
        let body = futures_body(r);
        (status, body)
    }

    fn futures_body(r: Response<Full<Bytes>>) -> String {
        use http_body_util::BodyExt;
        let body = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap()
            .block_on(r.into_body().collect())
            .unwrap()
            .to_bytes();
        String::from_utf8_lossy(&body).into_owned()
    }

    fn ready_state() -> AdminState {
        let state: AdminState = Default::default();
        state.store(Some(Arc::new(AdminView {
            snapshot: Default::default(),
            statuses: Default::default(),
            config: Default::default(),
            problems: Default::default(),
            kubernetes: false,
            proxy_metrics: None,
        })));
        state
    }

    #[test]
    fn documents_need_the_token_and_the_page_assets_do_not() {
        let state = ready_state();
        let tok = Some("s3cret");
        for path in [
            "/status",
            "/config",
            "/metrics",
            "/explain?request=http://x/",
            "/ui/api/state",
        ] {
            assert_eq!(call(&state, tok, path, None).0, 401, "{path}");
            assert_eq!(
                call(&state, tok, path, Some("Bearer s3cret")).0,
                200,
                "{path}"
            );
        }
        for path in [
            "/healthz",
            "/readyz",
            "/ui",
            "/ui/",
            "/ui/app.js",
            "/ui/style.css",
        ] {
            assert_eq!(call(&state, tok, path, None).0, 200, "{path}");
        }
        let (_, page) = call(&state, tok, "/ui", None);
        assert!(page.contains("src=\"/ui/app.js\""), "{page}");
        for outside in ["src=\"http", "href=\"http", "src=\"//", "href=\"//"] {
            assert!(
                !page.contains(outside),
                "no asset from elsewhere: {outside}"
            );
        }
    }

    #[test]
    fn explain_reads_the_request_and_headers_from_the_query() {
        let state = ready_state();
        let (status, body) = call(
            &state,
            None,
            "/explain?request=GET+http%3A%2F%2Fshop.example.com%3A8080%2Fcart&header=x-env%3A%20canary&format=text",
            None,
        );
        assert_eq!(status, 200, "{body}");
        assert!(
            body.contains("request   GET http://shop.example.com:8080/cart"),
            "{body}"
        );
        assert!(body.contains("header    x-env: canary"), "{body}");
        assert!(body.contains("no listener is on port 8080"), "{body}");
        let (status, body) = call(&state, None, "/explain?request=GET%20/relative", None);
        assert_eq!(status, 400, "{body}");
        let (status, body) = call(&state, None, "/explain?request=http://x/", None);
        let v: Value = serde_json::from_str(&body).unwrap();
        assert_eq!((status, v["answer"]["status"].clone()), (200, Value::Null));
    }
}
