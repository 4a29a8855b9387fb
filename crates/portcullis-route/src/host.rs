//! Hostnames: normalisation and wildcard suffixes.
//!
//! Gateway API `Hostname`: "a wildcard label (`*.`) [...] matches one or
//! more DNS labels": `*.example.com` matches `foo.example.com` and
//! `foo.bar.example.com` but not `example.com`. Precedence across routes is
//! given to "characters in a matching non-wildcard hostname", then
//! "characters in a matching hostname": an exact hostname beats every
//! wildcard, and a longer wildcard suffix beats a shorter one.

use std::borrow::Cow;

/// Why a `Host` header or `:authority` was rejected (the data plane answers 400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthorityError {
    /// Empty host.
    #[error("empty host")]
    Empty,
    /// A byte that cannot appear in `uri-host` (RFC 3986 §3.2.2): userinfo
    /// (`@`), quotes, spaces, `/`, `\\`, controls, …
    #[error("invalid character in host")]
    BadChar,
    /// The port is not 1 to 5 digits, or above 65535.
    #[error("invalid port in host")]
    BadPort,
    /// An IP literal that does not parse.
    #[error("invalid IP literal in host")]
    BadLiteral,
}

/// RFC 3986 `reg-name` characters without percent-encodings: `unreserved`
/// and `sub-delims`.
fn reg_name_byte(b: u8) -> bool {
    crate::chars::is_unreserved(b) || crate::chars::is_sub_delim(b)
}

/// Validate an authority as RFC 9110 `Host = uri-host [ ":" port ]`
/// (no userinfo) and return its normalised host ([`normalize_host`]).
///
/// nginx and Envoy reject the same inputs: `user:pw@host`, a quote, a space
/// or a second `:`-separated part that is not a port all end in 400, so
/// that routing, the 421 check and forwarding see one unambiguous value.
pub fn parse_authority(authority: &str) -> Result<Cow<'_, str>, AuthorityError> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let end = rest.find(']').ok_or(AuthorityError::BadLiteral)?;
        let lit = &rest[..end];
        let ok = lit.parse::<std::net::Ipv6Addr>().is_ok()
            || (lit.starts_with(['v', 'V']) && lit.bytes().all(|b| reg_name_byte(b) || b == b':'));
        if !ok {
            return Err(AuthorityError::BadLiteral);
        }
        let after = &rest[end + 1..];
        let port = match after.strip_prefix(':') {
            Some(p) => Some(p),
            None if after.is_empty() => None,
            None => return Err(AuthorityError::BadChar),
        };
        (&authority[..end + 2], port)
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if host.is_empty() {
        return Err(AuthorityError::Empty);
    }
    if !host.starts_with('[') && !host.bytes().all(reg_name_byte) {
        return Err(AuthorityError::BadChar);
    }
    if let Some(p) = port
        && !p.is_empty()
        && (p.len() > 5
            || !p.bytes().all(|b| b.is_ascii_digit())
            || p.parse::<u32>().map_or(true, |n| n > 65535))
    {
        return Err(AuthorityError::BadPort);
    }
    Ok(normalize_host(authority))
}

/// The host part of an authority or `Host` header: port removed, lower-cased,
/// a trailing `.` removed. IPv6 literals keep their brackets.
///
/// Borrows when nothing needs changing (the common case).
pub fn normalize_host(authority: &str) -> Cow<'_, str> {
    let host = if authority.starts_with('[') {
        match authority.find(']') {
            Some(i) => &authority[..=i],
            None => authority,
        }
    } else {
        match authority.rfind(':') {
            Some(i) => &authority[..i],
            None => authority,
        }
    };
    let host = host.strip_suffix('.').unwrap_or(host);
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Owned(host.to_ascii_lowercase())
    } else {
        Cow::Borrowed(host)
    }
}

/// The suffixes a wildcard could cover for `host`, longest first:
/// `a.b.example.com` yields `b.example.com`, `example.com`, `com`.
///
/// A wildcard `*.S` matches `host` iff one of these equals `S`.
pub fn wildcard_suffixes(host: &str) -> impl Iterator<Item = &str> {
    host.match_indices('.')
        .map(move |(i, _)| &host[i + 1..])
        .filter(|s| !s.is_empty())
}

/// Split a configured hostname into `Exact(name)` or `Wildcard(suffix)`.
pub fn classify(hostname: &str) -> HostPattern {
    let h = hostname.to_ascii_lowercase();
    match h.strip_prefix("*.") {
        Some(suffix) => HostPattern::Wildcard(suffix.to_string()),
        None if h == "*" => HostPattern::Any,
        None => HostPattern::Exact(h),
    }
}

/// A configured hostname.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HostPattern {
    /// A non-wildcard name.
    Exact(String),
    /// `*.suffix`, stored as `suffix`.
    Wildcard(String),
    /// Any host.
    Any,
}

/// Whether a configured hostname (exact or `*.suffix`) matches a normalised host.
pub fn hostname_matches(pattern: &str, host: &str) -> bool {
    match classify(pattern) {
        HostPattern::Exact(e) => e == host,
        HostPattern::Wildcard(s) => wildcard_suffixes(host).any(|x| x == s),
        HostPattern::Any => true,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn authority_validation() {
        for ok in [
            "example.com",
            "example.com:8080",
            "Example.COM.",
            "127.0.0.1:80",
            "[::1]:443",
            "[::1]",
            "a_b.example",
            "host:",
        ] {
            assert!(parse_authority(ok).is_ok(), "{ok}");
        }
        assert_eq!(parse_authority("Ex.COM:80").unwrap(), "ex.com");
        for bad in [
            "internal.example.com:1@evil.example.org",
            "user:pw@host",
            "user@host",
            "\"quoted\"",
            "a b",
            "",
            ":80",
            "a:b",
            "a:80:90",
            "a:99999",
            "a/b",
            "a\\b",
            "[::1",
            "[zz]",
            "[::1]x",
            "a\tb",
        ] {
            assert!(parse_authority(bad).is_err(), "{bad:?}");
        }
    }

    use super::*;

    #[test]
    fn normalize_strips_port_case_and_dot() {
        assert_eq!(normalize_host("Foo.Example.com:8080"), "foo.example.com");
        assert_eq!(normalize_host("foo.example.com."), "foo.example.com");
        assert_eq!(normalize_host("[::1]:80"), "[::1]");
        assert!(matches!(normalize_host("a.b"), Cow::Borrowed(_)));
    }

    #[test]
    fn wildcard_matches_one_or_more_labels_never_the_bare_domain() {
        assert!(hostname_matches("*.example.com", "foo.example.com"));
        assert!(hostname_matches("*.example.com", "a.b.example.com"));
        assert!(!hostname_matches("*.example.com", "example.com"));
        assert!(!hostname_matches("*.example.com", "fooexample.com"));
        assert!(hostname_matches("Foo.COM", "foo.com"));
    }

    #[test]
    fn suffixes_longest_first() {
        let v: Vec<_> = wildcard_suffixes("a.b.c").collect();
        assert_eq!(v, ["b.c", "c"]);
        assert_eq!(wildcard_suffixes("localhost").count(), 0);
    }
}
