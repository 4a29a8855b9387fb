//! Ingresses in Kubernetes mode, on the fake API server: the controller
//! derives the Gateway API objects of Portcullis' Ingresses, provisions one
//! proxy per IngressClass (owned by the IngressClass, never by a derived
//! object), streams that proxy the Ingress's routes, writes the Ingress's
//! `status.loadBalancer` from the proxy Service's address, reports what is
//! not honoured in a Warning event, and never writes the status of a derived
//! object or touches an Ingress of another class.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};

const NS: &str = "portcullis-system";
const PROXY: &str = "portcullis-portcullis-ingress";

fn ingress_class(name: &str, controller: &str) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass",
        "metadata": {"name": name}, "spec": {"controller": controller}})
}

fn ingress(name: &str, class: &str, host: &str) -> Value {
    json!({"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
    "metadata": {"name": name, "namespace": "default"},
    "spec": {"ingressClassName": class, "rules": [{"host": host, "http": {"paths": [
        {"path": "/", "pathType": "Prefix", "backend": {"service": {"name": "web", "port": {"number": 8080}}}}
    ]}}]}})
}

/// The first config frame streamed to the proxy of Gateway `ns/name`, as JSON.
async fn streamed_config(
    stream: std::net::SocketAddr,
    ca: &str,
    token: &str,
    gateway: &str,
) -> Value {
    let tls = portcullis_kube::stream::pki::client_config(ca.as_bytes()).unwrap();
    let tcp = tokio::net::TcpStream::connect(stream).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let tls = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_rustls::TlsConnector::from(tls).connect(name, tcp),
    )
    .await
    .expect("TLS in time")
    .unwrap();
    let (mut send, conn) = hyper::client::conn::http2::handshake::<_, _, Empty<Bytes>>(
        TokioExecutor::new(),
        TokioIo::new(tls),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(format!("https://{stream}/v1/config/{gateway}"))
        .header("authorization", format!("Bearer {token}"))
        .header("portcullis-wire", "2")
        .body(Empty::new())
        .unwrap();
    let resp = send.send_request(req).await.unwrap();
    assert_eq!(
        resp.status(),
        200,
        "the Ingress proxy's identity is accepted"
    );
    let mut body = resp.into_body();
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
async fn an_ingress_of_our_class_gets_a_proxy_owned_by_its_class_and_a_load_balancer_status() {
    init_tracing();
    let api = FakeApi::new();
    for o in [
        namespace("default"),
        namespace(NS),
        ingress_class("portcullis", "portcullis.dev/ingress-controller"),
        ingress_class("nginx", "k8s.io/ingress-nginx"),
        {
            let mut web = ingress("web", "portcullis", "web.example.com");
            web["metadata"]["annotations"] = json!({
                "nginx.ingress.kubernetes.io/configuration-snippet": "more_set_headers \"x: y\";"
            });
            web
        },
        ingress("theirs", "nginx", "theirs.example.com"),
        service("web"),
        endpoints("web", "127.0.0.1:18080".parse().unwrap()),
    ] {
        api.put(o);
    }
    let api_addr = api.listen(0).await;
    let user = format!("system:serviceaccount:{NS}:{PROXY}");
    let ctl = start(
        FakeApi::client(api_addr),
        args("a", true),
        vec![("proxy-token".into(), user)],
    )
    .await;

    // One proxy for the IngressClass, in the controller's namespace, owned by
    // the IngressClass (it exists in the API; the derived Gateway does not).
    let class_uid = api
        .get("networking.k8s.io", "ingressclasses", "", "portcullis")
        .unwrap()["metadata"]["uid"]
        .clone();
    let dep = eventually(20, "the IngressClass's proxy Deployment", || {
        api.get("apps", "deployments", NS, PROXY)
    })
    .await;
    assert_eq!(
        dep["metadata"]["ownerReferences"],
        json!([{"apiVersion": "networking.k8s.io/v1", "kind": "IngressClass", "name": "portcullis",
            "uid": class_uid, "controller": true}])
    );
    assert_eq!(
        dep["spec"]["template"]["spec"]["containers"][0]["args"][2],
        format!("{NS}/portcullis")
    );
    for (group, resource) in [
        ("", "services"),
        ("", "serviceaccounts"),
        ("", "configmaps"),
    ] {
        let name = if resource == "configmaps" {
            format!("{PROXY}-ca")
        } else {
            PROXY.to_string()
        };
        let o = api.get(group, resource, NS, &name).expect(resource);
        assert_eq!(
            o["metadata"]["ownerReferences"][0]["kind"], "IngressClass",
            "{resource}"
        );
    }
    assert!(
        api.list("apps", "deployments").len() == 1,
        "no proxy for the nginx class"
    );

    // The proxy's stream carries the Ingress's host and backend.
    let cfg = streamed_config(
        ctl.stream_addr(),
        &stream_ca(&api).await,
        "proxy-token",
        &format!("{NS}/portcullis"),
    )
    .await;
    let text = cfg.to_string();
    assert!(text.contains("web.example.com"), "{text}");
    assert!(text.contains("18080"), "the backend endpoint: {text}");
    assert!(!text.contains("theirs.example.com"), "{text}");

    // The Service gets an address: the Ingress's status.loadBalancer says it.
    let mut svc = api.get("", "services", NS, PROXY).unwrap();
    svc["status"] = json!({"loadBalancer": {"ingress": [{"ip": "192.0.2.7"}]}});
    api.put(svc);
    eventually(20, "Ingress web's status.loadBalancer", || {
        let i = api.get("networking.k8s.io", "ingresses", "default", "web")?;
        (i["status"]["loadBalancer"] == json!({"ingress": [{"ip": "192.0.2.7"}]})).then_some(())
    })
    .await;
    // A hostname works too.
    let mut svc = api.get("", "services", NS, PROXY).unwrap();
    svc["status"] = json!({"loadBalancer": {"ingress": [{"hostname": "lb.example.net"}]}});
    api.put(svc);
    eventually(20, "Ingress web's status.loadBalancer hostname", || {
        let i = api.get("networking.k8s.io", "ingresses", "default", "web")?;
        (i["status"]["loadBalancer"] == json!({"ingress": [{"hostname": "lb.example.net"}]}))
            .then_some(())
    })
    .await;

    // Only the served Ingress and real objects got status writes: nothing for
    // derived objects (not in the API), nothing for the other class's Ingress.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let paths: Vec<String> = status_patches(&api, None)
        .into_iter()
        .map(|(p, _)| p)
        .collect();
    assert!(
        paths.iter().all(|p| !p.contains("/ingresses/theirs")),
        "{paths:?}"
    );
    assert!(
        paths.iter().all(|p| !p.contains("/gateways/")
            && !p.contains("/httproutes/")
            && !p.contains("/gatewayclasses/")),
        "derived objects' statuses are never written: {paths:?}"
    );
    // What is not honoured is a Warning event on the Ingress, once (many passes ran).
    let events: Vec<Value> = api
        .list("", "events")
        .into_iter()
        .filter(|e| e["involvedObject"]["kind"] == "Ingress")
        .collect();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["involvedObject"]["name"], "web");
    assert_eq!(events[0]["type"], "Warning");
    assert_eq!(events[0]["reason"], "NotHonoured");
    let message = events[0]["message"].as_str().unwrap();
    assert!(
        message.contains(
            "annotation nginx.ingress.kubernetes.io/configuration-snippet is not honoured"
        ),
        "{message}"
    );
    assert!(
        api.get("networking.k8s.io", "ingresses", "default", "theirs")
            .unwrap()
            .get("status")
            .is_none_or(Value::is_null)
    );
    ctl.shutdown().await.unwrap();
}

/// `portcullis import ingress --from-cluster` reads what the conversion
/// needs (the referenced Secrets one by one, never a list of Secrets) and
/// converts it exactly as the same objects from a file.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_from_cluster_converts_as_from_files_and_reads_only_named_secrets() {
    use base64::Engine;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let mut web = ingress("web", "portcullis", "web.example.com");
    web["metadata"]["annotations"] = json!({
        "nginx.ingress.kubernetes.io/auth-type": "basic",
        "nginx.ingress.kubernetes.io/auth-secret": "basic",
    });
    web["spec"]["tls"] = json!([{"hosts": ["web.example.com"], "secretName": "web-tls"}]);
    web["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]["port"] =
        json!({"name": "http"});
    let objects = [
        ingress_class("portcullis", "portcullis.dev/ingress-controller"),
        web,
        ingress("theirs", "nginx", "theirs.example.com"),
        service("web"),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "basic", "namespace": "default"},
            "type": "Opaque", "data": {"auth": b64("alice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=\n")}}),
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "web-tls", "namespace": "default"},
            "type": "kubernetes.io/tls", "data": {"tls.crt": b64("x"), "tls.key": b64("y")}}),
    ];
    let api = FakeApi::new();
    api.put(namespace("default"));
    for o in &objects {
        api.put(o.clone());
    }
    api.put(json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "unrelated", "namespace": "default"},
        "type": "Opaque", "data": {"k": b64("v")}}));
    let addr = api.listen(0).await;
    let source = portcullis_kube::ingress::cluster_source(&FakeApi::client(addr), Some("default"))
        .await
        .unwrap();
    let file = portcullis_import::Source {
        name: "objects.yaml".into(),
        text: objects
            .iter()
            .map(|o| serde_json::to_string(o).unwrap())
            .collect::<Vec<_>>()
            .join("\n---\n"),
    };
    let opts = portcullis_import::Options::default();
    let from_cluster = portcullis_import::convert(&[source], &opts).unwrap();
    let from_file = portcullis_import::convert(&[file], &opts).unwrap();
    assert_eq!(from_cluster.yaml(), from_file.yaml());
    let yaml = from_cluster.yaml();
    assert!(yaml.contains("certificateRefs"), "{yaml}");
    assert!(yaml.contains(".htpasswd"), "{yaml}");
    assert!(
        yaml.contains("port: 8080"),
        "the named port resolved: {yaml}"
    );
    let secret_reads: Vec<String> = api
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/secrets"))
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(
        secret_reads,
        [
            "GET /api/v1/namespaces/default/secrets/basic",
            "GET /api/v1/namespaces/default/secrets/web-tls",
        ]
    );
}
