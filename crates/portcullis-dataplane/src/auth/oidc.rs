//! OpenID Connect (`oidc`): the authorization-code flow with PKCE (`S256`),
//! `state` and `nonce`, and a session held in a sealed cookie
//! ([`super::session`]: AES-256-GCM, a key derived from the Secret's
//! `session-key`, else a per-process key).
//!
//! On a request of a rule the policy covers, in this order:
//! 1. **callback** (the path of `redirectURL`, default `/oauth2/callback`):
//!    the `state` must equal the one in the sealed login-state cookie (10
//!    minutes); the code is exchanged at the token endpoint with the PKCE
//!    verifier and the client secret (`client_secret_basic`, or
//!    `client_secret_post` when the provider only lists that); the ID token
//!    must verify with the provider's JWKS (`jwks_uri`; an unknown `kid`
//!    refetches, at most once a second) and have `iss` = the issuer, `aud` ∋
//!    `clientID`, a valid `exp`, and the login's `nonce`. Then the session
//!    cookie is set and the browser sent back to the page it first asked
//!    for (a local path only). Any failure: 401.
//! 2. **logout** (`logoutPath`, default `/logout`): the session cookie is
//!    cleared and the browser sent to the provider's `end_session_endpoint`
//!    (with `client_id`) when discovery listed one, else to `/`.
//! 3. **session**: a session cookie that opens and whose access token has not
//!    expired (`expires_in`, else the ID token's `exp`) lets the request
//!    through; with `refreshToken: true` an expired one is refreshed with
//!    the refresh token (the new session cookie rides on the response). The
//!    gateway's cookies are removed from the upstream request;
//!    `forwardAccessToken: true` sets `Authorization: Bearer <access token>`.
//! 4. **no valid session** (none, expired, tampered): a browser request (its
//!    `Accept` names `text/html`, and no `denyRedirect` header matches) is
//!    redirected (302) to the authorization endpoint with a new `state`,
//!    `nonce` and PKCE challenge; any other request gets 401.
//!
//! The provider's metadata comes from `<issuer>/.well-known/openid-configuration`
//! (fetched on first use, kept while a policy uses the issuer; its `issuer`
//! must match), with `authorizationEndpoint` / `tokenEndpoint` overriding.
//! The default redirect URL is `<X-Forwarded-Proto>://<Host>/oauth2/callback`
//! (`X-Forwarded-Proto` as the client-address step left it: this hop's
//! scheme unless a trusted hop said otherwise).
//! Tokens and the client secret are never logged.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, header};
use portcullis_ir::SecretString;
use portcullis_ir::security as ir;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::jwks::Keys;
use super::session::{SessionKey, random_token, s256, short_hash};
use super::{AuthCtx, Found, cookie, plain, query_param, strip};
use crate::body::{self, ProxyBody};
use crate::filters::{Plan, ReqState};

/// Default callback path (the path of the default redirect URL).
pub const DEFAULT_CALLBACK_PATH: &str = "/oauth2/callback";
/// How long a login may take between the redirect and the callback.
const LOGIN_TTL_S: u64 = 600;
/// Access-token lifetime when neither `expires_in` nor the ID token's `exp` say.
const DEFAULT_TOKEN_TTL_S: u64 = 3600;
/// Timeout of one call to the provider.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest provider answer read.
const MAX_ANSWER: usize = 1 << 20;
/// Keys older than this are refetched before an ID token is verified.
const KEYS_TTL: Duration = Duration::from_secs(300);

/// Why a step of the flow failed (logged; never carries a token or secret).
#[derive(Debug, thiserror::Error)]
pub enum OidcError {
    /// Discovery or JWKS fetch failed.
    #[error("provider metadata: {0}")]
    Discovery(String),
    /// The token endpoint refused or failed.
    #[error("token endpoint: {0}")]
    Token(String),
    /// The ID token did not verify.
    #[error("ID token: {0}")]
    IdToken(String),
    /// The callback did not match a login in progress.
    #[error("callback: {0}")]
    Callback(&'static str),
}

/// Provider metadata.
#[derive(Debug)]
struct Meta {
    issuer: String,
    authorization_endpoint: String,
    token_endpoint: String,
    jwks_uri: String,
    end_session_endpoint: Option<String>,
    /// The provider lists `client_secret_post` and not `client_secret_basic`.
    secret_post: bool,
}

/// One provider, shared by every policy naming the same issuer and overrides.
#[derive(Debug)]
pub struct Provider {
    issuer: String,
    authorization_endpoint: Option<String>,
    token_endpoint: Option<String>,
    meta: tokio::sync::OnceCell<Meta>,
    keys: Mutex<(Arc<Keys>, Option<Instant>)>,
}

type ProviderKey = (String, Option<String>, Option<String>);

/// Providers by issuer and overrides, shared across policies and applies.
#[derive(Debug, Default)]
pub struct Providers(Mutex<HashMap<ProviderKey, Weak<Provider>>>);

impl Providers {
    fn get(&self, o: &ir::Oidc) -> Arc<Provider> {
        let mut map = self.0.lock().expect("oidc providers lock");
        map.retain(|_, w| w.strong_count() > 0);
        let key = (
            o.issuer.clone(),
            o.authorization_endpoint.clone(),
            o.token_endpoint.clone(),
        );
        if let Some(p) = map.get(&key).and_then(Weak::upgrade) {
            return p;
        }
        let p = Arc::new(Provider {
            issuer: o.issuer.clone(),
            authorization_endpoint: o.authorization_endpoint.clone(),
            token_endpoint: o.token_endpoint.clone(),
            meta: tokio::sync::OnceCell::new(),
            keys: Mutex::new((Arc::new(Keys::default()), None)),
        });
        map.insert(key, Arc::downgrade(&p));
        p
    }
}

async fn get_json(url: &str) -> Result<serde_json::Value, String> {
    let mut h = HeaderMap::new();
    h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
    let a = tokio::time::timeout(
        CALL_TIMEOUT,
        super::outbound::call(Method::GET, url, h, Bytes::new(), MAX_ANSWER),
    )
    .await
    .map_err(|_| "timed out".to_string())?
    .map_err(|e| e.to_string())?;
    if !a.status.is_success() {
        return Err(format!("{url}: status {}", a.status));
    }
    serde_json::from_slice(&a.body).map_err(|e| format!("{url}: not JSON: {e}"))
}

impl Provider {
    async fn meta(&self) -> Result<&Meta, OidcError> {
        self.meta
            .get_or_try_init(|| self.discover())
            .await
            .map_err(OidcError::Discovery)
    }

    async fn discover(&self) -> Result<Meta, String> {
        let url = format!(
            "{}/.well-known/openid-configuration",
            self.issuer.trim_end_matches('/')
        );
        let doc = get_json(&url).await?;
        let field = |n: &str| doc.get(n).and_then(|v| v.as_str()).map(str::to_string);
        let issuer = field("issuer").ok_or("discovery document without issuer")?;
        if issuer.trim_end_matches('/') != self.issuer.trim_end_matches('/') {
            return Err(format!(
                "discovery names issuer {issuer:?}, not {:?}",
                self.issuer
            ));
        }
        let need = |n: &str, over: &Option<String>| {
            over.clone()
                .or_else(|| field(n))
                .ok_or_else(|| format!("discovery document without {n}"))
        };
        let methods: Vec<&str> = doc
            .get("token_endpoint_auth_methods_supported")
            .and_then(|v| v.as_array())
            .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        Ok(Meta {
            authorization_endpoint: need("authorization_endpoint", &self.authorization_endpoint)?,
            token_endpoint: need("token_endpoint", &self.token_endpoint)?,
            jwks_uri: need("jwks_uri", &None)?,
            end_session_endpoint: field("end_session_endpoint"),
            secret_post: methods.contains(&"client_secret_post")
                && !methods.contains(&"client_secret_basic"),
            issuer,
        })
    }

    /// The key set, fetched when missing, old, or (`force`) a `kid` was unknown.
    async fn keys(&self, meta: &Meta, force: bool) -> Result<Arc<Keys>, OidcError> {
        {
            let g = self.keys.lock().expect("oidc keys lock");
            if let Some(at) = g.1 {
                let age = at.elapsed();
                if age < KEYS_TTL && (!force || age < Duration::from_secs(1)) {
                    return Ok(g.0.clone());
                }
            }
        }
        let doc = get_json(&meta.jwks_uri)
            .await
            .map_err(OidcError::Discovery)?;
        let keys = Arc::new(Keys::parse(doc.to_string().as_bytes()).map_err(OidcError::Discovery)?);
        *self.keys.lock().expect("oidc keys lock") = (keys.clone(), Some(Instant::now()));
        Ok(keys)
    }
}

/// The sealed session.
#[derive(Serialize, Deserialize)]
struct Session {
    /// Access token.
    at: String,
    /// Refresh token (kept only with `refreshToken: true`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    rt: Option<String>,
    /// Access-token expiry, Unix seconds.
    exp: u64,
}

/// The sealed login in progress.
#[derive(Serialize, Deserialize)]
struct Login {
    state: String,
    nonce: String,
    verifier: String,
    /// Path and query to return to.
    back: String,
    exp: u64,
}

/// The token endpoint's answer.
#[derive(Deserialize)]
struct Tokens {
    access_token: String,
    #[serde(default)]
    id_token: Option<String>,
    #[serde(default)]
    refresh_token: Option<String>,
    #[serde(default)]
    expires_in: Option<u64>,
}

#[derive(Debug)]
struct Deny {
    name: HeaderName,
    kind: ir::StringMatchKind,
    value: String,
    re: Option<regex::Regex>,
}

impl Deny {
    fn matches(&self, h: &HeaderMap) -> bool {
        h.get_all(&self.name).iter().any(|v| {
            let Ok(v) = v.to_str() else { return false };
            match self.kind {
                ir::StringMatchKind::Exact => v == self.value,
                ir::StringMatchKind::Prefix => v.starts_with(&self.value),
                ir::StringMatchKind::Suffix => v.ends_with(&self.value),
                ir::StringMatchKind::RegularExpression => {
                    self.re.as_ref().is_some_and(|r| r.is_match(v))
                }
            }
        })
    }
}

/// A compiled `oidc`.
#[derive(Debug)]
pub struct OidcAuth {
    provider: Arc<Provider>,
    client_id: String,
    client_secret: SecretString,
    scope: String,
    redirect_url: Option<String>,
    callback_path: String,
    logout_path: String,
    forward_access_token: bool,
    refresh: bool,
    cookie_domain: Option<String>,
    deny: Vec<Deny>,
    session_cookie: String,
    state_cookie: String,
    /// `Some`: derived from the Secret's `session-key`; `None`: the process key.
    key: Option<SessionKey>,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `application/x-www-form-urlencoded` / query component encoding.
fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn form(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", enc(k), enc(v)))
        .collect::<Vec<_>>()
        .join("&")
}

/// The path of an absolute URL (`/` when it has none).
fn url_path(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let path = rest.find('/').map_or("/", |i| &rest[i..]);
    path.split(['?', '#']).next().unwrap_or("/").to_string()
}

fn redirect(location: &str, cookies: &[HeaderValue]) -> Response<ProxyBody> {
    let mut r = Response::new(body::empty());
    *r.status_mut() = StatusCode::FOUND;
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(location) {
        h.insert(header::LOCATION, v);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    for c in cookies {
        h.append(header::SET_COOKIE, c.clone());
    }
    r
}

impl OidcAuth {
    /// Compile; the provider is shared through `cache`.
    pub fn new(o: &ir::Oidc, policy: &str, cache: &super::JwksCache) -> Result<Self, String> {
        let deny = o
            .deny_redirect
            .iter()
            .map(|d| {
                let name = HeaderName::from_bytes(d.name.as_bytes())
                    .map_err(|e| format!("denyRedirect header {:?}: {e}", d.name))?;
                let re = match d.kind {
                    ir::StringMatchKind::RegularExpression => Some(
                        regex::Regex::new(&format!("^(?:{})$", d.value))
                            .map_err(|e| format!("denyRedirect regex {:?}: {e}", d.value))?,
                    ),
                    _ => None,
                };
                Ok(Deny {
                    name,
                    kind: d.kind,
                    value: d.value.clone(),
                    re,
                })
            })
            .collect::<Result<_, String>>()?;
        let suffix = short_hash(&format!("{policy}\n{}\n{}", o.issuer, o.client_id));
        Ok(OidcAuth {
            provider: cache.oidc.get(o),
            client_id: o.client_id.clone(),
            client_secret: o.client_secret.clone(),
            scope: o.scopes.join(" "),
            callback_path: o
                .redirect_url
                .as_deref()
                .map_or_else(|| DEFAULT_CALLBACK_PATH.to_string(), url_path),
            redirect_url: o.redirect_url.clone(),
            logout_path: o.logout_path.clone(),
            forward_access_token: o.forward_access_token,
            refresh: o.refresh_token,
            cookie_domain: o.cookie_domain.clone(),
            deny,
            session_cookie: format!("portcullis-oidc-{suffix}"),
            state_cookie: format!("portcullis-oidc-login-{suffix}"),
            key: o
                .session_key
                .as_ref()
                .map(|k| SessionKey::from_secret(k.expose().as_bytes())),
        })
    }

    fn key(&self) -> &SessionKey {
        self.key.as_ref().unwrap_or_else(|| SessionKey::process())
    }

    fn seal(&self, aad: &str, plain: &[u8]) -> String {
        self.key().seal(aad, plain)
    }

    fn open(&self, aad: &str, sealed: &str) -> Option<Vec<u8>> {
        self.key().open(aad, sealed)
    }

    /// The scheme the client used: `X-Forwarded-Proto` as the client-address
    /// step left it, else this hop's.
    fn proto<'s>(&self, st: &'s ReqState, cx: &AuthCtx<'_>) -> &'s str {
        match st
            .headers
            .get("x-forwarded-proto")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(',').next().unwrap_or("").trim())
        {
            Some("https") => "https",
            Some("http") => "http",
            _ if cx.scheme == "https" => "https",
            _ => "http",
        }
    }

    fn redirect_uri(&self, st: &ReqState, cx: &AuthCtx<'_>) -> String {
        match &self.redirect_url {
            Some(u) => u.clone(),
            None => format!(
                "{}://{}{DEFAULT_CALLBACK_PATH}",
                self.proto(st, cx),
                String::from_utf8_lossy(st.host.as_bytes())
            ),
        }
    }

    fn set_cookie(
        &self,
        name: &str,
        value: &str,
        max_age: Option<u64>,
        secure: bool,
    ) -> HeaderValue {
        let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
        if secure {
            c.push_str("; Secure");
        }
        if let Some(d) = &self.cookie_domain {
            c.push_str("; Domain=");
            c.push_str(d);
        }
        if let Some(a) = max_age {
            c.push_str(&format!("; Max-Age={a}"));
        }
        HeaderValue::from_str(&c)
            .unwrap_or_else(|_| HeaderValue::from_static("invalid=1; Max-Age=0"))
    }

    fn session_cookie_value(&self, s: &Session, secure: bool) -> HeaderValue {
        let json = serde_json::to_vec(s).expect("session serialises");
        let sealed = self.seal(&self.session_cookie, &json);
        if sealed.len() > 4000 {
            tracing::warn!(
                bytes = sealed.len(),
                "OIDC session cookie exceeds 4000 bytes; browsers may drop it"
            );
        }
        self.set_cookie(&self.session_cookie, &sealed, None, secure)
    }

    fn is_api(&self, st: &ReqState) -> bool {
        let html = st
            .headers
            .get_all(header::ACCEPT)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.contains("text/html"));
        !html || self.deny.iter().any(|d| d.matches(&st.headers))
    }

    /// Run the step (see the module docs). `Err` is the answer.
    pub async fn check(
        &self,
        st: &mut ReqState,
        plan: &mut Plan<'_>,
        cx: &AuthCtx<'_>,
    ) -> Result<(), Response<ProxyBody>> {
        let secure = self.proto(st, cx) == "https";
        if st.path == self.callback_path {
            return Err(match self.callback(st, cx, secure).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::info!(error = %e, "OIDC login failed");
                    plain(StatusCode::UNAUTHORIZED, "OIDC login failed\n", None)
                }
            });
        }
        if st.path == self.logout_path {
            let clear = self.set_cookie(&self.session_cookie, "", Some(0), secure);
            let to = match self
                .provider
                .meta
                .get()
                .and_then(|m| m.end_session_endpoint.as_ref())
            {
                Some(end) => {
                    let sep = if end.contains('?') { '&' } else { '?' };
                    format!("{end}{sep}client_id={}", enc(&self.client_id))
                }
                None => "/".to_string(),
            };
            return Err(redirect(&to, &[clear]));
        }
        let session = cookie(&st.headers, &self.session_cookie)
            .and_then(|v| self.open(&self.session_cookie, &v))
            .and_then(|b| serde_json::from_slice::<Session>(&b).ok());
        // The gateway's cookies never reach the backend.
        strip(st, &Found::Cookie(self.session_cookie.clone()));
        strip(st, &Found::Cookie(self.state_cookie.clone()));
        let session = match session {
            Some(s) if s.exp > now() => Some(s),
            Some(s) if self.refresh && s.rt.is_some() => match self.refresh(&s).await {
                Ok(n) => {
                    plan.cookies.push(self.session_cookie_value(&n, secure));
                    Some(n)
                }
                Err(e) => {
                    tracing::info!(error = %e, "OIDC refresh failed: login again");
                    None
                }
            },
            _ => None,
        };
        if let Some(s) = session {
            if self.forward_access_token
                && let Ok(v) = HeaderValue::from_str(&format!("Bearer {}", s.at))
            {
                st.headers.insert(header::AUTHORIZATION, v);
            }
            return Ok(());
        }
        Err(self.login(st, cx, secure).await)
    }

    async fn login(&self, st: &ReqState, cx: &AuthCtx<'_>, secure: bool) -> Response<ProxyBody> {
        if self.is_api(st) {
            return plain(
                StatusCode::UNAUTHORIZED,
                "OIDC login required\n",
                Some(HeaderValue::from_static("Bearer realm=\"oidc\"")),
            );
        }
        let meta = match self.provider.meta().await {
            Ok(m) => m,
            Err(e) => {
                tracing::warn!(error = %e, "OIDC provider unavailable: 503");
                return plain(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "identity provider unavailable\n",
                    None,
                );
            }
        };
        let login = Login {
            state: random_token(24),
            nonce: random_token(24),
            verifier: random_token(32),
            back: st.path_and_query(),
            exp: now() + LOGIN_TTL_S,
        };
        let sep = if meta.authorization_endpoint.contains('?') {
            '&'
        } else {
            '?'
        };
        let location = format!(
            "{}{sep}{}",
            meta.authorization_endpoint,
            form(&[
                ("response_type", "code"),
                ("client_id", &self.client_id),
                ("redirect_uri", &self.redirect_uri(st, cx)),
                ("scope", &self.scope),
                ("state", &login.state),
                ("nonce", &login.nonce),
                ("code_challenge", &s256(&login.verifier)),
                ("code_challenge_method", "S256"),
            ])
        );
        let sealed = self.seal(
            &self.state_cookie,
            &serde_json::to_vec(&login).expect("login serialises"),
        );
        let c = self.set_cookie(&self.state_cookie, &sealed, Some(LOGIN_TTL_S), secure);
        redirect(&location, &[c])
    }

    async fn callback(
        &self,
        st: &ReqState,
        cx: &AuthCtx<'_>,
        secure: bool,
    ) -> Result<Response<ProxyBody>, OidcError> {
        let q = st.query.as_deref().unwrap_or("");
        if query_param(q, "error").is_some() {
            return Err(OidcError::Callback("the provider answered with an error"));
        }
        let code = query_param(q, "code").ok_or(OidcError::Callback("no code"))?;
        let state = query_param(q, "state").ok_or(OidcError::Callback("no state"))?;
        let login: Login = cookie(&st.headers, &self.state_cookie)
            .and_then(|v| self.open(&self.state_cookie, &v))
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(OidcError::Callback(
                "no login in progress (state cookie missing or invalid)",
            ))?;
        if login.exp < now() {
            return Err(OidcError::Callback("login took too long"));
        }
        if !bool::from(login.state.as_bytes().ct_eq(state.as_bytes())) {
            return Err(OidcError::Callback("state does not match"));
        }
        let meta = self.provider.meta().await?;
        let redirect_uri = self.redirect_uri(st, cx);
        let tokens = self
            .token_call(
                meta,
                &[
                    ("grant_type", "authorization_code"),
                    ("code", &code),
                    ("redirect_uri", &redirect_uri),
                    ("code_verifier", &login.verifier),
                ],
            )
            .await?;
        let id_token = tokens
            .id_token
            .as_deref()
            .ok_or(OidcError::IdToken("the token answer has none".into()))?;
        let claims = self.verify_id_token(meta, id_token).await?;
        let nonce = claims.get("nonce").and_then(|v| v.as_str()).unwrap_or("");
        if !bool::from(nonce.as_bytes().ct_eq(login.nonce.as_bytes())) {
            return Err(OidcError::IdToken("nonce does not match".into()));
        }
        let exp = tokens
            .expires_in
            .map(|e| now() + e)
            .or_else(|| claims.get("exp").and_then(|v| v.as_u64()))
            .unwrap_or(now() + DEFAULT_TOKEN_TTL_S);
        let session = Session {
            at: tokens.access_token,
            rt: tokens.refresh_token.filter(|_| self.refresh),
            exp,
        };
        let back = if login.back.starts_with('/') && !login.back.starts_with("//") {
            login.back
        } else {
            "/".to_string()
        };
        Ok(redirect(
            &back,
            &[
                self.session_cookie_value(&session, secure),
                self.set_cookie(&self.state_cookie, "", Some(0), secure),
            ],
        ))
    }

    async fn verify_id_token(
        &self,
        meta: &Meta,
        token: &str,
    ) -> Result<serde_json::Map<String, serde_json::Value>, OidcError> {
        let audiences = [self.client_id.clone()];
        let mut force = false;
        loop {
            let keys = self.provider.keys(meta, force).await?;
            match super::jwt::verify(token, &keys, Some(&meta.issuer), &audiences) {
                Err(super::jwt::JwtError::UnknownKid) if !force => force = true,
                r => return r.map_err(|e| OidcError::IdToken(e.to_string())),
            }
        }
    }

    async fn refresh(&self, s: &Session) -> Result<Session, OidcError> {
        let rt = s.rt.as_deref().unwrap_or_default();
        let meta = self.provider.meta().await?;
        let t = self
            .token_call(
                meta,
                &[("grant_type", "refresh_token"), ("refresh_token", rt)],
            )
            .await?;
        Ok(Session {
            exp: now() + t.expires_in.unwrap_or(DEFAULT_TOKEN_TTL_S),
            at: t.access_token,
            rt: t.refresh_token.or_else(|| s.rt.clone()),
        })
    }

    async fn token_call(&self, meta: &Meta, params: &[(&str, &str)]) -> Result<Tokens, OidcError> {
        let mut pairs: Vec<(&str, &str)> = params.to_vec();
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/x-www-form-urlencoded"),
        );
        h.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        if meta.secret_post {
            pairs.push(("client_id", &self.client_id));
            pairs.push(("client_secret", self.client_secret.expose()));
        } else {
            let basic = base64::engine::general_purpose::STANDARD.encode(format!(
                "{}:{}",
                enc(&self.client_id),
                enc(self.client_secret.expose())
            ));
            let mut v = HeaderValue::from_str(&format!("Basic {basic}")).map_err(|_| {
                OidcError::Token("client credentials are not a header value".into())
            })?;
            v.set_sensitive(true);
            h.insert(header::AUTHORIZATION, v);
        }
        let a = tokio::time::timeout(
            CALL_TIMEOUT,
            super::outbound::call(
                Method::POST,
                &meta.token_endpoint,
                h,
                Bytes::from(form(&pairs)),
                MAX_ANSWER,
            ),
        )
        .await
        .map_err(|_| OidcError::Token("timed out".into()))?
        .map_err(|e| OidcError::Token(e.to_string()))?;
        if !a.status.is_success() {
            // The error code only: the body is not logged.
            let code = serde_json::from_slice::<serde_json::Value>(&a.body)
                .ok()
                .and_then(|v| v.get("error")?.as_str().map(str::to_string))
                .unwrap_or_default();
            return Err(OidcError::Token(format!("status {} {code}", a.status)));
        }
        serde_json::from_slice(&a.body).map_err(|e| OidcError::Token(format!("answer: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_encoding_and_url_paths() {
        assert_eq!(enc("a b&c=d/é"), "a%20b%26c%3Dd%2F%C3%A9");
        assert_eq!(form(&[("k", "v 1"), ("x", "")]), "k=v%201&x=");
        assert_eq!(url_path("https://a.example/cb?x=1"), "/cb");
        assert_eq!(url_path("https://a.example"), "/");
        assert_eq!(url_path("http://a:8080/o/c#f"), "/o/c");
    }
}
