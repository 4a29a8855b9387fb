//! `ClientTrafficPolicy` (`portcullis.dev/v1alpha1`): how the gateway treats
//! the clients of its listeners (client address, PROXY protocol, timeouts,
//! connection limits, header handling, HTTP/1 trailers, HTTP/2 settings, TLS versions, path
//! normalisation).
//!
//! Field names and meanings are Envoy Gateway's `ClientTrafficPolicy`
//! (`gateway.envoyproxy.io/v1alpha1`) where the concept is the same. Only what
//! is implemented is in the CRD schema
//! (`crates/portcullis-source/crds/portcullis.dev_clienttrafficpolicies.yaml`);
//! every struct also rejects unknown fields when decoded.

use serde::{Deserialize, Serialize};

use crate::policy::{PORTCULLIS_API_VERSION, PolicyTargetRef};
use crate::types::ObjectMeta;

fn api_version() -> String {
    PORTCULLIS_API_VERSION.to_string()
}

/// `ClientTrafficPolicy`: client-facing settings of Gateways and listeners.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientTrafficPolicy {
    /// `portcullis.dev/v1alpha1`.
    #[serde(default = "api_version")]
    pub api_version: String,
    /// `ClientTrafficPolicy`.
    #[serde(default)]
    pub kind: String,
    /// Metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The desired state.
    pub spec: ClientTrafficPolicySpec,
    /// `PolicyStatus` (`ancestors`), as last written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

/// `ClientTrafficPolicySpec`.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientTrafficPolicySpec {
    /// The target (deprecated singular form, as in Envoy Gateway).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<PolicyTargetRef>,
    /// The targets: Gateways, or listeners of them by `sectionName`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_refs: Vec<PolicyTargetRef>,
    /// Where the client address comes from.
    #[serde(
        rename = "clientIPDetection",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub client_ip_detection: Option<ClientIpDetection>,
    /// Every connection starts with a PROXY protocol (v1 or v2) header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_proxy_protocol: Option<bool>,
    /// Timeouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<ClientTimeout>,
    /// Connection settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection: Option<ClientConnection>,
    /// Header handling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<HeaderSettings>,
    /// HTTP/1.1 settings.
    #[serde(rename = "http1", default, skip_serializing_if = "Option::is_none")]
    pub http1: Option<Http1Settings>,
    /// HTTP/2 settings.
    #[serde(rename = "http2", default, skip_serializing_if = "Option::is_none")]
    pub http2: Option<Http2Settings>,
    /// TLS settings of HTTPS listeners.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientTlsSettings>,
    /// Request path handling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<PathSettings>,
}

impl ClientTrafficPolicySpec {
    /// `targetRef` and `targetRefs` together.
    pub fn targets(&self) -> impl Iterator<Item = &PolicyTargetRef> {
        self.target_ref.iter().chain(&self.target_refs)
    }
}

/// `ClientIPDetectionSettings`: one of `xForwardedFor` or `customHeader`.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientIpDetection {
    /// Trust `X-Forwarded-For` from some proxies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub x_forwarded_for: Option<XForwardedForSettings>,
    /// Take the address from a header set by a trusted proxy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub custom_header: Option<CustomHeaderSettings>,
}

/// `XForwardedForSettings`: one of `numTrustedHops` or `trustedCIDRs`.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct XForwardedForSettings {
    /// The client is the N-th address from the right of `X-Forwarded-For`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub num_trusted_hops: Option<u32>,
    /// Peers (and `X-Forwarded-For` entries) in these ranges are trusted proxies.
    #[serde(
        rename = "trustedCIDRs",
        default,
        skip_serializing_if = "Vec::is_empty"
    )]
    pub trusted_cidrs: Vec<String>,
}

/// `CustomHeaderExtensionSettings`.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CustomHeaderSettings {
    /// The header holding the client address.
    pub name: String,
    /// Answer 403 when the header is missing or not an address (default:
    /// fall back to the TCP peer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_closed: Option<bool>,
}

/// `ClientTimeout`.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientTimeout {
    /// HTTP timeouts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpClientTimeout>,
}

/// `HTTPClientTimeout`.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpClientTimeout {
    /// Time allowed for a whole request (head and body) to arrive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_received_timeout: Option<String>,
    /// How long a connection with no request in flight stays open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<String>,
}

/// `ClientConnection`.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientConnection {
    /// Open connections allowed on the listener's port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_limit: Option<ConnectionLimit>,
    /// Largest request body buffered in memory (a quantity such as `32Ki`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffer_limit: Option<String>,
}

/// `ConnectionLimit`.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectionLimit {
    /// The number of connections.
    pub value: u64,
}

/// `HeaderSettings`.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderSettings {
    /// `Allow` (default), `RejectRequest` or `DropHeader`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub with_underscores_action: Option<String>,
    /// Keep a client's `X-Request-ID` (deprecated form of `requestID`).
    #[serde(
        rename = "preserveXRequestID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub preserve_x_request_id: Option<bool>,
    /// `PreserveOrGenerate`, `Preserve`, `Generate` or `Disable`.
    #[serde(rename = "requestID", default, skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

/// `PathSettings`: how the request path is normalised.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PathSettings {
    /// `KeepUnchanged` (default), `RejectRequest`, `UnescapeAndRedirect` or
    /// `UnescapeAndForward`: what to do with `%2F`/`%5C` in the path.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escaped_slashes_action: Option<String>,
    /// Keep adjacent slashes (default `false`: merged).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disable_merge_slashes: Option<bool>,
}

/// `HTTP1Settings`. `enableTrailers` and `preserveHeaderCase` are
/// implemented (`http10` and the rest are rejected as unknown fields).
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Http1Settings {
    /// Proxy HTTP/1 trailers (`true`) or drop them in both directions
    /// (`false`); unset: passed through, as without a policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enable_trailers: Option<bool>,
    /// Keep the case of HTTP/1.1 header names as the client (requests) and
    /// the backend (responses) sent them; unset or `false`: lower-cased.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preserve_header_case: Option<bool>,
}

/// `HTTP2Settings`.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Http2Settings {
    /// Streams a client may have open on one connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrent_streams: Option<u32>,
    /// Initial stream flow-control window (a quantity such as `64Ki`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_stream_window_size: Option<String>,
    /// Initial connection flow-control window (a quantity such as `1Mi`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_connection_window_size: Option<String>,
}

/// `ClientTLSSettings`.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientTlsSettings {
    /// `Auto`, `1.2` or `1.3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_version: Option<String>,
    /// `Auto`, `1.2` or `1.3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_version: Option<String>,
    /// Cipher suites (IANA or OpenSSL names of suites the build supports).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ciphers: Vec<String>,
    /// ALPN protocols offered, in order (`h2`, `http/1.1`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alpn_protocols: Vec<String>,
}

crate::policy::portcullis_resource!(ClientTrafficPolicy, "clienttrafficpolicies");
