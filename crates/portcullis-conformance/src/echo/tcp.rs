//! The TCP echo (`TCP_ECHO_SERVER`, upstream echo-basic `tcpserver`): on connect
//! it sends a welcome line, then answers `PING` with `PONG`, `IS_TLS` with
//! `true`/`false` and `TEST` with a JSON line describing the pod and the TLS
//! session. Plain on `TCP_PORT` (3000), TLS on `TLS_PORT` (8443) when a
//! certificate is configured.

use std::net::SocketAddr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use super::{EchoContext, EchoError};

/// The first line every connection receives.
pub const WELCOME_MESSAGE: &str = "Gateway API Test TCP Server\n";

/// TLS details in the `TEST` answer.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TcpTlsAssertions {
    /// `TLS 1.3` or `TLS 1.2` (Go's tls.VersionName).
    pub version: String,
    /// The SNI the client sent.
    pub server_name: String,
    /// The ALPN protocol negotiated, if any.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub negotiated_protocol: String,
    /// The key-exchange group.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub curves: String,
    /// The cipher suite, named as Go names it.
    pub cipher_suite: String,
}

/// The JSON line answered to `TEST`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct TcpAssertions {
    /// `NAMESPACE`.
    pub namespace: String,
    /// `INGRESS_NAME`.
    pub ingress: String,
    /// `SERVICE_NAME`.
    pub service: String,
    /// `POD_NAME`.
    pub pod: String,
    /// The plain port.
    pub tcpport: String,
    /// The TLS port.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub tlsport: String,
    /// Whether the connection is TLS.
    #[serde(rename = "isTLS")]
    pub is_tls: bool,
    /// TLS details.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TcpTlsAssertions>,
}

/// Configuration of the TCP echo.
#[derive(Debug, Clone)]
pub struct TcpEchoConfig {
    /// Bind address.
    pub bind: std::net::IpAddr,
    /// Plain port.
    pub tcp_port: u16,
    /// TLS port.
    pub tls_port: u16,
    /// Pod context.
    pub context: EchoContext,
    /// PEM certificate and key paths.
    pub tls: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

/// Serves until a listener fails.
pub async fn run(config: TcpEchoConfig) -> Result<(), EchoError> {
    let base = TcpAssertions {
        namespace: config.context.namespace.clone(),
        ingress: config.context.ingress.clone(),
        service: config.context.service.clone(),
        pod: config.context.pod.clone(),
        tcpport: config.tcp_port.to_string(),
        tlsport: config.tls_port.to_string(),
        is_tls: false,
        tls: None,
    };
    let bind = |port| async move {
        let addr = SocketAddr::new(config.bind, port);
        TcpListener::bind(addr)
            .await
            .map_err(|source| EchoError::Bind { addr, source })
    };
    let plain = bind(config.tcp_port).await?;
    let mut tasks = tokio::task::JoinSet::new();
    if let Some((cert, key)) = &config.tls {
        let mut server = (*super::tls::server_config(cert, key, None)?).clone();
        server.alpn_protocols.clear();
        let acceptor = TlsAcceptor::from(Arc::new(server));
        let listener = bind(config.tls_port).await?;
        let base = base.clone();
        tasks.spawn(async move {
            loop {
                let (stream, _) = listener.accept().await?;
                let acceptor = acceptor.clone();
                let mut a = base.clone();
                tokio::spawn(async move {
                    let Ok(tls) = acceptor.accept(stream).await else {
                        return;
                    };
                    let conn = tls.get_ref().1;
                    let session = super::tls::assertions(conn);
                    a.is_tls = true;
                    a.tls = Some(TcpTlsAssertions {
                        version: session.version.replace("TLSv", "TLS "),
                        server_name: session.server_name,
                        negotiated_protocol: session.negotiated_protocol,
                        curves: conn
                            .negotiated_key_exchange_group()
                            .map(|g| format!("{:?}", g.name()))
                            .unwrap_or_default(),
                        cipher_suite: session.cipher_suite,
                    });
                    let _ = serve(tls, a).await;
                });
            }
            #[allow(unreachable_code)]
            Ok::<(), std::io::Error>(())
        });
    }
    tasks.spawn(async move {
        loop {
            let (stream, _) = plain.accept().await?;
            let a = base.clone();
            tokio::spawn(async move {
                let _ = serve(stream, a).await;
            });
        }
        #[allow(unreachable_code)]
        Ok::<(), std::io::Error>(())
    });
    super::log!(
        "Starting TCP server, listening on port {} (tcp){}",
        config.tcp_port,
        if config.tls.is_some() {
            format!(", {} (tls)", config.tls_port)
        } else {
            String::new()
        }
    );
    match tasks.join_next().await {
        Some(Ok(r)) => r.map_err(EchoError::Io),
        Some(Err(e)) => Err(EchoError::Io(std::io::Error::other(e.to_string()))),
        None => Ok(()),
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    a: TcpAssertions,
) -> std::io::Result<()> {
    let payload = serde_json::to_string(&a).map_err(std::io::Error::other)?;
    let (read, mut write) = tokio::io::split(stream);
    write.write_all(WELCOME_MESSAGE.as_bytes()).await?;
    let mut lines = BufReader::new(read).lines();
    while let Some(line) = lines.next_line().await? {
        let answer = match line.trim_end_matches('\r') {
            "TEST" => format!("{payload}\n"),
            "IS_TLS" => format!("{}\n", a.is_tls),
            "PING" => "PONG\n".to_string(),
            _ => continue,
        };
        write.write_all(answer.as_bytes()).await?;
    }
    Ok(())
}
