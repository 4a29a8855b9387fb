//! Conditions in plain words: what is wrong, and how to fix it.
//!
//! The reasons are the Gateway API's (and Portcullis' own, for policies);
//! the condition's message, written by translation, says which object or
//! field is at fault and is shown next to these words.

/// Whether a condition is good news.
pub fn is_ok(type_: &str, status: &str) -> bool {
    match type_ {
        "Conflicted" | "PartiallyInvalid" => status == "False",
        _ => status == "True",
    }
}

/// `(what it means, how to fix it)` for a condition that is not good news;
/// `None` for a healthy one.
pub fn explain(type_: &str, status: &str, reason: &str) -> Option<(&'static str, &'static str)> {
    if is_ok(type_, status) {
        return None;
    }
    Some(match reason {
        "NotAllowedByListeners" => (
            "no listener of the parent lets this route attach",
            "check the listener's allowedRoutes (namespaces: Same/All/Selector, kinds) and the route's namespace and kind",
        ),
        "NoMatchingListenerHostname" => (
            "none of the route's hostnames intersects a listener hostname",
            "add a hostname the listener serves (or remove the route's hostnames), or fix the listener's hostname",
        ),
        "NoMatchingParent" => (
            "the parentRef's sectionName or port names no listener of the parent",
            "use the name and port of an existing listener, or leave them out",
        ),
        "BackendNotFound" => (
            "a backendRef names a Service that does not exist; requests sent to it are answered 500",
            "create the Service (and its EndpointSlice in standalone mode) or correct the backendRef's name, namespace and port",
        ),
        "RefNotPermitted" => (
            "a reference crosses namespaces without a ReferenceGrant allowing it",
            "add a ReferenceGrant in the referenced object's namespace that allows this kind from this namespace",
        ),
        "InvalidKind" => (
            "a reference names a kind this gateway does not support",
            "reference a Service (core group), or a supported kind",
        ),
        "UnsupportedValue" | "UnsupportedProtocol" => (
            "a field holds a value this gateway does not support",
            "see the message for the field, and use a supported value",
        ),
        "InvalidCertificateRef" => (
            "the listener's certificate Secret is missing, not allowed, or not a valid certificate and key",
            "create a kubernetes.io/tls Secret with tls.crt and a matching tls.key (and a ReferenceGrant across namespaces)",
        ),
        "InvalidRouteKinds" => (
            "the listener's allowedRoutes.kinds lists a kind it cannot serve",
            "list only route kinds that fit the listener's protocol (HTTPRoute/GRPCRoute for HTTP(S), TLSRoute, TCPRoute, UDPRoute)",
        ),
        "HostnameConflict" | "ProtocolConflict" => (
            "this listener cannot be told apart from another one on the same port, so neither is served",
            "give the listeners different hostnames, or move one to another port",
        ),
        "ListenersNotValid" => (
            "some listeners of this Gateway are not valid and are not served",
            "look at the listeners' conditions below",
        ),
        "PortUnavailable" => (
            "the port could not be bound (in use, or privileged)",
            "free the port, run with the capability to bind it, or choose another port",
        ),
        "Invalid" | "InvalidParameters" => (
            "the object (or a reference it holds) is not valid",
            "see the message for the field at fault",
        ),
        "TargetNotFound" => (
            "the policy's target does not exist",
            "fix the targetRef's kind, name or sectionName",
        ),
        "Conflicted" | "Overridden" => (
            "another policy of the same kind applies to the same target and wins",
            "merge the policies, or target different objects",
        ),
        "UnsupportedAddress" | "AddressNotAssigned" | "AddressNotUsable" => (
            "the Gateway's address cannot be used",
            "give an address of this host in spec.addresses, or use --address-pool / --bind-address",
        ),
        "Pending" => (
            "not yet processed",
            "wait for the next reconciliation; if it stays, check the controller's log",
        ),
        _ => match type_ {
            "PartiallyInvalid" => (
                "some rules of the route were dropped; the others are served",
                "see the message for the rule and field at fault",
            ),
            "Programmed" => (
                "the configuration is not served by the data plane",
                "see the message and the other conditions",
            ),
            _ => (
                "this condition reports a problem",
                "see the message for the object or field at fault",
            ),
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_conditions_need_no_words_and_problems_get_a_fix() {
        assert!(explain("Accepted", "True", "Accepted").is_none());
        assert!(explain("Conflicted", "False", "NoConflicts").is_none());
        let (what, fix) = explain("ResolvedRefs", "False", "BackendNotFound").unwrap();
        assert!(what.contains("500") && fix.contains("Service"));
        assert!(explain("PartiallyInvalid", "True", "UnsupportedValue").is_some());
        assert!(explain("Programmed", "False", "Whatever").is_some());
    }
}
