//! BackendTLSPolicy (GEP-1897): upstream TLS for Services, and the policy's
//! status per ancestor Gateway.
//!
//! - targetRefs name Services (optionally a port by `sectionName`) in the policy's namespace;
//! - CA certificates come from ConfigMaps' `ca.crt`, or `wellKnownCACertificates: System`;
//!   no valid CA → `Accepted=False/NoValidCACertificate` and
//!   `ResolvedRefs=False/InvalidCACertificateRef` (or `InvalidKind`);
//! - two policies on the same target: the oldest (then `namespace/name`) wins, the
//!   other is `Accepted=False/Conflicted`; a policy naming a port (`sectionName`)
//!   overrides one for the whole Service on that port, and both are accepted;
//! - ancestors are the Gateways whose attached routes send traffic to the target;
//! - a target whose only policy is invalid is never reached in plain text: it
//!   gets a TLS configuration with no trust anchor, which the data plane cannot
//!   build, so requests to it are answered 500.

use std::collections::{BTreeMap, BTreeSet};

use portcullis_ir as ir;
use portcullis_store::status::{AncestorStatus, ParentRef, Status, Statuses};
use portcullis_store::{Kind, ObjectKey, ObjectRef};

use crate::Input;
use crate::conditions::*;
use crate::gateway::GatewayState;
use crate::model::{BackendTlsPolicySpec, Obj};
use crate::refs::Grants;
use crate::tls::ca_bundle;

/// `(namespace, service, port)`; port `None` targets every port.
type Target = (String, String, Option<i32>);

/// Every Service backend of one HTTP rule (its backends, then its mirrors'), mutably.
fn rule_backends_mut(r: &mut ir::HttpRouteRule) -> impl Iterator<Item = &mut ir::ServiceBackend> {
    let mirrors = r.action.filters.iter_mut().filter_map(|f| match f {
        ir::HttpFilter::RequestMirror(m) => Some(&mut m.backend),
        _ => None,
    });
    r.action
        .backends
        .iter_mut()
        .chain(mirrors)
        .filter_map(|b| match &mut b.backend {
            ir::Backend::Service(s) => Some(s),
            ir::Backend::Invalid { .. } => None,
        })
}

/// Whether one HTTP rule has a Service backend `pred` selects.
fn rule_has_backend(r: &ir::HttpRouteRule, pred: &impl Fn(&ir::ServiceBackend) -> bool) -> bool {
    let mirrors = r.action.filters.iter().filter_map(|f| match f {
        ir::HttpFilter::RequestMirror(m) => Some(&m.backend),
        _ => None,
    });
    r.action
        .backends
        .iter()
        .chain(mirrors)
        .any(|b| matches!(&b.backend, ir::Backend::Service(s) if pred(s)))
}

/// Call `f` on every Service backend of `gw` that `pred` selects. HTTP rules
/// are shared (`Arc`) with earlier translations: one is copied only when a
/// backend of it is selected.
fn for_each_backend(
    gw: &mut GatewayState,
    pred: impl Fn(&ir::ServiceBackend) -> bool,
    mut f: impl FnMut(&mut ir::ServiceBackend),
) {
    for l in gw.listeners.iter_mut() {
        for r in l.http_rules.iter_mut() {
            if rule_has_backend(r, &pred) {
                for b in rule_backends_mut(std::sync::Arc::make_mut(r)) {
                    if pred(b) {
                        f(b);
                    }
                }
            }
        }
        for r in l.l4_routes.iter_mut() {
            for b in r.backends.iter_mut() {
                if let ir::Backend::Service(s) = &mut b.backend
                    && pred(s)
                {
                    f(s);
                }
            }
        }
    }
}

/// Split `ns/name:port`.
fn parse_backend(name: &str) -> Option<(String, String, i32)> {
    let (nn, port) = name.rsplit_once(':')?;
    let (ns, n) = nn.split_once('/')?;
    Some((ns.to_string(), n.to_string(), port.parse().ok()?))
}

/// Apply every BackendTLSPolicy to the routes' backends and write policy statuses.
pub(crate) fn apply(
    input: &Input<'_>,
    grants: &Grants,
    gws: &mut [GatewayState],
    statuses: &mut Statuses,
) {
    let mut policies: Vec<Obj<BackendTlsPolicySpec>> = input
        .snapshot
        .backend_tls_policies
        .values()
        .map(|p| Obj::of(&p.metadata, &p.spec))
        .collect();
    // Whole-Service policies first, then port-specific ones, so that a policy
    // naming a port (sectionName) wins over one for the whole Service on that
    // port; within each group, oldest first (GEP-713 conflict resolution).
    policies.sort_by_cached_key(|p| {
        (
            p.spec.target_refs.iter().any(|t| t.section_name.is_some()),
            p.metadata.age_key(),
        )
    });
    let mut claimed: BTreeSet<Target> = BTreeSet::new();
    for p in policies {
        let ns = p.metadata.namespace.clone();
        let g = p.metadata.generation;
        let key = ObjectKey::new(ns.clone(), p.metadata.name.clone());
        // Targets, with section names resolved to port numbers.
        let mut targets: Vec<Target> = vec![];
        for t in &p.spec.target_refs {
            if !t.group.is_empty() || t.kind != "Service" {
                continue;
            }
            let port = t.section_name.as_ref().and_then(|sn| {
                input
                    .snapshot
                    .services
                    .get(&ObjectKey::new(ns.clone(), t.name.clone()))
                    .and_then(|s| {
                        s.spec.as_ref().and_then(|sp| {
                            sp.ports
                                .iter()
                                .flatten()
                                .find(|pp| pp.name.as_deref() == Some(sn.as_str()))
                                .map(|pp| pp.port)
                        })
                    })
            });
            if t.section_name.is_some() && port.is_none() {
                continue;
            }
            targets.push((ns.clone(), t.name.clone(), port));
        }
        let conflicted = targets.iter().any(|t| claimed.contains(t));
        // CA bundle.
        let v = &p.spec.validation;
        let mut pems = vec![];
        let mut problem: Option<Problem> = None;
        for r in &v.ca_certificate_refs {
            match ca_bundle(input, grants, "BackendTLSPolicy", &ns, r) {
                Ok(pem) => pems.push(pem),
                Err(e) => {
                    let reason = if e.reason == Reason::InvalidCACertificateKind {
                        Reason::InvalidKind
                    } else {
                        Reason::InvalidCACertificateRef
                    };
                    problem.get_or_insert(Problem::new(reason, e.message));
                }
            }
        }
        let system = v.well_known_ca_certificates.as_deref() == Some("System");
        let valid_ca = problem.is_none() && (system || !pems.is_empty());
        let accepted = if conflicted {
            Some(Problem::new(
                Reason::Conflicted,
                "another, older BackendTLSPolicy already targets this Service port",
            ))
        } else if !valid_ca {
            Some(Problem::new(
                Reason::NoValidCACertificate,
                problem
                    .as_ref()
                    .map(|p| p.message.clone())
                    .unwrap_or_else(|| "no CA certificate is configured".into()),
            ))
        } else {
            None
        };
        let tls = ir::BackendTls {
            hostname: v.hostname.clone(),
            ca_pem: pems.join("\n"),
            system_roots: system,
            subject_alt_names: v
                .subject_alt_names
                .iter()
                .filter_map(|s| match s.type_.as_str() {
                    "Hostname" => s.hostname.clone().map(ir::SubjectAltName::Hostname),
                    "URI" => s.uri.clone().map(ir::SubjectAltName::Uri),
                    _ => None,
                })
                .collect(),
            client_certificate: None,
        };
        let mut ancestors: BTreeMap<ObjectKey, ()> = BTreeMap::new();
        for gw in gws.iter_mut() {
            let client_cert = gw.backend_client_cert.clone().ok().flatten();
            let gw_key = gw.key.clone();
            let targeted = |b: &ir::ServiceBackend| {
                parse_backend(&b.name).is_some_and(|(bns, bname, bport)| {
                    targets.iter().any(|(tns, tn, tp)| {
                        *tns == bns && *tn == bname && tp.is_none_or(|p| p == bport)
                    })
                })
            };
            for_each_backend(gw, targeted, |b| {
                ancestors.insert(gw_key.clone(), ());
                if accepted.is_none() {
                    let mut t = tls.clone();
                    t.client_certificate = client_cert.clone();
                    b.tls = Some(t);
                } else if !conflicted && b.tls.is_none() {
                    // The Service wants TLS but its policy has no usable CA:
                    // never fall back to plain text. A TLS config with no
                    // trust anchor cannot be built, so the data plane
                    // answers the backend as invalid (500).
                    b.tls = Some(ir::BackendTls {
                        ca_pem: String::new(),
                        system_roots: false,
                        ..tls.clone()
                    });
                }
            });
        }
        if accepted.is_none() {
            claimed.extend(targets.iter().cloned());
        }
        let parents = ancestors
            .into_keys()
            .map(|gk| AncestorStatus {
                ancestor_ref: ParentRef {
                    group: Some(portcullis_store::GATEWAY_GROUP.into()),
                    kind: Some("Gateway".into()),
                    namespace: Some(gk.namespace.clone()),
                    name: gk.name.clone(),
                    section_name: None,
                    port: None,
                },
                controller_name: input.options.controller_name.clone(),
                conditions: vec![
                    cond(
                        ACCEPTED,
                        Reason::Accepted,
                        "policy is applied",
                        accepted.as_ref(),
                        g,
                    ),
                    match &problem {
                        None => condition(
                            RESOLVED_REFS,
                            true,
                            Reason::ResolvedRefs,
                            "all references are resolved",
                            g,
                        ),
                        Some(p) => condition(RESOLVED_REFS, false, p.reason, p.message.clone(), g),
                    },
                ],
            })
            .collect::<Vec<_>>();
        if !parents.is_empty() {
            statuses.insert(
                ObjectRef {
                    kind: Kind::BackendTLSPolicy,
                    key,
                },
                Status::Policy { ancestors: parents },
            );
        }
    }
}
