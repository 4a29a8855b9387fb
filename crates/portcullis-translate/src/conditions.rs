//! Condition types and reasons, named as in the Gateway API (`apis/v1/*_types.go`).

use portcullis_store::status::Condition;

pub(crate) const ACCEPTED: &str = "Accepted";
pub(crate) const PROGRAMMED: &str = "Programmed";
pub(crate) const RESOLVED_REFS: &str = "ResolvedRefs";
pub(crate) const CONFLICTED: &str = "Conflicted";
pub(crate) const PARTIALLY_INVALID: &str = "PartiallyInvalid";
pub(crate) const SUPPORTED_VERSION: &str = "SupportedVersion";

macro_rules! reasons {
    ($($(#[$doc:meta])* $name:ident,)*) => {
        /// Every condition reason translation writes (and no other), spelled as in the Gateway
        /// API (`apis/v1/*_types.go`, `apis/v1alpha2/policy_types.go`).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub(crate) enum Reason {
            $($(#[$doc])* $name,)*
        }

        impl Reason {
            /// Every reason.
            #[cfg(test)]
            pub const ALL: &[Reason] = &[$(Reason::$name,)*];

            /// The reason as written in a status.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Reason::$name => stringify!($name),)*
                }
            }
        }
    };
}

reasons! {
    // Positive reasons.
    Accepted,
    Programmed,
    ResolvedRefs,
    NoConflicts,
    SupportedVersion,
    /// `InsecureFrontendValidationMode=True` (GEP-91).
    ConfigurationChanged,
    // GatewayClass.
    InvalidParameters,
    // Gateway and listeners.
    ListenersNotValid,
    AddressNotAssigned,
    AddressNotUsable,
    UnsupportedAddress,
    Pending,
    Invalid,
    PortUnavailable,
    UnsupportedProtocol,
    InvalidRouteKinds,
    InvalidCertificateRef,
    InvalidCACertificateRef,
    InvalidCACertificateKind,
    InvalidClientCertificateRef,
    NoValidCACertificate,
    RefNotPermitted,
    ProtocolConflict,
    HostnameConflict,
    // ListenerSet.
    NotAllowed,
    ParentNotAccepted,
    // Routes.
    NoMatchingParent,
    NotAllowedByListeners,
    NoMatchingListenerHostname,
    UnsupportedValue,
    BackendNotFound,
    InvalidKind,
    // Policies (GEP-713).
    Conflicted,
    TargetNotFound,
    Overridden,
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A condition of `type_` with a typed reason; see [`Condition::new`].
pub(crate) fn condition(
    type_: &str,
    ok: bool,
    reason: Reason,
    message: impl Into<String>,
    generation: i64,
) -> Condition {
    Condition::new(type_, ok, reason.as_str(), message, generation)
}

/// A `(reason, message)` pair explaining why a condition is False.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Problem {
    pub reason: Reason,
    pub message: String,
}

impl Problem {
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Problem {
            reason,
            message: message.into(),
        }
    }
}

/// `True` with `reason` when `problem` is `None`, else `False` with the problem.
pub(crate) fn cond(
    type_: &str,
    ok_reason: Reason,
    ok_message: &str,
    problem: Option<&Problem>,
    generation: i64,
) -> Condition {
    match problem {
        None => condition(type_, true, ok_reason, ok_message, generation),
        Some(p) => condition(type_, false, p.reason, p.message.clone(), generation),
    }
}

#[cfg(test)]
mod tests {
    use super::Reason;

    /// The golden cases teach the spec: every reason translation can write
    /// is shown by at least one of them. (`Pending` is only a placeholder
    /// that address assignment always replaces.)
    #[test]
    fn every_reason_has_a_golden_case() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
        let outputs: String = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().ends_with(".out.yaml"))
            .map(|p| std::fs::read_to_string(p).unwrap())
            .collect();
        let missing: Vec<&str> = Reason::ALL
            .iter()
            .filter(|r| **r != Reason::Pending)
            .map(|r| r.as_str())
            .filter(|r| !outputs.contains(&format!("reason: {r}\n")))
            .collect();
        assert!(
            missing.is_empty(),
            "reasons without a golden case: {missing:?}"
        );
    }
}
