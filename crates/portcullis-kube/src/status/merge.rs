//! What to write into one object's status: pure, so it is tested without a cluster.
//!
//! - GatewayClass, Gateway, ListenerSet: the whole status is ours (translation
//!   only reports objects of our classes).
//! - Routes (`status.parents[]`) and policies (`status.ancestors[]`): only the
//!   entries whose `controllerName` is ours are replaced; other controllers'
//!   entries are kept as they are, in their order, ahead of ours.
//!
//! Condition `lastTransitionTime`s are carried over from the object's current
//! status when the condition's `status` did not change, per listener and per
//! parentRef/ancestorRef ([`TransitionTimes`], the rule standalone mode uses
//! too), so a restart or a re-translation never moves them; the result is then compared with the
//! current status (after normalising API defaults) and `None` means "no write".

use portcullis_store::Kind;
use portcullis_store::status::{Status, TransitionTimes};
use serde_json::{Map, Value};

/// The status field holding per-parent entries for a kind, and the entries' ref key.
pub fn list_keys(kind: Kind) -> Option<(&'static str, &'static str)> {
    match kind {
        Kind::HTTPRoute | Kind::GRPCRoute | Kind::TLSRoute | Kind::TCPRoute | Kind::UDPRoute => {
            Some(("parents", "parentRef"))
        }
        Kind::BackendTLSPolicy
        | Kind::SecurityPolicy
        | Kind::BackendTrafficPolicy
        | Kind::ClientTrafficPolicy => Some(("ancestors", "ancestorRef")),
        _ => None,
    }
}

/// The top-level status fields this controller owns for a kind; a field it
/// owns but no longer sets is written as `null` so a merge patch removes it.
fn owned_fields(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::GatewayClass => &["conditions", "supportedFeatures"],
        Kind::Gateway => &[
            "addresses",
            "conditions",
            "listeners",
            "attachedListenerSets",
        ],
        Kind::ListenerSet => &["conditions", "listeners"],
        Kind::BackendTLSPolicy
        | Kind::SecurityPolicy
        | Kind::BackendTrafficPolicy
        | Kind::ClientTrafficPolicy => &["ancestors"],
        _ => &["parents"],
    }
}

/// The new `status` for an object whose current status is `current`, given
/// what translation computed (`None` when translation reported nothing for
/// it); `None` when nothing needs writing. The result holds every owned
/// field (`null` for removed ones), ready to be the `status` of a JSON merge patch.
pub fn desired(
    kind: Kind,
    current: Option<&Value>,
    translated: Option<&Status>,
    controller: &str,
    now: &str,
) -> Option<Value> {
    let empty = Value::Object(Map::new());
    let current = current.filter(|v| v.is_object()).unwrap_or(&empty);
    // Transition times: the one rule of both modes, by scope (listener,
    // parentRef, ancestorRef) and condition type.
    let translated = translated.map(|t| {
        let mut t = t.clone();
        TransitionTimes::from_json(current, controller).apply(&mut t, now);
        t
    });
    let mut new = match (list_keys(kind), translated.as_ref()) {
        (Some((list, rkey)), t) => {
            let cur_list = current
                .get(list)
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            let ours =
                |e: &Value| e.get("controllerName").and_then(Value::as_str) == Some(controller);
            if t.is_none() && !cur_list.iter().any(ours) {
                return None;
            }
            let mut merged: Vec<Value> = cur_list.iter().filter(|e| !ours(e)).cloned().collect();
            let fresh = t
                .map(|s| serde_json::to_value(s).unwrap_or_default())
                .and_then(|v| v.get(list).and_then(Value::as_array).cloned())
                .unwrap_or_default();
            for mut e in fresh {
                default_ref(&mut e, rkey);
                merged.push(e);
            }
            let mut m = Map::new();
            m.insert(list.to_string(), Value::Array(merged));
            Value::Object(m)
        }
        (None, Some(t)) => serde_json::to_value(t).unwrap_or_default(),
        (None, None) => return None,
    };
    if normalise(current.clone()) == normalise(new.clone()) {
        return None;
    }
    if let Value::Object(m) = &mut new {
        for f in owned_fields(kind) {
            m.entry(f.to_string()).or_insert(Value::Null);
        }
    }
    Some(new)
}

fn default_ref(entry: &mut Value, rkey: &str) {
    if let Some(Value::Object(r)) = entry.get_mut(rkey) {
        r.entry("group")
            .or_insert_with(|| Value::String(portcullis_store::GATEWAY_GROUP.into()));
        r.entry("kind")
            .or_insert_with(|| Value::String("Gateway".into()));
    }
}

/// Drop `null`s and empty arrays/objects, and fill parent-ref defaults, so a
/// status read back from the API compares equal to the one written.
pub fn normalise(v: Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut out = Map::new();
            for (k, v) in m {
                let mut v = normalise(v);
                if matches!(k.as_str(), "parentRef" | "ancestorRef")
                    && let Value::Object(r) = &mut v
                {
                    r.entry("group")
                        .or_insert_with(|| Value::String(portcullis_store::GATEWAY_GROUP.into()));
                    r.entry("kind")
                        .or_insert_with(|| Value::String("Gateway".into()));
                }
                let empty = match &v {
                    Value::Null => true,
                    Value::Array(a) => a.is_empty(),
                    Value::Object(o) => o.is_empty(),
                    _ => false,
                };
                if !empty {
                    out.insert(k, v);
                }
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.into_iter().map(normalise).collect()),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_store::status::{Condition, ParentRef, ParentStatus, RouteStatus};
    use serde_json::json;

    const ME: &str = "portcullis.dev/gateway-controller";

    fn route(status: &str) -> Status {
        let mut c = Condition::new("Accepted", status == "True", "Accepted", "ok", 2);
        c.status = status.into();
        Status::Route(RouteStatus {
            parents: vec![ParentStatus {
                parent_ref: ParentRef {
                    group: None,
                    kind: None,
                    namespace: None,
                    name: "gw".into(),
                    section_name: None,
                    port: None,
                },
                controller_name: ME.into(),
                conditions: vec![c],
            }],
        })
    }

    #[test]
    fn keeps_other_controllers_and_carries_times() {
        let current = json!({"parents": [
            {"parentRef": {"name": "other-gw"}, "controllerName": "example.com/other", "conditions": [{"type": "Accepted", "status": "True", "reason": "X", "message": "", "lastTransitionTime": "2020-01-01T00:00:00Z", "observedGeneration": 1}]},
            {"parentRef": {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"}, "controllerName": ME, "conditions": [{"type": "Accepted", "status": "True", "reason": "Accepted", "message": "ok", "lastTransitionTime": "2021-01-01T00:00:00Z", "observedGeneration": 1}]}
        ]});
        let new = desired(
            Kind::HTTPRoute,
            Some(&current),
            Some(&route("True")),
            ME,
            "2030-01-01T00:00:00Z",
        )
        .expect("generation changed");
        assert_eq!(
            new["parents"][0], current["parents"][0],
            "other controller's entry untouched"
        );
        assert_eq!(
            new["parents"][1]["conditions"][0]["lastTransitionTime"],
            "2021-01-01T00:00:00Z"
        );
        assert_eq!(new["parents"][1]["conditions"][0]["observedGeneration"], 2);
        assert_eq!(
            new["parents"][1]["parentRef"],
            json!({"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": "gw"})
        );
        // Written back, it is stable: no second write.
        let again = desired(
            Kind::HTTPRoute,
            Some(&new),
            Some(&route("True")),
            ME,
            "2031-01-01T00:00:00Z",
        );
        assert_eq!(again, None);
        // A status flip takes the new time.
        let flipped = desired(
            Kind::HTTPRoute,
            Some(&new),
            Some(&route("False")),
            ME,
            "2031-01-01T00:00:00Z",
        )
        .expect("changed");
        assert_eq!(
            flipped["parents"][1]["conditions"][0]["lastTransitionTime"],
            "2031-01-01T00:00:00Z"
        );
    }

    #[test]
    fn removes_only_our_stale_entries() {
        let current = json!({"parents": [
            {"parentRef": {"name": "gw"}, "controllerName": ME, "conditions": []},
            {"parentRef": {"name": "x"}, "controllerName": "example.com/other", "conditions": []}
        ]});
        let new =
            desired(Kind::HTTPRoute, Some(&current), None, ME, "now").expect("stale entry removed");
        assert_eq!(new, json!({"parents": [current["parents"][1].clone()]}));
        let only_other = json!({"parents": [current["parents"][1].clone()]});
        assert_eq!(
            desired(Kind::HTTPRoute, Some(&only_other), None, ME, "now"),
            None
        );
    }

    #[test]
    fn owned_fields_are_nulled_for_merge_patch() {
        let gw = Status::Gateway(Default::default());
        let current =
            json!({"addresses": [{"type": "IPAddress", "value": "1.2.3.4"}], "conditions": []});
        let new = desired(Kind::Gateway, Some(&current), Some(&gw), ME, "now")
            .expect("addresses removed");
        assert_eq!(new["addresses"], Value::Null);
        assert_eq!(new["listeners"], Value::Null);
    }
}
