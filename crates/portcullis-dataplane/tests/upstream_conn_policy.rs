//! A BackendTrafficPolicy's upstream connection settings on upstream
//! protocols other than cleartext HTTP/1.1: HTTP/2 prior knowledge (h2c
//! Service ports, through the policy's hyper pool), TLS (BackendTLSPolicy;
//! HTTP/1.1 over TLS goes through the lean client) and WebSocket upgrades
//! (the hyper pool). `circuitBreaker.maxConnections`,
//! `maxPendingRequests`, `maxRequestsPerConnection`,
//! `timeout.http.connectionIdleTimeout` and `maxConnectionDuration`, seen
//! from backends on 127.0.0.1 that record every connection.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::tls::*;
use common::*;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use portcullis_ir::traffic::{BackendTraffic, CircuitBreaker, ConnectionTimeouts};
use tokio::net::TcpListener;

/// One accepted connection, as the backend saw it.
#[derive(Default, Debug)]
struct ConnLog {
    requests: AtomicUsize,
    /// When it closed (`None` while open).
    closed: Mutex<Option<Instant>>,
}

/// A backend (h2c prior knowledge or HTTP/1.1, or either over TLS by ALPN)
/// answering `200 <connection number>` after the request's `x-delay-ms`.
struct Recorder {
    addr: SocketAddr,
    conns: Arc<Mutex<Vec<Arc<ConnLog>>>>,
    open: Arc<AtomicUsize>,
    max_open: Arc<AtomicUsize>,
}

impl Recorder {
    async fn start(tls: Option<&Leaf>) -> Recorder {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let acceptor = tls.map(|leaf| {
            portcullis_tls::tokio_rustls::TlsAcceptor::from(server_config(
                leaf,
                &[b"h2", b"http/1.1"],
            ))
        });
        let r = Recorder {
            addr: listener.local_addr().unwrap(),
            conns: Arc::default(),
            open: Arc::default(),
            max_open: Arc::default(),
        };
        let (conns, open, max_open) = (r.conns.clone(), r.open.clone(), r.max_open.clone());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let log = Arc::new(ConnLog::default());
                let n = {
                    let mut c = conns.lock().unwrap();
                    c.push(log.clone());
                    c.len()
                };
                let now = open.fetch_add(1, Ordering::SeqCst) + 1;
                max_open.fetch_max(now, Ordering::SeqCst);
                let (open, acceptor) = (open.clone(), acceptor.clone());
                tokio::spawn(async move {
                    let l = log.clone();
                    let svc = service_fn(move |req: ::http::Request<hyper::body::Incoming>| {
                        l.requests.fetch_add(1, Ordering::SeqCst);
                        let delay = req
                            .headers()
                            .get("x-delay-ms")
                            .and_then(|v| v.to_str().ok()?.parse().ok())
                            .unwrap_or(0u64);
                        async move {
                            tokio::time::sleep(Duration::from_millis(delay)).await;
                            Ok::<_, Infallible>(::http::Response::new(Full::new(Bytes::from(
                                n.to_string(),
                            ))))
                        }
                    });
                    let server = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                    match acceptor {
                        None => {
                            let _ = server.serve_connection(TokioIo::new(tcp), svc).await;
                        }
                        Some(a) => {
                            if let Ok(s) = a.accept(tcp).await {
                                let _ = server.serve_connection(TokioIo::new(s), svc).await;
                            }
                        }
                    }
                    *log.closed.lock().unwrap() = Some(Instant::now());
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        r
    }

    fn conns(&self) -> Vec<Arc<ConnLog>> {
        self.conns.lock().unwrap().clone()
    }

    fn requests_per_conn(&self) -> Vec<usize> {
        self.conns()
            .iter()
            .map(|c| c.requests.load(Ordering::SeqCst))
            .collect()
    }
}

fn traffic(cb: Option<CircuitBreaker>, t: Option<ConnectionTimeouts>) -> Arc<BackendTraffic> {
    Arc::new(BackendTraffic {
        circuit_breaker: cb,
        timeouts: t,
        ..Default::default()
    })
}

fn breaker(max_connections: u64, max_pending: u64, per_connection: u64) -> CircuitBreaker {
    CircuitBreaker {
        max_parallel_requests: 1024,
        max_parallel_retries: 1024,
        max_connections,
        max_pending_requests: max_pending,
        max_requests_per_connection: per_connection,
    }
}

enum Upstream<'a> {
    H2c,
    Tls(&'a Ca),
}

/// A gateway with one route to `backend` under `policy`.
async fn gateway(
    backend: SocketAddr,
    upstream: Upstream<'_>,
    policy: Arc<BackendTraffic>,
) -> (portcullis_dataplane::Dataplane, SocketAddr) {
    let b = match upstream {
        Upstream::H2c => service("up", &[backend], Some("kubernetes.io/h2c")),
        Upstream::Tls(ca) => tls_backend("up", backend, "up.example.com", ca),
    };
    let mut r = rule("up", prefix("/"), vec![wb(1, b)]);
    r.action.backend_traffic = Some(policy);
    serve(vec![r]).await
}

async fn get_delayed(c: &TestClient, addr: SocketAddr, delay_ms: u64) -> Got {
    send(
        c,
        addr,
        "GET",
        "front.example",
        "/",
        &[("x-delay-ms", &delay_ms.to_string())],
    )
    .await
}

async fn wait_until(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let t = Instant::now();
    while !f() {
        assert!(t.elapsed() < limit, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// HTTP/2 multiplexes: a connection is given at most
/// `maxRequestsPerConnection` requests, then a new one is made.
#[tokio::test]
async fn h2c_connections_carry_at_most_max_requests_per_connection() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let be = Recorder::start(None).await;
        let (_dp, addr) = gateway(
            be.addr,
            Upstream::H2c,
            traffic(Some(breaker(1024, 1024, 2)), None),
        )
        .await;
        let c = client();
        let mut bodies = vec![];
        for _ in 0..6 {
            let g = get_delayed(&c, addr, 0).await;
            assert_eq!(g.status, 200, "{:?}", g.body);
            bodies.push(String::from_utf8_lossy(&g.body).into_owned());
        }
        assert_eq!(bodies, ["1", "1", "2", "2", "3", "3"]);
        assert_eq!(be.requests_per_conn(), [2, 2, 2]);
        // A spent connection is closed once its streams have ended.
        wait_until(
            "the spent connections to close",
            Duration::from_secs(5),
            || {
                be.conns()[..2]
                    .iter()
                    .all(|c| c.closed.lock().unwrap().is_some())
            },
        )
        .await;
    })
    .await
    .unwrap();
}

/// `maxConnections` 1 and `maxPendingRequests` 0 over HTTP/2 with one
/// request per connection: while a request holds the only connection, a
/// second is refused at once (503 upstream overflow), not queued.
#[tokio::test]
async fn h2c_max_connections_refuses_past_the_limit_without_pending_room() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let be = Recorder::start(None).await;
        let (_dp, addr) = gateway(
            be.addr,
            Upstream::H2c,
            traffic(Some(breaker(1, 0, 1)), None),
        )
        .await;
        let c = client();
        let slow = {
            let c = c.clone();
            tokio::spawn(async move { get_delayed(&c, addr, 800).await })
        };
        wait_until(
            "the slow request to reach the backend",
            Duration::from_secs(5),
            || be.requests_per_conn() == [1],
        )
        .await;
        let t = Instant::now();
        let refused = get_delayed(&c, addr, 0).await;
        assert_eq!(refused.status, 503, "{:?}", refused.body);
        assert!(
            t.elapsed() < Duration::from_millis(500),
            "refused at once: {:?}",
            t.elapsed()
        );
        assert_eq!(slow.await.unwrap().status, 200);
        // The slot is free again once the spent connection closed.
        wait_until(
            "the first connection to close",
            Duration::from_secs(5),
            || be.open.load(Ordering::SeqCst) == 0,
        )
        .await;
        assert_eq!(get_delayed(&c, addr, 0).await.status, 200);
        assert_eq!(be.max_open.load(Ordering::SeqCst), 1);
    })
    .await
    .unwrap();
}

/// TLS (HTTP/1.1 by ALPN), `maxConnections` 1 with room for pending
/// requests: concurrent requests wait for the one connection and all
/// succeed; the backend never sees two connections at once. (The lean
/// client's per-worker pools keep no idle connection that would hold the
/// last slot, so each request here has its own connection.)
#[tokio::test]
async fn tls_max_connections_makes_requests_wait_for_the_one_connection() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let ca = Ca::new("backend ca");
        let leaf = ca.leaf(&["up.example.com"]);
        let be = Recorder::start(Some(&leaf)).await;
        let (_dp, addr) = gateway(
            be.addr,
            Upstream::Tls(&ca),
            traffic(Some(breaker(1, 8, 0)), None),
        )
        .await;
        let c = client();
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let c = c.clone();
                tokio::spawn(async move { get_delayed(&c, addr, 150).await })
            })
            .collect();
        for t in tasks {
            let g = t.await.unwrap();
            assert_eq!(g.status, 200, "{:?}", g.body);
        }
        assert_eq!(be.max_open.load(Ordering::SeqCst), 1, "{:?}", be.conns());
        assert_eq!(be.requests_per_conn().iter().sum::<usize>(), 4);
        // Sequential requests after it: still one connection at a time.
        for _ in 0..3 {
            assert_eq!(get_delayed(&c, addr, 0).await.status, 200);
        }
        assert_eq!(be.max_open.load(Ordering::SeqCst), 1, "{:?}", be.conns());
    })
    .await
    .unwrap();
}

/// TLS (HTTP/1.1): `maxRequestsPerConnection` 2 and
/// `connectionIdleTimeout` 300 ms: three connections for five sequential
/// requests, and the last, idle, is closed by the gateway after the idle
/// timeout.
#[tokio::test]
async fn tls_connections_are_capped_in_requests_and_closed_when_idle() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let ca = Ca::new("backend ca");
        let leaf = ca.leaf(&["up.example.com"]);
        let be = Recorder::start(Some(&leaf)).await;
        let t = ConnectionTimeouts {
            idle_ms: Some(300),
            ..Default::default()
        };
        let (_dp, addr) = gateway(
            be.addr,
            Upstream::Tls(&ca),
            traffic(Some(breaker(1024, 1024, 2)), Some(t)),
        )
        .await;
        let c = client();
        for _ in 0..5 {
            assert_eq!(get_delayed(&c, addr, 0).await.status, 200);
            // Let the exchange end and the connection go back to the pool.
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        assert_eq!(be.requests_per_conn(), [2, 2, 1]);
        let done = Instant::now();
        wait_until(
            "the idle connection to close",
            Duration::from_secs(5),
            || be.conns()[2].closed.lock().unwrap().is_some(),
        )
        .await;
        let waited = done.elapsed();
        assert!(
            waited >= Duration::from_millis(200),
            "closed after the idle timeout: {waited:?}"
        );
    })
    .await
    .unwrap();
}

/// h2c with `maxConnectionDuration` 400 ms: a connection older than that
/// is given no new request; the next request opens a new one, and the old
/// one closes.
#[tokio::test]
async fn h2c_connections_are_retired_at_max_connection_duration() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let be = Recorder::start(None).await;
        let t = ConnectionTimeouts {
            max_duration_ms: Some(400),
            ..Default::default()
        };
        let (_dp, addr) = gateway(be.addr, Upstream::H2c, traffic(None, Some(t))).await;
        let c = client();
        assert_eq!(get_delayed(&c, addr, 0).await.body, "1");
        assert_eq!(get_delayed(&c, addr, 0).await.body, "1");
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(get_delayed(&c, addr, 0).await.body, "2");
        wait_until(
            "the old connection to close",
            Duration::from_secs(5),
            || be.conns()[0].closed.lock().unwrap().is_some(),
        )
        .await;
        assert_eq!(be.requests_per_conn(), [2, 1]);
    })
    .await
    .unwrap();
}

/// Without a connection policy HTTP/2 still shares one pooled connection
/// (the shared clients), the reference for the tests above.
#[tokio::test]
async fn without_a_policy_h2c_requests_share_one_connection() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let be = Recorder::start(None).await;
        let mut r = rule(
            "up",
            prefix("/"),
            vec![wb(1, service("up", &[be.addr], Some("kubernetes.io/h2c")))],
        );
        r.action.backend_traffic = None;
        let (_dp, addr) = serve(vec![r]).await;
        let c = client();
        for _ in 0..5 {
            assert_eq!(get_delayed(&c, addr, 0).await.body, "1");
        }
        assert_eq!(be.requests_per_conn(), [5]);
    })
    .await
    .unwrap();
}

/// A WebSocket upgrade to a backend with `maxConnections` 1 and no pending
/// room: the tunnel works and holds the backend's only connection slot
/// while it is open (a second upgrade is refused 503 at once); once the
/// first tunnel closes, a new one is admitted.
#[tokio::test]
async fn an_upgraded_connection_holds_its_slot_until_the_tunnel_closes() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    tokio::time::timeout(TEST_TIMEOUT, async {
        let e = Echo::start("ws").await;
        let mut r = rule("ws", prefix("/"), vec![wb(1, e.backend())]);
        r.action.backend_traffic = Some(traffic(Some(breaker(1, 0, 0)), None));
        let (_dp, addr) = serve(vec![r]).await;
        let upgrade = |addr| async move {
            let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
            s.write_all(
                b"GET /chat HTTP/1.1\r\nHost: ws.example\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
            )
            .await
            .unwrap();
            let mut head = Vec::new();
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                if s.read(&mut b).await.unwrap() == 0 {
                    break;
                }
                head.push(b[0]);
            }
            (s, String::from_utf8_lossy(&head).into_owned())
        };
        let (mut first, head) = upgrade(addr).await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        first.write_all(b"hello").await.unwrap();
        let mut buf = [0u8; 5];
        first.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello");
        let (_second, head) = upgrade(addr).await;
        assert!(head.starts_with("HTTP/1.1 503"), "the only slot is the tunnel's: {head}");
        drop(first);
        let t = Instant::now();
        loop {
            let (mut s, head) = upgrade(addr).await;
            if head.starts_with("HTTP/1.1 101") {
                s.write_all(b"again").await.unwrap();
                s.read_exact(&mut buf).await.unwrap();
                assert_eq!(&buf, b"again");
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(5), "slot not freed: {head}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .unwrap();
}
