//! `BackendTrafficPolicy` (`portcullis.dev/v1alpha1`): traffic control between
//! the gateway and the backends of its targets.
//!
//! Field names and meanings are Envoy Gateway's `BackendTrafficPolicy`
//! (`gateway.envoyproxy.io/v1alpha1`) where the concept is the same. Only what
//! is implemented is in the CRD schema
//! (`crates/portcullis-source/crds/portcullis.dev_backendtrafficpolicies.yaml`);
//! every struct also rejects unknown fields when decoded.

use serde::{Deserialize, Serialize};

use crate::policy::{PORTCULLIS_API_VERSION, PolicyTargetRef};
use crate::types::ObjectMeta;

fn api_version() -> String {
    PORTCULLIS_API_VERSION.to_string()
}

/// `BackendTrafficPolicy`: rate limits for the routes of its targets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackendTrafficPolicy {
    /// `portcullis.dev/v1alpha1`.
    #[serde(default = "api_version")]
    pub api_version: String,
    /// `BackendTrafficPolicy`.
    #[serde(default)]
    pub kind: String,
    /// Metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The desired state.
    pub spec: BackendTrafficPolicySpec,
    /// `PolicyStatus` (`ancestors`), as last written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

/// `BackendTrafficPolicySpec`.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackendTrafficPolicySpec {
    /// The target (deprecated singular form, as in Envoy Gateway).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<PolicyTargetRef>,
    /// The targets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_refs: Vec<PolicyTargetRef>,
    /// Rate limits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitSpec>,
    /// How endpoints are chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancer>,
    /// Limits on concurrent requests and retries to a backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<CircuitBreaker>,
    /// Outlier detection (passive health checks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    /// Retries (when the route has no `retry` of its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<Retry>,
    /// Timeouts (when the route has no `timeouts` of its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Timeout>,
    /// Delays and aborts injected for a share of requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault_injection: Option<FaultInjection>,
    /// Answers replaced by a custom body (and status) by status code.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub response_override: Vec<ResponseOverride>,
    /// Response compression, in order of preference.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub compression: Vec<CompressionSpec>,
}

/// `Compression`.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CompressionSpec {
    /// `Gzip`, `Brotli` or `Zstd`.
    #[serde(rename = "type")]
    pub compressor_type: String,
    /// Bodies known to be shorter (bytes) are not compressed (default 30).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_content_length: Option<u64>,
}

/// `FaultInjection`.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultInjection {
    /// A delay before forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<FaultDelay>,
    /// An answer instead of forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<FaultAbort>,
}

/// `FaultInjectionDelay`.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultDelay {
    /// The delay.
    pub fixed_delay: String,
    /// Share of requests delayed, in percent (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<f64>,
}

/// `FaultInjectionAbort`.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FaultAbort {
    /// HTTP status answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<u16>,
    /// gRPC status answered to gRPC requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_status: Option<u8>,
    /// Share of requests aborted, in percent (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<f64>,
}

/// `ResponseOverride`.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ResponseOverride {
    /// Which answers.
    #[serde(rename = "match")]
    pub matches: CustomResponseMatch,
    /// What replaces them.
    pub response: CustomResponse,
}

/// `CustomResponseMatch`.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CustomResponseMatch {
    /// Status codes (any matches).
    pub status_codes: Vec<StatusCodeMatch>,
}

/// `StatusCodeMatch`.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StatusCodeMatch {
    /// `Value` (default) or `Range`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub match_type: Option<String>,
    /// The status (type `Value`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<u16>,
    /// The range (type `Range`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<StatusCodeRange>,
}

/// `StatusCodeRange`, inclusive.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StatusCodeRange {
    /// First status.
    pub start: u16,
    /// Last status.
    pub end: u16,
}

/// `CustomResponse`.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CustomResponse {
    /// `Content-Type` of the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// The body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<CustomResponseBody>,
    /// The status answered instead (default: the original).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
}

/// `CustomResponseBody`.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CustomResponseBody {
    /// `Inline` (default) or `ValueRef`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub body_type: Option<String>,
    /// The body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<String>,
    /// A ConfigMap in the policy's namespace whose `response.body` key is the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_ref: Option<LocalObjectRef>,
}

/// `LocalObjectReference` (group, kind, name).
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalObjectRef {
    /// Group (`""`).
    #[serde(default)]
    pub group: String,
    /// Kind (`ConfigMap`).
    pub kind: String,
    /// Name.
    pub name: String,
}

/// `LoadBalancer`.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadBalancer {
    /// `RoundRobin`, `Random`, `LeastRequest` or `ConsistentHash`.
    #[serde(rename = "type")]
    pub lb_type: String,
    /// What a consistent hash is computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistent_hash: Option<ConsistentHash>,
    /// New (or healthy again) endpoints get a growing share over a window
    /// (`RoundRobin` and `LeastRequest` only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub slow_start: Option<SlowStart>,
    /// Prefer the endpoints of the proxy's zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone_aware: Option<ZoneAware>,
}

/// `ZoneAware`.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ZoneAware {
    /// Prefer the local zone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefer_local: Option<PreferLocalZone>,
}

/// `PreferLocalZone`.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PreferLocalZone {
    /// Keep all the traffic local (while enough local endpoints are in service).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub force: Option<ForceLocalZone>,
    /// Endpoints (all zones) below which zone-aware routing is off (default 6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_endpoints_threshold: Option<u64>,
    /// Share of requests considered, in percent (default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage_enabled: Option<u32>,
}

/// `ForceLocalZone`.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ForceLocalZone {
    /// Local endpoints in service needed to keep all the traffic local (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_endpoints_in_zone_threshold: Option<u32>,
}

/// `SlowStart`.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SlowStart {
    /// The ramp's length (a Gateway API duration).
    pub window: String,
}

/// `ConsistentHash`.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConsistentHash {
    /// `SourceIP`, `Header` or `Cookie`.
    #[serde(rename = "type")]
    pub hash_type: String,
    /// The header (type `Header`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub header: Option<NamedField>,
    /// The cookie (type `Cookie`), generated when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie: Option<HashCookie>,
    /// Maglev lookup table size (a prime).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table_size: Option<u64>,
}

/// A header name.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct NamedField {
    /// The name.
    pub name: String,
}

/// `Cookie` of a consistent hash.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HashCookie {
    /// Cookie name.
    pub name: String,
    /// Lifetime of a generated cookie (a Gateway API duration); none: a session cookie.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<String>,
}

/// `CircuitBreaker`.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CircuitBreaker {
    /// Requests in flight to the backend at once (default 1024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel_requests: Option<u64>,
    /// Retries in flight to the backend at once (default 1024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_parallel_retries: Option<u64>,
    /// Upstream connections open to the backend at once (default 1024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connections: Option<u64>,
    /// Requests waiting for a connection at once (default 1024).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_pending_requests: Option<u64>,
    /// Requests sent over one upstream connection (default: unlimited).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_requests_per_connection: Option<u64>,
}

/// `HealthCheck`.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthCheck {
    /// Outlier detection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub passive: Option<PassiveHealthCheck>,
    /// Active health checks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub active: Option<ActiveHealthCheck>,
}

/// `ActiveHealthCheck`.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ActiveHealthCheck {
    /// Time allowed for one check (default 1s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Time between checks (default 3s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Failed checks in a row that make an endpoint unhealthy (default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unhealthy_threshold: Option<u32>,
    /// Passed checks in a row that make it healthy again (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthy_threshold: Option<u32>,
    /// `HTTP` or `TCP`.
    #[serde(rename = "type")]
    pub check_type: String,
    /// The HTTP check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpActiveHealthChecker>,
    /// The TCP check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpActiveHealthChecker>,
}

/// `HTTPActiveHealthChecker`.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpActiveHealthChecker {
    /// Host header (default: the endpoint's address).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
    /// Path requested.
    pub path: String,
    /// Method (default GET).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Statuses that pass (default 200).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expected_statuses: Vec<u16>,
    /// Text the body must contain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_response: Option<HealthCheckPayload>,
}

/// `TCPActiveHealthChecker`.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpActiveHealthChecker {
    /// Bytes sent after connecting.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send: Option<HealthCheckPayload>,
    /// Bytes that must be received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub receive: Option<HealthCheckPayload>,
}

/// `ActiveHealthCheckPayload`.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HealthCheckPayload {
    /// `Text` or `Binary`.
    #[serde(rename = "type")]
    pub payload_type: String,
    /// The text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    /// The bytes, base64.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub binary: Option<String>,
}

/// `PassiveHealthCheck` (outlier detection).
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PassiveHealthCheck {
    /// Count local-origin failures (connect, reset, timeout) apart from 5xx.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub split_external_local_origin_errors: Option<bool>,
    /// Ejections end on this grid (a duration, default 3s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<String>,
    /// Local-origin failures in a row that eject (split mode; default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_local_origin_failures: Option<u32>,
    /// 502/503/504 in a row that eject (default 0: off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_gateway_errors: Option<u32>,
    /// 5xx in a row that eject (default 5).
    #[serde(
        rename = "consecutive5XxErrors",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub consecutive_5xx_errors: Option<u32>,
    /// An ejection lasts this times the number of ejections (default 30s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_ejection_time: Option<String>,
    /// Most endpoints ejected at once, in percent (default 10; at least one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_ejection_percent: Option<u32>,
}

/// `Retry`.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Retry {
    /// Retries after the first attempt (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_retries: Option<u32>,
    /// What is retried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_on: Option<RetryOn>,
    /// Each attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_retry: Option<PerRetry>,
}

/// `RetryOn`.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryOn {
    /// `5xx`, `gateway-error`, `reset`, `connect-failure`, `retriable-status-codes`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub triggers: Vec<String>,
    /// Statuses retried with `retriable-status-codes`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http_status_codes: Vec<u16>,
}

/// `PerRetryPolicy`.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PerRetry {
    /// Timeout of each attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Wait between attempts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub back_off: Option<BackOff>,
}

/// `BackOffPolicy`: exponential, with jitter, from `baseInterval` up to `maxInterval`.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackOff {
    /// First wait.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_interval: Option<String>,
    /// Longest wait (default 10 × base).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_interval: Option<String>,
}

/// `Timeout`.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Timeout {
    /// TCP timeouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpTimeout>,
    /// HTTP timeouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpTimeout>,
}

/// `TCPTimeout`.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpTimeout {
    /// Time allowed to make an upstream connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<String>,
}

/// `HTTPTimeout`.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpTimeout {
    /// The whole request, retries included.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_timeout: Option<String>,
    /// An idle pooled upstream connection is closed after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_idle_timeout: Option<String>,
    /// An upstream connection is not reused once it is this old.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connection_duration: Option<String>,
}

impl BackendTrafficPolicySpec {
    /// `targetRef` and `targetRefs` together.
    pub fn targets(&self) -> impl Iterator<Item = &PolicyTargetRef> {
        self.target_ref.iter().chain(&self.target_refs)
    }
}

/// `RateLimitSpec`: local (per proxy) and global (shared through Redis) limits;
/// both may be set, and a request must pass both.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimitSpec {
    /// Limits kept in each proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local: Option<RateLimitRules>,
    /// Limits shared by every proxy (Redis).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub global: Option<RateLimitRules>,
}

/// `LocalRateLimit` / `GlobalRateLimit`: the rules.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimitRules {
    /// Every rule a request matches applies; the request is limited when any
    /// (not in shadow mode) is over its limit.
    #[serde(default)]
    pub rules: Vec<RateLimitRule>,
}

/// `RateLimitRule`.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimitRule {
    /// Conditions, all of which must hold (none: every request of the route).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub client_selectors: Vec<RateLimitSelectCondition>,
    /// The limit.
    pub limit: RateLimitValue,
    /// What a request takes from the limit (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<RateLimitCost>,
    /// One bucket for every route of the targets rather than one per route rule.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared: Option<bool>,
    /// Count and report, never refuse.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shadow_mode: Option<bool>,
}

/// `RateLimitSelectCondition`: every condition given must hold.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimitSelectCondition {
    /// Request headers (all must match).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<HeaderMatch>,
    /// Methods (any matches).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<MethodMatch>,
    /// The request path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathMatch>,
    /// The client address (see the client-address detection options).
    #[serde(
        rename = "sourceCIDR",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub source_cidr: Option<SourceMatch>,
}

/// `HeaderMatch`.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderMatch {
    /// `Exact` (default), `RegularExpression` or `Distinct` (one bucket per value).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub match_type: Option<String>,
    /// Header name (case-insensitive).
    pub name: String,
    /// The value (not with `Distinct`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Select requests that do not match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invert: Option<bool>,
}

/// `MethodMatch`.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MethodMatch {
    /// The method.
    pub value: String,
    /// Select requests of any other method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invert: Option<bool>,
}

/// `PathMatch`.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PathMatch {
    /// `PathPrefix` (default), `Exact` or `RegularExpression`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub match_type: Option<String>,
    /// The path.
    pub value: String,
    /// Select requests that do not match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invert: Option<bool>,
}

/// `SourceMatch`.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SourceMatch {
    /// `Exact` (default: the range is one bucket) or `Distinct` (one per address).
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub match_type: Option<String>,
    /// A CIDR such as `192.168.0.0/16` or `2001:db8::/32`.
    pub value: String,
}

/// `RateLimitValue`.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimitValue {
    /// Requests per unit.
    pub requests: u64,
    /// `Second`, `Minute`, `Hour`, `Day`, `Month` (30 days) or `Year` (365 days).
    pub unit: String,
}

/// `RateLimitCost`.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimitCost {
    /// What a request takes from the limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<RateLimitCostSpecifier>,
}

/// `RateLimitCostSpecifier`.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimitCostSpecifier {
    /// `Number`.
    pub from: String,
    /// The cost (0: check without taking).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub number: Option<u64>,
}

crate::policy::portcullis_resource!(BackendTrafficPolicy, "backendtrafficpolicies");
