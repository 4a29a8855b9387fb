//! Status rendering of Gateways and their listeners, once routes are
//! attached: `Accepted` (with `ListenersNotValid` naming what is not valid),
//! `Programmed`, `ResolvedRefs`, per-listener conditions and `attachedRoutes`,
//! addresses, and the ListenerSets' statuses.

use std::net::SocketAddr;

use portcullis_store::status::{Address, GatewayStatus, ListenerStatus, Status, Statuses};
use portcullis_store::{Kind, ObjectRef};

use crate::Input;
use crate::conditions::*;
use crate::conflicts::listeners_not_valid;
use crate::gateway::{GatewayState, ListenerState, Owner};
use crate::model::GatewaySpec;

/// Write the status of `gw` (and of its ListenerSets); whether the Gateway is accepted.
pub(crate) fn render(input: &Input<'_>, gw: &GatewayState, statuses: &mut Statuses) -> bool {
    let g = gw.meta.generation;
    let own: Vec<&ListenerState> = gw
        .listeners
        .iter()
        .filter(|l| l.owner == Owner::Gateway)
        .collect();
    let bind_err = |l: &ListenerState| -> Option<String> {
        let ip = gw.address.as_ref().ok()?;
        input
            .bind_errors
            .get(&SocketAddr::new(*ip, l.spec.port as u16))
            .cloned()
    };
    let valid = own.iter().filter(|l| l.attachable()).count();
    let not_valid = listeners_not_valid(&own, ListenerState::attachable);
    let accepted = match &gw.address {
        _ if gw.params_problem.is_some() => gw.params_problem.clone(),
        Err(p) if p.reason == Reason::UnsupportedAddress => Some(p.clone()),
        _ if valid == 0 && !own.is_empty() => Some(Problem::new(
            Reason::ListenersNotValid,
            not_valid.clone().unwrap_or_default(),
        )),
        _ => None,
    };
    let addr_unusable = gw.address.as_ref().ok().and_then(|ip| {
        input
            .bind_errors
            .iter()
            .find(|(sa, e)| sa.ip() == *ip && e.contains("assign requested address"))
            .map(|(_, e)| e.clone())
    });
    let programmed = if accepted.is_some() {
        Some(Problem::new(Reason::Invalid, "Gateway is not accepted"))
    } else if let Err(p) = &gw.address {
        Some(p.clone())
    } else {
        addr_unusable.map(|e| {
            Problem::new(
                Reason::AddressNotUsable,
                format!("cannot bind the Gateway's address: {e}"),
            )
        })
    };
    let accepted_cond = match (&accepted, not_valid) {
        (Some(p), _) => cond(ACCEPTED, Reason::Accepted, "", Some(p), g),
        (None, Some(m)) => condition(ACCEPTED, true, Reason::ListenersNotValid, m, g),
        (None, None) => condition(ACCEPTED, true, Reason::Accepted, "Gateway is accepted", g),
    };
    let resolved = gw.backend_client_cert.as_ref().err();
    let mut conditions = vec![
        accepted_cond,
        cond(
            PROGRAMMED,
            Reason::Programmed,
            "Gateway is served",
            programmed.as_ref(),
            g,
        ),
        cond(
            RESOLVED_REFS,
            Reason::ResolvedRefs,
            "all Gateway-level references are resolved",
            resolved,
            g,
        ),
    ];
    if insecure_frontend_validation(&gw.spec) {
        conditions.push(condition(
            "InsecureFrontendValidationMode",
            true,
            Reason::ConfigurationChanged,
            "client certificate validation uses AllowInsecureFallback: connections without a valid client certificate are accepted",
            g,
        ));
    }
    let listeners = own
        .iter()
        .map(|l| listener_status(l, bind_err(l).as_ref()))
        .collect();
    let attached_listener_sets =
        crate::listenerset::finish(gw, accepted.is_none(), &bind_err, statuses);
    let status_addresses = match &gw.address {
        Ok(ip) if accepted.is_none() && !ip.is_unspecified() => vec![Address {
            type_: "IPAddress".into(),
            value: ip.to_string(),
        }],
        _ => vec![],
    };
    statuses.insert(
        ObjectRef {
            kind: Kind::Gateway,
            key: gw.key.clone(),
        },
        Status::Gateway(GatewayStatus {
            addresses: status_addresses,
            conditions,
            listeners,
            attached_listener_sets,
        }),
    );
    accepted.is_none()
}

/// The status of one listener (Gateway or ListenerSet).
pub(crate) fn listener_status(l: &ListenerState, bind_error: Option<&String>) -> ListenerStatus {
    let g = l.generation;
    let accepted = l
        .accepted
        .clone()
        .or_else(|| {
            l.conflicted
                .as_ref()
                .map(|(r, m)| Problem::new(*r, m.clone()))
        })
        .or_else(|| {
            bind_error.map(|e| {
                Problem::new(
                    Reason::PortUnavailable,
                    format!("cannot bind port {}: {e}", l.spec.port),
                )
            })
        });
    let programmed = if let Some((r, m)) = &l.conflicted {
        Some(Problem::new(*r, m.clone()))
    } else if accepted.is_some() || l.resolved.is_some() {
        Some(Problem::new(
            Reason::Invalid,
            "listener is not accepted or has unresolved references, so it is not served",
        ))
    } else {
        None
    };
    let mut conditions = vec![
        cond(
            ACCEPTED,
            Reason::Accepted,
            "listener is accepted",
            accepted.as_ref(),
            g,
        ),
        cond(
            PROGRAMMED,
            Reason::Programmed,
            "listener is served",
            programmed.as_ref(),
            g,
        ),
        cond(
            RESOLVED_REFS,
            Reason::ResolvedRefs,
            "all references are resolved",
            l.resolved.as_ref(),
            g,
        ),
    ];
    conditions.push(match &l.conflicted {
        None => condition(CONFLICTED, false, Reason::NoConflicts, "no conflicts", g),
        Some((r, m)) => condition(CONFLICTED, true, *r, m.clone(), g),
    });
    ListenerStatus {
        name: l.spec.name.clone(),
        supported_kinds: l.supported_kinds.clone(),
        attached_routes: l.attached,
        conditions,
    }
}

/// Whether any frontend validation (default or per port) uses `AllowInsecureFallback`.
fn insecure_frontend_validation(spec: &GatewaySpec) -> bool {
    let Some(f) = spec.tls.as_ref().and_then(|t| t.frontend.as_ref()) else {
        return false;
    };
    std::iter::once(&f.default)
        .chain(f.per_port.iter().map(|p| &p.tls))
        .filter_map(|c| c.validation.as_ref())
        .any(|v| v.mode.as_deref() == Some("AllowInsecureFallback"))
}
