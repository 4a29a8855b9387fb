//! `portcullis validate`: every problem that would leave configuration
//! unserved, with its file and line, as text (grouped by file, one line per
//! problem, a summary) and as JSON; exit code 1 when there is any.

use std::path::Path;
use std::process::{Command, Output};

fn validate(dir: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_portcullis"))
        .args(["validate", "--config"])
        .arg(dir)
        .args(extra)
        .output()
        .expect("run portcullis validate")
}

/// The line of the first line of `text` containing `needle`, 1-based.
fn line_of(text: &str, needle: &str) -> usize {
    text.lines()
        .position(|l| l.contains(needle))
        .unwrap_or_else(|| panic!("{needle:?} not in the file"))
        + 1
}

/// The line where the object holding `needle` starts (its `apiVersion`).
fn object_line(text: &str, needle: &str) -> usize {
    let lines: Vec<&str> = text.lines().collect();
    let at = line_of(text, needle) - 1;
    (0..=at)
        .rev()
        .find(|&i| lines[i].starts_with("apiVersion:"))
        .expect("an object start")
        + 1
}

const GATEWAYS: &str = r#"apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: portcullis}
spec: {controllerName: portcullis.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: portcullis
  listeners:
    - {name: http, port: 80, protocol: HTTP}
    - {name: tcp, port: 80, protocol: TCP}
    - {name: web, port: 8080, protocol: HTTP}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: orphan, namespace: default}
spec:
  gatewayClassName: nginx
  listeners: [{name: http, port: 80, protocol: HTTP}]
"#;

const ROUTES: &str = r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: regex, namespace: default}
spec:
  parentRefs: [{name: gw, sectionName: web}]
  rules:
    - matches: [{path: {type: RegularExpression, value: "/(unclosed"}}]
      backendRefs: [{name: svc, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: missing-backend, namespace: default}
spec:
  parentRefs: [{name: gw, sectionName: web}]
  rules:
    - backendRefs: [{name: nowhere, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: lost, namespace: default}
spec:
  parentRefs: [{name: no-such-gateway}]
  rules:
    - backendRefs: [{name: svc, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: typo, namespace: default}
spec:
  parentRefs: [{name: gw, sectionName: web}]
  rules:
    - backendRefz: [{name: svc, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: svc, namespace: default}
spec:
  clusterIP: 10.96.0.10
  ports: [{port: 80}]
"#;

#[test]
fn validate_reports_every_problem_that_leaves_configuration_unserved() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gateways.yaml"), GATEWAYS).unwrap();
    std::fs::write(dir.path().join("routes.yaml"), ROUTES).unwrap();
    let out = validate(dir.path(), &[]);
    let text =
        String::from_utf8_lossy(&out.stdout).replace(&format!("{}/", dir.path().display()), "");
    assert_eq!(out.status.code(), Some(1), "{text}");

    let g = |n| object_line(GATEWAYS, n);
    let r = |n| object_line(ROUTES, n);
    let gw = g("name: gw,");
    let expected = [
        format!(
            "gateways.yaml:{gw}: Gateway default/gw: listener \"http\": Conflicted=True (ProtocolConflict): protocol HTTP cannot share port 80 with listener \"tcp\" (TCP); conflicted listeners are not served"
        ),
        format!(
            "gateways.yaml:{gw}: Gateway default/gw: listener \"tcp\": Conflicted=True (ProtocolConflict): protocol TCP cannot share port 80 with listener \"http\" (HTTP); conflicted listeners are not served"
        ),
        format!(
            "gateways.yaml:{}: Gateway default/orphan: gatewayClassName \"nginx\": no GatewayClass \"nginx\" exists, so this Gateway is not served",
            g("name: orphan")
        ),
        format!(
            "routes.yaml:{}: HTTPRoute default/regex: parentRef Gateway gw (section web): Accepted=False (UnsupportedValue): ",
            r("name: regex")
        ),
        format!(
            "routes.yaml:{}: HTTPRoute default/missing-backend: parentRef Gateway gw (section web): ResolvedRefs=False (BackendNotFound): ",
            r("name: missing-backend")
        ),
        format!(
            "routes.yaml:{}: HTTPRoute default/lost: parentRef Gateway default/no-such-gateway: Gateway default/no-such-gateway does not exist, so this is not served",
            r("name: lost")
        ),
        format!(
            "routes.yaml:{}: HTTPRoute default/typo: spec.rules[0].backendRefz: unknown field (did you mean \"backendRefs\"?)",
            line_of(ROUTES, "backendRefz")
        ),
    ];
    // One line per problem: multi-line messages (a regex parser's) are joined.
    assert!(
        text.lines().any(|l| l.contains("invalid path regular expression \"/(unclosed\": regex parse error: /(unclosed ^ error: unclosed group")),
        "{text}"
    );
    for e in &expected {
        assert!(
            text.lines().any(|l| l.starts_with(e.as_str())),
            "missing line starting with\n  {e}\nin\n{text}"
        );
    }
    // Grouped by file: every gateways.yaml line before every routes.yaml line,
    // one blank line between the groups, then the summary.
    let lines: Vec<&str> = text.lines().collect();
    let first_route = lines
        .iter()
        .position(|l| l.starts_with("routes.yaml"))
        .unwrap();
    assert_eq!(lines[first_route - 1], "", "{text}");
    assert!(
        lines[..first_route - 1]
            .iter()
            .all(|l| l.starts_with("gateways.yaml")),
        "{text}"
    );
    let summary = lines.last().unwrap();
    assert!(
        summary.ends_with(
            ": 7 problems in 2 files (1 invalid object, 6 not served); 7 objects loaded"
        ),
        "{summary}"
    );

    // The same as JSON.
    let out = validate(dir.path(), &["-o", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["valid"], false);
    let problems = doc["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 7, "{doc:#}");
    let typo = problems
        .iter()
        .find(|p| p["name"] == "typo")
        .expect("the typo is reported");
    assert_eq!(typo["source"], "schema");
    assert_eq!(typo["kind"], "HTTPRoute");
    assert_eq!(typo["namespace"], "default");
    assert_eq!(typo["field"], "spec.rules[0].backendRefz");
    assert_eq!(typo["line"], line_of(ROUTES, "backendRefz"));
    let missing = problems
        .iter()
        .find(|p| p["name"] == "missing-backend")
        .unwrap();
    assert_eq!(missing["source"], "translation");
    assert_eq!(missing["condition"], "ResolvedRefs");
    assert_eq!(missing["status"], "False");
    assert_eq!(missing["reason"], "BackendNotFound");
    assert!(missing["file"].as_str().unwrap().ends_with("routes.yaml"));
}

#[test]
fn validate_passes_a_configuration_that_is_served_entirely() {
    let dir = tempfile::tempdir().unwrap();
    let gateways = GATEWAYS
        .replace("    - {name: tcp, port: 80, protocol: TCP}\n", "")
        .replace("gatewayClassName: nginx", "gatewayClassName: portcullis")
        .replace(
            "  listeners: [{name: http, port: 80, protocol: HTTP}]",
            "  listeners: [{name: http, port: 81, protocol: HTTP}]",
        );
    std::fs::write(dir.path().join("gateways.yaml"), gateways).unwrap();
    let routes = r#"apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: ok, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
    - backendRefs: [{name: svc, port: 80}]
---
apiVersion: v1
kind: Service
metadata: {name: svc, namespace: default}
spec:
  clusterIP: 10.96.0.10
  ports: [{port: 80}]
"#;
    std::fs::write(dir.path().join("routes.yaml"), routes).unwrap();
    let out = validate(dir.path(), &[]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(
        text.ends_with("5 objects, no problems: everything is valid and would be served\n"),
        "{text}"
    );
    let out = validate(dir.path(), &["-o", "json"]);
    assert_eq!(out.status.code(), Some(0));
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(doc["valid"], true);
    assert_eq!(doc["problems"], serde_json::json!([]));
}

#[test]
fn field_validation_warn_drops_unknown_fields_with_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("ns.yaml"),
        "apiVersion: v1\nkind: Namespace\nmetadata: {name: n, labelz: {a: b}}\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\n",
    )
    .unwrap();
    let strict = validate(dir.path(), &[]);
    assert_eq!(strict.status.code(), Some(1));
    let text = String::from_utf8_lossy(&strict.stdout);
    assert!(
        text.contains(
            "ns.yaml:3: Namespace n: metadata.labelz: unknown field (did you mean \"labels\"?)"
        ),
        "{text}"
    );
    assert!(text.contains("ns.yaml:6: Deployment d: kind: no matches for kind \"Deployment\" in version \"apps/v1\""), "{text}");

    let warn = validate(dir.path(), &["--field-validation", "Warn"]);
    assert_eq!(
        warn.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&warn.stdout)
    );
    let err = String::from_utf8_lossy(&warn.stderr);
    assert!(
        err.contains("metadata.labelz: unknown field, ignored"),
        "{err}"
    );
    assert!(
        err.contains("skipping unsupported kind apps/v1 Deployment"),
        "{err}"
    );

    let ignore = validate(dir.path(), &["--field-validation", "ignore"]);
    assert_eq!(ignore.status.code(), Some(0));
    assert!(
        ignore.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&ignore.stderr)
    );

    let bad = validate(dir.path(), &["--field-validation", "Lax"]);
    assert_eq!(bad.status.code(), Some(2));
}
