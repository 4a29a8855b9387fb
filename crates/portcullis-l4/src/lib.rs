//! Layer-4 proxying for Portcullis: TLSRoute (passthrough and terminate, mixed
//! on one port), TCPRoute and UDPRoute.
//!
//! An [`L4Port`] serves one bound port from an `ArcSwap<Port>` of the config
//! IR. Each connection reads the configuration current when it is accepted;
//! swapping the port changes where *new* connections go and never cuts open
//! ones.
//!
//! * **TLS ports** ([`PortProtocol::Tls`](portcullis_ir::PortProtocol::Tls)):
//!   the ClientHello is read (not answered) and parsed for its SNI
//!   ([`client_hello`]); the SNI selects the listener (exact > wildcard >
//!   no hostname). A `Passthrough` listener picks its TLSRoute by SNI
//!   (route hostnames, exact > wildcard > none, oldest on ties) and splices the
//!   bytes untouched, the ClientHello first. A `Terminate` listener hands the
//!   connection, ClientHello replayed ([`Rewind`]), to a [`Terminator`]: by
//!   default [`TlsTerminator`], which terminates with the listener's
//!   certificates and forwards plaintext to the route's backend.
//! * **TCP ports**: the oldest route on the port carries the traffic.
//! * **UDP ports**: see [`L4Port::serve_udp`]; sessions keyed by client address.
//!
//! Backends are weighted (weight 0 is never chosen); a `Backend::Invalid`, a
//! Service without endpoints, or no route closes the connection (drops the
//! datagram). TCP connections close after [`L4Options::idle_timeout`] without
//! traffic; connecting is bounded by [`L4Options::connect_timeout`].
//!
//! Drain: the serve functions take a future that resolves, when draining
//! starts, to the force-close deadline. Accepting stops at once; open
//! connections (UDP sessions) may finish until the deadline.
#![deny(missing_docs)]

/// Accept-loop backoff, shared with every server of the process.
pub use portcullis_obs::accept;
pub mod client_hello;
mod port;
mod rewind;
pub mod select;
mod splice;
mod terminate;
pub mod traffic;
mod udp;
pub mod weighted;

pub use port::{L4Options, L4Port, TerminateContext, Terminator, serve_tcp};
pub use rewind::Rewind;
pub use splice::splice;
pub use terminate::TlsTerminator;
pub use udp::serve_udp;
pub use weighted::{Weighted, pick_once};
