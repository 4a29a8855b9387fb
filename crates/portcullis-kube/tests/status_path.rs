//! The watch → translate → status-patch path against a fake API server.

mod common;

use std::time::Duration;

use common::*;
use portcullis_kube::status::writer::{Pending, StatusWriter, WriterOptions};
use portcullis_store::{Kind, Object, ObjectKey, ObjectRef, Snapshot};
use serde_json::{Value, json};

fn other_entry() -> Value {
    json!({"parentRef": {"group": GW, "kind": "Gateway", "name": "theirs"}, "controllerName": "example.com/other",
           "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "theirs", "lastTransitionTime": "2020-01-01T00:00:00Z", "observedGeneration": 1}]})
}

fn snapshot_of(objects: &[Value]) -> Snapshot {
    let mut s = Snapshot::default();
    for o in objects {
        let kind = Kind::parse(
            o["apiVersion"]
                .as_str()
                .unwrap()
                .rsplit_once('/')
                .map(|(g, _)| g)
                .unwrap_or(""),
            o["kind"].as_str().unwrap(),
        )
        .unwrap();
        s.insert(Object::from_json(kind, o.clone()).unwrap());
    }
    s
}

async fn seeded(api: &FakeApi) -> Vec<Value> {
    let mut r = route("web", "gw", "web");
    r["status"] = json!({"parents": [other_entry()]});
    let backend = "127.0.0.1:1".parse().unwrap();
    [
        namespace("default"),
        class(),
        gateway("gw", 18080),
        r,
        service("web"),
        endpoints("web", backend),
    ]
    .into_iter()
    .map(|o| api.put(o))
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_patches_exact_bodies_keep_other_controllers_and_skip_noops() {
    init_tracing();
    let api = FakeApi::new();
    let objects = seeded(&api).await;
    let addr = api.listen(0).await;
    let ctl = start(FakeApi::client(addr), args("a", false), vec![]).await;

    let patches = eventually(20, "three status patches", || {
        let p = status_patches(&api, None);
        (p.len() >= 3).then_some(p)
    })
    .await;
    // The only replica leads, and says so.
    assert!(
        portcullis_obs::render().contains("\nportcullis_leader 1\n"),
        "portcullis_leader"
    );
    let route_patch = patches
        .iter()
        .find(|(p, _)| {
            p == "/apis/gateway.networking.k8s.io/v1/namespaces/default/httproutes/web/status"
        })
        .expect("route patched");
    let ct = api
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("httproutes/web/status"))
        .unwrap()
        .content_type;
    assert_eq!(ct, "application/merge-patch+json");

    // The exact body: the cached resourceVersion as a precondition, the other
    // controller's entry untouched and first, then ours as translation computed it.
    let out = portcullis_translate::translate(&portcullis_translate::Input {
        snapshot: &snapshot_of(&objects),
        options: &portcullis_translate::Options {
            address_pool: Some(
                portcullis_kube::stream::filter::INTERNAL_POOL
                    .parse()
                    .unwrap(),
            ),
            ..Default::default()
        },
        previous_addresses: Default::default(),
        bind_errors: Default::default(),
    });
    let ours = serde_json::to_value(
        &out.statuses[&ObjectRef {
            kind: Kind::HTTPRoute,
            key: ObjectKey::new("default", "web"),
        }],
    )
    .unwrap()["parents"][0]
        .clone();
    let mut ours = ours;
    ours["parentRef"] = json!({"group": GW, "kind": "Gateway", "name": "gw"});
    let mut body = route_patch.1.clone();
    blank_times(&mut body);
    set_times(&mut ours);
    let mut other = other_entry();
    other["conditions"][0]["lastTransitionTime"] = json!("T");
    let expected = json!({"metadata": {"resourceVersion": objects[3]["metadata"]["resourceVersion"]}, "status": {"parents": [other, ours]}});
    assert_eq!(body, expected);
    assert_eq!(
        route_patch.1["status"]["parents"][0],
        other_entry(),
        "other controller's entry byte for byte"
    );
    let accepted = &body["status"]["parents"][1]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Accepted")
        .unwrap()
        .clone();
    assert_eq!(
        (
            accepted["status"].as_str(),
            accepted["observedGeneration"].as_i64()
        ),
        (Some("True"), Some(1))
    );
    assert_eq!(body["status"]["parents"][1]["controllerName"], ME);

    // The Gateway and GatewayClass statuses are whole-status patches.
    let gw_patch = &patches
        .iter()
        .find(|(p, _)| p.ends_with("/gateways/gw/status"))
        .expect("gateway patched")
        .1;
    assert_eq!(
        gw_patch["status"]["addresses"],
        Value::Null,
        "no provisioning: internal addresses are not reported"
    );
    assert_eq!(gw_patch["status"]["listeners"][0]["attachedRoutes"], 1);
    assert!(
        patches.iter().any(
            |(p, _)| p == "/apis/gateway.networking.k8s.io/v1/gatewayclasses/portcullis/status"
        ),
        "{:#?}",
        api.requests()
            .iter()
            .filter(|r| r.method != "GET")
            .map(|r| (&r.path, r.status, &r.body))
            .collect::<Vec<_>>()
    );

    // Settled: the stored route status holds both entries.
    let stored = api.get(GW, "httproutes", "default", "web").unwrap();
    assert_eq!(stored["status"]["parents"].as_array().unwrap().len(), 2);

    // No-op suppression: our own writes come back through the watch, and an
    // unrelated change triggers a translation, yet nothing is written again.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = status_patches(&api, None).len();
    assert_eq!(
        before,
        3,
        "one write per object: {:?}",
        status_patches(&api, None)
            .iter()
            .map(|p| &p.0)
            .collect::<Vec<_>>()
    );
    let mut stats = ctl.stats();
    let passes = stats.borrow_and_update().passes;
    api.put(service("unrelated"));
    tokio::time::timeout(
        Duration::from_secs(10),
        stats.wait_for(|s| s.passes > passes),
    )
    .await
    .expect("a pass ran")
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        status_patches(&api, None).len(),
        before,
        "nothing changed, nothing written"
    );

    // A spec change (new generation) is written, still keeping the other entry.
    let mut r = api.get(GW, "httproutes", "default", "web").unwrap();
    r["spec"]["rules"][0]["backendRefs"][0]["name"] = json!("missing");
    api.put(r);
    let p = eventually(10, "route re-patched", || {
        status_patches(&api, None)
            .into_iter()
            .skip(before)
            .find(|(p, _)| p.ends_with("httproutes/web/status"))
    })
    .await;
    assert_eq!(p.1["status"]["parents"][0], other_entry());
    let resolved = p.1["status"]["parents"][1]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "ResolvedRefs")
        .unwrap()
        .clone();
    assert_eq!(
        (
            resolved["status"].as_str(),
            resolved["observedGeneration"].as_i64()
        ),
        (Some("False"), Some(2))
    );
    ctl.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_cache_conflict_rereads_and_keeps_the_newer_entries() {
    init_tracing();
    let api = FakeApi::new();
    let r1 = api.put(route("web", "gw", "web"));
    // Another controller writes its entry after our cache saw r1.
    let mut newer = r1.clone();
    newer["status"] = json!({"parents": [other_entry()]});
    let r2 = api.put(newer);
    let addr = api.listen(0).await;
    let (leader_tx, leader_rx) = tokio::sync::watch::channel(true);
    let writer = StatusWriter::start(
        FakeApi::client(addr),
        WriterOptions {
            qps: 100.0,
            burst: 10,
            concurrency: 4,
            controller_name: ME.into(),
            served: Default::default(),
        },
        leader_rx,
    );
    let translated: portcullis_store::status::Status = serde_json::from_value(json!({"parents": [
        {"parentRef": {"name": "gw"}, "controllerName": ME, "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "", "observedGeneration": 1, "lastTransitionTime": ""}]}
    ]}))
    .unwrap();
    let oref = ObjectRef {
        kind: Kind::HTTPRoute,
        key: ObjectKey::new("default", "web"),
    };
    let status = portcullis_kube::status::merge::desired(
        Kind::HTTPRoute,
        None,
        Some(&translated),
        ME,
        "2024-05-05T00:00:00Z",
    )
    .unwrap();
    writer.submit(vec![Pending {
        oref,
        resource_version: r1["metadata"]["resourceVersion"].as_str().unwrap().into(),
        generation: 1,
        translated: Some(translated),
        status,
    }]);
    let reqs = eventually(10, "conflict resolved", || {
        let r: Vec<_> = api
            .requests()
            .into_iter()
            .filter(|r| r.path.contains("httproutes/web"))
            .collect();
        (r.iter()
            .filter(|r| r.status == 200 && r.method == "PATCH")
            .count()
            == 1)
            .then_some(r)
    })
    .await;
    let seq: Vec<(String, u16)> = reqs.iter().map(|r| (r.method.clone(), r.status)).collect();
    assert_eq!(
        seq,
        vec![
            ("PATCH".into(), 409),
            ("GET".into(), 200),
            ("PATCH".into(), 200)
        ]
    );
    assert_eq!(
        reqs[0].body["metadata"]["resourceVersion"],
        r1["metadata"]["resourceVersion"]
    );
    assert_eq!(
        reqs[2].body["metadata"]["resourceVersion"],
        r2["metadata"]["resourceVersion"]
    );
    let stored = api.get(GW, "httproutes", "default", "web").unwrap();
    let parents = stored["status"]["parents"].as_array().unwrap();
    assert_eq!(parents.len(), 2);
    assert_eq!(parents[0], other_entry());
    assert_eq!(parents[1]["controllerName"], ME);
    // The metrics: one conflict, then one write.
    let text = eventually(10, "the status write counted", || {
        let t = portcullis_obs::render();
        t.contains("portcullis_status_writes_total{result=\"written\"} 1")
            .then_some(t)
    })
    .await;
    assert!(
        text.contains("portcullis_status_write_conflicts_total 1"),
        "{text}"
    );
    drop(leader_tx);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_leader_writes_and_a_standby_takes_over() {
    init_tracing();
    let api = FakeApi::new();
    seeded(&api).await;
    let (a_addr, b_addr) = (api.listen(0).await, api.listen(1).await);
    let a = start(FakeApi::client(a_addr), args("replica-a", false), vec![]).await;
    let mut a_stats = a.stats();
    tokio::time::timeout(Duration::from_secs(10), a_stats.wait_for(|s| s.leader))
        .await
        .expect("a leads")
        .unwrap();
    eventually(10, "a writes", || {
        (status_patches(&api, Some(0)).len() >= 3).then_some(())
    })
    .await;
    let b = start(FakeApi::client(b_addr), args("replica-b", false), vec![]).await;
    let mut b_stats = b.stats();
    tokio::time::timeout(Duration::from_secs(10), b_stats.wait_for(|s| s.passes >= 1))
        .await
        .expect("b translates")
        .unwrap();

    // A change while a leads: only a writes.
    let mut r = api.get(GW, "httproutes", "default", "web").unwrap();
    r["spec"]["rules"][0]["backendRefs"][0]["name"] = json!("missing");
    api.put(r);
    eventually(10, "a writes the change", || {
        status_patches(&api, Some(0))
            .iter()
            .filter(|(p, _)| p.ends_with("httproutes/web/status"))
            .nth(1)
            .cloned()
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        status_patches(&api, Some(1)).is_empty(),
        "the standby never writes"
    );
    assert!(!b_stats.borrow().leader);
    let lease = api
        .get(
            "coordination.k8s.io",
            "leases",
            "portcullis-system",
            "portcullis-controller",
        )
        .expect("lease");
    assert_eq!(lease["spec"]["holderIdentity"], "replica-a");

    // a stops and releases the Lease; b takes over and writes the next change.
    a.shutdown().await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), b_stats.wait_for(|s| s.leader))
        .await
        .expect("b leads")
        .unwrap();
    let mut r = api.get(GW, "httproutes", "default", "web").unwrap();
    r["spec"]["rules"][0]["backendRefs"][0]["name"] = json!("web");
    api.put(r);
    eventually(10, "b writes", || {
        status_patches(&api, Some(1))
            .into_iter()
            .find(|(p, _)| p.ends_with("httproutes/web/status"))
    })
    .await;
    let lease = api
        .get(
            "coordination.k8s.io",
            "leases",
            "portcullis-system",
            "portcullis-controller",
        )
        .unwrap();
    assert_eq!(lease["spec"]["holderIdentity"], "replica-b");
    b.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioning_applies_objects_and_reports_service_addresses_and_bad_parameters() {
    init_tracing();
    let api = FakeApi::new();
    seeded(&api).await;
    let mut bad = gateway("bad", 18081);
    bad["spec"]["infrastructure"] =
        json!({"parametersRef": {"group": "", "kind": "ConfigMap", "name": "bad-params"}});
    api.put(bad);
    api.put(json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bad-params", "namespace": "default"}, "data": {"replicas": "many"}}));
    let addr = api.listen(0).await;
    // A stand-in for the proxies' admin endpoint, `/state` (see proxystate.rs).
    let state = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let state_port = state_server(state.clone()).await;
    let mut cargs = args("a", true);
    cargs.proxy_metrics_port = state_port;
    let ctl = start(FakeApi::client(addr), cargs, vec![]).await;

    let applied = eventually(10, "four objects applied", || {
        let w: Vec<_> = api
            .writes(None)
            .into_iter()
            .filter(|r| r.content_type.contains("apply-patch"))
            .collect();
        (w.len() >= 4).then_some(w)
    })
    .await;
    let paths: Vec<&str> = applied.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/api/v1/namespaces/default/serviceaccounts/gw-portcullis",
            "/api/v1/namespaces/default/configmaps/gw-portcullis-ca",
            "/apis/apps/v1/namespaces/default/deployments/gw-portcullis",
            "/api/v1/namespaces/default/services/gw-portcullis"
        ]
    );
    assert!(
        applied
            .iter()
            .all(|r| r.query.contains("fieldManager=portcullis") && r.query.contains("force=true")),
        "{:?}",
        applied[0].query
    );
    // The bad Gateway: InvalidParameters, nothing provisioned.
    let bad_status = eventually(10, "bad gateway status", || {
        api.get(GW, "gateways", "default", "bad")
            .and_then(|g| g.get("status").cloned())
    })
    .await;
    let accepted = bad_status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Accepted")
        .unwrap()
        .clone();
    assert_eq!(
        (accepted["status"].as_str(), accepted["reason"].as_str()),
        (Some("False"), Some("InvalidParameters"))
    );
    assert!(accepted["message"].as_str().unwrap().contains("replicas"));
    assert!(
        api.get("apps", "deployments", "default", "bad-portcullis")
            .is_none()
    );

    // No address yet: Programmed=False/AddressNotAssigned. Then the load balancer answers.
    let st = eventually(10, "gw status", || {
        api.get(GW, "gateways", "default", "gw")
            .and_then(|g| g.get("status").cloned())
    })
    .await;
    let programmed = st["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Programmed")
        .unwrap()
        .clone();
    assert_eq!(programmed["reason"], "AddressNotAssigned");
    let mut svc = api.get("", "services", "default", "gw-portcullis").unwrap();
    svc["status"] = json!({"loadBalancer": {"ingress": [{"ip": "203.0.113.7"}]}});
    api.put(svc);
    let st = eventually(10, "address in status", || {
        let st = api.get(GW, "gateways", "default", "gw")?["status"].clone();
        (st["addresses"] == json!([{"type": "IPAddress", "value": "203.0.113.7"}])).then_some(st)
    })
    .await;
    // An address, but no ready proxy replica yet: Pending.
    let programmed = condition_of(&st, "Programmed");
    assert_eq!(
        (programmed["status"].as_str(), programmed["reason"].as_str()),
        (Some("False"), Some("Pending")),
        "{programmed}"
    );
    assert!(
        programmed["message"]
            .as_str()
            .unwrap()
            .contains("waiting for a ready proxy replica"),
        "{programmed}"
    );
    // A ready replica that has not applied the current generation: still Pending.
    *state.lock().unwrap() = r#"{"gateway":"default/gw","version":1,"generation":0}"#.to_string();
    let proxy = std::net::SocketAddr::from(([127, 0, 0, 1], 9));
    api.put(endpoints("gw-portcullis", proxy));
    let st = programmed_reason(&api, "Pending", "none of the 1 ready").await;
    assert_eq!(condition_of(&st, "Programmed")["status"], "False");
    // It applies generation 1: Programmed.
    *state.lock().unwrap() = r#"{"gateway":"default/gw","version":2,"generation":1}"#.to_string();
    let st = programmed_reason(&api, "Programmed", "").await;
    assert_eq!(condition_of(&st, "Programmed")["status"], "True");
    // The proxy cannot bind the listener's port: the listener says so, as in standalone mode.
    *state.lock().unwrap() = r#"{"gateway":"default/gw","version":2,"generation":1,"bindErrors":{"18080":"Address already in use (os error 98)"}}"#.to_string();
    // Settled (every replica serves the generation), the poller looks every
    // 10 s: give it three rounds.
    let listener = eventually(30, "the bind error in the listener's status", || {
        let st = api.get(GW, "gateways", "default", "gw")?["status"].clone();
        let l = st["listeners"][0].clone();
        let c = condition_of(&l, "Accepted");
        (c["reason"] == "PortUnavailable").then_some(l)
    })
    .await;
    assert!(
        condition_of(&listener, "Accepted")["message"]
            .as_str()
            .unwrap()
            .contains("Address already in use"),
        "{listener}"
    );
    assert_eq!(condition_of(&listener, "Programmed")["status"], "False");
    // The proxy goes away (no ready endpoint): Pending again.
    api.put(json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "gw-portcullis-abc", "namespace": "default", "labels": {"kubernetes.io/service-name": "gw-portcullis"}},
        "addressType": "IPv4",
        "endpoints": [{"addresses": ["127.0.0.1"], "conditions": {"ready": false, "serving": true, "terminating": true}}],
    }));
    programmed_reason(&api, "Pending", "waiting for a ready proxy replica").await;
    // Applied objects are not re-applied while unchanged (the Service, whose
    // status changed, may be applied once more: that apply changes nothing).
    let applies = |path: &str| {
        api.writes(None)
            .iter()
            .filter(|r| r.content_type.contains("apply-patch") && r.path.ends_with(path))
            .count()
    };
    assert_eq!(applies("serviceaccounts/gw-portcullis"), 1);
    assert_eq!(applies("configmaps/gw-portcullis-ca"), 1);
    assert_eq!(applies("deployments/gw-portcullis"), 1);
    assert!((1..=2).contains(&applies("services/gw-portcullis")));
    ctl.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_reviews_go_to_the_api_server_with_our_audience() {
    use portcullis_kube::stream::{KubeTokenReviewer, TokenReviewer};
    let api = FakeApi::new();
    api.allow_token("good", "system:serviceaccount:default:gw-portcullis");
    let addr = api.listen(0).await;
    let reviewer = KubeTokenReviewer::new(FakeApi::client(addr));
    assert_eq!(
        reviewer.review("good").await.as_deref(),
        Ok("system:serviceaccount:default:gw-portcullis")
    );
    assert!(reviewer.review("forged").await.is_err());
    let sent = api
        .requests()
        .into_iter()
        .find(|r| r.path == "/apis/authentication.k8s.io/v1/tokenreviews")
        .expect("TokenReview created");
    assert_eq!(sent.method, "POST");
    assert_eq!(sent.body["spec"]["audiences"], json!(["portcullis"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_writes_are_retried_with_backoff() {
    init_tracing();
    // The API server answers the first write with a 500; the writer retries after a backoff.
    let api = FakeApi::new();
    let r = api.put(route("web", "gw", "web"));
    let addr = api.listen(0).await;
    let (_leader_tx, leader_rx) = tokio::sync::watch::channel(true);
    let writer = StatusWriter::start(
        FakeApi::client(addr),
        WriterOptions {
            qps: 100.0,
            burst: 10,
            concurrency: 4,
            controller_name: ME.into(),
            served: Default::default(),
        },
        leader_rx,
    );
    let translated: portcullis_store::status::Status = serde_json::from_value(json!({"parents": [
        {"parentRef": {"name": "gw"}, "controllerName": ME, "conditions": []}
    ]}))
    .unwrap();
    let status = portcullis_kube::status::merge::desired(
        Kind::HTTPRoute,
        None,
        Some(&translated),
        ME,
        "2024-05-05T00:00:00Z",
    )
    .unwrap();
    api.fail_next(1);
    writer.submit(vec![Pending {
        oref: ObjectRef {
            kind: Kind::HTTPRoute,
            key: ObjectKey::new("default", "web"),
        },
        resource_version: r["metadata"]["resourceVersion"].as_str().unwrap().into(),
        generation: 1,
        translated: Some(translated),
        status,
    }]);
    let reqs = eventually(10, "retried write", || {
        let r: Vec<_> = api
            .requests()
            .into_iter()
            .filter(|r| r.method == "PATCH")
            .collect();
        (r.len() == 2).then_some(r)
    })
    .await;
    assert_eq!(
        reqs.iter().map(|r| r.status).collect::<Vec<_>>(),
        [500, 200]
    );
    assert_eq!(
        api.get(GW, "httproutes", "default", "web").unwrap()["status"]["parents"][0]["controllerName"],
        ME
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_referenced_secrets_are_read_and_secrets_are_watched_by_metadata() {
    init_tracing();
    let api = FakeApi::new();
    seeded(&api).await;
    let secret = |name: &str| json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": "default"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}});
    for s in ["cert", "cert2", "unrelated"] {
        api.put(secret(s));
    }
    let mut gw = api.get(GW, "gateways", "default", "gw").unwrap();
    gw["spec"]["listeners"]
        .as_array_mut()
        .unwrap()
        .push(json!({"name": "https", "port": 18443, "protocol": "HTTPS", "tls": {"mode": "Terminate", "certificateRefs": [{"group": "", "kind": "Secret", "name": "cert"}]}}));
    api.put(gw);
    let addr = api.listen(0).await;
    let ctl = start(FakeApi::client(addr), args("a", false), vec![]).await;
    let secret_gets = |api: &FakeApi| -> Vec<String> {
        api.requests()
            .into_iter()
            .filter(|r| {
                r.method == "GET" && r.path.starts_with("/api/v1/namespaces/default/secrets/")
            })
            .map(|r| r.path)
            .collect()
    };
    eventually(10, "referenced secret read", || {
        (!secret_gets(&api).is_empty()).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        secret_gets(&api),
        ["/api/v1/namespaces/default/secrets/cert"]
    );
    let lists: Vec<_> = api
        .requests()
        .into_iter()
        .filter(|r| r.path == "/api/v1/secrets")
        .collect();
    assert!(
        !lists.is_empty() && lists.iter().all(|r| r.meta_only),
        "Secrets are listed and watched by metadata only"
    );

    // A new reference is read; a changed referenced Secret is read again; the unreferenced one never.
    let mut gw = api.get(GW, "gateways", "default", "gw").unwrap();
    gw["spec"]["listeners"][1]["tls"]["certificateRefs"]
        .as_array_mut()
        .unwrap()
        .push(json!({"group": "", "kind": "Secret", "name": "cert2"}));
    api.put(gw);
    eventually(10, "cert2 read", || {
        secret_gets(&api)
            .iter()
            .any(|p| p.ends_with("/cert2"))
            .then_some(())
    })
    .await;
    let mut s = api.get("", "secrets", "default", "cert").unwrap();
    s["data"]["tls.crt"] = json!("Y2hhbmdlZA==");
    api.put(s);
    eventually(10, "cert re-read", || {
        (secret_gets(&api)
            .iter()
            .filter(|p| p.ends_with("/cert"))
            .count()
            == 2)
            .then_some(())
    })
    .await;
    assert!(!secret_gets(&api).iter().any(|p| p.ends_with("/unrelated")));
    ctl.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_whose_renewal_hangs_steps_down_before_the_lease_expires() {
    use portcullis_kube::leader::{Elector, LeaseOptions};
    init_tracing();
    let api = FakeApi::new();
    let client = FakeApi::client(api.listen(0).await);
    let elector = Elector::start(
        client,
        LeaseOptions {
            namespace: "portcullis-system".into(),
            name: "portcullis-controller".into(),
            identity: "a".into(),
            lease_duration: Duration::from_secs(3),
            retry: Duration::from_millis(500),
        },
    );
    let mut leader = elector.subscribe();
    tokio::time::timeout(Duration::from_secs(10), leader.wait_for(|l| *l))
        .await
        .expect("leads")
        .unwrap();
    // The API server stops answering Lease requests: the renewal never returns.
    api.stall(Some("leases"));
    let t0 = std::time::Instant::now();
    tokio::time::timeout(Duration::from_secs(10), leader.wait_for(|l| !*l))
        .await
        .expect("steps down")
        .unwrap();
    assert!(
        t0.elapsed() < Duration::from_secs(3),
        "stepped down after {:?}, not before the 3 s lease could pass to another replica",
        t0.elapsed()
    );
    api.stall(None);
    elector.release().await;
}

fn condition_of(status: &Value, type_: &str) -> Value {
    status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == type_)
        .cloned()
        .unwrap_or_else(|| panic!("no {type_} in {status}"))
}

/// Wait until the Gateway's `Programmed` has `reason` and a message containing `message`.
async fn programmed_reason(api: &FakeApi, reason: &str, message: &str) -> Value {
    eventually(15, &format!("Programmed {reason} {message:?}"), || {
        let st = api.get(GW, "gateways", "default", "gw")?["status"].clone();
        let c = condition_of(&st, "Programmed");
        (c["reason"] == reason && c["message"].as_str()?.contains(message)).then_some(st)
    })
    .await
}
