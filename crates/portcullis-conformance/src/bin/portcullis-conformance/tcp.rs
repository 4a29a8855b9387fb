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

/// The four answers of one complete exchange with a tcp-backend.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Exchange {
    welcome: String,
    pong: String,
    is_tls: String,
    test: String,
}

/// Dial, then send PING, IS_TLS and TEST and read every answer. An error
/// here is a transport error (dial, handshake, read or write), worth a retry.
async fn converse(addr: &str, tls: Option<(&str, &str)>) -> Result<Exchange> {
    let stream = dial(addr, tls).await?;
    let (read, mut write) = tokio::io::split(stream);
    let mut reader = BufReader::new(read);
    let mut next = async || -> Result<String> {
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(10), reader.read_line(&mut line))
            .await
            .context("read timeout")??;
        if n == 0 {
            bail!("connection closed by the gateway");
        }
        Ok(line)
    };
    let welcome = next().await?;
    write.write_all(b"PING\n").await?;
    let pong = next().await?;
    write.write_all(b"IS_TLS\n").await?;
    let is_tls = next().await?;
    write.write_all(b"TEST\n").await?;
    let test = next().await?;
    Ok(Exchange {
        welcome,
        pong,
        is_tls,
        test,
    })
}

/// The content checks of a completed exchange: final (no retry changes
/// what one complete answer said).
fn check_exchange(x: &Exchange, expected: &TcpExpected) -> Result<()> {
    if x.welcome != WELCOME_MESSAGE {
        bail!("TCPServer welcome message does not match: {:?}", x.welcome);
    }
    if x.pong != "PONG\n" {
        bail!("expected PONG, got {:?}", x.pong);
    }
    if x.is_tls.trim_end() != expected.backend_is_tls.to_string() {
        bail!(
            "expected IS_TLS {}, got {:?}",
            expected.backend_is_tls,
            x.is_tls
        );
    }
    let a: TcpAssertions = serde_json::from_str(&x.test).context("decoding TEST answer")?;
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

/// upstream MakeTCPRequestAndExpectEventuallyValidResponse: dial and read
/// errors are retried until the timeout; once an exchange completes, its
/// content checks are final.
pub async fn expect_tcp_response(
    ctx: &Ctx,
    addr: &str,
    tls: Option<(&str, &str)>,
    expected: &TcpExpected,
) -> Result<()> {
    expect_tcp_response_within(ctx.timeout, addr, tls, expected).await
}

/// [`expect_tcp_response`] with an explicit timeout.
async fn expect_tcp_response_within(
    timeout: Duration,
    addr: &str,
    tls: Option<(&str, &str)>,
    expected: &TcpExpected,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        match converse(addr, tls).await {
            Ok(x) => {
                return check_exchange(&x, expected)
                    .with_context(|| format!("TCP request to {addr}"));
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn exchange(test: &str) -> Exchange {
        Exchange {
            welcome: WELCOME_MESSAGE.to_string(),
            pong: "PONG\n".into(),
            is_tls: "false\n".into(),
            test: test.into(),
        }
    }

    fn expected() -> TcpExpected {
        TcpExpected {
            backend: "tcp-backend".into(),
            namespace: "ns".into(),
            ..TcpExpected::default()
        }
    }

    #[test]
    fn a_complete_exchange_is_checked_once() {
        let ok = exchange(
            r#"{"namespace":"ns","ingress":"","service":"","tcpport":"1","isTLS":false,"pod":"tcp-backend-1-a"}"#,
        );
        check_exchange(&ok, &expected()).unwrap();
        let wrong_pod = exchange(
            r#"{"namespace":"ns","ingress":"","service":"","tcpport":"1","isTLS":false,"pod":"other-1-a"}"#,
        );
        let e = check_exchange(&wrong_pod, &expected())
            .unwrap_err()
            .to_string();
        assert!(e.contains("pod=other-1-a"), "{e}");
        let mut wrong_tls = ok.clone();
        wrong_tls.is_tls = "true\n".into();
        assert!(check_exchange(&wrong_tls, &expected()).is_err());
    }

    #[tokio::test]
    async fn a_wrong_answer_is_final_and_not_retried() {
        // A backend that answers every exchange, but from the wrong pod: the
        // first complete exchange decides, long before the timeout.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let accepted = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (tcp, _) = listener.accept().await.unwrap();
                count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let (r, mut w) = tokio::io::split(tcp);
                    let mut r = BufReader::new(r);
                    w.write_all(WELCOME_MESSAGE.as_bytes()).await.unwrap();
                    let mut line = String::new();
                    while r.read_line(&mut line).await.unwrap_or(0) > 0 {
                        let answer = match line.trim() {
                            "PING" => "PONG\n".to_string(),
                            "IS_TLS" => "false\n".to_string(),
                            _ => "{\"namespace\":\"ns\",\"ingress\":\"\",\"service\":\"\",\"tcpport\":\"1\",\"isTLS\":false,\"pod\":\"other-1-a\"}\n".to_string(),
                        };
                        w.write_all(answer.as_bytes()).await.unwrap();
                        line.clear();
                    }
                });
            }
        });
        let started = Instant::now();
        let e = expect_tcp_response_within(Duration::from_secs(10), &addr, None, &expected())
            .await
            .unwrap_err();
        assert!(format!("{e:#}").contains("pod=other-1-a"), "{e:#}");
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "retried until the timeout"
        );
        assert_eq!(accepted.load(std::sync::atomic::Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn dial_errors_are_retried_until_the_backend_answers() {
        // Nothing listens at first: the dial fails, then the right backend comes up.
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            let listener = tokio::net::TcpListener::bind(addr).await.unwrap();
            let (tcp, _) = listener.accept().await.unwrap();
            let (r, mut w) = tokio::io::split(tcp);
            let mut r = BufReader::new(r);
            w.write_all(WELCOME_MESSAGE.as_bytes()).await.unwrap();
            let mut line = String::new();
            while r.read_line(&mut line).await.unwrap_or(0) > 0 {
                let answer = match line.trim() {
                    "PING" => "PONG\n",
                    "IS_TLS" => "false\n",
                    _ => {
                        "{\"namespace\":\"ns\",\"ingress\":\"\",\"service\":\"\",\"tcpport\":\"1\",\"isTLS\":false,\"pod\":\"tcp-backend-1-a\"}\n"
                    }
                };
                w.write_all(answer.as_bytes()).await.unwrap();
                line.clear();
            }
        });
        expect_tcp_response_within(
            Duration::from_secs(10),
            &addr.to_string(),
            None,
            &expected(),
        )
        .await
        .unwrap();
    }
}
