//! `http1.preserveHeaderCase` on the paths other than "fast path to a
//! cleartext backend" (which `crates/portcullis/tests/client_traffic` covers
//! through `portcullis run`): a request handed to hyper (a chunked body), and
//! backends behind TLS (BackendTLSPolicy), both with the fast path's
//! requests (the lean client over TLS) and hyper's (hyper's client). Raw
//! sockets on 127.0.0.1 on both sides, so that the bytes are seen as sent.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::tls::*;
use common::*;
use portcullis_dataplane::Options;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const ANSWER: &[u8] =
    b"HTTP/1.1 200 OK\r\nX-Backend-CaSe: yes\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok";

/// Whether `req` holds a whole request (no body, `content-length` bytes, or
/// a chunked body to its end).
fn complete(req: &str) -> bool {
    let Some(end) = req.find("\r\n\r\n") else {
        return false;
    };
    let (head, body) = (req[..end].to_ascii_lowercase(), &req[end + 4..]);
    if head.contains("\r\ntransfer-encoding: chunked") {
        return (body.starts_with("0\r\n") || body.contains("\r\n0\r\n"))
            && body.ends_with("\r\n\r\n");
    }
    let len = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    body.len() >= len
}

/// A backend recording each request as received and answering [`ANSWER`].
struct RawBackend {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
}

async fn record<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, seen: Arc<Mutex<Vec<String>>>) {
    let mut acc = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let req = String::from_utf8_lossy(&acc).into_owned();
        if complete(&req) {
            seen.lock().unwrap().push(req);
            break;
        }
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => acc.extend_from_slice(&buf[..n]),
        }
    }
    let _ = s.write_all(ANSWER).await;
    let _ = s.shutdown().await;
}

impl RawBackend {
    async fn start(tls: Option<&Leaf>) -> RawBackend {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let acceptor = tls.map(|leaf| {
            portcullis_tls::tokio_rustls::TlsAcceptor::from(server_config(leaf, &[b"http/1.1"]))
        });
        let seen: Arc<Mutex<Vec<String>>> = Arc::default();
        let r = RawBackend {
            addr: l.local_addr().unwrap(),
            seen: seen.clone(),
        };
        tokio::spawn(async move {
            while let Ok((tcp, _)) = l.accept().await {
                let (seen, acceptor) = (seen.clone(), acceptor.clone());
                tokio::spawn(async move {
                    match acceptor {
                        None => record(tcp, seen).await,
                        Some(a) => {
                            if let Ok(s) = a.accept(tcp).await {
                                record(s, seen).await;
                            }
                        }
                    }
                });
            }
        });
        r
    }

    /// The recorded request for `target`, waited for.
    async fn request(&self, target: &str) -> String {
        let t = Instant::now();
        loop {
            let found = self
                .seen
                .lock()
                .unwrap()
                .iter()
                .find(|r| r.split(' ').nth(1) == Some(target))
                .cloned();
            if let Some(r) = found {
                return r;
            }
            assert!(
                t.elapsed() < Duration::from_secs(5),
                "{target} never reached the backend"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// Send `raw` on a new connection; the whole answer.
async fn send_raw(addr: SocketAddr, raw: &str) -> String {
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(raw.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

fn get(target: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: h\r\nX-MiXeD-Case: 1\r\nConnection: close\r\n\r\n")
}

/// A chunked body: the fast path hands the connection to hyper.
fn chunked_post(target: &str) -> String {
    format!(
        "POST {target} HTTP/1.1\r\nHost: h\r\nX-MiXeD-Case: 1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
    )
}

/// A gateway with `preserve` as its `http1.preserveHeaderCase`, routing
/// `/plain` to `plain` and `/tls` to `tls` (verified with `ca`).
async fn gateway(
    preserve: bool,
    plain: SocketAddr,
    tls: SocketAddr,
    ca: &Ca,
) -> (portcullis_dataplane::Dataplane, SocketAddr) {
    let tls_backend = tls_backend("tls", tls, "up.example.com", ca);
    let opts = Options {
        http1_preserve_case: preserve,
        ..Default::default()
    };
    serve_with(
        opts,
        vec![listener(
            "gw/l",
            None,
            vec![
                rule(
                    "plain",
                    prefix("/plain"),
                    vec![wb(1, service("plain", &[plain], None))],
                ),
                rule("tls", prefix("/tls"), vec![wb(1, tls_backend)]),
            ],
        )],
    )
    .await
}

#[tokio::test]
async fn header_case_is_kept_through_hyper_and_to_tls_backends_only_when_asked() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let ca = Ca::new("backend ca");
        let leaf = ca.leaf(&["up.example.com"]);
        for preserve in [true, false] {
            let plain = RawBackend::start(None).await;
            let tls = RawBackend::start(Some(&leaf)).await;
            let (_dp, addr) = gateway(preserve, plain.addr, tls.addr, &ca).await;
            let cases = [
                // hyper reads the request, hyper's client sends it.
                (&plain, chunked_post("/plain/chunked")),
                // The fast path reads it, the lean client sends it over TLS.
                (&tls, get("/tls/get")),
                // hyper reads it, hyper's TLS client sends it.
                (&tls, chunked_post("/tls/chunked")),
            ];
            for (backend, raw) in cases {
                let target = raw.split(' ').nth(1).unwrap().to_string();
                let answer = send_raw(addr, &raw).await;
                assert!(answer.starts_with("HTTP/1.1 200 OK"), "{target}: {answer}");
                let seen = backend.request(&target).await;
                assert_eq!(
                    seen.contains("\r\nX-MiXeD-Case: 1\r\n"),
                    preserve,
                    "{target} (preserve {preserve}): request head at the backend: {seen}"
                );
                assert_eq!(
                    seen.contains("\r\nx-mixed-case: 1\r\n"),
                    !preserve,
                    "{target} (preserve {preserve}): request head at the backend: {seen}"
                );
                assert_eq!(
                    answer.contains("\r\nX-Backend-CaSe: yes\r\n"),
                    preserve,
                    "{target} (preserve {preserve}): response head at the client: {answer}"
                );
                assert_eq!(
                    answer.contains("\r\nx-backend-case: yes\r\n"),
                    !preserve,
                    "{target} (preserve {preserve}): response head at the client: {answer}"
                );
            }
        }
    })
    .await
    .unwrap();
}
