//! Controller → proxy config stream, end to end in one process: fake API
//! server → controller → HTTP/2 stream → `portcullis proxy` data plane →
//! real HTTP requests to real backends, all on 127.0.0.1.

// The controller crate's test helpers (fake API server, controller start).
#[path = "../../portcullis-kube/tests/common/mod.rs"]
mod common;

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use portcullis_proxy::ProxyArgs;
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

/// Open the config stream over TLS trusting `ca`; `wire` is the version
/// header sent (none: a version-1 proxy). The response, or why it failed.
async fn open_stream(
    stream: SocketAddr,
    token: &str,
    ca: &str,
    wire: Option<&str>,
) -> Result<http::Response<hyper::body::Incoming>, String> {
    let tls =
        portcullis_kube::stream::pki::client_config(ca.as_bytes()).map_err(|e| e.to_string())?;
    let tcp = tokio::net::TcpStream::connect(stream)
        .await
        .map_err(|e| e.to_string())?;
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_rustls::TlsConnector::from(tls).connect(name, tcp),
    )
    .await
    .map_err(|_| "TLS timeout".to_string())?
    .map_err(|e| format!("TLS: {e}"))?;
    let (mut send, conn) = hyper::client::conn::http2::handshake::<_, _, Empty<Bytes>>(
        TokioExecutor::new(),
        TokioIo::new(tls),
    )
    .await
    .map_err(|e| e.to_string())?;
    tokio::spawn(conn);
    let mut req = http::Request::get(format!("https://{stream}/v1/config/default/gw"))
        .header("authorization", format!("Bearer {token}"));
    if let Some(w) = wire {
        req = req.header("portcullis-wire", w);
    }
    send.send_request(req.body(Empty::new()).unwrap())
        .await
        .map_err(|e| e.to_string())
}

async fn h2_status(stream: SocketAddr, token: &str, ca: &str) -> u16 {
    open_stream(stream, token, ca, Some("2"))
        .await
        .unwrap()
        .status()
        .as_u16()
}

struct Proxy {
    admin: SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

async fn proxy(stream: SocketAddr, token: &str, dir: &tempfile::TempDir, name: &str) -> Proxy {
    proxy_with_delay(stream, token, dir, name, 0).await
}

async fn proxy_with_delay(
    stream: SocketAddr,
    token: &str,
    dir: &tempfile::TempDir,
    name: &str,
    shutdown_delay: u64,
) -> Proxy {
    let token_file = dir.path().join(name);
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let args = ProxyArgs {
        controller: format!("https://{stream}"),
        controller_ca: dir.path().join("ca.crt"),
        gateway: "default/gw".into(),
        token_file,
        admin: "127.0.0.1:0".parse().unwrap(),
        bind_address: "127.0.0.1".parse().unwrap(),
        shutdown_delay,
        limits: portcullis_dataplane::cli::DataplaneArgs {
            drain_timeout: 1,
            ..Default::default()
        },
        access_log: Default::default(),
        trace: Default::default(),
    };
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (admin_tx, admin_rx) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        portcullis_proxy::run_proxy_until(
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
    let p = proxy_with_delay(listen, "good-token", &dir, "good", 2).await;
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert!(!ready(&p).await, "not ready before the first configuration");

    let mut cargs = args("a", false);
    cargs.stream_listen = listen;
    let ctl = start(FakeApi::client(api_addr), cargs.clone(), reviewer.clone()).await;
    // The proxy trusts the controller's CA (a provisioned proxy gets it from a ConfigMap).
    let ca = stream_ca(&api).await;
    std::fs::write(dir.path().join("ca.crt"), &ca).unwrap();
    serves(&url, "A", 15).await;
    for _ in 0..50 {
        if ready(&p).await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(ready(&p).await);

    // Bad tokens are refused: unknown token 401, another ServiceAccount 403.
    assert_eq!(h2_status(listen, "bad-token", &ca).await, 401);
    assert_eq!(h2_status(listen, "other-token", &ca).await, 403);
    // Cleartext is not served, and a client trusting another CA refuses the controller.
    let other =
        portcullis_kube::stream::pki::Ca::generate(0, Duration::from_secs(1 << 32)).unwrap();
    let e = open_stream(listen, "good-token", &other.cert_pem, None)
        .await
        .unwrap_err();
    assert!(e.contains("TLS") && e.contains("nknown"), "{e}");
    let plain: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
        .http2_only(true)
        .build_http();
    let req = http::Request::get(format!("http://{listen}/v1/config/default/gw"))
        .header("authorization", "Bearer good-token")
        .body(Empty::new())
        .unwrap();
    assert!(
        tokio::time::timeout(Duration::from_secs(5), plain.request(req))
            .await
            .unwrap()
            .is_err(),
        "cleartext HTTP/2 is refused"
    );
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

    // `/state` says what was applied: the Gateway, a version, its generation.
    let state: serde_json::Value =
        serde_json::from_str(&get(&format!("http://{}/state", p.admin)).await.unwrap().1).unwrap();
    assert_eq!(state["gateway"], "default/gw", "{state}");
    assert_eq!(
        state["generation"],
        api.get(GW, "gateways", "default", "gw").unwrap()["metadata"]["generation"],
        "{state}"
    );
    assert!(state["version"].as_u64().unwrap() > 0, "{state}");
    assert!(state.get("draining").is_none(), "{state}");

    // SIGTERM-like stop: the proxy turns unready at once but keeps serving
    // (new connections included) for the shutdown delay, then drains and exits.
    let t0 = std::time::Instant::now();
    let Proxy { admin, stop, task } = p;
    let _ = stop.send(());
    let readyz = format!("http://{admin}/readyz");
    let mut unready = false;
    for _ in 0..20 {
        if get(&readyz).await.is_some_and(|(c, _)| c == 503) {
            unready = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(unready, "unready right after SIGTERM");
    let state = get(&format!("http://{admin}/state")).await.unwrap().1;
    assert!(state.contains(r#""draining":true"#), "{state}");
    // Every request here is on a new connection (a new client each time).
    let mut served = 0;
    while t0.elapsed() < Duration::from_millis(1500) {
        assert_eq!(
            get(&url).await,
            Some((200, "A".to_string())),
            "served while unready"
        );
        served += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(served >= 5, "{served}");
    assert!(!task.is_finished(), "still running within the delay");
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("proxy drains and exits")
        .unwrap();
    assert!(t0.elapsed() >= Duration::from_secs(2), "{:?}", t0.elapsed());
    assert!(get(&url).await.is_none_or(|(c, _)| c != 200));
    let _ = bad.stop.send(());
    let _ = bad.task.await;
    ctl.shutdown().await.unwrap();
}

/// A JWT-shaped token (the fake reviewer does not check signatures) expiring at `exp`.
fn jwt(exp: u64) -> String {
    use base64::Engine;
    let e = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    format!(
        "{}.{}.sig",
        e(r#"{"alg":"RS256"}"#),
        e(&format!(r#"{{"exp":{exp}}}"#))
    )
}

/// The first frame of a stream, as JSON.
async fn first_frame(body: &mut hyper::body::Incoming) -> serde_json::Value {
    let mut buf = Vec::new();
    loop {
        let f = tokio::time::timeout(Duration::from_secs(10), body.frame())
            .await
            .expect("a frame in time")
            .expect("stream open")
            .unwrap();
        buf.extend_from_slice(&f.into_data().unwrap());
        if buf.len() >= 4
            && buf.len() >= 4 + u32::from_be_bytes(buf[..4].try_into().unwrap()) as usize
        {
            return serde_json::from_slice(&buf[4..]).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_negotiate_the_wire_version_and_close_when_the_token_expires() {
    init_tracing();
    let api = FakeApi::new();
    for o in [
        namespace("default"),
        class(),
        gateway("gw", free_port().port()),
    ] {
        api.put(o);
    }
    let api_addr = api.listen(0).await;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (long, short) = (jwt(now + 3600), jwt(now + 3));
    let ctl = start(
        FakeApi::client(api_addr),
        args("a", false),
        vec![
            (long.clone(), PROXY_USER.into()),
            (short.clone(), PROXY_USER.into()),
        ],
    )
    .await;
    let ca = stream_ca(&api).await;
    let stream = ctl.stream_addr();
    let mut open = None;
    for _ in 0..100 {
        let r = open_stream(stream, &long, &ca, None).await.unwrap();
        if r.status() == 200 {
            open = Some(r);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A proxy that sends no version (the previous release) gets version 1 frames.
    let r = open.expect("the Gateway is served");
    assert_eq!(r.headers()["portcullis-wire"], "1");
    let mut long_body = r.into_body();
    let v1 = first_frame(&mut long_body).await;
    assert!(v1.get("generation").is_none(), "{v1}");
    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct V1 {
        version: u64,
        config: portcullis_ir::Config,
    }
    let _: V1 = serde_json::from_value(v1).unwrap();
    // A newer proxy (version 3) gets this controller's newest, 2, with the generation.
    let r = open_stream(stream, &long, &ca, Some("3")).await.unwrap();
    assert_eq!(r.headers()["portcullis-wire"], "2");
    let v2 = first_frame(&mut r.into_body()).await;
    assert_eq!(v2["generation"], 1, "{v2}");

    // A stream opened with a token that expires in 3 s is closed then.
    let t0 = std::time::Instant::now();
    let r = open_stream(stream, &short, &ca, Some("2")).await.unwrap();
    assert_eq!(r.status(), 200);
    let mut body = r.into_body();
    first_frame(&mut body).await;
    let end = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(_)) = body.frame().await {}
    })
    .await;
    assert!(end.is_ok(), "the stream is closed when the token expires");
    assert!(t0.elapsed() >= Duration::from_secs(1), "{:?}", t0.elapsed());
    // The stream of the long-lived token is still open.
    assert!(
        tokio::time::timeout(Duration::from_millis(300), long_body.frame())
            .await
            .is_err(),
        "still open"
    );
    ctl.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_that_stops_being_accepted_keeps_its_proxy_serving() {
    init_tracing();
    let a = backend("A").await;
    let listen = free_port();
    let port = free_port().port();
    let api = FakeApi::new();
    for o in [
        namespace("default"),
        class(),
        gateway("gw", port),
        route("web", "gw", "web"),
        service("web"),
        endpoints("web", a),
    ] {
        api.put(o);
    }
    let api_addr = api.listen(0).await;
    let mut cargs = args("a", true);
    cargs.stream_listen = listen;
    let ctl = start(
        FakeApi::client(api_addr),
        cargs,
        vec![("good-token".to_string(), PROXY_USER.to_string())],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.crt"), stream_ca(&api).await).unwrap();
    // The provisioned ConfigMap carries the same CA bundle.
    let cm = eventually(10, "the proxy's CA ConfigMap", || {
        api.get("", "configmaps", "default", "gw-portcullis-ca")
    })
    .await;
    assert_eq!(
        cm["data"]["ca.crt"].as_str().unwrap(),
        stream_ca(&api).await
    );
    let p = proxy(listen, "good-token", &dir, "good").await;
    let url = format!("http://127.0.0.1:{port}/");
    serves(&url, "A", 15).await;

    // A typo in the parametersRef: the Gateway is not accepted any more...
    let mut gw = api.get(GW, "gateways", "default", "gw").unwrap();
    gw["spec"]["infrastructure"] =
        json!({"parametersRef": {"group": "", "kind": "ConfigMap", "name": "typo"}});
    api.put(gw);
    eventually(10, "Accepted=False/InvalidParameters", || {
        let gw = api.get(GW, "gateways", "default", "gw")?;
        let c = gw["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "Accepted")?
            .clone();
        (c["status"] == "False" && c["reason"] == "InvalidParameters").then_some(())
    })
    .await;
    // ... and its proxy keeps serving the last accepted configuration.
    for _ in 0..10 {
        assert_eq!(get(&url).await, Some((200, "A".to_string())));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A proxy that reconnects meanwhile is served that configuration too.
    let p2 = proxy(listen, "good-token", &dir, "good2").await;
    eventually(10, "a new proxy gets the last accepted config", || {
        futures_util::FutureExt::now_or_never(ready(&p2)).and_then(|r| r.then_some(()))
    })
    .await;
    for p in [p, p2] {
        let _ = p.stop.send(());
        let _ = p.task.await;
    }
    ctl.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_secret_read_keeps_the_version_read_before() {
    use portcullis_store::{Kind, ObjectKey, ObjectRef};
    init_tracing();
    let api = FakeApi::new();
    let secret = |v: &str| json!({"apiVersion": "v1", "kind": "Secret", "type": "Opaque", "metadata": {"name": "s", "namespace": "default"}, "data": {"k": v}});
    api.put(secret("b2xk"));
    let client = FakeApi::client(api.listen(0).await);
    let r = ObjectRef {
        kind: Kind::Secret,
        key: ObjectKey::new("default", "s"),
    };
    let wanted = std::collections::BTreeSet::from([r.clone()]);
    let rv = |api: &FakeApi| {
        api.get("", "secrets", "default", "s").unwrap()["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let data = |snap: &portcullis_store::Snapshot| {
        serde_json::to_value(&snap.secrets[&r.key]).unwrap()["data"]["k"].clone()
    };
    let mut cache = portcullis_kube::reflect::RefCache::default();
    let mut snap = portcullis_store::Snapshot::default();
    let metas = std::collections::BTreeMap::from([(r.clone(), rv(&api))]);
    assert!(cache.fill(&client, &wanted, &metas, &mut snap).await);
    assert_eq!(data(&snap), json!("b2xk"));
    // The Secret changes and reading it fails: the old version stays, and the caller is told.
    api.put(secret("bmV3"));
    api.fail_gets("secrets", 1);
    let metas = std::collections::BTreeMap::from([(r.clone(), rv(&api))]);
    let mut snap = portcullis_store::Snapshot::default();
    assert!(!cache.fill(&client, &wanted, &metas, &mut snap).await);
    assert_eq!(
        data(&snap),
        json!("b2xk"),
        "the certificate that was serving is kept"
    );
    // The retry reads the new version.
    let mut snap = portcullis_store::Snapshot::default();
    assert!(cache.fill(&client, &wanted, &metas, &mut snap).await);
    assert_eq!(data(&snap), json!("bmV3"));
}
