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

/// BackendTrafficPolicy settings for the backends of a route rule: endpoint
/// choice, fail-fast limits and outlier detection. (Retries and timeouts are
/// lowered into the rule's own `retry` and timeouts.)
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct BackendTraffic {
    /// `namespace/name` of the policy, for logs.
    pub policy: String,
    /// How endpoints are chosen.
    pub load_balancer: LoadBalancer,
    /// Slow start: the window over which a new (or healthy again)
    /// endpoint's share grows, in milliseconds (`RoundRobin`, `LeastRequest`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_start_window_ms: Option<u64>,
    /// Zone-aware routing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone_aware: Option<ZoneAware>,
    /// Fail-fast limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreaker>,
    /// Upstream connection timeouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeouts: Option<ConnectionTimeouts>,
    /// Outlier detection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier: Option<Outlier>,
    /// Active health checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<ActiveHealth>,
    /// Fault injection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<Fault>,
    /// Response overrides, first match wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<ResponseOverride>,
    /// Response compression.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub compression: Option<Compression>,
}

/// Response compression.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Compression {
    /// Algorithms, in order of preference.
    pub algorithms: Vec<Compressor>,
    /// Bodies known to be shorter are sent as they are.
    pub min_content_length: u64,
}

/// A compression algorithm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Compressor {
    /// `gzip`.
    Gzip,
    /// `br`.
    Brotli,
    /// `zstd`.
    Zstd,
}

/// Fault injection.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fault {
    /// Delay in milliseconds, and the share of requests in millionths.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<(u64, u32)>,
    /// HTTP status, gRPC status, and the share of requests in millionths.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<(u16, Option<u8>, u32)>,
}

/// A response override.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResponseOverride {
    /// Inclusive status ranges that match.
    pub statuses: Vec<(u16, u16)>,
    /// `Content-Type` of the new body.
    pub content_type: Option<String>,
    /// The new body.
    pub body: Option<String>,
    /// The new status.
    pub status: Option<u16>,
}

/// Active health checks of every endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ActiveHealth {
    /// Time allowed for one check, in milliseconds.
    pub timeout_ms: u64,
    /// Time between checks, in milliseconds.
    pub interval_ms: u64,
    /// Failed checks in a row that make an endpoint unhealthy.
    pub unhealthy_threshold: u32,
    /// Passed checks in a row that make it healthy again.
    pub healthy_threshold: u32,
    /// What a check does.
    pub check: Check,
}

/// What a check does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Check {
    /// An HTTP/1.1 request.
    Http {
        /// Host header; none: the endpoint's address.
        hostname: Option<String>,
        /// Path.
        path: String,
        /// Method.
        method: String,
        /// Statuses that pass.
        expected_statuses: Vec<u16>,
        /// Bytes the body must contain.
        expected_body: Option<Vec<u8>>,
    },
    /// A TCP connection, with optional bytes sent and expected.
    Tcp {
        /// Bytes sent after connecting.
        send: Option<Vec<u8>>,
        /// Bytes that must be received.
        receive: Option<Vec<u8>>,
    },
}

/// How endpoints are chosen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub enum LoadBalancer {
    /// Power of two choices by requests in flight (the default).
    #[default]
    LeastRequest,
    /// In turn.
    RoundRobin,
    /// Uniformly at random.
    Random,
    /// Maglev consistent hashing.
    ConsistentHash {
        /// What is hashed.
        on: HashOn,
        /// Lookup table size (a prime).
        table_size: u64,
    },
}

/// What a consistent hash is computed from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum HashOn {
    /// The client address.
    SourceIp,
    /// A request header's value (lower-case name).
    Header(String),
    /// A cookie's value; generated (and set on the response) when absent.
    Cookie {
        /// Cookie name.
        name: String,
        /// Max-Age of a generated cookie, in seconds; none: a session cookie.
        ttl_seconds: Option<u64>,
    },
}

/// Fail-fast limits per backend of a route rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CircuitBreaker {
    /// Requests in flight at once.
    pub max_parallel_requests: u64,
    /// Retries in flight at once.
    pub max_parallel_retries: u64,
    /// Upstream connections open at once (in use or idle).
    pub max_connections: u64,
    /// Requests waiting for a connection at once.
    pub max_pending_requests: u64,
    /// Requests sent over one connection (0: unlimited).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub max_requests_per_connection: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// Zone-aware routing (`loadBalancer.zoneAware.preferLocal`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ZoneAware {
    /// Endpoints (all zones) below which it is off.
    pub min_endpoints: u64,
    /// Share of requests considered, in percent.
    pub percentage: u32,
    /// `force`: local endpoints in service needed to keep all the traffic local.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force_min_in_zone: Option<u32>,
}

/// The BackendTrafficPolicy settings of a TCPRoute: those that make sense
/// for a TCP proxy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TcpTraffic {
    /// `namespace/name` of the policy, for logs.
    pub policy: String,
    /// Time allowed to connect to an endpoint, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout_ms: Option<u64>,
    /// Connections to the route's backends open at once; past it a new
    /// client connection is closed at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u64>,
    /// Endpoints in turn (`RoundRobin`) rather than from a random one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub round_robin: bool,
}

/// Upstream connection timeouts (`timeout.tcp`, `timeout.http`); unset
/// values are the process's (5 s connect, `--upstream-idle-timeout`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct ConnectionTimeouts {
    /// Time allowed to make a connection, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_ms: Option<u64>,
    /// An idle pooled connection is closed after this, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_ms: Option<u64>,
    /// A connection is not reused once this old, in milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_duration_ms: Option<u64>,
}

/// Outlier detection (passive health checks).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outlier {
    /// Local-origin failures are counted apart from 5xx answers.
    pub split_local_origin: bool,
    /// Ejections end on this grid, in milliseconds.
    pub interval_ms: u64,
    /// Local-origin failures in a row that eject (split mode; 0: off).
    pub consecutive_local_origin: u32,
    /// 502/503/504 in a row that eject (0: off).
    pub consecutive_gateway: u32,
    /// 5xx in a row that eject (0: off).
    pub consecutive_5xx: u32,
    /// Base ejection time, in milliseconds.
    pub base_ejection_ms: u64,
    /// Most endpoints ejected at once, in percent.
    pub max_ejection_percent: u32,
}
