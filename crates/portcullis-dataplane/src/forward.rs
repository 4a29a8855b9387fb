//! Forwarding headers: hop-by-hop stripping and X-Forwarded-*.
//!
//! Hop-by-hop (RFC 9110 §7.6.1): `Connection` and every header it names,
//! `Keep-Alive`, `Proxy-Connection`, `TE` (except `TE: trailers`, which gRPC
//! needs end to end), `Transfer-Encoding`, and `Upgrade` unless the request
//! is a WebSocket upgrade being proxied (then `Connection: upgrade` and
//! `Upgrade` are kept).
//!
//! Forwarding headers (`X-Forwarded-*`, `Forwarded`, `X-Real-IP`) are set
//! by [`crate::client_ip`].

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");

/// Whether a comma-separated header (every line of it) carries `token`.
pub(crate) fn has_token(h: &HeaderMap, name: &HeaderName, token: &str) -> bool {
    h.get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// An HTTP/1 head that would hold a byte not allowed where it stands (a CR
/// or LF that would end a line early, a NUL, a space in the request target).
///
/// The `http` types already refuse such bytes; the encoders check again so
/// that no configuration or code path can split a message on the wire.
#[derive(Debug, thiserror::Error)]
#[error("refusing to encode the HTTP/1 {0}: it holds a byte not allowed there")]
pub struct EncodeError(pub &'static str);

/// RFC 9110 §5.5 `field-value` bytes: visible ASCII, space, tab, obs-text.
fn field_value_ok(v: &[u8]) -> bool {
    v.iter()
        .all(|&c| portcullis_route::chars::is_field_value_byte(c))
}

/// A non-empty RFC 9110 §5.6.2 `token`.
fn token_ok(v: &[u8]) -> bool {
    !v.is_empty() && v.iter().all(|&c| portcullis_route::chars::is_tchar(c))
}

/// An origin-form request target: visible ASCII only (no space, CR, LF).
pub(crate) fn target_ok(v: &[u8]) -> bool {
    v.first() == Some(&b'/') && v.iter().all(|c| c.is_ascii_graphic())
}

/// Write `name: value\r\n` for every header (HTTP/1 wire form); refuses
/// (and writes nothing more) at the first name or value not allowed there.
pub(crate) fn put_headers(out: &mut Vec<u8>, headers: &HeaderMap) -> Result<(), EncodeError> {
    for (name, value) in headers {
        put_header(out, name, value)?;
    }
    Ok(())
}

/// Write one `name: value\r\n` line, checked as [`put_headers`].
pub(crate) fn put_header(
    out: &mut Vec<u8>,
    name: &HeaderName,
    value: &HeaderValue,
) -> Result<(), EncodeError> {
    put_header_as(out, name.as_str().as_bytes(), value)
}

/// Write one `name: value\r\n` line with the name spelled `name` (its
/// case as received, [`crate::header_case`]), checked as [`put_headers`].
pub(crate) fn put_header_as(
    out: &mut Vec<u8>,
    name: &[u8],
    value: &HeaderValue,
) -> Result<(), EncodeError> {
    if !token_ok(name) {
        return Err(EncodeError("header name"));
    }
    if !field_value_ok(value.as_bytes()) {
        return Err(EncodeError("header value"));
    }
    out.extend_from_slice(name);
    out.extend_from_slice(b": ");
    out.extend_from_slice(value.as_bytes());
    out.extend_from_slice(b"\r\n");
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoder_refuses_line_breaks() {
        assert!(target_ok(b"/a/b?c=d%20e"));
        for bad in [
            &b"/x HTTP/1.1\r\nX-Injected: 1\r\n\r\nGET /y"[..],
            b"/a b",
            b"/a\nb",
            b"",
            b"x",
            b"/\xc3\xa9",
        ] {
            assert!(!target_ok(bad), "{bad:?}");
        }
        let mut out = vec![];
        let mut h = HeaderMap::new();
        h.insert("x-ok", HeaderValue::from_static("fine\tvalue"));
        assert!(put_headers(&mut out, &h).is_ok());
        assert_eq!(out, b"x-ok: fine\tvalue\r\n");
        // The http types refuse these already; the encoder's own check is the
        // second line of defence.
        assert!(!field_value_ok(b"v\r\nx-injected: 1"));
        assert!(!field_value_ok(b"a\0b"));
        assert!(field_value_ok(b"obs-text \xc3\xa9 ok"));
        assert!(!token_ok(b"x bad") && !token_ok(b"") && token_ok(b"x-ok"));
    }

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
}
