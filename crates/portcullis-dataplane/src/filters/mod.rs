//! HTTP filters, compiled at apply time and run in spec order per request.
//!
//! Rule-level filters run first, then the chosen backend's backendRef-level
//! filters. A redirect or a CORS preflight answers at once; an invalid
//! filter answers 500.

pub mod headers;
pub mod redirect;
pub mod rewrite;

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Method, Response};
use portcullis_ir::{HttpFilter, PathModifier};

use crate::body::ProxyBody;
use crate::cors::CorsPolicy;
use crate::error::ProxyError;
use crate::mirror::{MirrorCopy, MirrorFilter};
use crate::table::BuildCtx;
use headers::HeaderMods;
use redirect::{RedirectFilter, RedirectInput};

/// One compiled filter.
#[derive(Debug)]
pub enum Filter {
    /// RequestHeaderModifier.
    RequestHeaders(HeaderMods),
    /// ResponseHeaderModifier.
    ResponseHeaders(HeaderMods),
    /// RequestRedirect.
    Redirect(RedirectFilter),
    /// URLRewrite.
    Rewrite {
        /// New host.
        hostname: Option<HeaderValue>,
        /// Path modifier.
        path: Option<PathModifier>,
    },
    /// RequestMirror.
    Mirror(MirrorFilter),
    /// CORS.
    Cors(Arc<CorsPolicy>),
    /// Unresolvable filter: 500.
    Invalid(Box<str>),
}

/// An ordered list of filters.
#[derive(Debug, Default)]
pub struct Filters(Box<[Filter]>);

impl Filters {
    /// Compile an IR list; a filter that does not compile becomes [`Filter::Invalid`].
    pub fn new(list: &[HttpFilter], cx: &BuildCtx<'_>) -> Self {
        Filters(list.iter().map(|f| compile(f, cx)).collect())
    }

    /// Whether the list is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether the list contains a redirect (a rule with one needs no backend).
    pub fn has_redirect(&self) -> bool {
        self.0.iter().any(|f| matches!(f, Filter::Redirect(_)))
    }
}

fn compile(f: &HttpFilter, cx: &BuildCtx<'_>) -> Filter {
    let r = match f {
        HttpFilter::RequestHeaderModifier(m) => HeaderMods::new(m).map(Filter::RequestHeaders),
        HttpFilter::ResponseHeaderModifier(m) => HeaderMods::new(m).map(Filter::ResponseHeaders),
        HttpFilter::RequestRedirect(r) => RedirectFilter::new(r).map(Filter::Redirect),
        HttpFilter::UrlRewrite(u) => {
            match u.hostname.as_deref().map(HeaderValue::from_str).transpose() {
                Ok(hostname) => Ok(Filter::Rewrite {
                    hostname,
                    path: u.path.clone(),
                }),
                Err(e) => Err(format!("rewrite hostname: {e}")),
            }
        }
        HttpFilter::RequestMirror(m) => Ok(Filter::Mirror(MirrorFilter::new(m, cx))),
        HttpFilter::Cors(c) => CorsPolicy::new(c).map(|p| Filter::Cors(Arc::new(p))),
        HttpFilter::Invalid { reason } => Err(reason.clone()),
    };
    r.unwrap_or_else(|e| Filter::Invalid(e.into()))
}

/// The request as the filters see and change it.
#[derive(Debug)]
pub struct ReqState {
    /// Method.
    pub method: Method,
    /// Host header to forward (the request's, or a rewrite's).
    pub host: HeaderValue,
    /// Request host without port (for redirects).
    pub host_name: String,
    /// Canonical path, possibly rewritten.
    pub path: String,
    /// Query string.
    pub query: Option<String>,
    /// Request headers.
    pub headers: HeaderMap,
    /// The client address (see `client_ip`).
    pub client: std::net::IpAddr,
    /// The request's header names as the client spelled them
    /// (`http1.preserveHeaderCase`), for the HTTP/1.1 upstream head.
    pub case: Option<crate::header_case::HeaderCase>,
    /// A request hyper parsed on a port with `http1.preserveHeaderCase`:
    /// its extensions, which carry hyper's own record of the names' case
    /// (private to hyper), handed to the upstream request so that hyper's
    /// client writes them so.
    pub hyper_case: Option<http::Extensions>,
}

impl ReqState {
    /// Path and query for the upstream request line.
    pub fn path_and_query(&self) -> String {
        match &self.query {
            Some(q) => format!("{}?{}", self.path, q),
            None => self.path.clone(),
        }
    }
}

/// Facts about where the request arrived and what it matched.
#[derive(Debug)]
pub struct FilterCtx<'a> {
    /// `http` or `https`.
    pub scheme: &'a str,
    /// Listener port.
    pub listener_port: u16,
    /// Prefix of the matched PathPrefix rule.
    pub matched_prefix: Option<&'a str>,
}

/// What filters left to do on the response, and mirrors to send.
#[derive(Debug, Default)]
pub struct Plan<'a> {
    /// Response header modifiers, in order.
    pub response_headers: Vec<&'a HeaderMods>,
    /// CORS headers to add, with the allowed origin.
    pub cors: Option<(&'a CorsPolicy, HeaderValue)>,
    /// Mirrors selected for this request, with the request as they copy it.
    pub mirrors: Vec<(&'a MirrorFilter, MirrorCopy)>,
    /// The `RateLimit-*` fields of the tightest rate limit that applied.
    pub quota: Option<crate::error::Quota>,
    /// `Set-Cookie` values to add (a generated consistent-hash cookie, a
    /// refreshed OIDC session).
    pub cookies: Vec<HeaderValue>,
    /// Headers an authorization service asked to add to the answer
    /// (gRPC ext auth `response_headers_to_add`).
    pub auth_headers: Vec<(http::HeaderName, HeaderValue)>,
}

impl Plan<'_> {
    /// Apply response-side changes.
    pub fn apply_response(&self, h: &mut HeaderMap) {
        for m in &self.response_headers {
            m.apply(h);
        }
        if let Some((c, origin)) = &self.cors {
            c.decorate(origin.clone(), h);
        }
        if let Some(q) = &self.quota {
            q.decorate(h, false);
        }
        for c in &self.cookies {
            h.append(http::header::SET_COOKIE, c.clone());
        }
        for (n, v) in &self.auth_headers {
            h.append(n.clone(), v.clone());
        }
    }
}

/// The outcome of running filters.
#[derive(Debug)]
pub enum Flow {
    /// Go on to the backend.
    Continue,
    /// Answer with this response (redirect, preflight).
    Respond(Response<ProxyBody>),
    /// Answer with an error.
    Fail(ProxyError),
}

impl Filters {
    /// Run the filters on a request.
    pub fn run<'a>(&'a self, st: &mut ReqState, cx: &FilterCtx<'_>, plan: &mut Plan<'a>) -> Flow {
        for f in self.0.iter() {
            match f {
                Filter::RequestHeaders(m) => m.apply(&mut st.headers),
                Filter::ResponseHeaders(m) => plan.response_headers.push(m),
                Filter::Redirect(r) => {
                    let input = RedirectInput {
                        scheme: cx.scheme,
                        host: &st.host_name,
                        listener_port: cx.listener_port,
                        path: &st.path,
                        query: st.query.as_deref(),
                        matched_prefix: cx.matched_prefix,
                    };
                    return Flow::Respond(r.response(&input));
                }
                Filter::Rewrite { hostname, path } => {
                    if let Some(h) = hostname {
                        st.host = h.clone();
                    }
                    match path {
                        Some(PathModifier::ReplaceFullPath(p)) => st.path.clone_from(p),
                        Some(PathModifier::ReplacePrefixMatch(r)) => {
                            if let Some(prefix) = cx.matched_prefix {
                                st.path = rewrite::replace_prefix(&st.path, prefix, r);
                            }
                        }
                        None => {}
                    }
                }
                Filter::Mirror(m) => {
                    if m.selected() {
                        let mut headers = st.headers.clone();
                        headers.insert(http::header::HOST, st.host.clone());
                        let copy = MirrorCopy {
                            method: st.method.clone(),
                            path_and_query: st.path_and_query(),
                            headers,
                        };
                        plan.mirrors.push((m, copy));
                    }
                }
                Filter::Cors(c) => {
                    if CorsPolicy::is_preflight(&st.method, &st.headers) {
                        return Flow::Respond(c.preflight(&st.headers));
                    }
                    if let Some(origin) = c.allowed_origin(&st.headers) {
                        plan.cors = Some((c, origin));
                    }
                }
                Filter::Invalid(reason) => {
                    return Flow::Fail(ProxyError::InvalidFilter(reason.to_string()));
                }
            }
        }
        Flow::Continue
    }
}
