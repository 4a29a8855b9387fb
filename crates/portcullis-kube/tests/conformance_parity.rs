//! One shared fixture, two paths: upstream conformance YAML loaded by the file
//! source (`FileSource::reload` + translate, as `portcullis run` does) and the
//! same objects served by a fake API server to the Kubernetes controller,
//! whose status writes are read back from that server. The statuses must be
//! the same, except Gateway `status.addresses`, which in Kubernetes mode come
//! from the provisioned Service's load balancer (checked separately).

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::*;
use portcullis_store::{Kind, ObjectRef};
use serde_json::{Value, json};

const SCENARIOS: &[&str] = &[
    "httproute-simple-same-namespace.yaml",
    "httproute-cross-namespace.yaml",
    "httproute-invalid-cross-namespace-parent-ref.yaml",
    "httproute-reference-grant.yaml",
    "httproute-invalid-reference-grant.yaml",
    "httproute-partially-invalid-via-invalid-reference-grant.yaml",
    "gateway-with-attached-routes.yaml",
];

fn upstream() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../third_party/gateway-api/v1.6.1/conformance")
}

fn fixture(dir: &Path, scenario: &str) {
    let base = std::fs::read_to_string(upstream().join("base/manifests.yaml"))
        .expect("upstream conformance base manifests in third_party/gateway-api/v1.6.1");
    std::fs::write(
        dir.join("base.yaml"),
        base.replace("{GATEWAY_CLASS_NAME}", "portcullis"),
    )
    .unwrap();
    let test = std::fs::read_to_string(upstream().join("tests").join(scenario)).unwrap();
    std::fs::write(
        dir.join("test.yaml"),
        test.replace("{GATEWAY_CLASS_NAME}", "portcullis"),
    )
    .unwrap();
    std::fs::write(
        dir.join("class.yaml"),
        serde_saphyr::to_string(&class()).unwrap(),
    )
    .unwrap();
}

fn resource(kind: Kind) -> (&'static str, String) {
    let ar = portcullis_kube::status::writer::api_resource(kind);
    (portcullis_store::GATEWAY_GROUP, ar.plural)
}

async fn compare(scenario: &str) -> Vec<String> {
    let dir = tempfile::tempdir().unwrap();
    fixture(dir.path(), scenario);
    // The base manifests hold the suite's backend Deployments, a kind the
    // file source does not read: skip them (Warn) rather than reject them.
    let mut source = portcullis_source::FileSource::new(dir.path())
        .with_field_validation(portcullis_source::FieldValidation::Warn);
    let reload = source.reload();
    assert!(reload.errors.is_empty(), "{scenario}: {:?}", reload.errors);
    // The controller provisions proxies: it claims the features of
    // provisioned infrastructure and reserves the proxy's admin port.
    let file = portcullis_translate::translate(&portcullis_translate::Input {
        snapshot: &reload.snapshot,
        options: &portcullis_translate::Options {
            provisioning: true,
            reserved_ports: portcullis_kube::provision::reserved_ports(),
            ..Default::default()
        },
        previous_addresses: Default::default(),
        bind_errors: Default::default(),
    });

    let api = FakeApi::new();
    for (kind, meta) in reload.snapshot.metas() {
        let obj = reload
            .snapshot
            .get(kind, &portcullis_store::ObjectKey::of(meta))
            .unwrap();
        let mut v = obj.to_json();
        v["apiVersion"] = json!(kind.api_version());
        v["kind"] = json!(kind.as_str());
        api.put(v);
    }
    let addr = api.listen(0).await;
    // Every provisioned proxy is ready and serves generation 1 (see proxystate.rs).
    let state = std::sync::Arc::new(std::sync::Mutex::new(
        r#"{"gateway":"any","version":1,"generation":1}"#.to_string(),
    ));
    let mut cargs = args("parity", true);
    cargs.proxy_metrics_port = state_server(state).await;
    let ctl = start(FakeApi::client(addr), cargs, vec![]).await;
    // The cloud's load balancer gives every provisioned Service an address.
    // (Only accepted Gateways are provisioned.)
    let gateways: Vec<_> = reload
        .snapshot
        .gateways
        .keys()
        .filter(|k| {
            let st = serde_json::to_value(
                &file.statuses[&ObjectRef {
                    kind: Kind::Gateway,
                    key: (*k).clone(),
                }],
            )
            .unwrap();
            st["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["type"] == "Accepted" && c["status"] == "True")
        })
        .cloned()
        .collect();
    let mut lb = std::collections::BTreeMap::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    for (i, key) in gateways.iter().enumerate() {
        let name = portcullis_kube::provision::name(&key.name, "portcullis");
        loop {
            if let Some(mut svc) = api.get("", "services", &key.namespace, &name) {
                let ip = format!("203.0.113.{}", i + 1);
                svc["status"] = json!({"loadBalancer": {"ingress": [{"ip": ip}]}});
                api.put(svc);
                let mut slice = endpoints(&name, "127.0.0.1:9".parse().unwrap());
                slice["metadata"]["namespace"] = json!(key.namespace);
                api.put(slice);
                lb.insert(key.clone(), ip);
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "{scenario}: {key} was not provisioned; its status: {}",
                api.get(GW, "gateways", &key.namespace, &key.name).unwrap()["status"]
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    // Settled: every Gateway reports its load balancer's address, its proxy
    // has been read back (not `Pending`), and no write is queued.
    let mut stats = ctl.stats();
    eventually(20, "statuses settle", || {
        let all = gateways.iter().all(|k| {
            api.get(GW, "gateways", &k.namespace, &k.name)
                .is_some_and(|g| {
                    g["status"]["addresses"][0]["value"].as_str() == lb.get(k).map(String::as_str)
                        && g["status"]["conditions"]
                            .as_array()
                            .is_some_and(|c| !c.iter().any(|c| c["reason"] == "Pending"))
                })
        });
        (all && stats.borrow_and_update().status_backlog == 0).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    eventually(10, "writer idle", || {
        (stats.borrow_and_update().status_backlog == 0).then_some(())
    })
    .await;

    let mut diffs = vec![];
    for (kind, meta) in reload.snapshot.metas() {
        if !kind.is_gateway_api() || kind == Kind::ReferenceGrant {
            continue;
        }
        let key = portcullis_store::ObjectKey::of(meta);
        let (group, plural) = resource(kind);
        let stored = api.get(group, &plural, &key.namespace, &key.name).unwrap();
        let mut kube = stored.get("status").cloned().unwrap_or(json!({}));
        let mut want = file
            .statuses
            .get(&ObjectRef {
                kind,
                key: key.clone(),
            })
            .map(|s| serde_json::to_value(s).unwrap())
            .unwrap_or(json!({}));
        set_times(&mut want);
        if kind == Kind::Gateway {
            if let Value::Object(m) = &mut kube {
                m.remove("addresses");
            }
            if let Value::Object(m) = &mut want {
                m.remove("addresses");
            }
        }
        let (kube, want) = (
            canonical(kube),
            portcullis_kube::status::merge::normalise(want),
        );
        if kube != want {
            diffs.push(format!(
                "{scenario}: {kind} {key}\n  kube: {kube}\n  file: {want}"
            ));
        }
    }
    ctl.shutdown().await.unwrap();
    diffs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conformance_scenarios_give_the_same_statuses_through_kube_and_files() {
    init_tracing();
    let mut diffs = vec![];
    for s in SCENARIOS {
        diffs.extend(compare(s).await);
    }
    assert!(diffs.is_empty(), "{}", diffs.join("\n"));
}

#[test]
fn quickstart_example_is_valid_and_its_route_is_accepted() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/kubernetes");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        path.join("quickstart.yaml"),
        dir.path().join("quickstart.yaml"),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("class.yaml"),
        serde_saphyr::to_string(&class()).unwrap(),
    )
    .unwrap();
    // The base manifests hold the suite's backend Deployments, a kind the
    // file source does not read: skip them (Warn) rather than reject them.
    let mut source = portcullis_source::FileSource::new(dir.path())
        .with_field_validation(portcullis_source::FieldValidation::Warn);
    let reload = source.reload();
    assert!(reload.errors.is_empty(), "{:?}", reload.errors);
    let out = portcullis_translate::translate(&portcullis_translate::Input {
        snapshot: &reload.snapshot,
        options: &Default::default(),
        previous_addresses: Default::default(),
        bind_errors: Default::default(),
    });
    let st = serde_json::to_value(
        &out.statuses[&ObjectRef {
            kind: Kind::HTTPRoute,
            key: portcullis_store::ObjectKey::new("default", "echo"),
        }],
    )
    .unwrap();
    let accepted = st["parents"][0]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Accepted")
        .unwrap()
        .clone();
    assert_eq!(accepted["status"], "True");
}
