//! TLS for Portcullis, built from the config IR.
//!
//! * [`ServerTls`]: the frontend TLS of one bound port. Certificates come from
//!   each listener's [`ListenerTls`](portcullis_ir::ListenerTls) and are chosen
//!   by SNI (exact name, then the longest matching wildcard, then the listener
//!   without hostname; without SNI the least specific listener). Client
//!   certificates are validated per listener (GEP-91 `AllowValidOnly` and
//!   `AllowInsecureFallback`). ALPN is chosen by the caller ([`Alpn`]).
//! * [`SwappableAcceptor`]: an `ArcSwap<ServerTls>` with an `accept` that
//!   reads the ClientHello, picks the listener's `ServerConfig` and completes
//!   the handshake. Storing a new [`ServerTls`] (a rotated Secret means a new
//!   IR, a new [`ServerTls`]) changes what the *next* handshake sees; open
//!   connections keep the config they were accepted with.
//! * [`host_allowed_for_sni`]: the misdirected-request (HTTP 421) rule.
//! * [`client_config`]: upstream TLS for a BackendTLSPolicy (CA bundle or the
//!   system's roots, SNI = `hostname`, verification of `hostname` or of the
//!   `subjectAltNames`, the Gateway's client certificate).
//!
//! Everything uses rustls with the aws-lc-rs provider, passed explicitly (no
//! process-wide default provider is installed or needed), and the provider's
//! default protocol versions (TLS 1.2 and 1.3) and cipher suites.
#![deny(missing_docs)]

mod acceptor;
pub mod names;
mod pem;
mod server;
mod upstream;

use std::sync::Arc;

pub use acceptor::{ClientCert, HandshakeInfo, SwappableAcceptor};
pub use names::host_allowed_for_sni;
pub use server::{Alpn, ServerSettings, ServerTls};
pub use upstream::{client_config, client_config_with_alpn, server_name};

/// Re-exported so callers use the same versions.
pub use rustls;
pub use tokio_rustls;

/// Errors building TLS configurations or accepting TLS connections.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM block could not be parsed.
    #[error("{what}: invalid PEM: {reason}")]
    Pem {
        /// What was being parsed (listener, Secret, ...).
        what: String,
        /// Parser message.
        reason: String,
    },
    /// A PEM input held no certificate.
    #[error("{0}: no certificate in PEM")]
    NoCertificate(String),
    /// The private key could not be loaded or does not match the certificate.
    #[error("{what}: private key: {source}")]
    Key {
        /// Which certificate.
        what: String,
        /// rustls' reason.
        #[source]
        source: rustls::Error,
    },
    /// No trust anchor could be loaded (empty CA bundle and no system roots).
    #[error("{0}: no usable CA certificate")]
    NoRoots(String),
    /// rustls refused to build a config or verifier.
    #[error("{what}: {reason}")]
    Config {
        /// Which config.
        what: String,
        /// Why.
        reason: String,
    },
    /// `hostname` is not a valid DNS name or IP address.
    #[error("invalid TLS server name {0:?}")]
    ServerName(String),
    /// The handshake failed.
    #[error("TLS handshake: {0}")]
    Handshake(#[source] std::io::Error),
    /// The handshake did not finish in time.
    #[error("TLS handshake timed out")]
    HandshakeTimeout,
}

/// The crypto provider used everywhere: aws-lc-rs with its defaults.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static PROVIDER: std::sync::OnceLock<Arc<rustls::crypto::CryptoProvider>> =
        std::sync::OnceLock::new();
    PROVIDER
        .get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .clone()
}
