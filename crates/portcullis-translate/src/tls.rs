//! Gateway-level TLS: frontend client-certificate validation (GEP-91) and the
//! client certificate the Gateway presents to TLS backends.

use portcullis_ir as ir;
use portcullis_store::ObjectKey;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::Input;
use crate::backends::certificate;
use crate::conditions::Problem;
use crate::conditions::Reason;
use crate::model::{GatewaySpec, ObjectRef};
use crate::refs::Grants;

/// A PEM CA bundle from the `ca.crt` key of a ConfigMap (or Secret) reference.
pub(crate) fn ca_bundle(
    input: &Input<'_>,
    grants: &Grants,
    from_kind: &str,
    from_ns: &str,
    r: &ObjectRef,
) -> Result<String, Problem> {
    let group = r.group.as_deref().unwrap_or("");
    let kind = r.kind.as_deref().unwrap_or("ConfigMap");
    if !group.is_empty() || !(kind == "ConfigMap" || kind == "Secret") {
        return Err(Problem::new(
            Reason::InvalidCACertificateKind,
            format!("CA reference {group}/{kind} {} is not a ConfigMap", r.name),
        ));
    }
    let ns = r.namespace.clone().unwrap_or_else(|| from_ns.to_string());
    if !grants.allowed(from_kind, from_ns, "", kind, &ns, &r.name) {
        return Err(Problem::new(
            Reason::RefNotPermitted,
            format!(
                "{kind} {ns}/{} is in another namespace and no ReferenceGrant allows the reference",
                r.name
            ),
        ));
    }
    let key = ObjectKey::new(ns, r.name.clone());
    let pem = if kind == "ConfigMap" {
        input
            .snapshot
            .config_maps
            .get(&key)
            .and_then(|c| c.data.as_ref().and_then(|d| d.get("ca.crt").cloned()))
    } else {
        input.snapshot.secrets.get(&key).and_then(|s| {
            s.data.as_ref().and_then(|d| {
                d.get("ca.crt")
                    .map(|b| String::from_utf8_lossy(&b.0).into_owned())
            })
        })
    };
    let Some(pem) = pem else {
        return Err(Problem::new(
            Reason::InvalidCACertificateRef,
            format!("{kind} {key} does not exist or has no ca.crt"),
        ));
    };
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem.as_bytes()).collect();
    if certs.is_empty() || certs.iter().any(|c| c.is_err()) {
        return Err(Problem::new(
            Reason::InvalidCACertificateRef,
            format!("{kind} {key}: ca.crt is not a PEM certificate bundle"),
        ));
    }
    Ok(pem)
}

/// Frontend validation for a listener port: `Ok(None)` when not configured;
/// `Err((resolved, accepted))` problems when its CA references are invalid.
pub(crate) fn frontend(
    input: &Input<'_>,
    grants: &Grants,
    gw_ns: &str,
    spec: &GatewaySpec,
    port: i32,
) -> Result<Option<ir::ClientValidation>, (Problem, Problem)> {
    let Some(front) = spec.tls.as_ref().and_then(|t| t.frontend.as_ref()) else {
        return Ok(None);
    };
    let cfg = front
        .per_port
        .iter()
        .find(|p| p.port == port)
        .map(|p| &p.tls)
        .unwrap_or(&front.default);
    let Some(v) = &cfg.validation else {
        return Ok(None);
    };
    let mut pems = vec![];
    let mut first_problem = None;
    for r in &v.ca_certificate_refs {
        match ca_bundle(input, grants, "Gateway", gw_ns, r) {
            Ok(p) => pems.push(p),
            Err(p) => {
                first_problem.get_or_insert(p);
            }
        }
    }
    if let Some(p) = first_problem {
        let accepted = Problem::new(
            Reason::NoValidCACertificate,
            format!(
                "client certificate validation for port {port} has invalid CA references: {}",
                p.message
            ),
        );
        let resolved = if p.reason == Reason::InvalidCACertificateKind
            || p.reason == Reason::RefNotPermitted
        {
            p
        } else {
            Problem::new(Reason::InvalidCACertificateRef, p.message)
        };
        return Err((resolved, accepted));
    }
    Ok(Some(ir::ClientValidation {
        ca_pem: pems.join("\n"),
        allow_insecure_fallback: v.mode.as_deref() == Some("AllowInsecureFallback"),
    }))
}

/// The client certificate presented to TLS backends (`spec.tls.backend.clientCertificateRef`).
pub(crate) fn backend_client_certificate(
    input: &Input<'_>,
    grants: &Grants,
    gw_ns: &str,
    spec: &GatewaySpec,
) -> Result<Option<ir::Certificate>, Problem> {
    let Some(r) = spec
        .tls
        .as_ref()
        .and_then(|t| t.backend.as_ref())
        .and_then(|b| b.client_certificate_ref.as_ref())
    else {
        return Ok(None);
    };
    certificate(input, grants, "Gateway", gw_ns, r)
        .map(Some)
        .map_err(|p| {
            if p.reason == Reason::RefNotPermitted {
                p
            } else {
                Problem::new(Reason::InvalidClientCertificateRef, p.message)
            }
        })
}
