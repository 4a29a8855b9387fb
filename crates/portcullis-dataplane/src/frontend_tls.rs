//! Frontend TLS of a port: a [`SwappableAcceptor`] built from the port's
//! TLS-terminating listeners, rebuilt when their TLS changes, and the
//! handshake-then-HTTP path for one connection.
//!
//! Rotation: when an apply changes a listener's TLS (a rotated Secret, a new
//! certificate, a changed client validation), a new [`ServerTls`] is stored
//! in the acceptor; the next handshake uses it, open connections keep
//! theirs. A configuration that cannot be built keeps the previous one (or,
//! for a new port, one that refuses every handshake) and is reported.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use portcullis_ir::{Listener, Port};
use portcullis_tls::{Alpn, ServerSettings, ServerTls, SwappableAcceptor};
use tokio::io::{AsyncRead, AsyncWrite};

use crate::conn::{self, Proto};
use crate::drain::DrainWatch;
use crate::handler::PortCtx;
use crate::table::without_routes;

/// The acceptor of a port and what it was built from.
pub struct FrontendTls {
    /// The acceptor connections handshake with.
    pub acceptor: Arc<SwappableAcceptor>,
    /// The listeners (without routes) the current configuration was built
    /// from; `None` while none could be built.
    built_from: Option<Vec<Listener>>,
}

impl FrontendTls {
    /// Build for `port`; the error, if any, is returned for the report and
    /// the acceptor then refuses every handshake.
    pub fn new(port: &Port, handshake_timeout: Duration) -> (Self, Option<String>) {
        let (tls, built_from, error) = match build(port) {
            Ok(t) => (t, Some(listeners(port)), None),
            Err(e) => {
                tracing::warn!(bind = %port.bind, error = %e, "TLS configuration failed; handshakes are refused");
                (refuse_all(), None, Some(e))
            }
        };
        let acceptor =
            Arc::new(SwappableAcceptor::new(tls).with_handshake_timeout(handshake_timeout));
        (
            FrontendTls {
                acceptor,
                built_from,
            },
            error,
        )
    }

    /// Rebuild if the listeners' TLS changed; an error keeps the previous
    /// configuration and is returned for the report.
    pub fn update(&mut self, port: &Port) -> Option<String> {
        let wanted = listeners(port);
        if self.built_from.as_ref() == Some(&wanted) {
            return None;
        }
        match build(port) {
            Ok(t) => {
                self.acceptor.store(t);
                self.built_from = Some(wanted);
                tracing::info!(bind = %port.bind, "TLS configuration updated");
                None
            }
            Err(e) => {
                tracing::warn!(bind = %port.bind, error = %e, "TLS configuration failed; the previous one stays");
                Some(e)
            }
        }
    }
}

fn listeners(port: &Port) -> Vec<Listener> {
    port.listeners.iter().map(without_routes).collect()
}

fn build(port: &Port) -> Result<ServerTls, String> {
    let tls = port.client.as_ref().and_then(|c| c.tls.as_ref());
    let Some(t) = tls else {
        return ServerTls::build(&port.listeners, Alpn::Http).map_err(|e| e.to_string());
    };
    let settings = ServerSettings {
        tls13_only: t.min_version.as_deref() == Some("1.3"),
        tls12_only: t.max_version.as_deref() == Some("1.2"),
        ciphers: t.ciphers.clone(),
    };
    let alpn = if t.alpn.is_empty() {
        Alpn::Http
    } else {
        Alpn::Custom(t.alpn.iter().map(|p| p.as_bytes().to_vec()).collect())
    };
    ServerTls::build_with(&port.listeners, alpn, &settings).map_err(|e| e.to_string())
}

/// A configuration with no listener: every handshake fails.
fn refuse_all() -> ServerTls {
    ServerTls::build::<Listener>(&[], Alpn::Http)
        .expect("a TLS configuration without certificates builds")
}

/// The `reason` label of a failed handshake: `timeout`, `eof` (the client
/// went away), `protocol` (rustls refused the exchange: no common version or
/// cipher, a bad or missing client certificate, an alert), or `io`.
pub fn failure_reason(e: &portcullis_tls::TlsError) -> &'static str {
    use std::io::ErrorKind;
    match e {
        portcullis_tls::TlsError::HandshakeTimeout => "timeout",
        portcullis_tls::TlsError::Handshake(io) => match io.kind() {
            ErrorKind::UnexpectedEof | ErrorKind::ConnectionReset | ErrorKind::BrokenPipe => "eof",
            ErrorKind::InvalidData => "protocol",
            _ => "io",
        },
        _ => "protocol",
    }
}

/// Handshake (abandoned if the port starts draining), then HTTP as ALPN
/// chose: HTTP/2 for `h2`, HTTP/1.1 otherwise.
pub async fn serve<IO>(
    stream: IO,
    peer: SocketAddr,
    acceptor: Arc<SwappableAcceptor>,
    ctx: Arc<PortCtx>,
    mut watch: DrainWatch,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let accepted = tokio::select! {
        r = acceptor.accept(stream) => r,
        _ = watch.signaled() => return,
    };
    match accepted {
        Ok((tls, info)) => {
            ctx.stats.handshake();
            let proto = if info.is_h2() {
                Proto::Http2
            } else {
                Proto::Http1
            };
            tracing::trace!(%peer, sni = ?info.sni, listener = ?info.listener, client_cert = ?info.client_cert, "TLS handshake done");
            conn::serve(tls, peer, ctx, watch, proto, info.sni.map(Into::into)).await;
        }
        Err(e) => {
            ctx.stats.handshake_failed(failure_reason(&e));
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
        }
    }
}
