//! Condition types and reasons, named as in the Gateway API (`apis/v1/*_types.go`).

use portcullis_store::status::Condition;

pub(crate) const ACCEPTED: &str = "Accepted";
pub(crate) const PROGRAMMED: &str = "Programmed";
pub(crate) const RESOLVED_REFS: &str = "ResolvedRefs";
pub(crate) const CONFLICTED: &str = "Conflicted";
pub(crate) const PARTIALLY_INVALID: &str = "PartiallyInvalid";
pub(crate) const SUPPORTED_VERSION: &str = "SupportedVersion";
pub(crate) const OVERLAPPING_TLS: &str = "OverlappingTLSConfig";

/// A `(reason, message)` pair explaining why a condition is False.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Problem {
    pub reason: &'static str,
    pub message: String,
}

impl Problem {
    pub fn new(reason: &'static str, message: impl Into<String>) -> Self {
        Problem {
            reason,
            message: message.into(),
        }
    }
}

/// `True` with `reason` when `problem` is `None`, else `False` with the problem.
pub(crate) fn cond(
    type_: &str,
    ok_reason: &str,
    ok_message: &str,
    problem: Option<&Problem>,
    generation: i64,
) -> Condition {
    match problem {
        None => Condition::new(type_, true, ok_reason, ok_message, generation),
        Some(p) => Condition::new(type_, false, p.reason, p.message.clone(), generation),
    }
}
