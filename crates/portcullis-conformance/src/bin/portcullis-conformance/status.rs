//! Status assertions with the semantics of upstream `utils/kubernetes/helpers.go`
//! (same matching rules; every wait polls `/status` until it holds or times out,
//! and a timeout reports the last mismatch seen).

use std::time::Duration;

use anyhow::{Result, bail};
use serde_json::Value;

use crate::suite::Ctx;

pub const GROUP: &str = "gateway.networking.k8s.io";

/// An expected condition; empty `status` or `reason` match anything.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cond {
    pub type_: String,
    pub status: String,
    pub reason: String,
}

pub fn cond(type_: &str, status: &str, reason: &str) -> Cond {
    Cond {
        type_: type_.into(),
        status: status.into(),
        reason: reason.into(),
    }
}

/// Namespace/name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nn {
    pub namespace: String,
    pub name: String,
}

pub fn nn(namespace: &str, name: &str) -> Nn {
    Nn {
        namespace: namespace.into(),
        name: name.into(),
    }
}

impl std::fmt::Display for Nn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.namespace.is_empty() {
            f.write_str(&self.name)
        } else {
            write!(f, "{}/{}", self.namespace, self.name)
        }
    }
}

/// A Gateway and optional listener (section) names, as upstream's GatewayRef.
#[derive(Debug, Clone)]
pub struct GatewayRef {
    pub nn: Nn,
    pub listener_names: Vec<Option<String>>,
}

impl GatewayRef {
    pub fn new(nn: Nn) -> Self {
        Self {
            nn,
            listener_names: vec![None],
        }
    }

    pub fn with_listeners(nn: Nn, names: &[&str]) -> Self {
        Self {
            nn,
            listener_names: names.iter().map(|n| Some(n.to_string())).collect(),
        }
    }
}

/// One `/status` fetch.
pub struct Snapshot(pub Vec<Value>);

impl Snapshot {
    pub fn find(&self, kind: &str, nn: &Nn) -> Option<&Value> {
        self.0.iter().find(|o| {
            o.get("kind").and_then(Value::as_str) == Some(kind)
                && o.pointer("/metadata/name").and_then(Value::as_str) == Some(nn.name.as_str())
                && o.pointer("/metadata/namespace")
                    .and_then(Value::as_str)
                    .unwrap_or("")
                    == nn.namespace
        })
    }

    pub fn get(&self, kind: &str, nn: &Nn) -> Result<&Value, String> {
        self.find(kind, nn)
            .ok_or_else(|| format!("{kind} {nn} not found in /status"))
    }
}

pub fn generation(obj: &Value) -> i64 {
    obj.pointer("/metadata/generation")
        .and_then(Value::as_i64)
        .unwrap_or(0)
}

pub fn arr<'a>(v: &'a Value, pointer: &str) -> &'a [Value] {
    v.pointer(pointer)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn s<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

pub fn describe_conditions(conds: &[Value]) -> String {
    let items: Vec<String> = conds
        .iter()
        .map(|c| {
            format!(
                "{}={}/{} (gen {})",
                s(c, "type"),
                s(c, "status"),
                s(c, "reason"),
                c.get("observedGeneration")
                    .and_then(Value::as_i64)
                    .unwrap_or(0)
            )
        })
        .collect();
    format!("[{}]", items.join(", "))
}

/// upstream findConditionInList.
pub fn find_condition(conds: &[Value], expected: &Cond) -> Result<(), String> {
    for c in conds {
        if s(c, "type") != expected.type_ {
            continue;
        }
        if (expected.status.is_empty() || s(c, "status") == expected.status)
            && (expected.reason.is_empty() || s(c, "reason") == expected.reason)
        {
            return Ok(());
        }
    }
    Err(format!(
        "expected condition {}={}{} in {}",
        expected.type_,
        if expected.status.is_empty() {
            "*"
        } else {
            &expected.status
        },
        if expected.reason.is_empty() {
            String::new()
        } else {
            format!("/{}", expected.reason)
        },
        describe_conditions(conds)
    ))
}

/// upstream conditionsMatch.
pub fn conditions_match(expected: &[Cond], actual: &[Value]) -> Result<(), String> {
    if actual.len() < expected.len() {
        return Err(format!(
            "expected at least {} conditions, got {}",
            expected.len(),
            describe_conditions(actual)
        ));
    }
    for e in expected {
        find_condition(actual, e)?;
    }
    Ok(())
}

/// upstream ConditionsHaveLatestObservedGeneration.
pub fn latest_generation(obj: &Value, conds: &[Value]) -> Result<(), String> {
    let generation = generation(obj);
    let stale: Vec<String> = conds
        .iter()
        .filter(|c| {
            c.get("observedGeneration")
                .and_then(Value::as_i64)
                .unwrap_or(0)
                != generation
        })
        .map(|c| {
            format!(
                "{} (generation {})",
                s(c, "type"),
                c.get("observedGeneration")
                    .and_then(Value::as_i64)
                    .unwrap_or(0)
            )
        })
        .collect();
    if stale.is_empty() {
        return Ok(());
    }
    Err(format!(
        "expected observedGeneration to be updated to {generation} for all conditions, only {}/{} were updated. stale conditions are: {}",
        conds.len() - stale.len(),
        conds.len(),
        stale.join(", ")
    ))
}

/// An expected listener status (upstream gatewayListenersMatch semantics).
#[derive(Debug, Clone)]
pub struct ExpListener {
    pub name: String,
    /// (group, kind); an empty list requires the actual list to be empty.
    pub supported_kinds: Vec<(String, String)>,
    pub conditions: Vec<Cond>,
    pub attached_routes: i64,
}

pub fn listener(name: &str, kinds: &[&str], conditions: Vec<Cond>, attached: i64) -> ExpListener {
    ExpListener {
        name: name.into(),
        supported_kinds: kinds
            .iter()
            .map(|k| (GROUP.to_string(), k.to_string()))
            .collect(),
        conditions,
        attached_routes: attached,
    }
}

pub fn listeners_match(expected: &[ExpListener], actual: &[Value]) -> Result<(), String> {
    if expected.len() != actual.len() {
        return Err(format!(
            "expected {} listeners in status, got {}",
            expected.len(),
            actual.len()
        ));
    }
    for e in expected {
        let Some(a) = actual.iter().find(|a| s(a, "name") == e.name) else {
            return Err(format!(
                "expected status for listener {} to be present",
                e.name
            ));
        };
        let kinds = arr(a, "/supportedKinds");
        if e.supported_kinds.is_empty() && !kinds.is_empty() {
            return Err(format!(
                "listener {}: expected empty supportedKinds, got {}",
                e.name,
                Value::Array(kinds.to_vec())
            ));
        }
        for (group, kind) in &e.supported_kinds {
            let found = kinds.iter().any(|k| {
                let g = k.get("group").and_then(Value::as_str).unwrap_or(GROUP);
                g == group && s(k, "kind") == kind
            });
            if !found {
                return Err(format!(
                    "listener {}: expected {group}/{kind} in supportedKinds {}",
                    e.name,
                    Value::Array(kinds.to_vec())
                ));
            }
        }
        let attached = a.get("attachedRoutes").and_then(Value::as_i64).unwrap_or(0);
        if attached != e.attached_routes {
            return Err(format!(
                "listener {}: expected attachedRoutes {}, got {attached}",
                e.name, e.attached_routes
            ));
        }
        conditions_match(&e.conditions, arr(a, "/conditions"))
            .map_err(|m| format!("listener {}: {m}", e.name))?;
    }
    Ok(())
}

/// An expected route parent status (upstream parentsForRouteMatch semantics:
/// group, kind, name, namespace and controllerName compared, sectionName not).
#[derive(Debug, Clone)]
pub struct ExpParent {
    pub group: Option<String>,
    pub kind: Option<String>,
    pub name: String,
    pub namespace: Option<String>,
    pub section_name: Option<String>,
    pub controller_name: String,
    pub conditions: Vec<Cond>,
}

impl ExpParent {
    /// A Gateway parent with group and kind set, as most tests write it.
    pub fn gateway(ctx: &Ctx, gw: &Nn, section: Option<&str>, conditions: Vec<Cond>) -> Self {
        Self {
            group: Some(GROUP.into()),
            kind: Some("Gateway".into()),
            name: gw.name.clone(),
            namespace: Some(gw.namespace.clone()),
            section_name: section.map(str::to_string),
            controller_name: ctx.controller_name.clone(),
            conditions,
        }
    }
}

fn opt(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(Value::as_str).map(str::to_string)
}

pub fn parents_match(
    route: &Nn,
    expected: &[ExpParent],
    actual: &[Value],
    namespace_required: bool,
) -> Result<(), String> {
    for e in expected {
        let mut last = format!("no parent {} in status of route {route}", e.name);
        let mut matched = false;
        for a in actual {
            let pr = a.get("parentRef").cloned().unwrap_or(Value::Null);
            if s(a, "controllerName") != e.controller_name {
                last = format!(
                    "route {route}: expected controllerName {}, got {}",
                    e.controller_name,
                    s(a, "controllerName")
                );
                continue;
            }
            if opt(&pr, "group") != e.group {
                last = format!(
                    "route {route}: expected parentRef.group {:?}, got {:?}",
                    e.group,
                    opt(&pr, "group")
                );
                continue;
            }
            if opt(&pr, "kind") != e.kind {
                last = format!(
                    "route {route}: expected parentRef.kind {:?}, got {:?}",
                    e.kind,
                    opt(&pr, "kind")
                );
                continue;
            }
            if s(&pr, "name") != e.name {
                continue;
            }
            let ns = opt(&pr, "namespace");
            if ns != e.namespace && (namespace_required || ns.is_some()) {
                last = format!(
                    "route {route}: expected parentRef.namespace {:?}, got {ns:?}",
                    e.namespace
                );
                continue;
            }
            if let Err(m) = conditions_match(&e.conditions, arr(a, "/conditions")) {
                last = format!("route {route} parent {}: {m}", e.name);
                continue;
            }
            matched = true;
        }
        if !matched {
            return Err(last);
        }
    }
    Ok(())
}

/// Polls `/status` until `check` succeeds or `timeout` passes.
pub async fn poll<T>(
    ctx: &Ctx,
    what: &str,
    timeout: Duration,
    interval: Duration,
    mut check: impl FnMut(&Snapshot) -> Result<T, String>,
) -> Result<T> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last: String;
    loop {
        match crate::portcullis::status(ctx.admin).await {
            Ok(objects) => match check(&Snapshot(objects)) {
                Ok(v) => return Ok(v),
                Err(m) => last = m,
            },
            Err(e) => last = format!("fetching /status: {e:#}"),
        }
        if tokio::time::Instant::now() >= deadline {
            bail!("{what}: timed out after {timeout:?}: {last}");
        }
        tokio::time::sleep(interval).await;
    }
}

/// Polls with the default interval and timeout.
pub async fn eventually<T>(
    ctx: &Ctx,
    what: &str,
    check: impl FnMut(&Snapshot) -> Result<T, String>,
) -> Result<T> {
    poll(ctx, what, ctx.timeout, Duration::from_millis(100), check).await
}
