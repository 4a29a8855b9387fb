//! The waiting helpers of upstream `utils/kubernetes/helpers.go`, over `/status`.

use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::Value;

use crate::status::{
    Cond, ExpListener, ExpParent, GROUP, GatewayRef, Nn, Snapshot, arr, cond, conditions_match,
    eventually, find_condition, latest_generation, listeners_match, parents_match, poll,
};
use crate::suite::Ctx;

fn gateway_latest<'a>(snap: &'a Snapshot, gw: &Nn) -> Result<&'a Value, String> {
    let obj = snap.get("Gateway", gw)?;
    latest_generation(obj, arr(obj, "/status/conditions"))
        .map_err(|m| format!("Gateway {gw}: {m}"))?;
    Ok(obj)
}

pub async fn gwc_must_have_accepted(ctx: &Ctx, name: &str, status: &str) -> Result<()> {
    let key = Nn {
        namespace: String::new(),
        name: name.into(),
    };
    eventually(ctx, &format!("GatewayClass {name} Accepted"), |snap| {
        let obj = snap.get("GatewayClass", &key)?;
        let conds = arr(obj, "/status/conditions");
        latest_generation(obj, conds).map_err(|m| format!("GatewayClass {name}: {m}"))?;
        find_condition(conds, &cond("Accepted", status, ""))
    })
    .await
}

pub async fn gateway_class_must_have_latest_conditions(ctx: &Ctx, name: &str) -> Result<()> {
    let key = Nn {
        namespace: String::new(),
        name: name.into(),
    };
    eventually(
        ctx,
        &format!("GatewayClass {name} latest conditions"),
        |snap| {
            let obj = snap.get("GatewayClass", &key)?;
            latest_generation(obj, arr(obj, "/status/conditions"))
        },
    )
    .await
}

pub async fn gateway_must_have_latest_conditions(ctx: &Ctx, gw: &Nn) -> Result<()> {
    eventually(ctx, &format!("Gateway {gw} latest conditions"), |snap| {
        gateway_latest(snap, gw).map(|_| ())
    })
    .await
}

pub async fn gateway_must_have_condition(ctx: &Ctx, gw: &Nn, expected: Cond) -> Result<()> {
    eventually(ctx, &format!("Gateway {gw} condition"), |snap| {
        let obj = gateway_latest(snap, gw)?;
        find_condition(arr(obj, "/status/conditions"), &expected)
            .map_err(|m| format!("Gateway {gw}: {m}"))
    })
    .await
}

pub async fn gateway_status_must_have_listeners(
    ctx: &Ctx,
    gw: &Nn,
    listeners: Vec<ExpListener>,
) -> Result<()> {
    eventually(ctx, &format!("Gateway {gw} listeners"), |snap| {
        let obj = gateway_latest(snap, gw)?;
        listeners_match(&listeners, arr(obj, "/status/listeners"))
            .map_err(|m| format!("Gateway {gw}: {m}"))
    })
    .await
}

/// upstream GatewayListenersMustHaveConditions (all listeners when `names` is empty).
pub async fn gateway_listeners_must_have_conditions(
    ctx: &Ctx,
    gw: &Nn,
    conditions: &[Cond],
    names: &[&str],
) -> Result<()> {
    eventually(ctx, &format!("Gateway {gw} listener conditions"), |snap| {
        let obj = snap.get("Gateway", gw)?;
        let listeners = arr(obj, "/status/listeners");
        let mut unmatched: Vec<&str> = names.to_vec();
        for c in conditions {
            for l in listeners {
                let lname = l.get("name").and_then(Value::as_str).unwrap_or("");
                if !names.is_empty() && !names.contains(&lname) {
                    continue;
                }
                find_condition(arr(l, "/conditions"), c)
                    .map_err(|m| format!("Gateway {gw} listener {lname}: {m}"))?;
                unmatched.retain(|n| *n != lname);
            }
        }
        if !unmatched.is_empty() {
            return Err(format!(
                "Gateway {gw}: listeners {unmatched:?} missing from status"
            ));
        }
        Ok(())
    })
    .await
}

pub async fn gateway_must_have_zero_routes(ctx: &Ctx, gw: &Nn) -> Result<()> {
    eventually(ctx, &format!("Gateway {gw} zero routes"), |snap| {
        let obj = gateway_latest(snap, gw)?;
        let listeners = arr(obj, "/status/listeners");
        if listeners.is_empty() {
            return Ok(());
        }
        if listeners.len() == 1
            && listeners[0]
                .get("attachedRoutes")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                == 0
        {
            return Ok(());
        }
        Err(format!(
            "Gateway {gw}: want zero listeners or exactly 1 listener with zero routes, got {}",
            Value::Array(listeners.to_vec())
        ))
    })
    .await
}

/// upstream WaitForGatewayAddress: `ip:port` of the first (or named) listener.
pub async fn wait_for_gateway_address(ctx: &Ctx, gw: &GatewayRef) -> Result<String> {
    let spec = ctx
        .spec_of("Gateway", &gw.nn)
        .with_context(|| format!("no manifest for Gateway {}", gw.nn))?;
    let listeners = arr(&spec, "/spec/listeners");
    let mut listener = listeners.first().cloned().unwrap_or(Value::Null);
    if let Some(Some(name)) = gw.listener_names.first()
        && let Some(l) = listeners
            .iter()
            .find(|l| l.get("name").and_then(Value::as_str) == Some(name.as_str()))
    {
        listener = l.clone();
    }
    let port = listener.get("port").and_then(Value::as_i64).unwrap_or(0);
    let ip = eventually(ctx, &format!("Gateway {} address", gw.nn), |snap| {
        let obj = gateway_latest(snap, &gw.nn)?;
        status_address(obj).map_err(|e| format!("Gateway {}: {e}", gw.nn))
    })
    .await?;
    Ok(join_host_port(&ip, port))
}

/// The first `status.addresses` entry of type `IPAddress` or `Hostname`, as
/// upstream's WaitForGatewayAddress takes it: an entry without a `type` does
/// not count.
pub fn status_address(gateway: &Value) -> std::result::Result<String, String> {
    let addresses = arr(gateway, "/status/addresses");
    for a in addresses {
        let typ = a.get("type").and_then(Value::as_str);
        if matches!(typ, Some("IPAddress" | "Hostname"))
            && let Some(v) = a.get("value").and_then(Value::as_str)
        {
            return Ok(v.to_string());
        }
    }
    match addresses.first() {
        None => Err("no address in status".into()),
        Some(a) => Err(format!(
            "no address of type IPAddress or Hostname in status (first: {a})"
        )),
    }
}

pub fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

pub async fn route_must_have_parents(
    ctx: &Ctx,
    kind: &str,
    route: &Nn,
    parents: Vec<ExpParent>,
    namespace_required: bool,
) -> Result<()> {
    eventually(ctx, &format!("{kind} {route} parents"), |snap| {
        let obj = snap.get(kind, route)?;
        let actual = arr(obj, "/status/parents");
        for p in actual {
            latest_generation(obj, arr(p, "/conditions"))
                .map_err(|m| format!("{kind} {route}: {m}"))?;
        }
        parents_match(route, &parents, actual, namespace_required)
    })
    .await
}

/// upstream HTTPRouteMustHaveCondition and its TLS/TCP/UDP twins.
pub async fn route_must_have_condition(
    ctx: &Ctx,
    kind: &str,
    route: &Nn,
    gw: &Nn,
    expected: Cond,
) -> Result<()> {
    eventually(
        ctx,
        &format!("{kind} {route} condition for parent {gw}"),
        |snap| {
            let obj = snap.get(kind, route)?;
            let mut last = format!("{kind} {route}: no parent {gw} in status");
            for p in arr(obj, "/status/parents") {
                latest_generation(obj, arr(p, "/conditions"))
                    .map_err(|m| format!("{kind} {route}: {m}"))?;
                let pr = &p["parentRef"];
                let name_ok = pr.get("name").and_then(Value::as_str) == Some(gw.name.as_str());
                let ns_ok = pr
                    .get("namespace")
                    .and_then(Value::as_str)
                    .is_none_or(|ns| ns == gw.namespace);
                if name_ok && ns_ok {
                    match find_condition(arr(p, "/conditions"), &expected) {
                        Ok(()) => return Ok(()),
                        Err(m) => last = format!("{kind} {route} parent {gw}: {m}"),
                    }
                }
            }
            Err(last)
        },
    )
    .await
}

/// upstream HTTPRouteMustHaveNoAcceptedParents and twins.
pub async fn route_must_have_no_accepted_parents(ctx: &Ctx, kind: &str, route: &Nn) -> Result<()> {
    let mut empty_checked = false;
    poll(
        ctx,
        &format!("{kind} {route} no accepted parents"),
        ctx.timeout,
        Duration::from_millis(1000),
        |snap| {
            let obj = snap.get(kind, route)?;
            let parents = arr(obj, "/status/parents");
            if parents.is_empty() {
                if !empty_checked {
                    empty_checked = true;
                    return Err("status.parents empty (checking again)".into());
                }
                return Ok(());
            }
            if parents.len() > 1 {
                return Err(format!(
                    "{kind} {route}: expected at most one parent, got {}",
                    parents.len()
                ));
            }
            latest_generation(obj, arr(&parents[0], "/conditions"))
                .map_err(|m| format!("{kind} {route}: {m}"))?;
            conditions_match(
                &[cond("Accepted", "False", "")],
                arr(&parents[0], "/conditions"),
            )
            .map_err(|m| format!("{kind} {route}: {m}"))
        },
    )
    .await
}

pub async fn route_must_have_latest_conditions(ctx: &Ctx, kind: &str, route: &Nn) -> Result<()> {
    eventually(ctx, &format!("{kind} {route} latest conditions"), |snap| {
        let obj = snap.get(kind, route)?;
        for p in arr(obj, "/status/parents") {
            latest_generation(obj, arr(p, "/conditions"))
                .map_err(|m| format!("{kind} {route}: {m}"))?;
        }
        Ok(())
    })
    .await
}

fn accepted() -> Cond {
    cond("Accepted", "True", "Accepted")
}

/// upstream RoutesAndParentMustBeAccepted for a Gateway parent.
pub async fn routes_and_gateway_must_be_accepted(
    ctx: &Ctx,
    kind: &str,
    gw: &GatewayRef,
    routes: &[Nn],
) -> Result<()> {
    for route in routes {
        let namespace_required = route.namespace != gw.nn.namespace;
        let parents: Vec<ExpParent> = gw
            .listener_names
            .iter()
            .map(|l| ExpParent {
                group: Some(GROUP.into()),
                kind: Some("Gateway".into()),
                name: gw.nn.name.clone(),
                namespace: Some(gw.nn.namespace.clone()),
                section_name: l.clone(),
                controller_name: ctx.controller_name.clone(),
                conditions: vec![accepted()],
            })
            .collect();
        route_must_have_parents(ctx, kind, route, parents, namespace_required).await?;
    }
    gateway_listeners_must_have_conditions(
        ctx,
        &gw.nn,
        &[
            cond("ResolvedRefs", "True", ""),
            cond("Accepted", "True", ""),
            cond("Programmed", "True", ""),
        ],
        &[],
    )
    .await
}

/// upstream GatewayAndRoutesMustBeAccepted: returns `ip:port` (or `ip` when
/// `use_port` is false).
pub async fn gateway_and_routes_must_be_accepted(
    ctx: &Ctx,
    kind: &str,
    gw: &GatewayRef,
    use_port: bool,
    routes: &[Nn],
) -> Result<String> {
    let mut addr = wait_for_gateway_address(ctx, gw).await?;
    if !use_port {
        addr = addr
            .rsplit_once(':')
            .map(|(h, _)| h.to_string())
            .unwrap_or(addr);
    }
    routes_and_gateway_must_be_accepted(ctx, kind, gw, routes).await?;
    Ok(addr)
}

pub async fn gateway_and_http_routes_must_be_accepted(
    ctx: &Ctx,
    gw: &GatewayRef,
    routes: &[Nn],
) -> Result<String> {
    gateway_and_routes_must_be_accepted(ctx, "HTTPRoute", gw, true, routes).await
}

/// upstream NamespacesMustBeReady (Gateways part; pods are local processes
/// that were waited for when started).
pub async fn namespaces_must_be_ready(ctx: &Ctx, namespaces: &[&str]) -> Result<()> {
    let gateways: Vec<Nn> = ctx
        .all_docs()
        .iter()
        .filter(|d| crate::manifests::kind(d) == "Gateway")
        .filter(|d| namespaces.contains(&crate::manifests::namespace(d)))
        .filter(|d| {
            d.pointer("/metadata/annotations/gateway-api~1skip-this-for-readiness")
                .and_then(Value::as_str)
                != Some("true")
        })
        .map(|d| crate::status::nn(crate::manifests::namespace(d), crate::manifests::name(d)))
        .collect();
    eventually(ctx, "Gateways ready", |snap| {
        for gw in &gateways {
            let obj = gateway_latest(snap, gw)?;
            let conds = arr(obj, "/status/conditions");
            find_condition(conds, &cond("Accepted", "True", ""))
                .map_err(|m| format!("Gateway {gw}: {m}"))?;
            find_condition(conds, &cond("Programmed", "True", ""))
                .map_err(|m| format!("Gateway {gw}: {m}"))?;
        }
        Ok(())
    })
    .await
}

/// The generation `/status` reports for an object.
pub async fn current_generation(ctx: &Ctx, kind: &str, obj: &Nn) -> Result<i64> {
    eventually(ctx, &format!("{kind} {obj} present"), |snap| {
        snap.get(kind, obj).map(crate::status::generation)
    })
    .await
}

/// Patches an applied object (an update) and waits until its generation moves,
/// which the API server guarantees synchronously upstream. Returns the
/// generations before and after.
pub async fn patch_and_wait_generation(
    ctx: &mut Ctx,
    kind: &str,
    obj: &Nn,
    f: impl FnOnce(&mut Value),
) -> Result<(i64, i64)> {
    let original = current_generation(ctx, kind, obj).await?;
    ctx.patch(kind, obj, f)?;
    let updated = eventually(
        ctx,
        &format!("{kind} {obj} generation to change after an update"),
        |snap| {
            let g = crate::status::generation(snap.get(kind, obj)?);
            if g != original {
                Ok(g)
            } else {
                Err(format!("generation still {g}"))
            }
        },
    )
    .await?;
    Ok((original, updated))
}

/// upstream ListenerSetMustHaveCondition.
pub async fn listenerset_must_have_condition(ctx: &Ctx, ls: &Nn, expected: Cond) -> Result<()> {
    eventually(ctx, &format!("ListenerSet {ls} condition"), |snap| {
        let obj = snap.get("ListenerSet", ls)?;
        let conds = arr(obj, "/status/conditions");
        latest_generation(obj, conds).map_err(|m| format!("ListenerSet {ls}: {m}"))?;
        find_condition(conds, &expected).map_err(|m| format!("ListenerSet {ls}: {m}"))
    })
    .await
}

/// upstream ListenerSetListenersMustHaveConditions (all listeners when `names` is empty).
pub async fn listenerset_listeners_must_have_conditions(
    ctx: &Ctx,
    ls: &Nn,
    conditions: &[Cond],
    names: &[&str],
) -> Result<()> {
    eventually(
        ctx,
        &format!("ListenerSet {ls} listener conditions"),
        |snap| {
            let obj = snap.get("ListenerSet", ls)?;
            latest_generation(obj, arr(obj, "/status/conditions"))
                .map_err(|m| format!("ListenerSet {ls}: {m}"))?;
            let mut unmatched: Vec<&str> = names.to_vec();
            for c in conditions {
                for l in arr(obj, "/status/listeners") {
                    let lname = l.get("name").and_then(Value::as_str).unwrap_or("");
                    if !names.is_empty() && !names.contains(&lname) {
                        continue;
                    }
                    find_condition(arr(l, "/conditions"), c)
                        .map_err(|m| format!("ListenerSet {ls} listener {lname}: {m}"))?;
                    unmatched.retain(|n| *n != lname);
                }
            }
            if !unmatched.is_empty() {
                return Err(format!(
                    "ListenerSet {ls}: listeners {unmatched:?} missing from status"
                ));
            }
            Ok(())
        },
    )
    .await
}

/// upstream GatewayMustHaveAttachedListeners (status.attachedListenerSets).
pub async fn gateway_must_have_attached_listeners(ctx: &Ctx, gw: &Nn, expected: i64) -> Result<()> {
    eventually(ctx, &format!("Gateway {gw} attachedListenerSets"), |snap| {
        let obj = gateway_latest(snap, gw)?;
        let got = obj
            .pointer("/status/attachedListenerSets")
            .and_then(Value::as_i64)
            .unwrap_or(0);
        if got == expected {
            Ok(())
        } else {
            Err(format!(
                "Gateway {gw}: got {got} attachedListenerSets, want {expected}"
            ))
        }
    })
    .await
}

/// upstream RoutesAndParentMustBeAccepted for a ListenerSet parent.
pub async fn routes_and_listenerset_must_be_accepted(
    ctx: &Ctx,
    kind: &str,
    ls: &Nn,
    routes: &[Nn],
) -> Result<()> {
    for route in routes {
        let parent = ExpParent {
            group: Some(GROUP.into()),
            kind: Some("ListenerSet".into()),
            name: ls.name.clone(),
            namespace: Some(ls.namespace.clone()),
            section_name: None,
            controller_name: ctx.controller_name.clone(),
            conditions: vec![accepted()],
        };
        route_must_have_parents(
            ctx,
            kind,
            route,
            vec![parent],
            route.namespace != ls.namespace,
        )
        .await?;
    }
    listenerset_listeners_must_have_conditions(
        ctx,
        ls,
        &[
            cond("ResolvedRefs", "True", ""),
            cond("Accepted", "True", ""),
            cond("Programmed", "True", ""),
        ],
        &[],
    )
    .await
}

/// upstream BackendTLSPolicyMustHaveCondition (ancestor = the Gateway).
pub async fn backend_tls_policy_must_have_condition(
    ctx: &Ctx,
    policy: &Nn,
    gw: &Nn,
    expected: Cond,
) -> Result<()> {
    eventually(
        ctx,
        &format!("BackendTLSPolicy {policy} condition"),
        |snap| {
            let obj = snap.get("BackendTLSPolicy", policy)?;
            let mut last = format!("BackendTLSPolicy {policy}: no ancestor {gw} in status");
            for a in arr(obj, "/status/ancestors") {
                let conds = arr(a, "/conditions");
                latest_generation(obj, conds)
                    .map_err(|m| format!("BackendTLSPolicy {policy}: {m}"))?;
                let r = &a["ancestorRef"];
                let name_ok = r.get("name").and_then(Value::as_str) == Some(gw.name.as_str());
                let ns_ok = r
                    .get("namespace")
                    .and_then(Value::as_str)
                    .is_none_or(|ns| ns == gw.namespace);
                if name_ok && ns_ok {
                    match find_condition(conds, &expected) {
                        Ok(()) => return Ok(()),
                        Err(m) => last = format!("BackendTLSPolicy {policy} ancestor {gw}: {m}"),
                    }
                }
            }
            Err(last)
        },
    )
    .await
}

/// upstream BackendTLSPolicyMustHaveLatestConditions (waits instead of failing at once).
pub async fn backend_tls_policy_must_have_latest_conditions(ctx: &Ctx, policy: &Nn) -> Result<()> {
    eventually(
        ctx,
        &format!("BackendTLSPolicy {policy} latest conditions"),
        |snap| {
            let obj = snap.get("BackendTLSPolicy", policy)?;
            for a in arr(obj, "/status/ancestors") {
                latest_generation(obj, arr(a, "/conditions"))
                    .map_err(|m| format!("BackendTLSPolicy {policy}: {m}"))?;
            }
            Ok(())
        },
    )
    .await
}

/// upstream ListenerSetStatusMustHaveListeners.
pub async fn listenerset_status_must_have_listeners(
    ctx: &Ctx,
    ls: &Nn,
    listeners: Vec<ExpListener>,
) -> Result<()> {
    eventually(ctx, &format!("ListenerSet {ls} listeners"), |snap| {
        let obj = snap.get("ListenerSet", ls)?;
        latest_generation(obj, arr(obj, "/status/conditions"))
            .map_err(|m| format!("ListenerSet {ls}: {m}"))?;
        listeners_match(&listeners, arr(obj, "/status/listeners"))
            .map_err(|m| format!("ListenerSet {ls}: {m}"))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_gateway_address_must_carry_its_type() {
        let typed =
            json!({"status": {"addresses": [{"type": "IPAddress", "value": "127.0.10.1"}]}});
        assert_eq!(status_address(&typed), Ok("127.0.10.1".into()));
        let hostname =
            json!({"status": {"addresses": [{"type": "Hostname", "value": "gw.example"}]}});
        assert_eq!(status_address(&hostname), Ok("gw.example".into()));
        let untyped = json!({"status": {"addresses": [{"value": "127.0.10.1"}]}});
        assert!(
            status_address(&untyped)
                .unwrap_err()
                .contains("no address of type")
        );
        let none = json!({"status": {}});
        assert_eq!(status_address(&none), Err("no address in status".into()));
    }
}
