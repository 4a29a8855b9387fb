//! The request handler: listener and route choice, filters, backend choice,
//! forwarding with retries and timeouts, and the access log.
//!
//! - `timeouts.request` bounds everything up to the upstream response head
//!   (body buffering, every attempt and backoff); `timeouts.backendRequest`
//!   bounds each attempt up to its response head. Either answers 504. A
//!   response body that has started streaming is not cut by them.
//! - Framing: a head with both `Content-Length` and `Transfer-Encoding` is
//!   answered 400 and the connection closed by the HTTP/1 fast path
//!   ([`crate::http1`]); on a connection already handed to hyper (after a
//!   request with a body or an upgrade attempt), hyper reads it as chunked,
//!   drops `Content-Length` and closes after the response (RFC 9112 §6.3),
//!   so nothing can be smuggled behind it. hyper answers other malformed
//!   heads (400 for a bad or conflicting `Content-Length`, a non-chunked
//!   final `Transfer-Encoding`; 431 for oversized heads) and closes.
//! - HTTPS: a request whose Host belongs to another listener than the one
//!   the connection's SNI selected is answered 421.
//! - gRPC (`content-type: application/grpc*`): always HTTP/2 upstream, the
//!   body is streamed (never buffered, unless a mirror needs a copy) and
//!   trailers pass through both ways; errors are gRPC-shaped (see
//!   [`crate::error`]).
//! - Statistics and the access log: see [`crate::observe`]. The request's
//!   route statistics are resolved as routing goes (port, listener, rule,
//!   backend choice) and recorded once, when the response body ends; the
//!   access log (when on) captures the request head and is written by
//!   `portcullis_obs::accesslog`'s writer thread.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::Either;
use http::{HeaderMap, HeaderValue, Request, Response, StatusCode, Uri, Version, header};
use http_body_util::LengthLimitError;
use hyper::body::Body;
use hyper::upgrade::OnUpgrade;
use portcullis_route::parse_authority;
use tokio::time::Instant;

use crate::backend::balance::{self, Outcome};
use crate::backend::endpoint::{EndpointState, InflightGuard};
use crate::backend::h1::{H1Body, H1Client, H1Error};
use crate::backend::hyper_pool;
use crate::backend::{ServiceTarget, Target};
use crate::body::{self, BoxError, Guarded, ProxyBody};
pub use crate::ctx::{ConnCtx, PortCtx, Shared};
use crate::error::{self, ProxyError};
use crate::filters::{FilterCtx, Flow, Plan, ReqState};
use crate::forward;
use crate::limits::{BodyLimits, BodyWatch, HeaderTimeout, TimedBody};
use crate::observe::{AccessCtx, Observed, Recorder};
use crate::reqbody::ReqBody;
use crate::retry::{self, AttemptError, MaybeTimeout};
use crate::table::RuleAction;
use crate::websocket;
use portcullis_obs::accesslog::Flag;
use portcullis_obs::http::{HttpStats, method_class};

struct Log {
    upstream: Option<SocketAddr>,
    flag: Option<Flag>,
    route: Option<Arc<RuleAction>>,
    /// Where the request counts (set as routing goes; taken when the
    /// response body takes over the recording).
    stats: Option<Arc<HttpStats>>,
    start: Instant,
    method: u8,
    bytes_in: u64,
    upstream_time: Option<Duration>,
    /// The access log's capture of the request head (only when it is on).
    access: Option<Box<AccessCtx>>,
    /// The server span (only when tracing is on).
    span: Option<Box<portcullis_obs::trace::ServerSpan>>,
}

impl Log {
    fn new(method: &http::Method) -> Self {
        Log {
            upstream: None,
            flag: None,
            route: None,
            stats: None,
            start: Instant::now(),
            method: method_class(method.as_str()),
            bytes_in: 0,
            upstream_time: None,
            access: None,
            span: None,
        }
    }

    /// The recorder of a response (taken once: by the response body that
    /// records it when it ends, else when the handler returns).
    fn recorder(&mut self, status: StatusCode) -> Option<Recorder> {
        if self.stats.is_none() && self.access.is_none() && self.span.is_none() {
            return None;
        }
        let access = self.access.take();
        let span = self.span.take();
        Some(Recorder {
            stats: self.stats.take(),
            start: self.start,
            method: self.method,
            status: status.as_u16(),
            bytes_in: self.bytes_in,
            upstream: self.upstream_time,
            action: if access.is_some() || span.is_some() {
                self.route.clone()
            } else {
                None
            },
            access,
            upstream_addr: self.upstream,
            flag: self.flag,
            span,
        })
    }
}

/// Handle one request; never fails (errors become responses).
pub async fn handle<B>(mut req: Request<B>, cx: Arc<ConnCtx>) -> Response<ProxyBody>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let grpc = error::is_grpc(req.headers());
    let mut log = Log::new(req.method());
    // Tracing on: a server span, whose context replaces the request's
    // traceparent (so the upstream sees it, and the access log its trace id).
    if portcullis_obs::trace::enabled() {
        let (scheme, port) = {
            let t = cx.port.table.load();
            (t.scheme, t.port)
        };
        log.span = crate::observe::start_span(&mut req, cx.peer, scheme, port);
    }
    // What the access log needs is kept only when it is on.
    if portcullis_obs::accesslog::enabled() {
        log.access = Some(AccessCtx::capture(&req, cx.peer));
    }
    let resp = match proxy(req, &cx, grpc, &mut log).await {
        Ok(r) => r,
        Err(e) => {
            log.flag.get_or_insert(e.response_flag());
            if e == ProxyError::Timeout
                && let Some(s) = &log.stats
            {
                s.timeout();
            }
            tracing::debug!(error = %e, "request answered by the gateway");
            let r = e.response_for(grpc);
            match log.route.as_ref().and_then(|a| a.traffic.as_ref()) {
                Some(t) if !t.overrides.is_empty() => {
                    crate::faults::override_response(&t.overrides, r)
                }
                _ => r,
            }
        }
    };
    // Responses whose body does not record them (the gateway's own) count now.
    if let Some(rec) = log.recorder(resp.status()) {
        rec.finish(resp.body().size_hint().exact().unwrap_or(0), false);
    }
    resp
}

/// Whether `Transfer-Encoding` is absent or exactly `chunked` (RFC 9112
/// §6.1: any other coding list is forwarded faithfully or refused; we refuse).
fn chunked_only(h: &HeaderMap) -> bool {
    let mut codings = h
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(|t| t.trim_ascii())
        .filter(|t| !t.is_empty());
    match codings.next() {
        None => true,
        Some(c) => c.eq_ignore_ascii_case(b"chunked") && codings.next().is_none(),
    }
}

/// The request's authority: the absolute-form target's or `:authority`
/// (which wins over `Host`, RFC 9112 §3.2.2 and RFC 9113 §8.3.1; the
/// `Host` sent upstream is replaced by it), else the one `Host` header.
/// Two `Host` headers or userinfo are a bad request.
fn request_host<B>(req: &Request<B>) -> Result<HeaderValue, ProxyError> {
    let mut hosts = req.headers().get_all(header::HOST).iter();
    let host = hosts.next();
    if hosts.next().is_some() {
        return Err(ProxyError::BadRequest("more than one host header"));
    }
    match req.uri().authority() {
        Some(a) => {
            if a.as_str().contains('@') {
                return Err(ProxyError::BadRequest("bad host"));
            }
            HeaderValue::from_str(a.as_str()).map_err(|_| ProxyError::BadRequest("bad host"))
        }
        None => host.cloned().ok_or(ProxyError::BadRequest("missing host")),
    }
}

async fn proxy<B>(
    mut req: Request<B>,
    cx: &ConnCtx,
    grpc: bool,
    log: &mut Log,
) -> Result<Response<ProxyBody>, ProxyError>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let shared = &cx.port.shared;
    if req.version() <= Version::HTTP_11
        && req.headers().contains_key(header::TRANSFER_ENCODING)
        && req.headers().contains_key(header::CONTENT_LENGTH)
    {
        return Err(ProxyError::BadRequest(
            "content-length with transfer-encoding",
        ));
    }
    if req.version() <= Version::HTTP_11 && !chunked_only(req.headers()) {
        // `gzip, chunked` would lose its gzip coding once re-framed upstream.
        return Err(ProxyError::NotImplemented("transfer coding"));
    }
    let host_value = request_host(&req)?;
    let host_name = parse_authority(
        host_value
            .to_str()
            .map_err(|_| ProxyError::BadRequest("bad host"))?,
    )
    .map_err(|_| ProxyError::BadRequest("bad host"))?
    .into_owned();
    let query = req.uri().query().map(str::to_owned);

    let table = cx.port.table.load_full();
    log.stats = Some(table.unrouted.clone());
    if table.misdirected(cx.sni.as_deref(), &host_name) {
        return Err(ProxyError::Misdirected);
    }
    let listener = table.listener(&host_name).ok_or(ProxyError::NoListener)?;
    log.stats = Some(listener.unmatched.clone());
    // ClientTrafficPolicy header settings, before routing.
    if let Some(c) = &listener.client {
        c.headers(req.headers_mut())?;
    }
    // The canonical path under the listener's ClientTrafficPolicy `path`
    // settings: what is routed on and what is forwarded.
    let path_opts = listener.client.as_ref().map(|c| c.path).unwrap_or_default();
    let path = match crate::client_traffic::request_path(req.uri().path(), &path_opts)? {
        crate::client_traffic::RoutedPath::Route(p) => p,
        crate::client_traffic::RoutedPath::Redirect(p) => {
            return crate::client_traffic::redirect(&p, query.as_deref());
        }
    };
    let rule = listener
        .routes
        .lookup(
            &host_name,
            req.method().as_str(),
            &path,
            req.headers(),
            query.as_deref(),
        )
        .ok_or(ProxyError::NoRoute)?;
    let routed = rule.value();
    let action = &routed.action;
    log.route = Some(action.clone());
    log.stats = Some(routed.no_backend_stats().clone());

    let upgrading =
        req.version() == Version::HTTP_11 && forward::is_websocket_upgrade(req.headers());
    let client_upgrade = upgrading.then(|| hyper::upgrade::on(&mut req));
    let (mut parts, body) = req.into_parts();
    // Every request body is bounded in time, but a gRPC stream's, which may
    // stay open and quiet as long as the call lasts.
    let limits = if grpc {
        BodyLimits::default()
    } else {
        BodyLimits {
            idle: Some(cx.port.opts.body_idle_timeout),
            total: Some(cx.port.opts.body_timeout),
        }
    };
    let (body, body_watch) = TimedBody::new(body, limits);
    let mut headers = parts.headers;
    forward::strip_hop_by_hop(&mut headers, upgrading);
    let detect = listener
        .client
        .as_ref()
        .and_then(|c| c.detect.as_ref())
        .unwrap_or(&shared.opts.client_ip);
    let client = crate::client_traffic::client_addr(detect, cx.peer.ip(), &headers)?;
    if let Some(a) = log.access.as_mut() {
        // The access log shows the derived client address, not the peer's.
        a.entry.client = client.to_string();
    }
    detect.rewrite(
        &mut headers,
        cx.peer.ip(),
        client,
        table.scheme,
        &host_value,
    );
    headers.remove(header::HOST);
    headers.remove(header::EXPECT);
    let mut st = ReqState {
        method: parts.method,
        host: host_value,
        host_name,
        path,
        query,
        headers,
        client,
        case: parts.extensions.remove(),
        hyper_case: None,
    };
    if st.case.is_none() && cx.port.opts.http1_preserve_case && parts.version == Version::HTTP_11 {
        st.hyper_case = Some(parts.extensions);
    }

    let fcx = FilterCtx {
        scheme: table.scheme,
        listener_port: table.port,
        matched_prefix: rule.matched_prefix(),
    };
    let mut plan = Plan::default();
    // SecurityPolicy: client address → CORS preflight → authentication →
    // authorization, before the route's filters (see `crate::auth`).
    // `bodyToExtAuth` buffers the body first (413 past its limit); the
    // buffered copy is what goes upstream.
    let (body, buffered) = match action.security.as_ref().and_then(|s| s.body_limit()) {
        Some(max) => {
            let b = crate::auth::buffer_body(body, &st.headers, max)
                .await
                .map_err(|e| {
                    if body_watch.timed_out() {
                        ProxyError::RequestTimeout
                    } else {
                        e
                    }
                })?;
            (
                http_body_util::Either::Right(http_body_util::Full::new(b.clone())),
                Some(b),
            )
        }
        None => (http_body_util::Either::Left(body), None),
    };
    if let Some(sec) = &action.security {
        let acx = crate::auth::AuthCtx {
            peer: cx.peer,
            listener_port: table.port,
            scheme: table.scheme,
            version: parts.version,
            body: buffered.as_ref(),
        };
        match Box::pin(sec.check(&mut st, client, &mut plan, &shared.clients, &acx)).await {
            Flow::Continue => {}
            // A gRPC client gets its denial as a gRPC status.
            Flow::Respond(r) if grpc => return Ok(error::grpc_shaped(r)),
            // A denial to an allowed origin carries the CORS headers, so that
            // the page can read it.
            Flow::Respond(mut r) => {
                if let Some((c, origin)) = &plan.cors {
                    c.decorate(origin.clone(), r.headers_mut());
                }
                return Ok(r);
            }
            Flow::Fail(e) => return Err(e),
        }
    }

    // BackendTrafficPolicy rate limits, after authentication (so that rules
    // may select on what it established, e.g. a client-ID header).
    if let Some(rl) = &action.rate_limit {
        let req = crate::ratelimit::Req {
            method: &st.method,
            path: &st.path,
            headers: &st.headers,
            client,
        };
        plan.quota = rl.check(&req).await?;
    }
    // BackendTrafficPolicy fault injection: a delay, an abort.
    if let Some(f) = action.traffic.as_ref().and_then(|t| t.fault.as_ref())
        && let Some(r) = crate::faults::inject(f, grpc).await
    {
        log.flag = Some(Flag::FaultInjected);
        return Ok(r);
    }
    match action.filters.run(&mut st, &fcx, &mut plan) {
        Flow::Continue => {}
        Flow::Respond(r) => return Ok(r),
        Flow::Fail(e) => return Err(e),
    }
    let (picked, choice) = action
        .backends
        .pick_indexed()
        .ok_or_else(|| ProxyError::InvalidBackend("no backends".into()))?;
    log.stats = Some(routed.backend_stats(picked).clone());
    match choice.filters.run(&mut st, &fcx, &mut plan) {
        Flow::Continue => {}
        Flow::Respond(r) => return Ok(r),
        Flow::Fail(e) => return Err(e),
    }
    let target = match &choice.target {
        Target::Invalid(reason) => return Err(ProxyError::InvalidBackend(reason.to_string())),
        Target::Service(s) => s,
    };
    let fut = forward(
        st,
        plan,
        target,
        action,
        body,
        client_upgrade,
        grpc,
        cx,
        log,
        &body_watch,
    );
    // One awaited future either way (two `await`s would each keep a copy
    // of the forward future's state in this one).
    let res = MaybeTimeout::new(action.request_timeout, fut)
        .await
        .ok_or(ProxyError::Timeout)?;
    // However the exchange failed, a request body that timed out is why.
    match res {
        Err(_) if body_watch.timed_out() => Err(ProxyError::RequestTimeout),
        r => r,
    }
}

/// How an upstream exchange through hyper failed (the pool's and the shared
/// clients' errors, as the retry loop needs them).
enum SendError {
    /// `maxConnections` / `maxPendingRequests`: 503 `UO`.
    Overflow,
    /// Whether no connection was made, and the error.
    Failed(bool, String),
}

struct Attempt {
    resp: Response<ProxyBody>,
    /// The upstream side of a `101` (hyper client only).
    upgrade: Option<OnUpgrade>,
    guard: InflightGuard,
    ep: Arc<EndpointState>,
}

const MIRROR_TIMEOUT: Duration = Duration::from_secs(30);

#[allow(clippy::too_many_arguments)]
async fn forward<B>(
    st: ReqState,
    mut plan: Plan<'_>,
    target: &Arc<ServiceTarget>,
    action: &RuleAction,
    body: B,
    client_upgrade: Option<OnUpgrade>,
    grpc: bool,
    cx: &ConnCtx,
    log: &mut Log,
    body_watch: &Arc<BodyWatch>,
) -> Result<Response<ProxyBody>, ProxyError>
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    if target.endpoints.is_empty() {
        return Err(ProxyError::NoEndpoints);
    }
    let shared = &cx.port.shared;
    // gRPC bodies are streams: buffered only when a mirror needs a copy.
    let may_buffer = !grpc || !plan.mirrors.is_empty();
    let mut body = ReqBody::prepare(
        body,
        &st.headers,
        &shared.opts,
        may_buffer,
        log.stats.as_ref(),
    )
    .await?;
    if let ReqBody::Buffered(b) = &body {
        log.bytes_in = b.len() as u64;
    }
    for (m, copy) in plan.mirrors.drain(..) {
        match body.replay() {
            Some(b) => m.spawn(&shared.clients, copy, b, MIRROR_TIMEOUT, log.stats.clone()),
            None => tracing::debug!("request body too large to mirror"),
        }
    }
    let sticky = action
        .session
        .as_ref()
        .and_then(|s| s.token(&st.headers))
        .and_then(|t| target.endpoints.by_token(t))
        .cloned();
    // A consistent hash on a cookie the request lacks: generate it (and set
    // it on the response), so the client sticks from its next request on.
    let generated = match target.endpoints.balancer().hash_cookie() {
        Some((name, ttl)) if balance::cookie(&st.headers, name).is_none() => {
            let value = format!("{:032x}", rand::random::<u128>());
            let max_age = ttl.map(|t| format!("; Max-Age={t}")).unwrap_or_default();
            if let Ok(v) =
                HeaderValue::from_str(&format!("{name}={value}; Path=/; HttpOnly{max_age}"))
            {
                plan.cookies.push(v);
            }
            Some(value)
        }
        _ => None,
    };
    let client_addr = st.client;
    let h2 = (target.h2c || action.grpc || grpc) && client_upgrade.is_none();
    let scheme = if target.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let version = if h2 {
        Version::HTTP_2
    } else {
        Version::HTTP_11
    };
    let path_and_query = st.path_and_query();
    let replayable = body.replay().is_some();
    // Response compression is negotiated on the request's Accept-Encoding.
    let compress = action
        .traffic
        .as_ref()
        .and_then(|t| t.compression.as_ref())
        .and_then(|c| Some((c, crate::compress::negotiate(c, &st.headers)?)));
    let is_head = st.method == http::Method::HEAD;
    let mut headers = st.headers;
    headers.insert(header::HOST, st.host);
    let method = st.method;
    let case = st.case;
    let hyper_case = st.hyper_case;
    // Without retries there is one attempt: move the headers instead of cloning them.
    let single = !replayable || action.retry.as_ref().is_none_or(|r| r.max_retries() == 0);
    // Plain HTTP/1.1 without an upgrade goes through the lean client (but
    // not a request whose header case hyper recorded: hyper's client
    // writes it).
    let lean = !h2 && client_upgrade.is_none() && hyper_case.is_none();

    // A retry goes to another endpoint than the attempt before it, when there is one.
    let mut prev: Option<Arc<EndpointState>> = None;
    // The endpoint of the attempt under way, for outlier detection of timeouts.
    let current: arc_swap::ArcSwapOption<EndpointState> = Default::default();
    let eps = &target.endpoints;
    // The default response-header timeout, unless the route has its own
    // (`timeouts.backendRequest`); it starts once the request body is sent.
    let header_limit = action
        .backend_timeout
        .is_none()
        .then_some(shared.opts.upstream_header_timeout);
    let header_watch = (!replayable).then(|| body_watch.clone());
    let stats = log.stats.as_deref();
    let mut attempt = |n: u32| {
        if n > 0
            && let Some(s) = stats
        {
            s.retry();
        }
        let picked = match (&prev, &sticky) {
            (Some(p), _) => eps.pick_excluding(p),
            (None, Some(s)) => Some(s),
            (None, None) => eps.pick_for(
                &balance::PickCtx {
                    client: client_addr,
                    headers: &headers,
                },
                generated.as_deref(),
            ),
        };
        let ep = picked.cloned().expect("endpoints checked non-empty");
        prev = Some(ep.clone());
        current.store(Some(ep.clone()));
        // The circuit breaker: past `maxParallelRequests`, 503 at once.
        let guard = ep.try_acquire(eps.max_parallel_requests);
        if lean {
            let h1_body = match body.replay() {
                Some(b) => H1Body::Bytes(b),
                None => H1Body::Stream(body.for_attempt()),
            };
            let client = &shared.h1;
            let req =
                H1Client::prepare_cased(&method, &path_and_query, &headers, h1_body, case.as_ref());
            return Either::Left(async move {
                let guard = guard.ok_or(AttemptError::Overflow)?;
                let req = req.map_err(|e| AttemptError::Other(format!("{}: {e}", ep.addr)))?;
                match client
                    .send(ep.addr, req, eps.conn_policy(), target.tls.as_ref())
                    .await
                {
                    Ok(resp) => {
                        eps.record(&ep, Outcome::Status(resp.status().as_u16()));
                        Ok(Attempt {
                            resp: resp.map(body::boxed),
                            upgrade: None,
                            guard,
                            ep,
                        })
                    }
                    Err(H1Error::Body(b)) if b.is::<LengthLimitError>() => {
                        Err(AttemptError::TooLarge)
                    }
                    Err(H1Error::Overflow(_)) => Err(AttemptError::Overflow),
                    Err(e) => {
                        eps.record(&ep, Outcome::LocalFailure);
                        if e.is_connect() {
                            Err(AttemptError::Connect(format!("{}: {e}", ep.addr)))
                        } else {
                            Err(AttemptError::Other(format!("{}: {e}", ep.addr)))
                        }
                    }
                }
            });
        }
        let uri = Uri::builder()
            .scheme(scheme)
            .authority(ep.authority.clone())
            .path_and_query(path_and_query.as_str())
            .build();
        let req = uri.map(|uri| {
            let mut req = Request::new(body.for_attempt());
            *req.method_mut() = method.clone();
            *req.uri_mut() = uri;
            *req.version_mut() = version;
            if let Some(ext) = hyper_case.as_ref().filter(|_| !h2) {
                *req.extensions_mut() = ext.clone();
            }
            *req.headers_mut() = if single {
                std::mem::take(&mut headers)
            } else {
                headers.clone()
            };
            req
        });
        // A backend with a connection policy: its own pool, which applies
        // the policy (`backend::hyper_pool`); else the shared clients.
        let policy = eps.conn_policy().cloned();
        let sent = req.map(|req| match policy {
            Some(p) => {
                let tls = target.tls.clone();
                let defaults = hyper_pool::Defaults {
                    connect: shared.opts.connect_timeout,
                    idle: shared.opts.upstream_idle_timeout,
                };
                let addr = ep.addr;
                // Boxed: the pool's future (connect, TLS handshake) is
                // large, and unboxed it would make every attempt's future
                // as large, to be copied on each move even on the lean path.
                Either::Left(async move {
                    Box::pin(hyper_pool::send(&p, tls.as_ref(), h2, addr, req, defaults))
                        .await
                        .map_err(|e| match e {
                            hyper_pool::PoolError::Overflow(_) => SendError::Overflow,
                            e => SendError::Failed(e.is_connect(), e.to_string()),
                        })
                })
            }
            None => {
                let f = match &target.tls {
                    Some(tls) => tls.send(h2, req),
                    None => shared.clients.request(h2, req),
                };
                Either::Right(async move {
                    match f.await {
                        Ok(resp) => Ok(resp.map(body::boxed)),
                        Err(e) => Err(SendError::Failed(e.is_connect(), e.to_string())),
                    }
                })
            }
        });
        Either::Right(async move {
            let guard = guard.ok_or(AttemptError::Overflow)?;
            let sent = sent.map_err(|e| AttemptError::Other(e.to_string()))?;
            match sent.await {
                Ok(mut resp) => {
                    eps.record(&ep, Outcome::Status(resp.status().as_u16()));
                    let upgrade = (resp.status() == StatusCode::SWITCHING_PROTOCOLS)
                        .then(|| hyper::upgrade::on(&mut resp));
                    Ok(Attempt {
                        resp,
                        upgrade,
                        guard,
                        ep,
                    })
                }
                Err(SendError::Overflow) => Err(AttemptError::Overflow),
                Err(SendError::Failed(connect, e)) => {
                    eps.record(&ep, Outcome::LocalFailure);
                    if connect {
                        Err(AttemptError::Connect(format!("{}: {e}", ep.addr)))
                    } else {
                        Err(AttemptError::Other(format!("{}: {e}", ep.addr)))
                    }
                }
            }
        })
    };
    let bounded = |n: u32| {
        HeaderTimeout::new(attempt(n), header_limit, header_watch.clone()).map(|r| {
            r.unwrap_or_else(|| {
                if let Some(ep) = current.load().as_deref() {
                    eps.record(ep, Outcome::LocalFailure);
                }
                Err(AttemptError::Timeout)
            })
        })
    };
    let upstream_start = Instant::now();
    let Attempt {
        resp,
        upgrade,
        guard,
        ep,
    } = retry::run(
        action.retry.as_ref(),
        replayable,
        action.backend_timeout,
        bounded,
        |a| a.resp.status(),
        || eps.try_retry(),
    )
    .await?;
    log.upstream = Some(ep.addr);
    log.upstream_time = Some(upstream_start.elapsed());

    let mut resp = resp;
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let (Some(client_upgrade), Some(upstream_upgrade)) = (client_upgrade, upgrade) else {
            return Err(ProxyError::Upstream("unexpected 101 from upstream".into()));
        };
        websocket::spawn_tunnel(client_upgrade, upstream_upgrade, cx.drain.clone());
        let (mut parts, _) = resp.into_parts();
        forward::strip_hop_by_hop(&mut parts.headers, true);
        plan.apply_response(&mut parts.headers);
        return Ok(Response::from_parts(
            parts,
            Guarded::wrap(body::empty(), guard),
        ));
    }
    forward::strip_hop_by_hop(resp.headers_mut(), false);
    plan.apply_response(resp.headers_mut());
    if let Some(sp) = &action.session
        && sticky.as_ref().is_none_or(|s| s.addr != ep.addr)
    {
        sp.set(resp.headers_mut(), &ep.token);
    }
    if let Some(t) = action.traffic.as_ref().filter(|t| !t.overrides.is_empty()) {
        resp = crate::faults::override_response(&t.overrides, resp);
    }
    if let Some((cfg, with)) = compress {
        resp = crate::compress::apply(cfg, with, is_head, resp);
    }
    let rec = log.recorder(resp.status());
    let (parts, upstream) = resp.into_parts();
    Ok(Response::from_parts(
        parts,
        Observed::wrap(upstream, guard, rec),
    ))
}
