//! Provisioned ServiceAccount/Deployment/Service per Gateway shape, as golden YAML.
//! `UPDATE_GOLDEN=1 cargo test -p portcullis-kube --test provision_golden` rewrites them.

use std::path::PathBuf;

use portcullis_kube::provision::{self, Settings, params};
use portcullis_store::status::{Condition, GatewayStatus, Status, Statuses};
use portcullis_store::types::{ConfigMap, Gateway, ListenerSet};
use portcullis_store::{Kind, Object, ObjectKey, ObjectRef, Snapshot};
use serde_json::{Value, json};

fn settings() -> Settings {
    Settings {
        image: "ghcr.io/portcullis-dev/portcullis:0.1.0".into(),
        stream_url: "https://portcullis-controller.portcullis-system.svc:9977".into(),
        log_level: "info".into(),
        enabled: true,
        ca_bundle: "-----BEGIN CERTIFICATE-----\n(test)\n-----END CERTIFICATE-----\n".into(),
    }
}

fn gw(name: &str, spec: Value) -> Gateway {
    serde_json::from_value(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": name, "namespace": "apps", "uid": "0b3c7a9e-1111-2222-3333-444455556666", "generation": 1},
        "spec": spec,
    }))
    .unwrap()
}

fn render(gw: &Gateway, snapshot: &Snapshot) -> Result<Vec<Value>, String> {
    let p = params::of(gw, snapshot)?;
    Ok(provision::render(gw, snapshot, &p, &settings()))
}

fn check(name: &str, objects: &[Value]) {
    let yaml = serde_saphyr::to_string(&objects.to_vec()).unwrap();
    let back: Vec<Value> = serde_saphyr::from_str(&yaml).unwrap();
    assert_eq!(back, objects, "YAML round trip");
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/golden")
        .join(format!("{name}.yaml"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &yaml).unwrap();
    }
    let want = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1)", path.display()));
    pretty_assertions::assert_eq!(yaml, want, "{name}");
}

#[test]
fn basic_http_gateway() {
    let g = gw(
        "web",
        json!({"gatewayClassName": "portcullis", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}),
    );
    let objects = render(&g, &Snapshot::default()).unwrap();
    assert_eq!(
        objects
            .iter()
            .map(|o| o["kind"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["ServiceAccount", "ConfigMap", "Deployment", "Service"]
    );
    check("basic", &objects);
}

#[test]
fn infrastructure_labels_annotations_and_many_listeners() {
    let g = gw(
        "edge",
        json!({
            "gatewayClassName": "portcullis",
            "infrastructure": {"labels": {"team": "payments", "app.kubernetes.io/name": "overridden"}, "annotations": {"service.beta.kubernetes.io/aws-load-balancer-type": "nlb"}},
            "listeners": [
                {"name": "http", "port": 80, "protocol": "HTTP"},
                {"name": "https", "port": 443, "protocol": "HTTPS", "hostname": "*.example.com"},
                {"name": "https-2", "port": 443, "protocol": "HTTPS", "hostname": "example.org"},
                {"name": "dns", "port": 53, "protocol": "UDP"}
            ]
        }),
    );
    let mut snap = Snapshot::default();
    let ls: ListenerSet = serde_json::from_value(json!({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "ListenerSet",
        "metadata": {"name": "extra", "namespace": "apps"},
        "spec": {"parentRef": {"name": "edge"}, "listeners": [{"name": "alt", "port": 8443, "protocol": "HTTPS"}]}
    }))
    .unwrap();
    snap.insert(Object::ListenerSet(ls));
    let objects = render(&g, &snap).unwrap();
    assert_eq!(
        objects[2]["spec"]["template"]["metadata"]["labels"]["team"],
        "payments"
    );
    assert_eq!(
        objects[2]["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"],
        "portcullis-proxy",
        "our selector labels win"
    );
    assert_eq!(
        objects[3]["spec"]["ports"].as_array().unwrap().len(),
        4,
        "53/UDP, 80, 443, 8443"
    );
    check("infrastructure", &objects);
}

#[test]
fn parameters_from_a_configmap() {
    let g = gw(
        "tuned",
        json!({"gatewayClassName": "portcullis", "infrastructure": {"parametersRef": {"group": "", "kind": "ConfigMap", "name": "proxy-params"}}, "listeners": [{"name": "http", "port": 8080, "protocol": "HTTP"}]}),
    );
    let mut snap = Snapshot::default();
    let cm: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "proxy-params", "namespace": "apps"},
        "data": {"replicas": "3", "serviceType": "NodePort", "resources": "requests: {cpu: 500m, memory: 256Mi}\nlimits: {memory: 512Mi}\n"}
    }))
    .unwrap();
    snap.insert(Object::ConfigMap(cm));
    let objects = render(&g, &snap).unwrap();
    assert_eq!(objects[2]["spec"]["replicas"], 3);
    assert_eq!(objects[3]["spec"]["type"], "NodePort");
    check("parameters", &objects);
}

#[test]
fn global_rate_limit_redis_from_a_secret() {
    let g = gw(
        "limited",
        json!({"gatewayClassName": "portcullis", "infrastructure": {"parametersRef": {"group": "", "kind": "ConfigMap", "name": "rl"}}, "listeners": [{"name": "http", "port": 8080, "protocol": "HTTP"}]}),
    );
    let mut snap = Snapshot::default();
    let cm: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "rl", "namespace": "apps"},
        "data": {"rateLimitRedisSecret": "redis", "rateLimitFailClosed": "true"}
    }))
    .unwrap();
    snap.insert(Object::ConfigMap(cm));
    let objects = render(&g, &snap).unwrap();
    let c = &objects[2]["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        c["env"][0],
        json!({"name": "PORTCULLIS_RATE_LIMIT_REDIS", "valueFrom": {"secretKeyRef": {"name": "redis", "key": "url"}}})
    );
    let args: Vec<&str> = c["args"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(args.contains(&"--rate-limit-fail-closed"), "{args:?}");
    assert!(
        !args.iter().any(|a| a.contains("redis://")),
        "the URL stays out of the args"
    );
    let bad: ConfigMap = serde_json::from_value(json!({
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "rl", "namespace": "apps"},
        "data": {"rateLimitFailClosed": "yes"}
    }))
    .unwrap();
    assert!(
        params::parse(&bad)
            .unwrap_err()
            .contains("rateLimitFailClosed")
    );
}

#[test]
fn long_names_are_shortened_with_a_hash() {
    let long = "a-very-long-gateway-name-that-goes-on-and-on-well-past-the-limit-of-dns-labels";
    let g = gw(
        long,
        json!({"gatewayClassName": "portcullis", "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}),
    );
    let objects = render(&g, &Snapshot::default()).unwrap();
    let name = objects[0]["metadata"]["name"].as_str().unwrap();
    assert!(name.len() <= 63, "{name}");
    assert_ne!(
        provision::name(long, "portcullis"),
        provision::name(&format!("{long}x"), "portcullis"),
        "distinct names stay distinct"
    );
    assert!(
        objects[2]["spec"]["template"]["metadata"]["labels"]
            .get("gateway.networking.k8s.io/gateway-name")
            .is_none(),
        "label values are limited to 63 characters"
    );
    check("long-name", &objects);
}

#[test]
fn bad_parameters_make_the_gateway_not_accepted() {
    let mut snap = Snapshot::default();
    for (name, pref) in [
        (
            "missing",
            json!({"group": "", "kind": "ConfigMap", "name": "nope"}),
        ),
        (
            "wrongkind",
            json!({"group": "example.com", "kind": "ProxyConfig", "name": "x"}),
        ),
    ] {
        let g = gw(
            name,
            json!({"gatewayClassName": "portcullis", "infrastructure": {"parametersRef": pref}, "listeners": [{"name": "http", "port": 80, "protocol": "HTTP"}]}),
        );
        snap.insert(Object::Gateway(g));
    }
    let mut statuses = Statuses::new();
    for name in ["missing", "wrongkind"] {
        let conds = vec![
            Condition::new("Accepted", true, "Accepted", "ok", 1),
            Condition::new("Programmed", true, "Programmed", "ok", 1),
        ];
        statuses.insert(
            ObjectRef {
                kind: Kind::Gateway,
                key: ObjectKey::new("apps", name),
            },
            Status::Gateway(GatewayStatus {
                conditions: conds,
                ..Default::default()
            }),
        );
    }
    let plans = provision::plan(&snap, &statuses, &settings());
    assert_eq!(plans.len(), 2);
    assert!(plans.iter().all(|p| p.objects.is_err()));
    provision::adjust_statuses(
        &mut statuses,
        &plans,
        &snap,
        &settings(),
        &Default::default(),
    );
    for (oref, st) in &statuses {
        let Status::Gateway(st) = st else { panic!() };
        let c = st
            .conditions
            .iter()
            .find(|c| c.type_ == "Accepted")
            .unwrap();
        assert_eq!(
            (c.status.as_str(), c.reason.as_str()),
            ("False", "InvalidParameters"),
            "{oref}: {}",
            c.message
        );
        let p = st
            .conditions
            .iter()
            .find(|c| c.type_ == "Programmed")
            .unwrap();
        assert_eq!(p.status, "False");
    }
}

/// A listener on the proxy's admin port is refused by translation
/// (`PortUnavailable`, see `provision::reserved_ports`); the proxy's objects
/// expose the admin port once, for the admin endpoints, and never for it.
#[test]
fn a_listener_on_the_admin_port_is_not_exposed() {
    let admin = provision::PROXY_ADMIN_PORT;
    assert!(provision::reserved_ports().contains_key(&admin));
    let g = gw(
        "clash",
        json!({"gatewayClassName": "portcullis", "listeners": [
            {"name": "clash", "port": admin, "protocol": "HTTP"},
            {"name": "web", "port": 8080, "protocol": "HTTP"},
        ]}),
    );
    let objects = render(&g, &Snapshot::default()).unwrap();
    let by_kind = |k: &str| objects.iter().find(|o| o["kind"] == k).unwrap().clone();
    let svc_ports: Vec<i64> = by_kind("Service")["spec"]["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["port"].as_i64().unwrap())
        .collect();
    assert_eq!(svc_ports, vec![8080]);
    let container_ports: Vec<(String, i64)> =
        by_kind("Deployment")["spec"]["template"]["spec"]["containers"][0]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["name"].as_str().unwrap().to_string(),
                    p["containerPort"].as_i64().unwrap(),
                )
            })
            .collect();
    assert_eq!(
        container_ports
            .iter()
            .filter(|(_, p)| *p == i64::from(admin))
            .count(),
        1,
        "{container_ports:?}"
    );
    assert!(container_ports.contains(&("admin".to_string(), i64::from(admin))));
}
