//! Ingresses served in Kubernetes mode.
//!
//! Each controller pass adds to the cluster's snapshot the Gateway API
//! objects that serve the Ingresses of Portcullis' IngressClasses, with the
//! same function as standalone mode ([`portcullis_source::ingress::derive_reusing`],
//! the converter of `portcullis import ingress` plus the file source's
//! defaulting and validation), so both modes serve an Ingress the same way.
//! The one difference is where the derived Gateways live: in the controller's
//! namespace (or the one `--namespace` watches), without `spec.addresses`, so
//! that each (one per IngressClass) is given a provisioned proxy like any
//! Gateway, owned by its IngressClass ([`owner`]).
//!
//! Derived objects do not exist in the API: their statuses are never written
//! ([`is_derived`]). What is written is each served Ingress's
//! `status.loadBalancer.ingress`: the addresses of its IngressClass's
//! Gateway, which provisioning took from the proxy's Service ([`status_writes`]).

use std::collections::{BTreeMap, BTreeSet};

use portcullis_source::ingress::{
    CLASS_LABEL, Derived, ServeOptions, ServedIngress, derive_reusing,
};
use portcullis_store::status::{Status, Statuses};
use portcullis_store::types::{Gateway, ObjectMeta};
use portcullis_store::{Kind, ObjectKey, ObjectRef, Snapshot};
use serde_json::{Value, json};

use crate::status::writer::Pending;

/// Prefix of the `uid` the derivation gives every derived object.
const DERIVED_UID: &str = "derived:";

/// The derivation's options in Kubernetes mode: Gateways in `namespace`,
/// listening on ports 80 and 443 of their proxies.
pub fn options(namespace: &str) -> ServeOptions {
    ServeOptions {
        http: ([0, 0, 0, 0], 80).into(),
        https: ([0, 0, 0, 0], 443).into(),
        provisioned_in: Some(namespace.to_string()),
    }
}

/// The snapshot with the objects serving its Portcullis Ingresses added
/// (`previous`: the last pass's derived snapshot, whose unchanged objects are
/// reused).
pub fn derive(snapshot: &Snapshot, namespace: &str, previous: &Snapshot) -> Derived {
    derive_reusing(snapshot, &options(namespace), previous)
}

/// Whether an object was derived from Ingresses (it is not in the API).
pub fn is_derived(meta: &ObjectMeta) -> bool {
    meta.uid
        .as_deref()
        .is_some_and(|u| u.starts_with(DERIVED_UID))
}

/// The owner reference of a derived Gateway's provisioned objects: its
/// IngressClass (cluster-scoped, so it may own namespaced objects), when it
/// exists in the cluster. `None` for a Gateway that is not derived; `Some(None)`
/// for one whose class is only named by the legacy annotation (no object
/// to own the proxy: it stays until deleted by hand).
pub fn owner(gw: &Gateway, snapshot: &Snapshot) -> Option<Option<Value>> {
    if !is_derived(&gw.metadata) {
        return None;
    }
    let class = gw.metadata.labels.as_ref()?.get(CLASS_LABEL)?;
    Some(
        snapshot
            .ingress_classes
            .get(&ObjectKey::cluster(class))
            .and_then(|c| c.metadata.uid.clone())
            .map(|uid| {
                json!({
                    "apiVersion": Kind::IngressClass.api_version(),
                    "kind": "IngressClass",
                    "name": class,
                    "uid": uid,
                    "controller": true,
                })
            }),
    )
}

/// `status.loadBalancer` of every served Ingress that differs from what the
/// Ingress has: the addresses in its class's Gateway's status (the proxy
/// Service's; empty until it has one).
pub fn status_writes(
    snapshot: &Snapshot,
    served: &BTreeMap<ObjectKey, ServedIngress>,
    statuses: &Statuses,
) -> Vec<Pending> {
    let mut out = vec![];
    for (key, served) in served {
        let Some(ing) = snapshot.ingresses.get(key) else {
            continue;
        };
        let mut seen = BTreeSet::new();
        let mut entries = vec![];
        for oref in served.objects.iter().filter(|o| o.kind == Kind::Gateway) {
            if let Some(Status::Gateway(st)) = statuses.get(oref) {
                for a in &st.addresses {
                    if !seen.insert(a.value.clone()) {
                        continue;
                    }
                    entries.push(if a.type_ == "Hostname" {
                        json!({"hostname": a.value})
                    } else {
                        json!({"ip": a.value})
                    });
                }
            }
        }
        let desired = json!({"ingress": entries});
        let current = ing
            .status
            .as_ref()
            .and_then(|s| s.load_balancer.as_ref())
            .map(|l| serde_json::to_value(l).unwrap_or_default())
            .unwrap_or_else(|| json!({}));
        let empty = |v: &Value| v["ingress"].as_array().is_none_or(Vec::is_empty);
        if current == desired || (empty(&current) && empty(&desired)) {
            continue;
        }
        out.push(Pending {
            oref: ObjectRef {
                kind: Kind::Ingress,
                key: key.clone(),
            },
            resource_version: ing.metadata.resource_version.clone().unwrap_or_default(),
            generation: ing.metadata.generation.unwrap_or(0),
            translated: None,
            status: json!({"loadBalancer": desired}),
        });
    }
    out
}

/// The Secrets the Portcullis Ingresses of `snapshot` refer to (`spec.tls`,
/// and the ingress-nginx annotations naming a Secret), which the derivation
/// reads (basic-auth files, CA bundles) and the derived objects reference.
pub fn referenced(snapshot: &Snapshot) -> BTreeSet<ObjectRef> {
    const SECRET_ANNOTATIONS: [&str; 3] = [
        "nginx.ingress.kubernetes.io/auth-secret",
        "nginx.ingress.kubernetes.io/auth-tls-secret",
        "nginx.ingress.kubernetes.io/proxy-ssl-secret",
    ];
    let classes = snapshot
        .ingress_classes
        .iter()
        .map(|(k, c)| (k.name.clone(), (**c).clone()))
        .collect();
    let mut out = BTreeSet::new();
    for (key, ing) in &snapshot.ingresses {
        if portcullis_import::serve::class_of(ing, &classes).is_none() {
            continue;
        }
        let mut add = |name: &str| {
            let (ns, name) = name.split_once('/').unwrap_or((&key.namespace, name));
            out.insert(ObjectRef {
                kind: Kind::Secret,
                key: ObjectKey::new(ns, name),
            });
        };
        for t in ing.spec.iter().flat_map(|s| s.tls.iter().flatten()) {
            if let Some(n) = t.secret_name.as_deref() {
                add(n);
            }
        }
        if let Some(a) = &ing.metadata.annotations {
            for k in SECRET_ANNOTATIONS {
                if let Some(v) = a.get(k) {
                    add(v);
                }
            }
        }
    }
    out
}

/// What `portcullis import ingress --from-cluster` reads, as one input of
/// the converter (a JSON `List`, which the file path reads too): the
/// Ingresses (of `namespace`, else every namespace), every IngressClass, the
/// Services of the Ingresses' namespaces, and the Secrets the Ingresses
/// name (`spec.tls`, basic-auth and CA Secrets of annotations; read one by
/// one, never listed with their data). A Secret that is not there is left
/// out, as a file set without it would be.
pub async fn cluster_source(
    client: &kube::Client,
    namespace: Option<&str>,
) -> Result<portcullis_import::Source, crate::KubeModeError> {
    use kube::api::{Api, ListParams};
    use portcullis_store::types;
    let failed = |what: &str, e: kube::Error| {
        crate::KubeModeError::ClientConfig(format!("cannot read {what}: {e}"))
    };
    let lp = ListParams::default();
    let ingresses = crate::kinds::api::<types::Ingress>(client, namespace)
        .list(&lp)
        .await
        .map_err(|e| failed("Ingresses", e))?
        .items;
    let classes = Api::<types::IngressClass>::all(client.clone())
        .list(&lp)
        .await
        .map_err(|e| failed("IngressClasses", e))?
        .items;
    let namespaces: BTreeSet<String> = ingresses
        .iter()
        .filter_map(|i| i.metadata.namespace.clone())
        .collect();
    let mut services = vec![];
    for ns in &namespaces {
        services.extend(
            Api::<types::Service>::namespaced(client.clone(), ns)
                .list(&lp)
                .await
                .map_err(|e| failed(&format!("Services of {ns}"), e))?
                .items,
        );
    }
    let mut snapshot = Snapshot::default();
    for i in &ingresses {
        snapshot.insert(portcullis_store::Object::Ingress(i.clone()));
    }
    for c in &classes {
        snapshot.insert(portcullis_store::Object::IngressClass(c.clone()));
    }
    let mut secrets = vec![];
    for r in referenced(&snapshot) {
        match Api::<types::Secret>::namespaced(client.clone(), &r.key.namespace)
            .get_opt(&r.key.name)
            .await
        {
            Ok(Some(s)) => secrets.push(s),
            Ok(None) => {}
            Err(e) => return Err(failed(&format!("Secret {}", r.key), e)),
        }
    }
    let mut items: Vec<Value> = vec![];
    let mut push = |kind: &str, api_version: &str, v: Value| {
        let mut v = v;
        v["kind"] = json!(kind);
        v["apiVersion"] = json!(api_version);
        if let Some(m) = v["metadata"].as_object_mut() {
            m.remove("managedFields");
        }
        items.push(v);
    };
    for c in classes {
        push("IngressClass", "networking.k8s.io/v1", json!(c));
    }
    for i in ingresses {
        push("Ingress", "networking.k8s.io/v1", json!(i));
    }
    for s in services {
        push("Service", "v1", json!(s));
    }
    for s in secrets {
        push("Secret", "v1", json!(s));
    }
    let text =
        serde_json::to_string_pretty(&json!({"apiVersion": "v1", "kind": "List", "items": items}))
            .unwrap_or_default();
    Ok(portcullis_import::Source {
        name: "cluster".into(),
        text,
    })
}

/// [`cluster_source`] with the client of the current kubeconfig
/// (`KUBECONFIG`, else `~/.kube/config`; in a pod, its ServiceAccount).
pub async fn cluster_source_default(
    namespace: Option<&str>,
) -> Result<portcullis_import::Source, crate::KubeModeError> {
    let client = kube::Client::try_default()
        .await
        .map_err(|e| crate::KubeModeError::ClientConfig(e.to_string()))?;
    cluster_source(&client, namespace).await
}

/// Warning events on served Ingresses for what is not honoured
/// ([`portcullis_source::ingress::not_honoured`], the list standalone mode
/// puts in the `PartiallyInvalid` condition: the Ingress API's status has no
/// conditions). One event per Ingress generation and message, created by the
/// leader; an event that cannot be created is retried on a later pass.
#[derive(Debug, Default)]
pub struct Events {
    sent: BTreeSet<(String, i64, String)>,
}

/// Reason of the events.
pub const EVENT_REASON: &str = "NotHonoured";

impl Events {
    /// Create the events not created yet for `served`.
    pub async fn record(
        &mut self,
        client: &kube::Client,
        snapshot: &Snapshot,
        served: &BTreeMap<ObjectKey, ServedIngress>,
        statuses: &Statuses,
    ) {
        use kube::api::{Api, PostParams};
        let mut wanted = BTreeSet::new();
        for (key, s) in served {
            let Some(ing) = snapshot.ingresses.get(key) else {
                continue;
            };
            let problems = portcullis_source::ingress::not_honoured(s, statuses);
            if problems.is_empty() {
                continue;
            }
            let uid = ing.metadata.uid.clone().unwrap_or_default();
            let generation = ing.metadata.generation.unwrap_or(0);
            let mut message = problems.join("; ");
            if message.len() > 1000 {
                let cut = (0..=1000)
                    .rev()
                    .find(|i| message.is_char_boundary(*i))
                    .unwrap_or(0);
                message.truncate(cut);
                message.push('…');
            }
            let id = (uid.clone(), generation, message.clone());
            wanted.insert(id.clone());
            if self.sent.contains(&id) {
                continue;
            }
            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            let event: k8s_openapi::api::core::v1::Event = match serde_json::from_value(json!({
                "metadata": {"generateName": format!("{}.", key.name), "namespace": key.namespace},
                "involvedObject": {"apiVersion": "networking.k8s.io/v1", "kind": "Ingress",
                    "namespace": key.namespace, "name": key.name, "uid": uid,
                    "resourceVersion": ing.metadata.resource_version},
                "type": "Warning",
                "reason": EVENT_REASON,
                "message": message,
                "source": {"component": "portcullis"},
                "reportingComponent": "portcullis.dev/ingress-controller",
                "reportingInstance": "portcullis",
                "firstTimestamp": now,
                "lastTimestamp": now,
                "count": 1,
            })) {
                Ok(e) => e,
                Err(e) => {
                    tracing::warn!(ingress = %key, "cannot build an event: {e}");
                    continue;
                }
            };
            match crate::bounded(
                Api::<k8s_openapi::api::core::v1::Event>::namespaced(
                    client.clone(),
                    &key.namespace,
                )
                .create(&PostParams::default(), &event),
            )
            .await
            {
                Ok(_) => {
                    self.sent.insert(id);
                }
                Err(e) => tracing::warn!(ingress = %key, "cannot create an event: {e}"),
            }
        }
        // Forget what no longer applies (an edited or deleted Ingress).
        self.sent.retain(|id| wanted.contains(id));
    }
}
