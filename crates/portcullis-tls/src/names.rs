//! Hostname matching as the Gateway API defines it, shared by SNI certificate
//! selection, the misdirected-request rule and layer-4 routing.
//!
//! A pattern is a hostname (`foo.example.com`), a wildcard (`*.example.com`,
//! which matches one *or more* labels in front of `example.com` but not
//! `example.com` itself) or nothing (matches everything). Comparison is
//! ASCII case-insensitive and ignores one trailing dot on the name.
//! When several patterns match, the most specific wins: exact, then the
//! wildcard with the longest suffix, then "any"; ties go to the first.

use std::borrow::Borrow;

use portcullis_ir::Listener;

/// How well a pattern matches a name; greater is more specific.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MatchRank {
    /// A pattern without hostname (or `*`): matches everything.
    Any,
    /// A wildcard `*.suffix`; the number is the pattern's length (longer is more specific).
    Wildcard(usize),
    /// The exact name.
    Exact,
}

/// Strips one trailing dot.
fn trim_dot(name: &str) -> &str {
    name.strip_suffix('.').unwrap_or(name)
}

/// How `pattern` (`None` = any) matches `name`, or `None` if it does not.
pub fn match_rank(pattern: Option<&str>, name: &str) -> Option<MatchRank> {
    let Some(pattern) = pattern else {
        return Some(MatchRank::Any);
    };
    let pattern = trim_dot(pattern);
    let name = trim_dot(name);
    if pattern == "*" {
        return Some(MatchRank::Any);
    }
    if let Some(suffix) = pattern.strip_prefix("*.") {
        // `name` must be `<one or more labels>.<suffix>`.
        let n = name.len();
        let s = suffix.len();
        let bytes = name.as_bytes();
        if n > s + 1
            && bytes[n - s - 1] == b'.'
            && bytes[n - s..].eq_ignore_ascii_case(suffix.as_bytes())
            && !name.starts_with('.')
        {
            return Some(MatchRank::Wildcard(pattern.len()));
        }
        return None;
    }
    pattern
        .eq_ignore_ascii_case(name)
        .then_some(MatchRank::Exact)
}

/// The best rank of any pattern in `patterns` for `name`; an empty list means any.
pub fn best_rank<S: AsRef<str>>(patterns: &[S], name: Option<&str>) -> Option<MatchRank> {
    if patterns.is_empty() {
        return Some(MatchRank::Any);
    }
    let name = name?;
    patterns
        .iter()
        .filter_map(|p| match_rank(Some(p.as_ref()), name))
        .max()
}

/// Index of the most specific pattern matching `name` (first on ties).
///
/// Without a name (no SNI), only patterns that match everything qualify.
pub fn select<'a, I>(name: Option<&str>, patterns: I) -> Option<usize>
where
    I: IntoIterator<Item = Option<&'a str>>,
{
    let mut best: Option<(MatchRank, usize)> = None;
    for (i, p) in patterns.into_iter().enumerate() {
        let rank = match name {
            Some(n) => match_rank(p, n),
            None => (p.is_none() || p == Some("*")).then_some(MatchRank::Any),
        };
        if let Some(r) = rank
            && best.is_none_or(|(b, _)| r > b)
        {
            best = Some((r, i));
        }
    }
    best.map(|(_, i)| i)
}

/// Specificity of a pattern on its own (not against a name): used to find the
/// *least* specific listener, whose certificate answers ClientHellos without SNI.
pub fn specificity(pattern: Option<&str>) -> MatchRank {
    match pattern.map(trim_dot) {
        None | Some("*") => MatchRank::Any,
        Some(p) if p.starts_with("*.") => MatchRank::Wildcard(p.len()),
        Some(_) => MatchRank::Exact,
    }
}

/// The host part of a `Host` header or `:authority`: without port, brackets
/// (IPv6) or trailing dot.
pub fn host_without_port(host: &str) -> &str {
    let host = host.trim();
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    let host = match host.rsplit_once(':') {
        // A single colon: `name:port`. More than one means a bare IPv6 address.
        Some((h, p)) if !h.contains(':') && p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    };
    trim_dot(host)
}

/// The misdirected-request rule (RFC 9110 421, Gateway API `Listener.hostname`).
///
/// `listeners` are the listeners sharing one port and protocol; `sni` the name
/// the client sent in its ClientHello; `host` the request's `Host` or
/// `:authority` (a port is ignored). Returns `false` when the request must be
/// answered with **421**: the listener that the Host selects (exact, then the
/// most specific wildcard, then the listener without hostname) is not the
/// listener that the SNI selected. This covers both cases of the spec:
///
/// * the SNI's listener matches the Host but another listener matches it more
///   specifically (exact or a longer wildcard) → 421;
/// * the SNI's listener does not match the Host but another listener does → 421.
///
/// When no listener matches the Host the request is not misdirected (`true`):
/// routing then answers 404. Without SNI (or an SNI that selected no
/// listener, which normally fails the handshake already) there is nothing to
/// compare with, so the request is allowed.
pub fn host_allowed_for_sni<L: Borrow<Listener>>(
    sni: Option<&str>,
    host: &str,
    listeners: &[L],
) -> bool {
    let hostnames = || listeners.iter().map(|l| l.borrow().hostname.as_deref());
    let Some(by_host) = select(Some(host_without_port(host)), hostnames()) else {
        return true;
    };
    match select(sni, hostnames()) {
        Some(by_sni) if sni.is_some() => by_sni == by_host,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener(hostname: Option<&str>) -> Listener {
        Listener {
            name: format!("ns/gw/{}", hostname.unwrap_or("any")),
            hostname: hostname.map(str::to_owned),
            tls: None,
            http_routes: vec![],
            l4_routes: vec![],
            client: None,
        }
    }

    #[test]
    fn wildcard_matches_one_or_more_labels_not_the_apex() {
        let w = Some("*.example.com");
        assert_eq!(
            match_rank(w, "a.example.com"),
            Some(MatchRank::Wildcard(13))
        );
        assert_eq!(
            match_rank(w, "a.b.example.com"),
            Some(MatchRank::Wildcard(13))
        );
        assert_eq!(
            match_rank(w, "A.EXAMPLE.COM."),
            Some(MatchRank::Wildcard(13))
        );
        assert_eq!(match_rank(w, "example.com"), None);
        assert_eq!(match_rank(w, ".example.com"), None);
        assert_eq!(match_rank(w, "aexample.com"), None);
        assert_eq!(match_rank(w, "a.example.org"), None);
        assert_eq!(
            match_rank(Some("Foo.Example.com"), "foo.example.com."),
            Some(MatchRank::Exact)
        );
        assert_eq!(match_rank(Some("foo.example.com"), "bar.example.com"), None);
        assert_eq!(match_rank(None, "anything"), Some(MatchRank::Any));
    }

    #[test]
    fn select_prefers_exact_then_longest_wildcard_then_any() {
        let pats = [
            None,
            Some("*.com"),
            Some("*.example.com"),
            Some("a.example.com"),
        ];
        assert_eq!(select(Some("a.example.com"), pats), Some(3));
        assert_eq!(select(Some("b.example.com"), pats), Some(2));
        assert_eq!(select(Some("b.other.com"), pats), Some(1));
        assert_eq!(select(Some("b.org"), pats), Some(0));
        assert_eq!(select(None, pats), Some(0));
        assert_eq!(select(None, [Some("a.example.com")]), None);
        assert_eq!(select(Some("x.org"), [Some("a.example.com")]), None);
        // ties go to the first
        assert_eq!(select(Some("x.org"), [None, None]), Some(0));
    }

    #[test]
    fn best_rank_of_route_hostnames() {
        assert_eq!(best_rank::<&str>(&[], None), Some(MatchRank::Any));
        assert_eq!(
            best_rank(&["a.example.com", "*.example.com"], Some("a.example.com")),
            Some(MatchRank::Exact)
        );
        assert_eq!(
            best_rank(&["*.example.com"], Some("b.example.com")),
            Some(MatchRank::Wildcard(13))
        );
        assert_eq!(best_rank(&["*.example.com"], None), None);
    }

    #[test]
    fn host_header_forms() {
        assert_eq!(host_without_port("example.org:8443"), "example.org");
        assert_eq!(host_without_port("example.org."), "example.org");
        assert_eq!(host_without_port("[::1]:443"), "::1");
        assert_eq!(host_without_port("::1"), "::1");
        assert_eq!(host_without_port("example.org"), "example.org");
    }

    /// The upstream conformance scenario HTTPRouteHTTPSListenerDetectMisdirectedRequests.
    #[test]
    fn misdirected_request_conformance_table() {
        let ls = [
            listener(Some("second-example.org")),
            listener(Some("fourth-example.wildcard.org")),
            listener(Some("*.wildcard.org")),
            listener(None),
        ];
        // (sni, host, allowed); "allowed" covers the 200 and 404 rows, false the 421 rows.
        let table = [
            ("example.org", "example.org", true),
            ("example.org", "second-example.org", false),
            ("example.org", "unknown-example.org", true),
            ("second-example.org", "second-example.org", true),
            ("second-example.org", "example.org", false),
            ("second-example.org", "unknown-example.org", false),
            (
                "third-example.wildcard.org",
                "third-example.wildcard.org",
                true,
            ),
            (
                "third-example.wildcard.org",
                "fith-example.wildcard.org",
                true,
            ),
            (
                "third-example.wildcard.org",
                "fourth-example.wildcard.org",
                false,
            ),
            ("third-example.wildcard.org", "second-example.org", false),
            ("third-example.wildcard.org", "unknown-example.org", false),
            (
                "fourth-example.wildcard.org",
                "fourth-example.wildcard.org",
                true,
            ),
            (
                "fourth-example.wildcard.org",
                "fith-example.wildcard.org",
                false,
            ),
            ("unknown-example.org", "example.org", true),
            ("unknown-example.org", "unknown-example.org", true),
        ];
        for (sni, host, allowed) in table {
            assert_eq!(
                host_allowed_for_sni(Some(sni), host, &ls),
                allowed,
                "sni={sni} host={host}"
            );
            // A port in the Host header does not change the answer.
            let with_port = format!("{host}:443");
            assert_eq!(host_allowed_for_sni(Some(sni), &with_port, &ls), allowed);
        }
        // References work as well as owned listeners.
        let refs: Vec<&Listener> = ls.iter().collect();
        assert!(!host_allowed_for_sni(
            Some("second-example.org"),
            "example.org",
            &refs
        ));
    }

    #[test]
    fn misdirected_without_catch_all_listener() {
        let ls = [
            listener(Some("a.example.com")),
            listener(Some("*.example.com")),
        ];
        // Host matches no listener: not misdirected, routing answers 404.
        assert!(host_allowed_for_sni(
            Some("a.example.com"),
            "other.org",
            &ls
        ));
        assert!(!host_allowed_for_sni(
            Some("a.example.com"),
            "b.example.com",
            &ls
        ));
        assert!(!host_allowed_for_sni(
            Some("b.example.com"),
            "a.example.com",
            &ls
        ));
        assert!(host_allowed_for_sni(
            Some("b.example.com"),
            "c.example.com",
            &ls
        ));
        // No SNI: nothing to compare with.
        assert!(host_allowed_for_sni(None, "a.example.com", &ls));
    }
}
