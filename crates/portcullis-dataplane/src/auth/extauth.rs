//! External authorization (`extAuth`), run last of the authentications:
//! over HTTP here, over gRPC (Envoy's `Authorization/Check`) in
//! [`super::extauth_grpc`]. `bodyToExtAuth` hands the buffered request body
//! (the handler answers 413 past `maxRequestBytes`) to either.
//!
//! HTTP (`extAuth.http`):
//! - The check request goes to the Service's endpoints (round robin) with the
//!   request's method, `path` + the canonical request path (and query), the
//!   request body when `bodyToExtAuth` is set (else none), and these headers: `Host`, `Authorization`, the `X-Forwarded-*`
//!   headers the gateway set, and those named by `headersToExtAuth` (every
//!   request header when that list is empty would leak too much: it is not
//!   done; name what the service needs), plus `Content-Type` with a body.
//! - A 2xx answer allows the request; the answer's `headersToBackend` headers
//!   are copied onto the upstream request (replacing inbound copies, which
//!   are always removed first so a client cannot forge them).
//! - Any other answer is returned to the client as it is (status, headers
//!   except hop-by-hop ones, body up to 64 KiB).
//! - No answer (connection refused, timeout after `timeout`, default 10 s):
//!   `failOpen: true` lets the request through, else 403.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Limited};
use portcullis_ir as ir;

use super::{AuthCtx, plain};
use crate::backend::pool::Clients;
use crate::body::{self, ProxyBody};
use crate::filters::ReqState;
use crate::forward;

const MAX_ANSWER_BYTES: usize = 64 * 1024;
const ALWAYS: [&str; 4] = [
    "authorization",
    "x-forwarded-for",
    "x-forwarded-proto",
    "x-forwarded-host",
];

/// A compiled `extAuth`.
#[derive(Debug)]
pub struct ExtAuth {
    endpoints: Vec<std::net::SocketAddr>,
    next: AtomicUsize,
    prefix: String,
    /// HTTP: the defaults and `headersToExtAuth`.
    to_auth: Vec<HeaderName>,
    /// `headersToExtAuth` alone (gRPC: empty means every header).
    pub(super) listed: Vec<HeaderName>,
    to_backend: Vec<HeaderName>,
    pub(super) timeout: Duration,
    fail_open: bool,
    grpc: bool,
    body_max: Option<u32>,
}

impl ExtAuth {
    /// Compile.
    pub fn new(e: &ir::security::ExtAuth) -> Result<Self, String> {
        let endpoints = match &e.backend {
            ir::Backend::Service(s) => s.endpoints.iter().map(|ep| ep.addr).collect(),
            ir::Backend::Invalid { reason } => return Err(reason.clone()),
        };
        let names = |v: &[String]| -> Result<Vec<HeaderName>, String> {
            v.iter()
                .map(|h| {
                    HeaderName::from_bytes(h.as_bytes()).map_err(|e| format!("header {h:?}: {e}"))
                })
                .collect()
        };
        let listed = names(&e.headers_to_ext_auth)?;
        let mut to_auth = names(&ALWAYS.map(String::from))?;
        to_auth.extend(listed.iter().cloned());
        Ok(ExtAuth {
            endpoints,
            next: AtomicUsize::new(0),
            prefix: e.path_prefix.trim_end_matches('/').to_string(),
            to_auth,
            listed,
            to_backend: names(&e.headers_to_backend)?,
            timeout: Duration::from_millis(e.timeout_ms.max(1)),
            fail_open: e.fail_open,
            grpc: e.grpc,
            body_max: e.body_max_bytes,
        })
    }

    /// `bodyToExtAuth.maxRequestBytes`: the handler buffers the body up to it.
    pub fn body_limit(&self) -> Option<u32> {
        self.body_max
    }

    /// The next endpoint (round robin), if any.
    pub(super) fn endpoint(&self) -> Option<std::net::SocketAddr> {
        (!self.endpoints.is_empty()).then(|| {
            self.endpoints[self.next.fetch_add(1, Ordering::Relaxed) % self.endpoints.len()]
        })
    }

    /// The service could not answer: through with `failOpen`, else 403.
    pub(super) fn failed(&self, why: &str) -> Result<(), Response<ProxyBody>> {
        if self.fail_open {
            tracing::warn!(
                error = why,
                "ext auth unavailable: failOpen lets the request through"
            );
            Ok(())
        } else {
            tracing::warn!(error = why, "ext auth unavailable: 403");
            Err(plain(
                StatusCode::FORBIDDEN,
                "external authorization failed\n",
                None,
            ))
        }
    }

    /// Ask the service; `Ok` carries response headers the service asked to
    /// add to the answer to the client (gRPC `response_headers_to_add`).
    pub async fn check(
        &self,
        st: &mut ReqState,
        clients: &Clients,
        cx: &AuthCtx<'_>,
    ) -> Result<Vec<(HeaderName, http::HeaderValue)>, Response<ProxyBody>> {
        if self.grpc {
            return super::extauth_grpc::check(self, st, clients, cx).await;
        }
        self.check_http(st, clients, cx).await.map(|()| vec![])
    }

    async fn check_http(
        &self,
        st: &mut ReqState,
        clients: &Clients,
        cx: &AuthCtx<'_>,
    ) -> Result<(), Response<ProxyBody>> {
        for h in &self.to_backend {
            st.headers.remove(h);
        }
        let Some(ep) = self.endpoint() else {
            return self.failed("the authorization Service has no endpoints");
        };
        let pq = format!("{}{}", self.prefix, st.path_and_query());
        let uri = match Uri::builder()
            .scheme("http")
            .authority(ep.to_string())
            .path_and_query(pq)
            .build()
        {
            Ok(u) => u,
            Err(e) => return self.failed(&e.to_string()),
        };
        let sent = cx.body.cloned().unwrap_or_default();
        let len = sent.len();
        let mut req = Request::new(if len == 0 {
            body::empty()
        } else {
            body::full(sent)
        });
        *req.method_mut() = st.method.clone();
        *req.uri_mut() = uri;
        let h = req.headers_mut();
        h.insert(header::HOST, st.host.clone());
        h.insert(header::CONTENT_LENGTH, http::HeaderValue::from(len));
        if len > 0
            && let Some(ct) = st.headers.get(header::CONTENT_TYPE)
        {
            h.insert(header::CONTENT_TYPE, ct.clone());
        }
        for name in &self.to_auth {
            for v in st.headers.get_all(name) {
                h.append(name.clone(), v.clone());
            }
        }
        let answer = tokio::time::timeout(self.timeout, async {
            let resp = clients.send(false, req).await.map_err(|e| e.to_string())?;
            let (parts, b) = resp.into_parts();
            let body = Limited::new(b, MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok::<_, String>((parts, body))
        })
        .await;
        let (mut parts, body): (http::response::Parts, Bytes) = match answer {
            Err(_) => return self.failed("timeout"),
            Ok(Err(e)) => return self.failed(&e),
            Ok(Ok(a)) => a,
        };
        if parts.status.is_success() {
            for name in &self.to_backend {
                let mut first = true;
                for v in parts.headers.get_all(name) {
                    if first {
                        st.headers.insert(name.clone(), v.clone());
                        first = false;
                    } else {
                        st.headers.append(name.clone(), v.clone());
                    }
                }
            }
            return Ok(());
        }
        forward::strip_hop_by_hop(&mut parts.headers, false);
        parts.headers.remove(header::CONTENT_LENGTH);
        tracing::debug!(status = %parts.status, "ext auth denied the request");
        Err(Response::from_parts(parts, body::full(body)))
    }
}
