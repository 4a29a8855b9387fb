//! Listeners that cannot all be served (Gateway `spec.listeners`, "Distinct
//! Listeners" and "Handling indistinct Listeners"; ListenerSet
//! `spec.listeners` precedence): `Conflicted=True` with `ProtocolConflict` or
//! `HostnameConflict`, and the `ListenersNotValid` message naming them.

use crate::conditions::Reason;
use crate::gateway::{ListenerState, Owner, Proto};

/// Why two listeners cannot both be served, if they cannot (spec: "Handling
/// indistinct Listeners"): `ProtocolConflict` when their protocols cannot share
/// the port (a TCP listener shares it with anything, or cleartext HTTP with
/// TLS), `HostnameConflict` when they can but nothing tells their traffic
/// apart (same hostname; TCP and UDP listeners have no hostname to tell them
/// apart). Listeners on a TCP and a UDP socket never conflict.
fn indistinct(a: &ListenerState, b: &ListenerState) -> Option<Reason> {
    let (Some(pa), Some(pb)) = (a.protocol, b.protocol) else {
        return None;
    };
    if a.accepted.is_some()
        || b.accepted.is_some()
        || a.spec.port != b.spec.port
        || pa.socket() != pb.socket()
    {
        return None;
    }
    if pa.family() != pb.family() {
        return Some(Reason::ProtocolConflict);
    }
    let hostname_matters = matches!(pa, Proto::Http | Proto::Https | Proto::Tls);
    (!hostname_matters || a.spec.hostname == b.spec.hostname).then_some(Reason::HostnameConflict)
}

/// How listener `b` is named in a message about listener `a`: `listener "b"
/// (HTTP)`, `the Gateway's listener "b" (HTTP)` or `listener "b" (HTTP) of
/// ListenerSet ns/name` when they belong to different objects.
fn describe(a: &ListenerState, b: &ListenerState) -> String {
    let (name, proto) = (&b.spec.name, &b.spec.protocol);
    match &b.owner {
        _ if a.owner == b.owner => format!("listener {name:?} ({proto})"),
        Owner::Gateway => format!("the Gateway's listener {name:?} ({proto})"),
        Owner::ListenerSet(k) => format!("listener {name:?} ({proto}) of ListenerSet {k}"),
    }
}

/// Mark the listeners that are not distinct (spec: `Conflicted=True`).
///
/// Listeners are in precedence order: the Gateway's own, then each
/// ListenerSet's (oldest first, then by `namespace/name`), and are taken one
/// object at a time:
///
/// 1. a listener indistinct from a listener of an earlier object that is not
///    itself conflicted is conflicted (the merged-list precedence of
///    ListenerSet `spec.listeners`: the earlier listener keeps serving);
/// 2. among the object's remaining listeners no winner is picked: every
///    indistinct listener is conflicted (Gateway `spec.listeners`, "Handling
///    indistinct Listeners").
pub(crate) fn conflicts(listeners: &mut [ListenerState]) {
    let n = listeners.len();
    let mut marks: Vec<Option<(Reason, String)>> = vec![None; n];
    let mut start = 0;
    while start < n {
        let owner = &listeners[start].owner;
        let end = start
            + listeners[start..]
                .iter()
                .take_while(|l| &l.owner == owner)
                .count();
        let served_before: Vec<usize> = (0..start).filter(|&j| marks[j].is_none()).collect();
        for i in start..end {
            marks[i] = conflict(&listeners[i], served_before.iter().map(|&j| &listeners[j]));
        }
        let remaining: Vec<usize> = (start..end).filter(|&i| marks[i].is_none()).collect();
        for &i in &remaining {
            let others = remaining
                .iter()
                .filter(|&&j| j != i)
                .map(|&j| &listeners[j]);
            marks[i] = conflict(&listeners[i], others);
        }
        start = end;
    }
    for (l, m) in listeners.iter_mut().zip(marks) {
        l.conflicted = m;
    }
}

/// Whether `a` is indistinct from any of `others`, as the reason and message
/// of its `Conflicted` condition.
fn conflict<'a>(
    a: &ListenerState,
    others: impl Iterator<Item = &'a ListenerState>,
) -> Option<(Reason, String)> {
    let mut reason = None;
    let mut with = Vec::new();
    for b in others {
        if let Some(r) = indistinct(a, b) {
            // A protocol conflict says more than a hostname conflict.
            if reason != Some(Reason::ProtocolConflict) {
                reason = Some(r);
            }
            with.push(describe(a, b));
        }
    }
    let r = reason?;
    let message = if r == Reason::ProtocolConflict {
        format!(
            "protocol {} cannot share port {} with {}; conflicted listeners are not served",
            a.spec.protocol,
            a.spec.port,
            with.join(", ")
        )
    } else {
        let host = match a.spec.hostname.as_deref() {
            Some(h) => format!("hostname {h:?}"),
            None => "no hostname".to_string(),
        };
        format!(
            "port {} and {host} are also used by {}: traffic cannot be told apart; conflicted listeners are not served",
            a.spec.port,
            with.join(", ")
        )
    };
    Some((r, message))
}

/// The message of a `ListenersNotValid` condition, naming the conflicted
/// listeners, the otherwise invalid ones and the valid ones (`valid` says
/// which count as valid); `None` when every listener is valid.
pub(crate) fn listeners_not_valid(
    listeners: &[&ListenerState],
    valid: fn(&ListenerState) -> bool,
) -> Option<String> {
    let names = |f: &dyn Fn(&ListenerState) -> bool| -> Vec<String> {
        listeners
            .iter()
            .filter(|l| f(l))
            .map(|l| format!("{:?}", l.spec.name))
            .collect()
    };
    let conflicted = names(&|l| l.conflicted.is_some());
    let invalid = names(&|l| l.conflicted.is_none() && !valid(l));
    if conflicted.is_empty() && invalid.is_empty() {
        return None;
    }
    let mut parts = vec![];
    if !conflicted.is_empty() {
        parts.push(format!(
            "conflicted listeners (not served): {}",
            conflicted.join(", ")
        ));
    }
    if !invalid.is_empty() {
        parts.push(format!(
            "invalid listeners (not served): {}",
            invalid.join(", ")
        ));
    }
    let ok = names(&|l| valid(l));
    parts.push(if ok.is_empty() {
        "no listener is valid".to_string()
    } else {
        format!("valid listeners: {}", ok.join(", "))
    });
    Some(parts.join("; "))
}
