//! Hostile configurations and hostile requests against `portcullis run`
//! (issue "Security hardening"): nothing a route author or a client writes
//! can split a request on the wire, and ambiguous requests are refused.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use common::*;

/// The request-splitting payload of the report: a path that ends the request
/// line and starts a second request.
const SPLIT: &str = "/x HTTP/1.1\\r\\nX-Injected: 1\\r\\n\\r\\nGET /y";
/// A header value that starts a second header.
const HEADER_SPLIT: &str = "v\\r\\nX-Injected: 1";

/// Where a hostile value is stopped.
#[derive(Clone, Copy, Debug, PartialEq)]
enum StoppedBy {
    /// The CRD schema (a pattern or CEL rule): the object is refused at load.
    Schema,
    /// Translation: the rule is dropped, the route says why.
    Translate,
}

/// One HTTPRoute `name` on `prefix` with `filter` (a YAML flow mapping).
fn route(name: &str, prefix: &str, filter: &str) -> String {
    let backends = if filter.contains("RequestRedirect") {
        ""
    } else {
        "\n      backendRefs: [{name: svc, port: 80}]"
    };
    format!(
        r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
    - matches: [{{path: {{type: PathPrefix, value: {prefix}}}}}]
      filters: [{filter}]{backends}
"#
    )
}

/// Every user-controlled string of a route filter that reaches the wire,
/// each with a CR/LF payload: (route name, prefix, filter).
fn hostile_routes() -> Vec<(&'static str, &'static str, String, StoppedBy)> {
    vec![
        (
            "rewrite-full",
            "/rewrite-full",
            format!(
                r#"{{type: URLRewrite, urlRewrite: {{path: {{type: ReplaceFullPath, replaceFullPath: "{SPLIT}"}}}}}}"#
            ),
            StoppedBy::Translate,
        ),
        (
            "rewrite-prefix",
            "/rewrite-prefix",
            format!(
                r#"{{type: URLRewrite, urlRewrite: {{path: {{type: ReplacePrefixMatch, replacePrefixMatch: "{SPLIT}"}}}}}}"#
            ),
            StoppedBy::Translate,
        ),
        (
            "rewrite-space",
            "/rewrite-space",
            r#"{type: URLRewrite, urlRewrite: {path: {type: ReplaceFullPath, replaceFullPath: "/a b"}}}"#.to_string(),
            StoppedBy::Translate,
        ),
        (
            "redirect-path",
            "/redirect-path",
            format!(
                r#"{{type: RequestRedirect, requestRedirect: {{path: {{type: ReplaceFullPath, replaceFullPath: "{SPLIT}"}}}}}}"#
            ),
            StoppedBy::Translate,
        ),
        (
            "req-header",
            "/req-header",
            format!(
                r#"{{type: RequestHeaderModifier, requestHeaderModifier: {{set: [{{name: X-Set, value: "{HEADER_SPLIT}"}}]}}}}"#
            ),
            StoppedBy::Schema,
        ),
        (
            "req-header-add",
            "/req-header-add",
            format!(
                r#"{{type: RequestHeaderModifier, requestHeaderModifier: {{add: [{{name: X-Add, value: "{HEADER_SPLIT}"}}]}}}}"#
            ),
            StoppedBy::Schema,
        ),
        (
            "resp-header",
            "/resp-header",
            format!(
                r#"{{type: ResponseHeaderModifier, responseHeaderModifier: {{set: [{{name: X-Resp, value: "{HEADER_SPLIT}"}}]}}}}"#
            ),
            StoppedBy::Schema,
        ),
    ]
}

#[test]
fn hostile_filter_values_never_reach_the_wire() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let gw: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let admin = free_addr();
    let rec = Recorder::start();
    let mut yaml = gateway_and_service(port, rec.addr);
    yaml.push_str(&route("victim", "/victim", r#"{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: X-Ok, value: "fine"}]}}"#));
    let hostile = hostile_routes();
    for (name, prefix, filter, _) in &hostile {
        yaml.push_str(&route(name, prefix, filter));
    }
    std::fs::write(dir.path().join("all.yaml"), &yaml).unwrap();
    let _p = start(dir.path(), admin, &[]);
    wait_for("victim route live", Duration::from_secs(10), || {
        get(gw, "a.example", "/victim/1").is_some_and(|(s, _)| s == 200)
    });

    // Every hostile route is refused: by the schema (never loaded) or by
    // translation with a message naming the field; no hostile rule is served.
    let doc = status_doc(admin);
    for (name, prefix, _, by) in &hostile {
        let accepted = route_condition(&doc, name, "Accepted");
        if *by == StoppedBy::Schema {
            assert_eq!(accepted, serde_json::Value::Null, "{name}: {accepted}");
        } else {
            assert_eq!(accepted["status"], "False", "{name}: {accepted}");
            assert_eq!(accepted["reason"], "UnsupportedValue", "{name}: {accepted}");
            let msg = accepted["message"].as_str().unwrap_or("");
            assert!(
                msg.contains("rule 0 dropped") && msg.contains(".path.replace"),
                "{name}: {msg}"
            );
        }
        // Interleave with the victim on kept-alive pooled upstream connections.
        let (s, answer) = get(gw, "a.example", &format!("{prefix}/x")).unwrap();
        assert_eq!(s, 404, "{name}: {answer}");
        assert!(
            !answer.to_ascii_lowercase().contains("x-injected"),
            "{answer}"
        );
        let (s, answer) = get(gw, "a.example", "/victim/after").unwrap();
        assert_eq!(s, 200, "{answer}");
        assert!(answer.ends_with("rec /victim/after"), "{name}: {answer}");
    }
    let seen = rec.received();
    assert!(!seen.to_ascii_lowercase().contains("x-injected"), "{seen}");
    // The backend saw exactly the victim requests, one request line each.
    let lines = seen.matches(" HTTP/1.1\r\n").count();
    assert_eq!(lines, 1 + hostile.len(), "{seen}");
    assert_eq!(seen.matches("GET /victim/").count(), lines, "{seen}");
    assert!(seen.contains("x-ok: fine\r\n"), "{seen}");
}

#[test]
fn hostile_filter_values_are_reported_by_status() {
    let dir = tempfile::tempdir().unwrap();
    let mut yaml = gateway_and_service(18090, "127.0.0.1:9".parse().unwrap());
    for (name, prefix, filter, _) in hostile_routes() {
        yaml.push_str(&route(name, prefix, &filter));
    }
    std::fs::write(dir.path().join("all.yaml"), &yaml).unwrap();
    let out = std::process::Command::new(bin())
        .args(["status", "-o", "json", "--config"])
        .arg(dir.path())
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for (name, _, _, by) in hostile_routes() {
        let accepted = route_condition(&doc, name, "Accepted");
        match by {
            StoppedBy::Translate => assert_eq!(accepted["status"], "False", "{name}: {accepted}"),
            StoppedBy::Schema => assert_eq!(accepted, serde_json::Value::Null, "{name}"),
        }
    }
    // `validate` reports them too, and fails.
    let v = std::process::Command::new(bin())
        .args(["validate", "--config"])
        .arg(dir.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&v.stdout).to_string() + &String::from_utf8_lossy(&v.stderr);
    assert_eq!(v.status.code(), Some(1), "{text}");
    for name in [
        "rewrite-full",
        "rewrite-prefix",
        "redirect-path",
        "req-header",
    ] {
        assert!(
            text.contains(&format!("HTTPRoute default/{name}")),
            "{name}: {text}"
        );
    }
    assert!(text.contains("urlRewrite.path.replaceFullPath"), "{text}");
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(
        errors.contains("HTTPRoute default/req-header: spec.rules[0].filters[0].requestHeaderModifier.set[0].value"),
        "{errors}"
    );
    let msg = route_condition(&doc, "rewrite-full", "Accepted")["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("urlRewrite.path.replaceFullPath") && msg.contains("space at offset 2"),
        "{msg}"
    );
}

/// A route on `/` to the recorder; returns (gateway address, admin, process).
fn serve_root(rec: &Recorder) -> (SocketAddr, tempfile::TempDir, Proc) {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let gw: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let admin = free_addr();
    let mut yaml = gateway_and_service(port, rec.addr);
    yaml.push_str(
        r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: internal, namespace: default}
spec:
  parentRefs: [{name: gw}]
  hostnames: [internal.example.com]
  rules: [{backendRefs: [{name: svc, port: 80}]}]
"#,
    );
    std::fs::write(dir.path().join("all.yaml"), &yaml).unwrap();
    let p = start(dir.path(), admin, &[]);
    wait_for("route live", Duration::from_secs(10), || {
        get(gw, "internal.example.com", "/").is_some_and(|(s, _)| s == 200)
    });
    (gw, dir, p)
}

#[test]
fn ambiguous_hosts_are_refused() {
    let rec = Recorder::start();
    let (gw, _dir, _p) = serve_root(&rec);
    for host in [
        "internal.example.com:1@evil.example.org",
        "user:pw@internal.example.com",
        "\"internal.example.com\"",
        "internal.example.com x",
        "internal.example.com:80:90",
        "internal.example.com:http",
        "internal.example.com/x",
    ] {
        let answer = raw_exchange(
            gw,
            format!("GET /h HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
        );
        assert_eq!(status_of(&answer), 400, "{host}: {answer}");
    }
    // A second Host header.
    let answer = raw_exchange(
        gw,
        b"GET /h HTTP/1.1\r\nHost: internal.example.com\r\nHost: evil.example.org\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status_of(&answer), 400, "{answer}");
    // Userinfo in an absolute-form target.
    let answer = raw_exchange(
        gw,
        b"GET http://x@internal.example.com/h HTTP/1.1\r\nHost: internal.example.com\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status_of(&answer), 400, "{answer}");
    // A valid host with a port still routes, and is forwarded as parsed.
    let answer = raw_exchange(
        gw,
        b"GET /ok HTTP/1.1\r\nHost: Internal.Example.com:8080\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status_of(&answer), 200, "{answer}");
    let seen = rec.received();
    assert!(!seen.contains("evil"), "{seen}");
    assert_eq!(
        seen.matches("GET ").count(),
        2,
        "only / and /ok reached the backend: {seen}"
    );
}

#[test]
fn transfer_codings_other_than_chunked_are_not_implemented() {
    let rec = Recorder::start();
    let (gw, _dir, _p) = serve_root(&rec);
    let answer = raw_exchange(
        gw,
        b"POST /te HTTP/1.1\r\nHost: internal.example.com\r\nTransfer-Encoding: gzip, chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    );
    assert_eq!(status_of(&answer), 501, "{answer}");
    assert!(!rec.received().contains("/te"), "{}", rec.received());
}

#[test]
fn request_body_over_the_limit_is_413() {
    let rec = Recorder::start();
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let gw: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let admin = free_addr();
    let mut yaml = gateway_and_service(port, rec.addr);
    yaml.push_str(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: r, namespace: default}\nspec:\n  parentRefs: [{name: gw}]\n  rules: [{backendRefs: [{name: svc, port: 80}]}]\n",
    );
    std::fs::write(dir.path().join("all.yaml"), &yaml).unwrap();
    let _p = start(dir.path(), admin, &["--max-request-body-bytes", "1000"]);
    wait_for("route live", Duration::from_secs(10), || {
        get(gw, "a", "/").is_some_and(|(s, _)| s == 200)
    });
    let body = "x".repeat(2000);
    let answer = raw_exchange(
        gw,
        format!("POST /big HTTP/1.1\r\nHost: a\r\nContent-Length: 2000\r\nConnection: close\r\n\r\n{body}").as_bytes(),
    );
    assert_eq!(status_of(&answer), 413, "{answer}");
    // A chunked body that grows past the limit.
    let chunk = format!("{:x}\r\n{}\r\n", 600, "y".repeat(600));
    let answer = raw_exchange(
        gw,
        format!("POST /chunked HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{chunk}{chunk}0\r\n\r\n").as_bytes(),
    );
    assert_eq!(status_of(&answer), 413, "{answer}");
    assert!(!rec.received().contains("/big"), "{}", rec.received());
}
