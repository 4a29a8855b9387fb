//! GatewayClasses and Gateways: acceptance, infrastructure parameters, and the
//! order of work per Gateway. Listeners are validated in `listener.rs`, their
//! conflicts found in `conflicts.rs`, addresses assigned in `addresses.rs`,
//! statuses rendered in `gateway_status.rs` and the IR lowered in `lower.rs`;
//! [`finish`] ties the last two.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use portcullis_ir as ir;
use portcullis_store::status::{GatewayClassStatus, Status, Statuses, SupportedFeature};
use portcullis_store::{Kind, ObjectKey, ObjectRef};

use crate::conditions::*;
use crate::model::{GatewayClassSpec, GatewaySpec, Meta, Obj};
use crate::refs::Grants;
use crate::{Input, features};

pub(crate) use crate::addresses::assign_addresses;
pub(crate) use crate::listener::{
    ListenerState, Owner, Proto, apply_frontend_validation, listener,
};

/// Names of the GatewayClasses this controller serves and accepted.
pub(crate) type Classes = BTreeSet<String>;

/// Accept our GatewayClasses and write their status.
pub(crate) fn classes(input: &Input<'_>, statuses: &mut Statuses) -> Classes {
    let mut ours = Classes::new();
    for (key, gc) in &input.snapshot.gateway_classes {
        let gc = Obj::<GatewayClassSpec>::of(&gc.metadata, &gc.spec);
        if gc.spec.controller_name != input.options.controller_name {
            continue;
        }
        let gen_ = gc.metadata.generation;
        let problem = gc.spec.parameters_ref.as_ref().map(|p| {
            Problem::new(
                Reason::InvalidParameters,
                format!(
                    "parametersRef {}/{} {} is not supported by this controller",
                    p.group, p.kind, p.name
                ),
            )
        });
        if problem.is_none() {
            ours.insert(key.name.clone());
        }
        let conditions = vec![
            cond(
                ACCEPTED,
                Reason::Accepted,
                "GatewayClass is accepted by portcullis",
                problem.as_ref(),
                gen_,
            ),
            condition(
                SUPPORTED_VERSION,
                true,
                Reason::SupportedVersion,
                "Gateway API v1.6 CRDs are supported",
                gen_,
            ),
        ];
        let supported_features = features::supported(input.options)
            .into_iter()
            .map(|f| SupportedFeature {
                name: f.to_string(),
            })
            .collect();
        statuses.insert(
            ObjectRef {
                kind: Kind::GatewayClass,
                key: key.clone(),
            },
            Status::GatewayClass(GatewayClassStatus {
                conditions,
                supported_features,
            }),
        );
    }
    ours
}

/// A Gateway being translated.
#[derive(Clone, Debug)]
pub(crate) struct GatewayState {
    pub key: ObjectKey,
    pub meta: Meta,
    pub spec: GatewaySpec,
    pub address: Result<IpAddr, Problem>,
    pub requested_pool: bool,
    pub listeners: Vec<ListenerState>,
    /// Why `spec.infrastructure.parametersRef` is unusable, if it is.
    pub params_problem: Option<Problem>,
    /// `spec.tls.backend.clientCertificateRef`, resolved.
    pub backend_client_cert: Result<Option<ir::Certificate>, Problem>,
    /// ListenerSets whose parent is this Gateway, in precedence order.
    pub listener_sets: Vec<crate::listenerset::ListenerSetState>,
}

/// Build the state of every Gateway of our classes.
pub(crate) fn gateways(input: &Input<'_>, classes: &Classes, grants: &Grants) -> Vec<GatewayState> {
    let mut out = Vec::new();
    for (key, gw) in &input.snapshot.gateways {
        let gw = Obj::<GatewaySpec>::of(&gw.metadata, &gw.spec);
        if !classes.contains(&gw.spec.gateway_class_name) {
            continue;
        }
        let mut listeners: Vec<ListenerState> = gw
            .spec
            .listeners
            .iter()
            .map(|l| {
                listener(
                    input,
                    grants,
                    key,
                    "Gateway",
                    Owner::Gateway,
                    gw.metadata.generation,
                    l,
                )
            })
            .collect();
        for l in &mut listeners {
            apply_frontend_validation(input, grants, &key.namespace, &gw.spec, l);
        }
        let params_problem = infrastructure_parameters(input, &key.namespace, &gw.spec);
        let backend_client_cert =
            crate::tls::backend_client_certificate(input, grants, &key.namespace, &gw.spec);
        out.push(GatewayState {
            key: key.clone(),
            address: Err(Problem::new(Reason::Pending, "address not assigned yet")),
            requested_pool: false,
            meta: gw.metadata,
            spec: gw.spec,
            listeners,
            listener_sets: vec![],
            backend_client_cert,
            params_problem,
        });
    }
    assign_addresses(input, &mut out);
    out
}

/// `spec.infrastructure.parametersRef` (GEP-1867): a ConfigMap in the Gateway's
/// namespace is accepted (standalone mode has no per-Gateway infrastructure to
/// configure; Kubernetes mode reads it when provisioning); anything else, or a
/// missing object, is `Accepted=False/InvalidParameters`.
fn infrastructure_parameters(input: &Input<'_>, ns: &str, spec: &GatewaySpec) -> Option<Problem> {
    let r = spec.infrastructure.as_ref()?.parameters_ref.as_ref()?;
    if !r.group.is_empty() || r.kind != "ConfigMap" {
        return Some(Problem::new(
            Reason::InvalidParameters,
            format!(
                "parametersRef {}/{} {} is not a supported kind; use a core ConfigMap",
                r.group, r.kind, r.name
            ),
        ));
    }
    if !input
        .snapshot
        .config_maps
        .contains_key(&ObjectKey::new(ns, r.name.clone()))
    {
        return Some(Problem::new(
            Reason::InvalidParameters,
            format!("parametersRef ConfigMap {ns}/{} does not exist", r.name),
        ));
    }
    None
}

/// Gateway statuses and the IR, once routes are attached.
pub(crate) fn finish(
    input: &Input<'_>,
    gws: Vec<GatewayState>,
    statuses: &mut Statuses,
) -> (ir::Config, BTreeMap<ObjectKey, IpAddr>) {
    let mut ports = crate::lower::Ports::default();
    let mut addresses = BTreeMap::new();
    for gw in gws {
        let accepted = crate::gateway_status::render(input, &gw, statuses);
        let Ok(ip) = gw.address else { continue };
        if gw.requested_pool || !gw.spec.addresses.is_empty() {
            addresses.insert(gw.key.clone(), ip);
        }
        if accepted {
            let derived = gw.meta.labels.contains_key(crate::INGRESS_CLASS_LABEL);
            ports.add(&gw.key, derived, ip, gw.listeners);
        }
    }
    (ports.finish(), addresses)
}
