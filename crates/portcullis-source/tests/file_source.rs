//! FileSource: metadata bookkeeping and last-good versions across reloads.

use std::path::Path;

use portcullis_source::{FileSource, Reload};
use portcullis_store::{Kind, ObjectKey};
use serde_json::Value;

fn route(name: &str, path: &str, extra_meta: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: {name}\n{extra_meta}spec:\n  rules:\n  - matches:\n    - path:\n        type: PathPrefix\n        value: {path}\n"
    )
}

fn get(r: &Reload, kind: Kind, ns: &str, name: &str) -> Option<Value> {
    r.snapshot
        .get(kind, &ObjectKey::new(ns, name))
        .map(|o| o.to_json())
}

fn meta(v: &Value, field: &str) -> Value {
    v["metadata"][field].clone()
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).unwrap();
}

fn relative_errors(dir: &Path, r: &Reload) -> Vec<String> {
    r.errors
        .iter()
        .map(|e| e.to_string().replace(&format!("{}/", dir.display()), ""))
        .collect()
}

#[test]
fn generation_uid_timestamp_and_resource_version() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.yaml", &route("foo", "/a", ""));
    let mut src = FileSource::new(dir.path());

    let r1 = src.reload();
    assert!(r1.errors.is_empty(), "{:?}", r1.errors);
    assert!(r1.changed);
    let v1 = get(&r1, Kind::HTTPRoute, "default", "foo").unwrap();
    assert_eq!(meta(&v1, "generation"), 1);
    let uid = meta(&v1, "uid");
    assert_eq!(uid.as_str().unwrap().len(), 36, "{uid}");
    let created = meta(&v1, "creationTimestamp");
    let ts = created.as_str().unwrap();
    assert!(
        chrono::DateTime::parse_from_rfc3339(ts).is_ok() && ts.ends_with('Z') && !ts.contains('.'),
        "{ts}"
    );
    let rv1 = meta(&v1, "resourceVersion");

    // Nothing changed.
    let r2 = src.reload();
    assert!(!r2.changed);
    assert_eq!(r2.snapshot, r1.snapshot);

    // Metadata only: same generation, new resourceVersion.
    write(
        dir.path(),
        "a.yaml",
        &route("foo", "/a", "  labels:\n    team: a\n"),
    );
    let r3 = src.reload();
    assert!(r3.changed);
    let v3 = get(&r3, Kind::HTTPRoute, "default", "foo").unwrap();
    assert_eq!(meta(&v3, "generation"), 1);
    assert_eq!(meta(&v3, "uid"), uid);
    assert_eq!(meta(&v3, "creationTimestamp"), created);
    assert_ne!(meta(&v3, "resourceVersion"), rv1);
    assert_eq!(v3["metadata"]["labels"]["team"], "a");

    // Spec change: generation 2.
    write(
        dir.path(),
        "a.yaml",
        &route("foo", "/b", "  labels:\n    team: a\n"),
    );
    let r4 = src.reload();
    assert!(r4.changed);
    let v4 = get(&r4, Kind::HTTPRoute, "default", "foo").unwrap();
    assert_eq!(meta(&v4, "generation"), 2);
    assert_eq!(meta(&v4, "uid"), uid);
    let rv4: u64 = meta(&v4, "resourceVersion")
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let rv3: u64 = meta(&v3, "resourceVersion")
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(rv4 > rv3);

    // Removed, then added again: forgotten, starts over.
    std::fs::remove_file(dir.path().join("a.yaml")).unwrap();
    let r5 = src.reload();
    assert!(r5.changed);
    assert!(r5.snapshot.is_empty());
    write(dir.path(), "a.yaml", &route("foo", "/b", ""));
    let r6 = src.reload();
    let v6 = get(&r6, Kind::HTTPRoute, "default", "foo").unwrap();
    assert_eq!(meta(&v6, "generation"), 1);
    assert_ne!(meta(&v6, "uid"), uid);
}

#[test]
fn uid_and_creation_timestamp_from_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let m = "  uid: 0f0e0d0c-0000-4000-8000-000000000001\n  creationTimestamp: \"2024-05-01T10:00:00Z\"\n  generation: 7\n  resourceVersion: \"99\"\n";
    write(dir.path(), "a.yaml", &route("foo", "/a", m));
    let mut src = FileSource::new(dir.path());
    let r = src.reload();
    let v = get(&r, Kind::HTTPRoute, "default", "foo").unwrap();
    assert_eq!(meta(&v, "uid"), "0f0e0d0c-0000-4000-8000-000000000001");
    assert_eq!(meta(&v, "creationTimestamp"), "2024-05-01T10:00:00Z");
    // Server-set fields are the source's, not the file's.
    assert_eq!(meta(&v, "generation"), 1);
    assert_eq!(meta(&v, "resourceVersion"), "1");
}

#[test]
fn invalid_object_keeps_its_last_good_version() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.yaml", &route("foo", "/a", ""));
    write(dir.path(), "b.yaml", &route("bar", "/x", ""));
    let mut src = FileSource::new(dir.path());
    let r1 = src.reload();
    assert!(r1.errors.is_empty());
    let foo1 = get(&r1, Kind::HTTPRoute, "default", "foo").unwrap();

    // foo breaks, bar changes: bar moves on, foo stays as it was.
    write(dir.path(), "a.yaml", &route("foo", "nope", ""));
    write(dir.path(), "b.yaml", &route("bar", "/y", ""));
    let r2 = src.reload();
    assert_eq!(
        relative_errors(dir.path(), &r2),
        [
            "a.yaml:8: HTTPRoute default/foo: spec.rules[0].matches[0].path: value must be an absolute path and start with '/' when type one of ['Exact', 'PathPrefix']"
        ]
    );
    assert!(r2.changed);
    assert_eq!(get(&r2, Kind::HTTPRoute, "default", "foo").unwrap(), foo1);
    let bar = get(&r2, Kind::HTTPRoute, "default", "bar").unwrap();
    assert_eq!(bar["spec"]["rules"][0]["matches"][0]["path"]["value"], "/y");
    assert_eq!(meta(&bar, "generation"), 2);

    // Still broken, nothing else changed.
    let r3 = src.reload();
    assert_eq!(r3.errors.len(), 1);
    assert!(!r3.changed);

    // Fixed: the new version, generation 2.
    write(dir.path(), "a.yaml", &route("foo", "/c", ""));
    let r4 = src.reload();
    assert!(r4.errors.is_empty());
    let foo4 = get(&r4, Kind::HTTPRoute, "default", "foo").unwrap();
    assert_eq!(
        foo4["spec"]["rules"][0]["matches"][0]["path"]["value"],
        "/c"
    );
    assert_eq!(meta(&foo4, "generation"), 2);
    assert_eq!(meta(&foo4, "uid"), meta(&foo1, "uid"));
}

#[test]
fn unparsable_file_keeps_its_objects() {
    let dir = tempfile::tempdir().unwrap();
    let ns = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team\n---\n";
    write(
        dir.path(),
        "a.yaml",
        &format!("{ns}{}", route("foo", "/a", "")),
    );
    let mut src = FileSource::new(dir.path());
    let r1 = src.reload();
    assert_eq!(r1.snapshot.len(), 2);

    write(
        dir.path(),
        "a.yaml",
        &format!("{ns}{}\n  broken: [\n", route("foo", "/b", "")),
    );
    let r2 = src.reload();
    let errors = relative_errors(dir.path(), &r2);
    assert_eq!(errors.len(), 1);
    assert_eq!(
        errors,
        ["a.yaml:17: invalid YAML: unclosed bracket '[' (column 11)"]
    );
    assert_eq!(r2.snapshot, r1.snapshot);
    assert!(!r2.changed);
}

#[test]
fn unnamed_invalid_object_keeps_the_one_at_its_place() {
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "a.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team\n",
    );
    let mut src = FileSource::new(dir.path());
    let r1 = src.reload();
    write(
        dir.path(),
        "a.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  labels: {a: b}\n",
    );
    let r2 = src.reload();
    assert_eq!(
        relative_errors(dir.path(), &r2),
        ["a.yaml:3: Namespace: metadata.name: required value is missing"]
    );
    assert_eq!(r2.snapshot, r1.snapshot);
}

#[test]
fn transition_rules_apply_on_reload() {
    let dir = tempfile::tempdir().unwrap();
    let class = |controller: &str, description: &str| {
        format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata:\n  name: pc\nspec:\n  controllerName: {controller}\n  description: {description}\n"
        )
    };
    write(dir.path(), "c.yaml", &class("example.com/a", "one"));
    let mut src = FileSource::new(dir.path());
    let r1 = src.reload();
    assert!(r1.errors.is_empty());

    // The controller name is immutable: the update is refused.
    write(dir.path(), "c.yaml", &class("example.com/b", "two"));
    let r2 = src.reload();
    assert_eq!(
        relative_errors(dir.path(), &r2),
        ["c.yaml:6: GatewayClass pc: spec.controllerName: Value is immutable"]
    );
    assert_eq!(
        get(&r2, Kind::GatewayClass, "", "pc").unwrap()["spec"]["controllerName"],
        "example.com/a"
    );

    // Other fields may change.
    write(dir.path(), "c.yaml", &class("example.com/a", "two"));
    let r3 = src.reload();
    assert!(r3.errors.is_empty(), "{:?}", r3.errors);
    let v = get(&r3, Kind::GatewayClass, "", "pc").unwrap();
    assert_eq!(v["spec"]["description"], "two");
    assert_eq!(meta(&v, "generation"), 2);

    // A pure load is a create: no transition rule.
    assert!(portcullis_source::load_path(dir.path()).errors.is_empty());
    // Once removed, it may come back with another controller.
    std::fs::remove_file(dir.path().join("c.yaml")).unwrap();
    src.reload();
    write(dir.path(), "c.yaml", &class("example.com/b", "two"));
    assert!(src.reload().errors.is_empty());
}

#[test]
fn duplicates_first_wins() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.yaml", &route("foo", "/a", ""));
    write(dir.path(), "b.yaml", &route("foo", "/b", ""));
    let mut src = FileSource::new(dir.path());
    let r = src.reload();
    let errors = relative_errors(dir.path(), &r);
    assert_eq!(
        errors,
        [
            "b.yaml:1: HTTPRoute default/foo: duplicate object: already defined at a.yaml:1; this one is ignored"
        ]
    );
    let v = get(&r, Kind::HTTPRoute, "default", "foo").unwrap();
    assert_eq!(v["spec"]["rules"][0]["matches"][0]["path"]["value"], "/a");
}

#[test]
fn single_file_source() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("only.yaml");
    std::fs::write(&file, route("foo", "/a", "  namespace: web\n")).unwrap();
    let mut src = FileSource::new(&file);
    let r = src.reload();
    assert!(r.errors.is_empty());
    assert!(get(&r, Kind::HTTPRoute, "web", "foo").is_some());
}

#[test]
fn unreadable_path_keeps_everything() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("config");
    std::fs::create_dir(&root).unwrap();
    write(&root, "a.yaml", &route("foo", "/a", ""));
    let mut src = FileSource::new(&root);
    let r1 = src.reload();
    assert_eq!(r1.snapshot.len(), 1);
    std::fs::remove_dir_all(&root).unwrap();
    let r2 = src.reload();
    assert_eq!(r2.errors.len(), 1);
    assert!(
        r2.errors[0].to_string().contains("config: cannot read: "),
        "{}",
        r2.errors[0]
    );
    assert_eq!(r2.snapshot, r1.snapshot);
    assert!(!r2.changed);
}

#[test]
fn an_edit_with_an_unknown_field_applies_nothing_and_the_last_good_version_serves() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "a.yaml", &route("foo", "/a", ""));
    let mut src = FileSource::new(dir.path());
    let r1 = src.reload();
    assert!(r1.errors.is_empty(), "{:?}", r1.errors);

    // The path changes, and a typo sneaks into the same edit.
    let edited =
        route("foo", "/b", "").replace("  - matches:", "  - backendRefz: []\n    matches:");
    write(dir.path(), "a.yaml", &edited);
    let r2 = src.reload();
    assert_eq!(
        relative_errors(dir.path(), &r2),
        [
            "a.yaml:7: HTTPRoute default/foo: spec.rules[0].backendRefz: unknown field (did you mean \"backendRefs\"?)"
        ]
    );
    let served = get(&r2, Kind::HTTPRoute, "default", "foo").unwrap();
    assert_eq!(
        served["spec"]["rules"][0]["matches"][0]["path"]["value"], "/a",
        "the last good version keeps serving; the edit's other change is not applied"
    );

    // The same edit with Warn: the field is dropped, the rest applies.
    let mut warn =
        FileSource::new(dir.path()).with_field_validation(portcullis_source::FieldValidation::Warn);
    let r3 = warn.reload();
    assert!(r3.errors.is_empty(), "{:?}", r3.errors);
    assert_eq!(r3.warnings.len(), 1, "{:?}", r3.warnings);
    let served = get(&r3, Kind::HTTPRoute, "default", "foo").unwrap();
    assert_eq!(
        served["spec"]["rules"][0]["matches"][0]["path"]["value"],
        "/b"
    );
}
