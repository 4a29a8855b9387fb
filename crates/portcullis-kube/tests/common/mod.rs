//! Shared test support: the fake API server, object builders, controller start-up.
#![allow(dead_code)]

pub mod fake_api;

use std::sync::Arc;

use portcullis_kube::controller::Controller;
use portcullis_kube::stream::server::{BoxFuture, TokenReviewer};
use portcullis_kube::{ControllerArgs, status::merge};
use serde_json::{Value, json};

#[allow(unused_imports)]
pub use fake_api::{FakeApi, eventually};

pub const GW: &str = "gateway.networking.k8s.io";
pub const ME: &str = "portcullis.dev/gateway-controller";

pub fn init_tracing() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()))
        .with_test_writer()
        .try_init();
}

/// Accepts tokens from a fixed map.
pub struct FakeReviewer(pub Vec<(String, String)>);

impl TokenReviewer for FakeReviewer {
    fn review<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            self.0
                .iter()
                .find(|(t, _)| t == token)
                .map(|(_, u)| u.clone())
                .ok_or_else(|| "invalid token".to_string())
        })
    }
}

pub fn args(identity: &str, provisioning: bool) -> ControllerArgs {
    let mut a = ControllerArgs::defaults();
    a.identity = Some(identity.into());
    a.stream_listen = "127.0.0.1:0".parse().unwrap();
    a.stream_tls_san = vec!["127.0.0.1".into()];
    a.admin = "127.0.0.1:0".parse().unwrap();
    a.lease_duration = 3;
    a.lease_retry = 1;
    a.debounce_ms = 20;
    a.no_provisioning = !provisioning;
    a.proxy_image = "portcullis:test".into();
    a
}

pub async fn start(
    client: kube::Client,
    args: ControllerArgs,
    reviewer: Vec<(String, String)>,
) -> Controller {
    Controller::start(client, args, Arc::new(FakeReviewer(reviewer)))
        .await
        .expect("controller starts")
}

/// The config stream's CA certificate (PEM), once a controller has created its Secret.
pub async fn stream_ca(api: &FakeApi) -> String {
    use base64::Engine;
    eventually(10, "the stream CA Secret", || {
        let s = api.get("", "secrets", "portcullis-system", "portcullis-stream-ca")?;
        let b = base64::engine::general_purpose::STANDARD
            .decode(s["data"]["ca.crt"].as_str()?)
            .ok()?;
        Some(String::from_utf8(b).unwrap())
    })
    .await
}

pub fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name, "labels": {"kubernetes.io/metadata.name": name}}})
}

pub fn class() -> Value {
    json!({"apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass", "metadata": {"name": "portcullis"}, "spec": {"controllerName": ME}})
}

pub fn gateway(name: &str, port: u16) -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"gatewayClassName": "portcullis", "listeners": [
            {"name": "http", "port": port, "protocol": "HTTP", "allowedRoutes": {"namespaces": {"from": "Same"}}}
        ]}
    })
}

pub fn route(name: &str, gateway: &str, backend: &str) -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {
            "parentRefs": [{"group": GW, "kind": "Gateway", "name": gateway}],
            "rules": [{
                "matches": [{"path": {"type": "PathPrefix", "value": "/"}}],
                "backendRefs": [{"group": "", "kind": "Service", "name": backend, "port": 8080, "weight": 1}]
            }]
        }
    })
}

pub fn service(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": name, "namespace": "default"},
        "spec": {"type": "ClusterIP", "clusterIP": "10.96.0.10", "ports": [{"name": "http", "port": 8080, "protocol": "TCP", "targetPort": 8080}]}
    })
}

pub fn endpoints(service: &str, addr: std::net::SocketAddr) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("{service}-abc"), "namespace": "default", "labels": {"kubernetes.io/service-name": service}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": [addr.ip().to_string()], "conditions": {"ready": true, "serving": true, "terminating": false}}],
        "ports": [{"name": "http", "port": addr.port(), "protocol": "TCP"}]
    })
}

/// Status PATCHes recorded so far (optionally through one listener), as (path, body).
pub fn status_patches(api: &FakeApi, listener: Option<usize>) -> Vec<(String, Value)> {
    api.writes(listener)
        .into_iter()
        .filter(|r| r.method == "PATCH" && r.path.ends_with("/status"))
        .map(|r| (r.path, r.body))
        .collect()
}

/// Replace every `lastTransitionTime` (checked to be RFC 3339) with `T`.
pub fn blank_times(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if k == "lastTransitionTime" {
                    let t = x.as_str().expect("time is a string");
                    assert!(
                        chrono::DateTime::parse_from_rfc3339(t).is_ok(),
                        "bad lastTransitionTime {t:?}"
                    );
                    *x = json!("T");
                } else {
                    blank_times(x);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(blank_times),
        _ => {}
    }
}

/// Set every `lastTransitionTime` to `T` (for expected values built from translation, which has no clock).
pub fn set_times(v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if k == "lastTransitionTime" {
                    *x = json!("T");
                } else {
                    set_times(x);
                }
            }
        }
        Value::Array(a) => a.iter_mut().for_each(set_times),
        _ => {}
    }
}

/// A status as the API holds it, for comparisons: normalised, times blanked.
pub fn canonical(mut v: Value) -> Value {
    blank_times(&mut v);
    merge::normalise(v)
}

/// A stand-in for proxies' admin endpoint: serve `/state` (the document in `state`; 404 while empty) on 127.0.0.1; its port.
pub async fn state_server(state: std::sync::Arc<std::sync::Mutex<String>>) -> u16 {
    use http_body_util::Full;
    use hyper_util::rt::TokioIo;
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = l.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let state = state.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: http::Request<_>| {
                    let body = state.lock().unwrap().clone();
                    async move {
                        let mut r =
                            http::Response::new(Full::new(bytes::Bytes::from(body.clone())));
                        if req.uri().path() != "/state" || body.is_empty() {
                            *r.status_mut() = http::StatusCode::NOT_FOUND;
                        }
                        Ok::<_, std::convert::Infallible>(r)
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    port
}
