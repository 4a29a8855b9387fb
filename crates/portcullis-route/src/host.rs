//! Hostnames: normalisation and wildcard suffixes.
//!
//! Gateway API `Hostname`: "a wildcard label (`*.`) [...] matches one or
//! more DNS labels": `*.example.com` matches `foo.example.com` and
//! `foo.bar.example.com` but not `example.com`. Precedence across routes is
//! given to "characters in a matching non-wildcard hostname", then
//! "characters in a matching hostname": an exact hostname beats every
//! wildcard, and a longer wildcard suffix beats a shorter one.

use std::borrow::Cow;

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
