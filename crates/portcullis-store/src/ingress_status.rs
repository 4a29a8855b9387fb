//! The status of an Ingress served directly.
//!
//! `loadBalancer` is Kubernetes' own `IngressStatus` shape. `conditions` and
//! `annotations` are Portcullis' (an Ingress has no conditions in
//! Kubernetes; in standalone mode the admin API and `portcullis status` show
//! them, so what is not honoured is never silent).

use serde::{Deserialize, Serialize};

use crate::status::Condition;

/// The status of an Ingress served by Portcullis.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct IngressStatus {
    /// `status.loadBalancer`: where the Ingress is served.
    pub load_balancer: LoadBalancer,
    /// `Accepted` (served, or why not), `PartiallyInvalid` (annotations or
    /// paths not honoured), `Conflicted` (hosts a Gateway API listener takes).
    pub conditions: Vec<Condition>,
    /// How each annotation fared, sorted by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub annotations: Vec<AnnotationStatus>,
}

/// `IngressLoadBalancerStatus`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct LoadBalancer {
    /// One entry per address.
    #[serde(default)]
    pub ingress: Vec<LoadBalancerIngress>,
}

/// `IngressLoadBalancerIngress`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct LoadBalancerIngress {
    /// The IP address.
    pub ip: String,
    /// The ports served there.
    #[serde(default)]
    pub ports: Vec<PortStatus>,
}

/// `IngressPortStatus`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct PortStatus {
    /// The port number.
    pub port: u16,
    /// `TCP`.
    pub protocol: String,
}

/// How one annotation of a served Ingress fared.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AnnotationStatus {
    /// The annotation's name.
    pub name: String,
    /// `converted`, `differs`, `unsupported` or `unknown`.
    pub outcome: String,
    /// What it became, or why not.
    pub result: String,
    /// The difference from ingress-nginx, when there is one.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub difference: String,
}
