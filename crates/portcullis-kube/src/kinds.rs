//! The typed Kubernetes resources behind each [`Kind`], and the Secrets and
//! ConfigMaps the snapshot references.

use std::collections::BTreeSet;
use std::fmt::Debug;

use kube::{Api, Client, Resource};
use portcullis_store::types;
use portcullis_store::{Kind, Object, ObjectKey, ObjectRef, Snapshot};
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// A resource the controller watches, with its [`Kind`].
pub trait Watched:
    Resource<DynamicType = ()> + Clone + DeserializeOwned + Serialize + Debug + Send + Sync + 'static
{
    /// The kind.
    const KIND: Kind;
    /// Wrap as an [`Object`].
    fn into_object(self) -> Object;
    /// An `Api` cluster-wide, or in `namespace` for namespaced kinds.
    fn api(client: Client, namespace: Option<&str>) -> Api<Self>;
}

macro_rules! watched {
    (namespaced: $($k:ident),*) => {$(
        impl Watched for types::$k {
            const KIND: Kind = Kind::$k;
            fn into_object(self) -> Object { Object::$k(self) }
            fn api(client: Client, namespace: Option<&str>) -> Api<Self> {
                match namespace { Some(ns) => Api::namespaced(client, ns), None => Api::all(client) }
            }
        }
    )*};
    (cluster: $($k:ident),*) => {$(
        impl Watched for types::$k {
            const KIND: Kind = Kind::$k;
            fn into_object(self) -> Object { Object::$k(self) }
            fn api(client: Client, _: Option<&str>) -> Api<Self> { Api::all(client) }
        }
    )*};
}
watched!(cluster: GatewayClass, Namespace, IngressClass);
watched!(
    namespaced:
    Gateway,
    ListenerSet,
    HTTPRoute,
    GRPCRoute,
    TLSRoute,
    TCPRoute,
    UDPRoute,
    ReferenceGrant,
    BackendTLSPolicy,
    SecurityPolicy,
    BackendTrafficPolicy,
    ClientTrafficPolicy,
    Service,
    EndpointSlice,
    Secret,
    ConfigMap,
    Ingress
);

/// An `Api` for `K`, cluster-wide or in `namespace` (cluster-scoped kinds ignore it).
pub fn api<K: Watched>(client: &Client, namespace: Option<&str>) -> Api<K> {
    K::api(client.clone(), namespace)
}

/// The Secrets and ConfigMaps the snapshot's Gateways, ListenerSets and
/// BackendTLSPolicies refer to (certificate refs, CA refs, client
/// certificates, infrastructure `parametersRef`). Found by walking each spec
/// for `{kind: Secret|ConfigMap, name, [namespace], [group: ""]}`, which is
/// what every such reference looks like once the API server has applied the
/// CRD defaults. A superset is harmless: translation only reads what it needs.
/// Plus the Secrets Portcullis' Ingresses name ([`crate::ingress::referenced`]).
pub fn referenced(snapshot: &Snapshot) -> BTreeSet<ObjectRef> {
    let mut out = BTreeSet::new();
    let mut walk_obj = |meta: &types::ObjectMeta, spec: Value| {
        let ns = meta.namespace.clone().unwrap_or_default();
        walk(&spec, None, &ns, &mut out);
    };
    for gw in snapshot.gateways.values() {
        walk_obj(
            &gw.metadata,
            serde_json::to_value(&gw.spec).unwrap_or_default(),
        );
    }
    for ls in snapshot.listener_sets.values() {
        walk_obj(
            &ls.metadata,
            serde_json::to_value(&ls.spec).unwrap_or_default(),
        );
    }
    for p in snapshot.security_policies.values() {
        walk_obj(
            &p.metadata,
            serde_json::to_value(&p.spec).unwrap_or_default(),
        );
    }
    for p in snapshot.backend_traffic_policies.values() {
        walk_obj(
            &p.metadata,
            serde_json::to_value(&p.spec).unwrap_or_default(),
        );
    }
    for p in snapshot.backend_tls_policies.values() {
        walk_obj(
            &p.metadata,
            serde_json::to_value(&p.spec).unwrap_or_default(),
        );
    }
    out.extend(crate::ingress::referenced(snapshot));
    out
}

fn walk(v: &Value, key: Option<&str>, ns: &str, out: &mut BTreeSet<ObjectRef>) {
    match v {
        Value::Object(m) => {
            // `certificateRefs` and `clientCertificateRef` default to kind Secret.
            let default_kind =
                matches!(key, Some("certificateRefs" | "clientCertificateRef")).then_some("Secret");
            let kind = m.get("kind").and_then(Value::as_str).or(default_kind);
            let group = m.get("group").and_then(Value::as_str).unwrap_or("");
            let name = m.get("name").and_then(Value::as_str);
            if let (Some(kind @ ("Secret" | "ConfigMap")), "" | "core", Some(name)) =
                (kind, group, name)
            {
                let kind = if kind == "Secret" {
                    Kind::Secret
                } else {
                    Kind::ConfigMap
                };
                let ns = m.get("namespace").and_then(Value::as_str).unwrap_or(ns);
                out.insert(ObjectRef {
                    kind,
                    key: ObjectKey::new(ns, name),
                });
            }
            m.iter().for_each(|(k, c)| walk(c, Some(k), ns, out));
        }
        Value::Array(a) => a.iter().for_each(|c| walk(c, key, ns, out)),
        _ => {}
    }
}
