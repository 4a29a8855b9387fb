//! The HTTP/1.1 fast path as a client sees it on a raw socket: pipelining,
//! HTTP/1.0, HEAD, `Connection: close`, gateway answers, a small body
//! arriving in pieces, a hand-over to hyper in the middle of a keep-alive
//! connection (a chunked body, then an upgrade), and drain of idle and busy
//! connections.

mod common;

use std::time::{Duration, Instant};

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Read from `s` until `n` complete responses (each with a Content-Length
/// or chunked body; HEAD answers have none when `head` is set) arrived.
async fn read_responses(s: &mut TcpStream, n: usize, head: bool) -> Vec<String> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 8192];
    let mut out = Vec::new();
    while out.len() < n {
        let text = String::from_utf8_lossy(&buf).to_string();
        if let Some(i) = text.find("\r\n\r\n") {
            let head_text = text[..i].to_lowercase();
            let body_len = if head {
                Some(0)
            } else if let Some(l) = head_text
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
            {
                Some(l.trim().parse::<usize>().unwrap())
            } else if head_text.contains("transfer-encoding: chunked") {
                text[i + 4..].find("0\r\n\r\n").map(|j| j + 5)
            } else {
                Some(0)
            };
            if let Some(len) = body_len
                && buf.len() >= i + 4 + len
            {
                out.push(String::from_utf8_lossy(&buf[..i + 4 + len]).to_string());
                buf.drain(..i + 4 + len);
                continue;
            }
        }
        let k = tokio::time::timeout(Duration::from_secs(5), s.read(&mut tmp))
            .await
            .expect("responses in time")
            .unwrap();
        assert!(k > 0, "closed after {} responses: {:?}", out.len(), text);
        buf.extend_from_slice(&tmp[..k]);
    }
    out
}

async fn closed(s: &mut TcpStream, within: Duration) -> bool {
    let mut tmp = [0u8; 1024];
    matches!(
        tokio::time::timeout(within, s.read(&mut tmp)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let e = Echo::start("e").await;
        let (_dp, addr) = serve(vec![rule("r", prefix("/"), vec![wb(1, e.backend())])]).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        let mut all = Vec::new();
        for i in 0..5 {
            all.extend_from_slice(format!("GET /p{i} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes());
        }
        s.write_all(&all).await.unwrap();
        let got = read_responses(&mut s, 5, false).await;
        for (i, r) in got.iter().enumerate() {
            assert!(r.starts_with("HTTP/1.1 200"), "{r}");
            assert!(r.contains(&format!("\"path\":\"/p{i}\"")), "in order: {r}");
            assert!(r.to_lowercase().contains("\r\ndate: "), "date added: {r}");
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn http10_head_close_and_gateway_answers() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let e = Echo::start("e").await;
        let (_dp, addr) = serve(vec![rule("r", prefix("/x"), vec![wb(1, e.backend())])]).await;

        // HTTP/1.0 without keep-alive: answered as 1.0, then closed.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /x HTTP/1.0\r\nHost: h\r\n\r\n")
            .await
            .unwrap();
        let r = read_responses(&mut s, 1, false).await;
        assert!(r[0].starts_with("HTTP/1.0 200"), "{}", r[0]);
        assert!(closed(&mut s, Duration::from_secs(3)).await);

        // HTTP/1.0 with keep-alive: kept, and says so.
        let mut s = TcpStream::connect(addr).await.unwrap();
        for _ in 0..2 {
            s.write_all(b"GET /x HTTP/1.0\r\nHost: h\r\nConnection: keep-alive\r\n\r\n")
                .await
                .unwrap();
            let r = read_responses(&mut s, 1, false).await;
            assert!(
                r[0].to_lowercase().contains("connection: keep-alive"),
                "{}",
                r[0]
            );
        }

        // HEAD: the length of the GET answer, no body; the connection goes on.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"HEAD /x HTTP/1.1\r\nHost: h\r\n\r\n")
            .await
            .unwrap();
        let r = read_responses(&mut s, 1, true).await;
        assert!(r[0].starts_with("HTTP/1.1 200"), "{}", r[0]);
        s.write_all(b"GET /nothing HTTP/1.1\r\nHost: h\r\n\r\n")
            .await
            .unwrap();
        let r = read_responses(&mut s, 1, false).await;
        assert!(
            r[0].starts_with("HTTP/1.1 404"),
            "gateway 404 after HEAD: {}",
            r[0]
        );

        // `Connection: close`: answered with it, then closed.
        s.write_all(b"GET /x HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")
            .await
            .unwrap();
        let r = read_responses(&mut s, 1, false).await;
        assert!(
            r[0].to_lowercase().contains("connection: close"),
            "{}",
            r[0]
        );
        assert!(closed(&mut s, Duration::from_secs(3)).await);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn body_then_upgrade_hand_the_connection_to_hyper() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let e = Echo::start("e").await;
        let (_dp, addr) = serve(vec![rule("r", prefix("/"), vec![wb(1, e.backend())])]).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /a HTTP/1.1\r\nHost: h\r\n\r\n")
            .await
            .unwrap();
        let r = read_responses(&mut s, 1, false).await;
        assert!(r[0].contains("\"path\":\"/a\""), "{}", r[0]);
        // A small body with a Content-Length: read by the fast path.
        s.write_all(b"POST /b HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nhel")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        s.write_all(b"lo").await.unwrap();
        let r = read_responses(&mut s, 1, false).await;
        assert!(r[0].contains("\"path\":\"/b\"") && r[0].contains("\"body\":\"hello\""), "{}", r[0]);
        // A chunked body: served by hyper from here on, on the same connection.
        s.write_all(b"POST /b2 HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nworld\r\n0\r\n\r\n")
            .await
            .unwrap();
        let r = read_responses(&mut s, 1, false).await;
        assert!(r[0].contains("\"path\":\"/b2\"") && r[0].contains("\"body\":\"world\""), "{}", r[0]);
        s.write_all(b"GET /c HTTP/1.1\r\nHost: h\r\n\r\n")
            .await
            .unwrap();
        let r = read_responses(&mut s, 1, false).await;
        assert!(r[0].contains("\"path\":\"/c\""), "{}", r[0]);

        // An upgrade on a fresh connection after a fast-path request.
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(b"GET /d HTTP/1.1\r\nHost: h\r\n\r\n")
            .await
            .unwrap();
        read_responses(&mut s, 1, false).await;
        s.write_all(
            b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        )
        .await
        .unwrap();
        let r = read_responses(&mut s, 1, true).await;
        assert!(r[0].starts_with("HTTP/1.1 101"), "{}", r[0]);
        s.write_all(b"ping through the tunnel").await.unwrap();
        let mut got = vec![0u8; 23];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut got))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&got, b"ping through the tunnel");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn drain_closes_idle_connections_and_lets_busy_ones_finish() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let e = Echo::start("e").await;
        let (dp, addr) = serve(vec![rule("r", prefix("/"), vec![wb(1, e.backend())])]).await;
        let mut idle = TcpStream::connect(addr).await.unwrap();
        idle.write_all(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
            .await
            .unwrap();
        read_responses(&mut idle, 1, false).await;
        let mut busy = TcpStream::connect(addr).await.unwrap();
        busy.write_all(b"GET /slow HTTP/1.1\r\nHost: h\r\nx-echo-delay-ms: 400\r\n\r\n")
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        let start = Instant::now();
        let shutdown = tokio::spawn(async move { dp.shutdown().await });
        assert!(
            closed(&mut idle, Duration::from_secs(2)).await,
            "idle connection closed on drain"
        );
        assert!(
            start.elapsed() < Duration::from_millis(350),
            "at once, before the busy one"
        );
        let r = read_responses(&mut busy, 1, false).await;
        assert!(r[0].starts_with("HTTP/1.1 200"), "{}", r[0]);
        assert!(
            r[0].to_lowercase().contains("connection: close"),
            "{}",
            r[0]
        );
        assert!(closed(&mut busy, Duration::from_secs(2)).await);
        shutdown.await.unwrap();
    })
    .await
    .unwrap();
}
