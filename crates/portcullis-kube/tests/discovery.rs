//! API discovery against the fake API server: kinds are watched at the version
//! the API server serves, and kinds that are not installed are skipped without
//! holding back cache sync (the v1.6.1 standard-channel crash loop).

mod common;

use std::time::Duration;

use common::fake_api::{experimental_channel, standard_channel};
use common::*;
use http_body_util::BodyExt;
use serde_json::{Value, json};

fn tcp_gateway() -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": "gw", "namespace": "default"},
        "spec": {"gatewayClassName": "portcullis", "listeners": [
            {"name": "http", "port": 18080, "protocol": "HTTP", "allowedRoutes": {"namespaces": {"from": "Same"}}},
            {"name": "tcp", "port": 19000, "protocol": "TCP", "allowedRoutes": {"namespaces": {"from": "Same"}}}
        ]}
    })
}

fn tcp_route(api_version: &str) -> Value {
    json!({
        "apiVersion": api_version, "kind": "TCPRoute",
        "metadata": {"name": "tcp", "namespace": "default"},
        "spec": {
            "parentRefs": [{"group": GW, "kind": "Gateway", "name": "gw", "sectionName": "tcp"}],
            "rules": [{"backendRefs": [{"group": "", "kind": "Service", "name": "web", "port": 8080, "weight": 1}]}]
        }
    })
}

fn seed(api: &FakeApi, l4: bool) {
    let backend = "127.0.0.1:1".parse().unwrap();
    for o in [
        namespace("default"),
        class(),
        tcp_gateway(),
        route("web", "gw", "web"),
        service("web"),
        endpoints("web", backend),
    ] {
        api.put(o);
    }
    if l4 {
        api.put(tcp_route("gateway.networking.k8s.io/v1"));
    }
}

async fn readyz(admin: std::net::SocketAddr) -> Option<(u16, String)> {
    let client: hyper_util::client::legacy::Client<_, http_body_util::Empty<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
            .build_http();
    let resp = tokio::time::timeout(
        Duration::from_secs(2),
        client.get(format!("http://{admin}/readyz").parse().ok()?),
    )
    .await
    .ok()?
    .ok()?;
    let code = resp.status().as_u16();
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    Some((code, String::from_utf8_lossy(&body).into_owned()))
}

async fn wait_ready(admin: std::net::SocketAddr) -> String {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        if let Some((200, body)) = readyz(admin).await {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "controller never became ready"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_channel_watches_tcproute_at_v1() {
    init_tracing();
    let api = FakeApi::new();
    api.serve_versions(standard_channel());
    seed(&api, true);
    let addr = api.listen(0).await;
    let ctl = start(FakeApi::client(addr), args("a", false), vec![]).await;

    let body = wait_ready(ctl.admin_addr()).await;
    assert_eq!(body, "ok\n", "every kind is served: no note");
    let path = "/apis/gateway.networking.k8s.io/v1/namespaces/default/tcproutes/tcp/status";
    let (_, patch) = eventually(20, "the TCPRoute status patched at v1", || {
        status_patches(&api, None)
            .into_iter()
            .find(|(p, _)| p == path)
    })
    .await;
    let parents = patch["status"]["parents"].as_array().expect("parents");
    let accepted = parents[0]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Accepted")
        .unwrap();
    assert_eq!(accepted["status"], "True", "{patch:#}");
    // Nothing was ever asked at a version the standard channel does not serve.
    let unserved: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/v1alpha2/") || r.path.contains("/v1alpha3/"))
        .map(|r| r.path)
        .collect();
    assert!(unserved.is_empty(), "{unserved:?}");
    ctl.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn experimental_channel_still_works() {
    init_tracing();
    let api = FakeApi::new();
    api.serve_versions(experimental_channel());
    seed(&api, true);
    let addr = api.listen(0).await;
    let ctl = start(FakeApi::client(addr), args("a", false), vec![]).await;
    wait_ready(ctl.admin_addr()).await;
    eventually(20, "the TCPRoute status patched", || {
        status_patches(&api, None)
            .into_iter()
            .find(|(p, _)| p.ends_with("/tcproutes/tcp/status"))
    })
    .await;
    ctl.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kinds_not_installed_are_skipped_and_reported() {
    init_tracing();
    let api = FakeApi::new();
    // An old install: no L4 routes, no ListenerSet, no BackendTLSPolicy; and
    // TCPRoute objects exist only at a version that is not served.
    api.serve_versions(vec![(
        "v1",
        vec![
            "GatewayClass",
            "Gateway",
            "HTTPRoute",
            "GRPCRoute",
            "ReferenceGrant",
        ],
    )]);
    seed(&api, false);
    let addr = api.listen(0).await;
    let ctl = start(FakeApi::client(addr), args("a", false), vec![]).await;

    let body = wait_ready(ctl.admin_addr()).await;
    assert!(body.starts_with("ok\n"), "{body}");
    for k in [
        "ListenerSet",
        "TLSRoute",
        "TCPRoute",
        "UDPRoute",
        "BackendTLSPolicy",
    ] {
        assert!(body.contains(k), "readiness names {k}: {body}");
    }
    assert!(!body.contains("HTTPRoute"), "{body}");
    eventually(20, "the HTTPRoute status patched", || {
        status_patches(&api, None)
            .into_iter()
            .find(|(p, _)| p.ends_with("/httproutes/web/status"))
    })
    .await;
    let asked: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| {
            [
                "tcproutes",
                "udproutes",
                "tlsroutes",
                "listenersets",
                "backendtlspolicies",
            ]
            .iter()
            .any(|k| r.path.contains(k))
        })
        .map(|r| r.path)
        .collect();
    assert!(
        asked.is_empty(),
        "skipped kinds are never requested: {asked:?}"
    );
    ctl.shutdown().await.unwrap();
}
