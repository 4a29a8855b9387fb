//! The gateway's own small HTTP/1.1 client for identity providers: JWKS
//! documents, OpenID discovery, token requests. One connection per request
//! (these calls are rare: a key refresh, a login, a token refresh).
//!
//! `https://` URLs are verified against the system roots (`SSL_CERT_FILE` /
//! `SSL_CERT_DIR` are honoured); plain `http://` is allowed for local setups.

use bytes::Bytes;
use http::{HeaderMap, Method, Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// Why an outbound call failed (for logs; never carries a secret).
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    /// The URL is not an absolute `http(s)://` URL.
    #[error("bad URL {0:?}")]
    Url(String),
    /// TCP connection failed.
    #[error("connect {addr}: {error}")]
    Connect {
        /// `host:port`.
        addr: String,
        /// The I/O error.
        error: std::io::Error,
    },
    /// TLS set-up or handshake failed.
    #[error("TLS: {0}")]
    Tls(String),
    /// The HTTP exchange failed (or the answer was too large).
    #[error("HTTP: {0}")]
    Http(String),
}

/// An answer: status, headers, body.
#[derive(Debug)]
pub struct Answer {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body (bounded by the caller's limit).
    pub body: Bytes,
}

/// Send one request to an absolute URL and read the answer (body up to `max_bytes`).
pub async fn call(
    method: Method,
    url: &str,
    headers: HeaderMap,
    body: Bytes,
    max_bytes: usize,
) -> Result<Answer, OutboundError> {
    let uri: Uri = url.parse().map_err(|_| OutboundError::Url(url.into()))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") => false,
        _ => return Err(OutboundError::Url(url.into())),
    };
    let host = uri
        .host()
        .ok_or_else(|| OutboundError::Url(url.into()))?
        .trim_matches(['[', ']'])
        .to_string();
    let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
    let tcp = TcpStream::connect((host.as_str(), port))
        .await
        .map_err(|error| OutboundError::Connect {
            addr: format!("{host}:{port}"),
            error,
        })?;
    let _ = tcp.set_nodelay(true);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let authority = uri.authority().map_or(host.as_str(), |a| a.as_str());
    let mut req = Request::new(Full::new(body));
    *req.method_mut() = method;
    *req.uri_mut() = path.parse().map_err(|_| OutboundError::Url(url.into()))?;
    *req.headers_mut() = headers;
    let h = req.headers_mut();
    h.insert(
        header::HOST,
        authority
            .parse()
            .map_err(|_| OutboundError::Url(url.into()))?,
    );
    h.entry(header::USER_AGENT)
        .or_insert(http::HeaderValue::from_static("portcullis"));
    if https {
        let tls = portcullis_ir::BackendTls {
            hostname: host.clone(),
            ca_pem: String::new(),
            system_roots: true,
            subject_alt_names: vec![],
            client_certificate: None,
        };
        let cfg =
            portcullis_tls::client_config(&tls).map_err(|e| OutboundError::Tls(e.to_string()))?;
        let name =
            portcullis_tls::server_name(&tls).map_err(|e| OutboundError::Tls(e.to_string()))?;
        let stream = portcullis_tls::tokio_rustls::TlsConnector::from(cfg)
            .connect(name, tcp)
            .await
            .map_err(|e| OutboundError::Tls(format!("with {host}: {e}")))?;
        send(TokioIo::new(stream), req, max_bytes).await
    } else {
        send(TokioIo::new(tcp), req, max_bytes).await
    }
}

async fn send<IO>(
    io: IO,
    req: Request<Full<Bytes>>,
    max_bytes: usize,
) -> Result<Answer, OutboundError>
where
    IO: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let (mut sender, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .map_err(|e| OutboundError::Http(e.to_string()))?;
    let conn = tokio::spawn(conn);
    let out = async {
        let resp = sender
            .send_request(req)
            .await
            .map_err(|e| OutboundError::Http(e.to_string()))?;
        let (parts, body) = resp.into_parts();
        let body = Limited::new(body, max_bytes)
            .collect()
            .await
            .map_err(|e| OutboundError::Http(e.to_string()))?
            .to_bytes();
        Ok(Answer {
            status: parts.status,
            headers: parts.headers,
            body,
        })
    }
    .await;
    conn.abort();
    out
}
