//! External authorization over HTTP (`extAuth.http`), run last of the
//! authentications.
//!
//! - The check request goes to the Service's endpoints (round robin) with the
//!   request's method, `path` + the canonical request path (and query), no
//!   body, and these headers: `Host`, `Authorization`, the `X-Forwarded-*`
//!   headers the gateway set, and those named by `headersToExtAuth` (every
//!   request header when that list is empty would leak too much: it is not
//!   done; name what the service needs).
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

use super::plain;
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
    to_auth: Vec<HeaderName>,
    to_backend: Vec<HeaderName>,
    timeout: Duration,
    fail_open: bool,
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
        let mut to_auth = names(&ALWAYS.map(String::from))?;
        to_auth.extend(names(&e.headers_to_ext_auth)?);
        Ok(ExtAuth {
            endpoints,
            next: AtomicUsize::new(0),
            prefix: e.path_prefix.trim_end_matches('/').to_string(),
            to_auth,
            to_backend: names(&e.headers_to_backend)?,
            timeout: Duration::from_millis(e.timeout_ms.max(1)),
            fail_open: e.fail_open,
        })
    }

    fn failed(&self, why: &str) -> Result<(), Response<ProxyBody>> {
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

    /// Ask the service.
    pub async fn check(
        &self,
        st: &mut ReqState,
        clients: &Clients,
    ) -> Result<(), Response<ProxyBody>> {
        for h in &self.to_backend {
            st.headers.remove(h);
        }
        if self.endpoints.is_empty() {
            return self.failed("the authorization Service has no endpoints");
        }
        let ep = self.endpoints[self.next.fetch_add(1, Ordering::Relaxed) % self.endpoints.len()];
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
        let mut req = Request::new(body::empty());
        *req.method_mut() = st.method.clone();
        *req.uri_mut() = uri;
        let h = req.headers_mut();
        h.insert(header::HOST, st.host.clone());
        h.insert(header::CONTENT_LENGTH, http::HeaderValue::from_static("0"));
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
