//! Provisioning, GEP-1762 style: one proxy per accepted Gateway of our class.
//!
//! For each such Gateway the controller server-side applies, in the Gateway's
//! namespace and owned by it (so deleting the Gateway deletes them):
//! a ServiceAccount (the identity its proxies authenticate with), a Deployment
//! running `portcullis proxy --gateway ns/name --controller URL`, and a
//! Service (type `LoadBalancer` unless the parameters say otherwise) with one
//! port per listener port. `spec.infrastructure.labels`/`annotations` are
//! copied onto all three and the pod template; the pod template also gets
//! `prometheus.io/scrape`, `/port` (the admin port) and `/path` (`/metrics`)
//! annotations, which the infrastructure annotations may override.
//!
//! Translation does not know about provisioning, so its Gateway statuses are
//! post-processed here ([`adjust_statuses`]): bad parameters turn `Accepted`
//! to `False/InvalidParameters`, and `status.addresses` come from the
//! Service (load-balancer ingress, else its cluster IP for other types).

pub mod apply;
pub mod drift;
pub mod params;

use std::collections::{BTreeMap, BTreeSet};

use portcullis_store::status::{Address, Condition, Status, Statuses};
use portcullis_store::types::Gateway;
use portcullis_store::{Kind, ObjectKey, ObjectRef, Snapshot};
use serde_json::{Value, json};

pub use params::Params;

/// Settings shared by every provisioned proxy.
#[derive(Clone, Debug)]
pub struct Settings {
    /// Proxy image.
    pub image: String,
    /// URL of the controller's config stream.
    pub stream_url: String,
    /// Proxy log filter.
    pub log_level: String,
    /// Whether provisioning is on (else statuses get no addresses from Services).
    pub enabled: bool,
    /// The CA bundle (PEM) proxies trust for the config stream.
    pub ca_bundle: String,
}

/// Label selecting one Gateway's proxy pods.
pub const PROXY_LABEL: &str = "portcullis.dev/proxy";
/// Port of the proxy's `/healthz` and `/readyz`.
pub const PROXY_ADMIN_PORT: i32 = 9902;

/// What provisioning decided for one Gateway.
#[derive(Clone, Debug, PartialEq)]
pub struct Plan {
    /// The Gateway.
    pub gateway: ObjectKey,
    /// The objects to apply, or the `InvalidParameters` message.
    pub objects: Result<Vec<Value>, String>,
}

/// Name of a Gateway's provisioned objects: `<gateway>-<class>`, shortened
/// with a hash suffix to fit 63 characters.
pub fn name(gateway: &str, class: &str) -> String {
    let full = format!("{gateway}-{class}");
    if full.len() <= 63 {
        return full;
    }
    let mut h: u64 = 0xcbf29ce484222325;
    for b in full.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x100000001b3);
    }
    let cut = full
        .char_indices()
        .take_while(|(i, _)| *i < 54)
        .last()
        .map(|(i, c)| i + c.len_utf8())
        .unwrap_or(0);
    format!(
        "{}-{:08x}",
        full[..cut].trim_end_matches(['-', '.']),
        h as u32
    )
}

/// The ServiceAccount a Gateway's proxies run as: `system:serviceaccount:<ns>:<name>`.
pub fn service_account(gw: &Gateway) -> String {
    name(
        gw.metadata.name.as_deref().unwrap_or_default(),
        &gw.spec.gateway_class_name,
    )
}

/// Plans for every Gateway that translation accepted (those whose status has `Accepted=True`).
pub fn plan(snapshot: &Snapshot, statuses: &Statuses, settings: &Settings) -> Vec<Plan> {
    let mut out = vec![];
    for (key, gw) in &snapshot.gateways {
        let Some(Status::Gateway(st)) = statuses.get(&ObjectRef {
            kind: Kind::Gateway,
            key: key.clone(),
        }) else {
            continue;
        };
        if !st
            .conditions
            .iter()
            .any(|c| c.type_ == "Accepted" && c.is_true())
        {
            continue;
        }
        let objects = params::of(gw, snapshot).map(|p| render(gw, snapshot, &p, settings));
        out.push(Plan {
            gateway: key.clone(),
            objects,
        });
    }
    out
}

/// The ServiceAccount, Deployment and Service of one Gateway.
pub fn render(
    gw: &Gateway,
    snapshot: &Snapshot,
    params: &Params,
    settings: &Settings,
) -> Vec<Value> {
    let gw_name = gw.metadata.name.clone().unwrap_or_default();
    let ns = gw.metadata.namespace.clone().unwrap_or_default();
    let class = &gw.spec.gateway_class_name;
    let base = name(&gw_name, class);
    let infra = gw.spec.infrastructure.as_ref();
    let mut labels: BTreeMap<String, String> =
        infra.and_then(|i| i.labels.clone()).unwrap_or_default();
    labels.insert("app.kubernetes.io/name".into(), "portcullis-proxy".into());
    labels.insert("app.kubernetes.io/managed-by".into(), "portcullis".into());
    labels.insert(PROXY_LABEL.into(), base.clone());
    if gw_name.len() <= 63 {
        labels.insert(
            "gateway.networking.k8s.io/gateway-name".into(),
            gw_name.clone(),
        );
    }
    if class.len() <= 63 {
        labels.insert(
            "gateway.networking.k8s.io/gateway-class-name".into(),
            class.clone(),
        );
    }
    let annotations: BTreeMap<String, String> = infra
        .and_then(|i| i.annotations.clone())
        .unwrap_or_default();
    // A Gateway derived from Ingresses is not in the API: its IngressClass owns its proxy.
    let owner = match crate::ingress::owner(gw, snapshot) {
        Some(class) => json!(class.into_iter().collect::<Vec<_>>()),
        None => json!([{
            "apiVersion": Kind::Gateway.api_version(),
            "kind": "Gateway",
            "name": gw_name,
            "uid": gw.metadata.uid.clone().unwrap_or_default(),
            "controller": true,
            "blockOwnerDeletion": true,
        }]),
    };
    let meta = |kind_labels: &BTreeMap<String, String>| {
        let mut m =
            json!({"name": base, "namespace": ns, "labels": kind_labels, "ownerReferences": owner});
        if !annotations.is_empty() {
            m["annotations"] = json!(annotations);
        }
        m
    };
    let ports = listener_ports(gw, snapshot);
    let container_ports: Vec<Value> = ports.iter().map(|(p, proto)| json!({"name": port_name(*p, proto), "containerPort": p, "protocol": proto})).collect();
    let service_ports: Vec<Value> = ports.iter().map(|(p, proto)| json!({"name": port_name(*p, proto), "port": p, "targetPort": p, "protocol": proto})).collect();
    // Proxy pods are annotated for Prometheus scraping of `/metrics` on the
    // admin port; `spec.infrastructure.annotations` override these.
    let mut pod_annotations: BTreeMap<String, String> = [
        ("prometheus.io/scrape", "true".to_string()),
        ("prometheus.io/port", PROXY_ADMIN_PORT.to_string()),
        ("prometheus.io/path", "/metrics".to_string()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    pod_annotations.extend(annotations.clone());
    let template_meta = json!({"labels": labels, "annotations": pod_annotations});
    let sa = json!({
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": meta(&labels),
        "automountServiceAccountToken": false,
    });
    let mut deployment = json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": meta(&labels),
        "spec": {
            "selector": {"matchLabels": {PROXY_LABEL: base}},
            "template": {
                "metadata": template_meta,
                "spec": {
                    "serviceAccountName": base,
                    "automountServiceAccountToken": false,
                    "terminationGracePeriodSeconds": params.termination_grace(),
                    "securityContext": {
                        "runAsNonRoot": true,
                        "runAsUser": 65532,
                        "runAsGroup": 65532,
                        "seccompProfile": {"type": "RuntimeDefault"},
                        "sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}],
                    },
                    "containers": [{
                        "name": "proxy",
                        "image": settings.image,
                        "args": ["proxy", "--gateway", format!("{ns}/{gw_name}"), "--controller", settings.stream_url, "--log-level", settings.log_level],
                        "ports": container_ports.into_iter().chain([json!({"name": "admin", "containerPort": PROXY_ADMIN_PORT, "protocol": "TCP"})]).collect::<Vec<_>>(),
                        "readinessProbe": {"httpGet": {"path": "/readyz", "port": "admin"}, "periodSeconds": 2},
                        "livenessProbe": {"httpGet": {"path": "/healthz", "port": "admin"}, "periodSeconds": 10},
                        "resources": params.resources,
                        "securityContext": {"allowPrivilegeEscalation": false, "readOnlyRootFilesystem": true, "capabilities": {"drop": ["ALL"]}},
                        "volumeMounts": [{"name": "portcullis-token", "mountPath": "/var/run/secrets/portcullis", "readOnly": true}],
                    }],
                    "volumes": [{"name": "portcullis-token", "projected": {"sources": [
                        {"serviceAccountToken": {"audience": crate::TOKEN_AUDIENCE, "expirationSeconds": 3600, "path": "token"}},
                        {"configMap": {"name": ca_config_map(&base), "items": [{"key": crate::stream::pki::BUNDLE_KEY, "path": crate::stream::pki::BUNDLE_KEY}]}},
                    ]}}],
                }
            }
        }
    });
    // Global rate limits: the Redis URL from a Secret (never in the args).
    let container = &mut deployment["spec"]["template"]["spec"]["containers"][0];
    let mut env = vec![];
    if let Some(secret) = &params.rate_limit_redis_secret {
        env.push(json!({"name": "PORTCULLIS_RATE_LIMIT_REDIS", "valueFrom": {"secretKeyRef": {"name": secret, "key": "url"}}}));
    }
    // Zone-aware routing (BackendTrafficPolicy `loadBalancer.zoneAware`): the
    // proxy's zone is its pod's `topology.kubernetes.io/zone` label, which the
    // API server copies from the node where the PodTopologyLabelsAdmission
    // feature is on (Kubernetes 1.33+); without the label the value is empty
    // and zone-aware routing stays off.
    env.push(json!({"name": "PORTCULLIS_ZONE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['topology.kubernetes.io/zone']"}}}));
    container["env"] = json!(env);
    if let Some(args) = container["args"].as_array_mut() {
        if params.rate_limit_redis_cluster {
            args.push(json!("--rate-limit-redis-cluster"));
        }
        if params.metrics_endpoint_labels {
            args.push(json!("--metrics-endpoint-labels"));
        }
        if params.rate_limit_fail_closed {
            args.push(json!("--rate-limit-fail-closed"));
        }
        args.extend(params.observe_args.iter().map(|a| json!(a)));
        // Defaults stay implicit (the proxy's own), so existing Deployments do not change.
        if params.shutdown_delay != Params::default().shutdown_delay {
            args.extend([
                json!("--shutdown-delay"),
                json!(params.shutdown_delay.to_string()),
            ]);
        }
        if params.drain_timeout != Params::default().drain_timeout {
            args.extend([
                json!("--drain-timeout"),
                json!(params.drain_timeout.to_string()),
            ]);
        }
    }
    // With `autoscaled`, replicas are the HPA's: not applied, so not owned.
    if !params.autoscaled {
        deployment["spec"]["replicas"] = json!(params.replicas);
    }
    let service = json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta(&labels),
        "spec": {
            "type": params.service_type,
            "selector": {PROXY_LABEL: base},
            "ports": service_ports,
        }
    });
    let ca = json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": ca_config_map(&base), "namespace": ns, "labels": labels, "ownerReferences": owner},
        "data": {crate::stream::pki::BUNDLE_KEY: settings.ca_bundle},
    });
    vec![sa, ca, deployment, service]
}

/// Name of the ConfigMap holding a Gateway's proxies' CA bundle.
pub fn ca_config_map(base: &str) -> String {
    format!("{base}-ca")
}

fn port_name(port: i32, proto: &str) -> String {
    format!("{}-{port}", proto.to_ascii_lowercase())
}

/// Distinct (port, TCP|UDP) of the Gateway's listeners and of the ListenerSets that name it as parent.
/// Ports a provisioned proxy keeps for itself, with why: a listener on one
/// is not accepted (translation says `PortUnavailable`), and the port is not
/// exposed for it.
pub fn reserved_ports() -> BTreeMap<i32, String> {
    BTreeMap::from([(
        PROXY_ADMIN_PORT,
        "the proxy's admin endpoints (health, metrics)".to_string(),
    )])
}

fn listener_ports(gw: &Gateway, snapshot: &Snapshot) -> BTreeSet<(i32, &'static str)> {
    let proto = |p: &str| if p == "UDP" { "UDP" } else { "TCP" };
    let mut out: BTreeSet<(i32, &'static str)> = gw
        .spec
        .listeners
        .iter()
        .map(|l| (l.port, proto(&l.protocol)))
        .collect();
    let gw_key = ObjectKey::of(&gw.metadata);
    for ls in snapshot.listener_sets.values() {
        let ls_ns = ls.metadata.namespace.clone().unwrap_or_default();
        let pr = &ls.spec.parent_ref;
        if ObjectKey::new(pr.namespace.clone().unwrap_or(ls_ns), &pr.name) != gw_key {
            continue;
        }
        let spec = serde_json::to_value(&ls.spec).unwrap_or_default();
        for l in spec["listeners"].as_array().into_iter().flatten() {
            if let Some(p) = l["port"].as_i64() {
                out.insert((p as i32, proto(l["protocol"].as_str().unwrap_or_default())));
            }
        }
    }
    let reserved = reserved_ports();
    out.retain(|(p, _)| !reserved.contains_key(p));
    out
}

/// Post-process translated Gateway statuses for provisioning (see the module
/// docs): `Programmed` is `True` only once the proxy Service has an address
/// and at least one ready proxy replica serves the Gateway's current
/// generation (`observed`, [`crate::proxystate`]); otherwise `False` with
/// `AddressNotAssigned` or `Pending`.
pub fn adjust_statuses(
    statuses: &mut Statuses,
    plans: &[Plan],
    snapshot: &Snapshot,
    settings: &Settings,
    observed: &crate::proxystate::Observed,
) {
    let plans: BTreeMap<&ObjectKey, &Plan> = plans.iter().map(|p| (&p.gateway, p)).collect();
    for (oref, status) in statuses.iter_mut() {
        let Status::Gateway(st) = status else {
            continue;
        };
        if oref.kind != Kind::Gateway {
            continue;
        }
        // Translation's addresses are internal (they only keep Gateways apart in the IR).
        st.addresses.clear();
        let Some(plan) = plans.get(&oref.key) else {
            continue;
        };
        match &plan.objects {
            Err(msg) => {
                set(
                    &mut st.conditions,
                    "Accepted",
                    false,
                    "InvalidParameters",
                    msg,
                );
                set(
                    &mut st.conditions,
                    "Programmed",
                    false,
                    "Invalid",
                    "Gateway is not accepted",
                );
            }
            Ok(_) if settings.enabled => {
                let Some(gw) = snapshot.gateways.get(&oref.key) else {
                    continue;
                };
                let svc_key = ObjectKey::new(&oref.key.namespace, service_account(gw));
                st.addresses = snapshot
                    .services
                    .get(&svc_key)
                    .map(|s| service_addresses(s))
                    .unwrap_or_default();
                let programmed = st
                    .conditions
                    .iter()
                    .any(|c| c.type_ == "Programmed" && c.is_true());
                if !programmed {
                    continue;
                }
                if st.addresses.is_empty() {
                    set(
                        &mut st.conditions,
                        "Programmed",
                        false,
                        "AddressNotAssigned",
                        "waiting for the proxy Service to get an address",
                    );
                    continue;
                }
                let generation = gw.metadata.generation.unwrap_or(0);
                let proxies = observed.get(&oref.key);
                let ready = proxies.map_or(0, |p| p.probes.len());
                let serving = proxies.map_or(0, |p| p.serving(generation));
                if ready == 0 {
                    set(
                        &mut st.conditions,
                        "Programmed",
                        false,
                        "Pending",
                        &format!(
                            "waiting for a ready proxy replica (Deployment {}/{})",
                            oref.key.namespace,
                            service_account(gw)
                        ),
                    );
                } else if serving == 0 {
                    set(
                        &mut st.conditions,
                        "Programmed",
                        false,
                        "Pending",
                        &format!(
                            "none of the {ready} ready proxy replicas serves generation {generation} yet"
                        ),
                    );
                } else if serving < ready {
                    set(
                        &mut st.conditions,
                        "Programmed",
                        true,
                        "Programmed",
                        &format!(
                            "served by {serving} of {ready} ready proxy replicas (the others have not applied generation {generation} yet)"
                        ),
                    );
                }
            }
            Ok(_) => {}
        }
    }
}

/// Load-balancer ingress addresses of a Service; its cluster IPs when it is not a LoadBalancer.
pub fn service_addresses(svc: &portcullis_store::types::Service) -> Vec<Address> {
    let lb = svc
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|l| l.ingress.as_ref());
    let mut out: Vec<Address> = lb
        .into_iter()
        .flatten()
        .filter_map(|i| {
            i.ip.clone()
                .map(|v| Address {
                    type_: "IPAddress".into(),
                    value: v,
                })
                .or_else(|| {
                    i.hostname.clone().map(|v| Address {
                        type_: "Hostname".into(),
                        value: v,
                    })
                })
        })
        .collect();
    let spec = svc.spec.as_ref();
    if out.is_empty() && spec.and_then(|s| s.type_.as_deref()) != Some("LoadBalancer") {
        let ips = spec
            .and_then(|s| {
                s.cluster_ips
                    .clone()
                    .or_else(|| s.cluster_ip.clone().map(|i| vec![i]))
            })
            .unwrap_or_default();
        out = ips
            .into_iter()
            .filter(|i| i != "None" && !i.is_empty())
            .map(|v| Address {
                type_: "IPAddress".into(),
                value: v,
            })
            .collect();
    }
    out
}

fn set(conds: &mut Vec<Condition>, type_: &str, ok: bool, reason: &str, message: &str) {
    let generation = conds.first().map(|c| c.observed_generation).unwrap_or(0);
    let new = Condition::new(type_, ok, reason, message, generation);
    match conds.iter_mut().find(|c| c.type_ == type_) {
        Some(c) => *c = new,
        None => conds.push(new),
    }
}
