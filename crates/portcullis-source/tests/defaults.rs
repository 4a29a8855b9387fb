//! Defaults are filled from the CRD schemas, as the API server does.

mod common;

use common::{load, only};
use portcullis_store::Kind;
use serde_json::json;

#[test]
fn httproute_defaults() {
    let (loaded, errors, warnings) = load(
        "route.yaml",
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata:
  name: foo
spec:
  parentRefs:
  - name: gw
  rules:
  - backendRefs:
    - name: svc
      port: 8080
  - matches:
    - headers:
      - name: x-a
        value: b
    filters:
    - type: RequestRedirect
      requestRedirect:
        hostname: example.com
  - matches:
    - path:
        value: /exact
        type: Exact
    filters:
    - type: URLRewrite
      urlRewrite:
        path:
          type: ReplaceFullPath
          replaceFullPath: /x
"#,
    );
    assert!(errors.is_empty(), "{errors:?}");
    assert!(warnings.is_empty(), "{warnings:?}");
    let r = only(&loaded, Kind::HTTPRoute);
    assert_eq!(r["metadata"]["namespace"], "default");
    assert_eq!(
        r["spec"]["parentRefs"][0],
        json!({"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"})
    );
    // The rule without matches gets the default match.
    assert_eq!(
        r["spec"]["rules"][0]["matches"],
        json!([{"path": {"type": "PathPrefix", "value": "/"}}])
    );
    let backend = &r["spec"]["rules"][0]["backendRefs"][0];
    assert_eq!(backend["weight"], 1);
    assert_eq!(backend["group"], "");
    assert_eq!(backend["kind"], "Service");
    // A match with headers only: its path is defaulted too, and header match type.
    assert_eq!(
        r["spec"]["rules"][1]["matches"][0]["path"],
        json!({"type": "PathPrefix", "value": "/"})
    );
    assert_eq!(
        r["spec"]["rules"][1]["matches"][0]["headers"][0]["type"],
        "Exact"
    );
    assert_eq!(
        r["spec"]["rules"][1]["filters"][0]["requestRedirect"]["statusCode"],
        302
    );
    assert_eq!(
        r["spec"]["rules"][2]["matches"][0]["path"],
        json!({"type": "Exact", "value": "/exact"})
    );
}

#[test]
fn httproute_without_rules_gets_the_default_rule() {
    let (loaded, errors, _) = load(
        "r.yaml",
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: a, namespace: ns}\nspec: {}\n",
    );
    assert!(errors.is_empty(), "{errors:?}");
    let r = only(&loaded, Kind::HTTPRoute);
    assert_eq!(r["metadata"]["namespace"], "ns");
    assert_eq!(
        r["spec"]["rules"],
        json!([{"matches": [{"path": {"type": "PathPrefix", "value": "/"}}]}])
    );
}

#[test]
fn gateway_defaults() {
    let (loaded, errors, _) = load(
        "gw.yaml",
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw}
spec:
  gatewayClassName: portcullis
  addresses:
  - value: 10.0.0.1
  listeners:
  - name: http
    port: 80
    protocol: HTTP
  - name: https
    port: 443
    protocol: HTTPS
    hostname: "*.example.com"
    tls:
      certificateRefs:
      - name: cert
"#,
    );
    assert!(errors.is_empty(), "{errors:?}");
    let g = only(&loaded, Kind::Gateway);
    let http = &g["spec"]["listeners"][0];
    assert_eq!(
        http["allowedRoutes"],
        json!({"namespaces": {"from": "Same"}})
    );
    let tls = &g["spec"]["listeners"][1]["tls"];
    assert_eq!(tls["mode"], "Terminate");
    assert_eq!(
        tls["certificateRefs"][0],
        json!({"group": "", "kind": "Secret", "name": "cert"})
    );
    assert_eq!(g["spec"]["addresses"][0]["type"], "IPAddress");
}

#[test]
fn grpcroute_and_reference_grant_defaults() {
    let (loaded, errors, _) = load(
        "g.yaml",
        r#"
apiVersion: gateway.networking.k8s.io/v1
kind: GRPCRoute
metadata: {name: g}
spec:
  rules:
  - matches:
    - method:
        service: foo.Bar
      headers:
      - name: x
        value: y
    backendRefs:
    - name: svc
      port: 9000
---
apiVersion: gateway.networking.k8s.io/v1beta1
kind: ReferenceGrant
metadata: {name: rg, namespace: other}
spec:
  from:
  - group: gateway.networking.k8s.io
    kind: HTTPRoute
    namespace: default
  to:
  - group: ""
    kind: Service
"#,
    );
    assert!(errors.is_empty(), "{errors:?}");
    let g = only(&loaded, Kind::GRPCRoute);
    assert_eq!(
        g["spec"]["rules"][0]["matches"][0]["method"]["type"],
        "Exact"
    );
    assert_eq!(
        g["spec"]["rules"][0]["matches"][0]["headers"][0]["type"],
        "Exact"
    );
    assert_eq!(g["spec"]["rules"][0]["backendRefs"][0]["weight"], 1);
    let rg = only(&loaded, Kind::ReferenceGrant);
    assert_eq!(rg["metadata"]["namespace"], "other");
}

#[test]
fn cluster_scoped_and_list_documents() {
    let (loaded, errors, warnings) = load(
        "list.yaml",
        r#"
apiVersion: v1
kind: List
items:
- apiVersion: gateway.networking.k8s.io/v1
  kind: GatewayClass
  metadata:
    name: portcullis
    namespace: ignored
  spec:
    controllerName: portcullis.dev/gateway-controller
- apiVersion: v1
  kind: Namespace
  metadata:
    name: team-a
"#,
    );
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        warnings,
        [
            "list.yaml:9: GatewayClass portcullis: metadata.namespace: GatewayClass is cluster-scoped: the namespace is ignored"
        ]
    );
    let gc = only(&loaded, Kind::GatewayClass);
    assert!(gc["metadata"].get("namespace").is_none());
    assert_eq!(loaded.objects[0].line, 5);
    assert_eq!(loaded.objects[1].line, 12);
    only(&loaded, Kind::Namespace);
}

#[test]
fn service_and_secret_defaults() {
    let (loaded, errors, _) = load(
        "core.yaml",
        r#"
apiVersion: v1
kind: Service
metadata: {name: svc}
spec:
  selector: {app: a}
  ports:
  - port: 8080
---
apiVersion: v1
kind: Secret
metadata: {name: s}
stringData:
  token: hello
"#,
    );
    assert!(errors.is_empty(), "{errors:?}");
    let svc = only(&loaded, Kind::Service);
    assert_eq!(
        svc["spec"]["ports"][0],
        json!({"port": 8080, "protocol": "TCP", "targetPort": 8080})
    );
    let secret = only(&loaded, Kind::Secret);
    assert_eq!(secret["data"]["token"], "aGVsbG8=");
    assert_eq!(secret["type"], "Opaque");
}
