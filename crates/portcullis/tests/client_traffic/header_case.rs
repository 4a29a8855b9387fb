//! ClientTrafficPolicy `http1.preserveHeaderCase` through `portcullis run`,
//! with raw sockets on 127.0.0.1. Two listeners: without a policy (header
//! names lower-cased, as always) and with `preserveHeaderCase: true`. A raw
//! backend records each request head byte for byte and answers with a
//! mixed-case header name.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::addr;
use crate::common::{
    free_addr, free_port, http_gateway, listener_policy, route_to_svc, start, wait_for,
};
use crate::raw_backend::RawBackend;

fn config(ports: [u16; 2], backend: SocketAddr) -> String {
    http_gateway(
        &[("plain", ports[0]), ("keep", ports[1])],
        &(route_to_svc("") + &listener_policy("keep", "  http1: {preserveHeaderCase: true}")),
        backend,
    )
}

/// Send `raw` on a new connection to `port`; the whole answer, as received.
fn send(port: u16, raw: &str) -> String {
    let mut s = TcpStream::connect_timeout(&addr(port), Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

#[test]
fn http1_header_case_end_to_end() {
    let backend = RawBackend::start(
        b"HTTP/1.1 200 OK\r\nX-Backend-CaSe: yes\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok",
    );
    let ports = [free_port(), free_port()];
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gateway.yaml"), config(ports, backend.addr)).unwrap();
    let _p = start(dir.path(), free_addr(), &[]);
    let get = |port: u16, target: &str| {
        send(
            port,
            &format!(
                "GET {target} HTTP/1.1\r\nHost: h\r\nX-MiXeD-Case: 1\r\nConnection: close\r\n\r\n"
            ),
        )
    };
    wait_for("the two listeners", Duration::from_secs(10), || {
        ports
            .iter()
            .all(|p| get(*p, "/ready").starts_with("HTTP/1.1 200 OK"))
    });
    let [plain, keep] = ports;

    for (port, name, kept) in [(plain, "plain", false), (keep, "keep", true)] {
        // A bodyless GET and a small POST (both read by the fast path).
        let a = get(port, &format!("/{name}-get"));
        let b = send(
            port,
            &format!(
                "POST /{name}-post HTTP/1.1\r\nHost: h\r\nX-MiXeD-Case: 1\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc"
            ),
        );
        for (answer, target) in [(a, format!("/{name}-get")), (b, format!("/{name}-post"))] {
            assert!(answer.starts_with("HTTP/1.1 200 OK"), "{name}: {answer}");
            let r = backend.request(&target);
            // The backend sees the client's spelling only with the policy.
            assert_eq!(
                r.contains("\r\nX-MiXeD-Case: 1\r\n"),
                kept,
                "{target}: request head at the backend: {r}"
            );
            assert_eq!(
                r.contains("\r\nx-mixed-case: 1\r\n"),
                !kept,
                "{target}: request head at the backend: {r}"
            );
            // And the client sees the backend's spelling only with it.
            assert_eq!(
                answer.contains("\r\nX-Backend-CaSe: yes\r\n"),
                kept,
                "{target}: response head at the client: {answer}"
            );
            assert_eq!(
                answer.contains("\r\nx-backend-case: yes\r\n"),
                !kept,
                "{target}: response head at the client: {answer}"
            );
        }
    }
}
