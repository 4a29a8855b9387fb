//! Why one matching rule beats another, in the Gateway API's words.
//!
//! The order is the route table's: the hostname group first (an exact
//! hostname, then the longest wildcard, then rules without hostnames:
//! `HTTPRouteSpec.hostnames`), then [`Precedence`] field by field.

use std::cmp::Ordering;

use portcullis_route::host::{HostPattern, classify};
use portcullis_route::{PathRank, Precedence, hostname_matches};

/// The hostname group a rule matches a host through; greater is more specific.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum HostRank {
    /// The rule has no hostname (or `*`).
    Any,
    /// A wildcard `*.suffix`, by the suffix's length.
    Wildcard(usize, String),
    /// An exact hostname.
    Exact(String),
}

/// The most specific of `hostnames` matching `host`; `None` if none does.
pub fn host_rank(hostnames: &[String], host: &str) -> Option<HostRank> {
    if hostnames.is_empty() {
        return Some(HostRank::Any);
    }
    hostnames
        .iter()
        .filter(|h| hostname_matches(h, host))
        .map(|h| match classify(h) {
            HostPattern::Exact(e) => HostRank::Exact(e),
            HostPattern::Wildcard(s) => HostRank::Wildcard(s.len(), format!("*.{s}")),
            HostPattern::Any => HostRank::Any,
        })
        .max()
}

fn host_words(h: &HostRank) -> String {
    match h {
        HostRank::Any => "no hostname".into(),
        HostRank::Wildcard(_, w) => format!("wildcard hostname {w}"),
        HostRank::Exact(e) => format!("exact hostname {e}"),
    }
}

fn count(n: usize, what: &str) -> String {
    if n == 1 {
        format!("1 {what}")
    } else {
        format!("{n} {what}s")
    }
}

fn path_words(p: &PathRank) -> String {
    match p {
        PathRank::Exact => "an exact path match".into(),
        PathRank::Prefix(n) => format!("a path prefix of {}", count(*n, "character")),
        PathRank::Regex(n) => format!("a regular expression of {}", count(*n, "character")),
    }
}

/// Why the winner (`wh`, `wp`) beats the loser (`lh`, `lp`).
pub fn why(wh: &HostRank, wp: &Precedence, lh: &HostRank, lp: &Precedence) -> String {
    if wh != lh {
        return format!(
            "hostname precedence: the winner matches through {}, this rule through {} \
             (an exact hostname beats a wildcard, a longer wildcard beats a shorter one, \
             any hostname comes last)",
            host_words(wh),
            host_words(lh)
        );
    }
    if wp.path != lp.path {
        let rule = match (&wp.path, &lp.path) {
            (PathRank::Exact, _) => "exact path beats prefix",
            (PathRank::Prefix(_), PathRank::Prefix(_)) => "longer prefix wins",
            (PathRank::Prefix(_), PathRank::Regex(_)) => "a prefix beats a regular expression",
            _ => "longer regular expression wins",
        };
        return format!(
            "{rule}: the winner has {}, this rule {}",
            path_words(&wp.path),
            path_words(&lp.path)
        );
    }
    if wp.method != lp.method {
        return "method: the winner matches the method, this rule does not".into();
    }
    if wp.headers != lp.headers {
        return format!(
            "more headers: the winner matches {}, this rule {}",
            count(wp.headers, "header"),
            lp.headers
        );
    }
    if wp.query_params != lp.query_params {
        return format!(
            "more query params: the winner matches {}, this rule {}",
            count(wp.query_params, "query parameter"),
            lp.query_params
        );
    }
    if wp.created != lp.created {
        return format!(
            "oldest route: the winner's route was created {}, this one {}",
            wp.created.0, lp.created.0
        );
    }
    if wp.route != lp.route {
        return format!(
            "name order: same age, and {} comes before {} alphabetically",
            wp.route.0, lp.route.0
        );
    }
    if wp.kind != lp.kind {
        return format!("kind order: {} before {}", wp.kind.0, lp.kind.0);
    }
    if wp.rule_index != lp.rule_index {
        return format!(
            "first rule of the route: rule {} comes before rule {}",
            wp.rule_index.0, lp.rule_index.0
        );
    }
    match wp.match_index.0.cmp(&lp.match_index.0) {
        Ordering::Less => format!(
            "first match of the rule: match {} comes before match {}",
            wp.match_index.0, lp.match_index.0
        ),
        _ => "same precedence; the route table's order decides".into(),
    }
}
