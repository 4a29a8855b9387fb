//! `BackendTrafficPolicy` (`portcullis.dev/v1alpha1`): traffic control between
//! the gateway and the backends of its targets.
//!
//! Field names and meanings are Envoy Gateway's `BackendTrafficPolicy`
//! (`gateway.envoyproxy.io/v1alpha1`) where the concept is the same. Only what
//! is implemented is in the CRD schema
//! (`crates/portcullis-source/crds/portcullis.dev_backendtrafficpolicies.yaml`);
//! every struct also rejects unknown fields when decoded.

use serde::{Deserialize, Serialize};

use crate::policy::{PORTCULLIS_API_VERSION, PORTCULLIS_GROUP, PolicyTargetRef};
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

impl kube_core::Resource for BackendTrafficPolicy {
    type DynamicType = ();
    type Scope = kube_core::NamespaceResourceScope;

    fn kind(_: &()) -> std::borrow::Cow<'_, str> {
        "BackendTrafficPolicy".into()
    }
    fn group(_: &()) -> std::borrow::Cow<'_, str> {
        PORTCULLIS_GROUP.into()
    }
    fn version(_: &()) -> std::borrow::Cow<'_, str> {
        "v1alpha1".into()
    }
    fn plural(_: &()) -> std::borrow::Cow<'_, str> {
        "backendtrafficpolicies".into()
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}
