//! Portcullis' own policy kinds (group `portcullis.dev`, version `v1alpha1`),
//! attached to Gateway API objects as GEP-713 policies.
//!
//! The field names and meanings follow Envoy Gateway's `gateway.envoyproxy.io/v1alpha1`
//! types wherever the concept is the same, so that a manifest migrates by changing its
//! `apiVersion`. Every struct rejects unknown fields: the CRD schema
//! (`crates/portcullis-source/crds/portcullis.dev_*.yaml`) lists only what is
//! implemented, and decoding is strict as a second line of defence.

use serde::{Deserialize, Serialize};

use crate::types::ObjectMeta;

/// The API group of Portcullis' own kinds.
pub const PORTCULLIS_GROUP: &str = "portcullis.dev";

/// `apiVersion` of Portcullis' own kinds.
pub const PORTCULLIS_API_VERSION: &str = "portcullis.dev/v1alpha1";

fn api_version() -> String {
    PORTCULLIS_API_VERSION.to_string()
}

/// `kube_core::Resource` for one of Portcullis' namespaced policy kinds
/// (group `portcullis.dev`, version `v1alpha1`).
macro_rules! portcullis_resource {
    ($ty:ident, $plural:literal) => {
        impl kube_core::Resource for $ty {
            type DynamicType = ();
            type Scope = kube_core::NamespaceResourceScope;

            fn kind(_: &()) -> std::borrow::Cow<'_, str> {
                stringify!($ty).into()
            }
            fn group(_: &()) -> std::borrow::Cow<'_, str> {
                $crate::policy::PORTCULLIS_GROUP.into()
            }
            fn version(_: &()) -> std::borrow::Cow<'_, str> {
                "v1alpha1".into()
            }
            fn plural(_: &()) -> std::borrow::Cow<'_, str> {
                $plural.into()
            }
            fn meta(&self) -> &$crate::types::ObjectMeta {
                &self.metadata
            }
            fn meta_mut(&mut self) -> &mut $crate::types::ObjectMeta {
                &mut self.metadata
            }
        }
    };
}
pub(crate) use portcullis_resource;

/// A GEP-713 policy target: `LocalPolicyTargetReferenceWithSectionName`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyTargetRef {
    /// API group of the target (`gateway.networking.k8s.io`).
    pub group: String,
    /// `Gateway`, `HTTPRoute` or `GRPCRoute`.
    pub kind: String,
    /// Name of the target, in the policy's namespace.
    pub name: String,
    /// A listener (Gateway) or a named rule (routes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
}

/// `SecurityPolicy`: authentication, authorization and CORS for the routes of its targets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecurityPolicy {
    /// `portcullis.dev/v1alpha1`.
    #[serde(default = "api_version")]
    pub api_version: String,
    /// `SecurityPolicy`.
    #[serde(default)]
    pub kind: String,
    /// Metadata.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The desired state.
    pub spec: SecurityPolicySpec,
    /// `PolicyStatus` (`ancestors`), as last written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<serde_json::Value>,
}

/// `SecurityPolicySpec`.
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecurityPolicySpec {
    /// The target (deprecated singular form, as in Envoy Gateway).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<PolicyTargetRef>,
    /// The targets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_refs: Vec<PolicyTargetRef>,
    /// Cross-origin resource sharing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<Cors>,
    /// HTTP Basic authentication with an htpasswd Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    /// API key authentication.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "apiKeyAuth"
    )]
    pub api_key_auth: Option<ApiKeyAuth>,
    /// JWT authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<Jwt>,
    /// External authorization.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext_auth: Option<ExtAuth>,
    /// OpenID Connect: the authorization-code flow with a session cookie.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<Oidc>,
    /// Authorization rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<Authorization>,
}

impl SecurityPolicySpec {
    /// `targetRef` and `targetRefs` together.
    pub fn targets(&self) -> impl Iterator<Item = &PolicyTargetRef> {
        self.target_ref.iter().chain(&self.target_refs)
    }
}

/// `SecretObjectReference`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretRef {
    /// Group, `""` (core).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Kind, `Secret`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name.
    pub name: String,
    /// Namespace; another namespace needs a ReferenceGrant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
}

/// `BackendObjectReference` (a Service port).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackendRef {
    /// Group, `""` (core).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Kind, `Service`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Name.
    pub name: String,
    /// Namespace; another namespace needs a ReferenceGrant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
}

/// `CORS`.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Cors {
    /// Allowed origins.
    #[serde(default)]
    pub allow_origins: Vec<String>,
    /// Allowed methods.
    #[serde(default)]
    pub allow_methods: Vec<String>,
    /// Allowed request headers.
    #[serde(default)]
    pub allow_headers: Vec<String>,
    /// Headers exposed to the page.
    #[serde(default)]
    pub expose_headers: Vec<String>,
    /// Preflight cache time, a Gateway API duration (`1h`, `600s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<String>,
    /// Allow credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_credentials: Option<bool>,
}

/// `BasicAuth`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BasicAuth {
    /// Secret whose `.htpasswd` key holds the users.
    pub users: SecretRef,
    /// Header that carries the authenticated user name to the backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_username_header: Option<String>,
}

/// `APIKeyAuth`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ApiKeyAuth {
    /// Secrets of client ID → key.
    pub credential_refs: Vec<SecretRef>,
    /// Where the key is taken from; the first source holding one is used.
    pub extract_from: Vec<ExtractFrom>,
    /// Header that carries the client ID to the backend.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "forwardClientIDHeader"
    )]
    pub forward_client_id_header: Option<String>,
    /// Remove the key from the request before the backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sanitize: Option<bool>,
}

/// `ExtractFrom`: one of headers, params or cookies.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExtractFrom {
    /// Header names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<String>,
    /// Query parameter names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<String>,
    /// Cookie names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cookies: Vec<String>,
}

/// `JWT`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Jwt {
    /// A request without a token passes (an invalid token is still refused).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub optional: Option<bool>,
    /// Providers; a token is valid if any provider validates it.
    pub providers: Vec<JwtProvider>,
}

/// `JWTProvider`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtProvider {
    /// Unique name (authorization rules refer to it).
    pub name: String,
    /// Required `iss`; not checked when empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub issuer: Option<String>,
    /// Accepted `aud` values; not checked when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    /// Keys fetched from a URL.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "remoteJWKS"
    )]
    pub remote_jwks: Option<RemoteJwks>,
    /// Keys inline.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "localJWKS")]
    pub local_jwks: Option<LocalJwks>,
    /// Claims copied into request headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claim_to_headers: Vec<ClaimToHeader>,
    /// Where the token is taken from (default: `Authorization: Bearer`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extract_from: Option<JwtExtractor>,
}

/// `RemoteJWKS`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RemoteJwks {
    /// `https://` (or `http://`) URL of the key set.
    pub uri: String,
    /// How long fetched keys are used before a refresh (default `300s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_duration: Option<String>,
}

/// `LocalJWKS` (type `Inline` only).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalJwks {
    /// `Inline`.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// The key set as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inline: Option<String>,
}

/// `ClaimToHeader`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimToHeader {
    /// Request header to set.
    pub header: String,
    /// Claim, dotted for nested ones (`a.b`).
    pub claim: String,
}

/// `JWTExtractor`.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtExtractor {
    /// Headers, with an optional prefix to strip.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<JwtHeaderExtractor>,
    /// Cookie names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cookies: Vec<String>,
    /// Query parameter names.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub params: Vec<String>,
}

/// `JWTHeaderExtractor`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtHeaderExtractor {
    /// Header name.
    pub name: String,
    /// Prefix before the token, e.g. `Bearer `.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_prefix: Option<String>,
}

/// `ExtAuth`: an HTTP or a gRPC (Envoy `ext_authz`) authorization service.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExtAuth {
    /// The HTTP authorization service (exactly one of `http` and `grpc`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpExtAuth>,
    /// The gRPC authorization service (`envoy.service.auth.v3.Authorization/Check`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<GrpcExtAuth>,
    /// Client request headers sent to the service (besides the defaults).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers_to_ext_auth: Vec<String>,
    /// Send the request body (up to a limit) to the service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_to_ext_auth: Option<BodyToExtAuth>,
    /// Timeout of a check (default `10s`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Let requests through when the service cannot answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_open: Option<bool>,
}

/// `BodyToExtAuth`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BodyToExtAuth {
    /// Largest body sent; a larger request is answered 413.
    pub max_request_bytes: u32,
}

/// `HTTPExtAuthService`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpExtAuth {
    /// The service (deprecated singular form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_ref: Option<BackendRef>,
    /// The service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backend_refs: Vec<BackendRef>,
    /// Prefix put before the request path in the check request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Response headers of the service copied to the upstream request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers_to_backend: Vec<String>,
}

/// `GRPCExtAuthService`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcExtAuth {
    /// The service (deprecated singular form).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_ref: Option<BackendRef>,
    /// The service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub backend_refs: Vec<BackendRef>,
}

/// `OIDC`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Oidc {
    /// The OpenID provider.
    pub provider: OidcProvider,
    /// The client ID registered at the provider.
    #[serde(rename = "clientID")]
    pub client_id: String,
    /// Secret whose `client-secret` key holds the client secret.
    pub client_secret: SecretRef,
    /// Scopes requested (`openid` is always added).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
    /// Where the provider sends the browser back (default
    /// `<X-Forwarded-Proto>://<host>/oauth2/callback`).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        rename = "redirectURL"
    )]
    pub redirect_url: Option<String>,
    /// Path that ends the session (default `/logout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logout_path: Option<String>,
    /// Send the access token upstream as `Authorization: Bearer`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward_access_token: Option<bool>,
    /// Use the refresh token when the access token has expired.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refresh_token: Option<bool>,
    /// `Domain` attribute of the cookies (default: host-only cookies).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cookie_domain: Option<String>,
    /// Requests that get 401 instead of a redirect to the provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deny_redirect: Option<OidcDenyRedirect>,
}

/// `OIDCProvider`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OidcProvider {
    /// Issuer; `<issuer>/.well-known/openid-configuration` is discovered.
    pub issuer: String,
    /// Overrides the discovered `authorization_endpoint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization_endpoint: Option<String>,
    /// Overrides the discovered `token_endpoint`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_endpoint: Option<String>,
}

/// `OIDCDenyRedirect`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OidcDenyRedirect {
    /// Header matches (any matching header denies the redirect).
    pub headers: Vec<OidcDenyRedirectHeader>,
}

/// `OIDCDenyRedirectHeader` (a `StringMatch` with a header name).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OidcDenyRedirectHeader {
    /// Header name.
    pub name: String,
    /// `Exact` (default), `Prefix`, `Suffix` or `RegularExpression`.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<String>,
    /// The value to match.
    pub value: String,
}

/// `Authorization`.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Authorization {
    /// Rules, first match wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<AuthorizationRule>,
    /// `Allow` or `Deny` (the default) when no rule matches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_action: Option<String>,
}

/// `AuthorizationRule`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthorizationRule {
    /// Name, for logs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// `Allow` or `Deny`.
    pub action: String,
    /// Who the rule applies to; every principal kind given must match.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<Principal>,
}

/// `Principal`.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Principal {
    /// Client address ranges (any matches).
    #[serde(default, skip_serializing_if = "Vec::is_empty", rename = "clientCIDRs")]
    pub client_cidrs: Vec<String>,
    /// JWT claims and scopes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<JwtPrincipal>,
    /// Header values (all headers must match, any value of each).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<AuthorizationHeaderMatch>,
}

/// `JWTPrincipal`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtPrincipal {
    /// The provider that validated the token.
    pub provider: String,
    /// Claims (all must match).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub claims: Vec<JwtClaim>,
    /// Scopes (all must be in the `scope` claim).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub scopes: Vec<String>,
}

/// `JWTClaim`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtClaim {
    /// Claim, dotted for nested ones.
    pub name: String,
    /// `String` (default) or `StringArray`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_type: Option<String>,
    /// Accepted values (any matches).
    pub values: Vec<String>,
}

/// `AuthorizationHeaderMatch`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthorizationHeaderMatch {
    /// Header name (case-insensitive).
    pub name: String,
    /// Exact values (any matches).
    pub values: Vec<String>,
}

crate::policy::portcullis_resource!(SecurityPolicy, "securitypolicies");
