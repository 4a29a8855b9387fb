//! The default [`Terminator`]: TLSRoute `Terminate` — a rustls handshake with
//! the listener's certificates (no ALPN), then plain TCP to the route's backend.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};

use portcullis_ir::Port;
use portcullis_tls::{Alpn, ServerTls, SwappableAcceptor, TlsError};
use tokio::net::TcpStream;

use crate::port::{TerminateContext, Terminator, connect_any};
use crate::rewind::Rewind;
use crate::select::{self, Refusal};
use crate::splice::splice;

/// Terminates TLS with the certificates of the port's `Terminate` listeners
/// and forwards the plaintext to the TLSRoute backend chosen by SNI.
///
/// The TLS configuration is built from the port configuration the connection
/// was accepted with and reused until the port configuration changes (a new
/// `Arc<Port>`), so a rotated certificate is used by the next handshake while
/// open connections are untouched.
#[derive(Default)]
pub struct TlsTerminator {
    /// The port version the acceptor was built for; `None` if that build failed
    /// (logged once, connections are closed until the configuration changes).
    cache: Mutex<Option<Built>>,
}

/// A port version and the acceptor built for it (`None`: the build failed).
type Built = (Arc<Port>, Option<Arc<SwappableAcceptor>>);

impl std::fmt::Debug for TlsTerminator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsTerminator").finish_non_exhaustive()
    }
}

impl TlsTerminator {
    fn acceptor(&self, ctx: &TerminateContext) -> Option<Arc<SwappableAcceptor>> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((port, acceptor)) = cache.as_ref()
            && Arc::ptr_eq(port, &ctx.port)
        {
            return acceptor.clone();
        }
        let acceptor = match ServerTls::build(&ctx.port.listeners, Alpn::None) {
            Ok(tls) => Some(Arc::new(
                SwappableAcceptor::new(tls)
                    .with_handshake_timeout(ctx.options.client_hello_timeout),
            )),
            Err(e) => {
                tracing::warn!(bind = %ctx.port.bind, error = %e, "TLS termination unavailable on this port");
                None
            }
        };
        *cache = Some((ctx.port.clone(), acceptor.clone()));
        acceptor
    }
}

impl Terminator for TlsTerminator {
    fn terminate(
        &self,
        stream: Rewind<TcpStream>,
        ctx: TerminateContext,
    ) -> Pin<Box<dyn Future<Output = ()> + Send + 'static>> {
        let acceptor = self.acceptor(&ctx);
        Box::pin(async move {
            let peer = ctx.peer;
            if let Err(e) = serve(acceptor, stream, ctx).await {
                tracing::debug!(%peer, error = %e, "terminated TLS connection closed");
            }
        })
    }
}

#[derive(Debug, thiserror::Error)]
enum TerminateError {
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error(transparent)]
    Conn(#[from] crate::port::ConnError),
}

async fn serve(
    acceptor: Option<Arc<SwappableAcceptor>>,
    stream: Rewind<TcpStream>,
    ctx: TerminateContext,
) -> Result<(), TerminateError> {
    let Some(acceptor) = acceptor else {
        return Ok(()); // already logged; dropping the stream closes it
    };
    let (tls, info) = acceptor.accept(stream).await?;
    let listener = &ctx.port.listeners[ctx.listener];
    let route = select::select_tls_route(listener, info.sni.as_deref())
        .ok_or_else(|| crate::port::ConnError::from(Refusal::NoRoute(listener.name.clone())))?;
    let targets =
        select::upstreams(route, &mut rand::rng()).map_err(crate::port::ConnError::from)?;
    let upstream = connect_any(&targets, ctx.options.connect_timeout).await?;
    splice(tls, upstream, ctx.options.idle_timeout)
        .await
        .map_err(crate::port::ConnError::from)?;
    Ok(())
}
