//! ClientTrafficPolicy in the IR: what applies to the connections of a port
//! ([`ClientConnection`], on [`crate::Port`]) and to the requests of one
//! listener ([`ClientTraffic`], on [`crate::Listener`]).
//!
//! Connection-level settings belong to the socket: every listener sharing a
//! port shares them (translation makes sure the port's listeners agree).

use serde::{Deserialize, Serialize};

/// Settings of every connection of a port.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ClientConnection {
    /// The policy they come from (`namespace/name`).
    pub policy: String,
    /// Connections start with a PROXY protocol v1/v2 header.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub proxy_protocol: bool,
    /// A whole request (head and body) must arrive within this many milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_received_timeout_ms: Option<u64>,
    /// A connection with no request in flight is closed after this many milliseconds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout_ms: Option<u64>,
    /// Open connections allowed on the port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_limit: Option<u64>,
    /// Largest request body buffered in memory, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub buffer_limit: Option<u64>,
    /// `http1.enableTrailers`: `None` (unset, or no policy): HTTP/1 trailers
    /// pass through as they always did; `Some(false)`: dropped in both
    /// directions for HTTP/1.1 clients; `Some(true)`: proxied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub h1_trailers: Option<bool>,
    /// `http1.preserveHeaderCase`: HTTP/1.1 header names keep the case the
    /// client sent (to the backend) and the backend sent (to the client);
    /// `false` (unset, or no policy): lower-cased.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub h1_preserve_case: bool,
    /// HTTP/2 concurrent streams per connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub h2_max_concurrent_streams: Option<u32>,
    /// HTTP/2 initial stream window, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub h2_initial_stream_window: Option<u32>,
    /// HTTP/2 initial connection window, in bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub h2_initial_connection_window: Option<u32>,
    /// TLS settings (HTTPS ports).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientTls>,
}

impl ClientConnection {
    /// The settings without the policy's name: what must agree on one port.
    pub fn settings(&self) -> ClientConnection {
        ClientConnection {
            policy: String::new(),
            ..self.clone()
        }
    }
}

/// TLS versions, suites and ALPN of an HTTPS port.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ClientTls {
    /// Lowest version: `1.2` or `1.3` (`None`: 1.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_version: Option<String>,
    /// Highest version: `1.2` or `1.3` (`None`: 1.3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_version: Option<String>,
    /// Cipher suites by IANA name (empty: every suite of the build).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ciphers: Vec<String>,
    /// ALPN protocols in order (empty: `h2`, `http/1.1`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub alpn: Vec<String>,
}

/// Settings of the requests of one listener.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientTraffic {
    /// The policy they come from (`namespace/name`).
    pub policy: String,
    /// The policy could not be used: every request is answered 500 (fail closed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invalid: Option<String>,
    /// Client-address detection (`None`: the process default, `--trusted-hops`/`--trusted-cidrs`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_ip: Option<ClientIp>,
    /// Request headers whose name holds `_`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub underscores: Underscores,
    /// `X-Request-ID` handling.
    #[serde(default, skip_serializing_if = "is_default")]
    pub request_id: RequestId,
    /// Request path handling (`path`).
    #[serde(default, skip_serializing_if = "is_default")]
    pub path: PathSettings,
}

/// `path`: how the request path is normalised before routing (and so what is
/// forwarded). The default is what the data plane does without a policy.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PathSettings {
    /// `%2F`/`%5C` in the path.
    #[serde(default, skip_serializing_if = "is_default")]
    pub escaped_slashes: EscapedSlashes,
    /// Keep `//` as it is (`disableMergeSlashes: true`); default: merged into `/`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_duplicate_slashes: bool,
}

/// `path.escapedSlashesAction`: what to do with `%2F`, `%2f`, `%5C`, `%5c`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EscapedSlashes {
    /// Kept encoded (`%2F`, `%5C`): not path separators.
    #[default]
    KeepUnchanged,
    /// Answer 400.
    RejectRequest,
    /// Answer a redirect (307) to the path with them unescaped.
    UnescapeAndRedirect,
    /// Unescape them (both become `/`) and route and forward that path.
    UnescapeAndForward,
}

fn is_default<T: Default + PartialEq>(t: &T) -> bool {
    *t == T::default()
}

/// Where the client address comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ClientIp {
    /// `X-Forwarded-For` from trusted proxies.
    XForwardedFor {
        /// The client is the N-th address from the right.
        trusted_hops: u32,
        /// Peers in these networks are trusted proxies.
        trusted_cidrs: Vec<String>,
    },
    /// A header set by a trusted proxy.
    CustomHeader {
        /// Lower-case header name.
        name: String,
        /// 403 when the header is missing or not an address.
        fail_closed: bool,
    },
}

/// `headers.withUnderscoresAction`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Underscores {
    /// Pass them on.
    #[default]
    Allow,
    /// Answer 400.
    Reject,
    /// Remove them before routing.
    Drop,
}

/// `headers.requestID`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum RequestId {
    /// The client's header passes through untouched (no policy field set).
    #[default]
    PassThrough,
    /// Keep the client's, generate one when absent.
    PreserveOrGenerate,
    /// Keep the client's, never generate.
    Preserve,
    /// Always a new one.
    Generate,
    /// Remove the client's, never generate.
    Disable,
}
