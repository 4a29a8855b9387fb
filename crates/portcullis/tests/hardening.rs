//! Security hardening of `portcullis run`, end to end (real process, real
//! sockets on 127.0.0.1): slow request bodies are cut and their descriptors
//! released; the admin API serves no private key, needs a bearer token off
//! loopback, cuts slow clients; accept errors (out of descriptors) back off
//! and are logged rate-limited instead of spinning.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Kills the child (by PID, via its handle) when dropped.
struct Proc {
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }
    fn log_lines(&self, pat: &str) -> usize {
        self.log
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(pat))
            .count()
    }
    fn fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).map_or(0, |d| d.count())
    }
    /// User + system CPU time, in clock ticks.
    fn cpu_ticks(&self) -> u64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap();
        // Fields after the command name (which is in parentheses).
        let rest = &stat[stat.rfind(')').unwrap() + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
    }
}

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_portcullis")
}

fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// Start `portcullis run` with `args`, under `ulimit -n nofile` if given;
/// its stderr is collected. Does not wait for readiness.
fn spawn(dir: &Path, args: &[&str], nofile: Option<u32>) -> Proc {
    let mut cmd = match nofile {
        Some(n) => {
            let mut c = Command::new("sh");
            c.arg("-c")
                .arg(format!("ulimit -n {n} && exec \"$0\" \"$@\""))
                .arg(bin());
            c
        }
        None => Command::new(bin()),
    };
    let mut child = cmd
        .args(["run", "--config"])
        .arg(dir)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn portcullis");
    let log = Arc::new(Mutex::new(Vec::new()));
    let stderr = child.stderr.take().unwrap();
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            eprintln!("[portcullis] {line}");
            sink.lock().unwrap().push(line);
        }
    });
    Proc { child, log }
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// One HTTP/1.1 request on a fresh connection: (status, body).
fn request(addr: SocketAddr, path: &str, headers: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: h\r\nconnection: close\r\n{headers}\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Some((status, body))
}

fn ready(admin: SocketAddr) -> bool {
    request(admin, "/readyz", "").is_some_and(|(s, _)| s == 200)
}

/// A backend that answers every request head `200 ok` (one thread per connection).
fn backend() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 8192];
                let mut acc = Vec::new();
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 {
                        return;
                    }
                    acc.extend_from_slice(&buf[..n]);
                    while let Some(end) = acc.windows(4).position(|w| w == b"\r\n\r\n") {
                        acc.drain(..end + 4);
                        if s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                            .is_err()
                        {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

/// A backend that accepts and never reads nor answers (keeps the sockets).
fn black_hole() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut keep = Vec::new();
        for s in l.incoming().map_while(Result::ok) {
            keep.push(s);
        }
    });
    addr
}

fn manifest(port: u16, backend: SocketAddr, extra_listener: &str) -> String {
    let mut listeners = format!("    - {{name: http, port: {port}, protocol: HTTP}}\n");
    if !extra_listener.is_empty() {
        listeners = listeners + extra_listener + "\n";
    }
    common::gateway_with(&listeners, &common::route_to_svc(""), backend)
}

fn base64(data: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for c in data.chunks(3) {
        let n = c.iter().fold(0u32, |acc, b| (acc << 8) | u32::from(*b)) << (8 * (3 - c.len()));
        for i in 0..4 {
            if i <= c.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn slow_request_bodies_are_cut_and_their_descriptors_released() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, admin) = (free_addr(), free_addr());
    let hole = black_hole();
    std::fs::write(dir.path().join("all.yaml"), manifest(gw.port(), hole, "")).unwrap();
    let p = spawn(
        dir.path(),
        &[
            "--admin",
            &admin.to_string(),
            "--workers",
            "1",
            "--body-idle-timeout",
            "1",
        ],
        None,
    );
    wait_for("readyz", Duration::from_secs(20), || ready(admin));
    wait_for("port bound", Duration::from_secs(10), || {
        TcpStream::connect(gw).is_ok()
    });
    std::thread::sleep(Duration::from_millis(200));
    let before = p.fds();
    // 300 clients that start a body and never finish it: small ones (read
    // by the fast path), large and chunked ones (streamed to the backend,
    // which holds a second descriptor each).
    const N: usize = 300;
    let mut clients = Vec::with_capacity(N);
    for i in 0..N {
        let mut s = TcpStream::connect(gw).unwrap();
        let head = match i % 3 {
            0 => "POST /s HTTP/1.1\r\nhost: h\r\ncontent-length: 100\r\n\r\n0123456789",
            1 => "POST /l HTTP/1.1\r\nhost: h\r\ncontent-length: 1000000\r\n\r\n0123456789",
            _ => {
                "POST /c HTTP/1.1\r\nhost: h\r\ntransfer-encoding: chunked\r\n\r\na\r\n0123456789\r\n"
            }
        };
        s.write_all(head.as_bytes()).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
        clients.push(s);
    }
    std::thread::sleep(Duration::from_millis(300));
    let during = p.fds();
    let started = Instant::now();
    let mut told = 0;
    for (i, s) in clients.iter_mut().enumerate() {
        let mut out = Vec::new();
        let r = s.read_to_end(&mut out);
        let text = String::from_utf8_lossy(&out);
        assert!(
            r.is_ok() || text.starts_with("HTTP/1.1 408"),
            "client {i}: not closed by the proxy ({r:?}, {text:?})"
        );
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 408"),
            "client {i}: {text}"
        );
        told += usize::from(text.starts_with("HTTP/1.1 408"));
    }
    let took = started.elapsed();
    let mut after = p.fds();
    wait_for("descriptors released", Duration::from_secs(5), || {
        after = p.fds();
        after <= before + 2
    });
    eprintln!(
        "proxy descriptors: before {before}, with {N} slow bodies {during}, after {after}; \
         all closed {took:?} after the last write, {told} told 408"
    );
    assert!(
        during >= before + N,
        "the slow bodies held descriptors: {before} -> {during}"
    );
    assert!(
        took < Duration::from_secs(4),
        "closed at the body idle timeout: {took:?}"
    );
    assert!(told >= N / 2, "{told} of {N} told 408");
}

#[test]
fn the_admin_api_serves_no_private_key() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, tls, admin) = (free_addr(), free_addr(), free_addr());
    let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
    let ok = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args(["-days", "2", "-subj", "/CN=a.example.com"])
        .args(["-addext", "subjectAltName=DNS:a.example.com", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("openssl");
    assert!(ok.success());
    let (cert_pem, key_pem) = (
        std::fs::read_to_string(&cert).unwrap(),
        std::fs::read_to_string(&key).unwrap(),
    );
    let listener = format!(
        "    - {{name: https, port: {}, protocol: HTTPS, hostname: a.example.com, \
         tls: {{certificateRefs: [{{name: cert}}]}}}}",
        tls.port()
    );
    let secret = format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: cert, namespace: default}}\n\
         type: kubernetes.io/tls\ndata: {{tls.crt: {}, tls.key: {}}}\n",
        base64(cert_pem.as_bytes()),
        base64(key_pem.as_bytes())
    );
    let config = manifest(gw.port(), backend(), &listener) + &secret;
    std::fs::write(dir.path().join("all.yaml"), config).unwrap();
    let _p = spawn(
        dir.path(),
        &["--admin", &admin.to_string(), "--workers", "1"],
        None,
    );
    wait_for("readyz", Duration::from_secs(20), || ready(admin));
    // The certificate is served (so the key is in the configuration)...
    wait_for("TLS port bound", Duration::from_secs(10), || {
        TcpStream::connect(tls).is_ok()
    });
    let (s, config) = request(admin, "/config", "").unwrap();
    assert_eq!(s, 200);
    let cert_line = cert_pem.lines().nth(1).unwrap();
    assert!(config.contains(cert_line), "the certificate is in /config");
    // ... and no part of the key is in /config or /status.
    let (s, status) = request(admin, "/status", "").unwrap();
    assert_eq!(s, 200);
    for doc in [&config, &status] {
        assert!(!doc.contains("PRIVATE KEY"), "{doc}");
        for line in key_pem.lines().filter(|l| !l.starts_with("-----")) {
            assert!(!doc.contains(line), "key material served: {line}");
        }
        assert!(!doc.contains(&base64(key_pem.as_bytes())[..40]));
    }
    assert!(config.contains("[redacted]"), "the key is replaced");
}

#[test]
fn the_admin_api_needs_a_token_off_loopback() {
    let dir = tempfile::tempdir().unwrap();
    let gw = free_addr();
    let port = free_addr().port();
    std::fs::write(
        dir.path().join("all.yaml"),
        manifest(gw.port(), backend(), ""),
    )
    .unwrap();
    let any = format!("0.0.0.0:{port}");
    // Without a token: refuses to start, saying why.
    let mut p = spawn(dir.path(), &["--admin", &any, "--workers", "1"], None);
    let start = Instant::now();
    let code = loop {
        if let Some(c) = p.child.try_wait().unwrap() {
            break c;
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "still running without a token"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!code.success());
    wait_for("the error is logged", Duration::from_secs(2), || {
        p.log_lines("--admin-token-file") > 0
    });
    drop(p);
    // With a token: starts, warns, and /status and /config need it.
    let token = dir.path().join("token");
    std::fs::write(&token, "s3cret-token\n").unwrap();
    let p = spawn(
        dir.path(),
        &[
            "--admin",
            &any,
            "--admin-token-file",
            token.to_str().unwrap(),
            "--workers",
            "1",
        ],
        None,
    );
    let admin: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_for("readyz", Duration::from_secs(20), || ready(admin));
    assert!(
        p.log_lines("not a loopback address") > 0,
        "a warning at start"
    );
    assert_eq!(request(admin, "/healthz", "").unwrap().0, 200);
    for path in ["/config", "/status"] {
        assert_eq!(request(admin, path, "").unwrap().0, 401, "{path}");
        assert_eq!(
            request(admin, path, "authorization: Bearer wrong\r\n")
                .unwrap()
                .0,
            401
        );
        let (s, body) = request(admin, path, "authorization: Bearer s3cret-token\r\n").unwrap();
        assert_eq!(s, 200, "{path}: {body}");
    }
}

#[test]
fn slow_admin_clients_are_cut_and_accept_errors_do_not_spin() {
    let dir = tempfile::tempdir().unwrap();
    let (gw, admin) = (free_addr(), free_addr());
    std::fs::write(
        dir.path().join("all.yaml"),
        manifest(gw.port(), backend(), ""),
    )
    .unwrap();
    // Few descriptors: the floods below exhaust them.
    let p = spawn(
        dir.path(),
        &["--admin", &admin.to_string(), "--workers", "1"],
        Some(64),
    );
    wait_for("readyz", Duration::from_secs(20), || ready(admin));
    wait_for("route live", Duration::from_secs(10), || {
        request(gw, "/", "").is_some_and(|(s, _)| s == 200)
    });
    // A slow admin client (never sends a head) is cut at the header-read timeout.
    let mut slow = TcpStream::connect(admin).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let t = Instant::now();
    let cut = slow.read(&mut [0u8; 64]);
    let slow_cut_after = t.elapsed();
    assert!(matches!(cut, Ok(0)), "slow admin client cut: {cut:?}");
    assert!(
        slow_cut_after < Duration::from_secs(8),
        "cut after {slow_cut_after:?}"
    );
    // Idle floods on both ports, more than the descriptor limit allows.
    let flood: Vec<TcpStream> = (0..60)
        .flat_map(|_| {
            [
                TcpStream::connect(admin).unwrap(),
                TcpStream::connect(gw).unwrap(),
            ]
        })
        .collect();
    std::thread::sleep(Duration::from_millis(500));
    let (cpu0, errors0) = (p.cpu_ticks(), p.log_lines("accept failed"));
    std::thread::sleep(Duration::from_secs(3));
    let (cpu1, errors1) = (p.cpu_ticks(), p.log_lines("accept failed"));
    let (ticks, logged) = (cpu1 - cpu0, errors1 - errors0);
    eprintln!(
        "slow admin client cut after {slow_cut_after:?}; under the floods: {ticks} CPU ticks \
         in 3 s, {logged} accept warnings logged ({errors0} before); {} descriptors",
        p.fds()
    );
    assert!(errors1 > 0, "the descriptor limit was reached");
    assert!(ticks < 60, "accept loops spin: {ticks} ticks in 3 s");
    assert!(logged <= 4, "accept errors logged {logged} times in 3 s");
    // Once the floods go away, both serve again.
    drop(flood);
    wait_for("admin serves again", Duration::from_secs(15), || {
        ready(admin)
    });
    wait_for("port serves again", Duration::from_secs(15), || {
        request(gw, "/", "").is_some_and(|(s, _)| s == 200)
    });
}
