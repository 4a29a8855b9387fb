//! Typed views of the generated Gateway API objects: only the fields
//! translation reads, with one shape per concept (the generated types repeat
//! each shape per kind and per place: `HttpRouteRulesFilters` and
//! `HttpRouteRulesBackendRefsFilters` are one filter).
//!
//! Views are built from the typed objects field by field, never through a
//! serialised document, so a view cannot silently fail to build: the source
//! has already defaulted and validated every object against its CRD schema,
//! and the conversions below are total. Conversions of the per-kind copies of
//! one shape are written once, as macros over the field names the copies
//! share; enum values keep their API spelling ([`names::variant`]).

mod gateway;
mod names;
mod route;

use std::collections::BTreeMap;

use portcullis_store::types::ObjectMeta;

pub(crate) use gateway::*;
pub(crate) use names::variant;
pub(crate) use route::*;

/// An optional API string, from a generated field that is either `String`
/// (defaulted by the CRD) or `Option<String>`.
pub(crate) trait OptString {
    fn opt(&self) -> Option<String>;
}

impl OptString for String {
    fn opt(&self) -> Option<String> {
        Some(self.clone())
    }
}

impl OptString for Option<String> {
    fn opt(&self) -> Option<String> {
        self.clone()
    }
}

#[derive(Clone, Debug, Default)]
pub(crate) struct Meta {
    pub name: String,
    pub namespace: String,
    pub generation: i64,
    pub creation_timestamp: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
}

impl Meta {
    /// Precedence between objects of one kind (GEP-713 conflict resolution):
    /// oldest `creationTimestamp` first, then `namespace/name`.
    /// Compare by [`Meta::age_key`] without allocating.
    pub fn age_cmp(&self, other: &Meta) -> std::cmp::Ordering {
        fn key(m: &Meta) -> (&str, &str, &str) {
            (
                m.creation_timestamp.as_deref().unwrap_or_default(),
                m.namespace.as_str(),
                m.name.as_str(),
            )
        }
        key(self).cmp(&key(other))
    }

    /// [`Meta::age_cmp`]'s key, owned.
    pub fn age_key(&self) -> (String, String, String) {
        (
            self.creation_timestamp.clone().unwrap_or_default(),
            self.namespace.clone(),
            self.name.clone(),
        )
    }
}

/// Labels of a namespace, plus the `kubernetes.io/metadata.name` label the API server adds.
pub(crate) fn namespace_labels(
    snapshot: &portcullis_store::Snapshot,
    ns: &str,
) -> BTreeMap<String, String> {
    let mut labels = snapshot
        .namespaces
        .get(&portcullis_store::ObjectKey::cluster(ns))
        .and_then(|n| n.metadata.labels.clone())
        .unwrap_or_default();
    labels.insert("kubernetes.io/metadata.name".into(), ns.to_string());
    labels
}

#[derive(Clone, Debug)]
pub(crate) struct Obj<S> {
    pub metadata: Meta,
    pub spec: S,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct LabelSelector {
    pub match_labels: BTreeMap<String, String>,
    pub match_expressions: Vec<LabelExpr>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct LabelExpr {
    pub key: String,
    pub operator: String,
    pub values: Vec<String>,
}

impl LabelSelector {
    /// Kubernetes label-selector semantics.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.match_expressions.iter().all(|e| {
                let val = labels.get(&e.key);
                match e.operator.as_str() {
                    "In" => val.is_some_and(|v| e.values.contains(v)),
                    "NotIn" => val.is_none_or(|v| !e.values.contains(v)),
                    "Exists" => val.is_some(),
                    "DoesNotExist" => val.is_none(),
                    _ => false,
                }
            })
    }
}

/// A reference to an object (certificateRefs, caCertificateRefs, clientCertificateRef,
/// extensionRef, a ListenerSet's parentRef).
#[derive(Clone, Debug, Default)]
pub(crate) struct ObjectRef {
    pub group: Option<String>,
    pub kind: Option<String>,
    pub name: String,
    pub namespace: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ParentRefSpec {
    pub group: Option<String>,
    pub kind: Option<String>,
    pub namespace: Option<String>,
    pub name: String,
    pub section_name: Option<String>,
    pub port: Option<i32>,
}

#[derive(Clone, Debug, Default)]
pub(crate) struct BackendRefSpec {
    pub group: Option<String>,
    pub kind: Option<String>,
    pub name: String,
    pub namespace: Option<String>,
    pub port: Option<i32>,
    pub weight: Option<i32>,
    /// `filters` of an HTTPRoute or GRPCRoute backendRef.
    pub filters: Vec<FilterSpec>,
}

impl From<&ObjectMeta> for Meta {
    fn from(m: &ObjectMeta) -> Self {
        Meta {
            name: m.name.clone().unwrap_or_default(),
            namespace: m.namespace.clone().unwrap_or_default(),
            generation: m.generation.unwrap_or_default(),
            // The API's own spelling (RFC 3339, seconds, UTC), so that ages
            // compare as strings and read as in `kubectl get -o yaml`.
            creation_timestamp: m
                .creation_timestamp
                .as_ref()
                .map(|t| t.0.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()),
            labels: m.labels.clone().unwrap_or_default(),
            annotations: m.annotations.clone().unwrap_or_default(),
        }
    }
}

impl Meta {
    /// The metadata of the object stored under `key` (the key's namespace
    /// and name are authoritative).
    pub(crate) fn keyed(m: &ObjectMeta, key: &portcullis_store::ObjectKey) -> Meta {
        Meta {
            name: key.name.clone(),
            namespace: key.namespace.clone(),
            ..Meta::from(m)
        }
    }
}

impl<S> Obj<S> {
    /// The view of a generated object (`metadata` and `spec`) whose spec
    /// converts to `S`.
    pub(crate) fn of<'a, P: 'a>(metadata: &ObjectMeta, spec: &'a P) -> Obj<S>
    where
        S: From<&'a P>,
    {
        Obj {
            metadata: Meta::from(metadata),
            spec: S::from(spec),
        }
    }
}

/// A `LabelSelector` of any generated shape (`matchLabels`, `matchExpressions`).
macro_rules! label_selector {
    ($s:expr) => {{
        let s = $s;
        $crate::model::LabelSelector {
            match_labels: s.match_labels.clone().unwrap_or_default(),
            match_expressions: s
                .match_expressions
                .iter()
                .flatten()
                .map(|e| $crate::model::LabelExpr {
                    key: e.key.clone(),
                    operator: e.operator.clone(),
                    values: e.values.clone().unwrap_or_default(),
                })
                .collect(),
        }
    }};
}
pub(crate) use label_selector;

/// An [`ObjectRef`] from any generated reference with `name` and optional
/// `group`/`kind`/`namespace` (each either `String` or `Option<String>`).
macro_rules! object_ref {
    ($r:expr) => {{
        use $crate::model::OptString as _;
        let r = $r;
        $crate::model::ObjectRef {
            group: r.group.opt(),
            kind: r.kind.opt(),
            name: r.name.clone(),
            namespace: r.namespace.opt(),
        }
    }};
    ($r:expr, no_namespace) => {{
        use $crate::model::OptString as _;
        let r = $r;
        $crate::model::ObjectRef {
            group: r.group.opt(),
            kind: r.kind.opt(),
            name: r.name.clone(),
            namespace: None,
        }
    }};
}
pub(crate) use object_ref;

/// A [`ParentRefSpec`] from any route kind's generated `parentRefs` item.
macro_rules! parent_ref {
    ($p:expr) => {{
        let p = $p;
        $crate::model::ParentRefSpec {
            group: p.group.clone(),
            kind: p.kind.clone(),
            namespace: p.namespace.clone(),
            name: p.name.clone(),
            section_name: p.section_name.clone(),
            port: p.port,
        }
    }};
}
pub(crate) use parent_ref;

/// A [`BackendRefSpec`] (without filters) from any generated backend reference.
macro_rules! backend_ref {
    ($b:expr, $weight:expr) => {{
        let b = $b;
        $crate::model::BackendRefSpec {
            group: b.group.clone(),
            kind: b.kind.clone(),
            name: b.name.clone(),
            namespace: b.namespace.clone(),
            port: b.port,
            weight: $weight,
            filters: vec![],
        }
    }};
}
pub(crate) use backend_ref;
