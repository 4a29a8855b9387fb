//! The embedded Gateway API v1.6.1 CRDs (experimental channel) and their
//! per-version schemas, each parsed once, on first use.

use std::sync::LazyLock;

use portcullis_store::Kind;
use serde_json::Value;

use crate::schema::Schema;

/// One served version of a CRD.
#[derive(Debug)]
pub(crate) struct CrdVersion {
    /// The version name, e.g. `v1beta1`.
    pub(crate) name: String,
    /// Whether the API server serves it.
    pub(crate) served: bool,
    /// Its `openAPIV3Schema`.
    pub(crate) schema: Schema,
}

/// A parsed CRD.
#[derive(Debug)]
pub(crate) struct Crd {
    /// Every version, served or not.
    pub(crate) versions: Vec<CrdVersion>,
    /// Whether `status` is a subresource (then it is not written with the object).
    pub(crate) status_subresource: bool,
}

impl Crd {
    fn load(text: &str) -> Result<Crd, String> {
        let doc: Value = serde_saphyr::from_str(text).map_err(|e| e.to_string())?;
        let versions = doc
            .pointer("/spec/versions")
            .and_then(Value::as_array)
            .ok_or("CRD without spec.versions")?;
        let mut out = Vec::new();
        let mut status_subresource = false;
        for v in versions {
            let name = v
                .get("name")
                .and_then(Value::as_str)
                .ok_or("version without name")?;
            let schema = v
                .pointer("/schema/openAPIV3Schema")
                .ok_or("version without schema")?;
            status_subresource |= v.pointer("/subresources/status").is_some();
            out.push(CrdVersion {
                name: name.to_string(),
                served: v.get("served").and_then(Value::as_bool).unwrap_or(false),
                schema: Schema::parse(schema).map_err(|e| format!("{name}: {e}"))?,
            });
        }
        Ok(Crd {
            versions: out,
            status_subresource,
        })
    }

    /// The served version named `version`.
    pub(crate) fn served(&self, version: &str) -> Option<&CrdVersion> {
        self.versions.iter().find(|v| v.served && v.name == version)
    }

    /// Names of the served versions.
    pub(crate) fn served_names(&self) -> Vec<&str> {
        self.versions
            .iter()
            .filter(|v| v.served)
            .map(|v| v.name.as_str())
            .collect()
    }
}

type Slot = LazyLock<Crd>;

macro_rules! crds {
    ($($kind:ident $file:literal),* $(,)?) => {
        /// The CRD of a Gateway API kind.
        pub(crate) fn crd(kind: Kind) -> Option<&'static Crd> {
            $(
                #[allow(non_upper_case_globals)]
                static $kind: Slot = LazyLock::new(|| {
                    Crd::load(include_str!(concat!("../crds/gateway.networking.k8s.io_", $file, ".yaml")))
                        .unwrap_or_else(|e| panic!("embedded CRD {} is invalid: {e}", $file))
                });
            )*
            static SECURITY_POLICY: Slot = LazyLock::new(|| {
                Crd::load(include_str!("../crds/portcullis.dev_securitypolicies.yaml"))
                    .unwrap_or_else(|e| panic!("embedded CRD securitypolicies is invalid: {e}"))
            });
            static BACKEND_TRAFFIC_POLICY: Slot = LazyLock::new(|| {
                Crd::load(include_str!("../crds/portcullis.dev_backendtrafficpolicies.yaml"))
                    .unwrap_or_else(|e| panic!("embedded CRD backendtrafficpolicies is invalid: {e}"))
            });
            static CLIENT_TRAFFIC_POLICY: Slot = LazyLock::new(|| {
                Crd::load(include_str!("../crds/portcullis.dev_clienttrafficpolicies.yaml"))
                    .unwrap_or_else(|e| panic!("embedded CRD clienttrafficpolicies is invalid: {e}"))
            });
            match kind {
                $(Kind::$kind => Some(&*$kind),)*
                Kind::SecurityPolicy => Some(&*SECURITY_POLICY),
                Kind::BackendTrafficPolicy => Some(&*BACKEND_TRAFFIC_POLICY),
                Kind::ClientTrafficPolicy => Some(&*CLIENT_TRAFFIC_POLICY),
                _ => None,
            }
        }

        /// Whether the CRD of `kind` has transition rules (CEL rules reading
        /// `oldSelf`), which need the previous version of an object.
        pub(crate) fn has_transition_rules(kind: Kind) -> bool {
            match kind {
                $(Kind::$kind => include_str!(concat!("../crds/gateway.networking.k8s.io_", $file, ".yaml")).contains("oldSelf"),)*
                _ => false,
            }
        }
    };
}

crds! {
    GatewayClass "gatewayclasses",
    Gateway "gateways",
    ListenerSet "listenersets",
    HTTPRoute "httproutes",
    GRPCRoute "grpcroutes",
    TLSRoute "tlsroutes",
    TCPRoute "tcproutes",
    UDPRoute "udproutes",
    ReferenceGrant "referencegrants",
    BackendTLSPolicy "backendtlspolicies",
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portcullis_kinds_have_a_crd() {
        for kind in Kind::ALL.into_iter().filter(|k| k.is_portcullis()) {
            let crd = crd(kind).unwrap_or_else(|| panic!("no CRD for {kind}"));
            assert_eq!(crd.served_names(), ["v1alpha1"]);
            let mut rules = Vec::new();
            crd.versions[0].schema.all_rules(kind.as_str(), &mut rules);
            assert!(rules.len() >= 5, "{kind}: only {} rules", rules.len());
            for (at, r) in rules {
                assert!(
                    r.compile_error().is_none(),
                    "{at}: {}: {:?}",
                    r.rule,
                    r.compile_error()
                );
            }
        }
    }

    #[test]
    fn every_gateway_kind_has_a_crd_with_served_versions() {
        for kind in Kind::ALL.into_iter().filter(|k| k.is_gateway_api()) {
            let crd = crd(kind).unwrap_or_else(|| panic!("no CRD for {kind}"));
            assert!(crd.served("v1").is_some(), "{kind} serves v1");
        }
        assert_eq!(
            crd(Kind::HTTPRoute).unwrap().served_names(),
            ["v1", "v1beta1"]
        );
        assert_eq!(
            crd(Kind::TLSRoute).unwrap().served_names(),
            ["v1", "v1alpha2", "v1alpha3"]
        );
        assert!(crd(Kind::Service).is_none());
    }

    /// Every CEL rule of every CRD compiles with the interpreter; the list of
    /// those that do not is printed and must stay empty.
    #[test]
    fn every_cel_rule_compiles() {
        let mut total = 0;
        let mut failing = Vec::new();
        for kind in Kind::ALL.into_iter().filter(|k| k.is_gateway_api()) {
            for v in &crd(kind).unwrap().versions {
                let mut rules = Vec::new();
                v.schema.all_rules(kind.as_str(), &mut rules);
                total += rules.len();
                for (at, r) in rules {
                    if let Some(e) = r.compile_error() {
                        failing.push(format!("{}/{at}: {}: {e}", v.name, r.rule));
                    }
                }
            }
        }
        assert!(total > 300, "only {total} rules found");
        assert!(
            failing.is_empty(),
            "{} of {total} rules do not compile:\n{}",
            failing.len(),
            failing.join("\n")
        );
    }
}
