//! SecurityPolicy through `portcullis run` and `portcullis status`: real
//! process, real files, real sockets on 127.0.0.1. Secrets never appear in
//! the admin API or in `portcullis status`.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

mod common;
use common::{Proc, bin, free_port, request, wait_for};

/// A tiny HTTP/1.1 backend answering the request head it got.
fn backend() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 8192];
                let mut acc = Vec::new();
                loop {
                    let Ok(n) = s.read(&mut buf) else { return };
                    if n == 0 {
                        return;
                    }
                    acc.extend_from_slice(&buf[..n]);
                    while let Some(end) = acc.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&acc[..end]).to_lowercase();
                        acc.drain(..end + 4);
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{}",
                            head.len(),
                            head
                        );
                        if s.write_all(resp.as_bytes()).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

fn manifest(port: u16, backend: SocketAddr) -> String {
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
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: web, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
    - name: keys
      matches: [{{path: {{type: PathPrefix, value: /keys}}}}]
      backendRefs: [{{name: svc, port: 80}}]
    - name: open
      matches: [{{path: {{type: PathPrefix, value: /}}}}]
      backendRefs: [{{name: svc, port: 80}}]
---
apiVersion: v1
kind: Service
metadata: {{name: svc, namespace: default}}
spec:
  clusterIP: 127.0.0.1
  ports: [{{name: http, port: 80, targetPort: {bport}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: svc-1, namespace: default, labels: {{kubernetes.io/service-name: svc}}}}
addressType: IPv4
ports: [{{name: http, port: {bport}}}]
endpoints: [{{addresses: ["127.0.0.1"], conditions: {{ready: true}}}}]
---
apiVersion: v1
kind: Secret
metadata: {{name: keys, namespace: default}}
stringData: {{client-a: very-secret-key-1234}}
---
apiVersion: v1
kind: Secret
metadata: {{name: users, namespace: default}}
stringData:
  .htpasswd: "bob:{{SHA}}lW2ZjsFP+nY11L3OFMUH/UdgUQQ=\n"
---
apiVersion: portcullis.dev/v1alpha1
kind: SecurityPolicy
metadata: {{name: gw-basic, namespace: default, creationTimestamp: "2024-01-01T00:00:00Z"}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: Gateway, name: gw}}]
  basicAuth: {{users: {{name: users}}}}
---
apiVersion: portcullis.dev/v1alpha1
kind: SecurityPolicy
metadata: {{name: rule-keys, namespace: default, creationTimestamp: "2024-01-02T00:00:00Z"}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: web, sectionName: keys}}]
  apiKeyAuth:
    credentialRefs: [{{name: keys}}]
    extractFrom: [{{headers: [x-api-key]}}]
    forwardClientIDHeader: x-client-id
    sanitize: true
"#,
        bport = backend.port()
    )
}

fn start(dir: &Path, admin: SocketAddr) -> Proc {
    let child = Command::new(bin())
        .args(["run", "--config"])
        .arg(dir)
        .args(["--admin", &admin.to_string(), "--workers", "1"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn portcullis");
    let p = Proc(child);
    wait_for("readyz", Duration::from_secs(20), || {
        request(admin, "/readyz", "").is_some_and(|(s, _)| s == 200)
    });
    p
}

#[test]
fn policies_protect_routes_and_secrets_stay_secret() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let b = backend();
    std::fs::write(dir.path().join("a.yaml"), manifest(port, b)).unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let _p = start(dir.path(), admin);
    let gw: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_for("the gateway", Duration::from_secs(20), || {
        request(gw, "/", "").is_some()
    });

    // Gateway-wide Basic auth on the open rule.
    let (s, out) = request(gw, "/x", "").unwrap();
    assert_eq!(s, 401, "{out}");
    assert!(
        out.to_lowercase().contains("www-authenticate: basic"),
        "{out}"
    );
    let (s, _) = request(gw, "/x", "authorization: Basic Ym9iOmIwYi1zZWNyZXQ=\r\n").unwrap();
    assert_eq!(s, 200);
    // The named rule's API-key policy wins over the Gateway's.
    assert_eq!(
        request(gw, "/keys", "authorization: Basic Ym9iOmIwYi1zZWNyZXQ=\r\n")
            .unwrap()
            .0,
        401
    );
    let (s, out) = request(gw, "/keys", "x-api-key: very-secret-key-1234\r\n").unwrap();
    assert_eq!(s, 200, "{out}");
    assert!(out.contains("x-client-id: client-a"), "{out}");
    assert!(!out.contains("very-secret-key-1234"), "sanitized: {out}");

    // Statuses: admin /status and `portcullis status`; no secret anywhere.
    let (_, status) = request(admin, "/status", "").unwrap();
    let (_, config) = request(admin, "/config", "").unwrap();
    let cli = Command::new(bin())
        .args(["status", "-o", "json", "--config"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(cli.status.success());
    let cli = String::from_utf8_lossy(&cli.stdout).to_string();
    for doc in [&status, &config, &cli] {
        assert!(!doc.contains("very-secret-key-1234"), "API key leaked");
        assert!(!doc.contains("lW2ZjsFP"), "htpasswd leaked");
    }
    assert!(config.contains("<redacted>"));
    let v: serde_json::Value = serde_json::from_str(&cli).unwrap();
    let policies: Vec<&serde_json::Value> = v
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["kind"] == "SecurityPolicy")
        .collect();
    assert_eq!(policies.len(), 2);
    let gw_policy = policies
        .iter()
        .find(|p| p["metadata"]["name"] == "gw-basic")
        .unwrap();
    let conds = &gw_policy["status"]["ancestors"][0]["conditions"];
    assert_eq!(conds[0]["type"], "Accepted");
    assert_eq!(conds[0]["status"], "True");
    assert_eq!(conds[1]["type"], "Overridden");
    assert!(status.contains("SecurityPolicy"));
}

#[test]
fn validate_rejects_unimplemented_fields_with_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.yaml"),
        "apiVersion: portcullis.dev/v1alpha1\nkind: SecurityPolicy\nmetadata: {name: sp}\nspec:\n  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: gw}]\n  oidc:\n    provider: {issuer: \"https://idp.example\"}\n    clientID: x\n    clientSecret: {name: s}\n    cookieNames: {accessToken: a}\n",
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["validate", "--config"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        err.contains("p.yaml:10")
            && err.contains("SecurityPolicy default/sp")
            && err.contains("spec.oidc.cookieNames"),
        "{err}"
    );
}
