//! RequestMirror: fire-and-forget copies of requests.
//!
//! A copy is sent in a spawned task with the request as the filters before
//! the mirror left it. Only requests whose body was buffered (empty, or up to
//! [`crate::Options::buffer_body_bytes`]) are mirrored, so the copy is
//! bounded and the main request is never slowed: larger streaming bodies are
//! not mirrored. The mirror's response is read and discarded; its failure is
//! only logged.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Uri, Version};
use http_body_util::BodyExt;
use portcullis_ir::Mirror;
use rand::Rng;

use crate::backend::pool::Clients;
use crate::backend::{ServiceTarget, Target};
use crate::body;

/// A compiled mirror.
#[derive(Debug)]
pub struct MirrorFilter {
    target: Option<Arc<ServiceTarget>>,
    numerator: u32,
    denominator: u32,
}

/// The request as it is mirrored.
#[derive(Debug)]
pub struct MirrorCopy {
    /// Method.
    pub method: Method,
    /// Path and query.
    pub path_and_query: String,
    /// Headers (Host included).
    pub headers: HeaderMap,
}

impl MirrorFilter {
    /// Compile.
    pub fn new(m: &Mirror, cx: &crate::table::BuildCtx<'_>) -> Self {
        let target = match Target::new(&m.backend.backend, cx, None, false) {
            Target::Service(s) => Some(s),
            Target::Invalid(_) => None,
        };
        MirrorFilter {
            target,
            numerator: m.numerator,
            denominator: m.denominator,
        }
    }

    /// Whether this request is selected by the fraction.
    pub fn selected(&self) -> bool {
        if self.target.is_none() || self.denominator == 0 || self.numerator == 0 {
            return false;
        }
        self.numerator >= self.denominator
            || rand::rng().random_range(0..self.denominator) < self.numerator
    }

    /// Send a copy in the background; a failure counts in `stats`' mirror errors.
    pub fn spawn(
        &self,
        clients: &Clients,
        copy: MirrorCopy,
        body: Bytes,
        timeout: Duration,
        stats: Option<Arc<portcullis_obs::http::HttpStats>>,
    ) {
        let Some(target) = self.target.clone() else {
            return;
        };
        let Some(ep) = target.endpoints.pick().cloned() else {
            tracing::debug!(backend = %target.name, "mirror backend has no endpoints");
            return;
        };
        let clients = clients.clone();
        tokio::spawn(async move {
            let uri = match Uri::builder()
                .scheme(if target.tls.is_some() {
                    "https"
                } else {
                    "http"
                })
                .authority(ep.authority.clone())
                .path_and_query(copy.path_and_query.as_str())
                .build()
            {
                Ok(u) => u,
                Err(_) => return,
            };
            // gRPC copies go over HTTP/2, like the requests they copy.
            let h2 = target.h2c || crate::error::is_grpc(&copy.headers);
            let mut req = Request::new(body::full(body));
            *req.method_mut() = copy.method;
            *req.uri_mut() = uri;
            *req.headers_mut() = copy.headers;
            *req.version_mut() = if h2 {
                Version::HTTP_2
            } else {
                Version::HTTP_11
            };
            let _guard = ep.acquire();
            let res = tokio::time::timeout(timeout, async {
                let resp = match &target.tls {
                    Some(t) => t.send(h2, req).await?,
                    None => clients.send(h2, req).await?,
                };
                let _ = resp.into_body().collect().await;
                Ok::<_, hyper_util::client::legacy::Error>(())
            })
            .await;
            match res {
                Ok(Ok(())) => return,
                Ok(Err(e)) => tracing::debug!(backend = %target.name, error = %e, "mirror failed"),
                Err(_) => tracing::debug!(backend = %target.name, "mirror timed out"),
            }
            if let Some(s) = stats {
                s.mirror_error();
            }
        });
    }
}
