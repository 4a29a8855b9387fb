//! The request client of upstream `utils/roundtripper`: HTTP/1.1 (one request
//! per connection, like Go's transport with keep-alives disabled), HTTPS,
//! h2c prior knowledge and h2 over TLS; redirects followed unless told not to.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use portcullis_conformance::echo::canonical_header_name;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

pub const H2C_PRIOR_KNOWLEDGE: &str = "H2C_PRIOR_KNOWLEDGE";
pub const HTTPS: &str = "HTTPS";
pub const H2: &str = "H2";

/// One request to make.
#[derive(Debug, Clone)]
pub struct RtRequest {
    pub url: url::Url,
    pub host: String,
    pub protocol: String,
    pub method: String,
    pub headers: Vec<(String, String)>,
    pub unfollow_redirect: bool,
    pub server_certificate: Option<String>,
    pub server_name: String,
    pub body: String,
    /// Client certificate and key PEM.
    pub client_cert: Option<(String, String)>,
    pub timeout: Duration,
}

impl Default for RtRequest {
    fn default() -> Self {
        Self {
            url: url::Url::parse("http://localhost/").expect("static URL"),
            host: String::new(),
            protocol: String::new(),
            method: String::new(),
            headers: Vec::new(),
            unfollow_redirect: false,
            server_certificate: None,
            server_name: String::new(),
            body: String::new(),
            client_cert: None,
            timeout: Duration::ZERO,
        }
    }
}

/// TLS details echoed by the backend.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CapturedTls {
    pub version: String,
    pub server_name: String,
    pub negotiated_protocol: String,
    pub cipher_suite: String,
    pub peer_certificates: Vec<String>,
}

/// The request as the echo backend saw it.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct CapturedRequest {
    pub path: String,
    pub host: String,
    pub method: String,
    #[serde(rename = "proto")]
    pub protocol: String,
    pub headers: BTreeMap<String, Vec<String>>,
    pub http_port: String,
    pub namespace: String,
    pub pod: String,
    pub tls: Option<CapturedTls>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedirectRequest {
    pub scheme: String,
    pub host: String,
    pub port: String,
    pub path: String,
}

#[derive(Debug, Clone, Default)]
pub struct CapturedResponse {
    pub status_code: u16,
    pub protocol: String,
    /// Canonical header names → values.
    pub headers: BTreeMap<String, Vec<String>>,
    pub redirect_request: Option<RedirectRequest>,
}

pub fn is_redirect(code: u16) -> bool {
    matches!(code, 300 | 301 | 302 | 303 | 304 | 305 | 307 | 308)
}

pub fn is_timeout_error(code: u16) -> bool {
    matches!(code, 408 | 504)
}

trait Io: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Io for T {}

/// Presents a client certificate and records whether the server asked for
/// one: rustls calls `resolve` only when a CertificateRequest arrives.
#[derive(Debug)]
struct RecordingClientCert {
    key: Arc<rustls::sign::CertifiedKey>,
    requested: Arc<AtomicBool>,
}

impl rustls::client::ResolvesClientCert for RecordingClientCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.requested.store(true, Ordering::SeqCst);
        Some(self.key.clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// The client configuration of one connection, and, when it presents a
/// client certificate, whether the server requested one.
fn tls_config(
    req: &RtRequest,
    alpn: &[u8],
) -> Result<(Arc<rustls::ClientConfig>, Option<Arc<AtomicBool>>)> {
    if req.server_name.is_empty() {
        bail!("https request has no server name configured");
    }
    let pem = req
        .server_certificate
        .as_deref()
        .filter(|p| !p.is_empty())
        .context("https request has no trusted certificates configured")?;
    let roots = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .context("parsing trusted certificate")?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(crate::gotls::GoVerifier::new(roots)?);
    let (mut config, requested) = match &req.client_cert {
        Some((cert, key)) => {
            let certs =
                CertificateDer::pem_slice_iter(cert.as_bytes()).collect::<Result<Vec<_>, _>>()?;
            let key = PrivateKeyDer::from_pem_slice(key.as_bytes())?;
            let key = Arc::new(rustls::sign::CertifiedKey::from_der(certs, key, &provider)?);
            let requested = Arc::new(AtomicBool::new(false));
            let resolver = RecordingClientCert {
                key,
                requested: requested.clone(),
            };
            (
                builder.with_client_cert_resolver(Arc::new(resolver)),
                Some(requested),
            )
        }
        None => (builder.with_no_client_auth(), None),
    };
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok((Arc::new(config), requested))
}

async fn connect(req: &RtRequest, alpn: &[u8]) -> Result<Box<dyn Io>> {
    let host = req.url.host_str().context("URL without host")?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let port = req.url.port_or_known_default().unwrap_or(80);
    let tcp = TcpStream::connect((host, port))
        .await
        .with_context(|| format!("dial tcp {host}:{port}"))?;
    let _ = tcp.set_nodelay(true);
    if req.url.scheme() == "https" || req.protocol == HTTPS || req.protocol == H2 {
        let (config, requested) = tls_config(req, alpn)?;
        let name = ServerName::try_from(req.server_name.clone())?;
        let tls = tokio_rustls::TlsConnector::from(config)
            .connect(name, tcp)
            .await
            .context("TLS handshake")?;
        // A call that presents a client certificate must have been asked
        // for one (the handshake is complete: a TLS 1.3 CertificateRequest
        // comes in the server's first flight, a TLS 1.2 one before its
        // ServerHelloDone).
        if requested.is_some_and(|r| !r.load(Ordering::SeqCst)) {
            bail!(
                "the server did not request a client certificate from {}",
                req.server_name
            );
        }
        return Ok(Box::new(tls));
    }
    Ok(Box::new(tcp))
}

fn canonical_headers(map: &http::HeaderMap) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in map {
        out.entry(canonical_header_name(k.as_str()))
            .or_default()
            .push(String::from_utf8_lossy(v.as_bytes()).into_owned());
    }
    out
}

async fn send_once(req: &RtRequest) -> Result<(http::Response<Bytes>, String)> {
    let h2 = req.protocol == H2C_PRIOR_KNOWLEDGE || req.protocol == H2;
    let io = connect(req, if h2 { b"h2" } else { b"http/1.1" }).await?;
    let method = if req.method.is_empty() {
        "GET"
    } else {
        &req.method
    };
    let host = if req.host.is_empty() {
        match req.url.port() {
            Some(p) => format!("{}:{p}", req.url.host_str().unwrap_or("")),
            None => req.url.host_str().unwrap_or("").to_string(),
        }
    } else {
        req.host.clone()
    };
    let path_and_query = match req.url.query() {
        Some(q) => format!("{}?{q}", req.url.path()),
        None => req.url.path().to_string(),
    };
    let mut builder = http::Request::builder().method(method);
    if h2 {
        builder = builder
            .uri(format!("{}://{host}{path_and_query}", req.url.scheme()))
            .version(http::Version::HTTP_2)
            .header("user-agent", "Go-http-client/2.0");
    } else {
        builder = builder
            .uri(path_and_query)
            .header(http::header::HOST, host)
            .header("user-agent", "Go-http-client/1.1");
    }
    for (k, v) in &req.headers {
        builder = builder.header(k.as_str(), v.as_str());
    }
    if !h2 {
        builder = builder.header(http::header::CONNECTION, "close");
    }
    let request = builder.body(Full::new(Bytes::from(req.body.clone())))?;
    let resp = if h2 {
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(io)).await?;
        tokio::spawn(conn);
        sender.send_request(request).await?
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::Builder::new()
            .title_case_headers(true)
            .handshake(TokioIo::new(io))
            .await?;
        tokio::spawn(conn);
        sender.send_request(request).await?
    };
    let proto = match resp.version() {
        http::Version::HTTP_2 => "HTTP/2.0",
        http::Version::HTTP_10 => "HTTP/1.0",
        _ => "HTTP/1.1",
    }
    .to_string();
    let (parts, body) = resp.into_parts();
    let body = body.collect().await?.to_bytes();
    Ok((http::Response::from_parts(parts, body), proto))
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_string())
}

/// Makes the request (following redirects unless `unfollow_redirect`) and
/// captures the echoed request and the response.
pub async fn capture_round_trip(req: &RtRequest) -> Result<(CapturedRequest, CapturedResponse)> {
    let timeout = if req.timeout.is_zero() {
        Duration::from_secs(10)
    } else {
        req.timeout
    };
    tokio::time::timeout(timeout, capture_inner(req.clone()))
        .await
        .map_err(|_| anyhow!("request timed out after {timeout:?} (context deadline exceeded)"))?
}

async fn capture_inner(mut req: RtRequest) -> Result<(CapturedRequest, CapturedResponse)> {
    let mut redirects = 0;
    loop {
        let (resp, proto) = send_once(&req).await?;
        let status = resp.status().as_u16();
        let location = resp
            .headers()
            .get(http::header::LOCATION)
            .map(|l| String::from_utf8_lossy(l.as_bytes()).into_owned());
        if !req.unfollow_redirect
            && matches!(status, 301 | 302 | 303 | 307 | 308)
            && let Some(loc) = &location
        {
            redirects += 1;
            if redirects > 10 {
                bail!("stopped after 10 redirects");
            }
            let next = req
                .url
                .join(loc)
                .with_context(|| format!("bad Location {loc}"))?;
            if (301..=303).contains(&status) && req.method != "HEAD" {
                req.method = "GET".into();
                req.body.clear();
            }
            req.url = next;
            req.host.clear();
            continue;
        }
        let method = if req.method.is_empty() {
            "GET".to_string()
        } else {
            req.method.clone()
        };
        let content_type = resp
            .headers()
            .get(http::header::CONTENT_TYPE)
            .map(|v| v.as_bytes().to_vec());
        let mut captured = CapturedRequest::default();
        if content_type.as_deref() == Some(b"application/json") {
            captured =
                serde_json::from_slice(resp.body()).context("unexpected error reading response")?;
        } else {
            captured.method = method;
        }
        let mut cres = CapturedResponse {
            status_code: status,
            protocol: proto,
            headers: canonical_headers(resp.headers()),
            redirect_request: None,
        };
        if is_redirect(status) {
            let loc = location.context("redirect without Location header")?;
            let u = req
                .url
                .join(&loc)
                .with_context(|| format!("bad Location {loc}"))?;
            cres.redirect_request = Some(RedirectRequest {
                scheme: u.scheme().to_string(),
                host: u
                    .host_str()
                    .unwrap_or("")
                    .trim_start_matches('[')
                    .trim_end_matches(']')
                    .to_string(),
                port: u.port().map(|p| p.to_string()).unwrap_or_default(),
                path: percent_decode(u.path()),
            });
            // url normalises default ports away; recover an explicit one.
            if let Some(r) = cres.redirect_request.as_mut()
                && r.port.is_empty()
                && let Some(port) = explicit_port(&loc)
            {
                r.port = port;
            }
        }
        return Ok((captured, cres));
    }
}

/// The port written in an absolute Location (`http://host:80/x` → `80`).
fn explicit_port(location: &str) -> Option<String> {
    let rest = location.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority
        .rsplit_once('@')
        .map(|(_, a)| a)
        .unwrap_or(authority);
    let port = if authority.starts_with('[') {
        authority.rsplit_once("]:")?.1
    } else {
        authority.rsplit_once(':')?.1
    };
    (!port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())).then(|| port.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explicit_port_is_recovered() {
        assert_eq!(
            explicit_port("http://example.org:80/x").as_deref(),
            Some("80")
        );
        assert_eq!(explicit_port("https://[::1]:443/").as_deref(), Some("443"));
        assert_eq!(explicit_port("http://example.org/x"), None);
        assert_eq!(explicit_port("/relative"), None);
    }

    /// A TLS server on 127.0.0.1 with the suite's example.org certificate,
    /// asking for a client certificate signed by the suite's CA, or not;
    /// it completes one handshake and then holds the connection.
    async fn tls_server(
        ask_client_cert: bool,
    ) -> (std::net::SocketAddr, crate::certs::Certificates) {
        let certs = crate::certs::generate().unwrap();
        let key = "gateway-conformance-infra/tls-validity-checks-certificate";
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(certs.pems[key].as_bytes())
                .collect::<Result<_, _>>()
                .unwrap();
        let private = PrivateKeyDer::from_pem_slice(certs.keys[key].as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .unwrap();
        let builder = if ask_client_cert {
            let mut roots = rustls::RootCertStore::empty();
            let ca = "gateway-conformance-infra/tls-validity-checks-ca-certificate";
            for c in CertificateDer::pem_slice_iter(certs.pems[ca].as_bytes()) {
                roots.add(c.unwrap()).unwrap();
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .unwrap();
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let config = Arc::new(builder.with_single_cert(chain, private).unwrap());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.unwrap();
            let tls = tokio_rustls::TlsAcceptor::from(config).accept(tcp).await;
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(tls);
        });
        (addr, certs)
    }

    fn request(addr: std::net::SocketAddr, certs: &crate::certs::Certificates) -> RtRequest {
        let client = "gateway-conformance-infra/tls-validity-checks-client-certificate";
        RtRequest {
            url: url::Url::parse(&format!("https://{addr}/")).unwrap(),
            server_name: "example.org".into(),
            server_certificate: Some(
                certs.pems["gateway-conformance-infra/tls-validity-checks-certificate"].clone(),
            ),
            client_cert: Some((certs.pems[client].clone(), certs.keys[client].clone())),
            ..RtRequest::default()
        }
    }

    #[tokio::test]
    async fn presenting_a_client_certificate_the_server_did_not_ask_for_fails() {
        let (addr, certs) = tls_server(false).await;
        let err = match connect(&request(addr, &certs), b"http/1.1").await {
            Ok(_) => panic!("the handshake without a CertificateRequest must be reported"),
            Err(e) => format!("{e:#}"),
        };
        assert!(
            err.contains("did not request a client certificate"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn presenting_a_client_certificate_the_server_asked_for_succeeds() {
        let (addr, certs) = tls_server(true).await;
        connect(&request(addr, &certs), b"http/1.1")
            .await
            .expect("the server asked for the client certificate");
    }

    #[test]
    fn captured_request_parses_echo_json() {
        let c: CapturedRequest = serde_json::from_str(
            r#"{"path":"/a","host":"h","method":"GET","proto":"HTTP/1.1","headers":{"X-A":["1"]},"httpPort":"3000","namespace":"ns","ingress":"","service":"","pod":"p-1"}"#,
        )
        .unwrap();
        assert_eq!(c.protocol, "HTTP/1.1");
        assert_eq!(c.headers["X-A"], vec!["1".to_string()]);
        assert!(c.tls.is_none());
    }
}
