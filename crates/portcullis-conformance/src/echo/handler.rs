//! Request handling: routing (`/health`, `/status/NNN`, `/retry/`, `/ws`, echo),
//! the JSON echo body and the response-header and delay features.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use http_body_util::Full;
use hyper::body::Incoming;
use serde::Serialize;

use super::duration::parse_go_duration;
use super::headers::canonical_header_name;
use super::ws;

/// The pod context reported in every echo response.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct EchoContext {
    /// `NAMESPACE`.
    pub namespace: String,
    /// `INGRESS_NAME`.
    pub ingress: String,
    /// `SERVICE_NAME`.
    pub service: String,
    /// `POD_NAME`.
    pub pod: String,
}

/// TLS details of the connection a request arrived on.
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct TlsAssertions {
    /// `TLSv1.2` or `TLSv1.3`.
    pub version: String,
    /// The client certificates presented, PEM-encoded.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peer_certificates: Vec<String>,
    /// The SNI server name the client sent.
    pub server_name: String,
    /// The ALPN protocol negotiated.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub negotiated_protocol: String,
    /// The cipher suite, named as Go names it (`TLS_AES_128_GCM_SHA256`).
    pub cipher_suite: String,
}

/// The JSON body of an echo response (field names and order as upstream).
#[derive(Debug, Clone, Default, Serialize, serde::Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub struct RequestAssertions {
    /// The request target as received (path and query).
    pub path: String,
    /// The `Host` header / `:authority`.
    pub host: String,
    /// The request method.
    pub method: String,
    /// `HTTP/1.1` or `HTTP/2.0`.
    pub proto: String,
    /// The request headers, canonical names, every value.
    pub headers: BTreeMap<String, Vec<String>>,
    /// The port of the plain HTTP listener (`HTTP_PORT`).
    pub http_port: String,
    /// The pod context.
    #[serde(flatten)]
    pub context: EchoContext,
    /// TLS details, absent on plain-text connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsAssertions>,
}

/// Which listener a connection arrived on; the h2c port echoes every path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PortKind {
    Http,
    H2c,
    Https,
}

/// Shared state of one echo process.
pub(crate) struct State {
    pub(crate) context: EchoContext,
    pub(crate) http_port: String,
    retry_attempts: Mutex<HashMap<String, u64>>,
}

impl State {
    pub(crate) fn new(context: EchoContext, http_port: String) -> Self {
        Self {
            context,
            http_port,
            retry_attempts: Mutex::new(HashMap::new()),
        }
    }
}

/// Per-connection facts the handler needs.
pub(crate) struct ConnInfo {
    pub(crate) remote: SocketAddr,
    pub(crate) kind: PortKind,
    pub(crate) tls: Option<TlsAssertions>,
    /// A second handle on the TCP socket, used to abort it with a RST.
    pub(crate) socket: Option<std::net::TcpStream>,
}

/// Returned by the handler to make hyper drop the connection without a response.
#[derive(Debug)]
pub(crate) struct AbortConnection;

impl std::fmt::Display for AbortConnection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection aborted by retry simulation")
    }
}

impl std::error::Error for AbortConnection {}

pub(crate) type EchoResponse = Response<Full<Bytes>>;

fn text(status: StatusCode, body: &'static str) -> EchoResponse {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp
}

fn json_error(status: StatusCode, message: String) -> EchoResponse {
    let body = serde_json::json!({ "message": message }).to_string();
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    resp
}

fn request_uri(req: &Request<Incoming>) -> String {
    if req.version() < Version::HTTP_2 && req.uri().scheme().is_some() {
        return req.uri().to_string();
    }
    req.uri()
        .path_and_query()
        .map(|pq| pq.as_str().to_string())
        .unwrap_or_else(|| "/".to_string())
}

fn query_value(req: &Request<Incoming>, key: &str) -> Option<String> {
    let query = req.uri().query()?;
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

/// Routes one request. `Err` aborts the connection (retry simulation).
pub(crate) async fn handle(
    mut req: Request<Incoming>,
    state: Arc<State>,
    conn: Arc<ConnInfo>,
) -> Result<EchoResponse, AbortConnection> {
    if conn.kind == PortKind::H2c {
        let upgrade_h2c = req
            .headers()
            .get("upgrade")
            .is_some_and(|v| v.as_bytes() == b"h2c");
        if req.version() != Version::HTTP_2 && !upgrade_h2c {
            return Ok(text(StatusCode::BAD_REQUEST, "Expected h2c request"));
        }
        return Ok(echo(&req, &state, &conn).await);
    }
    let path = req.uri().path().replace("//", "/");
    if path == "/health" {
        return Ok(text(StatusCode::OK, "OK"));
    }
    if path.starts_with("/status/") {
        return Ok(status_handler(&req));
    }
    if path.starts_with("/retry/") {
        return retry_handler(&req, &state, &conn).await;
    }
    if path == "/ws" {
        return Ok(ws::upgrade(&mut req));
    }
    Ok(echo(&req, &state, &conn).await)
}

fn status_handler(req: &Request<Incoming>) -> EchoResponse {
    let uri = request_uri(req);
    let code = uri
        .strip_prefix("/status/")
        .filter(|rest| rest.len() == 3 && rest.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|rest| rest.parse::<u16>().ok())
        .and_then(|code| StatusCode::from_u16(code).ok())
        .unwrap_or(StatusCode::BAD_REQUEST);
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = code;
    resp
}

async fn retry_handler(
    req: &Request<Incoming>,
    state: &State,
    conn: &ConnInfo,
) -> Result<EchoResponse, AbortConnection> {
    let Some(uuid) = query_value(req, "uuid").filter(|u| !u.is_empty()) else {
        return Ok(text(StatusCode::BAD_REQUEST, "uuid is required"));
    };
    let Some(succeed_after) = query_value(req, "succeedAfter").and_then(|v| v.parse::<u64>().ok())
    else {
        return Ok(text(StatusCode::BAD_REQUEST, "succeedAfter is required"));
    };
    let response_code = query_value(req, "responseCode")
        .and_then(|v| v.parse::<u16>().ok())
        .and_then(|v| StatusCode::from_u16(v).ok());
    let fail = {
        let mut attempts = state
            .retry_attempts
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let seen = attempts.entry(uuid).or_insert(0);
        if *seen < succeed_after {
            *seen += 1;
            true
        } else {
            false
        }
    };
    if !fail {
        return Ok(echo(req, state, conn).await);
    }
    if let Some(delay) = query_value(req, "delayRetry").filter(|d| !d.is_empty()) {
        match parse_go_duration(&delay) {
            Some(d) => tokio::time::sleep(d).await,
            None => {
                return Ok(json_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("time: invalid duration \"{delay}\""),
                ));
            }
        }
    }
    if let Some(code) = response_code {
        let mut resp = Response::new(Full::new(Bytes::new()));
        *resp.status_mut() = code;
        return Ok(resp);
    }
    if let Some(socket) = &conn.socket {
        let _ = socket2::SockRef::from(socket).set_linger(Some(std::time::Duration::ZERO));
        let _ = socket.shutdown(std::net::Shutdown::Read);
    }
    Err(AbortConnection)
}

/// Builds the assertions document for a request.
fn assertions(req: &Request<Incoming>, state: &State, conn: &ConnInfo) -> RequestAssertions {
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            req.headers()
                .get(http::header::HOST)
                .map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned())
        })
        .unwrap_or_default();
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in req.headers() {
        if name == http::header::HOST || name == http::header::TRANSFER_ENCODING {
            continue;
        }
        headers
            .entry(canonical_header_name(name.as_str()))
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    let proto = match req.version() {
        Version::HTTP_09 => "HTTP/0.9",
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2.0",
        Version::HTTP_3 => "HTTP/3.0",
        _ => "HTTP/1.1",
    };
    RequestAssertions {
        path: request_uri(req),
        host,
        method: req.method().as_str().to_string(),
        proto: proto.to_string(),
        headers,
        http_port: state.http_port.clone(),
        context: state.context.clone(),
        tls: conn.tls.clone(),
    }
}

async fn echo(req: &Request<Incoming>, state: &State, conn: &ConnInfo) -> EchoResponse {
    super::log!(
        "Echoing back request made to {} to client ({})",
        request_uri(req),
        conn.remote
    );
    if let Some(delay) = query_value(req, "delay").filter(|d| !d.is_empty()) {
        match parse_go_duration(&delay) {
            Some(d) => tokio::time::sleep(d).await,
            None => {
                return json_error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    format!("time: invalid duration \"{delay}\""),
                );
            }
        }
    }
    let doc = assertions(req, state, conn);
    let mut body = Vec::new();
    let formatter = serde_json::ser::PrettyFormatter::with_indent(b" ");
    let mut ser = serde_json::Serializer::with_formatter(&mut body, formatter);
    if let Err(err) = doc.serialize(&mut ser) {
        return json_error(StatusCode::INTERNAL_SERVER_ERROR, err.to_string());
    }
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    for (name, value) in echo_set_headers(req) {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            resp.headers_mut().insert(name, value);
        }
    }
    let headers = resp.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    resp
}

/// The response headers requested through `X-Echo-Set-Header: name:value,name2:value2`;
/// a repeated name joins its values with commas.
pub(crate) fn echo_set_headers(req: &Request<Incoming>) -> Vec<(String, String)> {
    let values: Vec<String> = req
        .headers()
        .get_all("x-echo-set-header")
        .iter()
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .collect();
    parse_echo_set_header(&values)
}

/// Parses `X-Echo-Set-Header` values into (name, value) pairs in first-seen order.
pub(crate) fn parse_echo_set_header(values: &[String]) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = Vec::new();
    for list in values {
        for kv in list.split(',') {
            let kv = kv.trim();
            let (name, value) = kv.split_once(':').unwrap_or((kv, ""));
            if name.is_empty() {
                continue;
            }
            if let Some(existing) = out.iter_mut().find(|(n, _)| n == name) {
                existing.1.push(',');
                existing.1.push_str(value.trim());
            } else {
                out.push((name.to_string(), value.trim().to_string()));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn echo_set_header_joins_repeated_names() {
        let parsed = parse_echo_set_header(&[
            "X-Header-Set-1:one, X-Header-Set-2: two".to_string(),
            "X-Header-Set-1:again".to_string(),
        ]);
        assert_eq!(
            parsed,
            vec![
                ("X-Header-Set-1".to_string(), "one,again".to_string()),
                ("X-Header-Set-2".to_string(), "two".to_string()),
            ]
        );
        assert!(parse_echo_set_header(&[String::new()]).is_empty());
    }
}
