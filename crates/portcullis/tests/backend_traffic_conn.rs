//! BackendTrafficPolicy upstream connection settings through `portcullis run`:
//! `circuitBreaker.maxConnections`, `maxPendingRequests`,
//! `maxRequestsPerConnection`, `timeout.tcp.connectTimeout`,
//! `timeout.http.connectionIdleTimeout` and `maxConnectionDuration`, seen from
//! a backend on 127.0.0.1 that records its connections.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{free_addr, free_port, start, wait_for};

/// One accepted connection, as the backend saw it.
#[derive(Default)]
struct ConnLog {
    requests: AtomicUsize,
    /// When the gateway closed it (`None` while open).
    closed: Mutex<Option<Instant>>,
}

/// A backend answering `200 <n>` (n: the connection's number) after `delay_ms`,
/// recording every connection.
struct Backend {
    addr: SocketAddr,
    delay_ms: Arc<AtomicU64>,
    conns: Arc<Mutex<Vec<Arc<ConnLog>>>>,
    open: Arc<AtomicUsize>,
    max_open: Arc<AtomicUsize>,
}

impl Backend {
    fn start() -> Backend {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let b = Backend {
            addr: l.local_addr().unwrap(),
            delay_ms: Arc::default(),
            conns: Arc::default(),
            open: Arc::default(),
            max_open: Arc::default(),
        };
        let (delay, conns, open, max_open) = (
            b.delay_ms.clone(),
            b.conns.clone(),
            b.open.clone(),
            b.max_open.clone(),
        );
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                let log = Arc::new(ConnLog::default());
                let n = {
                    let mut c = conns.lock().unwrap();
                    c.push(log.clone());
                    c.len()
                };
                open.fetch_add(1, Ordering::SeqCst);
                // Counted 200 ms after the accept: a connection the proxy
                // closed just before opening this one is still counted until
                // its thread sees the EOF (late on a loaded machine), while a
                // connection really open beside the others stays open for
                // the whole request (the backend delays its answers).
                {
                    let (open, max_open) = (open.clone(), max_open.clone());
                    std::thread::spawn(move || {
                        std::thread::sleep(Duration::from_millis(200));
                        max_open.fetch_max(open.load(Ordering::SeqCst), Ordering::SeqCst);
                    });
                }
                let (delay, open) = (delay.clone(), open.clone());
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 8192];
                    let mut acc = Vec::new();
                    loop {
                        let n_read = match s.read(&mut buf) {
                            Ok(0) | Err(_) => break,
                            Ok(k) => k,
                        };
                        acc.extend_from_slice(&buf[..n_read]);
                        while let Some(end) = acc.windows(4).position(|w| w == b"\r\n\r\n") {
                            acc.drain(..end + 4);
                            log.requests.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(Duration::from_millis(
                                delay.load(Ordering::Relaxed),
                            ));
                            let body = n.to_string();
                            let resp = format!(
                                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                                body.len()
                            );
                            if s.write_all(resp.as_bytes()).is_err() {
                                break;
                            }
                        }
                    }
                    *log.closed.lock().unwrap() = Some(Instant::now());
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        b
    }

    fn conns(&self) -> Vec<Arc<ConnLog>> {
        self.conns.lock().unwrap().clone()
    }
}

/// Gateway on `port`; per `(route, path, backend port, policy spec)`, a
/// Service, an HTTPRoute and a BackendTrafficPolicy.
fn config(port: u16, routes: &[(&str, &str, u16, &str)]) -> String {
    let mut y = format!(
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
  listeners: [{{name: http, port: {port}, protocol: HTTP}}]
"#
    );
    for (name, path, bport, spec) in routes {
        y.push_str(&format!(
            r#"---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default}}
spec:
  ports: [{{name: http, port: 80}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: {name}-1, namespace: default, labels: {{kubernetes.io/service-name: {name}}}}}
addressType: IPv4
ports: [{{name: http, port: {bport}}}]
endpoints: [{{addresses: ["127.0.0.1"], conditions: {{ready: true}}}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: {path}}}}}]
    backendRefs: [{{name: {name}, port: 80}}]
---
apiVersion: portcullis.dev/v1alpha1
kind: BackendTrafficPolicy
metadata: {{name: {name}, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: {name}}}]
{spec}"#
        ));
    }
    y
}

struct Env {
    gw: SocketAddr,
    _p: common::Proc,
    _dir: tempfile::TempDir,
}

fn env(routes: &[(&str, &str, u16, &str)]) -> Env {
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gw.yaml"), config(port, routes)).unwrap();
    let p = start(dir.path(), free_addr(), &[]);
    let gw: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_for("the gateway port", Duration::from_secs(10), || {
        TcpStream::connect_timeout(&gw, Duration::from_millis(200)).is_ok()
    });
    Env {
        gw,
        _p: p,
        _dir: dir,
    }
}

/// One request on a fresh client connection; (status, body, time taken).
fn request(addr: SocketAddr, path: &str) -> (u16, String, Duration) {
    let t = Instant::now();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: h\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body, t.elapsed())
}

/// A keep-alive client connection: all its requests run on one gateway worker.
struct Client(BufReader<TcpStream>);

impl Client {
    fn new(addr: SocketAddr) -> Client {
        let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
        Client(BufReader::new(s))
    }

    /// (status, body).
    fn get(&mut self, path: &str) -> (u16, String) {
        write!(self.0.get_mut(), "GET {path} HTTP/1.1\r\nhost: h\r\n\r\n").unwrap();
        let mut line = String::new();
        self.0.read_line(&mut line).unwrap();
        let status = line.split_whitespace().nth(1).unwrap().parse().unwrap();
        let mut len = 0;
        loop {
            let mut h = String::new();
            self.0.read_line(&mut h).unwrap();
            if h == "\r\n" {
                break;
            }
            if let Some((k, v)) = h.split_once(':')
                && k.eq_ignore_ascii_case("content-length")
            {
                len = v.trim().parse().unwrap();
            }
        }
        let mut body = vec![0u8; len];
        self.0.read_exact(&mut body).unwrap();
        (status, String::from_utf8(body).unwrap())
    }
}

#[test]
fn max_connections_and_pending_requests_fail_fast_and_requests_per_connection_are_bounded() {
    let slow = Backend::start();
    let reuse = Backend::start();
    slow.delay_ms.store(1500, Ordering::Relaxed);
    let e = env(&[
        (
            "slow",
            "/slow",
            slow.addr.port(),
            "  circuitBreaker: {maxConnections: 2, maxPendingRequests: 1}\n",
        ),
        (
            "reuse",
            "/reuse",
            reuse.addr.port(),
            "  circuitBreaker: {maxRequestsPerConnection: 3}\n",
        ),
    ]);

    // Six at once to a backend that takes 1.5 s: two get the two
    // connections, one waits for a connection (and is served when one is
    // free), three are refused at once with 503.
    let gw = e.gw;
    let answers: Vec<(u16, String, Duration)> = (0..6)
        .map(|_| std::thread::spawn(move || request(gw, "/slow")))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    let ok: Vec<_> = answers.iter().filter(|a| a.0 == 200).collect();
    let fast_503 = answers
        .iter()
        .filter(|a| a.0 == 503 && a.1 == "upstream overflow\n" && a.2 < Duration::from_millis(1000))
        .count();
    assert_eq!((ok.len(), fast_503), (3, 3), "{answers:?}");
    assert!(
        ok.iter()
            .filter(|a| a.2 >= Duration::from_millis(2900))
            .count()
            == 1,
        "the pending request is served after a connection frees up: {answers:?}"
    );
    assert!(
        slow.max_open.load(Ordering::SeqCst) <= 2,
        "never more than maxConnections open: {}",
        slow.max_open.load(Ordering::SeqCst)
    );

    // One client connection (so one gateway worker): upstream connections
    // are reused, each for at most three requests.
    let before = reuse.conns().len();
    let mut c = Client::new(e.gw);
    for _ in 0..7 {
        assert_eq!(c.get("/reuse").0, 200);
    }
    let per_conn: Vec<usize> = reuse.conns()[before..]
        .iter()
        .map(|l| l.requests.load(Ordering::SeqCst))
        .collect();
    assert_eq!(per_conn, [3, 3, 1], "requests per upstream connection");
    // A connection that reached the limit is closed, not left idle.
    let first = reuse.conns()[before].clone();
    wait_for(
        "the used-up connection closed",
        Duration::from_secs(5),
        || first.closed.lock().unwrap().is_some(),
    );
}

#[test]
fn connect_timeout_bounds_a_connect_that_is_never_answered() {
    // A listener with a backlog of one, filled: the kernel drops further SYNs
    // on 127.0.0.1, so a connect neither succeeds nor fails.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    sock.listen(0).unwrap();
    let hole: SocketAddr = sock.local_addr().unwrap().as_socket().unwrap();
    let mut held = vec![];
    for _ in 0..4 {
        if let Ok(s) = TcpStream::connect_timeout(&hole, Duration::from_millis(300)) {
            held.push(s);
        }
    }
    let t = Instant::now();
    assert!(
        TcpStream::connect_timeout(&hole, Duration::from_millis(500)).is_err(),
        "the backlog is full"
    );
    assert!(t.elapsed() >= Duration::from_millis(400), "a connect hangs");

    let e = env(&[(
        "hole",
        "/hole",
        hole.port(),
        "  timeout:\n    tcp: {connectTimeout: 300ms}\n",
    )]);
    // (Without the policy, the built-in connect timeout is 5 s.)
    for _ in 0..2 {
        let (status, body, took) = request(e.gw, "/hole");
        assert_eq!(status, 502, "{body}");
        assert_eq!(body, "upstream connect error\n");
        assert!(
            took >= Duration::from_millis(250) && took < Duration::from_millis(2500),
            "{took:?}"
        );
    }
    drop(held);
}

#[test]
fn idle_and_old_upstream_connections_are_closed() {
    let idle = Backend::start();
    let aged = Backend::start();
    let e = env(&[
        (
            "idle",
            "/idle",
            idle.addr.port(),
            "  timeout:\n    http: {connectionIdleTimeout: 1s}\n",
        ),
        (
            "aged",
            "/aged",
            aged.addr.port(),
            "  timeout:\n    http: {maxConnectionDuration: 2s}\n",
        ),
    ]);

    // An idle pooled connection is closed by the gateway about 1 s after its
    // last response: the backend sees the close without any further request.
    let mut c = Client::new(e.gw);
    let before = idle.conns().len();
    let (_, body) = c.get("/idle");
    let done = Instant::now();
    let n: usize = body.parse().unwrap();
    assert!(n > 0);
    let log = idle.conns()[n - 1].clone();
    assert_eq!(c.get("/idle").1, body, "a pooled connection is reused");
    let done = done.max(Instant::now());
    wait_for("the idle connection closed", Duration::from_secs(6), || {
        log.closed.lock().unwrap().is_some()
    });
    let closed = log.closed.lock().unwrap().unwrap();
    assert!(
        closed.duration_since(done) >= Duration::from_millis(800),
        "closed {:?} after its last use: before the idle timeout",
        closed.duration_since(done)
    );
    assert!(idle.conns().len() >= before);

    // maxConnectionDuration: a connection is reused while young, not after.
    let mut c = Client::new(e.gw);
    let (_, first) = c.get("/aged");
    let born = Instant::now();
    let (_, again) = c.get("/aged");
    if born.elapsed() < Duration::from_millis(1500) {
        assert_eq!(again, first, "a young connection is reused");
    }
    let n: usize = first.parse().unwrap();
    let log = aged.conns()[n - 1].clone();
    wait_for("the old connection closed", Duration::from_secs(6), || {
        log.closed.lock().unwrap().is_some()
    });
    let (_, later) = c.get("/aged");
    assert_ne!(later, first, "an old connection is not reused");
}
