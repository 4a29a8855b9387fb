//! Every Kubernetes API call the controller makes, as RBAC `(group, resource, verb)`.
//!
//! The Helm chart's ClusterRole/Role are checked against this list by a test
//! (`tests/chart.rs`), so the chart grants exactly what the code uses.

/// One permission: API group (empty for core), resource (with `/subresource`), verb.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiCall {
    /// API group, `""` for the core group.
    pub group: &'static str,
    /// Resource, e.g. `httproutes` or `httproutes/status`.
    pub resource: &'static str,
    /// Verb: `get`, `list`, `watch`, `create`, `update`, `patch`.
    pub verb: &'static str,
    /// Whether it is granted in the controller's own namespace only (a Role), not cluster-wide.
    pub namespaced: bool,
}

const fn c(group: &'static str, resource: &'static str, verb: &'static str) -> ApiCall {
    ApiCall {
        group,
        resource,
        verb,
        namespaced: false,
    }
}

const fn ns(group: &'static str, resource: &'static str, verb: &'static str) -> ApiCall {
    ApiCall {
        group,
        resource,
        verb,
        namespaced: true,
    }
}

const GW: &str = "gateway.networking.k8s.io";
const PD: &str = "portcullis.dev";
const NET: &str = "networking.k8s.io";

/// The calls, grouped by purpose.
pub const API_CALLS: &[ApiCall] = &[
    // Reflectors (reflect.rs): list + watch of every kind translation reads.
    c(GW, "gatewayclasses", "list"),
    c(GW, "gatewayclasses", "watch"),
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
    c("", "namespaces", "list"),
    c("", "namespaces", "watch"),
    c("", "services", "list"),
    c("", "services", "watch"),
    c("discovery.k8s.io", "endpointslices", "list"),
    c("discovery.k8s.io", "endpointslices", "watch"),
    c(NET, "ingresses", "list"),
    c(NET, "ingresses", "watch"),
    c(NET, "ingressclasses", "list"),
    c(NET, "ingressclasses", "watch"),
    // Secrets and ConfigMaps: metadata-only list + watch, then a get of each referenced one.
    c("", "secrets", "list"),
    c("", "secrets", "watch"),
    c("", "secrets", "get"),
    c("", "configmaps", "list"),
    c("", "configmaps", "watch"),
    c("", "configmaps", "get"),
    // Status writer (status/writer.rs): merge patch of the status subresource,
    // and a get of the object to re-read it after a 409 Conflict.
    c(GW, "gatewayclasses/status", "patch"),
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
    c(GW, "gatewayclasses", "get"),
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
    // Drift (provision/drift.rs): metadata watch of the provisioned Deployments and ServiceAccounts.
    c("apps", "deployments", "list"),
    c("apps", "deployments", "watch"),
    c("", "serviceaccounts", "list"),
    c("", "serviceaccounts", "watch"),
    // The config stream's CA bundle, one ConfigMap per Gateway (provision/mod.rs).
    c("", "configmaps", "create"),
    c("", "configmaps", "patch"),
    // Config stream (stream/server.rs): authenticate proxies' tokens.
    c("authentication.k8s.io", "tokenreviews", "create"),
    // Leader election (leader.rs), in the controller's namespace only.
    ns("coordination.k8s.io", "leases", "get"),
    ns("coordination.k8s.io", "leases", "create"),
    ns("coordination.k8s.io", "leases", "update"),
    // The config stream's CA (stream/pki.rs), in the controller's namespace only.
    ns("", "secrets", "get"),
    ns("", "secrets", "create"),
    ns("", "secrets", "update"),
];
