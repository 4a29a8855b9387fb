//! The echo backend: answers every request with a JSON description of the
//! request it received (path, host, method, protocol, headers, TLS details and the
//! pod context), like the upstream `echo-basic` conformance image.
//!
//! Ports and context come from the same environment variables upstream reads
//! (`HTTP_PORT`, `H2C_PORT`, `HTTPS_PORT`, `POD_NAME`, `NAMESPACE`, `SERVICE_NAME`,
//! `INGRESS_NAME`, `TLS_SERVER_CERT`, `TLS_SERVER_PRIVKEY`, `TLS_CLIENT_CACERTS`),
//! plus a bind address so that many echo "pods" can share one machine.

/// Prints a line to stdout, ignoring a closed stdout (the runner reads these
/// lines; a vanished reader must not take the backend down).
macro_rules! log {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}
pub(crate) use log;

mod duration;
pub mod grpc;
mod handler;
mod headers;
mod server;
pub mod tcp;
mod tls;
pub mod udp;
mod ws;

pub use duration::parse_go_duration;
pub use handler::{EchoContext, RequestAssertions, TlsAssertions};
pub use headers::canonical_header_name;
pub use server::{EchoConfig, TlsFiles, run};

/// Errors raised while starting or running the echo backend.
#[derive(Debug, thiserror::Error)]
pub enum EchoError {
    /// A listening socket could not be bound.
    #[error("failed to listen on {addr}: {source}")]
    Bind {
        /// The address that could not be bound.
        addr: std::net::SocketAddr,
        /// The underlying I/O error.
        source: std::io::Error,
    },
    /// The TLS certificate, key or client CA bundle could not be loaded.
    #[error("TLS configuration: {0}")]
    Tls(String),
    /// A configuration value (environment variable or flag) is invalid.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// Any other I/O error.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}
