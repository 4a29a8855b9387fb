//! Route precedence as an [`Ord`] key.
//!
//! Gateway API v1.6 `HTTPRouteRule.matches`: "Across all rules specified on
//! applicable Routes, precedence must be given to the match having:
//! "Exact" path match; "Prefix" path match with largest number of characters;
//! Method match; Largest number of header matches; Largest number of query
//! param matches. [...] If ties still exist across multiple Routes, matching
//! precedence MUST be determined in order of the following criteria: The
//! oldest Route based on creation timestamp; The Route appearing first in
//! alphabetical order by "{namespace}/{name}". If ties still exist within an
//! HTTPRoute, matching precedence MUST be granted to the FIRST matching rule
//! (in list order)".
//!
//! RegularExpression precedence is implementation-specific; here a regex
//! ranks below every Exact and PathPrefix match, and longer patterns rank
//! above shorter ones.
//!
//! GRPCRoute (`GRPCRouteRule.matches`): "Precedence MUST be given to the rule
//! with the largest number of: Characters in a matching non-wildcard hostname;
//! Characters in a matching hostname; Characters in a matching service;
//! Characters in a matching method; Header matches." GRPCRoute matches arrive
//! lowered to paths: service+method is `Exact("/svc/method")`, service only is
//! `Prefix("/svc")`, method only (and regex service/method) is `Regex(..)`.
//! The same key therefore orders them as both set > service only > method
//! only, then header matches; the hostname criteria are handled by the host
//! index in [`crate::RouteTable`] before this key is consulted.

use std::cmp::{Ordering, Reverse};

use portcullis_ir::{HttpRouteRule, PathMatch};

/// Rank of a path match: `Exact` > `Prefix` (longer first) > `Regex` (longer pattern first).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum PathRank {
    /// A regular expression, ranked by pattern length.
    Regex(usize),
    /// A path prefix, ranked by its length in characters (trailing `/` ignored).
    Prefix(usize),
    /// An exact path.
    Exact,
}

/// The precedence key of one match of one rule.
///
/// `a > b` means `a` takes precedence over `b`: sort descending (or take the
/// maximum) to find the winner. Every criterion of the spec is a field, in
/// spec order, so the derived lexicographic order is the spec's order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Precedence {
    /// Path kind and length.
    pub path: PathRank,
    /// Whether a method is matched.
    pub method: bool,
    /// Number of header matches (more wins).
    pub headers: usize,
    /// Number of query parameter matches (more wins).
    pub query_params: usize,
    /// Creation timestamp; older wins.
    pub created: Reverse<String>,
    /// `{namespace}/{name}`; alphabetically first wins.
    pub route: Reverse<String>,
    /// Route kind, only to make the order total between an HTTPRoute and a
    /// GRPCRoute of the same name.
    pub kind: Reverse<String>,
    /// Rule index within the route; first wins.
    pub rule_index: Reverse<usize>,
    /// Match index within the rule; first wins.
    pub match_index: Reverse<usize>,
}

impl Precedence {
    /// The key of an IR rule.
    pub fn of(rule: &HttpRouteRule) -> Self {
        let path = match &rule.matches.path {
            PathMatch::Exact(_) => PathRank::Exact,
            PathMatch::Prefix(p) => PathRank::Prefix(crate::path::prefix_key(p).len()),
            PathMatch::Regex(r) => PathRank::Regex(r.len()),
        };
        Precedence {
            path,
            method: rule.matches.method.is_some(),
            headers: rule.matches.headers.len(),
            query_params: rule.matches.query_params.len(),
            created: Reverse(rule.meta.creation_timestamp.clone()),
            route: Reverse(format!("{}/{}", rule.meta.namespace, rule.meta.name)),
            kind: Reverse(rule.meta.kind.clone()),
            rule_index: Reverse(rule.meta.rule_index),
            match_index: Reverse(rule.match_index),
        }
    }

    /// Compare for sorting best-first.
    pub fn best_first(a: &Self, b: &Self) -> Ordering {
        b.cmp(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tests_support::rule;
    use portcullis_ir::{StringMatch, ValueMatch};

    fn key(f: impl FnOnce(&mut HttpRouteRule)) -> Precedence {
        let mut r = rule("ns", "r", PathMatch::Prefix("/".into()));
        f(&mut r);
        Precedence::of(&r)
    }

    #[test]
    fn exact_beats_any_prefix_and_prefix_beats_regex() {
        let exact = key(|r| r.matches.path = PathMatch::Exact("/a".into()));
        let long_prefix = key(|r| r.matches.path = PathMatch::Prefix("/a/very/long/prefix".into()));
        let regex = key(|r| r.matches.path = PathMatch::Regex("/a/very/long/regex/.*".into()));
        assert!(exact > long_prefix);
        assert!(long_prefix > regex);
    }

    #[test]
    fn longer_prefix_wins_and_trailing_slash_is_ignored() {
        let a = key(|r| r.matches.path = PathMatch::Prefix("/foo/bar".into()));
        let b = key(|r| r.matches.path = PathMatch::Prefix("/foo".into()));
        let c = key(|r| r.matches.path = PathMatch::Prefix("/foo/".into()));
        assert!(a > b);
        assert_eq!(b.path, c.path);
    }

    #[test]
    fn method_then_headers_then_query() {
        let m = key(|r| r.matches.method = Some("GET".into()));
        let h = key(|r| {
            r.matches.headers = vec![
                ValueMatch {
                    name: "a".into(),
                    value: StringMatch::Exact("1".into())
                };
                3
            ]
        });
        let q = key(|r| {
            r.matches.query_params = vec![
                ValueMatch {
                    name: "a".into(),
                    value: StringMatch::Exact("1".into())
                };
                5
            ]
        });
        assert!(m > h, "method beats any number of headers");
        assert!(h > q, "headers beat any number of query params");
        assert!(q > key(|_| {}));
    }

    #[test]
    fn oldest_then_alphabetical_then_rule_then_match_index() {
        let old = key(|r| r.meta.creation_timestamp = "2020-01-01T00:00:00Z".into());
        let new = key(|r| r.meta.creation_timestamp = "2024-01-01T00:00:00Z".into());
        assert!(old > new);
        let a = key(|r| r.meta.namespace = "a".into());
        let b = key(|r| r.meta.namespace = "b".into());
        assert!(a > b);
        // "{namespace}/{name}" as one string: "a-b/x" sorts before "a/x".
        let dash = key(|r| {
            r.meta.namespace = "a-b".into();
            r.meta.name = "x".into()
        });
        let plain = key(|r| {
            r.meta.namespace = "a".into();
            r.meta.name = "x".into()
        });
        assert!(dash > plain);
        let r0 = key(|r| r.meta.rule_index = 0);
        let r1 = key(|r| r.meta.rule_index = 1);
        assert!(r0 > r1);
        let m0 = key(|r| r.match_index = 0);
        let m1 = key(|r| r.match_index = 1);
        assert!(m0 > m1);
    }

    #[test]
    fn grpc_service_and_method_beat_service_beat_method() {
        let both = key(|r| r.matches.path = PathMatch::Exact("/svc.Foo/Bar".into()));
        let service = key(|r| r.matches.path = PathMatch::Prefix("/svc.Foo".into()));
        let method = key(|r| r.matches.path = PathMatch::Regex("/[^/]+/Bar".into()));
        assert!(both > service && service > method);
        let service_headers = key(|r| {
            r.matches.path = PathMatch::Prefix("/svc.Foo".into());
            r.matches.headers = vec![ValueMatch {
                name: "a".into(),
                value: StringMatch::Exact("1".into()),
            }];
        });
        assert!(service_headers > service);
        assert!(both > service_headers);
    }
}
