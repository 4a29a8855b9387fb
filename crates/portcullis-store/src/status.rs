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
    /// An Ingress served directly.
    Ingress(crate::ingress_status::IngressStatus),
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
            Status::Ingress(s) => vec![&s.conditions],
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
            Status::Ingress(s) => vec![&mut s.conditions],
        }
    }
}

/// Every status translation computed, by object.
pub type Statuses = BTreeMap<ObjectRef, Status>;

/// Where a list of conditions sits in an object's status: on the object
/// itself, on one listener (by name), or on one route parent / policy
/// ancestor (by reference, group and kind defaulted). A condition's
/// `lastTransitionTime` belongs to its scope and type: one listener's
/// condition never takes another listener's time.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum ConditionScope {
    /// `status.conditions`.
    Object,
    /// `status.listeners[name].conditions`.
    Listener(String),
    /// `status.parents[parentRef].conditions` or `status.ancestors[ancestorRef].conditions`.
    Parent(ParentRef),
}

impl ParentRef {
    /// The reference with the API's defaults filled in (group
    /// `gateway.networking.k8s.io`, kind `Gateway`), as the API server
    /// stores it: two spellings of one parent compare equal.
    pub fn defaulted(&self) -> ParentRef {
        let mut r = self.clone();
        r.group
            .get_or_insert_with(|| crate::GATEWAY_GROUP.to_string());
        r.kind.get_or_insert_with(|| "Gateway".to_string());
        r
    }
}

impl ParentRef {
    /// Whether `self.defaulted() == other.defaulted()`, without copying.
    pub fn same_defaulted(&self, other: &ParentRef) -> bool {
        self.view().same_defaulted(&other.view())
    }

    /// This reference, borrowed.
    pub fn view(&self) -> ParentRefView<'_> {
        ParentRefView {
            group: self.group.as_deref(),
            kind: self.kind.as_deref(),
            namespace: self.namespace.as_deref(),
            name: &self.name,
            section_name: self.section_name.as_deref(),
            port: self.port,
        }
    }
}

/// A parentRef borrowed from wherever it is spelled: a status's
/// [`ParentRef`], or the `parentRefs` of any of the generated route types
/// (five types with the same fields).
#[derive(Clone, Copy, Debug)]
pub struct ParentRefView<'a> {
    /// Group; `gateway.networking.k8s.io` when absent.
    pub group: Option<&'a str>,
    /// Kind; `Gateway` when absent.
    pub kind: Option<&'a str>,
    /// Namespace; the route's when absent.
    pub namespace: Option<&'a str>,
    /// Name.
    pub name: &'a str,
    /// Listener name.
    pub section_name: Option<&'a str>,
    /// Listener port.
    pub port: Option<i32>,
}

impl ParentRefView<'_> {
    /// Whether both name the same parent once the API's defaults (group,
    /// kind) are filled in.
    pub fn same_defaulted(&self, other: &ParentRefView<'_>) -> bool {
        self.group.unwrap_or(crate::GATEWAY_GROUP) == other.group.unwrap_or(crate::GATEWAY_GROUP)
            && self.kind.unwrap_or("Gateway") == other.kind.unwrap_or("Gateway")
            && self.namespace == other.namespace
            && self.name == other.name
            && self.section_name == other.section_name
            && self.port == other.port
    }

    /// An owned copy.
    pub fn to_owned(&self) -> ParentRef {
        ParentRef {
            group: self.group.map(Into::into),
            kind: self.kind.map(Into::into),
            namespace: self.namespace.map(Into::into),
            name: self.name.into(),
            section_name: self.section_name.map(Into::into),
            port: self.port,
        }
    }
}

impl Status {
    /// Every condition list of this status with its scope.
    pub fn scoped_conditions(&self) -> Vec<(ConditionScope, &Vec<Condition>)> {
        match self {
            Status::GatewayClass(s) => vec![(ConditionScope::Object, &s.conditions)],
            Status::Ingress(s) => vec![(ConditionScope::Object, &s.conditions)],
            Status::Gateway(s) => std::iter::once((ConditionScope::Object, &s.conditions))
                .chain(
                    s.listeners
                        .iter()
                        .map(|l| (ConditionScope::Listener(l.name.clone()), &l.conditions)),
                )
                .collect(),
            Status::Route(s) => s
                .parents
                .iter()
                .map(|p| {
                    (
                        ConditionScope::Parent(p.parent_ref.defaulted()),
                        &p.conditions,
                    )
                })
                .collect(),
            Status::Policy { ancestors } => ancestors
                .iter()
                .map(|a| {
                    (
                        ConditionScope::Parent(a.ancestor_ref.defaulted()),
                        &a.conditions,
                    )
                })
                .collect(),
        }
    }

    /// Every condition list of this status with its scope, mutably.
    pub fn scoped_conditions_mut(&mut self) -> Vec<(ConditionScope, &mut Vec<Condition>)> {
        match self {
            Status::GatewayClass(s) => vec![(ConditionScope::Object, &mut s.conditions)],
            Status::Ingress(s) => vec![(ConditionScope::Object, &mut s.conditions)],
            Status::Gateway(s) => std::iter::once((ConditionScope::Object, &mut s.conditions))
                .chain(
                    s.listeners
                        .iter_mut()
                        .map(|l| (ConditionScope::Listener(l.name.clone()), &mut l.conditions)),
                )
                .collect(),
            Status::Route(s) => s
                .parents
                .iter_mut()
                .map(|p| {
                    (
                        ConditionScope::Parent(p.parent_ref.defaulted()),
                        &mut p.conditions,
                    )
                })
                .collect(),
            Status::Policy { ancestors } => ancestors
                .iter_mut()
                .map(|a| {
                    (
                        ConditionScope::Parent(a.ancestor_ref.defaulted()),
                        &mut a.conditions,
                    )
                })
                .collect(),
        }
    }
}

/// The `lastTransitionTime`s of an earlier version of one object's status,
/// by scope and condition type, with the condition's `status` then.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TransitionTimes(BTreeMap<(ConditionScope, String), (String, String)>);

impl TransitionTimes {
    /// The times of a status computed earlier (standalone mode keeps the last one).
    pub fn of(status: &Status) -> Self {
        let mut m = BTreeMap::new();
        for (scope, conds) in status.scoped_conditions() {
            for c in conds {
                m.insert(
                    (scope.clone(), c.type_.clone()),
                    (c.status.clone(), c.last_transition_time.clone()),
                );
            }
        }
        TransitionTimes(m)
    }

    /// The times of a status as read from the API server (Kubernetes mode):
    /// `conditions`, `listeners[].conditions`, and the entries of
    /// `parents[]` / `ancestors[]` written by `controller` (other
    /// controllers' entries are theirs). Malformed parts are skipped.
    pub fn from_json(status: &serde_json::Value, controller: &str) -> Self {
        use serde_json::Value;
        let mut m = BTreeMap::new();
        let mut add = |scope: ConditionScope, conds: Option<&Value>| {
            for c in conds.and_then(Value::as_array).into_iter().flatten() {
                let field = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or_default();
                if field("type").is_empty() {
                    continue;
                }
                m.insert(
                    (scope.clone(), field("type").to_string()),
                    (
                        field("status").to_string(),
                        field("lastTransitionTime").to_string(),
                    ),
                );
            }
        };
        add(ConditionScope::Object, status.get("conditions"));
        for l in status
            .get("listeners")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            if let Some(name) = l.get("name").and_then(Value::as_str) {
                add(
                    ConditionScope::Listener(name.to_string()),
                    l.get("conditions"),
                );
            }
        }
        for (list, key) in [("parents", "parentRef"), ("ancestors", "ancestorRef")] {
            for e in status
                .get(list)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if e.get("controllerName").and_then(Value::as_str) != Some(controller) {
                    continue;
                }
                let Some(r) = e
                    .get(key)
                    .and_then(|r| serde_json::from_value::<ParentRef>(r.clone()).ok())
                else {
                    continue;
                };
                add(ConditionScope::Parent(r.defaulted()), e.get("conditions"));
            }
        }
        TransitionTimes(m)
    }

    /// Fill every `lastTransitionTime` of `status`: the earlier time of the
    /// same condition type in the same scope when its `status` did not
    /// change, else `now` (RFC 3339).
    pub fn apply(&self, status: &mut Status, now: &str) {
        for (scope, conds) in status.scoped_conditions_mut() {
            for c in conds.iter_mut() {
                let kept = self
                    .0
                    .get(&(scope.clone(), c.type_.clone()))
                    .filter(|(st, t)| *st == c.status && !t.is_empty())
                    .map(|(_, t)| t.clone());
                c.last_transition_time = kept.unwrap_or_else(|| now.to_string());
            }
        }
    }
}

/// Fill each condition's `lastTransitionTime` from the previous statuses
/// ([`TransitionTimes`]): kept when the same condition type in the same scope
/// (the object, a listener, a parentRef or ancestorRef) has the same
/// `status`, else `now` (RFC 3339).
pub fn carry_transition_times(new: &mut Statuses, previous: &Statuses, now: &str) {
    // Both maps are sorted by object: walk them side by side (no lookup per object).
    let mut before = previous.iter().peekable();
    for (obj, status) in new.iter_mut() {
        while before.next_if(|(k, _)| *k < obj).is_some() {}
        let previous = before.next_if(|(k, _)| *k == obj).map(|(_, s)| s);
        if let Some(p) = previous
            && carry_one_scope(status, p, now)
        {
            continue;
        }
        let times = previous.map(TransitionTimes::of).unwrap_or_default();
        times.apply(status, now);
    }
}

/// The common case of [`carry_transition_times`] without building
/// [`TransitionTimes`]: a status with one scope (a route with one parent,
/// a GatewayClass) whose previous version has the same scope and the same
/// condition types, each once, in the same order. Gives what
/// [`TransitionTimes::apply`] gives; `false` (nothing done) otherwise.
fn carry_one_scope(status: &mut Status, previous: &Status, now: &str) -> bool {
    let (conds, prev) = match (status, previous) {
        (Status::Route(n), Status::Route(p)) => match (&mut n.parents[..], &p.parents[..]) {
            ([n], [p]) if n.parent_ref.same_defaulted(&p.parent_ref) => {
                (&mut n.conditions, &p.conditions)
            }
            _ => return false,
        },
        (Status::GatewayClass(n), Status::GatewayClass(p)) => (&mut n.conditions, &p.conditions),
        _ => return false,
    };
    let distinct = |cs: &[Condition]| {
        cs.iter()
            .enumerate()
            .all(|(i, c)| cs[..i].iter().all(|d| d.type_ != c.type_))
    };
    if conds.len() != prev.len()
        || conds.iter().zip(prev).any(|(c, p)| c.type_ != p.type_)
        || !distinct(conds)
    {
        return false;
    }
    for (c, p) in conds.iter_mut().zip(prev) {
        c.last_transition_time = if c.status == p.status && !p.last_transition_time.is_empty() {
            p.last_transition_time.clone()
        } else {
            now.to_string()
        };
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cond(t: &str, ok: bool, time: &str) -> Condition {
        let mut c = Condition::new(t, ok, "R", "m", 1);
        c.last_transition_time = time.into();
        c
    }

    fn listener(name: &str, accepted: bool, time: &str) -> ListenerStatus {
        ListenerStatus {
            name: name.into(),
            supported_kinds: vec![],
            attached_routes: 0,
            conditions: vec![cond("Accepted", accepted, time)],
        }
    }

    fn gateway(listeners: Vec<ListenerStatus>) -> Status {
        Status::Gateway(GatewayStatus {
            conditions: vec![cond("Accepted", true, "")],
            listeners,
            ..Default::default()
        })
    }

    #[test]
    fn a_listener_never_takes_another_listeners_time() {
        let key = ObjectRef {
            kind: crate::Kind::Gateway,
            key: crate::ObjectKey::new("ns", "gw"),
        };
        let previous: Statuses = [(
            key.clone(),
            gateway(vec![
                listener("a", true, "T-a"),
                listener("b", false, "T-b"),
            ]),
        )]
        .into();
        // b became accepted; a did not change.
        let mut new: Statuses = [(
            key.clone(),
            gateway(vec![listener("a", true, ""), listener("b", true, "")]),
        )]
        .into();
        carry_transition_times(&mut new, &previous, "NOW");
        let Status::Gateway(g) = &new[&key] else {
            unreachable!()
        };
        assert_eq!(g.listeners[0].conditions[0].last_transition_time, "T-a");
        assert_eq!(g.listeners[1].conditions[0].last_transition_time, "NOW");
        assert_eq!(g.conditions[0].last_transition_time, "NOW");
    }

    fn parent(name: &str, kind: Option<&str>, accepted: bool, time: &str) -> ParentStatus {
        ParentStatus {
            parent_ref: ParentRef {
                group: None,
                kind: kind.map(str::to_string),
                namespace: None,
                name: name.into(),
                section_name: None,
                port: None,
            },
            controller_name: "me".into(),
            conditions: vec![cond("Accepted", accepted, time)],
        }
    }

    #[test]
    fn a_parent_never_takes_another_parents_time() {
        let previous = Status::Route(RouteStatus {
            parents: vec![
                parent("one", None, true, "T-1"),
                parent("two", None, false, "T-2"),
            ],
        });
        let mut new = Status::Route(RouteStatus {
            // "one" spelled with the default kind: the same parent.
            parents: vec![
                parent("one", Some("Gateway"), true, ""),
                parent("two", None, true, ""),
            ],
        });
        TransitionTimes::of(&previous).apply(&mut new, "NOW");
        let Status::Route(r) = &new else {
            unreachable!()
        };
        assert_eq!(r.parents[0].conditions[0].last_transition_time, "T-1");
        assert_eq!(r.parents[1].conditions[0].last_transition_time, "NOW");
    }

    #[test]
    fn times_read_from_the_api_server_are_ours_only_and_per_scope() {
        let current = serde_json::json!({
            "parents": [
                {"parentRef": {"name": "gw"}, "controllerName": "other",
                 "conditions": [{"type": "Accepted", "status": "True", "lastTransitionTime": "T-other"}]},
                {"parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"},
                 "controllerName": "me",
                 "conditions": [{"type": "Accepted", "status": "True", "lastTransitionTime": "T-mine"}]}
            ]
        });
        let mut new = Status::Route(RouteStatus {
            parents: vec![parent("gw", None, true, "")],
        });
        TransitionTimes::from_json(&current, "me").apply(&mut new, "NOW");
        let Status::Route(r) = &new else {
            unreachable!()
        };
        assert_eq!(r.parents[0].conditions[0].last_transition_time, "T-mine");
    }

    /// Objects only in the new statuses, only in the previous ones, and in
    /// both, interleaved: each object takes its own previous times.
    #[test]
    fn transition_times_are_carried_per_object_across_added_and_removed_ones() {
        let class = |name: &str, time: &str| {
            (
                ObjectRef {
                    kind: crate::Kind::GatewayClass,
                    key: crate::ObjectKey::new("", name),
                },
                Status::GatewayClass(GatewayClassStatus {
                    conditions: vec![cond("Accepted", true, time)],
                    ..Default::default()
                }),
            )
        };
        let previous: Statuses = ["a", "c", "e", "g"]
            .into_iter()
            .map(|n| class(n, &format!("T-{n}")))
            .collect();
        let mut new: Statuses = ["b", "c", "d", "e", "f"]
            .into_iter()
            .map(|n| class(n, ""))
            .collect();
        carry_transition_times(&mut new, &previous, "NOW");
        let times: Vec<(String, String)> = new
            .iter()
            .map(|(o, s)| {
                let Status::GatewayClass(c) = s else {
                    unreachable!()
                };
                (
                    o.key.name.clone(),
                    c.conditions[0].last_transition_time.clone(),
                )
            })
            .collect();
        let want = [
            ("b", "NOW"),
            ("c", "T-c"),
            ("d", "NOW"),
            ("e", "T-e"),
            ("f", "NOW"),
        ];
        assert_eq!(
            times,
            want.map(|(n, t)| (n.to_string(), t.to_string())).to_vec()
        );
    }

    /// The one-scope fast path of `carry_transition_times` gives what the
    /// general rule (`TransitionTimes`) gives, over route statuses with
    /// one or two parents, spelled with or without defaults, conditions in
    /// either order, some repeated, statuses flipped.
    #[test]
    fn the_fast_path_gives_what_transition_times_give() {
        let parent = |kind: Option<&str>, name: &str| ParentRef {
            group: None,
            kind: kind.map(Into::into),
            namespace: None,
            name: name.into(),
            section_name: None,
            port: None,
        };
        let route = |parents: Vec<(ParentRef, Vec<Condition>)>| {
            Status::Route(RouteStatus {
                parents: parents
                    .into_iter()
                    .map(|(parent_ref, conditions)| ParentStatus {
                        parent_ref,
                        controller_name: "c".into(),
                        conditions,
                    })
                    .collect(),
            })
        };
        let lists = [
            vec![
                cond("Accepted", true, "T1"),
                cond("ResolvedRefs", true, "T2"),
            ],
            vec![
                cond("Accepted", false, "T3"),
                cond("ResolvedRefs", true, ""),
            ],
            vec![
                cond("ResolvedRefs", true, "T4"),
                cond("Accepted", true, "T5"),
            ],
            vec![cond("Accepted", true, "T6"), cond("Accepted", false, "T7")],
            vec![cond("Accepted", true, "T8")],
        ];
        let parents = [
            parent(None, "gw"),
            parent(Some("Gateway"), "gw"),
            parent(None, "other"),
        ];
        let key = ObjectRef {
            kind: crate::Kind::HTTPRoute,
            key: crate::ObjectKey::new("ns", "r"),
        };
        let mut shapes = vec![];
        for p in &parents {
            for l in &lists {
                shapes.push(route(vec![(p.clone(), l.clone())]));
            }
        }
        shapes.push(route(vec![
            (parents[0].clone(), lists[0].clone()),
            (parents[2].clone(), lists[1].clone()),
        ]));
        for old in &shapes {
            for new in &shapes {
                let previous: Statuses = [(key.clone(), old.clone())].into();
                let mut fast: Statuses = [(key.clone(), new.clone())].into();
                carry_transition_times(&mut fast, &previous, "NOW");
                let mut general = new.clone();
                TransitionTimes::of(old).apply(&mut general, "NOW");
                assert_eq!(fast[&key], general, "{old:?} -> {new:?}");
            }
        }
    }
}
