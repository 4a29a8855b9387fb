//! SecurityPolicy `oidc` and `extAuth.grpc` through `portcullis run`: real
//! process, real files, real sockets on 127.0.0.1. A gRPC `Check` server and
//! an OpenID provider's discovery endpoint run in the test; the client secret
//! never appears in the admin API or in `portcullis status`.

use std::convert::Infallible;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use portcullis_dataplane::auth::ext_authz_pb as pb;
use prost::Message;

mod common;
use common::{Proc, bin, free_port, request, wait_for};

const CLIENT_SECRET: &str = "oidc-client-secret-7c1e";

/// Serve each connection's requests with `answer(head) -> response bytes`.
fn http_server(answer: fn(&str, SocketAddr) -> String) -> SocketAddr {
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
                        if s.write_all(answer(&head, addr).as_bytes()).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

fn ok(body: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// The backend: answers the request head it got.
fn backend(head: &str, _: SocketAddr) -> String {
    ok(head)
}

/// The provider's discovery document.
fn provider(head: &str, me: SocketAddr) -> String {
    if head.starts_with("get /.well-known/openid-configuration") {
        ok(&format!(
            r#"{{"issuer":"http://{me}","authorization_endpoint":"http://{me}/authorize","token_endpoint":"http://{me}/token","jwks_uri":"http://{me}/jwks"}}"#
        ))
    } else {
        "HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n".into()
    }
}

fn hvo(key: &str, value: &str) -> pb::HeaderValueOption {
    pb::HeaderValueOption {
        header: Some(pb::HeaderValue {
            key: key.into(),
            value: value.into(),
            raw_value: vec![],
        }),
        append: None,
        append_action: 0,
    }
}

/// An h2c `Authorization/Check` server: `authorization: Bearer good` is
/// allowed (with `x-auth-user: alice`), anything else denied with 403.
fn grpc_auth() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    l.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let l = tokio::net::TcpListener::from_std(l).unwrap();
            while let Ok((tcp, _)) = l.accept().await {
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(
                        |req: hyper::Request<hyper::body::Incoming>| async move {
                            let body = req.into_body().collect().await.unwrap().to_bytes();
                            let check = pb::CheckRequest::decode(&body[5..]).unwrap();
                            let http = check.attributes.unwrap().request.unwrap().http.unwrap();
                            let resp = if http.headers.get("authorization").map(String::as_str)
                                == Some("Bearer good")
                            {
                                pb::CheckResponse {
                                    status: Some(pb::RpcStatus::default()),
                                    ok_response: Some(pb::OkHttpResponse {
                                        headers: vec![hvo("x-auth-user", "alice")],
                                        ..Default::default()
                                    }),
                                    ..Default::default()
                                }
                            } else {
                                pb::CheckResponse {
                                    status: Some(pb::RpcStatus {
                                        code: 7,
                                        message: String::new(),
                                    }),
                                    denied_response: Some(pb::DeniedHttpResponse {
                                        status: Some(pb::HttpStatus { code: 403 }),
                                        headers: vec![],
                                        body: "denied by grpc\n".into(),
                                    }),
                                    ..Default::default()
                                }
                            };
                            let msg = resp.encode_to_vec();
                            let mut framed = vec![0u8];
                            framed.extend_from_slice(&(msg.len() as u32).to_be_bytes());
                            framed.extend_from_slice(&msg);
                            let mut trailers = http::HeaderMap::new();
                            trailers.insert("grpc-status", "0".parse().unwrap());
                            let body = http_body_util::Full::new(Bytes::from(framed))
                                .with_trailers(async move { Some(Ok(trailers)) });
                            Ok::<_, Infallible>(
                                hyper::Response::builder()
                                    .header("content-type", "application/grpc")
                                    .body(body)
                                    .unwrap(),
                            )
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
    addr
}

fn service(name: &str, port: u16) -> String {
    format!(
        r#"---
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: default}}
spec:
  clusterIP: 127.0.0.1
  ports: [{{name: p, port: 80, targetPort: {port}}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: {name}-1, namespace: default, labels: {{kubernetes.io/service-name: {name}}}}}
addressType: IPv4
ports: [{{name: p, port: {port}}}]
endpoints: [{{addresses: ["127.0.0.1"], conditions: {{ready: true}}}}]
"#
    )
}

fn manifest(port: u16, backend: SocketAddr, authz: SocketAddr, idp: SocketAddr) -> String {
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
    - name: api
      matches: [{{path: {{type: PathPrefix, value: /api}}}}]
      backendRefs: [{{name: svc, port: 80}}]
    - name: app
      matches: [{{path: {{type: PathPrefix, value: /}}}}]
      backendRefs: [{{name: svc, port: 80}}]
{svc}{authz}---
apiVersion: v1
kind: Secret
metadata: {{name: idp, namespace: default}}
stringData: {{client-secret: {CLIENT_SECRET}}}
---
apiVersion: portcullis.dev/v1alpha1
kind: SecurityPolicy
metadata: {{name: api-grpc, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: web, sectionName: api}}]
  extAuth:
    grpc:
      backendRefs: [{{name: authz, port: 80}}]
    timeout: 2s
---
apiVersion: portcullis.dev/v1alpha1
kind: SecurityPolicy
metadata: {{name: app-oidc, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: web, sectionName: app}}]
  oidc:
    provider: {{issuer: "http://{idp}"}}
    clientID: gateway
    clientSecret: {{name: idp}}
    scopes: [email]
"#,
        svc = service("svc", backend.port()),
        authz = service("authz", authz.port()),
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
fn grpc_ext_auth_and_oidc_through_portcullis_run() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let (b, authz, idp) = (http_server(backend), grpc_auth(), http_server(provider));
    std::fs::write(dir.path().join("a.yaml"), manifest(port, b, authz, idp)).unwrap();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let _p = start(dir.path(), admin);
    let gw: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_for("the gateway", Duration::from_secs(20), || {
        request(gw, "/api", "").is_some_and(|(s, _)| s != 404)
    });

    // gRPC ext auth: allowed with the service's header, denied with its answer.
    let (s, out) = request(gw, "/api/x", "authorization: Bearer good\r\n").unwrap();
    assert_eq!(s, 200, "{out}");
    assert!(out.contains("x-auth-user: alice"), "{out}");
    let (s, out) = request(gw, "/api/x", "authorization: Bearer bad\r\n").unwrap();
    assert_eq!(s, 403, "{out}");
    assert!(out.ends_with("denied by grpc\n"), "{out}");

    // OIDC: a browser is sent to the discovered authorization endpoint with
    // PKCE; an API request gets 401.
    let (s, out) = request(gw, "/page", "accept: text/html\r\n").unwrap();
    assert_eq!(s, 302, "{out}");
    let lower = out.to_lowercase();
    let location = lower
        .lines()
        .find_map(|l| l.strip_prefix("location: "))
        .unwrap();
    assert!(
        location.starts_with(&format!(
            "http://{idp}/authorize?response_type=code&client_id=gateway"
        )),
        "{location}"
    );
    assert!(
        location.contains("redirect_uri=http%3a%2f%2fh%2foauth2%2fcallback"),
        "{location}"
    );
    assert!(location.contains("scope=openid%20email"), "{location}");
    assert!(
        location.contains("code_challenge_method=s256"),
        "{location}"
    );
    assert!(
        lower.contains("set-cookie: portcullis-oidc-login-"),
        "{out}"
    );
    assert_eq!(
        request(gw, "/page", "accept: application/json\r\n")
            .unwrap()
            .0,
        401
    );

    // Statuses accepted; the client secret appears nowhere.
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
        assert!(!doc.contains(CLIENT_SECRET), "client secret leaked");
    }
    assert!(config.contains("<redacted>"));
    let v: serde_json::Value = serde_json::from_str(&cli).unwrap();
    for p in v
        .as_array()
        .unwrap()
        .iter()
        .filter(|o| o["kind"] == "SecurityPolicy")
    {
        let c = &p["status"]["ancestors"][0]["conditions"][0];
        assert_eq!(c["status"], "True", "{p}");
    }
}
