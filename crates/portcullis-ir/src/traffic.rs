//! BackendTrafficPolicy, resolved: the rate limits the data plane enforces on
//! a route rule.

use serde::{Deserialize, Serialize};

/// The effective rate limits of a route rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RateLimit {
    /// `namespace/name` of the policy, for logs and metrics.
    pub policy: String,
    /// Rules whose buckets live in each proxy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub local: Vec<RateLimitRule>,
    /// Rules whose buckets are shared through Redis.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub global: Vec<RateLimitRule>,
}

/// One rule: which requests it counts and its bucket.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimitRule {
    /// The bucket's identity: the policy, `local`/`global`, the rule's index,
    /// and the route rule unless the rule is `shared`. Requests of two route
    /// rules with one id take from one bucket.
    pub id: String,
    /// Every selector must hold (none: every request).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub selectors: Vec<Selector>,
    /// Bucket size: requests per `unit_seconds`.
    pub requests: u64,
    /// The unit, in seconds.
    pub unit_seconds: u64,
    /// Tokens a request takes (0: check only).
    pub cost: u64,
    /// Counted and reported, never enforced.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shadow: bool,
}

/// `RateLimitSelectCondition`: every part given must hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Selector {
    /// Header conditions (all).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderSelector>,
    /// Method conditions (any).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<MethodSelector>,
    /// Path condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathSelector>,
    /// Client address condition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceSelector>,
}

/// A header condition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderSelector {
    /// Lower-case header name.
    pub name: String,
    /// How the value is matched.
    pub value: ValueMatch,
    /// Select requests that do not match.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub invert: bool,
}

/// How a header value is matched.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ValueMatch {
    /// Exactly this value.
    Exact(String),
    /// The whole value matches this regular expression.
    Regex(String),
    /// Present, with one bucket per distinct value.
    Distinct,
}

/// A method condition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MethodSelector {
    /// The method.
    pub method: String,
    /// Select requests of any other method.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub invert: bool,
}

/// A path condition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathSelector {
    /// How the path is matched.
    pub kind: PathKind,
    /// The path or regular expression.
    pub value: String,
    /// Select requests that do not match.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub invert: bool,
}

/// How a path is matched.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PathKind {
    /// The whole path.
    Exact,
    /// A prefix, by path element (`/a` matches `/a` and `/a/b`, not `/ab`).
    Prefix,
    /// A regular expression matching the whole path.
    Regex,
}

/// A client-address condition.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SourceSelector {
    /// The range, e.g. `10.0.0.0/8`.
    pub cidr: String,
    /// One bucket per client address rather than one for the range.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub distinct: bool,
}
