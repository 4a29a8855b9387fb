//! SecurityPolicy enforcement on the request path.
//!
//! [`Security`] is compiled from the IR at apply time, one per policy and
//! route rule; the handler runs [`Security::check`] after route matching and
//! before the route's filters. The order is fixed and documented:
//!
//! 1. **client address** ([`crate::client_ip::ClientIpDetection::client_addr`]: the TCP peer unless trusted hops or CIDRs are configured);
//! 2. **invalid policy**: a policy whose references did not resolve answers
//!    500 (fail closed);
//! 3. **CORS**: a preflight (`OPTIONS` + `Origin` + `Access-Control-Request-Method`)
//!    is answered here, only when the policy configures CORS; any other
//!    `OPTIONS` goes through authentication like every request;
//! 4. **authentication**, every configured method must pass, in this order:
//!    OIDC (first: it answers its callback and logout paths itself, and with
//!    `forwardAccessToken` a JWT provider may then validate the access token)
//!    → JWT → API key → Basic → external authorization (last, so it sees the
//!    identity headers the others set); failure: 401 with `WWW-Authenticate`
//!    (OIDC: a 302 to the provider for browsers, 401 for API requests;
//!    ext-auth: the service's own answer). With `bodyToExtAuth` the handler
//!    has buffered the request body before this step (413 past the limit);
//! 5. **authorization** (`clientCIDRs`, JWT claims and scopes, headers): 403;
//! 6. then the route's filters, then the backend.
//!
//! The path every step sees is the canonical path that routing matched and
//! that is forwarded ([`portcullis_route::canonical_path`]).

// A denial is the answer itself, built once per refused request: boxing it buys nothing.
#![allow(clippy::result_large_err)]

pub mod apikey;
pub mod authz;
pub mod basic;
pub mod ext_authz_pb;
pub mod extauth;
mod extauth_grpc;
pub mod jwks;
pub mod jwt;
pub mod oidc;
pub mod outbound;
pub mod session;
pub mod verified;

/// A validated token's claims, shared with the verified-token cache.
pub type Claims = Arc<serde_json::Map<String, serde_json::Value>>;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, header};
use portcullis_ir as ir;

use crate::backend::pool::Clients;
use crate::body::{self, ProxyBody};
use crate::cors::CorsPolicy;
use crate::filters::{Flow, Plan, ReqState};

pub use jwks::JwksCache;

/// A compiled SecurityPolicy.
#[derive(Debug)]
pub struct Security {
    policy: Box<str>,
    invalid: Option<Box<str>>,
    cors: Option<CorsPolicy>,
    jwt: Option<jwt::JwtAuth>,
    api_key: Option<apikey::ApiKeyAuth>,
    basic: Option<basic::BasicAuth>,
    oidc: Option<oidc::OidcAuth>,
    ext_auth: Option<extauth::ExtAuth>,
    authz: Option<authz::Authz>,
    /// `portcullis_auth_decisions_total` of this policy (atomics).
    stats: portcullis_obs::metrics::AuthStats,
}

/// What the authentication steps need to know besides [`ReqState`].
#[derive(Debug, Clone, Copy)]
pub struct AuthCtx<'b> {
    /// The TCP peer.
    pub peer: SocketAddr,
    /// The listener's port.
    pub listener_port: u16,
    /// `http` or `https` (this hop).
    pub scheme: &'static str,
    /// The request's HTTP version.
    pub version: http::Version,
    /// The buffered request body (`bodyToExtAuth`).
    pub body: Option<&'b Bytes>,
}

/// What the authentication steps learnt about the request.
#[derive(Debug, Default)]
pub struct Identity {
    /// Claims of the validated JWT, with the provider that validated it.
    pub jwt: Option<(Arc<str>, Claims)>,
}

impl Security {
    /// Compile; a part that does not compile makes the whole policy invalid (500).
    pub fn new(s: &ir::Security, jwks: &JwksCache) -> Self {
        let mut invalid = s.invalid.clone();
        let mut note = |e: String| {
            invalid.get_or_insert(e);
        };
        let cors = s.cors.as_ref().and_then(|c| {
            CorsPolicy::new(c)
                .map_err(|e| note(format!("cors: {e}")))
                .ok()
        });
        let jwt = s.jwt.as_ref().and_then(|j| {
            jwt::JwtAuth::new(j, jwks)
                .map_err(|e| note(format!("jwt: {e}")))
                .ok()
        });
        let api_key = s.api_key.as_ref().and_then(|a| {
            apikey::ApiKeyAuth::new(a)
                .map_err(|e| note(format!("apiKeyAuth: {e}")))
                .ok()
        });
        let basic = s.basic.as_ref().and_then(|b| {
            basic::BasicAuth::new(b)
                .map_err(|e| note(format!("basicAuth: {e}")))
                .ok()
        });
        let oidc = s.oidc.as_ref().and_then(|o| {
            oidc::OidcAuth::new(o, &s.policy, jwks)
                .map_err(|e| note(format!("oidc: {e}")))
                .ok()
        });
        let ext_auth = s.ext_auth.as_ref().and_then(|e| {
            extauth::ExtAuth::new(e)
                .map_err(|e| note(format!("extAuth: {e}")))
                .ok()
        });
        let authz = s.authorization.as_ref().and_then(|a| {
            authz::Authz::new(a)
                .map_err(|e| note(format!("authorization: {e}")))
                .ok()
        });
        Security {
            stats: portcullis_obs::metrics().auth(&s.policy),
            policy: s.policy.as_str().into(),
            invalid: invalid.map(Into::into),
            cors,
            jwt,
            api_key,
            basic,
            oidc,
            ext_auth,
            authz,
        }
    }

    /// `bodyToExtAuth.maxRequestBytes`: buffer the request body up to this
    /// many bytes before [`Security::check`] (the handler answers 413 past it).
    pub fn body_limit(&self) -> Option<u32> {
        self.ext_auth
            .as_ref()
            .and_then(extauth::ExtAuth::body_limit)
    }

    /// Run the policy on a request (see the module docs for the order),
    /// counting the decision.
    pub async fn check<'a>(
        &'a self,
        st: &mut ReqState,
        client: IpAddr,
        plan: &mut Plan<'a>,
        clients: &Clients,
        cx: &AuthCtx<'_>,
    ) -> Flow {
        let flow = self.decide(st, client, plan, clients, cx).await;
        let counter = match &flow {
            Flow::Continue => &self.stats.allowed,
            Flow::Respond(r)
                if r.status() == StatusCode::INTERNAL_SERVER_ERROR && self.invalid.is_some() =>
            {
                &self.stats.invalid
            }
            Flow::Respond(_)
                if self.cors.is_some() && CorsPolicy::is_preflight(&st.method, &st.headers) =>
            {
                &self.stats.preflight
            }
            Flow::Respond(_) | Flow::Fail(_) => &self.stats.denied,
        };
        counter.inc();
        flow
    }

    async fn decide<'a>(
        &'a self,
        st: &mut ReqState,
        client: IpAddr,
        plan: &mut Plan<'a>,
        clients: &Clients,
        cx: &AuthCtx<'_>,
    ) -> Flow {
        if let Some(reason) = &self.invalid {
            tracing::warn!(policy = %self.policy, %reason, "invalid SecurityPolicy: answering 500");
            return Flow::Respond(plain(
                StatusCode::INTERNAL_SERVER_ERROR,
                "invalid security policy\n",
                None,
            ));
        }
        if let Some(c) = &self.cors {
            if CorsPolicy::is_preflight(&st.method, &st.headers) {
                return Flow::Respond(c.preflight(&st.headers));
            }
            if let Some(origin) = c.allowed_origin(&st.headers) {
                plan.cors = Some((c, origin));
            }
        }
        let mut id = Identity::default();
        if let Some(o) = &self.oidc
            && let Err(r) = o.check(st, plan, cx).await
        {
            return Flow::Respond(r);
        }
        if let Some(j) = &self.jwt
            && let Err(r) = j.check(st, &mut id)
        {
            return Flow::Respond(r);
        }
        if let Some(a) = &self.api_key
            && let Err(r) = a.check(st)
        {
            return Flow::Respond(r);
        }
        if let Some(b) = &self.basic
            && let Err(r) = b.check(st)
        {
            return Flow::Respond(r);
        }
        if let Some(e) = &self.ext_auth {
            match e.check(st, clients, cx).await {
                Ok(to_client) => plan.auth_headers.extend(to_client),
                Err(r) => return Flow::Respond(r),
            }
        }
        if let Some(a) = &self.authz
            && !a.allows(client, &st.headers, &id)
        {
            return Flow::Respond(plain(StatusCode::FORBIDDEN, "RBAC: access denied\n", None));
        }
        Flow::Continue
    }
}

/// Buffer a request body for `bodyToExtAuth`: a `Content-Length` or a body
/// past `max` bytes is 413 (before the authorization service is asked, as
/// Envoy's `ext_authz`, whatever `failOpen` says).
pub async fn buffer_body<B>(
    body: B,
    headers: &HeaderMap,
    max: u32,
) -> Result<Bytes, crate::error::ProxyError>
where
    B: http_body::Body<Data = Bytes> + Send,
    B::Error: Into<crate::body::BoxError>,
{
    use http_body_util::BodyExt;
    let max = max as usize;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    if declared.is_some_and(|l| l > max as u64) {
        return Err(crate::error::ProxyError::PayloadTooLarge);
    }
    match http_body_util::Limited::new(body, max).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => {
            Err(crate::error::ProxyError::PayloadTooLarge)
        }
        Err(_) => Err(crate::error::ProxyError::BadRequest("request body")),
    }
}

/// A short plain-text answer from the gateway.
pub(crate) fn plain(
    status: StatusCode,
    text: &'static str,
    challenge: Option<HeaderValue>,
) -> Response<ProxyBody> {
    let mut r = Response::new(body::full(Bytes::from_static(text.as_bytes())));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    if let Some(c) = challenge {
        r.headers_mut().insert(header::WWW_AUTHENTICATE, c);
    }
    r
}

/// Where a credential was found, to remove it before the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Found {
    Header(HeaderName),
    Cookie(String),
    Param(String),
}

/// The first credential found in `src`: headers (with their prefix), then
/// cookies, then query parameters.
pub(crate) fn extract(src: &ir::security::TokenSources, st: &ReqState) -> Option<(String, Found)> {
    for (name, prefix) in &src.headers {
        for v in st.headers.get_all(name.as_str()) {
            let Ok(v) = v.to_str() else { continue };
            let token = if prefix.is_empty() {
                Some(v)
            } else if v.len() >= prefix.len() && v[..prefix.len()].eq_ignore_ascii_case(prefix) {
                Some(&v[prefix.len()..])
            } else {
                None
            };
            if let Some(t) = token.map(str::trim).filter(|t| !t.is_empty())
                && let Ok(n) = HeaderName::from_bytes(name.as_bytes())
            {
                return Some((t.to_string(), Found::Header(n)));
            }
        }
    }
    for c in &src.cookies {
        if let Some(v) = cookie(&st.headers, c) {
            return Some((v, Found::Cookie(c.clone())));
        }
    }
    if let Some(q) = &st.query {
        for p in &src.params {
            if let Some(v) = query_param(q, p) {
                return Some((v, Found::Param(p.clone())));
            }
        }
    }
    None
}

/// The value of cookie `name`.
pub(crate) fn cookie(h: &HeaderMap, name: &str) -> Option<String> {
    h.get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim().trim_matches('"').to_string())
        .filter(|v| !v.is_empty())
}

fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The (decoded) value of query parameter `name`.
pub(crate) fn query_param(q: &str, name: &str) -> Option<String> {
    q.split('&')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (percent_decode(k) == name).then(|| percent_decode(v))
        })
        .find(|v| !v.is_empty())
}

/// Remove a credential from the request.
pub(crate) fn strip(st: &mut ReqState, found: &Found) {
    match found {
        Found::Header(n) => {
            st.headers.remove(n);
        }
        Found::Cookie(name) => {
            let kept: Vec<String> = st
                .headers
                .get_all(header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .map(str::trim)
                .filter(|kv| !kv.is_empty() && kv.split_once('=').is_none_or(|(k, _)| k != name))
                .map(str::to_string)
                .collect();
            st.headers.remove(header::COOKIE);
            if !kept.is_empty()
                && let Ok(v) = HeaderValue::from_str(&kept.join("; "))
            {
                st.headers.insert(header::COOKIE, v);
            }
        }
        Found::Param(name) => {
            if let Some(q) = &st.query {
                let kept: Vec<&str> = q
                    .split('&')
                    .filter(|kv| {
                        percent_decode(kv.split_once('=').map_or(*kv, |(k, _)| k)) != *name
                    })
                    .collect();
                st.query = (!kept.is_empty()).then(|| kept.join("&"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_and_cookies() {
        assert_eq!(
            query_param("a=1&key=abc%2Bd&b", "key").as_deref(),
            Some("abc+d")
        );
        assert_eq!(query_param("a=1", "key"), None);
        assert_eq!(query_param("k%65y=v", "key").as_deref(), Some("v"));
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, "a=1; token=xyz; b=2".parse().unwrap());
        assert_eq!(cookie(&h, "token").as_deref(), Some("xyz"));
        assert_eq!(cookie(&h, "c"), None);
    }
}
