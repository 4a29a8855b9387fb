//! The features this implementation claims in `GatewayClass.status.supportedFeatures`.
//!
//! The list is verified by the conformance runner: a feature is listed only
//! when every conformance scenario that needs it passes (`scripts/conformance`).

/// Supported features, sorted by name as the spec requires.
pub const SUPPORTED_FEATURES: &[&str] =
    &["Gateway", "GatewayPort8080", "HTTPRoute", "ReferenceGrant"];
