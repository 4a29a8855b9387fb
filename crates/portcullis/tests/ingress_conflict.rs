//! The conflict rule: where an Ingress and an HTTPRoute claim a host on the
//! same address and port, the Gateway API wins. A listener serves a whole
//! host, so the Gateway API listener takes every path of that host, and the
//! Ingress's status says `Conflicted=True` naming the host and the listener.
//! Real processes on 127.0.0.1.

mod common;

use std::time::Duration;

use common::{Recorder, free_addr, free_port, start};

/// Files: a Gateway `gateway` (listener `shop`, `hostname` if any) on
/// 127.0.0.1:`port` with an HTTPRoute `/api` → route-svc, and an Ingress of
/// Portcullis' class for shop.example.com and blog.example.com → ingress-svc
/// served on the same socket. (process, admin, recorders: ingress, route)
fn setup(
    gateway: &str,
    hostname: &str,
) -> (
    common::Proc,
    std::net::SocketAddr,
    std::net::SocketAddr,
    Recorder,
    Recorder,
    tempfile::TempDir,
) {
    let ingress_backend = Recorder::start();
    let route_backend = Recorder::start();
    let port = free_port();
    let https = free_port();
    let dir = tempfile::tempdir().unwrap();
    let svc = |name: &str, b: std::net::SocketAddr| {
        format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  ports: [{{name: http, port: 80}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}-1, namespace: default, labels: {{kubernetes.io/service-name: {name}}}}}\naddressType: IPv4\nports: [{{name: http, port: {}}}]\nendpoints: [{{addresses: [\"127.0.0.1\"], conditions: {{ready: true}}}}]\n",
            b.port()
        )
    };
    std::fs::write(
        dir.path().join("all.yaml"),
        format!(
            r#"apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: portcullis}}
spec: {{controllerName: portcullis.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: {gateway}, namespace: default}}
spec:
  gatewayClassName: portcullis
  addresses: [{{type: IPAddress, value: 127.0.0.1}}]
  listeners: [{{name: shop, port: {port}, protocol: HTTP{hostname}}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: shop-api, namespace: default}}
spec:
  parentRefs: [{{name: {gateway}}}]
  rules:
    - matches: [{{path: {{type: PathPrefix, value: /api}}}}]
      backendRefs: [{{name: route-svc, port: 80}}]
---
apiVersion: networking.k8s.io/v1
kind: IngressClass
metadata: {{name: portcullis}}
spec: {{controller: portcullis.dev/ingress-controller}}
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata: {{name: legacy, namespace: default}}
spec:
  ingressClassName: portcullis
  rules:
    - host: shop.example.com
      http:
        paths: [{{path: /, pathType: Prefix, backend: {{service: {{name: ingress-svc, port: {{number: 80}}}}}}}}]
    - host: blog.example.com
      http:
        paths: [{{path: /, pathType: Prefix, backend: {{service: {{name: ingress-svc, port: {{number: 80}}}}}}}}]
{}{}"#,
            svc("route-svc", route_backend.addr),
            svc("ingress-svc", ingress_backend.addr),
        ),
    )
    .unwrap();
    let admin = free_addr();
    let p = start(
        dir.path(),
        admin,
        &[
            "--ingress-http",
            &format!("127.0.0.1:{port}"),
            "--ingress-https",
            &format!("127.0.0.1:{https}"),
        ],
    );
    let addr = format!("127.0.0.1:{port}").parse().unwrap();
    common::wait_for("the shared listener", Duration::from_secs(10), || {
        common::get(addr, "shop.example.com", "/api/ready").is_some_and(|(s, _)| s == 200)
    });
    (p, addr, admin, ingress_backend, route_backend, dir)
}

/// The Ingress's condition `type_`.
fn condition(admin: std::net::SocketAddr, type_: &str) -> serde_json::Value {
    let doc = common::status_doc(admin);
    let legacy = doc
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["kind"] == "Ingress" && o["metadata"]["name"] == "legacy")
        .expect("the Ingress's status")
        .clone();
    assert_eq!(
        legacy["status"]["loadBalancer"]["ingress"][0]["ip"],
        "127.0.0.1"
    );
    legacy["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .cloned()
        .unwrap_or_else(|| panic!("no {type_}: {legacy}"))
}

#[test]
fn a_gateway_api_listener_takes_a_host_an_ingress_also_claims() {
    let (_p, addr, admin, ingress_backend, route_backend, _dir) =
        setup("gw", ", hostname: shop.example.com");
    // The HTTPRoute's host: its listener serves every path of it.
    assert_eq!(
        common::get(addr, "shop.example.com", "/api/x").unwrap().0,
        200
    );
    assert!(route_backend.received().contains("GET /api/x "));
    assert_eq!(
        common::get(addr, "shop.example.com", "/cart").unwrap().0,
        404
    );
    assert!(!ingress_backend.received().contains("/cart"));
    // A host only the Ingress claims is the Ingress's.

    assert_eq!(common::get(addr, "blog.example.com", "/").unwrap().0, 200);
    assert!(ingress_backend.received().contains("GET / "));

    let conflicted = condition(admin, "Conflicted");
    assert_eq!(conflicted["status"], "True");
    let msg = conflicted["message"].as_str().unwrap();
    assert!(
        msg.contains("host shop.example.com") && msg.contains("default/gw/shop"),
        "{msg}"
    );
    assert!(!msg.contains("blog.example.com"), "{msg}");
    assert_eq!(condition(admin, "Accepted")["status"], "True");
}

/// Two listeners without a hostname on one socket: the Gateway API one comes
/// first whatever the names (the derived Gateway `default/portcullis` sorts
/// before `default/zz`), so it takes every host.
#[test]
fn a_gateway_api_listener_for_any_host_takes_every_host_of_the_socket() {
    let (_p, addr, admin, ingress_backend, _route_backend, _dir) = setup("zz", "");
    assert_eq!(common::get(addr, "blog.example.com", "/").unwrap().0, 404);
    assert_eq!(
        common::get(addr, "shop.example.com", "/api/x").unwrap().0,
        200
    );
    assert!(ingress_backend.received().is_empty());
    let msg = condition(admin, "Conflicted")["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        msg.contains("host blog.example.com")
            && msg.contains("host shop.example.com")
            && msg.contains("default/zz/shop"),
        "{msg}"
    );
}
