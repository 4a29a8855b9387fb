//! Route matching (`portcullis_route`): path canonicalisation is idempotent,
//! and the indexed lookup agrees with a linear scan: it finds a rule exactly
//! when some compiled rule matches (hostname, path, method, headers,
//! query), and the rule it finds matches.
#![no_main]

use libfuzzer_sys::arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use portcullis_ir::{
    HttpAction, HttpMatch, HttpRouteRule, PathMatch, RouteMeta, StringMatch, ValueMatch,
};
use portcullis_route::{RouteTable, canonical_path, hostname_matches, normalize_host};

const HOSTS: &[&str] = &[
    "a.example.com",
    "*.example.com",
    "example.com",
    "*.com",
    "b.a.example.com",
];
const METHODS: &[&str] = &["GET", "POST", "PUT"];

fn pick<'a>(u: &mut Unstructured<'_>, from: &[&'a str]) -> Result<&'a str> {
    Ok(from[u.choose_index(from.len())?])
}

/// A path as translation stores it: from the fuzzer or from a few segments.
fn path(u: &mut Unstructured<'_>) -> Result<String> {
    if u.arbitrary()? {
        let s: String = u.arbitrary()?;
        return Ok(format!("/{}", s.trim_start_matches('/')));
    }
    let mut p = String::new();
    for _ in 0..u.int_in_range(0..=3)? {
        p.push('/');
        p.push_str(pick(u, &["a", "b", "ab", "%61", ".", "..", ""])?);
    }
    Ok(if p.is_empty() { "/".into() } else { p })
}

fn rule(u: &mut Unstructured<'_>, i: usize) -> Result<HttpRouteRule> {
    let p = path(u)?;
    let path = match u.int_in_range(0..=2)? {
        0 => PathMatch::Exact(p),
        1 => {
            let t = p.trim_end_matches('/');
            PathMatch::Prefix(if t.is_empty() { "/".into() } else { t.into() })
        }
        _ => PathMatch::Regex(u.arbitrary()?),
    };
    let mut headers = vec![];
    if u.arbitrary()? {
        headers.push(ValueMatch {
            name: "x-h".into(),
            value: if u.arbitrary()? {
                StringMatch::Exact(u.arbitrary()?)
            } else {
                StringMatch::Regex(u.arbitrary()?)
            },
        });
    }
    let mut query_params = vec![];
    if u.arbitrary()? {
        query_params.push(ValueMatch {
            name: "q".into(),
            value: StringMatch::Exact(u.arbitrary()?),
        });
    }
    let method = if u.arbitrary()? {
        Some(pick(u, METHODS)?.to_string())
    } else {
        None
    };
    let hostnames = (0..u.int_in_range(0..=2)?)
        .map(|_| pick(u, HOSTS).map(str::to_string))
        .collect::<Result<_>>()?;
    Ok(HttpRouteRule {
        meta: RouteMeta {
            kind: "HTTPRoute".into(),
            namespace: "ns".into(),
            name: format!("r{i}"),
            creation_timestamp: format!("2024-01-01T00:00:{:02}Z", u.int_in_range(0..=59)?),
            rule_index: 0,
            rule_name: None,
        },
        hostnames,
        matches: HttpMatch {
            path,
            method,
            headers,
            query_params,
            grpc: false,
        },
        match_index: 0,
        action: HttpAction::default(),
    })
}

fn check(data: &[u8]) -> Result<()> {
    let mut u = Unstructured::new(data);
    let rules = (0..u.int_in_range(0..=8)?)
        .map(|i| rule(&mut u, i))
        .collect::<Result<Vec<_>>>()?;
    let table = RouteTable::from_rules(rules);
    let raw_path: String = if u.arbitrary()? {
        u.arbitrary()?
    } else {
        path(&mut u)?
    };
    let host_raw = if u.arbitrary()? {
        u.arbitrary::<String>()?
    } else {
        pick(&mut u, HOSTS)?.replace('*', "x")
    };
    let method = pick(&mut u, METHODS)?;
    let headers: Vec<(String, String)> = if u.arbitrary()? {
        vec![("x-h".into(), u.arbitrary()?)]
    } else {
        vec![]
    };
    let query: Option<String> = u.arbitrary()?;
    let Ok(path) = canonical_path(&raw_path) else {
        return Ok(());
    };
    let again = canonical_path(&path).expect("a canonical path is valid");
    assert_eq!(again, path, "canonical_path is idempotent");
    let host = normalize_host(&host_raw);
    let found = table.lookup(&host, method, &path, &headers, query.as_deref());
    let any = table.rules().iter().any(|r| {
        let host_ok = r.rule().hostnames.is_empty()
            || r.rule()
                .hostnames
                .iter()
                .any(|h| hostname_matches(h, &host));
        host_ok && r.matches(method, &path, &headers, query.as_deref())
    });
    if let Some(r) = found {
        assert!(
            r.matches(method, &path, &headers, query.as_deref()),
            "found a rule that does not match"
        );
    }
    assert_eq!(found.is_some(), any, "lookup disagrees with a linear scan");
    Ok(())
}

fuzz_target!(|data: &[u8]| {
    let _ = check(data);
});
