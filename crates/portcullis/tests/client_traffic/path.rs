//! ClientTrafficPolicy `path` through `portcullis run`, with raw sockets on
//! 127.0.0.1. One route, PathPrefix `/a/b`, on four listeners: without a
//! policy (escaped slashes kept encoded, `//` merged), `RejectRequest`,
//! `UnescapeAndRedirect`, and `UnescapeAndForward` with
//! `disableMergeSlashes`. What the backend receives is the path that was
//! routed: a path that routing did not match never reaches it.

use std::net::SocketAddr;
use std::time::Duration;

use crate::common::{Recorder, free_addr, free_port, start, wait_for};
use crate::{exchange, header, seen};

fn config(ports: [u16; 4], backend: SocketAddr) -> String {
    let policy = |name: &str, path: &str| {
        format!(
            r#"---
apiVersion: portcullis.dev/v1alpha1
kind: ClientTrafficPolicy
metadata: {{name: {name}, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: Gateway, name: gw, sectionName: {name}}}]
  path: {path}
"#
        )
    };
    format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: portcullis}}
spec: {{controllerName: portcullis.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: default}}
spec:
  gatewayClassName: portcullis
  addresses: [{{type: IPAddress, value: 127.0.0.1}}]
  listeners:
  - {{name: plain, port: {a}, protocol: HTTP}}
  - {{name: reject, port: {b}, protocol: HTTP}}
  - {{name: redirect, port: {c}, protocol: HTTP}}
  - {{name: forward, port: {d}, protocol: HTTP}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /a/b}}}}]
    backendRefs: [{{name: svc, port: 80}}]
---
apiVersion: v1
kind: Service
metadata: {{name: svc, namespace: default}}
spec:
  ports: [{{name: http, port: 80}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: svc-1, namespace: default, labels: {{kubernetes.io/service-name: svc}}}}
addressType: IPv4
ports: [{{name: http, port: {bport}}}]
endpoints: [{{addresses: ["127.0.0.1"], conditions: {{ready: true}}}}]
{pb}{pc}{pd}"#,
        a = ports[0],
        b = ports[1],
        c = ports[2],
        d = ports[3],
        bport = backend.port(),
        pb = policy("reject", "{escapedSlashesAction: RejectRequest}"),
        pc = policy("redirect", "{escapedSlashesAction: UnescapeAndRedirect}"),
        pd = policy(
            "forward",
            "{escapedSlashesAction: UnescapeAndForward, disableMergeSlashes: true}"
        ),
    )
}

/// The status line of an answer.
fn status(answer: &str) -> &str {
    answer.lines().next().unwrap_or("")
}

#[test]
fn path_settings_end_to_end() {
    let backend = Recorder::start();
    let ports = [free_port(), free_port(), free_port(), free_port()];
    let admin = free_addr();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gateway.yaml"), config(ports, backend.addr)).unwrap();
    let _p = start(dir.path(), admin, &[]);
    wait_for(
        "listeners with their policies",
        Duration::from_secs(10),
        || {
            ports
                .iter()
                .all(|p| status(&exchange(*p, b"", "/a/b?ready", "")) == "HTTP/1.1 200 OK")
                && status(&exchange(ports[1], b"", "/a%2Fb?ready", ""))
                    == "HTTP/1.1 400 Bad Request"
        },
    );
    let [plain, reject, redirect, forward] = ports;

    // No policy: `//` merged before routing and forwarding; %2F kept encoded,
    // so `/a%2Fb` is not under `/a/b` and is not routed.
    let a = exchange(plain, b"", "//a//b?id=p1", "");
    assert_eq!(status(&a), "HTTP/1.1 200 OK", "{a}");
    seen(&backend, "/a/b?id=p1");
    let a = exchange(plain, b"", "/a%2fb?id=p2", "");
    assert_eq!(status(&a), "HTTP/1.1 404 Not Found", "{a}");
    assert!(!backend.received().contains("id=p2"));

    // RejectRequest: 400 for %2F, %2f, %5C, %5c; other paths served.
    for p in [
        "/a%2Fb?id=r1",
        "/a/b%2fc?id=r2",
        "/a%5Cb?id=r3",
        "/a/b%5cc?id=r4",
    ] {
        let a = exchange(reject, b"", p, "");
        assert_eq!(status(&a), "HTTP/1.1 400 Bad Request", "{p}: {a}");
    }
    assert!(!backend.received().contains("id=r"));
    let a = exchange(reject, b"", "/a/b/%41?id=r5", "");
    assert_eq!(status(&a), "HTTP/1.1 200 OK", "{a}");
    // `seen` compares lower-cased heads: `%41` was decoded to `A`.
    seen(&backend, "/a/b/a?id=r5");
    assert!(backend.received().contains("GET /a/b/A?id=r5 "));

    // UnescapeAndRedirect: 307 to the unescaped (and merged) path, query kept;
    // the backend sees nothing until the client follows it.
    let a = exchange(redirect, b"", "/a%2Fb%2F%2Fc?id=d1", "");
    assert_eq!(status(&a), "HTTP/1.1 307 Temporary Redirect", "{a}");
    let head = a.to_ascii_lowercase();
    assert_eq!(header(&head, "location"), Some("/a/b/c?id=d1"), "{a}");
    assert!(!backend.received().contains("id=d1"));
    let a = exchange(redirect, b"", "/a/b/c?id=d1", "");
    assert_eq!(status(&a), "HTTP/1.1 200 OK", "{a}");
    seen(&backend, "/a/b/c?id=d1");
    // Without escaped slashes there is no redirect: `//` is merged and served.
    let a = exchange(redirect, b"", "/a//b?id=d2", "");
    assert_eq!(status(&a), "HTTP/1.1 200 OK", "{a}");
    seen(&backend, "/a/b?id=d2");

    // UnescapeAndForward: %2F and %5C become `/`, routed and forwarded as
    // such; with disableMergeSlashes `//` stays, so `//a/b` is not under `/a/b`.
    let a = exchange(forward, b"", "/a%2Fb%5cc?id=f1", "");
    assert_eq!(status(&a), "HTTP/1.1 200 OK", "{a}");
    seen(&backend, "/a/b/c?id=f1");
    let a = exchange(forward, b"", "/a/b//c?id=f2", "");
    assert_eq!(status(&a), "HTTP/1.1 200 OK", "{a}");
    seen(&backend, "/a/b//c?id=f2");
    let a = exchange(forward, b"", "//a/b?id=f3", "");
    assert_eq!(status(&a), "HTTP/1.1 404 Not Found", "{a}");
    let a = exchange(forward, b"", "/x%2F..%2Fa%2Fb?id=f4", "");
    assert_eq!(
        status(&a),
        "HTTP/1.1 200 OK",
        "dot segments after unescaping: {a}"
    );
    seen(&backend, "/a/b?id=f4");
    assert!(!backend.received().contains("id=f3"));
}
