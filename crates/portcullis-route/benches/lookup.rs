//! Lookup cost at 10 vs 10,000 routes (plain `harness = false` bench).
//!
//! Run with `cargo bench -p portcullis-route`. Scenarios: 10k hostnames, 10k
//! exact paths / 10k prefixes / headers on one hostname, and regexes.

use std::hint::black_box;
use std::time::{Duration, Instant};

use portcullis_ir::{
    HttpAction, HttpMatch, HttpRouteRule, PathMatch, RouteMeta, StringMatch, ValueMatch,
};
use portcullis_route::RouteTable;

fn rule(i: usize, hostnames: Vec<String>, path: PathMatch) -> HttpRouteRule {
    HttpRouteRule {
        meta: RouteMeta {
            kind: "HTTPRoute".into(),
            namespace: "bench".into(),
            name: format!("r{i}"),
            creation_timestamp: "2024-01-01T00:00:00Z".into(),
            rule_index: 0,
            rule_name: None,
        },
        hostnames,
        matches: HttpMatch {
            path,
            ..Default::default()
        },
        match_index: 0,
        action: HttpAction::default(),
    }
}

type Scenario = (
    &'static str,
    fn(usize) -> (Vec<HttpRouteRule>, String, String, Vec<(String, String)>),
);

fn hosts(n: usize) -> (Vec<HttpRouteRule>, String, String, Vec<(String, String)>) {
    let rules = (0..n)
        .map(|i| {
            rule(
                i,
                vec![format!("host{i}.example.com")],
                PathMatch::Prefix("/".into()),
            )
        })
        .collect();
    (
        rules,
        format!("host{}.example.com", n / 2),
        "/a/b/c".into(),
        vec![],
    )
}

fn wildcard_hosts(n: usize) -> (Vec<HttpRouteRule>, String, String, Vec<(String, String)>) {
    let rules = (0..n)
        .map(|i| {
            rule(
                i,
                vec![format!("*.d{i}.example.com")],
                PathMatch::Prefix("/".into()),
            )
        })
        .collect();
    (
        rules,
        format!("a.b.d{}.example.com", n / 2),
        "/a/b/c".into(),
        vec![],
    )
}

fn exact_paths(n: usize) -> (Vec<HttpRouteRule>, String, String, Vec<(String, String)>) {
    let rules = (0..n)
        .map(|i| {
            rule(
                i,
                vec!["one.example.com".into()],
                PathMatch::Exact(format!("/svc{i}/x")),
            )
        })
        .collect();
    (
        rules,
        "one.example.com".into(),
        format!("/svc{}/x", n / 2),
        vec![],
    )
}

fn prefix_paths(n: usize) -> (Vec<HttpRouteRule>, String, String, Vec<(String, String)>) {
    let rules = (0..n)
        .map(|i| {
            rule(
                i,
                vec!["one.example.com".into()],
                PathMatch::Prefix(format!("/api/svc{i}")),
            )
        })
        .collect();
    (
        rules,
        "one.example.com".into(),
        format!("/api/svc{}/items/42/detail", n / 2),
        vec![],
    )
}

fn header_matches(n: usize) -> (Vec<HttpRouteRule>, String, String, Vec<(String, String)>) {
    let rules = (0..n)
        .map(|i| {
            let mut r = rule(
                i,
                vec![format!("h{}.example.com", i % 100)],
                PathMatch::Prefix(format!("/p{}", i / 100)),
            );
            r.matches.headers = vec![ValueMatch {
                name: "x-tenant".into(),
                value: StringMatch::Exact(format!("t{i}")),
            }];
            r
        })
        .collect();
    let i = n / 2;
    (
        rules,
        format!("h{}.example.com", i % 100),
        format!("/p{}/x", i / 100),
        vec![("x-tenant".into(), format!("t{i}"))],
    )
}

fn regexes(n: usize) -> (Vec<HttpRouteRule>, String, String, Vec<(String, String)>) {
    // Regex rules spread over hostnames: a lookup only tries the regexes of its host group.
    let rules = (0..n)
        .map(|i| {
            rule(
                i,
                vec![format!("r{}.example.com", i / 10)],
                PathMatch::Regex(format!("/v[0-9]+/item{i}/.*")),
            )
        })
        .collect();
    let i = n / 2;
    (
        rules,
        format!("r{}.example.com", i / 10),
        format!("/v2/item{i}/abc"),
        vec![],
    )
}

fn measure(table: &RouteTable, host: &str, path: &str, headers: &[(String, String)]) -> Duration {
    let iters = 200_000u32;
    assert!(
        table.lookup(host, "GET", path, headers, None).is_some(),
        "bench request must match"
    );
    let start = Instant::now();
    for _ in 0..iters {
        black_box(table.lookup(black_box(host), "GET", black_box(path), headers, None));
    }
    start.elapsed() / iters
}

fn main() {
    let scenarios: [Scenario; 6] = [
        ("exact hostnames", hosts),
        ("wildcard hostnames", wildcard_hosts),
        ("exact paths, one host", exact_paths),
        ("prefix paths, one host", prefix_paths),
        ("header matches", header_matches),
        ("regex paths (10 per host)", regexes),
    ];
    println!(
        "{:<28} {:>12} {:>12}",
        "scenario", "10 routes", "10k routes"
    );
    for (name, make) in scenarios {
        let mut cols = Vec::new();
        for n in [10, 10_000] {
            let (rules, host, path, headers) = make(n);
            let table = RouteTable::from_rules(rules);
            cols.push(measure(&table, &host, &path, &headers));
        }
        println!("{:<28} {:>10.0?} {:>10.0?}", name, cols[0], cols[1]);
    }
}
