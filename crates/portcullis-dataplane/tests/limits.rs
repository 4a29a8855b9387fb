//! Every wait is bounded: slow and never-coming request bodies (fast path,
//! hyper path, HTTP/2), a backend that never answers (504), the header
//! timeout that starts only once the request body was sent, and the cap on
//! client connections per port. Real sockets on 127.0.0.1.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use portcullis_dataplane::Options;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count())
}

/// What a client saw until the server closed (`None`: still open at `within`).
async fn until_closed(s: &mut TcpStream, within: Duration) -> Option<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(String::from_utf8_lossy(&out).into_owned()),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// A backend that accepts, reads whatever comes and never answers; counts
/// its open connections.
async fn black_hole() -> (SocketAddr, tokio::task::JoinHandle<()>) {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    });
    (addr, task)
}

#[tokio::test]
async fn slow_and_never_coming_bodies_are_cut_and_descriptors_released() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let e = Echo::start("e").await;
        let opts = Options {
            body_idle_timeout: Duration::from_millis(600),
            body_timeout: Duration::from_secs(3),
            ..Options::default()
        };
        let (dp, addr) = serve_with(
            opts,
            vec![listener("gw/l", None, vec![rule("r", prefix("/"), vec![wb(1, e.backend())])])],
        )
        .await;
        let before = open_fds();
        // 150 clients that start a body and stop: a small one (the fast path
        // reads it), a large one and a chunked one (hyper streams them upstream).
        const N: usize = 150;
        let mut clients = Vec::with_capacity(N);
        for i in 0..N {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let head = match i % 3 {
                0 => "POST /small HTTP/1.1\r\nhost: h\r\ncontent-length: 100\r\n\r\n0123456789".to_string(),
                1 => "POST /large HTTP/1.1\r\nhost: h\r\ncontent-length: 1000000\r\n\r\n0123456789".to_string(),
                _ => "POST /chunked HTTP/1.1\r\nhost: h\r\ntransfer-encoding: chunked\r\n\r\na\r\n0123456789\r\n".to_string(),
            };
            s.write_all(head.as_bytes()).await.unwrap();
            clients.push(s);
        }
        // Let the proxy reach the backend for the streamed ones.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let during = open_fds();
        assert!(during >= before + N, "connections held: {before} -> {during}");
        let started = Instant::now();
        let results = futures_util::future::join_all(
            clients.iter_mut().map(|s| until_closed(s, Duration::from_secs(5))),
        )
        .await;
        let took = started.elapsed();
        for (i, r) in results.iter().enumerate() {
            let text = r.as_ref().unwrap_or_else(|| panic!("client {i} still open after 5 s"));
            assert!(
                text.is_empty() || text.starts_with("HTTP/1.1 408"),
                "client {i}: {text}"
            );
        }
        assert!(
            results.iter().filter(|r| r.as_deref().is_some_and(|t| t.starts_with("HTTP/1.1 408"))).count() >= N / 2,
            "most clients are told 408"
        );
        assert!(took < Duration::from_secs(3), "cut at the idle timeout, took {took:?}");
        drop(clients);
        // Every descriptor the proxy held for them (client and upstream) is released.
        let mut after = open_fds();
        for _ in 0..50 {
            if after <= before + 5 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
            after = open_fds();
        }
        eprintln!("open descriptors: before {before}, during {during}, after {after}");
        assert!(after <= before + 5, "descriptors released: before {before}, after {after}");
        let mut open = usize::MAX;
        for _ in 0..100 {
            open = dp.connection_stats().await[&addr].open;
            if open == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(open, 0, "connections still counted open");
        // The port still serves.
        assert_eq!(get(addr, "h", "/ok").await.status, 200);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_trickling_body_is_cut_at_the_total_deadline() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let e = Echo::start("e").await;
        let opts = Options {
            body_idle_timeout: Duration::from_secs(1),
            body_timeout: Duration::from_secs(2),
            ..Options::default()
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
        for (what, head) in [
            (
                "fast path",
                "POST / HTTP/1.1\r\nhost: h\r\ncontent-length: 1000\r\n\r\n",
            ),
            (
                "hyper",
                "POST / HTTP/1.1\r\nhost: h\r\ntransfer-encoding: chunked\r\n\r\n",
            ),
        ] {
            let mut s = TcpStream::connect(addr).await.unwrap();
            s.write_all(head.as_bytes()).await.unwrap();
            let started = Instant::now();
            // One byte every 300 ms: never idle for a second.
            let cut = loop {
                tokio::time::sleep(Duration::from_millis(300)).await;
                let byte: &[u8] = if what == "hyper" { b"1\r\nx\r\n" } else { b"x" };
                if s.write_all(byte).await.is_err() {
                    break started.elapsed();
                }
                if started.elapsed() > Duration::from_secs(6) {
                    panic!("{what}: trickling body never cut");
                }
                let mut buf = [0u8; 1024];
                if let Ok(Ok(n)) =
                    tokio::time::timeout(Duration::from_millis(1), s.read(&mut buf)).await
                {
                    let text = String::from_utf8_lossy(&buf[..n]).to_string();
                    assert!(n == 0 || text.starts_with("HTTP/1.1 408"), "{what}: {text}");
                    break started.elapsed();
                }
            };
            assert!(
                cut >= Duration::from_millis(1800) && cut < Duration::from_secs(4),
                "{what}: cut after {cut:?}"
            );
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_stalled_http2_request_body_gets_408_and_the_connection_lives_on() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let e = Echo::start("e").await;
        let opts = Options {
            body_idle_timeout: Duration::from_millis(600),
            ..Options::default()
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
        type Chunk = Result<Frame<Bytes>, std::convert::Infallible>;
        let (tx, rx) = tokio::sync::mpsc::channel::<Chunk>(1);
        tx.send(Ok(Frame::data(Bytes::from_static(b"start"))))
            .await
            .unwrap();
        let body = StreamBody::new(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|f| (f, rx))
        }));
        let c = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .http2_only(true)
            .build_http::<http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>>();
        let req = ::http::Request::builder()
            .method("POST")
            .uri(format!("http://{addr}/upload"))
            .header("host", "h")
            .body(body.boxed())
            .unwrap();
        let started = Instant::now();
        let resp = c.request(req).await.unwrap();
        assert_eq!(resp.status(), 408);
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
        drop(tx);
        // Only that stream was cut: the same client (connection) still serves.
        let req = ::http::Request::builder()
            .uri(format!("http://{addr}/next"))
            .header("host", "h")
            .body(http_body_util::Empty::new().map_err(|e| match e {}).boxed())
            .unwrap();
        assert_eq!(c.request(req).await.unwrap().status(), 200);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn a_backend_that_never_answers_gets_504_within_the_timeout() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let (hole, task) = black_hole().await;
        let opts = Options {
            upstream_header_timeout: Duration::from_secs(1),
            ..Options::default()
        };
        let backends = vec![
            rule(
                "h1",
                prefix("/h1"),
                vec![wb(1, service("hole", &[hole], None))],
            ),
            rule(
                "h2c",
                prefix("/h2c"),
                vec![wb(1, service("hole2", &[hole], Some("kubernetes.io/h2c")))],
            ),
        ];
        let (_dp, addr) = serve_with(opts, vec![listener("gw/l", None, backends)]).await;
        for (client, path) in [(client(), "/h1"), (client(), "/h2c"), (h2_client(), "/h1")] {
            let started = Instant::now();
            let got = send(&client, addr, "GET", "h", path, &[]).await;
            let took = started.elapsed();
            assert_eq!(got.status, 504, "{path}: {got:?}");
            assert!(
                took >= Duration::from_millis(900) && took < Duration::from_secs(3),
                "{path}: answered after {took:?}"
            );
        }
        task.abort();
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn the_header_timeout_starts_once_the_request_body_is_sent() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let e = Echo::start("e").await;
        let opts = Options {
            upstream_header_timeout: Duration::from_millis(800),
            body_idle_timeout: Duration::from_secs(2),
            ..Options::default()
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
        // A streamed body that takes 2 s to send (longer than the header
        // timeout), answered as soon as it ends: 200, not 504.
        let (tx, rx) =
            tokio::sync::mpsc::channel::<Result<Frame<Bytes>, std::convert::Infallible>>(1);
        let body = StreamBody::new(futures_util::stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|f| (f, rx))
        }));
        tokio::spawn(async move {
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_millis(400)).await;
                if tx
                    .send(Ok(Frame::data(Bytes::from_static(b"part "))))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        let req = ::http::Request::builder()
            .method("POST")
            .uri(format!("http://{addr}/upload"))
            .header("host", "h")
            .body(body.boxed())
            .unwrap();
        let c = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http::<http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>>(
        );
        let resp = c.request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        assert!(String::from_utf8_lossy(&body).contains("part part part part part"));
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn connections_past_the_cap_wait_in_the_backlog_and_are_counted() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let e = Echo::start("e").await;
        let opts = Options {
            max_connections_per_port: 2,
            ..Options::default()
        };
        let (dp, addr) = serve_with(
            opts,
            vec![listener(
                "gw/l",
                None,
                vec![rule("r", prefix("/"), vec![wb(1, e.backend())])],
            )],
        )
        .await;
        let first = TcpStream::connect(addr).await.unwrap();
        let _second = TcpStream::connect(addr).await.unwrap();
        // The kernel completes the third handshake; the proxy does not accept it.
        let mut third = TcpStream::connect(addr).await.unwrap();
        third
            .write_all(b"GET / HTTP/1.1\r\nhost: h\r\nconnection: close\r\n\r\n")
            .await
            .unwrap();
        assert_eq!(
            until_closed(&mut third, Duration::from_millis(500)).await,
            None
        );
        let stats = dp.connection_stats().await;
        assert_eq!(stats[&addr].open, 2, "{stats:?}");
        assert!(stats[&addr].cap_reached >= 1, "{stats:?}");
        // A slot frees: the waiting connection is served.
        drop(first);
        let answer = until_closed(&mut third, Duration::from_secs(5))
            .await
            .expect("served once a slot freed");
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    })
    .await
    .unwrap();
}
