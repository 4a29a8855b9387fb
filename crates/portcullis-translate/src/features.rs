//! The features this implementation claims in `GatewayClass.status.supportedFeatures`.
//!
//! The list is verified by the conformance runner: `scripts/conformance` runs
//! every upstream scenario whose features are all claimed here, so a feature is
//! listed only when every scenario that needs it passes. Not claimed:
//! `GatewayStaticAddresses` (its scenario needs addresses a cluster's load
//! balancer gives out) and the Mesh features (no mesh mode).
//! `GatewayInfrastructurePropagation` is claimed only where Portcullis
//! provisions infrastructure ([`crate::Options::provisioning`]: Kubernetes
//! mode): there `spec.infrastructure.labels`/`annotations` are copied onto
//! every generated object.

/// Supported features, sorted by name as the spec requires.
pub const SUPPORTED_FEATURES: &[&str] = &[
    "BackendTLSPolicy",
    "BackendTLSPolicySANValidation",
    "GRPCRoute",
    "GRPCRouteNamedRouteRule",
    "Gateway",
    "GatewayAddressEmpty",
    "GatewayBackendClientCertificate",
    "GatewayFrontendClientCertificateValidation",
    "GatewayFrontendClientCertificateValidationInsecureFallback",
    "GatewayHTTPListenerIsolation",
    "GatewayHTTPSListenerDetectMisdirectedRequests",
    "GatewayPort8080",
    "HTTPRoute",
    "HTTPRoute303RedirectStatusCode",
    "HTTPRoute307RedirectStatusCode",
    "HTTPRoute308RedirectStatusCode",
    "HTTPRouteBackendProtocolH2C",
    "HTTPRouteBackendProtocolWebSocket",
    "HTTPRouteBackendRequestHeaderModification",
    "HTTPRouteBackendTimeout",
    "HTTPRouteCORS",
    "HTTPRouteDestinationPortMatching",
    "HTTPRouteHostRewrite",
    "HTTPRouteMethodMatching",
    "HTTPRouteNamedRouteRule",
    "HTTPRouteParentRefPort",
    "HTTPRoutePathRedirect",
    "HTTPRoutePathRewrite",
    "HTTPRoutePortRedirect",
    "HTTPRouteQueryParamMatching",
    "HTTPRouteRequestMirror",
    "HTTPRouteRequestMultipleMirrors",
    "HTTPRouteRequestPercentageMirror",
    "HTTPRouteRequestTimeout",
    "HTTPRouteResponseHeaderModification",
    "HTTPRouteRetry",
    "HTTPRouteRetryBackendTimeout",
    "HTTPRouteRetryConnectionError",
    "HTTPRouteSchemeRedirect",
    "ListenerSet",
    "ReferenceGrant",
    "TCPRoute",
    "TLSRoute",
    "TLSRouteModeMixed",
    "TLSRouteModeTerminate",
    "UDPRoute",
];

/// Claimed where Portcullis provisions a proxy per Gateway.
pub const PROVISIONING_FEATURES: &[&str] = &["GatewayInfrastructurePropagation"];

/// The features claimed with these options, sorted by name.
pub fn supported(options: &crate::Options) -> Vec<&'static str> {
    let mut v: Vec<&'static str> = SUPPORTED_FEATURES.to_vec();
    if options.provisioning {
        v.extend(PROVISIONING_FEATURES);
    }
    v.sort_unstable();
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sorted_and_provisioning_adds_infrastructure_propagation() {
        let standalone = supported(&crate::Options::default());
        assert!(standalone.is_sorted(), "the spec wants them sorted");
        assert!(!standalone.contains(&"GatewayInfrastructurePropagation"));
        let kube = supported(&crate::Options {
            provisioning: true,
            ..Default::default()
        });
        assert!(kube.is_sorted());
        assert!(kube.contains(&"GatewayInfrastructurePropagation"));
        assert_eq!(kube.len(), standalone.len() + PROVISIONING_FEATURES.len());
    }
}
