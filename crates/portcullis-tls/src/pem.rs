//! PEM parsing into rustls types (certificate chains, keys, CA bundles).

use std::sync::Arc;

use rustls::RootCertStore;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use crate::TlsError;

/// Every certificate in a PEM bundle, in order (other blocks are skipped).
pub(crate) fn certs(pem: &str, what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Pem {
            what: what.to_owned(),
            reason: e.to_string(),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(what.to_owned()));
    }
    Ok(certs)
}

/// The first private key (PKCS#8, PKCS#1 RSA or SEC1 EC) in a PEM input.
pub(crate) fn key(pem: &str, what: &str) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(pem.as_bytes()).map_err(|e| TlsError::Pem {
        what: what.to_owned(),
        reason: e.to_string(),
    })
}

/// A chain and its key, checked to belong together.
pub(crate) fn certified_key(
    cert: &portcullis_ir::Certificate,
    what: &str,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let what = format!("{what} (Secret {})", cert.source);
    let chain = certs(&cert.cert_pem, &what)?;
    let key = key(&cert.key_pem, &what)?;
    let ck = CertifiedKey::from_der(chain, key, &crate::provider())
        .map_err(|source| TlsError::Key { what, source })?;
    Ok(Arc::new(ck))
}

/// The chain and key as rustls' client-auth inputs.
pub(crate) fn chain_and_key(
    cert: &portcullis_ir::Certificate,
    what: &str,
) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), TlsError> {
    let what = format!("{what} (Secret {})", cert.source);
    Ok((certs(&cert.cert_pem, &what)?, key(&cert.key_pem, &what)?))
}

/// A root store from a PEM CA bundle; certificates that are not valid trust
/// anchors are skipped, but at least one must load.
pub(crate) fn roots(pem: &str, what: &str) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    let (added, _ignored) = store.add_parsable_certificates(certs(pem, what)?);
    if added == 0 {
        return Err(TlsError::NoRoots(what.to_owned()));
    }
    Ok(store)
}
