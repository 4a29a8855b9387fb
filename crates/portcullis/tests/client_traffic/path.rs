//! ClientTrafficPolicy `path` through `portcullis run`, with raw sockets on
//! 127.0.0.1. One route, PathPrefix `/a/b`, on four listeners: without a
//! policy (escaped slashes kept encoded, `//` merged), `RejectRequest`,
//! `UnescapeAndRedirect`, and `UnescapeAndForward` with
//! `disableMergeSlashes`. What the backend receives is the path that was
//! routed: a path that routing did not match never reaches it.

use std::net::SocketAddr;
use std::time::Duration;

use crate::common::{
    Recorder, free_addr, free_port, http_gateway, listener_policy, route_to_svc, start, wait_for,
};
use crate::{exchange, header, seen};

fn config(ports: [u16; 4], backend: SocketAddr) -> String {
    let docs = route_to_svc("[{path: {type: PathPrefix, value: /a/b}}]")
        + &listener_policy("reject", "  path: {escapedSlashesAction: RejectRequest}")
        + &listener_policy(
            "redirect",
            "  path: {escapedSlashesAction: UnescapeAndRedirect}",
        )
        + &listener_policy(
            "forward",
            "  path: {escapedSlashesAction: UnescapeAndForward, disableMergeSlashes: true}",
        );
    http_gateway(
        &[
            ("plain", ports[0]),
            ("reject", ports[1]),
            ("redirect", ports[2]),
            ("forward", ports[3]),
        ],
        &docs,
        backend,
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
