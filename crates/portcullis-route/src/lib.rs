//! Pure HTTP (and lowered gRPC) route matching with Gateway API v1.6 precedence.
//!
//! A [`RouteTable`] is built once per listener at configuration time from the
//! IR's [`HttpRouteRule`]s (regexes compiled, indexes built) and then only
//! read. [`RouteTable::lookup`] finds the winning rule for a request:
//!
//! 1. **Hostname** (Gateway API `HTTPRouteSpec.hostnames`: precedence to the
//!    most characters in a matching non-wildcard hostname, then in a matching
//!    hostname): rules are grouped by hostname: exact names (a `HashMap`),
//!    wildcard suffixes (a `HashMap` keyed by the suffix, probed with each
//!    dot-suffix of the host, longest first; `*.example.com` matches one or
//!    more labels, never `example.com`), then rules without a hostname. If a
//!    group has no matching rule the lookup falls through to the next, less
//!    specific group.
//! 2. **Within a group**, rules are ordered by [`Precedence`] (exact path >
//!    longest prefix > regex by pattern length > method > most headers > most
//!    query params > oldest route > `namespace/name` > rule index > match
//!    index). Exact paths are indexed by a `HashMap`, prefixes by a `HashMap`
//!    probed with each whole-segment prefix of the path (longest first), so a
//!    lookup costs O(host labels + path segments + candidates sharing the same
//!    path key + regex rules); it does not grow with the number of routes.
//!
//! Paths are matched against [`canonical_path`], which is also the path that
//! is forwarded; see [`canonical`] for the rule.
#![deny(missing_docs)]

pub mod canonical;
pub mod chars;
pub mod host;
pub mod matchers;
pub mod path;
pub mod precedence;

use std::collections::HashMap;
use std::sync::Arc;

use http::HeaderName;
use portcullis_ir::{HttpRouteRule, PathMatch, StringMatch, ValueMatch};

pub use canonical::{
    Canonical, EscapedSlashes, PathError, PathOptions, canonical_path, canonicalize,
};
pub use host::{AuthorityError, hostname_matches, normalize_host, parse_authority};
pub use matchers::{HeaderLookup, HeaderMatcher, QueryMatcher, ValueMatcher};
pub use path::PathMatcher;
pub use precedence::{PathRank, Precedence};

/// The table's maps hash with foldhash, seeded per process: a table build
/// hashes every rule's hostname and path, and a lookup the request's; the
/// keys come from the configuration, so a request cannot flood a map.
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// A rule that could not be compiled; it is left out of the table.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{route} rule {rule_index} match {match_index}: {reason}")]
pub struct BuildError {
    /// `namespace/name` of the route.
    pub route: String,
    /// Rule index.
    pub rule_index: usize,
    /// Match index.
    pub match_index: usize,
    /// What was wrong.
    pub reason: String,
}

/// One match of one rule, compiled, with the caller's value `T` attached.
#[derive(Debug)]
pub struct CompiledRule<T = ()> {
    /// The IR rule, shared with the configuration it came from.
    rule: Arc<HttpRouteRule>,
    precedence: Precedence,
    path: PathMatcher,
    method: Option<Box<str>>,
    headers: Box<[HeaderMatcher]>,
    query: Box<[QueryMatcher]>,
    value: T,
}

impl<T> CompiledRule<T> {
    /// The IR rule.
    pub fn rule(&self) -> &HttpRouteRule {
        &self.rule
    }
    /// The IR rule, as shared with the configuration it came from.
    pub fn shared_rule(&self) -> &Arc<HttpRouteRule> {
        &self.rule
    }
    /// The caller's value (e.g. the compiled action).
    pub fn value(&self) -> &T {
        &self.value
    }
    /// The precedence key.
    pub fn precedence(&self) -> &Precedence {
        &self.precedence
    }
    /// The compiled path match.
    pub fn path(&self) -> &PathMatcher {
        &self.path
    }
    /// The matched prefix (without trailing `/`, `/` for the root) if this is a
    /// PathPrefix match: what `ReplacePrefixMatch` replaces.
    pub fn matched_prefix(&self) -> Option<&str> {
        match &self.path {
            PathMatcher::Prefix(p) => Some(p),
            _ => None,
        }
    }

    /// Whether the non-path conditions (method, headers, query) hold.
    fn matches_rest(
        &self,
        method: &str,
        headers: &(impl HeaderLookup + ?Sized),
        query: Option<&str>,
    ) -> bool {
        if let Some(m) = &self.method
            && **m != *method
        {
            return false;
        }
        self.headers.iter().all(|h| h.matches(headers))
            && self.query.iter().all(|q| q.matches(query))
    }

    /// Whether the whole match holds (path included); for tests and diagnostics.
    pub fn matches(
        &self,
        method: &str,
        path: &str,
        headers: &(impl HeaderLookup + ?Sized),
        query: Option<&str>,
    ) -> bool {
        self.path.matches(path) && self.matches_rest(method, headers, query)
    }
}

/// Rules of one hostname group, indexed by path.
#[derive(Debug, Default)]
struct HostGroup {
    exact: FastMap<Box<str>, Vec<u32>>,
    prefix: FastMap<Box<str>, Vec<u32>>,
    regex: Vec<u32>,
}

impl HostGroup {
    fn insert(&mut self, idx: u32, path: &PathMatcher) {
        match path {
            PathMatcher::Exact(p) => entry(&mut self.exact, p).push(idx),
            PathMatcher::Prefix(p) => entry(&mut self.prefix, p).push(idx),
            PathMatcher::Regex(..) => self.regex.push(idx),
        }
    }

    fn sort<T>(&mut self, rules: &[CompiledRule<T>]) {
        let by = |a: &u32, b: &u32| {
            Precedence::best_first(
                &rules[*a as usize].precedence,
                &rules[*b as usize].precedence,
            )
        };
        self.exact.values_mut().for_each(|v| v.sort_by(by));
        self.prefix.values_mut().for_each(|v| v.sort_by(by));
        self.regex.sort_by(by);
    }

    fn lookup<'a, T>(
        &self,
        rules: &'a [CompiledRule<T>],
        method: &str,
        path: &str,
        headers: &(impl HeaderLookup + ?Sized),
        query: Option<&str>,
    ) -> Option<&'a CompiledRule<T>> {
        let first = |c: &[u32]| {
            c.iter()
                .map(|i| &rules[*i as usize])
                .find(|r| r.matches_rest(method, headers, query))
        };
        if let Some(r) = self.exact.get(path).and_then(|c| first(c)) {
            return Some(r);
        }
        if !self.prefix.is_empty() {
            for cand in path::prefix_candidates(path) {
                if let Some(r) = self.prefix.get(cand).and_then(|c| first(c)) {
                    return Some(r);
                }
            }
        }
        self.regex
            .iter()
            .map(|i| &rules[*i as usize])
            .find(|r| r.path.matches(path) && r.matches_rest(method, headers, query))
    }

    fn is_empty(&self) -> bool {
        self.exact.is_empty() && self.prefix.is_empty() && self.regex.is_empty()
    }
}

/// The value of a hostname or path, made empty for its first rule (the key
/// is copied only then, not for every rule that names it).
fn entry<'m, V: Default>(map: &'m mut FastMap<Box<str>, V>, key: &str) -> &'m mut V {
    if map.contains_key(key) {
        map.get_mut(key).expect("present")
    } else {
        map.entry(key.into()).or_default()
    }
}

/// The compiled routing table of one listener.
#[derive(Debug)]
pub struct RouteTable<T = ()> {
    rules: Vec<CompiledRule<T>>,
    exact_hosts: FastMap<Box<str>, HostGroup>,
    wildcard_hosts: FastMap<Box<str>, HostGroup>,
    any_host: HostGroup,
    errors: Vec<BuildError>,
}

impl RouteTable<()> {
    /// Build a table without attached values.
    pub fn from_rules<R: Into<Arc<HttpRouteRule>>>(rules: impl IntoIterator<Item = R>) -> Self {
        Self::build(rules.into_iter().map(|r| (r, ())))
    }
}

impl<T> RouteTable<T> {
    /// Build a table; every rule carries a caller value `T` returned by lookups.
    ///
    /// Rules that cannot be compiled (bad regex, bad header name) are left out
    /// and reported by [`RouteTable::errors`]. Rules are taken as `Arc`s
    /// (a plain rule is wrapped): the table shares them, never copies them.
    pub fn build<R: Into<Arc<HttpRouteRule>>>(rules: impl IntoIterator<Item = (R, T)>) -> Self {
        let rules = rules.into_iter();
        let mut compiled = Vec::with_capacity(rules.size_hint().0);
        let mut errors = Vec::new();
        for (rule, value) in rules {
            match compile(rule.into(), value) {
                Ok(c) => compiled.push(c),
                Err(e) => errors.push(e),
            }
        }
        // Every hostname classified once (a rule without hostnames is on any
        // host), in rule order; each host map is allocated once, for at most
        // as many hostnames as the rules name, then shrunk when they repeat
        // (one hostname shared by many rules).
        let hosts: Vec<(u32, host::HostPattern)> = compiled
            .iter()
            .enumerate()
            .flat_map(|(idx, c)| {
                let any = c
                    .rule
                    .hostnames
                    .is_empty()
                    .then_some(host::HostPattern::Any);
                let named = c.rule.hostnames.iter().map(|h| host::classify(h));
                any.into_iter().chain(named).map(move |h| (idx as u32, h))
            })
            .collect();
        let count =
            |want: fn(&host::HostPattern) -> bool| hosts.iter().filter(|(_, h)| want(h)).count();
        let exact = count(|h| matches!(h, host::HostPattern::Exact(_)));
        let wildcard = count(|h| matches!(h, host::HostPattern::Wildcard(_)));
        let mut table = RouteTable {
            rules: Vec::new(),
            exact_hosts: FastMap::with_capacity_and_hasher(exact, Default::default()),
            wildcard_hosts: FastMap::with_capacity_and_hasher(wildcard, Default::default()),
            any_host: HostGroup::default(),
            errors,
        };
        for (idx, h) in &hosts {
            let group = match h {
                host::HostPattern::Exact(e) => entry(&mut table.exact_hosts, e),
                host::HostPattern::Wildcard(s) => entry(&mut table.wildcard_hosts, s),
                host::HostPattern::Any => &mut table.any_host,
            };
            group.insert(*idx, &compiled[*idx as usize].path);
        }
        for m in [&mut table.exact_hosts, &mut table.wildcard_hosts] {
            if m.capacity() > 2 * m.len() {
                m.shrink_to_fit();
            }
        }
        table.rules = compiled;
        let rules = &table.rules;
        table.exact_hosts.values_mut().for_each(|g| g.sort(rules));
        table
            .wildcard_hosts
            .values_mut()
            .for_each(|g| g.sort(rules));
        table.any_host.sort(rules);
        table
    }

    /// Rules that were left out, with why.
    pub fn errors(&self) -> &[BuildError] {
        &self.errors
    }

    /// Every compiled rule, in input order.
    pub fn rules(&self) -> &[CompiledRule<T>] {
        &self.rules
    }

    /// Whether the table has no rules.
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// The winning rule for a request, if any.
    ///
    /// `host` must be normalised ([`normalize_host`]: lower case, no port);
    /// `path` must be canonical ([`canonical_path`]); `method` is the upper
    /// case method token; `query` is the raw query string without `?`.
    pub fn lookup(
        &self,
        host: &str,
        method: &str,
        path: &str,
        headers: &(impl HeaderLookup + ?Sized),
        query: Option<&str>,
    ) -> Option<&CompiledRule<T>> {
        let rules = &self.rules[..];
        if let Some(r) = self
            .exact_hosts
            .get(host)
            .and_then(|g| g.lookup(rules, method, path, headers, query))
        {
            return Some(r);
        }
        if !self.wildcard_hosts.is_empty() {
            for suffix in host::wildcard_suffixes(host) {
                if let Some(r) = self
                    .wildcard_hosts
                    .get(suffix)
                    .and_then(|g| g.lookup(rules, method, path, headers, query))
                {
                    return Some(r);
                }
            }
        }
        if self.any_host.is_empty() {
            return None;
        }
        self.any_host.lookup(rules, method, path, headers, query)
    }
}

fn compile<T>(rule: Arc<HttpRouteRule>, value: T) -> Result<CompiledRule<T>, BuildError> {
    let err = |reason: String| BuildError {
        route: format!("{}/{}", rule.meta.namespace, rule.meta.name),
        rule_index: rule.meta.rule_index,
        match_index: rule.match_index,
        reason,
    };
    let path = match &rule.matches.path {
        PathMatch::Exact(p) => PathMatcher::Exact(p.as_str().into()),
        PathMatch::Prefix(p) => PathMatcher::Prefix(path::prefix_key(p).into()),
        PathMatch::Regex(r) => PathMatcher::Regex(
            path::anchored(r).map_err(|e| err(format!("path regex: {e}")))?,
            r.as_str().into(),
        ),
    };
    let value_matcher = |v: &StringMatch| -> Result<ValueMatcher, BuildError> {
        Ok(match v {
            StringMatch::Exact(e) => ValueMatcher::Exact(e.as_str().into()),
            StringMatch::Regex(r) => {
                ValueMatcher::Regex(path::anchored(r).map_err(|e| err(format!("regex: {e}")))?)
            }
        })
    };
    let headers = rule
        .matches
        .headers
        .iter()
        .map(|ValueMatch { name, value }| {
            Ok(HeaderMatcher {
                name: HeaderName::from_bytes(name.as_bytes())
                    .map_err(|e| err(format!("header {name:?}: {e}")))?,
                value: value_matcher(value)?,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let query = rule
        .matches
        .query_params
        .iter()
        .map(|ValueMatch { name, value }| {
            Ok(QueryMatcher {
                name: name.as_str().into(),
                value: value_matcher(value)?,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CompiledRule {
        precedence: Precedence::of(&rule),
        path,
        method: rule.matches.method.as_deref().map(Into::into),
        headers: headers.into(),
        query: query.into(),
        rule,
        value,
    })
}

#[cfg(test)]
pub(crate) mod tests_support {
    use portcullis_ir::{HttpAction, HttpMatch, HttpRouteRule, PathMatch, RouteMeta};

    pub fn rule(ns: &str, name: &str, path: PathMatch) -> HttpRouteRule {
        HttpRouteRule {
            meta: RouteMeta {
                kind: "HTTPRoute".into(),
                namespace: ns.into(),
                name: name.into(),
                creation_timestamp: "2024-01-01T00:00:00Z".into(),
                rule_index: 0,
                rule_name: None,
            },
            hostnames: vec![],
            matches: HttpMatch {
                path,
                ..Default::default()
            },
            match_index: 0,
            action: HttpAction::default(),
        }
    }
}

#[cfg(test)]
mod tests;
