//! Request statistics on the request path: what a finished request adds to
//! its route's [`HttpStats`] (resolved when the table was built), recorded
//! when the response body ends (or is dropped), with no lock and no
//! allocation of its own: the response body wrapper replaces the one that
//! already held the upstream's in-flight guard, and the request-body
//! counter sits inside the box the body already had.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Version, header};
use http_body::{Body, Frame, SizeHint};
use portcullis_obs::accesslog::{self, Entry, Flag};
use portcullis_obs::http::{Finished, HttpStats};
use portcullis_obs::trace::{RequestInfo, ServerSpan};
use tokio::time::Instant;

use crate::body::{BoxError, ProxyBody};
use crate::table::RuleAction;

/// What the access log needs from the request head, captured only when the
/// log is on.
#[derive(Debug)]
pub struct AccessCtx {
    pub(crate) entry: Entry,
}

impl AccessCtx {
    /// Capture from the request head.
    pub fn capture<B>(req: &Request<B>, peer: std::net::SocketAddr) -> Box<Self> {
        let h = |n: &str| req.headers().get(n).and_then(|v| v.to_str().ok());
        let request_id = match h("x-request-id") {
            Some(id) if !id.is_empty() => id.chars().take(128).collect(),
            _ => format!("{:016x}", rand::random::<u64>()),
        };
        let uri = req.uri();
        let authority = uri
            .authority()
            .map(|a| a.as_str())
            .or_else(|| {
                req.headers()
                    .get(header::HOST)
                    .and_then(|v| v.to_str().ok())
            })
            .unwrap_or("");
        Box::new(AccessCtx {
            entry: Entry {
                request_id,
                trace_id: h("traceparent")
                    .and_then(trace_id)
                    .unwrap_or_default()
                    .to_owned(),
                client: peer.to_string(),
                method: req.method().as_str().to_owned(),
                authority: authority.to_owned(),
                path: uri.path().to_owned(),
                query: uri.query().map(str::to_owned),
                protocol: protocol(req.version()),
                ..Default::default()
            },
        })
    }
}

/// The trace id of a W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`).
pub fn trace_id(tp: &str) -> Option<&str> {
    let mut parts = tp.trim().split('-');
    let (_version, id) = (parts.next()?, parts.next()?);
    (id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit()) && id != "0".repeat(32))
        .then_some(id)
}

fn protocol(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_11 => "HTTP/1.1",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "-",
    }
}

/// What is known about a request until it finishes.
#[derive(Debug)]
pub struct Recorder {
    /// The statistics it counts in, once a port table was consulted.
    pub stats: Option<Arc<HttpStats>>,
    /// When its head was read.
    pub start: Instant,
    /// [`portcullis_obs::http::method_class`].
    pub method: u8,
    /// Response status.
    pub status: u16,
    /// Request body bytes counted here (a streamed body counts itself).
    pub bytes_in: u64,
    /// Upstream time to the response head.
    pub upstream: Option<Duration>,
    /// Access log: the request, its rule, upstream and flag.
    pub access: Option<Box<AccessCtx>>,
    /// The matched rule (access log only).
    pub action: Option<Arc<RuleAction>>,
    /// The upstream endpoint.
    pub upstream_addr: Option<std::net::SocketAddr>,
    /// Why the gateway answered itself.
    pub flag: Option<Flag>,
    /// The request's server span (tracing on).
    pub span: Option<Box<ServerSpan>>,
}

/// Start the request's server span when tracing is on: its parent comes
/// from the request's `traceparent`, which is replaced by the span's own
/// context (so the upstream request carries it).
pub fn start_span<B>(
    req: &mut Request<B>,
    peer: std::net::SocketAddr,
    scheme: &'static str,
    port: u16,
) -> Option<Box<ServerSpan>> {
    if !portcullis_obs::trace::enabled() {
        return None;
    }
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let host = req
        .uri()
        .host()
        .map(str::to_owned)
        .or_else(|| {
            let h = req.headers().get(header::HOST)?.to_str().ok()?;
            Some(portcullis_route::normalize_host(h).into_owned())
        })
        .unwrap_or_default();
    let ua = req
        .headers()
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let version = match req.version() {
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        _ => "1.1",
    };
    let info = RequestInfo {
        method: method.as_str(),
        scheme,
        path: &path,
        host: &host,
        port,
        peer,
        protocol_version: version,
        user_agent: ua.as_deref(),
    };
    ServerSpan::start(req.headers_mut(), &info)
}

impl Recorder {
    /// Record with `bytes_out` response body bytes sent; `cut`: the client
    /// went away before the body ended.
    pub fn finish(self, bytes_out: u64, cut: bool) {
        let duration = self.start.elapsed();
        if let Some(s) = &self.stats {
            s.record(&Finished {
                method: self.method,
                status: self.status,
                bytes_in: self.bytes_in,
                bytes_out,
                duration,
                upstream: self.upstream,
            });
        }
        if let Some(span) = self.span {
            let (key, action) = (
                self.stats.as_deref().map(|s| &s.key),
                self.action.as_deref(),
            );
            let route = portcullis_obs::trace::Route {
                gateway: key.map_or("", |k| &k.gateway),
                listener: key.map_or("", |k| &k.listener),
                route: action.map_or_else(|| key.map_or("", |k| &k.route), |a| &a.route),
                rule: action.map_or("", |a| &a.rule),
                backend: key.map_or("", |k| &k.backend),
                upstream: self.upstream_addr,
            };
            let error = self
                .flag
                .or(cut.then_some(Flag::DownstreamClosed))
                .map(Flag::code);
            span.end(self.status, &route, error);
        }
        if let Some(a) = self.access {
            let mut e = a.entry;
            e.time = Some(std::time::SystemTime::now());
            e.status = self.status;
            e.flag = self.flag.or(cut.then_some(Flag::DownstreamClosed));
            e.bytes_in = self.bytes_in;
            e.bytes_out = bytes_out;
            e.duration = duration;
            e.upstream_duration = self.upstream;
            e.upstream = self.upstream_addr;
            if let Some(s) = &self.stats {
                e.gateway = s.key.gateway.to_string();
                e.listener = s.key.listener.to_string();
                e.route = s.key.route.to_string();
                e.backend = s.key.backend.to_string();
            }
            if let Some(r) = &self.action {
                e.route = r.route.to_string();
                e.rule = r.rule.to_string();
            }
            accesslog::log(e);
        }
    }
}

/// A response body that counts its bytes, holds `G` until it ends, and
/// records the request when it ends or is dropped.
pub struct Observed<G> {
    inner: ProxyBody,
    guard: Option<G>,
    rec: Option<Recorder>,
    bytes: u64,
}

impl<G: Send + Unpin + 'static> Observed<G> {
    /// Wrap `inner`.
    pub fn wrap(inner: ProxyBody, guard: G, rec: Option<Recorder>) -> ProxyBody {
        http_body_util::BodyExt::boxed_unsync(Observed {
            inner,
            guard: Some(guard),
            rec,
            bytes: 0,
        })
    }
}

impl<G> Observed<G> {
    fn done(&mut self) {
        self.guard = None;
        if let Some(r) = self.rec.take() {
            r.finish(self.bytes, false);
        }
    }
}

impl<G> Drop for Observed<G> {
    fn drop(&mut self) {
        if let Some(r) = self.rec.take() {
            r.finish(self.bytes, !self.inner.is_end_stream());
        }
    }
}

impl<G: Unpin> Body for Observed<G> {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        let r = Pin::new(&mut this.inner).poll_frame(cx);
        match &r {
            Poll::Ready(Some(Ok(f))) => {
                if let Some(d) = f.data_ref() {
                    this.bytes += d.len() as u64;
                }
                // A server may not poll past a body that says it ended.
                if this.inner.is_end_stream() {
                    this.done();
                }
            }
            Poll::Ready(None) | Poll::Ready(Some(Err(_))) => this.done(),
            Poll::Pending => {}
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// A streamed request body that adds its bytes to its route's counter as they pass.
    pub struct Counting<B> {
        #[pin]
        inner: B,
        stats: Arc<HttpStats>,
    }
}

impl<B> Counting<B> {
    /// Wrap `inner`.
    pub fn new(inner: B, stats: Arc<HttpStats>) -> Self {
        Counting { inner, stats }
    }
}

impl<B: Body<Data = Bytes>> Body for Counting<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = self.project();
        let r = this.inner.poll_frame(cx);
        if let Poll::Ready(Some(Ok(f))) = &r
            && let Some(d) = f.data_ref()
        {
            this.stats.add_request_bytes(d.len() as u64);
        }
        r
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
