//! External authorization over gRPC (`extAuth.grpc`): Envoy's
//! `envoy.service.auth.v3.Authorization/Check`, so OPA-Envoy, Authorino and
//! other `ext_authz` services work unchanged.
//!
//! - One unary call per request over h2c (the shared hyper HTTP/2 client,
//!   prost-encoded messages, [`super::ext_authz_pb`]), `grpc-timeout` set to
//!   `timeout`.
//! - `CheckRequest.attributes`: `source` (the client address the gateway
//!   derived, with the TCP peer's port when it is the peer), `destination`
//!   (the listener's port), `request.time`, and `request.http`: `id`
//!   (`x-request-id`), `method`, `headers` (lower-case names, repeated values
//!   joined with `,`, the pseudo-headers `:authority`, `:method`, `:path`,
//!   `:scheme` too; only the `headersToExtAuth` ones when that list is set,
//!   else all), `path` (canonical path and query, as Envoy: `query` stays
//!   empty), `host`, `scheme`, `protocol` (`HTTP/1.0`, `HTTP/1.1`, `HTTP/2`),
//!   `size` (`Content-Length`, `-1` when unknown) and, with `bodyToExtAuth`,
//!   `body` (UTF-8) or `raw_body` (anything else).
//! - `status.code == 0` allows. `ok_response.headers` are applied to the
//!   upstream request: `append: true` appends, `append: false` sets; without
//!   `append`, `append_action` decides (0 and 2 set, as Envoy's ext_authz
//!   treats an unset `append` as "set"; 1 adds if absent; 3 sets only if
//!   present). `headers_to_remove` are removed; `response_headers_to_add` are
//!   added to the answer to the client. Pseudo-headers and `host` are never
//!   touched.
//! - Any other code denies: `denied_response.status` (403 when unset), its
//!   headers and body are returned to the client.
//! - No answer (connection refused, timeout, a non-OK `grpc-status`, an
//!   undecodable message): `failOpen: true` lets the request through, else 403.

use std::time::{SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Uri, header};
use http_body_util::{BodyExt, Limited};
use prost::Message;

use super::AuthCtx;
use super::ext_authz_pb as pb;
use super::extauth::ExtAuth;
use crate::backend::pool::Clients;
use crate::body::{self, ProxyBody};
use crate::filters::ReqState;

const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// Headers added to the answer to the client.
type ResponseHeaders = Vec<(HeaderName, HeaderValue)>;

fn socket(ip: std::net::IpAddr, port: u16) -> pb::Peer {
    pb::Peer {
        address: Some(pb::Address {
            socket_address: Some(pb::SocketAddress {
                protocol: 0,
                address: ip.to_string(),
                port_value: u32::from(port),
            }),
        }),
        ..Default::default()
    }
}

/// The `CheckRequest` for a request.
pub(super) fn check_request(e: &ExtAuth, st: &ReqState, cx: &AuthCtx<'_>) -> pb::CheckRequest {
    let text = |v: &HeaderValue| String::from_utf8_lossy(v.as_bytes()).into_owned();
    let mut headers = std::collections::HashMap::new();
    let mut add = |name: &str, value: String| {
        headers
            .entry(name.to_string())
            .and_modify(|v: &mut String| {
                v.push(',');
                v.push_str(&value);
            })
            .or_insert(value);
    };
    let scheme = cx.scheme.to_string();
    if e.listed.is_empty() {
        add(":authority", text(&st.host));
        add(":method", st.method.to_string());
        add(":path", st.path_and_query());
        add(":scheme", scheme.clone());
        for (name, v) in &st.headers {
            add(name.as_str(), text(v));
        }
    } else {
        for name in &e.listed {
            for v in st.headers.get_all(name) {
                add(name.as_str(), text(v));
            }
        }
    }
    let size = match cx.body {
        Some(b) => i64::try_from(b.len()).unwrap_or(i64::MAX),
        None => st
            .headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(-1),
    };
    let (body, raw_body) = match cx.body {
        Some(b) => match std::str::from_utf8(b) {
            Ok(s) => (s.to_string(), vec![]),
            Err(_) => (String::new(), b.to_vec()),
        },
        None => (String::new(), vec![]),
    };
    let protocol = match cx.version {
        http::Version::HTTP_10 => "HTTP/1.0",
        http::Version::HTTP_2 => "HTTP/2",
        http::Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    };
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let source_port = if st.client == cx.peer.ip() {
        cx.peer.port()
    } else {
        0
    };
    pb::CheckRequest {
        attributes: Some(pb::AttributeContext {
            source: Some(socket(st.client, source_port)),
            destination: Some(pb::Peer {
                address: Some(pb::Address {
                    socket_address: Some(pb::SocketAddress {
                        port_value: u32::from(cx.listener_port),
                        ..Default::default()
                    }),
                }),
                ..Default::default()
            }),
            request: Some(pb::Request {
                time: Some(pb::Timestamp {
                    seconds: i64::try_from(now.as_secs()).unwrap_or(i64::MAX),
                    nanos: i32::try_from(now.subsec_nanos()).unwrap_or(0),
                }),
                http: Some(pb::HttpRequest {
                    id: st.headers.get("x-request-id").map(text).unwrap_or_default(),
                    method: st.method.to_string(),
                    headers,
                    path: st.path_and_query(),
                    host: st.host_name.clone(),
                    scheme,
                    size,
                    protocol: protocol.into(),
                    body,
                    raw_body,
                    ..Default::default()
                }),
            }),
            context_extensions: Default::default(),
        }),
    }
}

/// A 5-byte gRPC frame header, then the message.
fn frame(msg: &impl Message) -> Bytes {
    let len = msg.encoded_len();
    let mut b = BytesMut::with_capacity(5 + len);
    b.put_u8(0);
    b.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
    msg.encode(&mut b).expect("BytesMut grows");
    b.freeze()
}

/// Why a call got no usable answer (logged; `failOpen` decides).
#[derive(Debug, thiserror::Error)]
pub(super) enum CallError {
    /// Transport error.
    #[error("transport: {0}")]
    Transport(String),
    /// Timed out.
    #[error("timeout")]
    Timeout,
    /// A non-OK `grpc-status`.
    #[error("grpc-status {status}: {message}")]
    Status {
        /// Code.
        status: String,
        /// `grpc-message`.
        message: String,
    },
    /// Not one uncompressed message.
    #[error("bad answer: {0}")]
    Decode(String),
}

async fn call(
    e: &ExtAuth,
    ep: std::net::SocketAddr,
    clients: &Clients,
    msg: &pb::CheckRequest,
) -> Result<pb::CheckResponse, CallError> {
    let uri = Uri::builder()
        .scheme("http")
        .authority(ep.to_string())
        .path_and_query(pb::CHECK_PATH)
        .build()
        .map_err(|e| CallError::Transport(e.to_string()))?;
    let mut req = Request::new(body::full(frame(msg)));
    *req.method_mut() = http::Method::POST;
    *req.uri_mut() = uri;
    *req.version_mut() = http::Version::HTTP_2;
    let h = req.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    h.insert(header::TE, HeaderValue::from_static("trailers"));
    if let Ok(v) = HeaderValue::from_str(&format!("{}m", e.timeout.as_millis().max(1))) {
        h.insert("grpc-timeout", v);
    }
    let answer = tokio::time::timeout(e.timeout, async {
        let resp = clients
            .send(true, req)
            .await
            .map_err(|e| CallError::Transport(e.to_string()))?;
        let (parts, b) = resp.into_parts();
        let collected = Limited::new(b, MAX_ANSWER_BYTES)
            .collect()
            .await
            .map_err(|e| CallError::Transport(e.to_string()))?;
        let trailers = collected.trailers().cloned().unwrap_or_default();
        Ok::<_, CallError>((parts, trailers, collected.to_bytes()))
    })
    .await
    .map_err(|_| CallError::Timeout)??;
    let (parts, trailers, body) = answer;
    if !parts.status.is_success() {
        return Err(CallError::Transport(format!(
            "HTTP status {}",
            parts.status
        )));
    }
    let grpc = |h: &HeaderMap, n: &str| h.get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
    let status = grpc(&trailers, "grpc-status").or_else(|| grpc(&parts.headers, "grpc-status"));
    if status.as_deref() != Some("0") {
        return Err(CallError::Status {
            status: status.unwrap_or_else(|| "missing".into()),
            message: grpc(&trailers, "grpc-message")
                .or_else(|| grpc(&parts.headers, "grpc-message"))
                .unwrap_or_default(),
        });
    }
    if body.len() < 5 || body[0] != 0 {
        return Err(CallError::Decode("not one uncompressed message".into()));
    }
    let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
    if body.len() != 5 + len {
        return Err(CallError::Decode("length prefix does not match".into()));
    }
    pb::CheckResponse::decode(&body[5..]).map_err(|e| CallError::Decode(e.to_string()))
}

fn header_of(o: &pb::HeaderValueOption) -> Option<(HeaderName, HeaderValue)> {
    let h = o.header.as_ref()?;
    if h.key.starts_with(':') {
        return None;
    }
    let name = HeaderName::from_bytes(h.key.to_ascii_lowercase().as_bytes()).ok()?;
    if name == header::HOST {
        return None;
    }
    let value = if h.raw_value.is_empty() {
        HeaderValue::from_str(&h.value).ok()?
    } else {
        HeaderValue::from_bytes(&h.raw_value).ok()?
    };
    Some((name, value))
}

/// Apply one `HeaderValueOption` to `map` (see the module docs).
fn apply(map: &mut HeaderMap, o: &pb::HeaderValueOption) {
    let Some((name, value)) = header_of(o) else {
        return;
    };
    let exists = map.contains_key(&name);
    match (o.append.as_ref().map(|b| b.value), o.append_action) {
        (Some(true), _) => {
            map.append(name, value);
        }
        (Some(false), _) | (None, 0 | 2) => {
            map.insert(name, value);
        }
        (None, 1) if !exists => {
            map.insert(name, value);
        }
        (None, 3) if exists => {
            map.insert(name, value);
        }
        _ => {}
    }
}

/// Ask the service (see the module docs).
pub(super) async fn check(
    e: &ExtAuth,
    st: &mut ReqState,
    clients: &Clients,
    cx: &AuthCtx<'_>,
) -> Result<ResponseHeaders, Response<ProxyBody>> {
    let Some(ep) = e.endpoint() else {
        return e
            .failed("the authorization Service has no endpoints")
            .map(|()| vec![]);
    };
    let msg = check_request(e, st, cx);
    let resp = match call(e, ep, clients, &msg).await {
        Ok(r) => r,
        Err(err) => return e.failed(&err.to_string()).map(|()| vec![]),
    };
    let code = resp.status.as_ref().map_or(0, |s| s.code);
    if code == 0 {
        let mut to_client = vec![];
        if let Some(ok) = &resp.ok_response {
            for name in &ok.headers_to_remove {
                if let Ok(n) = HeaderName::from_bytes(name.to_ascii_lowercase().as_bytes())
                    && n != header::HOST
                {
                    st.headers.remove(n);
                }
            }
            for o in &ok.headers {
                apply(&mut st.headers, o);
            }
            to_client.extend(ok.response_headers_to_add.iter().filter_map(header_of));
        }
        return Ok(to_client);
    }
    let denied = resp.denied_response.unwrap_or_default();
    let status = denied
        .status
        .and_then(|s| u16::try_from(s.code).ok())
        .and_then(|c| StatusCode::from_u16(c).ok())
        .filter(|c| c.as_u16() >= 200)
        .unwrap_or(StatusCode::FORBIDDEN);
    tracing::debug!(%status, code, "gRPC ext auth denied the request");
    let mut r = Response::new(body::full(Bytes::from(denied.body)));
    *r.status_mut() = status;
    for o in &denied.headers {
        apply(r.headers_mut(), o);
    }
    crate::forward::strip_hop_by_hop(r.headers_mut(), false);
    r.headers_mut().remove(header::CONTENT_LENGTH);
    Err(r)
}
