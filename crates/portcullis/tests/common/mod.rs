//! Helpers shared by the end-to-end tests of the `portcullis` binary: real
//! processes, real sockets on 127.0.0.1, real files.
#![allow(dead_code)]

pub mod webdriver;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Kills the child (by PID, via its handle) when dropped.
pub struct Proc(pub Child);
impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The `portcullis` binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_portcullis")
}

/// A port free on 127.0.0.1 now (for TCP and UDP), chosen at random below
/// the kernel's ephemeral range (Linux: 32768–60999). A port from
/// `bind(0)` is an ephemeral one, which an outgoing connection of a test
/// running alongside could take between this choice and the gateway's
/// bind (seen: a listener refused with EADDRINUSE for 10 s).
pub fn free_port() -> u16 {
    use std::hash::{BuildHasher, Hasher};
    for _ in 0..1000 {
        // A fresh random seed per call (std's `RandomState`).
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u32(std::process::id());
        let port = 20_000 + u16::try_from(h.finish() % 12_000).expect("below 12,000");
        if TcpListener::bind(("127.0.0.1", port)).is_ok()
            && std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok()
        {
            return port;
        }
    }
    panic!("no free port found in 20000..32000 on 127.0.0.1");
}

/// A free loopback address.
pub fn free_addr() -> SocketAddr {
    format!("127.0.0.1:{}", free_port()).parse().unwrap()
}

/// Poll `f` every 20 ms until it holds; panic after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("timed out after {timeout:?} waiting for {what}");
}

/// Send `raw` bytes on a fresh connection and read until the peer closes
/// (or 5 s pass): the whole answer as text.
pub fn raw_exchange(addr: SocketAddr, raw: &[u8]) -> String {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(raw).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// The status code of the first response in `answer`.
pub fn status_of(answer: &str) -> u16 {
    answer
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// One HTTP/1.1 request on a fresh connection: (status, whole answer).
pub fn get(addr: SocketAddr, host: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, out))
}

/// `GET path` with extra header lines (`"name: value\r\n"` each, or empty)
/// on a fresh connection to host `h`: (status, whole answer).
pub fn request(addr: SocketAddr, path: &str, headers: &str) -> Option<(u16, String)> {
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
    Some((status, out))
}

/// A raw HTTP/1.1 backend that records every byte it receives and answers
/// `200 rec <target>` to each bodyless request head (target lower-cased); a
/// request with a body is recorded and never answered.
pub struct Recorder {
    /// Its address.
    pub addr: SocketAddr,
    bytes: Arc<Mutex<Vec<u8>>>,
}

impl Recorder {
    /// Start one on 127.0.0.1.
    pub fn start() -> Recorder {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let bytes: Arc<Mutex<Vec<u8>>> = Arc::default();
        let all = bytes.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                let all = all.clone();
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 8192];
                    let mut acc = Vec::new();
                    loop {
                        let Ok(n) = s.read(&mut buf) else { return };
                        if n == 0 {
                            return;
                        }
                        all.lock().unwrap().extend_from_slice(&buf[..n]);
                        acc.extend_from_slice(&buf[..n]);
                        while let Some(end) = acc.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&acc[..end]).to_ascii_lowercase();
                            if head.contains("\r\ncontent-length:")
                                || head.contains("\r\ntransfer-encoding:")
                            {
                                // A request with a body is recorded, never answered.
                                break;
                            }
                            let target = head.split_whitespace().nth(1).unwrap_or("").to_string();
                            acc.drain(..end + 4);
                            let body = format!("rec {target}");
                            let resp = format!(
                                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{body}",
                                body.len()
                            );
                            if s.write_all(resp.as_bytes()).is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        Recorder { addr, bytes }
    }

    /// Everything received so far, on every connection.
    pub fn received(&self) -> String {
        String::from_utf8_lossy(&self.bytes.lock().unwrap()).into_owned()
    }
}

/// `portcullis run` on `dir`, admin on `admin`, waited for `/readyz`.
pub fn start(dir: &Path, admin: SocketAddr, extra: &[&str]) -> Proc {
    let child = Command::new(bin())
        .args(["run", "--config"])
        .arg(dir)
        .args(["--admin", &admin.to_string(), "--workers", "2"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn portcullis");
    let p = Proc(child);
    wait_for("readyz", Duration::from_secs(20), || {
        get(admin, "admin", "/readyz").is_some_and(|(s, _)| s == 200)
    });
    p
}

/// GatewayClass + Gateway `gw` (HTTP on 127.0.0.1:`port`) + Service `svc`
/// reaching `backend` (clusterIP form), as YAML.
pub fn gateway_and_service(port: u16, backend: SocketAddr) -> String {
    http_gateway(&[("http", port)], "", backend)
}

/// GatewayClass + Gateway `gw` on 127.0.0.1 with one HTTP listener per
/// `(name, port)` + `docs` (YAML documents, each starting with `---`; may be
/// empty) + Service `svc` reaching `backend`, as YAML.
pub fn http_gateway(listeners: &[(&str, u16)], docs: &str, backend: SocketAddr) -> String {
    let listeners: String = listeners
        .iter()
        .map(|(name, port)| format!("  - {{name: {name}, port: {port}, protocol: HTTP}}\n"))
        .collect();
    gateway_with(&listeners, docs, backend)
}

/// As [`http_gateway`], with the Gateway's `listeners` given as YAML lines
/// (`  - {...}` each).
pub fn gateway_with(listeners: &str, docs: &str, backend: SocketAddr) -> String {
    format!(
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
  listeners:
{listeners}{docs}{service}"#,
        service = service_yaml(backend),
    )
}

/// HTTPRoute `r` on every listener of `gw`: `matches` (a flow sequence, or
/// "" for every request) to Service `svc`, as a YAML document.
pub fn route_to_svc(matches: &str) -> String {
    let matches = if matches.is_empty() {
        String::new()
    } else {
        format!("matches: {matches}\n    ")
    };
    format!(
        r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
  - {matches}backendRefs: [{{name: svc, port: 80}}]
"#
    )
}

/// Service `svc` (port 80) and its EndpointSlice: one ready endpoint, `backend`.
pub fn service_yaml(backend: SocketAddr) -> String {
    format!(
        r#"---
apiVersion: v1
kind: Service
metadata: {{name: svc, namespace: default}}
spec:
  ports: [{{name: http, port: 80}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: svc-1, namespace: default, labels: {{kubernetes.io/service-name: svc}}}}
addressType: IPv4
ports: [{{name: http, port: {bport}}}]
endpoints: [{{addresses: ["{ip}"], conditions: {{ready: true}}}}]
"#,
        bport = backend.port(),
        ip = backend.ip(),
    )
}

/// ClientTrafficPolicy `name` on listener `name` of Gateway `gw`; `spec` is
/// the YAML of its fields besides `targetRefs`, indented by two spaces.
pub fn listener_policy(name: &str, spec: &str) -> String {
    format!(
        r#"---
apiVersion: portcullis.dev/v1alpha1
kind: ClientTrafficPolicy
metadata: {{name: {name}, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: Gateway, name: gw, sectionName: {name}}}]
{spec}
"#
    )
}

/// The admin `/status` document.
pub fn status_doc(admin: SocketAddr) -> serde_json::Value {
    let (_, answer) = get(admin, "admin", "/status").unwrap();
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("");
    serde_json::from_str(body).unwrap()
}

/// The first condition `type_` of the first parent of route `name`.
pub fn route_condition(doc: &serde_json::Value, name: &str, type_: &str) -> serde_json::Value {
    doc.as_array()
        .unwrap()
        .iter()
        .find(|o| o["kind"] == "HTTPRoute" && o["metadata"]["name"] == name)
        .and_then(|r| {
            r["status"]["parents"][0]["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == type_)
                .cloned()
        })
        .unwrap_or(serde_json::Value::Null)
}

/// A backend on 127.0.0.`n`:`port` answering its name (`b<n>`).
pub fn named_backend(n: u8, port: u16) {
    switchable_backend(n, port);
}

/// A backend on 127.0.0.`n`:`port` answering its name (`b<n>`) with the
/// status in the returned cell (200 at first), which the test may change.
pub fn switchable_backend(n: u8, port: u16) -> Arc<std::sync::atomic::AtomicU16> {
    use std::sync::atomic::{AtomicU16, Ordering};
    let status = Arc::new(AtomicU16::new(200));
    let st = status.clone();
    let l = TcpListener::bind((format!("127.0.0.{n}"), port)).unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let st = st.clone();
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 8192];
                let mut acc = Vec::new();
                loop {
                    let k = match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(k) => k,
                    };
                    acc.extend_from_slice(&buf[..k]);
                    while let Some(end) = acc.windows(4).position(|w| w == b"\r\n\r\n") {
                        acc.drain(..end + 4);
                        let code = st.load(Ordering::Relaxed);
                        let resp = format!("HTTP/1.1 {code} X\r\ncontent-length: 2\r\n\r\nb{n}");
                        if s.write_all(resp.as_bytes()).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    status
}
