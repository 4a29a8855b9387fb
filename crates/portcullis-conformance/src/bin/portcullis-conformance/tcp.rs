//! The TCP client of upstream `utils/tcp`: talks the tcp-backend protocol
//! (welcome line, PING/PONG, IS_TLS, TEST → JSON), optionally over TLS.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use portcullis_conformance::echo::tcp::{TcpAssertions, WELCOME_MESSAGE};
use rustls_pki_types::ServerName;
use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};

use crate::suite::Ctx;

/// upstream tcp.ExpectedResponse.
#[derive(Debug, Clone, Default)]
pub struct TcpExpected {
    pub backend_is_tls: bool,
    pub backend: String,
    pub namespace: String,
    pub hostname: String,
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

async fn dial(addr: &str, tls: Option<(&str, &str)>) -> Result<Box<dyn Io>> {
    let tcp = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("client could not connect to {addr}"))?;
    let Some((ca, server_name)) = tls else {
        return Ok(Box::new(tcp));
    };
    let roots = rustls_pki_types::CertificateDer::pem_slice_iter(ca.as_bytes())
        .collect::<Result<Vec<_>, _>>()?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(crate::gotls::GoVerifier::new(roots)?)
        .with_no_client_auth();
    let name = ServerName::try_from(server_name.to_string())?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .context("TLS handshake")?;
    Ok(Box::new(stream))
}

async fn exchange(addr: &str, tls: Option<(&str, &str)>, expected: &TcpExpected) -> Result<()> {
    let stream = dial(addr, tls).await?;
    let (read, mut write) = tokio::io::split(stream);
    let mut reader = BufReader::new(read);
    let mut line = String::new();
    let next = async |reader: &mut BufReader<_>, line: &mut String| -> Result<String> {
        line.clear();
        tokio::time::timeout(Duration::from_secs(10), reader.read_line(line))
            .await
            .context("read timeout")??;
        Ok(line.clone())
    };
    let welcome = next(&mut reader, &mut line).await?;
    if welcome != WELCOME_MESSAGE {
        bail!("TCPServer welcome message does not match: {welcome:?}");
    }
    write.write_all(b"PING\n").await?;
    let pong = next(&mut reader, &mut line).await?;
    if pong != "PONG\n" {
        bail!("expected PONG, got {pong:?}");
    }
    write.write_all(b"IS_TLS\n").await?;
    let is_tls = next(&mut reader, &mut line).await?;
    if is_tls.trim_end() != expected.backend_is_tls.to_string() {
        bail!(
            "expected IS_TLS {}, got {is_tls:?}",
            expected.backend_is_tls
        );
    }
    write.write_all(b"TEST\n").await?;
    let payload = next(&mut reader, &mut line).await?;
    let a: TcpAssertions = serde_json::from_str(&payload).context("decoding TEST answer")?;
    if a.namespace != expected.namespace {
        bail!(
            "namespace does not match: expected {}, got {}",
            expected.namespace,
            a.namespace
        );
    }
    if !a.pod.starts_with(&format!("{}-", expected.backend)) {
        bail!(
            "backend name does not match with pod prefix. pod={} and backend={}",
            a.pod,
            expected.backend
        );
    }
    if !expected.hostname.is_empty() {
        let sni = a.tls.map(|t| t.server_name).unwrap_or_default();
        if sni != expected.hostname {
            bail!("expected SNI {}, got {sni:?}", expected.hostname);
        }
    }
    Ok(())
}

/// upstream MakeTCPRequestAndExpectEventuallyValidResponse.
pub async fn expect_tcp_response(
    ctx: &Ctx,
    addr: &str,
    tls: Option<(&str, &str)>,
    expected: &TcpExpected,
) -> Result<()> {
    let deadline = Instant::now() + ctx.timeout;
    loop {
        match exchange(addr, tls, expected).await {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() > deadline => {
                return Err(e.context(format!("TCP request to {addr}")));
            }
            Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

/// upstream EchoSendOnce: the pod that answered `TEST`.
pub async fn echo_send_once(addr: &str, timeout: Duration) -> Result<String> {
    tokio::time::timeout(timeout, async {
        let stream = dial(addr, None).await?;
        let (read, mut write) = tokio::io::split(stream);
        let mut reader = BufReader::new(read);
        let mut line = String::new();
        reader.read_line(&mut line).await?;
        if line != WELCOME_MESSAGE {
            bail!("unexpected TCP welcome message: {line:?}");
        }
        write.write_all(b"TEST\n").await?;
        line.clear();
        reader.read_line(&mut line).await?;
        let a: TcpAssertions = serde_json::from_str(&line)
            .with_context(|| format!("decoding TCP echo response {line:?}"))?;
        if a.pod.is_empty() {
            bail!("TCP echo response missing pod name: {line:?}");
        }
        Ok(a.pod)
    })
    .await
    .context("TCP echo timed out")?
}
