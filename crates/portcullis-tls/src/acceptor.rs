//! A TLS acceptor whose configuration can be swapped while connections are open.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;

use crate::{ServerTls, TlsError};

/// What the client presented, as far as client-certificate validation goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientCert {
    /// The listener does not validate client certificates.
    NotRequested,
    /// Validation is configured (with insecure fallback) and no certificate was sent.
    Missing,
    /// A certificate that chains to the listener's CA bundle.
    Valid,
    /// A certificate that does not validate, accepted by `AllowInsecureFallback`.
    Invalid,
}

/// Facts about an accepted TLS connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandshakeInfo {
    /// The SNI the client sent.
    pub sni: Option<String>,
    /// The negotiated ALPN protocol (`h2`, `http/1.1`).
    pub alpn: Option<Vec<u8>>,
    /// The listener the SNI selected (its IR name).
    pub listener: Option<String>,
    /// Client certificate status.
    pub client_cert: ClientCert,
    /// Negotiated protocol version.
    pub version: Option<rustls::ProtocolVersion>,
}

impl HandshakeInfo {
    /// Whether HTTP/2 was negotiated.
    pub fn is_h2(&self) -> bool {
        self.alpn.as_deref() == Some(b"h2")
    }
}

/// An acceptor over an `ArcSwap<ServerTls>`.
///
/// [`accept`](Self::accept) reads the ClientHello, loads the current
/// [`ServerTls`], picks the config of the listener the SNI selects and
/// finishes the handshake. [`store`](Self::store) swaps the configuration: the
/// next handshake uses it, while established connections keep the config
/// (certificates, keys) they were accepted with.
pub struct SwappableAcceptor {
    current: ArcSwap<ServerTls>,
    handshake_timeout: Duration,
}

impl std::fmt::Debug for SwappableAcceptor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SwappableAcceptor")
            .field("current", &self.current.load())
            .field("handshake_timeout", &self.handshake_timeout)
            .finish()
    }
}

impl SwappableAcceptor {
    /// Default bound on the whole handshake, ClientHello included.
    pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

    /// An acceptor serving `tls`.
    pub fn new(tls: ServerTls) -> Self {
        SwappableAcceptor {
            current: ArcSwap::from_pointee(tls),
            handshake_timeout: Self::DEFAULT_HANDSHAKE_TIMEOUT,
        }
    }

    /// Sets the handshake timeout.
    pub fn with_handshake_timeout(mut self, timeout: Duration) -> Self {
        self.handshake_timeout = timeout;
        self
    }

    /// Replaces the configuration for every later handshake.
    pub fn store(&self, tls: ServerTls) {
        self.current.store(Arc::new(tls));
    }

    /// The configuration new handshakes use.
    pub fn load(&self) -> Arc<ServerTls> {
        self.current.load_full()
    }

    /// Runs the server side of a handshake on `stream`.
    pub async fn accept<IO>(&self, stream: IO) -> Result<(TlsStream<IO>, HandshakeInfo), TlsError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        tokio::time::timeout(self.handshake_timeout, self.handshake(stream))
            .await
            .map_err(|_| TlsError::HandshakeTimeout)?
    }

    async fn handshake<IO>(&self, stream: IO) -> Result<(TlsStream<IO>, HandshakeInfo), TlsError>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let start = LazyConfigAcceptor::new(rustls::server::Acceptor::default(), stream)
            .await
            .map_err(TlsError::Handshake)?;
        let sni = start.client_hello().server_name().map(str::to_owned);
        let tls = self.current.load_full();
        let group = tls.group(tls.group_for_sni(sni.as_deref()));
        let listener = tls.listener_for_sni(sni.as_deref()).map(str::to_owned);
        let verifier = group.verifier.clone();
        let stream = start
            .into_stream(group.config.clone())
            .await
            .map_err(TlsError::Handshake)?;
        let conn = stream.get_ref().1;
        let client_cert = match (&verifier, conn.peer_certificates()) {
            (None, _) => ClientCert::NotRequested,
            (Some(_), None) => ClientCert::Missing,
            // Without fallback, a finished handshake means the chain validated.
            (Some(v), Some(_)) if !v.fallback => ClientCert::Valid,
            (Some(v), Some(chain)) if v.is_valid(chain) => ClientCert::Valid,
            (Some(_), Some(_)) => ClientCert::Invalid,
        };
        let info = HandshakeInfo {
            sni,
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
            listener,
            client_cert,
            version: conn.protocol_version(),
        };
        Ok((stream, info))
    }
}
