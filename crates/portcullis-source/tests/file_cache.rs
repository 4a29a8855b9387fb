//! `FileSource` reuses the processed objects of unchanged files: every kind of
//! rewrite must still be seen, and an unchanged tree reloads as unchanged.

use std::sync::Arc;

use portcullis_source::FileSource;
use portcullis_store::{Kind, ObjectKey};

fn route(name: &str, host: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: default}}\n\
         spec:\n  parentRefs: [{{name: gw}}]\n  hostnames: [{host}]\n"
    )
}

fn hostnames(src: &mut FileSource) -> (bool, Vec<String>) {
    let r = src.reload();
    assert!(r.errors.is_empty(), "{:?}", r.errors);
    let mut hosts: Vec<String> = ["a", "b"]
        .iter()
        .filter_map(|n| {
            r.snapshot
                .get(Kind::HTTPRoute, &ObjectKey::new("default", *n))
        })
        .flat_map(|o| {
            o.to_json()
                .pointer("/spec/hostnames")
                .and_then(|h| h.as_array().cloned())
                .unwrap_or_default()
        })
        .filter_map(|h| h.as_str().map(str::to_string))
        .collect();
    hosts.sort();
    (r.changed, hosts)
}

#[test]
fn rewrites_of_the_same_size_in_the_same_instant_renames_and_removals_are_seen() {
    let dir = tempfile::tempdir().unwrap();
    let a = dir.path().join("a.yaml");
    let b = dir.path().join("b.yaml");
    std::fs::write(&a, route("a", "a1.example")).unwrap();
    std::fs::write(&b, route("b", "b1.example")).unwrap();
    let mut src = FileSource::new(dir.path());
    assert_eq!(
        hostnames(&mut src),
        (true, vec!["a1.example".into(), "b1.example".into()])
    );
    // Unchanged: nothing new.
    assert!(
        !hostnames(&mut src).0,
        "unchanged files reload as unchanged"
    );
    // In place, same length, immediately.
    std::fs::write(&a, route("a", "a2.example")).unwrap();
    assert_eq!(
        hostnames(&mut src),
        (true, vec!["a2.example".into(), "b1.example".into()])
    );
    // Renamed over (a new inode), same length again.
    let tmp = dir.path().join(".b.tmp");
    std::fs::write(&tmp, route("b", "b2.example")).unwrap();
    std::fs::rename(&tmp, &b).unwrap();
    assert_eq!(
        hostnames(&mut src),
        (true, vec!["a2.example".into(), "b2.example".into()])
    );
    // Removed, then written back unchanged.
    std::fs::remove_file(&b).unwrap();
    assert_eq!(hostnames(&mut src), (true, vec!["a2.example".into()]));
    std::fs::write(&b, route("b", "b2.example")).unwrap();
    assert_eq!(
        hostnames(&mut src),
        (true, vec!["a2.example".into(), "b2.example".into()])
    );
    assert!(
        !hostnames(&mut src).0,
        "unchanged files reload as unchanged"
    );
}

#[test]
fn unchanged_objects_are_shared_across_reloads_and_duplicates_resolve_again() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.yaml"), dir.path().join("b.yaml"));
    std::fs::write(&a, route("a", "a1.example")).unwrap();
    std::fs::write(&b, route("b", "b1.example")).unwrap();
    let mut src = FileSource::new(dir.path());
    let r1 = src.reload();
    std::fs::write(&a, route("a", "a2.example")).unwrap();
    let r2 = src.reload();
    assert!(r2.changed);
    let (ka, kb) = (
        ObjectKey::new("default", "a"),
        ObjectKey::new("default", "b"),
    );
    // The untouched route is the very same object; the rewritten one is new.
    assert!(Arc::ptr_eq(
        &r1.snapshot.http_routes[&kb],
        &r2.snapshot.http_routes[&kb]
    ));
    assert!(!Arc::ptr_eq(
        &r1.snapshot.http_routes[&ka],
        &r2.snapshot.http_routes[&ka]
    ));
    // b.yaml now also defines route "a": a duplicate of a.yaml's (first wins).
    std::fs::write(
        &b,
        format!(
            "{}---\n{}",
            route("b", "b1.example"),
            route("a", "dup.example")
        ),
    )
    .unwrap();
    let r3 = src.reload();
    assert_eq!(r3.errors.len(), 1, "{:?}", r3.errors);
    assert!(Arc::ptr_eq(
        &r2.snapshot.http_routes[&ka],
        &r3.snapshot.http_routes[&ka]
    ));
    // a.yaml removed: b.yaml's "a" (cached as a duplicate) is read again and served.
    std::fs::remove_file(&a).unwrap();
    let (changed, hosts) = hostnames(&mut src);
    assert!(changed);
    assert_eq!(
        hosts,
        vec!["b1.example".to_string(), "dup.example".to_string()]
    );
}
