//! HTTP (and gRPC) routing IR: matches, filters and actions of HTTPRoute and GRPCRoute rules.

use serde::{Deserialize, Serialize};

use crate::{RouteMeta, WeightedBackend};

/// One match of one rule: a rule with N matches appears N times (one per match),
/// sharing its [`HttpAction`] content.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HttpRouteRule {
    /// Route identity, for precedence and logs.
    pub meta: RouteMeta,
    /// Hostnames this rule serves on its listener (the intersection of the route's and the
    /// listener's); empty means every hostname of the listener. Wildcards are `*.suffix`.
    pub hostnames: Vec<String>,
    /// The match.
    pub matches: HttpMatch,
    /// Index of this match within the rule's `matches` (for stable ordering).
    pub match_index: usize,
    /// What to do.
    pub action: HttpAction,
}

/// A request match (`HTTPRouteMatch`, or a GRPCRoute match lowered to HTTP).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct HttpMatch {
    /// Path match; GRPCRoute methods are lowered to Exact/Prefix/Regex on `/service/method`.
    pub path: PathMatch,
    /// Method, upper case.
    pub method: Option<String>,
    /// Header matches (all must match). Names are lower case.
    pub headers: Vec<ValueMatch>,
    /// Query parameter matches (all must match). Names are case-sensitive.
    pub query_params: Vec<ValueMatch>,
    /// Whether this came from a GRPCRoute (which has its own precedence rules and errors).
    pub grpc: bool,
}

/// Path match.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PathMatch {
    /// Exact path.
    Exact(String),
    /// Prefix on whole path elements; `/` matches everything. Stored without a trailing `/`
    /// except for `/` itself.
    Prefix(String),
    /// Regular expression that must match the whole path.
    Regex(String),
}

impl Default for PathMatch {
    fn default() -> Self {
        PathMatch::Prefix("/".into())
    }
}

/// A header or query parameter match.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValueMatch {
    /// Header (lower case) or query parameter name.
    pub name: String,
    /// Exact value or regex.
    pub value: StringMatch,
}

/// How a value is matched.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StringMatch {
    /// Exact, case-sensitive.
    Exact(String),
    /// Regular expression, must match the whole value.
    Regex(String),
}

/// What a matched rule does.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct HttpAction {
    /// Rule-level filters in order.
    pub filters: Vec<HttpFilter>,
    /// Weighted backends. Empty with no redirect filter means 500.
    pub backends: Vec<WeightedBackend>,
    /// `timeouts.request` in milliseconds (whole request, retries included).
    pub request_timeout_ms: Option<u64>,
    /// `timeouts.backendRequest` in milliseconds (each attempt).
    pub backend_request_timeout_ms: Option<u64>,
    /// Retry policy.
    pub retry: Option<Retry>,
    /// Session persistence.
    pub session_persistence: Option<SessionPersistence>,
    /// The effective SecurityPolicy (resolved at translate time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub security: Option<std::sync::Arc<crate::Security>>,
    /// The effective BackendTrafficPolicy rate limits (resolved at translate time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<std::sync::Arc<crate::RateLimit>>,
    /// The effective BackendTrafficPolicy backend settings (load balancing,
    /// circuit breaking, outlier detection).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_traffic: Option<std::sync::Arc<crate::traffic::BackendTraffic>>,
}

/// Retry policy (HTTPRoute `retry`, GEP-1731).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retry {
    /// Response codes that are retried.
    pub codes: Vec<u16>,
    /// Maximum retries (attempts after the first).
    pub attempts: u32,
    /// Backoff between attempts in milliseconds.
    pub backoff_ms: Option<u64>,
    /// Exponential back-off with jitter from `backoff_ms` up to this
    /// (BackendTrafficPolicy); none: a constant `backoff_ms`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_backoff_ms: Option<u64>,
    /// Retry a connection that failed once made (BackendTrafficPolicy `reset`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub on_reset: bool,
    /// Retry a failed connect (always, for HTTPRoute `retry`).
    #[serde(default = "yes", skip_serializing_if = "is_yes")]
    pub on_connect_failure: bool,
}

fn yes() -> bool {
    true
}

impl Default for Retry {
    fn default() -> Self {
        Retry {
            codes: vec![],
            attempts: 0,
            backoff_ms: None,
            max_backoff_ms: None,
            on_reset: false,
            on_connect_failure: true,
        }
    }
}

#[allow(clippy::trivially_copy_pass_by_ref)]
fn is_yes(b: &bool) -> bool {
    *b
}

/// Session persistence (GEP-1619).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionPersistence {
    /// Cookie or header name.
    pub name: String,
    /// Cookie (`true`) or header (`false`).
    pub cookie: bool,
    /// Absolute timeout in seconds.
    pub absolute_timeout_s: Option<u64>,
    /// Cookie is permanent (has Max-Age) rather than a session cookie.
    pub permanent: bool,
}

/// An HTTP filter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum HttpFilter {
    /// Modify request headers.
    RequestHeaderModifier(HeaderModifier),
    /// Modify response headers.
    ResponseHeaderModifier(HeaderModifier),
    /// Answer with a redirect.
    RequestRedirect(Redirect),
    /// Rewrite host and/or path before forwarding.
    UrlRewrite(UrlRewrite),
    /// Copy the request to another backend; its response is ignored.
    RequestMirror(Mirror),
    /// CORS (answer preflights, add response headers).
    Cors(Cors),
    /// A filter that could not be resolved (unknown ExtensionRef): the rule answers 500.
    Invalid {
        /// Why, for logs.
        reason: String,
    },
}

/// Header modifications, applied in the order set, add, remove.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct HeaderModifier {
    /// Replace or create.
    pub set: Vec<(String, String)>,
    /// Append.
    pub add: Vec<(String, String)>,
    /// Remove (lower case names).
    pub remove: Vec<String>,
}

/// `HTTPPathModifier`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PathModifier {
    /// Replace the whole path.
    ReplaceFullPath(String),
    /// Replace the part matched by the rule's PathPrefix match.
    ReplacePrefixMatch(String),
}

/// `RequestRedirect`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redirect {
    /// `http` or `https`.
    pub scheme: Option<String>,
    /// New host.
    pub hostname: Option<String>,
    /// New path.
    pub path: Option<PathModifier>,
    /// New port.
    pub port: Option<u16>,
    /// 301, 302, 303, 307 or 308.
    pub status_code: u16,
}

/// `URLRewrite`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UrlRewrite {
    /// New Host header.
    pub hostname: Option<String>,
    /// New path.
    pub path: Option<PathModifier>,
}

/// `RequestMirror`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Mirror {
    /// Where the copy goes (weight ignored).
    pub backend: WeightedBackend,
    /// Fraction of requests mirrored: numerator / denominator.
    pub numerator: u32,
    /// Denominator (100 for `percent`).
    pub denominator: u32,
}

/// The CORS filter (GEP-1767).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Cors {
    /// Allowed origins; `*` for any; may contain a `*` wildcard label.
    pub allow_origins: Vec<String>,
    /// `Access-Control-Allow-Credentials: true`.
    pub allow_credentials: bool,
    /// Allowed methods (`*` for any).
    pub allow_methods: Vec<String>,
    /// Allowed request headers (`*` for any).
    pub allow_headers: Vec<String>,
    /// Headers exposed to the page.
    pub expose_headers: Vec<String>,
    /// Preflight cache time in seconds.
    pub max_age: Option<u32>,
}
