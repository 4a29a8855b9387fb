//! ListenerSet attachment (Gateway API v1.6 `ListenerSet`, GEP-1713).
//!
//! - A ListenerSet attaches to the Gateway named by `spec.parentRef` only when
//!   the Gateway's `allowedListeners.namespaces` admits its namespace
//!   (default `None`) → otherwise `Accepted=False/NotAllowed`.
//! - Its listeners are merged after the Gateway's own, ListenerSets ordered
//!   oldest first, then by `namespace/name`; a conflict between listeners of
//!   two objects is resolved in that order (the earlier listener wins), while
//!   indistinct listeners of one object are all conflicted.
//! - A ListenerSet with no valid listener is `Accepted=False/ListenersNotValid`;
//!   the Gateway reports the number attached in `attachedListenerSets`.
//! - References from a ListenerSet (certificates) need ReferenceGrants from
//!   kind ListenerSet; the Gateway's grants are not inherited.

use portcullis_store::status::{GatewayStatus, ListenerStatus, Status, Statuses};
use portcullis_store::{Kind, ObjectKey, ObjectRef};

use crate::Input;
use crate::conditions::*;
use crate::conflicts::listeners_not_valid;
use crate::gateway::{GatewayState, ListenerState, Owner, listener};
use crate::gateway_status::listener_status;
use crate::model::{ListenerSetSpec, Obj, namespace_labels};
use crate::refs::Grants;

/// A ListenerSet attached (or refused) by a Gateway.
#[derive(Clone, Debug)]
pub(crate) struct ListenerSetState {
    pub key: ObjectKey,
    pub generation: i64,
}

/// Merge the listeners of every admitted ListenerSet into its Gateway; refuse the others.
pub(crate) fn attach(
    input: &Input<'_>,
    gws: &mut [GatewayState],
    grants: &Grants,
    statuses: &mut Statuses,
) {
    let mut sets: Vec<Obj<ListenerSetSpec>> = input
        .snapshot
        .listener_sets
        .values()
        .map(|l| Obj::of(&l.metadata, &l.spec))
        .collect();
    sets.sort_by_cached_key(|l| l.metadata.age_key());
    for ls in sets {
        let key = ObjectKey::new(ls.metadata.namespace.clone(), ls.metadata.name.clone());
        let pr = &ls.spec.parent_ref;
        if pr
            .group
            .as_deref()
            .unwrap_or(portcullis_store::GATEWAY_GROUP)
            != portcullis_store::GATEWAY_GROUP
            || pr.kind.as_deref().unwrap_or("Gateway") != "Gateway"
        {
            continue;
        }
        let gw_key = ObjectKey::new(
            pr.namespace
                .clone()
                .unwrap_or_else(|| key.namespace.clone()),
            pr.name.clone(),
        );
        let Some(gw) = gws.iter_mut().find(|g| g.key == gw_key) else {
            continue;
        };
        let g = ls.metadata.generation;
        let allowed = gw
            .spec
            .allowed_listeners
            .as_ref()
            .and_then(|a| a.namespaces.clone())
            .unwrap_or_default();
        let admitted = match allowed.from.as_deref().unwrap_or("None") {
            "All" => true,
            "Same" => key.namespace == gw.key.namespace,
            "Selector" => allowed
                .selector
                .as_ref()
                .is_some_and(|s| s.matches(&namespace_labels(input.snapshot, &key.namespace))),
            _ => false,
        };
        if !admitted {
            let msg = format!(
                "Gateway {} does not allow ListenerSets from namespace {:?} (spec.allowedListeners)",
                gw.key, key.namespace
            );
            statuses.insert(
                ObjectRef {
                    kind: Kind::ListenerSet,
                    key,
                },
                Status::Gateway(GatewayStatus {
                    conditions: vec![
                        condition(ACCEPTED, false, Reason::NotAllowed, msg.clone(), g),
                        condition(PROGRAMMED, false, Reason::NotAllowed, msg, g),
                    ],
                    ..Default::default()
                }),
            );
            continue;
        }
        for l in &ls.spec.listeners {
            gw.listeners.push(listener(
                input,
                grants,
                &key,
                "ListenerSet",
                Owner::ListenerSet(key.clone()),
                g,
                l,
            ));
        }
        gw.listener_sets
            .push(ListenerSetState { key, generation: g });
    }
}

/// ListenerSet statuses (after routes attached); returns the Gateway's `attachedListenerSets`.
pub(crate) fn finish(
    gw: &GatewayState,
    gateway_accepted: bool,
    bind_err: &dyn Fn(&ListenerState) -> Option<String>,
    statuses: &mut Statuses,
) -> Option<i32> {
    let allows = gw
        .spec
        .allowed_listeners
        .as_ref()
        .and_then(|a| a.namespaces.as_ref())
        .and_then(|n| n.from.as_deref())
        .is_some_and(|f| f != "None");
    let mut attached = 0;
    for ls in &gw.listener_sets {
        let g = ls.generation;
        let mine: Vec<&ListenerState> = gw
            .listeners
            .iter()
            .filter(|l| l.owner == Owner::ListenerSet(ls.key.clone()))
            .collect();
        let listeners: Vec<ListenerStatus> = mine
            .iter()
            .map(|l| listener_status(l, bind_err(l).as_ref()))
            .collect();
        // A listener counts when it is served: accepted, not conflicted, references resolved.
        let valid = mine.iter().filter(|l| l.programmed()).count();
        let conditions = if !gateway_accepted {
            let msg = format!("parent Gateway {} is not accepted", gw.key);
            vec![
                condition(ACCEPTED, false, Reason::ParentNotAccepted, msg.clone(), g),
                condition(PROGRAMMED, false, Reason::ParentNotAccepted, msg, g),
            ]
        } else if valid == 0 {
            let msg = listeners_not_valid(&mine, ListenerState::programmed)
                .unwrap_or_else(|| "the ListenerSet has no listener".into());
            vec![
                condition(ACCEPTED, false, Reason::ListenersNotValid, msg.clone(), g),
                condition(PROGRAMMED, false, Reason::ListenersNotValid, msg, g),
            ]
        } else {
            attached += 1;
            let (reason, msg) = match listeners_not_valid(&mine, ListenerState::programmed) {
                Some(m) => (Reason::ListenersNotValid, m),
                None => (Reason::Accepted, "ListenerSet is attached".to_string()),
            };
            vec![
                condition(ACCEPTED, true, reason, msg, g),
                condition(
                    PROGRAMMED,
                    true,
                    Reason::Programmed,
                    "ListenerSet listeners are served",
                    g,
                ),
            ]
        };
        statuses.insert(
            ObjectRef {
                kind: Kind::ListenerSet,
                key: ls.key.clone(),
            },
            Status::Gateway(GatewayStatus {
                conditions,
                listeners,
                ..Default::default()
            }),
        );
    }
    (allows || attached > 0).then_some(attached)
}
