//! BackendTrafficPolicy `loadBalancer.slowStart` through `portcullis run`: an
//! endpoint added to a Service, or back from an outlier ejection, gets a
//! small share of the traffic early in the window and its full share after
//! it.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{free_addr, free_port, named_backend as backend, start, switchable_backend, wait_for};

/// One request: (status, body).
fn answer(gw: SocketAddr) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&gw, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET /r HTTP/1.1\r\nhost: h\r\nconnection: close\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = common::status_of(&out);
    (
        status,
        out.split("\r\n\r\n").nth(1).unwrap_or("").to_string(),
    )
}

/// One request answered 200: its body.
fn body(gw: SocketAddr) -> String {
    let (status, body) = answer(gw);
    assert_eq!(status, 200, "{body}");
    body
}

fn tally(gw: SocketAddr, n: usize) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for _ in 0..n {
        *m.entry(body(gw)).or_insert(0) += 1;
    }
    m
}

/// The gateway, Service `svc` with endpoints 127.0.0.`eps`, and a RoundRobin
/// policy with a slow-start window of `window` and `extra` spec lines.
fn config(port: u16, bport: u16, eps: &[u8], window: &str, extra: &str) -> String {
    let eps: Vec<String> = eps.iter().map(|i| format!("\"127.0.0.{i}\"")).collect();
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
  listeners: [{{name: http, port: {port}, protocol: HTTP}}]
---
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
endpoints: [{{addresses: [{eps}], conditions: {{ready: true}}}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: r, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
  - matches: [{{path: {{type: PathPrefix, value: /r}}}}]
    backendRefs: [{{name: svc, port: 80}}]
---
apiVersion: portcullis.dev/v1alpha1
kind: BackendTrafficPolicy
metadata: {{name: ramp, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: r}}]
  loadBalancer:
    type: RoundRobin
    slowStart: {{window: {window}}}
{extra}"#,
        eps = eps.join(", ")
    )
}

#[test]
fn an_added_endpoint_ramps_up_over_the_slow_start_window() {
    let bport = free_port();
    for n in [2, 3, 4] {
        backend(n, bport);
    }
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gw.yaml");
    std::fs::write(&file, config(port, bport, &[2, 3], "30s", "")).unwrap();
    let _p = start(dir.path(), free_addr(), &[]);
    let gw: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_for("the route", Duration::from_secs(10), || {
        TcpStream::connect_timeout(&gw, Duration::from_millis(200)).is_ok()
    });
    // The endpoints of the first configuration are not ramped: plain turns.
    let t = tally(gw, 30);
    assert_eq!((t["b2"], t["b3"]), (15, 15), "{t:?}");

    // b4 joins: early in its 30 s window it gets a small share (10 % of its
    // turns at first, growing), well under the third it gets after.
    std::fs::write(&file, config(port, bport, &[2, 3, 4], "30s", "")).unwrap();
    let added = Instant::now();
    wait_for("b4 in service", Duration::from_secs(15), || {
        body(gw) == "b4"
    });
    let early = tally(gw, 60);
    let early_done = added.elapsed();
    assert!(
        early_done < Duration::from_secs(12),
        "the early sample took {early_done:?}: too slow to say anything about the ramp"
    );
    let b4 = early.get("b4").copied().unwrap_or(0);
    assert!(b4 <= 12, "early in the window b4 got {b4} of 60: {early:?}");

    // After the window: plain round robin again, b4 included.
    let rest = Duration::from_secs(31).saturating_sub(added.elapsed());
    std::thread::sleep(rest);
    let late = tally(gw, 60);
    assert_eq!(
        (late["b2"], late["b3"], late["b4"]),
        (20, 20, 20),
        "after the window every endpoint has its turn: {late:?}"
    );
}

#[test]
fn an_endpoint_back_from_an_outlier_ejection_ramps_up_again() {
    let bport = free_port();
    let b4 = {
        backend(2, bport);
        backend(3, bport);
        switchable_backend(4, bport)
    };
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let passive = "  healthCheck:\n    passive: {consecutive5XxErrors: 2, baseEjectionTime: 1s, interval: 1s, maxEjectionPercent: 50}\n";
    std::fs::write(
        dir.path().join("gw.yaml"),
        config(port, bport, &[2, 3, 4], "20s", passive),
    )
    .unwrap();
    let _p = start(dir.path(), free_addr(), &[]);
    let gw: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_for("the route", Duration::from_secs(10), || {
        TcpStream::connect_timeout(&gw, Duration::from_millis(200)).is_ok()
    });
    let t = tally(gw, 30);
    assert_eq!((t["b2"], t["b3"], t["b4"]), (10, 10, 10), "{t:?}");

    // b4 fails: after two 503s in a row it is ejected and gets no turn.
    b4.store(503, std::sync::atomic::Ordering::Relaxed);
    wait_for("b4 ejected", Duration::from_secs(10), || {
        (0..15).all(|_| answer(gw).1 != "b4")
    });
    // Healed: once the ejection (1 s, on a 1 s grid) is over, b4 is back,
    // ramping from 10 % of its turns over the 20 s window.
    b4.store(200, std::sync::atomic::Ordering::Relaxed);
    wait_for("b4 back", Duration::from_secs(15), || body(gw) == "b4");
    let back = Instant::now();
    let early = tally(gw, 60);
    let early_done = back.elapsed();
    assert!(
        early_done < Duration::from_secs(8),
        "the early sample took {early_done:?}: too slow to say anything about the ramp"
    );
    // Without the ramp b4 would have exactly its third: 20 of 60.
    let n = early.get("b4").copied().unwrap_or(0);
    assert!(n <= 12, "early in the window b4 got {n} of 60: {early:?}");

    // After the window: plain round robin again.
    std::thread::sleep(Duration::from_secs(21).saturating_sub(back.elapsed()));
    let late = tally(gw, 60);
    assert_eq!(
        (late["b2"], late["b3"], late["b4"]),
        (20, 20, 20),
        "after the window every endpoint has its turn: {late:?}"
    );
}
