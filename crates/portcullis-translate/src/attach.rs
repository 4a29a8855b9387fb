//! GEP-713 policy attachment, generic over Portcullis' policy kinds
//! (SecurityPolicy, BackendTrafficPolicy and ClientTrafficPolicy).
//!
//! - **Targets** (`spec.targetRefs`, and the deprecated singular `targetRef`): a
//!   Gateway, one of its listeners (`sectionName`), an HTTPRoute, GRPCRoute or
//!   TCPRoute (the kinds a policy's CRD allows), or
//!   one named rule of a route (`sectionName` = `spec.rules[].name`), all in the
//!   policy's namespace. A target that does not exist (or a section it does not
//!   have) is `Accepted=False/TargetNotFound`.
//! - **Precedence** is the [`Precedence`] key, smaller wins: the more specific
//!   scope first (route rule > route > listener > Gateway), then the oldest
//!   policy (`creationTimestamp`, then `namespace/name`). Each route rule served
//!   on a listener takes the policy with the smallest key among those whose
//!   scope contains it; only that one applies (no merging).
//! - **Conflicts**: two policies on the same scope: the older applies there and
//!   the other is `Accepted=False/Conflicted` (for that ancestor).
//! - **Overridden**: a policy whose scope holds a route rule won by a more
//!   specific policy gets `Overridden=True` on that ancestor (it still applies
//!   to the rest of its scope).
//! - **Ancestors** (`status.ancestors[]`): the Gateway for Gateway and listener
//!   targets (`sectionName` set for a listener), the parent Gateways of our
//!   classes for route targets; the target itself when it cannot be found.
//!   Policies whose targets lead to no Gateway of ours get no status.

use std::collections::{BTreeMap, BTreeSet};

use portcullis_ir as ir;
use portcullis_store::policy::PolicyTargetRef;
use portcullis_store::status::{AncestorStatus, ParentRef};
use portcullis_store::{GATEWAY_GROUP, ObjectKey};

use crate::Input;
use crate::conditions::{ACCEPTED, Problem};
use crate::conditions::{Reason, condition};
use crate::gateway::{GatewayState, Owner};
use crate::model::{RouteHead, Rules};

/// Condition type set on an ancestor where a more specific policy wins.
pub(crate) const OVERRIDDEN: &str = "Overridden";

/// What a target names, resolved to our objects.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Scope {
    /// One named rule of a route: `(kind, route, rule name)`.
    RouteRule(&'static str, ObjectKey, String),
    /// A whole route.
    Route(&'static str, ObjectKey),
    /// One listener of a Gateway.
    Listener(ObjectKey, String),
    /// A whole Gateway.
    Gateway(ObjectKey),
}

impl Scope {
    /// How specific: smaller is more specific.
    pub(crate) fn specificity(&self) -> u8 {
        match self {
            Scope::RouteRule(..) => 0,
            Scope::Route(..) => 1,
            Scope::Listener(..) => 2,
            Scope::Gateway(..) => 3,
        }
    }
}

/// The precedence key of a policy on a scope: smaller wins.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Precedence {
    /// [`Scope::specificity`].
    pub specificity: u8,
    /// `creationTimestamp` (RFC 3339 sorts chronologically; empty sorts first).
    pub created: String,
    /// Namespace of the policy.
    pub namespace: String,
    /// Name of the policy.
    pub name: String,
}

/// One policy as the machinery sees it.
pub(crate) struct PolicyInput {
    /// Namespace, name, creation time, generation.
    pub meta: crate::model::Meta,
    /// Its targets, in spec order.
    pub targets: Vec<PolicyTargetRef>,
    /// Why the policy cannot be applied (kind-specific checks), if so. An
    /// invalid policy still takes its scopes (it fails closed there).
    pub invalid: Option<Problem>,
}

impl PolicyInput {
    fn precedence(&self, scope: &Scope) -> Precedence {
        Precedence {
            specificity: scope.specificity(),
            created: self.meta.creation_timestamp.clone().unwrap_or_default(),
            namespace: self.meta.namespace.clone(),
            name: self.meta.name.clone(),
        }
    }
}

/// Per policy and ancestor: what happened.
#[derive(Default, Debug)]
struct AncestorReport {
    /// Targets under this ancestor that the policy won.
    won: usize,
    /// Policies that took a target of this one under this ancestor.
    conflicted_by: BTreeSet<String>,
    /// Targets that were not found.
    not_found: Vec<String>,
    /// Route rules where a more specific policy won.
    overridden_by: BTreeSet<String>,
    /// Why the policy lost this ancestor to another one sharing its socket
    /// (ClientTrafficPolicy connection settings).
    port_conflicts: BTreeSet<String>,
    /// Listeners where a more specific policy won (ClientTrafficPolicy).
    overridden_listeners_by: BTreeSet<String>,
    /// What the policy could not apply where it applies (fields of a
    /// BackendTrafficPolicy that do not apply to a TCPRoute); added to the
    /// `Accepted=True` message.
    notes: BTreeSet<String>,
}

/// The attachment of every policy of one kind.
pub(crate) struct Attachment {
    policies: Vec<PolicyInput>,
    /// Every scope a policy claims, with every claimant (best first).
    claims: BTreeMap<Scope, Vec<(Precedence, usize)>>,
    reports: Vec<BTreeMap<ParentRef, AncestorReport>>,
}

fn gateway_ref(gw: &ObjectKey, section: Option<&str>) -> ParentRef {
    ParentRef {
        group: Some(GATEWAY_GROUP.into()),
        kind: Some("Gateway".into()),
        namespace: Some(gw.namespace.clone()),
        name: gw.name.clone(),
        section_name: section.map(str::to_string),
        port: None,
    }
}

fn key_string(m: &crate::model::Meta) -> String {
    format!("{}/{}", m.namespace, m.name)
}

fn route_kind(kind: &str) -> Option<&'static str> {
    match kind {
        "HTTPRoute" => Some("HTTPRoute"),
        "GRPCRoute" => Some("GRPCRoute"),
        "TCPRoute" => Some("TCPRoute"),
        _ => None,
    }
}

/// Parent Gateways (of our classes) and rule names of a route.
fn route_facts(
    input: &Input<'_>,
    gws: &[GatewayState],
    kind: &str,
    key: &ObjectKey,
) -> Option<(Vec<ObjectKey>, Vec<String>)> {
    fn parts<'a, S>(spec: &'a S) -> (RouteHead, Rules)
    where
        RouteHead: From<&'a S>,
        Rules: From<&'a S>,
    {
        (spec.into(), spec.into())
    }
    let (head, rules) = match kind {
        "HTTPRoute" => parts(&input.snapshot.http_routes.get(key)?.spec),
        "GRPCRoute" => parts(&input.snapshot.grpc_routes.get(key)?.spec),
        "TCPRoute" => parts(&input.snapshot.tcp_routes.get(key)?.spec),
        _ => return None,
    };
    let mut parents: Vec<ObjectKey> = head
        .parent_refs
        .iter()
        .filter(|p| {
            p.group.as_deref().unwrap_or(GATEWAY_GROUP) == GATEWAY_GROUP
                && p.kind.as_deref().unwrap_or("Gateway") == "Gateway"
        })
        .map(|p| {
            ObjectKey::new(
                p.namespace.clone().unwrap_or_else(|| key.namespace.clone()),
                p.name.clone(),
            )
        })
        .filter(|k| gws.iter().any(|g| g.key == *k))
        .collect();
    parents.sort();
    parents.dedup();
    let names = rules.names();
    Some((parents, names))
}

impl Attachment {
    /// Resolve every policy's targets against the Gateways of our classes and
    /// the routes in the snapshot.
    pub(crate) fn new(input: &Input<'_>, gws: &[GatewayState], policies: Vec<PolicyInput>) -> Self {
        let mut claims: BTreeMap<Scope, Vec<(Precedence, usize)>> = BTreeMap::new();
        let mut reports: Vec<BTreeMap<ParentRef, AncestorReport>> = vec![];
        // Scope → ancestors, for reports.
        let mut scope_ancestors: BTreeMap<Scope, Vec<ParentRef>> = BTreeMap::new();
        for (i, p) in policies.iter().enumerate() {
            let mut report: BTreeMap<ParentRef, AncestorReport> = BTreeMap::new();
            let ns = &p.meta.namespace;
            for t in &p.targets {
                let key = ObjectKey::new(ns.clone(), t.name.clone());
                let section = t.section_name.as_deref();
                let target_ref = ParentRef {
                    group: Some(t.group.clone()),
                    kind: Some(t.kind.clone()),
                    namespace: Some(ns.clone()),
                    name: t.name.clone(),
                    section_name: t.section_name.clone(),
                    port: None,
                };
                let what = match section {
                    Some(s) => format!("{} {key} section {s}", t.kind),
                    None => format!("{} {key}", t.kind),
                };
                let resolved: Option<(Scope, Vec<ParentRef>)> = if t.group != GATEWAY_GROUP {
                    None
                } else if t.kind == "Gateway" {
                    match gws.iter().find(|g| g.key == key) {
                        // A Gateway of another class: not ours to report on.
                        None if input.snapshot.gateways.contains_key(&key) => continue,
                        None => None,
                        Some(gw) => match section {
                            None => {
                                Some((Scope::Gateway(key.clone()), vec![gateway_ref(&key, None)]))
                            }
                            Some(s) => gw
                                .listeners
                                .iter()
                                .any(|l| l.owner == Owner::Gateway && l.spec.name == s)
                                .then(|| {
                                    (
                                        Scope::Listener(key.clone(), s.to_string()),
                                        vec![gateway_ref(&key, Some(s))],
                                    )
                                }),
                        },
                    }
                } else if let Some(kind) = route_kind(&t.kind) {
                    match route_facts(input, gws, kind, &key) {
                        None => None,
                        // Attached to no Gateway of ours: not ours to report on.
                        Some((parents, _)) if parents.is_empty() => continue,
                        Some((parents, names)) => {
                            let ancestors = parents.iter().map(|g| gateway_ref(g, None)).collect();
                            match section {
                                None => Some((Scope::Route(kind, key.clone()), ancestors)),
                                Some(s) if names.iter().any(|n| n == s) => Some((
                                    Scope::RouteRule(kind, key.clone(), s.to_string()),
                                    ancestors,
                                )),
                                Some(_) => None,
                            }
                        }
                    }
                } else {
                    None
                };
                match resolved {
                    None => report.entry(target_ref).or_default().not_found.push(what),
                    Some((scope, ancestors)) => {
                        for a in &ancestors {
                            report.entry(a.clone()).or_default();
                        }
                        claims
                            .entry(scope.clone())
                            .or_default()
                            .push((p.precedence(&scope), i));
                        scope_ancestors.insert(scope, ancestors);
                    }
                }
            }
            reports.push(report);
        }
        for (scope, list) in claims.iter_mut() {
            list.sort();
            list.dedup_by_key(|(_, i)| *i);
            let ancestors = &scope_ancestors[scope];
            let winner = list[0].1;
            let winner_name = key_string(&policies[winner].meta);
            for (n, (_, i)) in list.iter().enumerate() {
                for a in ancestors {
                    let r = reports[*i].entry(a.clone()).or_default();
                    if n == 0 {
                        r.won += 1;
                    } else {
                        r.conflicted_by.insert(winner_name.clone());
                    }
                }
            }
        }
        Attachment {
            policies,
            claims,
            reports,
        }
    }

    fn winner(&self, scope: &Scope) -> Option<(&Precedence, usize)> {
        self.claims.get(scope).map(|l| (&l[0].0, l[0].1))
    }

    /// The policy that applies to one route rule served on a listener of a
    /// Gateway, by [`Precedence`]; the less specific winners it overrides are
    /// recorded for their `Overridden` condition.
    pub(crate) fn effective(
        &mut self,
        gw: &ObjectKey,
        listener: Option<&str>,
        route: &ir::RouteMeta,
    ) -> Option<usize> {
        if self.claims.is_empty() {
            return None;
        }
        let kind = route_kind(&route.kind)?;
        let rkey = ObjectKey::new(route.namespace.clone(), route.name.clone());
        let mut scopes = Vec::with_capacity(4);
        if let Some(rule) = &route.rule_name {
            scopes.push(Scope::RouteRule(kind, rkey.clone(), rule.clone()));
        }
        scopes.push(Scope::Route(kind, rkey));
        if let Some(l) = listener {
            scopes.push(Scope::Listener(gw.clone(), l.to_string()));
        }
        scopes.push(Scope::Gateway(gw.clone()));
        let mut found: Vec<(Precedence, usize, Scope)> = scopes
            .into_iter()
            .filter_map(|s| self.winner(&s).map(|(p, i)| (p.clone(), i, s)))
            .collect();
        found.sort();
        let (_, best, _) = found.first()?.clone();
        let best_name = key_string(&self.policies[best].meta);
        for (_, i, scope) in found.iter().skip(1) {
            let ancestor = match scope {
                Scope::Listener(g, l) => gateway_ref(g, Some(l)),
                _ => gateway_ref(gw, None),
            };
            if *i != best
                && let Some(r) = self.reports[*i].get_mut(&ancestor)
            {
                r.overridden_by.insert(best_name.clone());
            }
        }
        Some(best)
    }

    /// The policy that applies to one listener of a Gateway (listener >
    /// Gateway, then oldest), with its precedence key; a Gateway policy it
    /// overrides gets `Overridden` on its Gateway ancestor.
    pub(crate) fn effective_listener(
        &mut self,
        gw: &ObjectKey,
        listener: &str,
    ) -> Option<(usize, Precedence)> {
        let on_listener = self
            .winner(&Scope::Listener(gw.clone(), listener.to_string()))
            .map(|(p, i)| (i, p.clone()));
        let on_gateway = self
            .winner(&Scope::Gateway(gw.clone()))
            .map(|(p, i)| (i, p.clone()));
        match (on_listener, on_gateway) {
            (Some(l), Some((g, _))) => {
                if g != l.0 {
                    let name = key_string(&self.policies[l.0].meta);
                    if let Some(r) = self.reports[g].get_mut(&gateway_ref(gw, None)) {
                        r.overridden_listeners_by.insert(name);
                    }
                }
                Some(l)
            }
            (l, g) => l.or(g),
        }
    }

    /// Record that `policy` does not apply to `listener` of `gw` because
    /// another listener on the same socket needs other connection settings;
    /// its ancestor for that listener is `Conflicted` with `why`.
    pub(crate) fn port_conflict(
        &mut self,
        policy: usize,
        gw: &ObjectKey,
        listener: &str,
        why: String,
    ) {
        self.reports[policy]
            .entry(gateway_ref(gw, Some(listener)))
            .or_default()
            .port_conflicts
            .insert(why);
    }

    /// Record `note` on every ancestor of `policy` that is (a listener of)
    /// Gateway `gw`; it is appended to the `Accepted=True` message.
    pub(crate) fn note(&mut self, policy: usize, gw: &ObjectKey, note: String) {
        for (aref, r) in self.reports[policy].iter_mut() {
            if aref.kind.as_deref() == Some("Gateway")
                && aref.name == gw.name
                && aref.namespace.as_deref() == Some(gw.namespace.as_str())
            {
                r.notes.insert(note.clone());
            }
        }
    }

    /// The `status.ancestors` of every policy that has one, by policy index.
    pub(crate) fn statuses(&self, controller: &str) -> Vec<(usize, Vec<AncestorStatus>)> {
        let mut out = vec![];
        for (i, report) in self.reports.iter().enumerate() {
            if report.is_empty() {
                continue;
            }
            let p = &self.policies[i];
            let g = p.meta.generation;
            let ancestors = report
                .iter()
                .map(|(aref, r)| {
                    let accepted = if !r.not_found.is_empty() && r.won == 0 {
                        Problem::new(
                            Reason::TargetNotFound,
                            format!("target not found: {}", r.not_found.join(", ")),
                        )
                        .into()
                    } else if r.won == 0 && !r.conflicted_by.is_empty() {
                        Some(Problem::new(
                            Reason::Conflicted,
                            format!(
                                "an older policy on the same target applies instead: {}",
                                r.conflicted_by
                                    .iter()
                                    .cloned()
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        ))
                    } else if !r.port_conflicts.is_empty() {
                        Some(Problem::new(
                            Reason::Conflicted,
                            r.port_conflicts
                                .iter()
                                .cloned()
                                .collect::<Vec<_>>()
                                .join("; "),
                        ))
                    } else {
                        p.invalid.clone()
                    };
                    let mut conditions = vec![match &accepted {
                        None if r.notes.is_empty() => {
                            condition(ACCEPTED, true, Reason::Accepted, "policy is applied", g)
                        }
                        None => condition(
                            ACCEPTED,
                            true,
                            Reason::Accepted,
                            format!(
                                "policy is applied; {}",
                                r.notes.iter().cloned().collect::<Vec<_>>().join("; ")
                            ),
                            g,
                        ),
                        Some(pr) => condition(ACCEPTED, false, pr.reason, pr.message.clone(), g),
                    }];
                    if !r.overridden_listeners_by.is_empty() {
                        conditions.push(condition(
                            OVERRIDDEN,
                            true,
                            Reason::Overridden,
                            format!(
                                "a more specific policy applies to some listeners: {}",
                                r.overridden_listeners_by
                                    .iter()
                                    .cloned()
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                            g,
                        ));
                    } else if !r.overridden_by.is_empty() {
                        conditions.push(condition(
                            OVERRIDDEN,
                            true,
                            Reason::Overridden,
                            format!(
                                "a more specific policy applies to some route rules: {}",
                                r.overridden_by
                                    .iter()
                                    .cloned()
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                            g,
                        ));
                    }
                    AncestorStatus {
                        ancestor_ref: aref.clone(),
                        controller_name: controller.to_string(),
                        conditions,
                    }
                })
                .collect();
            out.push((i, ancestors));
        }
        out
    }

    /// The policies, in the order given.
    pub(crate) fn policies(&self) -> &[PolicyInput] {
        &self.policies
    }
}
