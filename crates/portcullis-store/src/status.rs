//! Status shapes, exactly as the Gateway API serialises them.
//!
//! Translation produces these; sources write them back (the admin API and CLI
//! in file mode, the status subresource in Kubernetes mode).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ObjectRef;

/// `metav1.Condition`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Condition type, e.g. `Accepted`.
    #[serde(rename = "type")]
    pub type_: String,
    /// `True`, `False` or `Unknown`.
    pub status: String,
    /// Machine-readable reason.
    pub reason: String,
    /// Human-readable message.
    pub message: String,
    /// The `metadata.generation` this condition was computed from.
    pub observed_generation: i64,
    /// RFC 3339 time of the last change of `status`.
    pub last_transition_time: String,
}

impl Condition {
    /// A condition with the given fields; the transition time is filled in by [`carry_transition_times`].
    pub fn new(
        type_: &str,
        ok: bool,
        reason: &str,
        message: impl Into<String>,
        generation: i64,
    ) -> Self {
        Condition {
            type_: type_.to_string(),
            status: if ok { "True" } else { "False" }.to_string(),
            reason: reason.to_string(),
            message: message.into(),
            observed_generation: generation,
            last_transition_time: String::new(),
        }
    }
    /// Whether `status` is `True`.
    pub fn is_true(&self) -> bool {
        self.status == "True"
    }
}

/// `GatewayClassStatus`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct GatewayClassStatus {
    /// Conditions.
    pub conditions: Vec<Condition>,
    /// Features this implementation supports, by name.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub supported_features: Vec<SupportedFeature>,
}

/// One entry of `supportedFeatures`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupportedFeature {
    /// Feature name, e.g. `HTTPRouteQueryParamMatching`.
    pub name: String,
}

/// `GatewayStatusAddress`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Address {
    /// `IPAddress` or `Hostname`.
    #[serde(rename = "type")]
    pub type_: String,
    /// The address.
    pub value: String,
}

/// `RouteGroupKind`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct GroupKind {
    /// API group.
    pub group: String,
    /// Kind.
    pub kind: String,
}

/// `ListenerStatus` (Gateway and ListenerSet).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ListenerStatus {
    /// Listener name.
    pub name: String,
    /// Route kinds this listener accepts.
    pub supported_kinds: Vec<GroupKind>,
    /// Routes successfully attached.
    pub attached_routes: i32,
    /// Conditions.
    pub conditions: Vec<Condition>,
}

/// `GatewayStatus` (also used for ListenerSet, which has no addresses).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub struct GatewayStatus {
    /// Addresses the Gateway is reachable at.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<Address>,
    /// Conditions.
    pub conditions: Vec<Condition>,
    /// Per-listener status.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub listeners: Vec<ListenerStatus>,
    /// ListenerSets attached to this Gateway (Gateways that allow ListenerSets only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attached_listener_sets: Option<i32>,
}

/// `ParentReference` as reported in a route status.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentRef {
    /// Group of the parent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Kind of the parent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// Namespace of the parent, when given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace: Option<String>,
    /// Name of the parent.
    pub name: String,
    /// Section (listener) name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section_name: Option<String>,
    /// Port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<i32>,
}

/// `RouteParentStatus`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ParentStatus {
    /// The parent this entry is about.
    pub parent_ref: ParentRef,
    /// The controller that wrote this entry.
    pub controller_name: String,
    /// Conditions.
    pub conditions: Vec<Condition>,
}

/// `PolicyAncestorStatus`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AncestorStatus {
    /// The ancestor (a Gateway) this entry is about.
    pub ancestor_ref: ParentRef,
    /// The controller that wrote this entry.
    pub controller_name: String,
    /// Conditions.
    pub conditions: Vec<Condition>,
}

/// Route status (`parents`) or policy status (`ancestors`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct RouteStatus {
    /// One entry per parentRef this controller handles.
    pub parents: Vec<ParentStatus>,
}

/// The status of one object.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Status {
    /// GatewayClass.
    GatewayClass(GatewayClassStatus),
    /// Gateway or ListenerSet.
    Gateway(GatewayStatus),
    /// Any route kind.
    Route(RouteStatus),
    /// A policy (BackendTLSPolicy): `ancestors` entries.
    Policy {
        /// Ancestor entries.
        ancestors: Vec<AncestorStatus>,
    },
}

impl Status {
    /// Every condition in this status.
    pub fn conditions(&self) -> Vec<&Vec<Condition>> {
        match self {
            Status::GatewayClass(s) => vec![&s.conditions],
            Status::Gateway(s) => {
                let mut v = vec![&s.conditions];
                v.extend(s.listeners.iter().map(|l| &l.conditions));
                v
            }
            Status::Route(s) => s.parents.iter().map(|p| &p.conditions).collect(),
            Status::Policy { ancestors } => ancestors.iter().map(|p| &p.conditions).collect(),
        }
    }

    /// Every condition in this status, mutably (for bookkeeping such as transition times).
    pub fn conditions_mut(&mut self) -> Vec<&mut Vec<Condition>> {
        match self {
            Status::GatewayClass(s) => vec![&mut s.conditions],
            Status::Gateway(s) => {
                let mut v = vec![&mut s.conditions];
                v.extend(s.listeners.iter_mut().map(|l| &mut l.conditions));
                v
            }
            Status::Route(s) => s.parents.iter_mut().map(|p| &mut p.conditions).collect(),
            Status::Policy { ancestors } => {
                ancestors.iter_mut().map(|p| &mut p.conditions).collect()
            }
        }
    }
}

/// Every status translation computed, by object.
pub type Statuses = BTreeMap<ObjectRef, Status>;

/// Fill each condition's `lastTransitionTime`: keep the previous time when the
/// condition's `status` did not change, else use `now` (RFC 3339).
pub fn carry_transition_times(new: &mut Statuses, previous: &Statuses, now: &str) {
    for (obj, status) in new.iter_mut() {
        let prev = previous
            .get(obj)
            .map(Status::conditions)
            .unwrap_or_default();
        for conds in status.conditions_mut() {
            for c in conds.iter_mut() {
                let old = prev
                    .iter()
                    .flat_map(|cs| cs.iter())
                    .find(|p| p.type_ == c.type_ && p.status == c.status);
                c.last_transition_time = match old {
                    Some(p) if !p.last_transition_time.is_empty() => p.last_transition_time.clone(),
                    _ => now.to_string(),
                };
            }
        }
    }
}
