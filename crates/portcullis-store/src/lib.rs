//! The typed snapshot of every resource Portcullis reads.
//!
//! A [`Snapshot`] is an immutable, fully-defaulted and validated view of the
//! world, produced by a source (files or Kubernetes) and consumed by the pure
//! translation step. Objects are held in `BTreeMap`s keyed by [`ObjectKey`] so
//! iteration order is deterministic, which keeps translation output stable.
#![deny(missing_docs)]

pub mod client;
pub mod ingress_status;
pub mod policy;
pub mod status;
pub mod traffic;

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Re-exports of the resource types, so that every layer names them the same way.
pub mod types {
    pub use gateway_api::apis::standard::backendtlspolicies::*;
    pub use gateway_api::experimental::gatewayclasses::*;
    pub use gateway_api::experimental::gateways::*;
    pub use gateway_api::experimental::grpcroutes::*;
    pub use gateway_api::experimental::httproutes::*;
    pub use gateway_api::experimental::listenersets::*;
    pub use gateway_api::experimental::referencegrants::*;
    pub use gateway_api::experimental::tcproutes::*;
    pub use gateway_api::experimental::tlsroutes::*;
    pub use gateway_api::experimental::udproutes::*;
    pub use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Secret, Service, ServicePort};
    pub use k8s_openapi::api::discovery::v1::EndpointSlice;
    pub use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
    pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    /// HTTPRoute, named as its `kind`.
    pub type HTTPRoute = HttpRoute;
    /// GRPCRoute, named as its `kind`.
    pub type GRPCRoute = GrpcRoute;
    /// TLSRoute, named as its `kind`.
    pub type TLSRoute = TlsRoute;
    /// TCPRoute, named as its `kind`.
    pub type TCPRoute = TcpRoute;
    /// UDPRoute, named as its `kind`.
    pub type UDPRoute = UdpRoute;
    /// BackendTLSPolicy, named as its `kind`.
    pub type BackendTLSPolicy = BackendTlsPolicy;
    pub use crate::client::ClientTrafficPolicy;
    pub use crate::policy::SecurityPolicy;
    pub use crate::traffic::BackendTrafficPolicy;
}

/// The API group of the Gateway API.
pub const GATEWAY_GROUP: &str = "gateway.networking.k8s.io";

/// The API group of Ingress and IngressClass.
pub const NETWORKING_GROUP: &str = "networking.k8s.io";

/// `namespace/name` of an object. Cluster-scoped objects have an empty namespace.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, Default)]
pub struct ObjectKey {
    /// Namespace, empty for cluster-scoped objects.
    pub namespace: String,
    /// Object name.
    pub name: String,
}

impl ObjectKey {
    /// A namespaced key.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
    /// A cluster-scoped key.
    pub fn cluster(name: impl Into<String>) -> Self {
        Self {
            namespace: String::new(),
            name: name.into(),
        }
    }
    /// The key of an object from its metadata.
    pub fn of(meta: &types::ObjectMeta) -> Self {
        Self {
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
        }
    }
}

impl fmt::Display for ObjectKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

/// Every kind a source can deliver.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Kind {
    /// gateway.networking.k8s.io GatewayClass
    GatewayClass,
    /// gateway.networking.k8s.io Gateway
    Gateway,
    /// gateway.networking.k8s.io ListenerSet
    ListenerSet,
    /// gateway.networking.k8s.io HTTPRoute
    HTTPRoute,
    /// gateway.networking.k8s.io GRPCRoute
    GRPCRoute,
    /// gateway.networking.k8s.io TLSRoute
    TLSRoute,
    /// gateway.networking.k8s.io TCPRoute
    TCPRoute,
    /// gateway.networking.k8s.io UDPRoute
    UDPRoute,
    /// gateway.networking.k8s.io ReferenceGrant
    ReferenceGrant,
    /// gateway.networking.k8s.io BackendTLSPolicy
    BackendTLSPolicy,
    /// portcullis.dev SecurityPolicy
    SecurityPolicy,
    /// portcullis.dev BackendTrafficPolicy
    BackendTrafficPolicy,
    /// portcullis.dev ClientTrafficPolicy
    ClientTrafficPolicy,
    /// core Service
    Service,
    /// discovery.k8s.io EndpointSlice
    EndpointSlice,
    /// core Secret
    Secret,
    /// core ConfigMap
    ConfigMap,
    /// core Namespace
    Namespace,
    /// networking.k8s.io Ingress
    Ingress,
    /// networking.k8s.io IngressClass
    IngressClass,
}

/// How Kubernetes mode watches a kind ([`Kind::watched_in_cluster`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Watch {
    /// Whole objects, cached.
    Full,
    /// Metadata only (resourceVersion), so that data (keys, certificates)
    /// is read only for the objects a route or listener references.
    Metadata,
    /// Not watched.
    No,
}

impl Kind {
    /// Every kind, in a stable order: the one list of kinds; every other
    /// list (what Kubernetes mode discovers and watches, what has a status)
    /// is derived from it and the kind's properties below.
    pub const ALL: [Kind; 20] = [
        Kind::GatewayClass,
        Kind::Gateway,
        Kind::ListenerSet,
        Kind::HTTPRoute,
        Kind::GRPCRoute,
        Kind::TLSRoute,
        Kind::TCPRoute,
        Kind::UDPRoute,
        Kind::ReferenceGrant,
        Kind::BackendTLSPolicy,
        Kind::SecurityPolicy,
        Kind::BackendTrafficPolicy,
        Kind::ClientTrafficPolicy,
        Kind::Service,
        Kind::EndpointSlice,
        Kind::Secret,
        Kind::ConfigMap,
        Kind::Namespace,
        Kind::Ingress,
        Kind::IngressClass,
    ];

    /// The kind's name as written in `kind:`.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::GatewayClass => "GatewayClass",
            Kind::Gateway => "Gateway",
            Kind::ListenerSet => "ListenerSet",
            Kind::HTTPRoute => "HTTPRoute",
            Kind::GRPCRoute => "GRPCRoute",
            Kind::TLSRoute => "TLSRoute",
            Kind::TCPRoute => "TCPRoute",
            Kind::UDPRoute => "UDPRoute",
            Kind::ReferenceGrant => "ReferenceGrant",
            Kind::BackendTLSPolicy => "BackendTLSPolicy",
            Kind::SecurityPolicy => "SecurityPolicy",
            Kind::BackendTrafficPolicy => "BackendTrafficPolicy",
            Kind::ClientTrafficPolicy => "ClientTrafficPolicy",
            Kind::Service => "Service",
            Kind::EndpointSlice => "EndpointSlice",
            Kind::Secret => "Secret",
            Kind::ConfigMap => "ConfigMap",
            Kind::Namespace => "Namespace",
            Kind::Ingress => "Ingress",
            Kind::IngressClass => "IngressClass",
        }
    }

    /// The API group (empty for the core group).
    pub fn group(self) -> &'static str {
        match self {
            Kind::Service | Kind::Secret | Kind::ConfigMap | Kind::Namespace => "",
            Kind::EndpointSlice => "discovery.k8s.io",
            Kind::Ingress | Kind::IngressClass => NETWORKING_GROUP,
            Kind::SecurityPolicy | Kind::BackendTrafficPolicy | Kind::ClientTrafficPolicy => {
                policy::PORTCULLIS_GROUP
            }
            _ => GATEWAY_GROUP,
        }
    }

    /// The `apiVersion` Portcullis reports for this kind.
    pub fn api_version(self) -> &'static str {
        match self {
            Kind::Service | Kind::Secret | Kind::ConfigMap | Kind::Namespace => "v1",
            Kind::EndpointSlice => "discovery.k8s.io/v1",
            Kind::Ingress | Kind::IngressClass => "networking.k8s.io/v1",
            Kind::TCPRoute | Kind::UDPRoute => "gateway.networking.k8s.io/v1alpha2",
            Kind::SecurityPolicy | Kind::BackendTrafficPolicy | Kind::ClientTrafficPolicy => {
                policy::PORTCULLIS_API_VERSION
            }
            _ => "gateway.networking.k8s.io/v1",
        }
    }

    /// Whether objects of this kind live in a namespace.
    pub fn namespaced(self) -> bool {
        !matches!(
            self,
            Kind::GatewayClass | Kind::Namespace | Kind::IngressClass
        )
    }

    /// Whether this is a Gateway API kind (and so has a status Portcullis writes).
    pub fn is_gateway_api(self) -> bool {
        self.group() == GATEWAY_GROUP
    }

    /// Whether this is one of Portcullis' own kinds (group `portcullis.dev`).
    pub fn is_portcullis(self) -> bool {
        self.group() == policy::PORTCULLIS_GROUP
    }

    /// Whether Portcullis writes a status for objects of this kind (an
    /// Ingress served directly has one too: `loadBalancer` and what was not
    /// honoured).
    pub fn has_status(self) -> bool {
        (self.is_gateway_api() && self != Kind::ReferenceGrant)
            || self.is_portcullis()
            || self == Kind::Ingress
    }

    /// How Kubernetes mode watches this kind.
    pub fn watched_in_cluster(self) -> Watch {
        match self {
            Kind::Secret | Kind::ConfigMap => Watch::Metadata,
            _ => Watch::Full,
        }
    }

    /// Parse `kind:` for a group; `None` for kinds Portcullis does not read.
    pub fn parse(group: &str, kind: &str) -> Option<Kind> {
        Kind::ALL
            .into_iter()
            .find(|k| k.group() == group && k.as_str() == kind)
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A typed object of any kind a source can deliver.
#[derive(Clone, Debug, PartialEq)]
#[allow(missing_docs)]
#[allow(clippy::large_enum_variant)] // objects are moved once into the snapshot's Arcs
pub enum Object {
    GatewayClass(types::GatewayClass),
    Gateway(types::Gateway),
    ListenerSet(types::ListenerSet),
    HTTPRoute(types::HTTPRoute),
    GRPCRoute(types::GRPCRoute),
    TLSRoute(types::TLSRoute),
    TCPRoute(types::TCPRoute),
    UDPRoute(types::UDPRoute),
    ReferenceGrant(types::ReferenceGrant),
    BackendTLSPolicy(types::BackendTLSPolicy),
    SecurityPolicy(types::SecurityPolicy),
    BackendTrafficPolicy(types::BackendTrafficPolicy),
    ClientTrafficPolicy(types::ClientTrafficPolicy),
    Service(types::Service),
    EndpointSlice(types::EndpointSlice),
    Secret(types::Secret),
    ConfigMap(types::ConfigMap),
    Namespace(types::Namespace),
    Ingress(types::Ingress),
    IngressClass(types::IngressClass),
}

macro_rules! for_each_kind {
    ($m:ident) => {
        $m! {
            GatewayClass gateway_classes,
            Gateway gateways,
            ListenerSet listener_sets,
            HTTPRoute http_routes,
            GRPCRoute grpc_routes,
            TLSRoute tls_routes,
            TCPRoute tcp_routes,
            UDPRoute udp_routes,
            ReferenceGrant reference_grants,
            BackendTLSPolicy backend_tls_policies,
            SecurityPolicy security_policies,
            BackendTrafficPolicy backend_traffic_policies,
            ClientTrafficPolicy client_traffic_policies,
            Service services,
            EndpointSlice endpoint_slices,
            Secret secrets,
            ConfigMap config_maps,
            Namespace namespaces,
            Ingress ingresses,
            IngressClass ingress_classes
        }
    };
}

macro_rules! object_impl {
    ($($k:ident $f:ident),*) => {
        impl Object {
            /// The object's kind.
            pub fn kind(&self) -> Kind {
                match self { $(Object::$k(_) => Kind::$k,)* }
            }
            /// The object's metadata.
            pub fn meta(&self) -> &types::ObjectMeta {
                match self { $(Object::$k(o) => &o.metadata,)* }
            }
            /// The object's metadata, mutably.
            pub fn meta_mut(&mut self) -> &mut types::ObjectMeta {
                match self { $(Object::$k(o) => &mut o.metadata,)* }
            }
            /// Decode a defaulted, validated JSON object of a known kind.
            pub fn from_json(kind: Kind, value: serde_json::Value) -> Result<Object, serde_json::Error> {
                Ok(match kind { $(Kind::$k => Object::$k(serde_json::from_value(value)?),)* })
            }
            /// Encode the object back to JSON.
            pub fn to_json(&self) -> serde_json::Value {
                match self { $(Object::$k(o) => serde_json::to_value(o).unwrap_or_default(),)* }
            }
        }

        /// An immutable view of every object, by kind and key.
        #[derive(Clone, Debug, Default, PartialEq)]
        pub struct Snapshot {
            $(
                #[doc = concat!("Every ", stringify!($k), " by key.")]
                pub $f: BTreeMap<ObjectKey, Arc<types::$k>>,
            )*
        }

        impl Snapshot {
            /// Insert (or replace) an object.
            pub fn insert(&mut self, object: Object) {
                let key = ObjectKey::of(object.meta());
                match object { $(Object::$k(o) => { self.$f.insert(key, Arc::new(o)); })* }
            }
            /// Remove an object.
            pub fn remove(&mut self, kind: Kind, key: &ObjectKey) -> bool {
                match kind { $(Kind::$k => self.$f.remove(key).is_some(),)* }
            }
            /// Look an object up.
            pub fn get(&self, kind: Kind, key: &ObjectKey) -> Option<Object> {
                match kind { $(Kind::$k => self.$f.get(key).map(|o| Object::$k((**o).clone())),)* }
            }
            /// Take `from`'s `Arc` of object `kind`/`key` when it is equal to
            /// this snapshot's, so that an object rebuilt unchanged keeps its
            /// identity (translation's memo is keyed by it).
            pub fn share_equal(&mut self, from: &Snapshot, kind: Kind, key: &ObjectKey) {
                match kind { $(Kind::$k => {
                    if let (Some(a), Some(b)) = (self.$f.get_mut(key), from.$f.get(key))
                        && **a == **b
                    {
                        *a = b.clone();
                    }
                })* }
            }
            /// Number of objects of every kind.
            pub fn len(&self) -> usize {
                0 $(+ self.$f.len())*
            }
            /// Whether the snapshot holds nothing.
            pub fn is_empty(&self) -> bool {
                self.len() == 0
            }
            /// Metadata of every object, with its kind, in a stable order.
            pub fn metas(&self) -> Vec<(Kind, &types::ObjectMeta)> {
                let mut out = Vec::with_capacity(self.len());
                $( out.extend(self.$f.values().map(|o| (Kind::$k, &o.metadata))); )*
                out
            }
        }
    };
}
for_each_kind!(object_impl);

/// A reference to an object of some kind, used to key statuses.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ObjectRef {
    /// The kind.
    pub kind: Kind,
    /// Namespace and name.
    pub key: ObjectKey,
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind, self.key)
    }
}
