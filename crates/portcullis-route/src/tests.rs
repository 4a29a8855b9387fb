//! Table-level tests, one per spec rule.

use portcullis_ir::{HttpRouteRule, PathMatch, StringMatch, ValueMatch};

use crate::RouteTable;
use crate::tests_support::rule;

const NO_HEADERS: &[(&str, &str)] = &[];

/// A rule named `name` with a path and hostnames.
fn r(name: &str, hosts: &[&str], path: PathMatch) -> HttpRouteRule {
    let mut x = rule("ns", name, path);
    x.hostnames = hosts.iter().map(|h| h.to_string()).collect();
    x
}

fn exact(p: &str) -> PathMatch {
    PathMatch::Exact(p.into())
}
fn prefix(p: &str) -> PathMatch {
    PathMatch::Prefix(p.into())
}
fn regex(p: &str) -> PathMatch {
    PathMatch::Regex(p.into())
}
fn hm(name: &str, v: &str) -> ValueMatch {
    ValueMatch {
        name: name.into(),
        value: StringMatch::Exact(v.into()),
    }
}

fn winner(
    t: &RouteTable,
    host: &str,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    q: Option<&str>,
) -> Option<String> {
    t.lookup(host, method, path, headers, q)
        .map(|c| c.rule().meta.name.clone())
}

fn get(t: &RouteTable, host: &str, path: &str) -> Option<String> {
    winner(t, host, "GET", path, NO_HEADERS, None)
}

#[test]
fn exact_host_beats_wildcard_beats_none() {
    let t = RouteTable::from_rules([
        r("none", &[], prefix("/")),
        r("wild", &["*.example.com"], prefix("/")),
        r("longwild", &["*.b.example.com"], prefix("/")),
        r("exact", &["a.b.example.com"], prefix("/")),
    ]);
    assert_eq!(get(&t, "a.b.example.com", "/").as_deref(), Some("exact"));
    assert_eq!(get(&t, "x.b.example.com", "/").as_deref(), Some("longwild"));
    assert_eq!(
        get(&t, "x.y.b.example.com", "/").as_deref(),
        Some("longwild"),
        "wildcard covers several labels"
    );
    assert_eq!(get(&t, "x.example.com", "/").as_deref(), Some("wild"));
    assert_eq!(
        get(&t, "example.com", "/").as_deref(),
        Some("none"),
        "wildcard never matches the bare domain"
    );
    assert_eq!(get(&t, "other.org", "/").as_deref(), Some("none"));
}

#[test]
fn host_specificity_beats_path_specificity() {
    let t = RouteTable::from_rules([
        r("none-exact", &[], exact("/x")),
        r("host-prefix", &["h.com"], prefix("/")),
    ]);
    assert_eq!(get(&t, "h.com", "/x").as_deref(), Some("host-prefix"));
}

#[test]
fn falls_through_to_less_specific_host_groups() {
    let t = RouteTable::from_rules([
        r("exact", &["a.example.com"], prefix("/only")),
        r("wild", &["*.example.com"], prefix("/wild")),
        r("none", &[], prefix("/")),
    ]);
    assert_eq!(
        get(&t, "a.example.com", "/only/x").as_deref(),
        Some("exact")
    );
    assert_eq!(get(&t, "a.example.com", "/wild").as_deref(), Some("wild"));
    assert_eq!(get(&t, "a.example.com", "/else").as_deref(), Some("none"));
    let t2 = RouteTable::from_rules([r("exact", &["a.example.com"], prefix("/only"))]);
    assert_eq!(get(&t2, "a.example.com", "/else"), None);
    assert_eq!(get(&t2, "b.example.com", "/only"), None);
}

#[test]
fn exact_beats_prefix_beats_regex() {
    let t = RouteTable::from_rules([
        r("regex", &[], regex("/foo/.*")),
        r("prefix", &[], prefix("/foo")),
        r("exact", &[], exact("/foo/bar")),
    ]);
    assert_eq!(get(&t, "h", "/foo/bar").as_deref(), Some("exact"));
    assert_eq!(get(&t, "h", "/foo/baz").as_deref(), Some("prefix"));
    let t = RouteTable::from_rules([
        r("regex", &[], regex("/foo/.*")),
        r("prefix", &[], prefix("/other")),
    ]);
    assert_eq!(get(&t, "h", "/foo/baz").as_deref(), Some("regex"));
    assert_eq!(
        get(&t, "h", "/foo"),
        None,
        "regex must match the whole path"
    );
}

#[test]
fn longest_prefix_on_element_boundaries() {
    let t = RouteTable::from_rules([
        r("root", &[], prefix("/")),
        r("foo", &[], prefix("/foo")),
        r("foobar", &[], prefix("/foo/bar/")),
    ]);
    assert_eq!(get(&t, "h", "/foo").as_deref(), Some("foo"));
    assert_eq!(get(&t, "h", "/foo/").as_deref(), Some("foo"));
    assert_eq!(get(&t, "h", "/foo/b").as_deref(), Some("foo"));
    assert_eq!(
        get(&t, "h", "/foo/bar").as_deref(),
        Some("foobar"),
        "trailing slash of the prefix is ignored"
    );
    assert_eq!(get(&t, "h", "/foo/bar/baz").as_deref(), Some("foobar"));
    assert_eq!(
        get(&t, "h", "/foobar").as_deref(),
        Some("root"),
        "/foo does not match /foobar"
    );
    assert_eq!(
        get(&t, "h", "/foo%2Fbar").as_deref(),
        Some("root"),
        "an encoded slash is not a separator"
    );
}

#[test]
fn regex_longer_pattern_first() {
    let t = RouteTable::from_rules([
        r("short", &[], regex("/.*")),
        r("long", &[], regex("/api/v[0-9]+/.*")),
    ]);
    assert_eq!(get(&t, "h", "/api/v1/x").as_deref(), Some("long"));
    assert_eq!(get(&t, "h", "/other").as_deref(), Some("short"));
}

#[test]
fn method_beats_headers_beats_query() {
    let mut m = r("method", &[], prefix("/"));
    m.matches.method = Some("POST".into());
    let mut h = r("headers", &[], prefix("/"));
    h.matches.headers = vec![hm("a", "1"), hm("b", "2")];
    let mut q = r("query", &[], prefix("/"));
    q.matches.query_params = vec![hm("x", "1"), hm("y", "1"), hm("z", "1")];
    let t = RouteTable::from_rules([q, h, m, r("plain", &[], prefix("/"))]);
    let all = [("a", "1"), ("b", "2")];
    let qs = Some("x=1&y=1&z=1");
    assert_eq!(
        winner(&t, "h", "POST", "/", &all, qs).as_deref(),
        Some("method")
    );
    assert_eq!(
        winner(&t, "h", "GET", "/", &all, qs).as_deref(),
        Some("headers")
    );
    assert_eq!(
        winner(&t, "h", "GET", "/", &[("a", "1")], qs).as_deref(),
        Some("query")
    );
    assert_eq!(
        winner(&t, "h", "GET", "/", &[], None).as_deref(),
        Some("plain")
    );
}

#[test]
fn more_headers_win() {
    let mut one = r("one", &[], prefix("/"));
    one.matches.headers = vec![hm("a", "1")];
    let mut two = r("two", &[], prefix("/"));
    two.matches.headers = vec![hm("a", "1"), hm("b", "2")];
    let t = RouteTable::from_rules([one, two]);
    assert_eq!(
        winner(&t, "h", "GET", "/", &[("A", "1"), ("B", "2")], None).as_deref(),
        Some("two")
    );
    assert_eq!(
        winner(&t, "h", "GET", "/", &[("a", "1"), ("b", "3")], None).as_deref(),
        Some("one")
    );
    assert_eq!(
        winner(&t, "h", "GET", "/", &[("a", "X")], None),
        None,
        "values are case-sensitive"
    );
}

#[test]
fn header_and_query_regex_full_match() {
    let mut x = r("x", &[], prefix("/"));
    x.matches.headers = vec![ValueMatch {
        name: "v".into(),
        value: StringMatch::Regex("v[0-9]".into()),
    }];
    x.matches.query_params = vec![ValueMatch {
        name: "q".into(),
        value: StringMatch::Regex("a+".into()),
    }];
    let t = RouteTable::from_rules([x]);
    assert!(winner(&t, "h", "GET", "/", &[("v", "v1")], Some("q=aaa")).is_some());
    assert!(winner(&t, "h", "GET", "/", &[("v", "v12")], Some("q=aaa")).is_none());
    assert!(winner(&t, "h", "GET", "/", &[("v", "v1")], Some("q=aab")).is_none());
}

#[test]
fn oldest_route_then_alphabetical_then_rule_and_match_index() {
    let mut newer = r("a-newer", &[], prefix("/"));
    newer.meta.creation_timestamp = "2024-06-01T00:00:00Z".into();
    let mut older = r("z-older", &[], prefix("/"));
    older.meta.creation_timestamp = "2023-06-01T00:00:00Z".into();
    let t = RouteTable::from_rules([newer.clone(), older]);
    assert_eq!(get(&t, "h", "/").as_deref(), Some("z-older"));

    let mut b = r("b", &[], prefix("/"));
    b.meta.namespace = "ns".into();
    let t = RouteTable::from_rules([b, newer.clone()]);
    assert_eq!(
        get(&t, "h", "/").as_deref(),
        Some("b"),
        "same timestamp: ns/a-newer < ns/b"
    );
    let t = RouteTable::from_rules([r("b", &[], prefix("/")), r("a", &[], prefix("/"))]);
    assert_eq!(get(&t, "h", "/").as_deref(), Some("a"));

    let mut r1 = r("same", &[], prefix("/"));
    r1.meta.rule_index = 1;
    r1.meta.rule_name = Some("second".into());
    let mut r0m1 = r("same", &[], prefix("/"));
    r0m1.match_index = 1;
    r0m1.meta.rule_name = Some("first-m1".into());
    let mut r0m0 = r("same", &[], prefix("/"));
    r0m0.meta.rule_name = Some("first-m0".into());
    let t = RouteTable::from_rules([r1.clone(), r0m1.clone(), r0m0]);
    let name = |t: &RouteTable| {
        t.lookup("h", "GET", "/", NO_HEADERS, None)
            .unwrap()
            .rule()
            .meta
            .rule_name
            .clone()
    };
    assert_eq!(name(&t).as_deref(), Some("first-m0"));
    let t = RouteTable::from_rules([r1, r0m1]);
    assert_eq!(name(&t).as_deref(), Some("first-m1"));
}

#[test]
fn grpc_lowered_precedence() {
    let grpc = |name: &str, path: PathMatch, headers: usize| {
        let mut x = r(name, &[], path);
        x.meta.kind = "GRPCRoute".into();
        x.matches.grpc = true;
        x.matches.headers = (0..headers).map(|i| hm(&format!("h{i}"), "1")).collect();
        x
    };
    let t = RouteTable::from_rules([
        grpc("method-only", regex("/[^/]+/Get"), 0),
        grpc("service-only", prefix("/pkg.Svc"), 0),
        grpc("service-headers", prefix("/pkg.Svc"), 1),
        grpc("both", exact("/pkg.Svc/Get"), 0),
    ]);
    let h = [("h0", "1")];
    assert_eq!(
        winner(&t, "h", "POST", "/pkg.Svc/Get", &h, None).as_deref(),
        Some("both")
    );
    assert_eq!(
        winner(&t, "h", "POST", "/pkg.Svc/Put", &h, None).as_deref(),
        Some("service-headers")
    );
    assert_eq!(
        winner(&t, "h", "POST", "/pkg.Svc/Put", NO_HEADERS, None).as_deref(),
        Some("service-only")
    );
    assert_eq!(
        winner(&t, "h", "POST", "/other.Svc/Get", NO_HEADERS, None).as_deref(),
        Some("method-only")
    );
}

#[test]
fn multiple_hostnames_and_invalid_rules() {
    let mut bad = r("bad", &[], regex("(unclosed"));
    bad.meta.rule_index = 3;
    let mut badh = r("badh", &[], prefix("/"));
    badh.matches.headers = vec![hm("bad header", "x")];
    let t = RouteTable::from_rules([r("multi", &["a.com", "*.b.com"], prefix("/")), bad, badh]);
    assert_eq!(t.errors().len(), 2);
    assert_eq!(t.errors()[0].rule_index, 3);
    assert_eq!(get(&t, "a.com", "/").as_deref(), Some("multi"));
    assert_eq!(get(&t, "x.b.com", "/").as_deref(), Some("multi"));
    assert_eq!(get(&t, "c.com", "/"), None);
}

#[test]
fn values_are_attached_and_prefix_exposed() {
    let t = RouteTable::build([(r("x", &[], prefix("/foo/")), 42u32)]);
    let c = t.lookup("h", "GET", "/foo/bar", NO_HEADERS, None).unwrap();
    assert_eq!(*c.value(), 42);
    assert_eq!(c.matched_prefix(), Some("/foo"));
}
