//! Protocols: WebSocket, h2c upstream, h2 prior-knowledge clients, framing, slowloris.

mod common;

use std::time::{Duration, Instant};

use common::*;
use portcullis_dataplane::Options;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Open a WebSocket-style upgrade through the proxy; returns the raw stream after the 101.
pub async fn upgrade(addr: std::net::SocketAddr, path: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: ws.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut b))
            .await
            .unwrap()
            .unwrap();
        assert!(
            n > 0,
            "closed during upgrade: {}",
            String::from_utf8_lossy(&head)
        );
        head.push(b[0]);
    }
    let head = String::from_utf8_lossy(&head);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: websocket"),
        "{head}"
    );
    s
}

pub async fn ws_roundtrip(s: &mut TcpStream, msg: &[u8]) {
    s.write_all(msg).await.unwrap();
    let mut buf = vec![0u8; msg.len()];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(buf, msg);
}

#[tokio::test]
async fn websocket_through_the_proxy() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let e = Echo::start("ws").await;
        let ws = service("ws", &[e.addr], Some("kubernetes.io/ws"));
        let (_dp, addr) = serve(vec![
            rule("r", prefix("/"), vec![wb(1, e.backend())]),
            rule("w", prefix("/ws"), vec![wb(1, ws)]),
        ])
        .await;
        for path in ["/chat", "/ws"] {
            let mut s = upgrade(addr, path).await;
            for i in 0..5 {
                ws_roundtrip(&mut s, format!("hello {i}").as_bytes()).await;
            }
        }
        let seen = e.seen.lock().unwrap()[0].clone();
        assert_eq!(seen["headers"]["upgrade"], "websocket");
        assert_eq!(
            seen["headers"]["sec-websocket-key"],
            "dGhlIHNhbXBsZSBub25jZQ=="
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn h2c_upstream_and_h2_prior_knowledge_client() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let e = Echo::start("h2").await;
        let h2 = service("h2", &[e.addr], Some("kubernetes.io/h2c"));
        let (_dp, addr) = serve(vec![
            rule("h2", prefix("/h2"), vec![wb(1, h2)]),
            rule("h1", prefix("/h1"), vec![wb(1, e.backend())]),
        ])
        .await;
        let g = get(addr, "h", "/h2").await;
        assert_eq!(
            g.json()["version"],
            "HTTP/2.0",
            "kubernetes.io/h2c speaks HTTP/2 upstream"
        );
        assert_eq!(g.json()["host"], "h");
        let g = get(addr, "h", "/h1").await;
        assert_eq!(g.json()["version"], "HTTP/1.1");
        let c = h2_client();
        let g = send(&c, addr, "GET", "h2client.example", "/h1", &[]).await;
        assert_eq!(g.status, 200);
        assert_eq!(g.json()["version"], "HTTP/1.1");
        // HTTP/2 requests carry :authority, which takes precedence over Host (RFC 9113 §8.3.1).
        assert_eq!(g.json()["host"], addr.to_string());
        let g = send(&c, addr, "GET", "h", "/nothing", &[]).await;
        assert_eq!(g.status, 404);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn bad_framing_is_400_and_closes_the_connection() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let e = Echo::start("e").await;
        let (_dp, addr) = serve(vec![rule("r", prefix("/"), vec![wb(1, e.backend())])]).await;
        let cases: [&[u8]; 4] = [
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 5, 6\r\n\r\nhello!",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\nhello",
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: abc\r\n\r\n",
        ];
        for case in cases {
            let (resp, closed) = raw(addr, case).await;
            assert!(resp.starts_with("HTTP/1.1 400"), "{resp:?} for {:?}", String::from_utf8_lossy(case));
            assert!(closed, "connection must be closed after a framing error");
        }
        assert_eq!(e.count(), 0, "nothing reaches the backend");

        // Content-Length with Transfer-Encoding (RFC 9112 §6.3), either
        // order: answered 400 and closed; neither the request nor what
        // follows it reaches a backend.
        for order in [
            &b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 40\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n"[..],
            &b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n3\r\nabc\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: h\r\n\r\n"[..],
        ] {
            let before = e.count();
            let (resp, closed) = raw(addr, order).await;
            assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
            assert!(closed, "connection must be closed after CL+TE");
            assert_eq!(resp.lines().filter(|l| l.starts_with("HTTP/1.1 ")).count(), 1, "only one response: {resp}");
            assert_eq!(e.count(), before, "nothing reaches a backend");
        }
        let (resp, _) = raw(addr, b"GET / HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n").await;
        assert!(resp.starts_with("HTTP/1.1 200"), "{resp}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn slowloris_and_header_limits() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let e = Echo::start("e").await;
        let opts = Options {
            header_read_timeout: Duration::from_millis(500),
            idle_timeout: Duration::from_millis(700),
            max_header_bytes: 8192,
            ..Default::default()
        };
        let (_dp, addr) = serve_with(
            opts,
            vec![listener(
                "gw/l",
                None,
                vec![rule("r", prefix("/"), vec![wb(1, e.backend())])],
            )],
        )
        .await;

        // A client that starts a request head and never finishes it is cut off.
        let start = Instant::now();
        let (_, closed) = raw(addr, b"GET / HTTP/1.1\r\nHost: h\r\nX-Slow: ").await;
        assert!(
            closed && start.elapsed() < Duration::from_millis(2900),
            "slow header closed after {:?}",
            start.elapsed()
        );

        // A connection that never sends anything is closed too.
        let start = Instant::now();
        let (_, closed) = raw(addr, b"").await;
        assert!(closed && start.elapsed() < Duration::from_millis(2900));

        // Oversized heads are refused.
        let big = format!(
            "GET / HTTP/1.1\r\nHost: h\r\nX-Big: {}\r\n\r\n",
            "a".repeat(20_000)
        );
        let (resp, _) = raw(addr, big.as_bytes()).await;
        assert!(resp.starts_with("HTTP/1.1 431"), "{resp}");

        // An idle keep-alive connection is closed after idle_timeout.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            .await
            .unwrap();
        let mut buf = vec![0u8; 8192];
        let n = s.read(&mut buf).await.unwrap();
        assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 200"));
        let start = Instant::now();
        let mut rest = Vec::new();
        let r = tokio::time::timeout(Duration::from_secs(3), s.read_to_end(&mut rest)).await;
        assert!(r.is_ok(), "idle keep-alive connection was not closed");
        assert!(start.elapsed() >= Duration::from_millis(500));
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn body_size_limit_is_413() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let e = Echo::start("e").await;
        let opts = Options {
            max_body_bytes: Some(10),
            ..Default::default()
        };
        let (_dp, addr) = serve_with(
            opts,
            vec![listener(
                "gw/l",
                None,
                vec![rule("r", prefix("/"), vec![wb(1, e.backend())])],
            )],
        )
        .await;
        let c = client();
        assert_eq!(
            send_body(&c, addr, "POST", "h", "/", &[], "small".into())
                .await
                .status,
            200
        );
        assert_eq!(
            send_body(
                &c,
                addr,
                "POST",
                "h",
                "/",
                &[],
                "this body is too large".into()
            )
            .await
            .status,
            413
        );
    })
    .await
    .unwrap();
}
