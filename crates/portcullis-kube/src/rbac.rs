//! Every Kubernetes API call the controller makes, as RBAC `(group, resource, verb)`,
//! and where it is made ([`Where`]).
//!
//! The Helm chart's ClusterRoles/Roles are checked against [`rules`] by a test
//! (`tests/chart.rs`) for several `watchNamespaces`/`secretNamespaces` values,
//! so the chart grants exactly what the code uses.

use std::collections::BTreeSet;

use crate::scope::Scope;

/// One permission: API group (empty for core), resource (with `/subresource`), verb.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiCall {
    /// API group, `""` for the core group.
    pub group: &'static str,
    /// Resource, e.g. `httproutes` or `httproutes/status`.
    pub resource: &'static str,
    /// Verb: `get`, `list`, `watch`, `create`, `update`, `patch`.
    pub verb: &'static str,
    /// Which namespaces the call is made in.
    pub scope: Where,
}

/// Which namespaces an [`ApiCall`] is made in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Where {
    /// A cluster-scoped resource (GatewayClass, Namespace, IngressClass, TokenReview):
    /// always a ClusterRole.
    Cluster,
    /// A namespaced resource, in every watched namespace (`--watch-namespaces`):
    /// a ClusterRole when every namespace is watched, else a Role in each.
    Watched,
    /// Secrets (`--secret-namespaces`): a ClusterRole when every namespace is
    /// read, else a Role in each Secret namespace.
    Secrets,
    /// The controller's own namespace only (Lease, the stream CA): a Role.
    Own,
}

const fn call(
    group: &'static str,
    resource: &'static str,
    verb: &'static str,
    scope: Where,
) -> ApiCall {
    ApiCall {
        group,
        resource,
        verb,
        scope,
    }
}

const fn c(group: &'static str, resource: &'static str, verb: &'static str) -> ApiCall {
    call(group, resource, verb, Where::Watched)
}

const fn cl(group: &'static str, resource: &'static str, verb: &'static str) -> ApiCall {
    call(group, resource, verb, Where::Cluster)
}

const fn sec(verb: &'static str) -> ApiCall {
    call("", "secrets", verb, Where::Secrets)
}

const fn ns(group: &'static str, resource: &'static str, verb: &'static str) -> ApiCall {
    call(group, resource, verb, Where::Own)
}

/// One RBAC grant: the namespace of its Role (`None`: the ClusterRole), group, resource, verb.
pub type Rule = (Option<String>, &'static str, &'static str, &'static str);

/// The grants the controller needs with `scope`, installed in `own` (its namespace).
pub fn rules(scope: &Scope, own: &str) -> BTreeSet<Rule> {
    let mut out = BTreeSet::new();
    for c in API_CALLS {
        let namespaces: Vec<Option<String>> = match c.scope {
            Where::Cluster => vec![None],
            Where::Watched => scope.watch_lists(),
            Where::Secrets => scope.secret_lists(),
            Where::Own => vec![Some(own.to_string())],
        };
        for ns in namespaces {
            out.insert((ns, c.group, c.resource, c.verb));
        }
    }
    out
}

const GW: &str = "gateway.networking.k8s.io";
const PD: &str = "portcullis.dev";
const NET: &str = "networking.k8s.io";

/// The calls, grouped by purpose.
pub const API_CALLS: &[ApiCall] = &[
    // Reflectors (reflect.rs): list + watch of every kind translation reads.
    cl(GW, "gatewayclasses", "list"),
    cl(GW, "gatewayclasses", "watch"),
    c(GW, "gateways", "list"),
    c(GW, "gateways", "watch"),
    c(GW, "listenersets", "list"),
    c(GW, "listenersets", "watch"),
    c(GW, "httproutes", "list"),
    c(GW, "httproutes", "watch"),
    c(GW, "grpcroutes", "list"),
    c(GW, "grpcroutes", "watch"),
    c(GW, "tlsroutes", "list"),
    c(GW, "tlsroutes", "watch"),
    c(GW, "tcproutes", "list"),
    c(GW, "tcproutes", "watch"),
    c(GW, "udproutes", "list"),
    c(GW, "udproutes", "watch"),
    c(GW, "referencegrants", "list"),
    c(GW, "referencegrants", "watch"),
    c(GW, "backendtlspolicies", "list"),
    c(GW, "backendtlspolicies", "watch"),
    c(PD, "securitypolicies", "list"),
    c(PD, "securitypolicies", "watch"),
    c(PD, "backendtrafficpolicies", "list"),
    c(PD, "backendtrafficpolicies", "watch"),
    c(PD, "clienttrafficpolicies", "list"),
    c(PD, "clienttrafficpolicies", "watch"),
    cl("", "namespaces", "list"),
    cl("", "namespaces", "watch"),
    c("", "services", "list"),
    c("", "services", "watch"),
    c("discovery.k8s.io", "endpointslices", "list"),
    c("discovery.k8s.io", "endpointslices", "watch"),
    c(NET, "ingresses", "list"),
    c(NET, "ingresses", "watch"),
    cl(NET, "ingressclasses", "list"),
    cl(NET, "ingressclasses", "watch"),
    // Secrets and ConfigMaps: metadata-only list + watch, then a get of each referenced one.
    sec("list"),
    sec("watch"),
    sec("get"),
    c("", "configmaps", "list"),
    c("", "configmaps", "watch"),
    c("", "configmaps", "get"),
    // Status writer (status/writer.rs): merge patch of the status subresource,
    // and a get of the object to re-read it after a 409 Conflict.
    cl(GW, "gatewayclasses/status", "patch"),
    c(GW, "gateways/status", "patch"),
    c(GW, "listenersets/status", "patch"),
    c(GW, "httproutes/status", "patch"),
    c(GW, "grpcroutes/status", "patch"),
    c(GW, "tlsroutes/status", "patch"),
    c(GW, "tcproutes/status", "patch"),
    c(GW, "udproutes/status", "patch"),
    c(GW, "backendtlspolicies/status", "patch"),
    c(PD, "securitypolicies/status", "patch"),
    c(PD, "backendtrafficpolicies/status", "patch"),
    c(PD, "clienttrafficpolicies/status", "patch"),
    cl(GW, "gatewayclasses", "get"),
    c(GW, "gateways", "get"),
    c(GW, "listenersets", "get"),
    c(GW, "httproutes", "get"),
    c(GW, "grpcroutes", "get"),
    c(GW, "tlsroutes", "get"),
    c(GW, "tcproutes", "get"),
    c(GW, "udproutes", "get"),
    c(GW, "backendtlspolicies", "get"),
    c(PD, "securitypolicies", "get"),
    c(PD, "backendtrafficpolicies", "get"),
    c(PD, "clienttrafficpolicies", "get"),
    // Ingresses served directly (ingress.rs): `status.loadBalancer`.
    c(NET, "ingresses/status", "patch"),
    c(NET, "ingresses", "get"),
    // Warning events on Ingresses for what is not honoured (ingress.rs).
    c("", "events", "create"),
    // Provisioning (provision/apply.rs): server-side apply, which creates the
    // object when it does not exist (authorised as create) or patches it.
    c("", "serviceaccounts", "create"),
    c("", "serviceaccounts", "patch"),
    c("", "services", "create"),
    c("", "services", "patch"),
    c("apps", "deployments", "create"),
    c("apps", "deployments", "patch"),
    // ... and a get when an object is missing from the watch before the
    // watch has shown it since the apply: lagging, or deleted?
    c("", "serviceaccounts", "get"),
    c("", "services", "get"),
    c("apps", "deployments", "get"),
    // Drift (provision/drift.rs): metadata watch of the provisioned Deployments and ServiceAccounts.
    c("apps", "deployments", "list"),
    c("apps", "deployments", "watch"),
    c("", "serviceaccounts", "list"),
    c("", "serviceaccounts", "watch"),
    // The config stream's CA bundle, one ConfigMap per Gateway (provision/mod.rs).
    c("", "configmaps", "create"),
    c("", "configmaps", "patch"),
    // Config stream (stream/server.rs): authenticate proxies' tokens.
    cl("authentication.k8s.io", "tokenreviews", "create"),
    // Leader election (leader.rs), in the controller's namespace only.
    ns("coordination.k8s.io", "leases", "get"),
    ns("coordination.k8s.io", "leases", "create"),
    ns("coordination.k8s.io", "leases", "update"),
    // The config stream's CA (stream/pki.rs), in the controller's namespace only.
    ns("", "secrets", "get"),
    ns("", "secrets", "create"),
    ns("", "secrets", "update"),
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespaced_install_keeps_only_cluster_scoped_kinds_in_the_cluster_role() {
        let all = rules(&Scope::all(), "sys");
        assert!(all.contains(&(None, "", "secrets", "list")));
        let w = vec!["a".to_string(), "b".to_string()];
        let scoped = rules(&Scope::new(&w, &[]).unwrap(), "sys");
        let cluster: BTreeSet<&str> = scoped
            .iter()
            .filter(|r| r.0.is_none())
            .map(|r| r.2)
            .collect();
        assert_eq!(
            cluster,
            [
                "gatewayclasses",
                "gatewayclasses/status",
                "ingressclasses",
                "namespaces",
                "tokenreviews"
            ]
            .into()
        );
        for ns in ["a", "b"] {
            let ns = Some(ns.to_string());
            assert!(scoped.contains(&(ns.clone(), GW, "httproutes", "watch")));
            assert!(scoped.contains(&(ns.clone(), "", "secrets", "get")));
            assert!(scoped.contains(&(ns, "apps", "deployments", "patch")));
        }
        // Secrets in one namespace only; everything else cluster-wide.
        let s = rules(&Scope::new(&[], &["certs".to_string()]).unwrap(), "sys");
        let secret_ns: BTreeSet<Option<String>> = s
            .iter()
            .filter(|r| r.2 == "secrets" && r.3 == "list")
            .map(|r| r.0.clone())
            .collect();
        assert_eq!(secret_ns, [Some("certs".to_string())].into());
        assert!(s.contains(&(None, GW, "httproutes", "watch")));
        // The stream CA stays readable in the controller's namespace.
        assert!(s.contains(&(Some("sys".into()), "", "secrets", "create")));
    }
}
