//! WebSocket echo on `/ws`: every text or binary message is sent back unchanged.
//! Like upstream (golang.org/x/net/websocket), the handshake requires an `Origin`.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::header::{CONNECTION, HeaderValue, SEC_WEBSOCKET_ACCEPT, SEC_WEBSOCKET_KEY, UPGRADE};
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;

use super::handler::EchoResponse;

fn header_has_token(req: &Request<Incoming>, name: http::header::HeaderName, token: &str) -> bool {
    req.headers().get_all(name).iter().any(|v| {
        String::from_utf8_lossy(v.as_bytes())
            .split(',')
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    })
}

fn status(code: StatusCode) -> EchoResponse {
    let mut resp = Response::new(Full::new(Bytes::from(format!(
        "{} {}\n",
        code.as_u16(),
        code.canonical_reason().unwrap_or("")
    ))));
    *resp.status_mut() = code;
    resp
}

/// Answers a WebSocket upgrade request and spawns the echo loop.
pub(crate) fn upgrade(req: &mut Request<Incoming>) -> EchoResponse {
    let is_upgrade =
        header_has_token(req, CONNECTION, "upgrade") && header_has_token(req, UPGRADE, "websocket");
    let version_ok = req
        .headers()
        .get("sec-websocket-version")
        .is_some_and(|v| v.as_bytes() == b"13");
    let Some(key) = req.headers().get(SEC_WEBSOCKET_KEY).cloned() else {
        return status(StatusCode::BAD_REQUEST);
    };
    if !is_upgrade || !version_ok {
        return status(StatusCode::BAD_REQUEST);
    }
    if req.headers().get("origin").is_none() {
        return status(StatusCode::FORBIDDEN);
    }
    let accept = derive_accept_key(key.as_bytes());
    let on_upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let Ok(upgraded) = on_upgrade.await else {
            return;
        };
        let mut ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        super::log!("established websocket connection");
        while let Some(Ok(msg)) = ws.next().await {
            let reply = match msg {
                Message::Text(t) => Message::Text(t),
                Message::Binary(b) => Message::Binary(b),
                Message::Close(_) => break,
                _ => continue,
            };
            if ws.send(reply).await.is_err() {
                break;
            }
        }
        let _ = ws.close(None).await;
    });
    let mut resp = Response::new(Full::new(Bytes::new()));
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = resp.headers_mut();
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&accept) {
        headers.insert(SEC_WEBSOCKET_ACCEPT, v);
    }
    resp
}
