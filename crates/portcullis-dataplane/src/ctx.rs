//! The request path's state, from the process to one connection: [`Shared`]
//! (every port), [`PortCtx`] (one bound port: its route table, swapped on
//! apply) and [`ConnCtx`] (one client connection). The handler
//! ([`crate::handler`]) only reads them.

use std::hash::RandomState;
use std::net::SocketAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use portcullis_tls::SwappableAcceptor;

use crate::Options;
use crate::backend::h1::H1Client;
use crate::backend::pool::Clients;
use crate::backend::tls::UpstreamTlsCache;
use crate::conn::Builders;
use crate::drain::DrainWatch;
use crate::limits::ConnCap;
use crate::table::PortTable;

/// State shared by every port.
#[derive(Debug)]
pub struct Shared {
    /// Options.
    pub opts: Options,
    /// Upstream clients (hyper: HTTP/2, upgrades, mirrors).
    pub clients: Clients,
    /// The lean HTTP/1.1 upstream client (plain-text, no upgrade).
    pub h1: H1Client,
    /// Upstream TLS clients (BackendTLSPolicy), by policy.
    pub upstream_tls: UpstreamTlsCache,
    /// Key for session tokens.
    pub tokens: RandomState,
    /// Worker threads serving HTTP(S) ports (none: the caller's runtime).
    pub workers: crate::workers::Workers,
    /// Remote JWKS shared by SecurityPolicies.
    pub jwks: crate::auth::JwksCache,
    /// Rate-limit buckets and the Redis client (BackendTrafficPolicy).
    pub limiters: crate::ratelimit::Limiters,
    /// Slow-start ramps of endpoints (BackendTrafficPolicy), kept across rebuilds.
    pub births: crate::backend::slow_start::Births,
    /// Compiled Service targets shared by rules without a policy.
    pub targets: crate::backend::SharedTargets,
}

/// State of one bound port.
pub struct PortCtx {
    /// The live table, swapped on apply.
    pub table: ArcSwap<PortTable>,
    /// Shared state.
    pub shared: Arc<Shared>,
    /// Connection builders (HTTP/1.1 + HTTP/2 prior knowledge; either alone for TLS ALPN).
    pub builders: Builders,
    /// HTTPS ports: the TLS acceptor, whose configuration is swapped on rotation.
    pub tls: Option<Arc<SwappableAcceptor>>,
    /// The cap on open client connections.
    pub conns: ConnCap,
    /// Connection and TLS handshake counters of the port.
    pub stats: portcullis_obs::metrics::PortStats,
    /// The port's options: the process options with its ClientTrafficPolicy
    /// connection settings applied ([`crate::client_traffic::port_options`]).
    pub opts: Options,
    /// ClientTrafficPolicy connection settings of the port.
    pub client: Option<portcullis_ir::ClientConnection>,
    /// ClientTrafficPolicy `connectionLimit`: open connections, and the limit.
    pub limit: Option<(usize, Arc<std::sync::atomic::AtomicUsize>)>,
}

/// State of one client connection.
pub struct ConnCtx {
    /// Its port.
    pub port: Arc<PortCtx>,
    /// Client address.
    pub peer: SocketAddr,
    /// Drain watch, handed to upgraded tunnels.
    pub drain: DrainWatch,
    /// TLS connections: the SNI of the ClientHello.
    pub sni: Option<Box<str>>,
}
