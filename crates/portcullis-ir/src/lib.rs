//! The configuration IR: what translation produces and the data plane serves.
//!
//! The IR is plain, serialisable data with every reference already resolved:
//! Services are turned into endpoint lists, Secrets into PEM bytes, invalid
//! references into explicit [`Backend::Invalid`] entries that the data plane
//! answers with 500. The data plane compiles it (regexes, hostname indexes)
//! into its own lookup structures at swap time; the hot path never touches
//! the IR itself.
//!
//! Routing precedence is not encoded here: rules are listed with the metadata
//! the matcher needs to order them ([`RouteMeta`]), and the route matcher
//! sorts them with its `Ord` key.
#![deny(missing_docs)]

pub mod client;
pub mod http;
pub mod security;
pub mod traffic;

use std::net::SocketAddr;

use serde::{Deserialize, Serialize};

pub use client::{ClientConnection, ClientTraffic};
pub use http::*;
pub use security::{SecretString, Security, with_secrets_revealed};
pub use traffic::RateLimit;

/// The whole configuration served at one time.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Config {
    /// Every bound port (address + port), sorted by address.
    pub ports: Vec<Port>,
}

impl Config {
    /// Whether `self` equals `other`, comparing shared HTTP rules by
    /// identity first (equal to `==`, without walking the rules that are
    /// the same `Arc`s, which is most of them from one version to the next).
    pub fn same_as(&self, other: &Config) -> bool {
        self.ports.len() == other.ports.len()
            && self
                .ports
                .iter()
                .zip(&other.ports)
                .all(|(a, b)| a.same_as(b))
    }
}

impl Port {
    /// Whether `self` equals `other`; see [`Config::same_as`].
    pub fn same_as(&self, other: &Port) -> bool {
        let Port {
            bind,
            protocol,
            listeners,
            client,
        } = self;
        *bind == other.bind
            && *protocol == other.protocol
            && *client == other.client
            && listeners.len() == other.listeners.len()
            && listeners
                .iter()
                .zip(&other.listeners)
                .all(|(a, b)| a.same_as(b))
    }
}

impl Listener {
    /// Whether `self` equals `other`; see [`Config::same_as`].
    pub fn same_as(&self, other: &Listener) -> bool {
        let Listener {
            name,
            hostname,
            tls,
            http_routes,
            l4_routes,
            client,
        } = self;
        *name == other.name
            && *hostname == other.hostname
            && *tls == other.tls
            && *l4_routes == other.l4_routes
            && *client == other.client
            && http_routes.len() == other.http_routes.len()
            && http_routes
                .iter()
                .zip(&other.http_routes)
                .all(|(a, b)| std::sync::Arc::ptr_eq(a, b) || a == b)
    }
}

/// One socket the data plane binds, with every listener that shares it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Port {
    /// Address and port to bind.
    pub bind: SocketAddr,
    /// Protocol family of the socket.
    pub protocol: PortProtocol,
    /// The listeners on this socket, most specific hostname first
    /// (exact names, then wildcards by length, then no hostname).
    pub listeners: Vec<Listener>,
    /// ClientTrafficPolicy settings of the socket's connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<ClientConnection>,
}

/// Protocol of a bound port.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PortProtocol {
    /// Cleartext HTTP/1.1 and HTTP/2 (prior knowledge).
    Http,
    /// TLS terminated at the gateway, then HTTP.
    Https,
    /// TLS: passthrough or terminate, routed by SNI.
    Tls,
    /// Plain TCP.
    Tcp,
    /// UDP.
    Udp,
}

/// One Gateway (or ListenerSet) listener, as served.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Listener {
    /// `gateway-namespace/gateway-name/listener-name`, for logs and metrics.
    pub name: String,
    /// The listener's hostname, `None` for any; may be a wildcard `*.example.com`.
    pub hostname: Option<String>,
    /// TLS settings for HTTPS and TLS-terminate listeners.
    pub tls: Option<ListenerTls>,
    /// HTTP routes (for HTTP and HTTPS listeners): HTTPRoute and GRPCRoute rules.
    ///
    /// Each rule is shared (`Arc`): translation keeps the rules of unchanged
    /// routes from one configuration to the next, and the data plane keeps
    /// what it compiled from a rule while the rule's `Arc` is the same, so a
    /// route is held once however many versions and tables refer to it.
    pub http_routes: Vec<std::sync::Arc<HttpRouteRule>>,
    /// Layer-4 routes (TLSRoute, TCPRoute, UDPRoute), oldest first.
    pub l4_routes: Vec<L4Route>,
    /// ClientTrafficPolicy settings of the listener's requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client: Option<std::sync::Arc<ClientTraffic>>,
}

/// TLS settings of a listener.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ListenerTls {
    /// `Terminate` or `Passthrough`.
    pub mode: TlsMode,
    /// Certificates (PEM chain + key), in certificateRefs order.
    pub certificates: Vec<Certificate>,
    /// Client certificate validation, if configured.
    pub client_validation: Option<ClientValidation>,
}

/// TLS mode of a listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum TlsMode {
    /// Terminate TLS at the gateway.
    Terminate,
    /// Forward the TLS bytes untouched, routed by SNI.
    Passthrough,
}

/// A certificate and its private key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Certificate {
    /// Source Secret, `namespace/name`.
    pub source: String,
    /// PEM certificate chain.
    pub cert_pem: String,
    /// PEM private key.
    pub key_pem: String,
}

impl std::fmt::Debug for Certificate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Certificate")
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

/// Frontend client-certificate validation (GEP-91).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientValidation {
    /// PEM CA bundle.
    pub ca_pem: String,
    /// Accept connections without a valid certificate (`AllowInsecureFallback`).
    pub allow_insecure_fallback: bool,
}

/// Identity of the route a rule came from; the matcher orders by it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteMeta {
    /// `HTTPRoute`, `GRPCRoute`, `TLSRoute`, …
    pub kind: String,
    /// Route namespace.
    pub namespace: String,
    /// Route name.
    pub name: String,
    /// `metadata.creationTimestamp`, RFC 3339 (sorts chronologically).
    pub creation_timestamp: String,
    /// Index of the rule in `spec.rules`.
    pub rule_index: usize,
    /// `spec.rules[].name`, if set.
    pub rule_name: Option<String>,
}

/// A weighted backend.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WeightedBackend {
    /// Relative weight; 0 means never chosen.
    pub weight: u32,
    /// Where traffic goes.
    pub backend: Backend,
    /// backendRef-level filters (HTTP only), applied after the rule's filters.
    pub filters: Vec<HttpFilter>,
}

/// A resolved backend.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[allow(clippy::large_enum_variant)] // built once per config, never on a hot path
pub enum Backend {
    /// A Service port with its endpoints.
    Service(ServiceBackend),
    /// A reference that could not be resolved; HTTP answers 500, L4 refuses the connection.
    Invalid {
        /// Why, for logs.
        reason: String,
    },
}

/// A Service port resolved to endpoints.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ServiceBackend {
    /// `namespace/name:port`, for logs and metrics.
    pub name: String,
    /// Service namespace.
    pub namespace: String,
    /// The Service port's `appProtocol`, e.g. `kubernetes.io/h2c`.
    pub app_protocol: Option<String>,
    /// Ready (or serving) endpoints; empty means 503.
    pub endpoints: Vec<Endpoint>,
    /// Upstream TLS from a BackendTLSPolicy.
    pub tls: Option<BackendTls>,
}

/// One endpoint address.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// IP and port.
    pub addr: SocketAddr,
    /// Whether it is terminating (only used when nothing else is ready).
    pub terminating: bool,
    /// The EndpointSlice `zone` of the endpoint, if known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// The EndpointSlice `hints.forZones`: the zones that should use it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub for_zones: Vec<String>,
}

/// Upstream TLS settings (BackendTLSPolicy).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BackendTls {
    /// SNI and name to verify.
    pub hostname: String,
    /// PEM CA bundle; empty with `system_roots` for the system's.
    pub ca_pem: String,
    /// Use the system roots.
    pub system_roots: bool,
    /// Subject alternative names to accept instead of `hostname`.
    pub subject_alt_names: Vec<SubjectAltName>,
    /// Client certificate to present (Gateway `spec.tls.backend.clientCertificateRef`).
    pub client_certificate: Option<Certificate>,
}

/// A SAN to verify.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SubjectAltName {
    /// DNS name.
    Hostname(String),
    /// URI, e.g. SPIFFE ID.
    Uri(String),
}

/// A TLSRoute, TCPRoute or UDPRoute on a listener.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct L4Route {
    /// Route identity.
    pub meta: RouteMeta,
    /// SNI hostnames (TLSRoute), already intersected with the listener's; empty = any.
    pub hostnames: Vec<String>,
    /// Weighted backends of the (first) rule.
    pub backends: Vec<WeightedBackend>,
    /// BackendTrafficPolicy settings that apply to a TCP route.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic: Option<std::sync::Arc<traffic::TcpTraffic>>,
}
