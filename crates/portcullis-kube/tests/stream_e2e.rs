//! Controller → proxy config stream, end to end in one process: fake API
//! server → controller → HTTP/2 stream → `portcullis proxy` data plane →
//! real HTTP requests to real backends, all on 127.0.0.1.

mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use portcullis_kube::ProxyArgs;
use serde_json::json;

const PROXY_USER: &str = "system:serviceaccount:default:gw-portcullis";

async fn backend(name: &'static str) -> SocketAddr {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((s, _)) = l.accept().await else {
                continue;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req| async move {
                    Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from(
                        name,
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(s), svc)
                    .await;
            });
        }
    });
    addr
}

fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// GET a URL; `None` on any failure.
async fn get(url: &str) -> Option<(u16, String)> {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
    let resp = tokio::time::timeout(Duration::from_secs(2), client.get(url.parse().ok()?))
        .await
        .ok()?
        .ok()?;
    let code = resp.status().as_u16();
    let body = resp.into_body().collect().await.ok()?.to_bytes();
    Some((code, String::from_utf8_lossy(&body).into_owned()))
}

async fn h2_status(stream: SocketAddr, token: &str) -> u16 {
    let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let req = http::Request::get(format!("http://{stream}/v1/config/default/gw"))
        .header("authorization", format!("Bearer {token}"))
        .body(Empty::new())
        .unwrap();
    client.request(req).await.unwrap().status().as_u16()
}

struct Proxy {
    admin: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

async fn proxy(stream: SocketAddr, token: &str, dir: &tempfile::TempDir, name: &str) -> Proxy {
    let token_file = dir.path().join(name);
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let args = ProxyArgs {
        controller: format!("http://{stream}"),
        gateway: "default/gw".into(),
        token_file,
        admin: "127.0.0.1:0".parse().unwrap(),
        drain_timeout: 1,
        bind_address: "127.0.0.1".parse().unwrap(),
        limits: Default::default(),
        access_log: Default::default(),
        trace: Default::default(),
    };
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (admin_tx, admin_rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        portcullis_kube::proxy::run_proxy_until(
            args,
            async {
                let _ = stop_rx.await;
            },
            |a| {
                let _ = admin_tx.send(a);
            },
        )
        .await
        .unwrap();
    });
    Proxy {
        admin: admin_rx.await.unwrap(),
        stop,
        task,
    }
}

async fn ready(p: &Proxy) -> bool {
    get(&format!("http://{}/readyz", p.admin))
        .await
        .is_some_and(|(c, _)| c == 200)
}

async fn serves(url: &str, body: &str, secs: u64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let got = get(url).await;
        if got.as_ref().is_some_and(|(c, b)| *c == 200 && b == body) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{url} should answer {body:?}, got {got:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_is_delivered_updated_survives_a_controller_restart_and_refuses_bad_tokens() {
    init_tracing();
    let (a, b) = (backend("A").await, backend("B").await);
    let listen = free_port();
    let api = FakeApi::new();
    for o in [
        namespace("default"),
        class(),
        gateway("gw", listen.port() + 1),
        route("web", "gw", "web"),
        service("web"),
        endpoints("web", a),
        service("web-b"),
        endpoints("web-b", b),
    ] {
        api.put(o);
    }
    let mut gw = api.get(GW, "gateways", "default", "gw").unwrap();
    let port = free_port().port();
    gw["spec"]["listeners"][0]["port"] = json!(port);
    api.put(gw);
    let url = format!("http://127.0.0.1:{port}/");
    let api_addr = api.listen(0).await;
    let reviewer = vec![
        ("good-token".to_string(), PROXY_USER.to_string()),
        (
            "other-token".to_string(),
            "system:serviceaccount:default:someone-else".to_string(),
        ),
    ];
    let dir = tempfile::tempdir().unwrap();

    // The proxy starts first: no controller yet, so not ready.
    let p = proxy(listen, "good-token", &dir, "good").await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!ready(&p).await, "not ready before the first configuration");

    let mut cargs = args("a", false);
    cargs.stream_listen = listen;
    let ctl = start(FakeApi::client(api_addr), cargs.clone(), reviewer.clone()).await;
    serves(&url, "A", 15).await;
    assert!(ready(&p).await);

    // Bad tokens are refused: unknown token 401, another ServiceAccount 403.
    assert_eq!(h2_status(listen, "bad-token").await, 401);
    assert_eq!(h2_status(listen, "other-token").await, 403);
    let bad = proxy(listen, "bad-token", &dir, "bad").await;
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(
        !ready(&bad).await,
        "a proxy with a bad token never gets a configuration"
    );

    // An update reaches the proxy.
    let mut r = api.get(GW, "httproutes", "default", "web").unwrap();
    r["spec"]["rules"][0]["backendRefs"][0]["name"] = json!("web-b");
    api.put(r);
    serves(&url, "B", 10).await;

    // The controller goes away: the proxy keeps serving its last configuration.
    ctl.shutdown().await.unwrap();
    let mut r = api.get(GW, "httproutes", "default", "web").unwrap();
    r["spec"]["rules"][0]["backendRefs"][0]["name"] = json!("web");
    api.put(r);
    for _ in 0..5 {
        assert_eq!(get(&url).await, Some((200, "B".to_string())));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready(&p).await, "still ready while the controller is away");

    // A new controller on the same address: the proxy reconnects and resyncs.
    let ctl = start(FakeApi::client(api_addr), cargs, reviewer).await;
    serves(&url, "A", 15).await;

    // SIGTERM-like stop: the proxy turns unready and stops serving.
    let _ = p.stop.send(());
    tokio::time::timeout(Duration::from_secs(10), p.task)
        .await
        .expect("proxy drains and exits")
        .unwrap();
    assert!(get(&url).await.is_none_or(|(c, _)| c != 200));
    let _ = bad.stop.send(());
    let _ = bad.task.await;
    ctl.shutdown().await.unwrap();
}
