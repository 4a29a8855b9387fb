//! `translate_with` and its `Memo`: same output as `translate`, and a change
//! to one route recomputes only that route.

use std::path::Path;

use portcullis_source::FileSource;
use portcullis_store::{Kind, ObjectKey, ObjectRef};
use portcullis_translate::{Input, Memo, Options, Output, translate, translate_with};

const BASE: &str = "apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: pc}
spec: {controllerName: portcullis.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: pc
  listeners: [{name: http, port: 8080, protocol: HTTP}]
";

const SERVICE: &str = "apiVersion: v1
kind: Service
metadata: {name: svc, namespace: default}
spec: {ports: [{name: http, port: 80}]}
";

fn route(name: &str, path: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: default}}\n\
         spec:\n  parentRefs: [{{name: gw}}]\n  rules:\n  - matches: [{{path: {{type: PathPrefix, value: {path}}}}}]\n    backendRefs: [{{name: svc, port: 80}}]\n"
    )
}

/// Reload, translate with and without the memo, check they agree.
fn step(src: &mut FileSource, memo: &mut Memo) -> Output {
    let r = src.reload();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let options = Options::default();
    let input = Input {
        snapshot: &r.snapshot,
        options: &options,
        previous_addresses: Default::default(),
        bind_errors: Default::default(),
    };
    let with = translate_with(&input, memo);
    assert_eq!(with, translate(&input), "the memo changed the output");
    with
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

fn resolved(out: &Output, name: &str) -> Option<String> {
    let r = ObjectRef {
        kind: Kind::HTTPRoute,
        key: ObjectKey::new("default", name),
    };
    let v = serde_json::to_value(out.statuses.get(&r)?).unwrap();
    v["parents"][0]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "ResolvedRefs")
        .map(|c| c["status"].as_str().unwrap().to_string())
}

fn rule_paths(out: &Output) -> Vec<String> {
    let mut v: Vec<String> = out.config.ports[0].listeners[0]
        .http_routes
        .iter()
        .map(|r| format!("{}:{:?}", r.meta.name, r.matches.path))
        .collect();
    v.sort();
    v
}

#[test]
fn one_route_changed_recomputes_one_route_and_references_invalidate() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "base.yaml", BASE);
    write(dir.path(), "svc.yaml", SERVICE);
    for (n, p) in [("a", "/a"), ("b", "/b"), ("c", "/c")] {
        write(dir.path(), &format!("{n}.yaml"), &route(n, p));
    }
    let mut src = FileSource::new(dir.path());
    let mut memo = Memo::new();
    let out = step(&mut src, &mut memo);
    // A view and a build per route.
    assert_eq!(memo.misses(), 6);
    assert_eq!(resolved(&out, "a").as_deref(), Some("True"));

    // Nothing changed: nothing recomputed.
    step(&mut src, &mut memo);
    assert_eq!(memo.misses(), 6);

    // One route changed: only its view and build are recomputed.
    write(dir.path(), "a.yaml", &route("a", "/a2"));
    let out = step(&mut src, &mut memo);
    assert_eq!(memo.misses(), 8);
    assert!(
        rule_paths(&out).iter().any(|p| p.contains("/a2")),
        "{:?}",
        rule_paths(&out)
    );

    // The referenced Service removed: every build is redone, statuses follow.
    std::fs::remove_file(dir.path().join("svc.yaml")).unwrap();
    let out = step(&mut src, &mut memo);
    assert_eq!(memo.misses(), 11);
    for n in ["a", "b", "c"] {
        assert_eq!(resolved(&out, n).as_deref(), Some("False"), "{n}");
    }

    // A route file deleted: its rules and status are gone.
    std::fs::remove_file(dir.path().join("b.yaml")).unwrap();
    let out = step(&mut src, &mut memo);
    assert_eq!(memo.misses(), 11);
    assert_eq!(resolved(&out, "b"), None);
    assert!(!rule_paths(&out).iter().any(|p| p.starts_with("b:")));

    // A new source over the same files: every object is created anew (new
    // uid) and its resourceVersion counter restarts, so versions collide
    // with the old ones. Entries are keyed by uid and resourceVersion
    // together: both routes are recomputed (a view and a build each), and
    // `step` checks the output equals a translation without the memo.
    let mut fresh = FileSource::new(dir.path());
    step(&mut fresh, &mut memo);
    assert_eq!(memo.misses(), 15);
}
