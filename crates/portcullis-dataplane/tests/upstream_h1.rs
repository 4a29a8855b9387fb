//! The lean HTTP/1.1 upstream client against a scripted raw-TCP backend:
//! response framing (length, chunked with trailers, until close, HEAD, 204,
//! interim 100), connection reuse and its limits, a pooled connection the
//! backend closed, request bodies (length, chunked) and an early answer to
//! an upload.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A backend that answers by request path (see `answer`), counting the
/// connections it accepted and remembering the last request body.
struct Scripted {
    addr: SocketAddr,
    conns: Arc<AtomicUsize>,
    last_body: Arc<std::sync::Mutex<Vec<u8>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Scripted {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn find(h: &[u8], pat: &[u8]) -> Option<usize> {
    h.windows(pat.len()).position(|w| w == pat)
}

/// Read one request (head and body by Content-Length or chunked) from `s`,
/// with `buf` holding bytes already read. `None` at the end of the connection.
async fn read_request(s: &mut TcpStream, buf: &mut Vec<u8>) -> Option<(String, Vec<u8>)> {
    let mut tmp = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = find(buf, b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut tmp).await.ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&tmp[..n]);
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
    buf.drain(..head_end);
    if head.contains("/early") {
        return Some((head, Vec::new()));
    }
    let mut body = Vec::new();
    if let Some(l) = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length: "))
    {
        let n: usize = l.trim().parse().unwrap();
        while buf.len() < n {
            let k = s.read(&mut tmp).await.ok()?;
            if k == 0 {
                return None;
            }
            buf.extend_from_slice(&tmp[..k]);
        }
        body = buf.drain(..n).collect();
    } else if head.contains("transfer-encoding: chunked") {
        loop {
            while find(buf, b"\r\n").is_none() {
                let k = s.read(&mut tmp).await.ok()?;
                if k == 0 {
                    return None;
                }
                buf.extend_from_slice(&tmp[..k]);
            }
            let i = find(buf, b"\r\n").unwrap();
            let size = usize::from_str_radix(std::str::from_utf8(&buf[..i]).unwrap(), 16).unwrap();
            while buf.len() < i + 2 + size + 2 {
                let k = s.read(&mut tmp).await.ok()?;
                if k == 0 {
                    return None;
                }
                buf.extend_from_slice(&tmp[..k]);
            }
            body.extend_from_slice(&buf[i + 2..i + 2 + size]);
            buf.drain(..i + 2 + size + 2);
            if size == 0 {
                break;
            }
        }
    }
    Some((head, body))
}

/// What to answer, and whether to close afterwards.
fn answer(head: &str) -> (Vec<u8>, bool) {
    let r = |s: &str| s.as_bytes().to_vec();
    if head.starts_with("head ") {
        return (r("HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\n"), false);
    }
    let path = head.split(' ').nth(1).unwrap_or("/");
    match path {
        "/chunked" => (
            r(
                "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ntrailer: x-t\r\n\r\n\
               5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nx-t: done\r\n\r\n",
            ),
            false,
        ),
        "/eof" => (r("HTTP/1.1 200 OK\r\n\r\nuntil the end"), true),
        "/close" => (
            r("HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok"),
            false,
        ),
        "/204" => (r("HTTP/1.1 204 No Content\r\n\r\n"), false),
        "/interim" => (
            r("HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"),
            false,
        ),
        "/early" => (
            r(
                "HTTP/1.1 413 Payload Too Large\r\ncontent-length: 3\r\nconnection: close\r\n\r\nbig",
            ),
            true,
        ),
        "/short" => (r("HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc"), true),
        _ => (
            r("HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nhello"),
            false,
        ),
    }
}

impl Scripted {
    async fn start() -> Scripted {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        let conns = Arc::new(AtomicUsize::new(0));
        let last_body = Arc::new(std::sync::Mutex::new(Vec::new()));
        let (c, lb) = (conns.clone(), last_body.clone());
        let task = tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let lb = lb.clone();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    while let Some((head, body)) = read_request(&mut s, &mut buf).await {
                        *lb.lock().unwrap() = body;
                        let (out, close) = answer(&head);
                        if s.write_all(&out).await.is_err() {
                            return;
                        }
                        // `/idle-close`: answer, then close the idle connection.
                        if close || head.contains("/idle-close") {
                            if head.contains("/idle-close") {
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                            return;
                        }
                    }
                });
            }
        });
        Scripted {
            addr,
            conns,
            last_body,
            task,
        }
    }

    fn conns(&self) -> usize {
        self.conns.load(Ordering::SeqCst)
    }
}

async fn gateway(backend: &Scripted) -> (portcullis_dataplane::Dataplane, SocketAddr) {
    serve(vec![rule(
        "r",
        prefix("/"),
        vec![wb(1, service("scripted", &[backend.addr], None))],
    )])
    .await
}

/// Send raw request bytes on `s` and read one response (by Content-Length or
/// chunked, as this test's gateway answers HTTP/1.1 clients).
async fn exchange(s: &mut TcpStream, req: &[u8]) -> String {
    s.write_all(req).await.unwrap();
    let mut out = Vec::new();
    let mut tmp = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut tmp))
            .await
            .expect("response in time")
            .unwrap();
        out.extend_from_slice(&tmp[..n]);
        let text = String::from_utf8_lossy(&out).to_lowercase();
        if let Some(i) = text.find("\r\n\r\n") {
            let head = &text[..i];
            if req.starts_with(b"HEAD ") {
                return text;
            }
            if head.contains("transfer-encoding: chunked") {
                if text.ends_with("\r\n\r\n") && text[i + 4..].contains("0\r\n") {
                    return text;
                }
            } else {
                let len = head
                    .lines()
                    .find_map(|l| l.strip_prefix("content-length: "))
                    .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                if out.len() >= i + 4 + len {
                    return text;
                }
            }
        }
        if n == 0 {
            return text;
        }
    }
}

#[tokio::test]
async fn framing_of_responses() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let b = Scripted::start().await;
        let (_dp, addr) = gateway(&b).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        let get = |p: &str| format!("GET {p} HTTP/1.1\r\nhost: h\r\nte: trailers\r\n\r\n");

        let t = exchange(&mut s, get("/len").as_bytes()).await;
        assert!(
            t.starts_with("http/1.1 200") && t.ends_with("\r\n\r\nhello"),
            "{t}"
        );

        // Chunked with an extension and a trailer: re-chunked to the client,
        // the trailer passed through (the client sent `TE: trailers`).
        let t = exchange(&mut s, get("/chunked").as_bytes()).await;
        assert!(t.contains("transfer-encoding: chunked"), "{t}");
        let body = &t[t.find("\r\n\r\n").unwrap() + 4..];
        let payload: String = body
            .split("\r\n")
            .filter(|l| {
                !l.is_empty()
                    && u64::from_str_radix(l.split(';').next().unwrap(), 16).is_err()
                    && !l.starts_with("x-t")
            })
            .collect();
        assert_eq!(payload, "hello, world", "{t}");
        assert!(body.contains("x-t: done"), "trailer: {t}");

        let t = exchange(&mut s, b"HEAD /any HTTP/1.1\r\nhost: h\r\n\r\n").await;
        assert!(
            t.starts_with("http/1.1 200") && t.contains("content-length: 100"),
            "{t}"
        );
        assert!(t.ends_with("\r\n\r\n"), "HEAD has no body: {t}");

        let t = exchange(&mut s, get("/204").as_bytes()).await;
        assert!(t.starts_with("http/1.1 204"), "{t}");

        let t = exchange(&mut s, get("/interim").as_bytes()).await;
        assert!(
            t.starts_with("http/1.1 200") && t.ends_with("ok"),
            "interim 100 skipped: {t}"
        );

        // All of the above on one upstream connection.
        assert_eq!(b.conns(), 1, "one pooled upstream connection");

        // A body delimited by the end of the connection: the connection is not reused.
        let t = exchange(&mut s, get("/eof").as_bytes()).await;
        assert!(
            t.starts_with("http/1.1 200") && t.contains("until the end"),
            "{t}"
        );
        let t = exchange(&mut s, get("/len").as_bytes()).await;
        assert!(t.ends_with("hello"), "{t}");
        assert_eq!(
            b.conns(),
            2,
            "a new upstream connection after a body ended by close"
        );

        // `Connection: close` from upstream: not reused either.
        let t = exchange(&mut s, get("/close").as_bytes()).await;
        assert!(t.ends_with("ok"), "{t}");
        let t = exchange(&mut s, get("/len").as_bytes()).await;
        assert!(t.ends_with("hello"), "{t}");
        assert_eq!(b.conns(), 3);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn truncated_upstream_body_is_not_passed_off_as_complete() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let b = Scripted::start().await;
        let (_dp, addr) = gateway(&b).await;
        let (text, closed) = raw(addr, b"GET /short HTTP/1.1\r\nhost: h\r\n\r\n").await;
        // Three bytes of ten arrived: the client connection is cut (before or
        // after the head went out), so the client never sees a complete body.
        assert!(closed, "connection closed: {text}");
        if let Some(i) = text.find("\r\n\r\n") {
            assert!(text.len() - (i + 4) < 10, "short body: {text}");
        }
        assert_eq!(b.conns(), 1);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn pooled_connection_closed_by_the_backend_is_not_an_error() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let b = Scripted::start().await;
        let (_dp, addr) = gateway(&b).await;
        let c = client();
        for i in 0..5 {
            // The backend closes each connection 20 ms after answering.
            let g = send(&c, addr, "GET", "h", "/idle-close", &[]).await;
            assert_eq!(g.status, 200, "request {i}");
            assert_eq!(&g.body[..], b"hello");
            tokio::time::sleep(Duration::from_millis(60)).await;
        }
        assert_eq!(b.conns(), 5, "a closed pooled connection is never reused");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn request_bodies_are_framed() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let b = Scripted::start().await;
        let (_dp, addr) = gateway(&b).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        // Small, buffered: Content-Length.
        let t = exchange(
            &mut s,
            b"POST /up HTTP/1.1\r\nhost: h\r\ncontent-length: 4\r\n\r\nabcd",
        )
        .await;
        assert!(t.ends_with("hello"), "{t}");
        assert_eq!(&b.last_body.lock().unwrap()[..], b"abcd");
        // Chunked from the client: streamed upstream, chunked.
        let t = exchange(
            &mut s,
            b"POST /up HTTP/1.1\r\nhost: h\r\ntransfer-encoding: chunked\r\n\r\n3\r\nxyz\r\n2\r\n12\r\n0\r\n\r\n",
        )
        .await;
        assert!(t.ends_with("hello"), "{t}");
        assert_eq!(&b.last_body.lock().unwrap()[..], b"xyz12");
        // Larger than the buffering limit (64 KiB): streamed with its length.
        let big = vec![b'q'; 200 * 1024];
        let mut req = format!(
            "PUT /up HTTP/1.1\r\nhost: h\r\ncontent-length: {}\r\n\r\n",
            big.len()
        )
        .into_bytes();
        req.extend_from_slice(&big);
        let t = exchange(&mut s, &req).await;
        assert!(t.ends_with("hello"), "{t}");
        assert_eq!(b.last_body.lock().unwrap().len(), big.len());
        assert_eq!(b.conns(), 1, "bodies sent whole keep the connection reusable");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn early_answer_to_an_upload_is_relayed() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let b = Scripted::start().await;
        let (_dp, addr) = gateway(&b).await;
        // 4 MiB streamed; the backend answers 413 without reading it and closes.
        let c = client();
        let g = send_body(
            &c,
            addr,
            "POST",
            "h",
            "/early",
            &[],
            Bytes::from(vec![b'z'; 4 << 20]),
        )
        .await;
        assert_eq!(g.status, 413);
        assert_eq!(&g.body[..], b"big");
        // The next request works (a new upstream connection).
        let g = send(&c, addr, "GET", "h", "/len", &[]).await;
        assert_eq!(g.status, 200);
        assert_eq!(b.conns(), 2);
    })
    .await
    .unwrap();
}
