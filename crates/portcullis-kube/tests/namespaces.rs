//! `--watch-namespaces` and `--secret-namespaces` on the fake API server:
//! every request the controller makes stays inside what the namespaced
//! RBAC of the chart grants (`rbac::rules` for that scope), and objects
//! outside the watched namespaces get no status.

mod common;

use common::*;
use portcullis_kube::rbac::rules;
use portcullis_kube::scope::Scope;
use serde_json::{Value, json};

const SYS: &str = "portcullis-system";

fn in_ns(mut o: Value, ns: &str) -> Value {
    o["metadata"]["namespace"] = json!(ns);
    o
}

fn secret(ns: &str, name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "namespace": ns}, "type": "Opaque", "data": {"k": "dg=="}})
}

/// (namespace, group, resource) of a request path; `None` for discovery.
fn target(path: &str) -> Option<(Option<String>, String, String)> {
    let p: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (group, rest) = match p.as_slice() {
        ["api", _v, rest @ ..] => (String::new(), rest),
        ["apis", g, _v, rest @ ..] => (g.to_string(), rest),
        _ => return None,
    };
    match rest {
        [] => None,
        ["namespaces", ns, res, ..] => Some((Some(ns.to_string()), group, res.to_string())),
        // A Namespace object itself.
        ["namespaces", ..] => Some((None, group, "namespaces".into())),
        [res, ..] => Some((None, group, res.to_string())),
    }
}

/// Run a controller with `watch`/`secrets` over objects in `default`,
/// `other` and `certs`; return its requests once it has written the status
/// of `default/gw`.
async fn requests_with(
    watch: &[&str],
    secrets: &[&str],
) -> (FakeApi, Vec<common::fake_api::Recorded>) {
    init_tracing();
    let api = FakeApi::new();
    for o in [
        namespace("default"),
        namespace("other"),
        namespace("certs"),
        class(),
        gateway("gw", 80),
        route("r", "gw", "web"),
        service("web"),
        in_ns(gateway("gw", 80), "other"),
        secret("default", "s"),
        secret("other", "s"),
        secret("certs", "s"),
    ] {
        api.put(o);
    }
    let addr = api.listen(0).await;
    let mut a = args("a", false);
    a.watch_namespaces = watch.iter().map(|s| s.to_string()).collect();
    a.secret_namespaces = secrets.iter().map(|s| s.to_string()).collect();
    let ctl = start(FakeApi::client(addr), a, vec![]).await;
    eventually(20, "the status of default/gw", || {
        status_patches(&api, None)
            .into_iter()
            .find(|(p, _)| p.ends_with("/namespaces/default/gateways/gw/status"))
    })
    .await;
    eventually(20, "the route's Accepted=True", || {
        let r = api.get(GW, "httproutes", "default", "r")?;
        let accepted = r["status"]["parents"][0]["conditions"]
            .as_array()?
            .iter()
            .any(|c| c["type"] == "Accepted" && c["status"] == "True");
        accepted.then_some(())
    })
    .await;
    // A moment more, so late requests are recorded too.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    ctl.shutdown().await.unwrap();
    let reqs = api.requests();
    (api, reqs)
}

/// Every request is one the chart's RBAC for the same scope allows.
fn all_granted(reqs: &[common::fake_api::Recorded], scope: &Scope) {
    let granted = rules(scope, SYS);
    for r in reqs {
        let Some((ns, group, res)) = target(&r.path) else {
            continue;
        };
        let res = match r.path.ends_with("/status") {
            true => format!("{res}/status"),
            false => res,
        };
        let ok = granted
            .iter()
            .any(|(gns, g, gr, _)| *g == group && *gr == res && (gns.is_none() || *gns == ns));
        assert!(ok, "{} {} is not granted for {scope:?}", r.method, r.path);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_namespaces_reads_and_writes_only_there() {
    let (api, reqs) = requests_with(&["default"], &[]).await;
    all_granted(&reqs, &Scope::new(&["default".into()], &[]).unwrap());
    for r in &reqs {
        let Some((ns, _, res)) = target(&r.path) else {
            continue;
        };
        match ns.as_deref() {
            Some("default") => {}
            Some(SYS) => assert!(
                res == "leases" || res == "secrets",
                "{} {}",
                r.method,
                r.path
            ),
            None => assert!(
                ["gatewayclasses", "namespaces", "ingressclasses"].contains(&res.as_str()),
                "a cluster-wide request for a namespaced kind: {} {}",
                r.method,
                r.path
            ),
            Some(other) => panic!("a request in {other}: {} {}", r.method, r.path),
        }
    }
    // The Gateway in the unwatched namespace has no status from us.
    let other = api
        .get(GW, "gateways", "other", "gw")
        .expect("the other Gateway");
    assert!(other.get("status").is_none_or(|s| s.is_null()), "{other}");
    // The route in the watched namespace is accepted.
    let r = api.get(GW, "httproutes", "default", "r").unwrap();
    assert_eq!(r["status"]["parents"][0]["controllerName"], ME, "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secret_namespaces_reads_secrets_only_there() {
    let (_api, reqs) = requests_with(&[], &["certs"]).await;
    all_granted(&reqs, &Scope::new(&[], &["certs".into()]).unwrap());
    let secret_paths: Vec<&str> = reqs
        .iter()
        .filter(|r| target(&r.path).is_some_and(|t| t.2 == "secrets"))
        .map(|r| r.path.as_str())
        .collect();
    assert!(
        secret_paths
            .iter()
            .any(|p| p.starts_with("/api/v1/namespaces/certs/secrets")),
        "{secret_paths:?}"
    );
    for p in &secret_paths {
        assert!(
            p.starts_with("/api/v1/namespaces/certs/")
                || p.starts_with(&format!("/api/v1/namespaces/{SYS}/")),
            "a Secret request outside certs and the controller's namespace: {p}"
        );
    }
    // Other kinds are still watched cluster-wide.
    assert!(
        reqs.iter()
            .any(|r| r.path == "/apis/gateway.networking.k8s.io/v1/gateways"),
        "no cluster-wide Gateway watch"
    );
}
