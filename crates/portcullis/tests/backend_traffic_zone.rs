//! BackendTrafficPolicy `loadBalancer.zoneAware` through `portcullis run
//! --zone zone-a`: EndpointSlices in two zones; traffic stays in the local
//! zone while it has its share of endpoints, spills over when it has too few
//! or they are unhealthy, and stays local with `force`.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::{free_addr, free_port, named_backend as backend, start, wait_for};

/// (status, body) of `GET path`.
fn get(gw: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&gw, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
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
    (
        status,
        out.split("\r\n\r\n").nth(1).unwrap_or("").to_string(),
    )
}

fn tally(gw: SocketAddr, path: &str, n: usize) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for _ in 0..n {
        let (s, body) = get(gw, path);
        assert_eq!(s, 200, "{path}: {body}");
        *m.entry(body).or_insert(0) += 1;
    }
    m
}

/// A Service `name` with one EndpointSlice per zone.
fn service(name: &str, bport: u16, zone_a: &[u8], zone_b: &[u8]) -> String {
    let list = |l: &[u8]| {
        l.iter()
            .map(|i| format!("\"127.0.0.{i}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut y = format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  ports: [{{name: http, port: 80}}]\n"
    );
    for (zone, eps) in [("zone-a", zone_a), ("zone-b", zone_b)] {
        y.push_str(&format!(
            "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}-{zone}, namespace: default, labels: {{kubernetes.io/service-name: {name}}}}}\naddressType: IPv4\nports: [{{name: http, port: {bport}}}]\nendpoints: [{{addresses: [{}], zone: {zone}, conditions: {{ready: true}}}}]\n",
            list(eps)
        ));
    }
    y
}

/// An HTTPRoute `path` → Service `svc`, with a BackendTrafficPolicy `spec`.
fn route(name: &str, svc: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  parentRefs: [{{name: gw}}]\n  rules:\n  - matches: [{{path: {{type: PathPrefix, value: /{name}}}}}]\n    backendRefs: [{{name: {svc}, port: 80}}]\n---\napiVersion: portcullis.dev/v1alpha1\nkind: BackendTrafficPolicy\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: {name}}}]\n{spec}"
    )
}

fn config(port: u16, bport: u16, zone_a: &[u8]) -> String {
    let zone_aware = "  loadBalancer:\n    type: RoundRobin\n    zoneAware:\n      preferLocal: {minEndpointsThreshold: 2}\n";
    let forced = "  loadBalancer:\n    type: RoundRobin\n    zoneAware:\n      preferLocal: {minEndpointsThreshold: 2, force: {}}\n";
    let checked = "  loadBalancer:\n    type: RoundRobin\n    zoneAware:\n      preferLocal: {minEndpointsThreshold: 2}\n  healthCheck:\n    active: {type: TCP, interval: 100ms, timeout: 500ms, unhealthyThreshold: 1, tcp: {}}\n";
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
"#
    ) + &service("svc", bport, zone_a, &[4, 5])
        // 127.0.0.6 has no backend: the local zone of `dead` is unhealthy.
        + &service("dead", bport, &[6], &[4, 5])
        + &route("prefer", "svc", zone_aware)
        + &route("force", "svc", forced)
        + &route("health", "dead", checked)
}

#[test]
fn local_zone_endpoints_are_preferred_and_traffic_spills_over_when_they_are_short() {
    let bport = free_port();
    for n in [2, 3, 4, 5] {
        backend(n, bport);
    }
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("gw.yaml");
    std::fs::write(&file, config(port, bport, &[2, 3])).unwrap();
    let _p = start(dir.path(), free_addr(), &["--zone", "zone-a"]);
    let gw: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_for("the gateway", Duration::from_secs(10), || {
        TcpStream::connect_timeout(&gw, Duration::from_millis(200)).is_ok()
    });

    // Two endpoints in each zone: the local zone has its share, all local.
    let t = tally(gw, "/prefer", 40);
    assert_eq!(t.get("b2").copied(), Some(20), "{t:?}");
    assert_eq!(t.get("b3").copied(), Some(20), "{t:?}");

    // One local endpoint of three: two thirds stay local, a third spills over.
    std::fs::write(&file, config(port, bport, &[2])).unwrap();
    wait_for("b3 gone", Duration::from_secs(10), || {
        (0..6).all(|_| get(gw, "/prefer").1 != "b3")
    });
    let t = tally(gw, "/prefer", 90);
    let local = t.get("b2").copied().unwrap_or(0);
    let remote = t.get("b4").copied().unwrap_or(0) + t.get("b5").copied().unwrap_or(0);
    assert_eq!(local + remote, 90, "{t:?}");
    assert!((40..=80).contains(&local), "about 60 of 90 local: {t:?}");
    assert!(remote >= 10, "the rest spills over to zone-b: {t:?}");

    // force: all local while the zone has one endpoint.
    let t = tally(gw, "/force", 30);
    assert_eq!(t.get("b2").copied(), Some(30), "{t:?}");

    // The local endpoint fails its health checks: everything goes to zone-b.
    wait_for(
        "the dead local endpoint out",
        Duration::from_secs(10),
        || (0..10).all(|_| matches!(get(gw, "/health").1.as_str(), "b4" | "b5")),
    );
    let t = tally(gw, "/health", 20);
    assert_eq!(
        t.get("b4").copied().unwrap_or(0) + t.get("b5").copied().unwrap_or(0),
        20,
        "{t:?}"
    );
}
