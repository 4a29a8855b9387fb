//! The exporters' connector: plain TCP for `http://` (and h2c gRPC), rustls
//! for `https://` (and `grpcs://`), trusting the system's roots or, with a
//! CA file, only the certificates in it.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::trace::TraceError;

/// The connector of an exporter; `h2`: offer only HTTP/2 (gRPC).
pub fn connector(
    ca_file: Option<&Path>,
    h2: bool,
    timeout: Duration,
) -> Result<HttpsConnector<HttpConnector>, TraceError> {
    let bad = |what: String| TraceError::Exporter(what);
    let mut roots = rustls::RootCertStore::empty();
    match ca_file {
        Some(p) => {
            let pem = std::fs::read(p).map_err(|e| bad(format!("{}: {e}", p.display())))?;
            for cert in CertificateDer::pem_slice_iter(&pem) {
                let cert = cert.map_err(|e| bad(format!("{}: {e}", p.display())))?;
                roots
                    .add(cert)
                    .map_err(|e| bad(format!("{}: {e}", p.display())))?;
            }
            if roots.is_empty() {
                return Err(bad(format!("{}: no certificate", p.display())));
            }
        }
        None => {
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
        }
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut tcp = HttpConnector::new();
    tcp.enforce_http(false);
    tcp.set_nodelay(true);
    tcp.set_connect_timeout(Some(timeout));
    let b = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http();
    Ok(if h2 {
        b.enable_http2().wrap_connector(tcp)
    } else {
        b.enable_http1().wrap_connector(tcp)
    })
}
