//! BackendTrafficPolicy on TCPRoutes through `portcullis run`: round robin
//! over the endpoints, `circuitBreaker.maxConnections` (a connection past it
//! is closed at once), `timeout.tcp.connectTimeout`, and the HTTP-only
//! fields named in the policy's status.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use common::{free_addr, free_port, start, status_doc, wait_for};

/// A TCP backend on 127.0.0.`n`:`port` that greets each connection with
/// `b<n>\n` and then echoes.
fn backend(n: u8, port: u16) {
    let l = TcpListener::bind((format!("127.0.0.{n}"), port)).unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                if s.write_all(format!("b{n}\n").as_bytes()).is_err() {
                    return;
                }
                let mut buf = [0u8; 1024];
                loop {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(k) => {
                            if s.write_all(&buf[..k]).is_err() {
                                return;
                            }
                        }
                    }
                }
            });
        }
    });
}

/// Connect and read the greeting: `Some("b2")`, or `None` when the gateway
/// closes the connection without one.
fn greeting(addr: SocketAddr) -> (Option<String>, TcpStream) {
    let s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    let got = match r.read_line(&mut line) {
        Ok(0) | Err(_) => None,
        Ok(_) => Some(line.trim().to_string()),
    };
    (got, s)
}

fn config(rr_port: u16, hole_port: u16, bport: u16, hole: SocketAddr) -> String {
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
  - {{name: rr, port: {rr_port}, protocol: TCP}}
  - {{name: hole, port: {hole_port}, protocol: TCP}}
---
apiVersion: v1
kind: Service
metadata: {{name: svc, namespace: default}}
spec:
  ports: [{{name: tcp, port: 80}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: svc-1, namespace: default, labels: {{kubernetes.io/service-name: svc}}}}
addressType: IPv4
ports: [{{name: tcp, port: {bport}}}]
endpoints: [{{addresses: ["127.0.0.2", "127.0.0.3"], conditions: {{ready: true}}}}]
---
apiVersion: v1
kind: Service
metadata: {{name: hole, namespace: default}}
spec:
  ports: [{{name: tcp, port: 80}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: hole-1, namespace: default, labels: {{kubernetes.io/service-name: hole}}}}
addressType: IPv4
ports: [{{name: tcp, port: {hport}}}]
endpoints: [{{addresses: ["127.0.0.1"], conditions: {{ready: true}}}}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {{name: rr, namespace: default}}
spec:
  parentRefs: [{{name: gw, sectionName: rr}}]
  rules: [{{backendRefs: [{{name: svc, port: 80}}]}}]
---
apiVersion: gateway.networking.k8s.io/v1alpha2
kind: TCPRoute
metadata: {{name: hole, namespace: default}}
spec:
  parentRefs: [{{name: gw, sectionName: hole}}]
  rules: [{{backendRefs: [{{name: hole, port: 80}}]}}]
---
apiVersion: portcullis.dev/v1alpha1
kind: BackendTrafficPolicy
metadata: {{name: rr, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: TCPRoute, name: rr}}]
  loadBalancer: {{type: RoundRobin}}
  circuitBreaker: {{maxConnections: 2}}
  rateLimit:
    local:
      rules: [{{limit: {{requests: 1, unit: Second}}}}]
---
apiVersion: portcullis.dev/v1alpha1
kind: BackendTrafficPolicy
metadata: {{name: hole, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: TCPRoute, name: hole}}]
  timeout:
    tcp: {{connectTimeout: 300ms}}
"#,
        hport = hole.port()
    )
}

#[test]
fn tcp_routes_take_round_robin_max_connections_and_connect_timeout() {
    let bport = free_port();
    backend(2, bport);
    backend(3, bport);
    // A listener whose backlog is full: connects to it are never answered.
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    sock.bind(&SocketAddr::from(([127, 0, 0, 1], 0)).into())
        .unwrap();
    sock.listen(0).unwrap();
    let hole: SocketAddr = sock.local_addr().unwrap().as_socket().unwrap();
    let held: Vec<TcpStream> = (0..4)
        .filter_map(|_| TcpStream::connect_timeout(&hole, Duration::from_millis(300)).ok())
        .collect();
    assert!(TcpStream::connect_timeout(&hole, Duration::from_millis(500)).is_err());

    let (rr_port, hole_port) = (free_port(), free_port());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("gw.yaml"),
        config(rr_port, hole_port, bport, hole),
    )
    .unwrap();
    let admin = free_addr();
    let _p = start(dir.path(), admin, &[]);
    let rr: SocketAddr = format!("127.0.0.1:{rr_port}").parse().unwrap();
    let hole_gw: SocketAddr = format!("127.0.0.1:{hole_port}").parse().unwrap();
    wait_for("the TCP port", Duration::from_secs(10), || {
        TcpStream::connect_timeout(&rr, Duration::from_millis(200)).is_ok()
    });

    // Round robin: connection after connection, the endpoints take turns.
    // (A connection closed just before may still count against
    // maxConnections for a moment; a refused one takes no turn: try again.)
    let mut seen = vec![];
    for _ in 0..6 {
        wait_for(
            "a connection through",
            Duration::from_secs(5),
            || match greeting(rr).0 {
                Some(g) => {
                    seen.push(g);
                    true
                }
                None => false,
            },
        );
    }
    for w in seen.windows(2) {
        assert_ne!(w[0], w[1], "endpoints take turns: {seen:?}");
    }

    // maxConnections: 2 held; a third is closed at once; one freed, the
    // next works again (the count follows closes).
    // (Connections of the loop above may still be closing: take two.)
    let mut two: Vec<TcpStream> = vec![];
    wait_for("two connections through", Duration::from_secs(5), || {
        let (g, s) = greeting(rr);
        if g.is_some() {
            two.push(s);
        }
        two.len() == 2
    });
    let (sa, sb) = (two.remove(0), two.remove(0));
    let t = Instant::now();
    let (c, _sc) = greeting(rr);
    assert_eq!(c, None, "past maxConnections the connection is closed");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
    drop(sa);
    wait_for("a connection slot again", Duration::from_secs(5), || {
        greeting(rr).0.is_some()
    });
    drop(sb);

    // connectTimeout: a connect to the full backlog is given up after 300 ms
    // (the built-in timeout is 5 s) and the client connection closed.
    for _ in 0..2 {
        let t = Instant::now();
        let (g, _s) = greeting(hole_gw);
        let took = t.elapsed();
        assert_eq!(g, None);
        assert!(
            took >= Duration::from_millis(250) && took < Duration::from_millis(2500),
            "{took:?}"
        );
    }

    // The status names what does not apply to TCP.
    let doc = status_doc(admin);
    let policy = doc
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["kind"] == "BackendTrafficPolicy" && o["metadata"]["name"] == "rr")
        .unwrap();
    let accepted = &policy["status"]["ancestors"][0]["conditions"][0];
    assert_eq!(accepted["status"], "True", "{accepted}");
    assert_eq!(
        accepted["message"],
        "policy is applied; not applied to TCPRoute default/rr (HTTP only): rateLimit"
    );
    drop(held);
}
