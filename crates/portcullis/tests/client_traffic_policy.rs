//! ClientTrafficPolicy through `portcullis run`: real processes and raw
//! sockets on 127.0.0.1. One Gateway, one listener per policy: trusted hops
//! with a spoofed X-Forwarded-For, header handling (underscores, request
//! IDs), the PROXY protocol (v1 and v2, hand-written), a slowloris client cut
//! by `requestReceivedTimeout`, and the connection limit. The `tls`,
//! `path` and `http1` settings have their own modules (`client_traffic/`).

mod common;
#[path = "client_traffic/header_case.rs"]
mod header_case;
#[path = "client_traffic/http1.rs"]
mod http1;
#[path = "client_traffic/path.rs"]
mod path;
#[path = "client_traffic/raw_backend.rs"]
mod raw_backend;
#[path = "client_traffic/tls.rs"]
mod tls;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{
    Recorder, free_addr, free_port, http_gateway, listener_policy, route_to_svc, start, wait_for,
};

fn gateway(ports: [u16; 4], backend: SocketAddr) -> String {
    let docs = route_to_svc("")
        + &listener_policy(
            "hops",
            "  clientIPDetection:\n    xForwardedFor: {numTrustedHops: 1}\n  headers: {withUnderscoresAction: DropHeader, requestID: PreserveOrGenerate}",
        )
        + &listener_policy("proxied", "  enableProxyProtocol: true")
        + &listener_policy(
            "strict",
            "  timeout:\n    http: {requestReceivedTimeout: 1s}\n  connection:\n    connectionLimit: {value: 2}\n  headers: {withUnderscoresAction: RejectRequest}",
        );
    http_gateway(
        &[
            ("hops", ports[0]),
            ("proxied", ports[1]),
            ("strict", ports[2]),
            ("plain", ports[3]),
        ],
        &docs,
        backend,
    )
}

fn addr(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// Send `prefix` then a GET with `headers`; the whole answer.
fn exchange(port: u16, prefix: &[u8], path: &str, headers: &str) -> String {
    let mut s = TcpStream::connect_timeout(&addr(port), Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(prefix).unwrap();
    let _ = write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: h\r\nconnection: close\r\n{headers}\r\n"
    );
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The request head the backend received for `path` (lower-cased).
fn seen(backend: &Recorder, path: &str) -> String {
    let all = backend.received().to_ascii_lowercase();
    let start = all
        .find(&format!("get {path} "))
        .unwrap_or_else(|| panic!("{path} not received: {all}"));
    let end = all[start..].find("\r\n\r\n").unwrap() + start;
    all[start..end].to_string()
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        (k == name).then(|| v.trim())
    })
}

/// Whether the gateway closes `s` (EOF or reset) within `within`.
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut b = [0u8; 64];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                return false;
            }
            Err(_) => return true,
        }
    }
}

#[test]
fn client_traffic_policy_end_to_end() {
    let backend = Recorder::start();
    let ports = [free_port(), free_port(), free_port(), free_port()];
    let admin = free_addr();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("gateway.yaml"),
        gateway(ports, backend.addr),
    )
    .unwrap();
    let _p = start(dir.path(), admin, &[]);
    wait_for("plain listener", Duration::from_secs(10), || {
        exchange(ports[3], b"", "/ready", "").starts_with("HTTP/1.1 200")
    });

    // Trusted hops: one proxy in front, so the client is the rightmost XFF
    // entry, not the spoofed leftmost one.
    let a = exchange(
        ports[0],
        b"",
        "/hops",
        "x-forwarded-for: 6.6.6.6, 203.0.113.5\r\n",
    );
    assert!(a.starts_with("HTTP/1.1 200"), "{a}");
    let h = seen(&backend, "/hops");
    assert_eq!(header(&h, "x-real-ip"), Some("203.0.113.5"), "{h}");
    // Without a policy, the same spoofed header is not trusted.
    exchange(
        ports[3],
        b"",
        "/untrusted",
        "x-forwarded-for: 6.6.6.6, 203.0.113.5\r\n",
    );
    let h = seen(&backend, "/untrusted");
    assert_eq!(header(&h, "x-real-ip"), Some("127.0.0.1"), "{h}");
    assert_eq!(header(&h, "x-forwarded-for"), Some("127.0.0.1"), "{h}");

    // Headers with `_` dropped; X-Request-ID generated when absent, kept when sent.
    exchange(ports[0], b"", "/ids", "x_secret: 1\r\nx-kept: 2\r\n");
    let h = seen(&backend, "/ids");
    assert!(header(&h, "x_secret").is_none(), "{h}");
    assert_eq!(header(&h, "x-kept"), Some("2"));
    let id = header(&h, "x-request-id").expect("generated x-request-id");
    assert_eq!(id.len(), 36, "{id}");
    exchange(ports[0], b"", "/mine", "x-request-id: abc-123\r\n");
    assert_eq!(
        header(&seen(&backend, "/mine"), "x-request-id"),
        Some("abc-123")
    );
    // No policy: no x-request-id is made up.
    exchange(ports[3], b"", "/none", "");
    assert!(header(&seen(&backend, "/none"), "x-request-id").is_none());
    // RejectRequest: 400.
    let a = exchange(ports[2], b"", "/reject", "x_bad: 1\r\n");
    assert!(a.starts_with("HTTP/1.1 400"), "{a}");

    // PROXY protocol v1 and v2: the address it carries is the client.
    let a = exchange(
        ports[1],
        b"PROXY TCP4 192.0.2.44 127.0.0.1 40000 80\r\n",
        "/v1",
        "",
    );
    assert!(a.starts_with("HTTP/1.1 200"), "{a}");
    assert_eq!(
        header(&seen(&backend, "/v1"), "x-real-ip"),
        Some("192.0.2.44")
    );
    let mut v2 = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    v2.extend([
        0x21, 0x11, 0, 12, 198, 51, 100, 9, 127, 0, 0, 1, 0x9c, 0x40, 0, 80,
    ]);
    let a = exchange(ports[1], &v2, "/v2", "");
    assert!(a.starts_with("HTTP/1.1 200"), "{a}");
    assert_eq!(
        header(&seen(&backend, "/v2"), "x-real-ip"),
        Some("198.51.100.9")
    );
    // Without a PROXY header the connection is closed unanswered.
    let a = exchange(ports[1], b"", "/nope", "");
    assert_eq!(a, "", "no answer without a PROXY header");
    assert!(!backend.received().contains("GET /nope "));

    // Slowloris: a head that never ends is cut by requestReceivedTimeout (1 s).
    let mut slow = TcpStream::connect(addr(ports[2])).unwrap();
    slow.write_all(b"GET /slow HTTP/1.1\r\nhost: h\r\n")
        .unwrap();
    let t = Instant::now();
    let mut dribble = slow.try_clone().unwrap();
    std::thread::spawn(move || {
        for _ in 0..20 {
            std::thread::sleep(Duration::from_millis(200));
            if dribble.write_all(b"x-a: b\r\n").is_err() {
                return;
            }
        }
    });
    assert!(
        closed_within(&mut slow, Duration::from_secs(4)),
        "slowloris not cut"
    );
    let took = t.elapsed();
    assert!(
        took >= Duration::from_millis(800) && took < Duration::from_secs(4),
        "{took:?}"
    );
    drop(slow);

    // Connection limit 2: a third connection is closed at once while two are open.
    wait_for("slow connection released", Duration::from_secs(5), || {
        exchange(ports[2], b"", "/free", "").starts_with("HTTP/1.1 200")
    });
    // Two keep-alive connections, each answered once: both are accepted and
    // counted (on a busy machine a bare connect may still sit in the backlog).
    let served = |mut s: TcpStream| {
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /held HTTP/1.1\r\nhost: h\r\n\r\n")
            .unwrap();
        let mut got = Vec::new();
        let mut b = [0u8; 4096];
        while !String::from_utf8_lossy(&got).contains("HTTP/1.1 200") {
            let n = s.read(&mut b).unwrap();
            assert!(n > 0, "a held connection was closed");
            got.extend_from_slice(&b[..n]);
        }
        s
    };
    let one = served(TcpStream::connect(addr(ports[2])).unwrap());
    let two = served(TcpStream::connect(addr(ports[2])).unwrap());
    let mut three = TcpStream::connect(addr(ports[2])).unwrap();
    let _ = three.write_all(b"GET /third HTTP/1.1\r\nhost: h\r\n\r\n");
    assert!(
        closed_within(&mut three, Duration::from_millis(700)),
        "third connection kept"
    );
    drop((one, two));
    wait_for("limit released", Duration::from_secs(5), || {
        exchange(ports[2], b"", "/after", "").starts_with("HTTP/1.1 200")
    });
}
