//! BackendTrafficPolicy upstream connection settings through `portcullis run`
//! for an HTTP/2 (h2c) backend: `circuitBreaker.maxRequestsPerConnection` and
//! `maxConnections` with `maxPendingRequests: 0`, seen from an h2c backend on
//! 127.0.0.1 that numbers its connections.

mod common;

use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::{free_addr, free_port, start, wait_for};

/// An h2c backend answering `<connection number>` after the request's
/// `x-delay-ms`; returns its address and its connection count.
fn h2c_backend() -> (SocketAddr, Arc<AtomicUsize>) {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let addr = l.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let count = conns.clone();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                let l = tokio::net::TcpListener::from_std(l).unwrap();
                while let Ok((tcp, _)) = l.accept().await {
                    let n = count.fetch_add(1, Ordering::SeqCst) + 1;
                    tokio::spawn(async move {
                        let svc = hyper::service::service_fn(
                            move |req: http::Request<hyper::body::Incoming>| async move {
                                let delay = req
                                    .headers()
                                    .get("x-delay-ms")
                                    .and_then(|v| v.to_str().ok()?.parse().ok())
                                    .unwrap_or(0u64);
                                tokio::time::sleep(Duration::from_millis(delay)).await;
                                Ok::<_, Infallible>(http::Response::new(http_body_util::Full::new(
                                    bytes::Bytes::from(n.to_string()),
                                )))
                            },
                        );
                        let _ = hyper::server::conn::http2::Builder::new(
                            hyper_util::rt::TokioExecutor::new(),
                        )
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                        .await;
                    });
                }
            });
    });
    (addr, conns)
}

fn config(port: u16, routes: &[(&str, SocketAddr, &str)]) -> String {
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
    for (name, backend, spec) in routes {
        let bport = backend.port();
        y.push_str(&format!(
            r#"---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default}}
spec:
  ports: [{{name: h2c, port: 80, appProtocol: kubernetes.io/h2c}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: {name}-1, namespace: default, labels: {{kubernetes.io/service-name: {name}}}}}
addressType: IPv4
ports: [{{name: h2c, port: {bport}, appProtocol: kubernetes.io/h2c}}]
endpoints: [{{addresses: ["127.0.0.1"], conditions: {{ready: true}}}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: {name}, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /{name}}}}}]
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

/// One request on a fresh client connection: (status, body).
fn request(gw: SocketAddr, path: &str, delay_ms: u64) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&gw, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: h\r\nx-delay-ms: {delay_ms}\r\nconnection: close\r\n\r\n"
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
    (status, body)
}

#[test]
fn h2c_backend_connections_follow_the_policy() {
    let (spent, spent_conns) = h2c_backend();
    let (one, one_conns) = h2c_backend();
    let (free, free_conns) = h2c_backend();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("gw.yaml"),
        config(
            port,
            &[
                (
                    "spent",
                    spent,
                    "  circuitBreaker: {maxRequestsPerConnection: 2}\n",
                ),
                (
                    "one",
                    one,
                    "  circuitBreaker: {maxConnections: 1, maxPendingRequests: 0, maxRequestsPerConnection: 1}\n",
                ),
                ("free", free, "  loadBalancer: {type: RoundRobin}\n"),
            ],
        ),
    )
    .unwrap();
    let _p = start(dir.path(), free_addr(), &[]);
    let gw: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_for("the routes", Duration::from_secs(10), || {
        TcpStream::connect_timeout(&gw, Duration::from_millis(200)).is_ok()
            && request(gw, "/free", 0).0 == 200
    });

    // Two requests per upstream HTTP/2 connection, then a new one.
    let bodies: Vec<String> = (0..6).map(|_| request(gw, "/spent", 0).1).collect();
    assert_eq!(bodies, ["1", "1", "2", "2", "3", "3"]);
    assert_eq!(spent_conns.load(Ordering::SeqCst), 3);

    // No connection limit: HTTP/2 multiplexes everything over one.
    for _ in 0..5 {
        assert_eq!(request(gw, "/free", 0), (200, "1".to_string()));
    }
    assert_eq!(free_conns.load(Ordering::SeqCst), 1);

    // One connection, one request on it, nobody may wait: while a slow
    // request holds it, another is refused 503 at once.
    let slow = std::thread::spawn(move || request(gw, "/one", 1000));
    wait_for("the slow request upstream", Duration::from_secs(5), || {
        one_conns.load(Ordering::SeqCst) == 1
    });
    let (status, body) = request(gw, "/one", 0);
    assert_eq!(status, 503, "{body}");
    assert_eq!(slow.join().unwrap().0, 200);
    wait_for("the slot to be free again", Duration::from_secs(5), || {
        request(gw, "/one", 0).0 == 200
    });
}
