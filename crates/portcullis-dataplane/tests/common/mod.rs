//! Test support: an echo backend, IR builders and clients.
#![allow(dead_code)]

pub mod grpc;
pub mod tls;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::http::{Request, Response, StatusCode};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use portcullis_dataplane::{Dataplane, Options};
use portcullis_ir::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Bound every test.
pub const TEST_TIMEOUT: Duration = Duration::from_secs(60);

/// A running echo backend. Request headers steer it:
/// `x-echo-delay-ms` (sleep before answering), `x-echo-status` (status),
/// `x-echo-fail-times: N` with `x-echo-key` (answer 503 the first N times for a key),
/// `x-echo-stream: N` (N chunks, 100 ms apart). `Upgrade: websocket` is answered
/// 101 and bytes are echoed back. The JSON answer holds method, path, host,
/// headers, version, body length and the backend name.
pub struct Echo {
    pub addr: SocketAddr,
    pub name: String,
    pub seen: Arc<Mutex<Vec<Value>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Echo {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Echo {
    pub async fn start(name: &str) -> Echo {
        Self::start_slow(name, 0).await
    }

    /// An echo backend that waits `delay_ms` before every answer.
    pub async fn start_slow(name: &str, delay_ms: u64) -> Echo {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let fails: Arc<Mutex<BTreeMap<String, u32>>> = Arc::default();
        let name_s = name.to_string();
        let seen2 = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (name, seen, fails) = (name_s.clone(), seen2.clone(), fails.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let (name, seen, fails) = (name.clone(), seen.clone(), fails.clone());
                        async move {
                            tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                            echo(req, name, seen, fails).await
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        Echo {
            addr,
            name: name.to_string(),
            seen,
            task,
        }
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn backend(&self) -> Backend {
        service(&self.name, &[self.addr], None)
    }
}

type EchoBody = http_body_util::combinators::BoxBody<Bytes, Infallible>;

async fn echo(
    mut req: Request<Incoming>,
    name: String,
    seen: Arc<Mutex<Vec<Value>>>,
    fails: Arc<Mutex<BTreeMap<String, u32>>>,
) -> Result<Response<EchoBody>, Infallible> {
    let h = |n: &str| {
        req.headers()
            .get(n)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let mut headers = serde_json::Map::new();
    for (k, v) in req.headers() {
        let v = v.to_str().unwrap_or("").to_string();
        match headers.get_mut(k.as_str()) {
            Some(Value::String(s)) => {
                s.push(',');
                s.push_str(&v)
            }
            _ => {
                headers.insert(k.as_str().to_string(), Value::String(v));
            }
        }
    }
    let host = h("host")
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_default();
    let (delay, status, stream) = (h("x-echo-delay-ms"), h("x-echo-status"), h("x-echo-stream"));
    let fail_times = h("x-echo-fail-times").and_then(|v| v.parse::<u32>().ok());
    let key = h("x-echo-key").unwrap_or_default();
    let is_ws = h("upgrade").is_some_and(|u| u.eq_ignore_ascii_case("websocket"));
    let method = req.method().to_string();
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.to_string())
        .unwrap_or_default();
    let version = format!("{:?}", req.version());
    let upgrade = is_ws.then(|| hyper::upgrade::on(&mut req));
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let record = json!({
        "backend": name, "method": method, "path": path, "host": host,
        "headers": headers, "version": version, "body": String::from_utf8_lossy(&body),
    });
    seen.lock().unwrap().push(record.clone());
    if let Some(d) = delay.and_then(|d| d.parse::<u64>().ok()) {
        tokio::time::sleep(Duration::from_millis(d)).await;
    }
    if let Some(up) = upgrade {
        tokio::spawn(async move {
            if let Ok(up) = up.await {
                let mut io = TokioIo::new(up);
                let mut buf = [0u8; 1024];
                while let Ok(n) = io.read(&mut buf).await {
                    if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            }
        });
        let r = Response::builder()
            .status(101)
            .header("connection", "upgrade")
            .header("upgrade", "websocket")
            .body(Full::new(Bytes::new()).boxed())
            .unwrap();
        return Ok(r);
    }
    if let Some(n) = fail_times {
        let mut f = fails.lock().unwrap();
        let c = f.entry(key).or_insert(0);
        if *c < n {
            *c += 1;
            let r = Response::builder()
                .status(503)
                .body(Full::new(Bytes::from("fail")).boxed())
                .unwrap();
            return Ok(r);
        }
    }
    let status = status.and_then(|s| s.parse::<u16>().ok()).unwrap_or(200);
    if let Some(n) = stream.and_then(|s| s.parse::<u32>().ok()) {
        let s = futures_util::stream::unfold(0u32, move |i| async move {
            if i >= n {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            Some((
                Ok::<_, Infallible>(Frame::data(Bytes::from(format!("chunk{i}\n")))),
                i + 1,
            ))
        });
        let r = Response::builder()
            .status(status)
            .body(StreamBody::new(s).boxed())
            .unwrap();
        return Ok(r);
    }
    let r = Response::builder()
        .status(StatusCode::from_u16(status).unwrap())
        .header("content-type", "application/json")
        .header("x-backend", name.as_str())
        .body(Full::new(Bytes::from(record.to_string())).boxed())
        .unwrap();
    Ok(r)
}

/// A free port on 127.0.0.1 (bound then released).
pub fn free_addr() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

pub fn service(name: &str, addrs: &[SocketAddr], app_protocol: Option<&str>) -> Backend {
    Backend::Service(ServiceBackend {
        name: format!("ns/{name}:80"),
        namespace: "ns".into(),
        app_protocol: app_protocol.map(Into::into),
        endpoints: addrs
            .iter()
            .map(|a| Endpoint {
                addr: *a,
                terminating: false,
                zone: None,
                for_zones: vec![],
            })
            .collect(),
        tls: None,
    })
}

pub fn wb(weight: u32, backend: Backend) -> WeightedBackend {
    WeightedBackend {
        weight,
        backend,
        filters: vec![],
    }
}

/// A rule of route `ns/name` routing `path` to `backends`.
pub fn rule(name: &str, path: PathMatch, backends: Vec<WeightedBackend>) -> HttpRouteRule {
    HttpRouteRule {
        meta: RouteMeta {
            kind: "HTTPRoute".into(),
            namespace: "ns".into(),
            name: name.into(),
            creation_timestamp: "2024-01-01T00:00:00Z".into(),
            rule_index: 0,
            rule_name: None,
        },
        hostnames: vec![],
        matches: HttpMatch {
            path,
            ..Default::default()
        },
        match_index: 0,
        action: HttpAction {
            backends,
            ..Default::default()
        },
    }
}

pub fn prefix(p: &str) -> PathMatch {
    PathMatch::Prefix(p.into())
}

pub fn exact(p: &str) -> PathMatch {
    PathMatch::Exact(p.into())
}

pub fn listener(name: &str, hostname: Option<&str>, rules: Vec<HttpRouteRule>) -> Listener {
    Listener {
        name: name.into(),
        hostname: hostname.map(Into::into),
        tls: None,
        http_routes: rules.into_iter().map(Arc::new).collect(),
        l4_routes: vec![],
        client: None,
    }
}

pub fn config(bind: SocketAddr, listeners: Vec<Listener>) -> Arc<Config> {
    Arc::new(Config {
        ports: vec![Port {
            bind,
            protocol: PortProtocol::Http,
            listeners,
            client: None,
        }],
    })
}

/// A data plane serving `rules` on one fresh port; returns it with the port address.
pub async fn serve(rules: Vec<HttpRouteRule>) -> (Dataplane, SocketAddr) {
    serve_with(Options::default(), vec![listener("gw/l", None, rules)]).await
}

pub async fn serve_with(opts: Options, listeners: Vec<Listener>) -> (Dataplane, SocketAddr) {
    init_tracing();
    let dp = Dataplane::new(opts);
    for _ in 0..5 {
        let addr = free_addr();
        let report = dp.apply(config(addr, listeners.clone())).await;
        if report.bind_errors.is_empty() {
            return (dp, addr);
        }
    }
    panic!("could not bind a port");
}

/// Apply a config with one port built by `make` on a fresh address (TCP, or
/// UDP for UDP ports); returns the address.
pub async fn apply_port(dp: &Dataplane, make: impl Fn(SocketAddr) -> Port) -> SocketAddr {
    init_tracing();
    for _ in 0..5 {
        let probe = make(free_addr());
        let addr = if probe.protocol == PortProtocol::Udp {
            free_udp_addr()
        } else {
            probe.bind
        };
        let report = dp
            .apply(Arc::new(Config {
                ports: vec![make(addr)],
            }))
            .await;
        if report.bind_errors.is_empty() {
            return addr;
        }
    }
    panic!("could not bind a port");
}

/// A free UDP port on 127.0.0.1 (bound then released).
pub fn free_udp_addr() -> SocketAddr {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap()
}

/// A port of `protocol` with `listeners`.
pub fn port(bind: SocketAddr, protocol: PortProtocol, listeners: Vec<Listener>) -> Port {
    Port {
        bind,
        protocol,
        listeners,
        client: None,
    }
}

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
}

pub type TestClient = Client<HttpConnector, Full<Bytes>>;

pub fn client() -> TestClient {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

pub fn h2_client() -> TestClient {
    Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build(HttpConnector::new())
}

/// A response, read whole.
#[derive(Debug)]
pub struct Got {
    pub status: u16,
    pub headers: ::http::HeaderMap,
    pub body: Bytes,
}

impl Got {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not json ({e}): {:?}", self.body))
    }
    pub fn header(&self, n: &str) -> Option<&str> {
        self.headers.get(n).and_then(|v| v.to_str().ok())
    }
    /// Echoed request header.
    pub fn echoed(&self, n: &str) -> Option<String> {
        self.json()["headers"][n].as_str().map(str::to_owned)
    }
}

/// Send a request through `c` to `addr` with Host `host`.
pub async fn send(
    c: &TestClient,
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Got {
    send_body(c, addr, method, host, path, headers, Bytes::new()).await
}

pub async fn send_body(
    c: &TestClient,
    addr: SocketAddr,
    method: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Got {
    let mut b = Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("host", host);
    for (k, v) in headers {
        b = b.header(*k, *v);
    }
    let req = b.body(Full::new(body)).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(20), c.request(req))
        .await
        .expect("request timed out")
        .expect("request failed");
    let (parts, body) = resp.into_parts();
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    Got {
        status: parts.status.as_u16(),
        headers: parts.headers,
        body,
    }
}

pub async fn get(addr: SocketAddr, host: &str, path: &str) -> Got {
    send(&client(), addr, "GET", host, path, &[]).await
}

/// Write raw bytes on a fresh connection and read until the server closes
/// (bounded); returns what was read.
pub async fn raw(addr: SocketAddr, bytes: &[u8]) -> (String, bool) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await {
            Ok(Ok(0)) => break true,
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Ok(Err(_)) => break true,
            Err(_) => break false,
        }
    };
    (String::from_utf8_lossy(&out).into_owned(), closed)
}
