//! Resolving references to Secrets (certificates) and Services (backends).

use std::net::{IpAddr, SocketAddr};

use portcullis_ir as ir;
use portcullis_store::ObjectKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::Input;
use crate::conditions::Problem;
use crate::conditions::Reason;
use crate::model::{BackendRefSpec, ObjectRef};
use crate::refs::Grants;

/// Resolve a listener `certificateRefs` entry to PEM, checking kind, ReferenceGrant and content.
pub(crate) fn certificate(
    input: &Input<'_>,
    grants: &Grants,
    from_kind: &str,
    from_ns: &str,
    r: &ObjectRef,
) -> Result<ir::Certificate, Problem> {
    let group = r.group.as_deref().unwrap_or("");
    let kind = r.kind.as_deref().unwrap_or("Secret");
    if !group.is_empty() || kind != "Secret" {
        return Err(Problem::new(
            Reason::InvalidCertificateRef,
            format!(
                "certificateRef {group}/{kind} {} is not a core Secret",
                r.name
            ),
        ));
    }
    let ns = r.namespace.clone().unwrap_or_else(|| from_ns.to_string());
    if !grants.allowed(from_kind, from_ns, "", "Secret", &ns, &r.name) {
        return Err(Problem::new(
            Reason::RefNotPermitted,
            format!(
                "Secret {ns}/{} is in another namespace and no ReferenceGrant allows the reference",
                r.name
            ),
        ));
    }
    let key = ObjectKey::new(ns.clone(), r.name.clone());
    let Some(secret) = input.snapshot.secrets.get(&key) else {
        return Err(Problem::new(
            Reason::InvalidCertificateRef,
            format!("Secret {key} does not exist"),
        ));
    };
    let data = secret.data.clone().unwrap_or_default();
    let get = |k: &str| -> Option<String> {
        data.get(k)
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
            .or_else(|| secret.string_data.as_ref().and_then(|s| s.get(k).cloned()))
    };
    let (Some(cert_pem), Some(key_pem)) = (get("tls.crt"), get("tls.key")) else {
        return Err(Problem::new(
            Reason::InvalidCertificateRef,
            format!("Secret {key} has no tls.crt and tls.key"),
        ));
    };
    let certs: Vec<_> = CertificateDer::pem_slice_iter(cert_pem.as_bytes()).collect();
    if certs.is_empty() || certs.iter().any(|c| c.is_err()) {
        return Err(Problem::new(
            Reason::InvalidCertificateRef,
            format!("Secret {key}: tls.crt is not a PEM certificate"),
        ));
    }
    if PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).is_err() {
        return Err(Problem::new(
            Reason::InvalidCertificateRef,
            format!("Secret {key}: tls.key is not a PEM private key"),
        ));
    }
    Ok(ir::Certificate {
        source: key.to_string(),
        cert_pem,
        key_pem,
    })
}

/// A backendRef resolved: the IR backend and, if it failed, why (for ResolvedRefs).
pub(crate) struct Resolved {
    pub backend: ir::Backend,
    pub problem: Option<Problem>,
}

/// Resolve a backendRef of a route of `route_kind` in `route_ns`.
pub(crate) fn service(
    input: &Input<'_>,
    grants: &Grants,
    route_kind: &str,
    route_ns: &str,
    r: &BackendRefSpec,
) -> Resolved {
    let fail = |p: Problem| Resolved {
        backend: ir::Backend::Invalid {
            reason: p.message.clone(),
        },
        problem: Some(p),
    };
    let group = r.group.as_deref().unwrap_or("");
    let kind = r.kind.as_deref().unwrap_or("Service");
    if !group.is_empty() || kind != "Service" {
        return fail(Problem::new(
            Reason::InvalidKind,
            format!("backendRef {group}/{kind} {} is not a Service", r.name),
        ));
    }
    let ns = r.namespace.clone().unwrap_or_else(|| route_ns.to_string());
    if !grants.allowed(route_kind, route_ns, "", "Service", &ns, &r.name) {
        return fail(Problem::new(
            Reason::RefNotPermitted,
            format!(
                "Service {ns}/{} is in another namespace and no ReferenceGrant allows the reference",
                r.name
            ),
        ));
    }
    let key = ObjectKey::new(ns.clone(), r.name.clone());
    let Some(svc) = input.snapshot.services.get(&key) else {
        return fail(Problem::new(
            Reason::BackendNotFound,
            format!("Service {key} does not exist"),
        ));
    };
    let Some(port) = r.port else {
        return fail(Problem::new(
            Reason::BackendNotFound,
            format!("backendRef to Service {key} has no port"),
        ));
    };
    let spec = svc.spec.clone().unwrap_or_default();
    let Some(sp) = spec.ports.iter().flatten().find(|p| p.port == port) else {
        return fail(Problem::new(
            Reason::BackendNotFound,
            format!("Service {key} has no port {port}"),
        ));
    };
    let port_name = sp.name.clone().unwrap_or_default();
    let mut endpoints = vec![];
    let mut found_slice = false;
    for slice in input.snapshot.endpoint_slices.values() {
        let labels = slice.metadata.labels.clone().unwrap_or_default();
        if slice.metadata.namespace.as_deref() != Some(ns.as_str())
            || labels.get("kubernetes.io/service-name") != Some(&r.name)
        {
            continue;
        }
        found_slice = true;
        let Some(ep_port) = slice
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.clone().unwrap_or_default() == port_name)
            .and_then(|p| p.port)
        else {
            continue;
        };
        for ep in &slice.endpoints {
            let c = ep.conditions.clone().unwrap_or_default();
            let ready = c.ready.unwrap_or(true);
            let terminating = c.terminating.unwrap_or(false);
            let serving = c.serving.unwrap_or(ready);
            if !(ready || (serving && terminating)) {
                continue;
            }
            for a in &ep.addresses {
                if let Ok(ip) = a.parse::<IpAddr>() {
                    endpoints.push(ir::Endpoint {
                        addr: SocketAddr::new(ip, ep_port as u16),
                        terminating: !ready,
                        zone: ep.zone.clone(),
                        for_zones: ep
                            .hints
                            .as_ref()
                            .and_then(|h| h.for_zones.as_ref())
                            .map(|z| z.iter().map(|z| z.name.clone()).collect())
                            .unwrap_or_default(),
                    });
                }
            }
        }
    }
    if !found_slice {
        // Standalone convenience: a Service with a concrete clusterIP and no EndpointSlice
        // is reached at clusterIP:port (e.g. a local process on 127.0.0.1).
        if let Some(ip) = spec
            .cluster_ip
            .as_deref()
            .and_then(|s| s.parse::<IpAddr>().ok())
        {
            endpoints.push(ir::Endpoint {
                addr: SocketAddr::new(ip, port as u16),
                terminating: false,
                zone: None,
                for_zones: vec![],
            });
        }
    }
    endpoints.sort_by_key(|e| e.addr);
    endpoints.dedup();
    Resolved {
        backend: ir::Backend::Service(ir::ServiceBackend {
            name: format!("{key}:{port}"),
            namespace: ns,
            app_protocol: sp.app_protocol.clone(),
            endpoints,
            tls: None,
        }),
        problem: None,
    }
}
