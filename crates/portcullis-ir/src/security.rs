//! SecurityPolicy, resolved: what the data plane enforces on a route rule.
//!
//! Secrets (API keys, htpasswd hashes, OIDC client secrets) are held in [`SecretString`], whose
//! `Debug` is always redacted and whose `Serialize` is redacted unless the
//! caller opts in with [`with_secrets_revealed`] (the controller → proxy
//! stream does; the admin API, logs and `portcullis status` do not).

use std::cell::Cell;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::Cors;

thread_local! {
    static REVEAL: Cell<bool> = const { Cell::new(false) };
}

/// What a redacted secret serialises as.
pub const REDACTED: &str = "<redacted>";

/// Run `f` with [`SecretString`]s serialising their real value (on this thread).
pub fn with_secrets_revealed<R>(f: impl FnOnce() -> R) -> R {
    struct Reset(bool);
    impl Drop for Reset {
        fn drop(&mut self) {
            REVEAL.with(|r| r.set(self.0));
        }
    }
    let _reset = Reset(REVEAL.with(|r| r.replace(true)));
    f()
}

/// A secret value: redacted in `Debug` always, in `Serialize` by default.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct SecretString(pub String);

impl SecretString {
    /// The secret.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl Serialize for SecretString {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if REVEAL.with(Cell::get) {
            s.serialize_str(&self.0)
        } else {
            s.serialize_str(REDACTED)
        }
    }
}

impl<'de> Deserialize<'de> for SecretString {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(SecretString)
    }
}

/// The effective SecurityPolicy of a route rule.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct Security {
    /// `namespace/name` of the policy, for logs.
    pub policy: String,
    /// The policy could not be resolved (a missing Secret, a bad reference):
    /// every request is answered 500 (fail closed), with this reason logged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid: Option<String>,
    /// CORS (answered before authentication).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors: Option<Cors>,
    /// JWT authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jwt: Option<Jwt>,
    /// API key authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<ApiKeyAuth>,
    /// Basic authentication.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic: Option<BasicAuth>,
    /// OpenID Connect (first of the authentications).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oidc: Option<Oidc>,
    /// External authorization (last of the authentications).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ext_auth: Option<ExtAuth>,
    /// Authorization rules.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorization: Option<Authorization>,
}

/// JWT authentication.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwt {
    /// A request without a token passes.
    pub optional: bool,
    /// Providers, tried in order.
    pub providers: Vec<JwtProvider>,
}

/// One JWT provider.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwtProvider {
    /// Name.
    pub name: String,
    /// Required issuer.
    pub issuer: Option<String>,
    /// Accepted audiences (any); empty: not checked.
    pub audiences: Vec<String>,
    /// Where the keys come from.
    pub keys: JwksSource,
    /// `(header, claim)` pairs.
    pub claim_to_headers: Vec<(String, String)>,
    /// Where the token is read from.
    pub extract: TokenSources,
}

/// Where a JWT provider's keys come from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JwksSource {
    /// Fetched from a URL and refreshed every `refresh_s` seconds.
    Remote {
        /// URL.
        uri: String,
        /// Refresh interval in seconds.
        refresh_s: u64,
    },
    /// Inline JSON.
    Local(String),
}

/// Where a credential is read from, in order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct TokenSources {
    /// `(header name lower case, prefix to strip)`.
    pub headers: Vec<(String, String)>,
    /// Cookie names.
    pub cookies: Vec<String>,
    /// Query parameter names.
    pub params: Vec<String>,
}

/// API key authentication.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyAuth {
    /// `(client ID, key)`, first of a duplicate client kept.
    pub clients: Vec<(String, SecretString)>,
    /// Sources, in order.
    pub extract: Vec<TokenSources>,
    /// Header carrying the client ID to the backend.
    pub forward_client_id_header: Option<String>,
    /// Remove the key before the backend.
    pub sanitize: bool,
}

/// Basic authentication.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BasicAuth {
    /// The htpasswd file's content.
    pub htpasswd: SecretString,
    /// Header carrying the user name to the backend.
    pub forward_username_header: Option<String>,
}

/// External authorization over HTTP or gRPC.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ExtAuth {
    /// The authorization service (endpoints resolved).
    pub backend: crate::Backend,
    /// The service speaks Envoy's `envoy.service.auth.v3.Authorization/Check`
    /// over h2c instead of plain HTTP.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub grpc: bool,
    /// Send the request body, up to this many bytes (a larger one is 413).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body_max_bytes: Option<u32>,
    /// Prefix of the check request's path (HTTP only).
    pub path_prefix: String,
    /// Request headers sent to the service besides the defaults (lower case); empty: all.
    pub headers_to_ext_auth: Vec<String>,
    /// Service response headers copied upstream (lower case).
    pub headers_to_backend: Vec<String>,
    /// Check timeout in milliseconds.
    pub timeout_ms: u64,
    /// Let requests through when the service cannot answer.
    pub fail_open: bool,
}

/// OpenID Connect: the authorization-code flow with PKCE.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Oidc {
    /// Issuer (discovery at `<issuer>/.well-known/openid-configuration`).
    pub issuer: String,
    /// Overrides the discovered `authorization_endpoint`.
    pub authorization_endpoint: Option<String>,
    /// Overrides the discovered `token_endpoint`.
    pub token_endpoint: Option<String>,
    /// Client ID.
    pub client_id: String,
    /// Client secret (redacted).
    pub client_secret: SecretString,
    /// The Secret's `session-key`: the cookie key is derived from it (shared
    /// by replicas and restarts); `None`: a random key per process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_key: Option<SecretString>,
    /// Scopes, `openid` first.
    pub scopes: Vec<String>,
    /// Redirect URL; `None`: `<X-Forwarded-Proto>://<host>/oauth2/callback`.
    pub redirect_url: Option<String>,
    /// Path that ends the session.
    pub logout_path: String,
    /// Send the access token upstream as `Authorization: Bearer`.
    pub forward_access_token: bool,
    /// Refresh an expired access token with the refresh token.
    pub refresh_token: bool,
    /// `Domain` of the cookies.
    pub cookie_domain: Option<String>,
    /// Header matches answered 401 instead of a redirect.
    pub deny_redirect: Vec<HeaderMatch>,
}

/// A header match of `denyRedirect`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HeaderMatch {
    /// Header name, lower case.
    pub name: String,
    /// How the value is compared.
    pub kind: StringMatchKind,
    /// The value.
    pub value: String,
}

/// How a [`HeaderMatch`] compares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum StringMatchKind {
    /// Equal.
    Exact,
    /// Starts with.
    Prefix,
    /// Ends with.
    Suffix,
    /// Matches the regular expression (whole value).
    RegularExpression,
}

/// Authorization rules.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Authorization {
    /// First match wins.
    pub rules: Vec<AuthorizationRule>,
    /// When nothing matches: allow.
    pub default_allow: bool,
}

/// One authorization rule.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizationRule {
    /// Name, for logs.
    pub name: String,
    /// Allow (`true`) or deny.
    pub allow: bool,
    /// Client CIDRs (any); empty: not checked.
    pub client_cidrs: Vec<String>,
    /// JWT principal.
    pub jwt: Option<JwtPrincipal>,
    /// `(header lower case, values)`: all headers, any value.
    pub headers: Vec<(String, Vec<String>)>,
}

/// A JWT principal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwtPrincipal {
    /// Provider name.
    pub provider: String,
    /// `(claim, string-array?, values)`.
    pub claims: Vec<JwtClaim>,
    /// Required scopes.
    pub scopes: Vec<String>,
}

/// A claim requirement.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JwtClaim {
    /// Dotted claim name.
    pub name: String,
    /// The claim is an array of strings (any element may match).
    pub string_array: bool,
    /// Accepted values.
    pub values: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_unless_revealed() {
        let b = BasicAuth {
            htpasswd: SecretString("alice:{SHA}abc".into()),
            forward_username_header: None,
        };
        assert!(!format!("{b:?}").contains("alice"));
        let json = serde_json::to_string(&b).unwrap();
        assert!(!json.contains("alice"), "{json}");
        let json = with_secrets_revealed(|| serde_json::to_string(&b).unwrap());
        assert!(json.contains("alice:{SHA}abc"), "{json}");
        // The flag does not outlive the call.
        assert!(!serde_json::to_string(&b).unwrap().contains("alice"));
    }
}
