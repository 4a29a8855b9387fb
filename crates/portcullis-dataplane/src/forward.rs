//! Forwarding headers: hop-by-hop stripping and X-Forwarded-*.
//!
//! Hop-by-hop (RFC 9110 §7.6.1): `Connection` and every header it names,
//! `Keep-Alive`, `Proxy-Connection`, `TE` (except `TE: trailers`, which gRPC
//! needs end to end), `Transfer-Encoding`, and `Upgrade` unless the request
//! is a WebSocket upgrade being proxied (then `Connection: upgrade` and
//! `Upgrade` are kept).
//!
//! `X-Forwarded-For`/`-Proto`/`-Host`: with `trusted_hops == 0` incoming
//! values are discarded and replaced by what this hop saw; otherwise incoming
//! `X-Forwarded-For` is kept and the client address appended, and incoming
//! `-Proto`/`-Host` are kept when present.

use std::net::IpAddr;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const XFF: HeaderName = HeaderName::from_static("x-forwarded-for");
const XFP: HeaderName = HeaderName::from_static("x-forwarded-proto");
const XFH: HeaderName = HeaderName::from_static("x-forwarded-host");

/// Whether a comma-separated header (every line of it) carries `token`.
pub(crate) fn has_token(h: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    h.get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Write `name: value\r\n` for every header (HTTP/1 wire form).
pub(crate) fn put_headers(out: &mut Vec<u8>, headers: &HeaderMap) {
    for (name, value) in headers {
        out.extend_from_slice(name.as_str().as_bytes());
        out.extend_from_slice(b": ");
        out.extend_from_slice(value.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
}

/// Whether the request asks for a WebSocket upgrade.
pub fn is_websocket_upgrade(h: &HeaderMap) -> bool {
    has_token(h, &header::CONNECTION, "upgrade") && has_token(h, &header::UPGRADE, "websocket")
}

/// Remove hop-by-hop headers; keep the upgrade pair when `keep_upgrade`.
pub fn strip_hop_by_hop(h: &mut HeaderMap, keep_upgrade: bool) {
    let upgrade = if keep_upgrade {
        h.get(header::UPGRADE).cloned()
    } else {
        None
    };
    if h.contains_key(header::CONNECTION) {
        let named: Vec<HeaderName> = h
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
            .collect();
        for n in named {
            if n != header::TE {
                h.remove(n);
            }
        }
        h.remove(header::CONNECTION);
    }
    h.remove(KEEP_ALIVE);
    h.remove(PROXY_CONNECTION);
    h.remove(header::TRANSFER_ENCODING);
    h.remove(header::UPGRADE);
    if h.contains_key(header::TE) {
        let trailers = has_token(h, &header::TE, "trailers");
        h.remove(header::TE);
        if trailers {
            h.insert(header::TE, HeaderValue::from_static("trailers"));
        }
    }
    if let Some(u) = upgrade {
        h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        h.insert(header::UPGRADE, u);
    }
}

/// Set X-Forwarded-For/Proto/Host.
pub fn add_forwarded(
    h: &mut HeaderMap,
    client: IpAddr,
    proto: &'static str,
    host: &HeaderValue,
    trusted_hops: u32,
) {
    let ip = client.to_canonical().to_string();
    if trusted_hops == 0 {
        h.remove(&XFF);
        h.remove(&XFP);
        h.remove(&XFH);
    }
    let prior: Vec<&str> = h
        .get_all(&XFF)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let xff = if prior.is_empty() {
        ip
    } else {
        format!("{}, {ip}", prior.join(", "))
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        h.insert(XFF, v);
    }
    if !h.contains_key(&XFP) {
        h.insert(XFP, HeaderValue::from_static(proto));
    }
    if !h.contains_key(&XFH) {
        h.insert(XFH, host.clone());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_connection_named_and_keeps_te_trailers() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret, te"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert(KEEP_ALIVE, HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers, deflate"));
        h.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
        h.insert("x-keep", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h, false);
        assert!(
            h.get("x-secret").is_none()
                && h.get(header::CONNECTION).is_none()
                && h.get(header::UPGRADE).is_none()
        );
        assert_eq!(h[header::TE], "trailers");
        assert_eq!(h["x-keep"], "1");
    }

    #[test]
    fn websocket_upgrade_is_kept() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(is_websocket_upgrade(&h));
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h[header::UPGRADE], "websocket");
        assert_eq!(h[header::CONNECTION], "upgrade");
    }

    #[test]
    fn forwarded_trust() {
        let host = HeaderValue::from_static("example.com");
        let ip: IpAddr = "10.0.0.9".parse().unwrap();
        let mut h = HeaderMap::new();
        h.insert(XFF, HeaderValue::from_static("1.2.3.4"));
        h.insert(XFP, HeaderValue::from_static("https"));
        add_forwarded(&mut h, ip, "http", &host, 0);
        assert_eq!(h[&XFF], "10.0.0.9");
        assert_eq!(h[&XFP], "http");
        let mut h = HeaderMap::new();
        h.insert(XFF, HeaderValue::from_static("1.2.3.4"));
        h.insert(XFP, HeaderValue::from_static("https"));
        add_forwarded(&mut h, ip, "http", &host, 1);
        assert_eq!(h[&XFF], "1.2.3.4, 10.0.0.9");
        assert_eq!(h[&XFP], "https");
        assert_eq!(h[&XFH], "example.com");
    }
}
