//! `portcullis import ingress`: networking.k8s.io/v1 Ingresses, with their
//! ingress-nginx annotations, → Gateway API resources and Portcullis policies
//! that reproduce them, and a report of every annotation.
//!
//! The conversion is a pure function of the input texts and [`Options`]:
//! [`convert`] returns the objects (sorted, each naming the Ingresses it comes
//! from) and the [`Report`]. [`table::ANNOTATIONS`] is the annotation table,
//! data from which the migration guide's table is generated
//! ([`table::markdown`]).
//!
//! What becomes what:
//! - a Gateway per IngressClass (named after the class): an HTTP listener and,
//!   per TLS host of the class's Ingresses, an HTTPS listener with the host's
//!   Secret (`ssl-passthrough` hosts: a TLS listener in `Passthrough` mode);
//! - an HTTPRoute per Ingress host (`<ingress>-<host>`), one rule per path:
//!   `Exact` → `Exact`, `Prefix` → `PathPrefix` (both by path element),
//!   `ImplementationSpecific` → `PathPrefix`, or `RegularExpression` for
//!   paths with regular-expression characters under `use-regex`;
//!   `defaultBackend` → a catch-all route (`<ingress>-default-backend`);
//! - canary Ingresses merged into their primary's rules;
//! - a SecurityPolicy and a BackendTrafficPolicy per Ingress that needs one,
//!   BackendTLSPolicies per Service for HTTPS backends, converted Secrets, and
//!   ReferenceGrants for references across namespaces.
#![deny(missing_docs)]

mod annotations;
mod convert;
pub mod input;
mod output;
mod paths;
pub mod report;
mod secrets;
pub mod serve;
pub mod table;

pub use input::Source;
pub use output::Object;
pub use report::{Outcome, Report};

/// Conversion options.
#[derive(Clone, Debug)]
pub struct Options {
    /// `gatewayClassName` of the Gateways (a GatewayClass of that name for
    /// Portcullis' controller is part of the output).
    pub gateway_class: String,
    /// Namespace of Ingresses (and other inputs) that do not say.
    pub default_namespace: String,
    /// Namespace of the Gateways (default: `default_namespace`).
    pub gateway_namespace: Option<String>,
    /// Port of the HTTP listeners.
    pub http_port: u16,
    /// Port of the HTTPS and TLS listeners.
    pub https_port: u16,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            gateway_class: "portcullis".into(),
            default_namespace: "default".into(),
            gateway_namespace: None,
            http_port: 80,
            https_port: 443,
        }
    }
}

/// An input that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// Not YAML.
    #[error("{file}: {message}")]
    Yaml {
        /// The file.
        file: String,
        /// The parser's message.
        message: String,
    },
    /// An object that does not decode as its kind.
    #[error("{file}: {kind} {name}: {message}")]
    Object {
        /// The file.
        file: String,
        /// Its kind.
        kind: String,
        /// Its name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// No Ingress in the input.
    #[error("no networking.k8s.io/v1 Ingress in the input")]
    NoIngress,
}

/// The result of a conversion.
#[derive(Clone, Debug)]
pub struct Conversion {
    /// The objects, sorted by kind, namespace and name.
    pub objects: Vec<Object>,
    /// The report.
    pub report: Report,
}

impl Conversion {
    /// Every object as one YAML stream, each with a comment naming its origin.
    pub fn yaml(&self) -> String {
        output::stream(&self.objects)
    }

    /// One YAML stream per kind: (`<kind>.yaml`, text), sorted by file name.
    pub fn files(&self) -> Vec<(String, String)> {
        output::files(&self.objects)
    }
}

/// Convert the Ingresses in `sources`.
pub fn convert(sources: &[Source], options: &Options) -> Result<Conversion, ImportError> {
    let inputs = input::read(sources, &options.default_namespace)?;
    if inputs.ingresses.is_empty() {
        return Err(ImportError::NoIngress);
    }
    Ok(convert::run(&inputs, options))
}

/// Convert Ingresses already read (the file and Kubernetes sources have
/// typed objects), whatever their class; see [`serve`] for the Ingresses
/// Portcullis serves itself.
pub fn convert_inputs(inputs: &input::Inputs, options: &Options) -> Conversion {
    convert::run(inputs, options)
}

/// A number of seconds as a Gateway API duration (`^([0-9]{1,5}(h|m|s|ms)){1,4}$`).
pub(crate) fn duration(secs: u64) -> String {
    if secs <= 99_999 {
        return format!("{secs}s");
    }
    let (h, m, s) = (secs / 3600, secs % 3600 / 60, secs % 60);
    let mut out = format!("{}h", h.min(99_999));
    if m > 0 {
        out.push_str(&format!("{m}m"));
    }
    if s > 0 {
        out.push_str(&format!("{s}s"));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn durations_fit_the_gateway_api_pattern() {
        assert_eq!(super::duration(60), "60s");
        assert_eq!(super::duration(1_728_000), "480h");
        assert_eq!(super::duration(172_861), "48h1m1s");
    }
}
