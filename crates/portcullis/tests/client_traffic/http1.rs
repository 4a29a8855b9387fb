//! ClientTrafficPolicy `http1.enableTrailers` through `portcullis run`, with
//! raw sockets on 127.0.0.1. Three listeners: without a policy (trailers pass
//! through, as before the field existed), `enableTrailers: false` (dropped in
//! both directions for HTTP/1.1 clients) and `enableTrailers: true`
//! (proxied). A raw backend records each request (head, chunked body and its
//! trailers) and answers with a chunked body and an `x-resp-sum` trailer.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::addr;
use crate::common::{
    free_addr, free_port, http_gateway, listener_policy, route_to_svc, start, wait_for,
};
use crate::raw_backend::RawBackend;

fn config(ports: [u16; 3], backend: SocketAddr) -> String {
    let docs = route_to_svc("")
        + &listener_policy("drop", "  http1: {enableTrailers: false}")
        + &listener_policy("keep", "  http1: {enableTrailers: true}");
    http_gateway(
        &[("plain", ports[0]), ("drop", ports[1]), ("keep", ports[2])],
        &docs,
        backend,
    )
}

/// Send `raw` on a new connection to `port`; the whole answer, lower-cased.
fn send(port: u16, raw: &str) -> String {
    let mut s = TcpStream::connect_timeout(&addr(port), Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).to_ascii_lowercase()
}

/// A chunked POST to `target` with an `x-checksum` request trailer.
fn chunked_post(port: u16, target: &str) -> String {
    send(
        port,
        &format!(
            "POST {target} HTTP/1.1\r\nhost: h\r\nte: trailers\r\ntransfer-encoding: chunked\r\nconnection: close\r\n\r\n5\r\nhello\r\n0\r\nx-checksum: abc\r\n\r\n"
        ),
    )
}

/// A bodyless GET (the fast path) to `target` that accepts trailers.
fn get(port: u16, target: &str) -> String {
    send(
        port,
        &format!("GET {target} HTTP/1.1\r\nhost: h\r\nte: trailers\r\nconnection: close\r\n\r\n"),
    )
}

#[test]
fn http1_trailers_end_to_end() {
    let backend = RawBackend::start(
        b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-resp-sum\r\nconnection: close\r\n\r\n5\r\nworld\r\n0\r\nx-resp-sum: def\r\n\r\n",
    );
    let ports = [free_port(), free_port(), free_port()];
    let admin = free_addr();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gateway.yaml"), config(ports, backend.addr)).unwrap();
    let _p = start(dir.path(), admin, &[]);
    wait_for("the three listeners", Duration::from_secs(10), || {
        ports
            .iter()
            .all(|p| get(*p, "/ready").starts_with("http/1.1 200 ok"))
    });
    let [plain, drop, keep] = ports;

    for (port, name, kept) in [
        (plain, "plain", true),
        (drop, "drop", false),
        (keep, "keep", true),
    ] {
        // Request trailers (a chunked body: read by hyper).
        let a = chunked_post(port, &format!("/{name}-post"));
        assert!(a.starts_with("http/1.1 200 ok"), "{name}: {a}");
        assert!(a.contains("world"), "{name}: {a}");
        let r = backend
            .request(&format!("/{name}-post"))
            .to_ascii_lowercase();
        assert!(r.contains("hello"), "{name}: body forwarded: {r}");
        assert_eq!(
            r.contains("x-checksum: abc"),
            kept,
            "{name}: request trailer at the backend: {r}"
        );
        // Response trailers, on the hyper path (chunked request) ...
        assert_eq!(
            a.contains("x-resp-sum: def"),
            kept,
            "{name}: response trailer at the client (hyper path): {a}"
        );
        // ... and on the fast path (bodyless GET).
        let a = get(port, &format!("/{name}-get"));
        assert!(
            a.starts_with("http/1.1 200 ok") && a.contains("world"),
            "{name}: {a}"
        );
        assert_eq!(
            a.contains("x-resp-sum: def"),
            kept,
            "{name}: response trailer at the client (fast path): {a}"
        );
    }
}
