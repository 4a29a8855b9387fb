//! Wire safety of user-controlled strings.
//!
//! Every string a route author writes that the data plane later puts on the
//! wire (a rewritten path, a redirect target, a header name or value, a CORS
//! origin, a session cookie name) is checked here for its place, so that no
//! configuration can make the gateway write a byte that ends a request line
//! or a header early (request splitting, header injection).
//!
//! - Paths: RFC 3986 §3.3 `path-abempty` built from `pchar` (`unreserved /
//!   pct-encoded / sub-delims / ":" / "@"`) and `/`; a `%` must start a
//!   two-hex-digit encoding. No query, fragment, space or control byte.
//! - Header names: RFC 9110 §5.1 `token` (`tchar`s).
//! - Header values: RFC 9110 §5.5 `field-value`: visible ASCII, space, tab
//!   and `obs-text` (bytes ≥ 0x80); no CR, LF, NUL or other control byte.
//! - Hostnames: RFC 1123 labels (letters, digits, `-`), dot-separated, each
//!   1–63 bytes, at most 253 in all.
//!
//! The data plane checks again before encoding (defence in depth); this
//! module makes the route say why at configuration time.

use std::fmt::Write;

use portcullis_route::chars::{is_field_value_byte, is_pchar, is_tchar};

/// Describe the first byte of `s` not allowed by `ok`, if any.
fn first_bad(s: &str, ok: impl Fn(&[u8], usize) -> bool) -> Option<String> {
    let b = s.as_bytes();
    let i = (0..b.len()).find(|&i| !ok(b, i))?;
    let mut d = String::new();
    match b[i] {
        b'\r' => d.push_str("carriage return (CR)"),
        b'\n' => d.push_str("line feed (LF)"),
        b' ' => d.push_str("space"),
        0 => d.push_str("NUL"),
        c if c.is_ascii_graphic() => {
            let _ = write!(d, "{:?}", c as char);
        }
        c => {
            let _ = write!(d, "byte 0x{c:02X}");
        }
    }
    let _ = write!(d, " at offset {i}");
    Some(d)
}

fn path_byte_ok(b: &[u8], i: usize) -> bool {
    match b[i] {
        b'/' => true,
        b'%' => b.len() > i + 2 && b[i + 1].is_ascii_hexdigit() && b[i + 2].is_ascii_hexdigit(),
        c => is_pchar(c),
    }
}

/// A path that replaces a request path (`replaceFullPath`, a redirect path):
/// absolute, RFC 3986 path characters only.
pub(crate) fn path(s: &str) -> Result<(), String> {
    if !s.starts_with('/') {
        return Err(format!("{s:?} is not a valid path: it must start with '/'"));
    }
    path_chars(s)
}

/// A replacement prefix (`replacePrefixMatch`): may be empty, else as [`path`].
pub(crate) fn prefix(s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Ok(());
    }
    path(s)
}

fn path_chars(s: &str) -> Result<(), String> {
    match first_bad(s, path_byte_ok) {
        None => Ok(()),
        Some(d) => Err(format!(
            "{s:?} is not a valid path: {d} is not allowed (RFC 3986 path characters and %-encodings only)"
        )),
    }
}

/// An RFC 9110 token (header names, cookie names, methods).
pub(crate) fn token(what: &str, s: &str) -> Result<(), String> {
    if s.is_empty() {
        return Err(format!("{what} must not be empty"));
    }
    match first_bad(s, |b, i| is_tchar(b[i])) {
        None => Ok(()),
        Some(d) => Err(format!(
            "{what} {s:?} is not a valid token: {d} is not allowed (RFC 9110 tchar only)"
        )),
    }
}

/// A header field value.
pub(crate) fn header_value(name: &str, s: &str) -> Result<(), String> {
    match first_bad(s, |b, i| is_field_value_byte(b[i])) {
        None => Ok(()),
        Some(d) => Err(format!(
            "value of header {name:?} is not a valid field value: {d} is not allowed (no control characters)"
        )),
    }
}

/// A DNS hostname (no wildcard, no port).
pub(crate) fn hostname(s: &str) -> Result<(), String> {
    let bad = || format!("{s:?} is not a valid hostname (RFC 1123 labels: letters, digits, '-')");
    if s.is_empty() || s.len() > 253 {
        return Err(bad());
    }
    for label in s.split('.') {
        let b = label.as_bytes();
        if b.is_empty()
            || b.len() > 63
            || b[0] == b'-'
            || b[b.len() - 1] == b'-'
            || !b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
        {
            return Err(bad());
        }
    }
    Ok(())
}

/// A CORS origin: `*`, or `scheme://host[:port]` where host may start with
/// `*.` (the Gateway API `CORSOrigin` form).
pub(crate) fn origin(s: &str) -> Result<(), String> {
    if s == "*" {
        return Ok(());
    }
    let bad = |why: &str| format!("origin {s:?} is not valid: {why}");
    let Some((scheme, rest)) = s.split_once("://") else {
        return Err(bad("expected scheme://host[:port]"));
    };
    token("origin scheme", scheme).map_err(|e| bad(&e))?;
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.contains(']') || h.ends_with(']') => (h, Some(p)),
        _ => (rest, None),
    };
    if let Some(p) = port
        && (p.is_empty() || p.len() > 5 || !p.bytes().all(|c| c.is_ascii_digit()))
    {
        return Err(bad("port must be digits"));
    }
    let host = host.strip_prefix("*.").unwrap_or(host);
    if host.starts_with('[') && host.ends_with(']') {
        return host[1..host.len() - 1]
            .parse::<std::net::Ipv6Addr>()
            .map(|_| ())
            .map_err(|_| bad("invalid IPv6 address"));
    }
    hostname(host).map_err(|e| bad(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert!(path("/a/b-c_d.e~f/%2F/:@!$&'()*+,;=").is_ok());
        assert!(path("/").is_ok());
        assert!(prefix("").is_ok());
        for bad in [
            "/x HTTP/1.1\r\nX-Injected: 1\r\n\r\nGET /y",
            "/a b",
            "/a\nb",
            "/a?b",
            "/a#b",
            "/a%",
            "/a%zz",
            "/a\"b",
            "/a\\b",
            "relative",
            "/é",
        ] {
            assert!(path(bad).is_err(), "{bad:?}");
        }
        let e = path("/x HTTP/1.1\r\n").unwrap_err();
        assert!(e.contains("space at offset 2"), "{e}");
    }

    #[test]
    fn headers() {
        assert!(token("header name", "X-Custom_1").is_ok());
        assert!(token("header name", "X Bad").is_err());
        assert!(token("header name", "X:Bad").is_err());
        assert!(token("header name", "").is_err());
        assert!(header_value("x", "a value\twith tab, ünïcode").is_ok());
        let e = header_value("x", "v\r\nX-Injected: 1").unwrap_err();
        assert!(e.contains("carriage return (CR) at offset 1"), "{e}");
        assert!(header_value("x", "a\0b").is_err());
        assert!(header_value("x", "a\x7fb").is_err());
    }

    #[test]
    fn hosts_and_origins() {
        assert!(hostname("api.example.com").is_ok());
        assert!(hostname("a-b.c").is_ok());
        for bad in ["", "a..b", "-a.b", "a b", "a\r\nb", "a:80", "*.a", "a_b"] {
            assert!(hostname(bad).is_err(), "{bad:?}");
        }
        for ok in [
            "*",
            "https://a.example.com",
            "http://a.example.com:8080",
            "https://*.example.com",
            "http://[::1]:80",
        ] {
            assert!(origin(ok).is_ok(), "{ok}");
        }
        for bad in [
            "a.example.com",
            "https://a.example.com\r\nx: y",
            "https://a b",
            "https://a:b",
        ] {
            assert!(origin(bad).is_err(), "{bad:?}");
        }
    }
}
