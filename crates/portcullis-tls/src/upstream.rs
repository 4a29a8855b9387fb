//! Upstream TLS (BackendTLSPolicy): client configs that verify the backend.
//!
//! Trust anchors come from the policy's CA bundle and/or the system's roots.
//! The system roots are read with `rustls-native-certs` (the platform trust
//! store: `/etc/ssl/certs` and friends, honouring `SSL_CERT_FILE` and
//! `SSL_CERT_DIR`) rather than a list compiled into the binary
//! (`webpki-roots`): `wellKnownCACertificates: System` names the system's
//! roots, operators add private CAs to that store, and it follows the
//! platform's updates without a rebuild. The store is read on each call, i.e.
//! once per config apply, never per connection; the image must ship
//! `ca-certificates` for `System` to find anything.

use std::sync::Arc;

use portcullis_ir::{BackendTls, SubjectAltName};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{
    WebPkiServerVerifier, verify_server_cert_signed_by_trust_anchor, verify_server_name,
};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::server::ParsedCertificate;
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::{Alpn, TlsError, pem};

/// The SNI (and, without SANs, the verified name) for a backend: `hostname`.
pub fn server_name(tls: &BackendTls) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(tls.hostname.clone())
        .map_err(|_| TlsError::ServerName(tls.hostname.clone()))
}

/// A client config for a BackendTLSPolicy, without ALPN (HTTP/1.1 upstreams).
///
/// Connect with `TlsConnector::from(config).connect(server_name(tls)?, tcp)`:
/// the SNI is `hostname`. The server's chain must validate against the CA
/// bundle (and/or the system roots); its name must be `hostname`, or, when
/// `subject_alt_names` is not empty, any one of those SANs (DNS names with
/// wildcard certificates honoured, URIs such as SPIFFE IDs compared exactly)
/// and then `hostname` is only the SNI. The Gateway's client certificate is
/// presented when the backend asks for one.
pub fn client_config(tls: &BackendTls) -> Result<Arc<ClientConfig>, TlsError> {
    client_config_with_alpn(tls, &Alpn::None)
}

/// [`client_config`] offering ALPN, e.g. [`Alpn::Custom`]`(vec![b"h2".to_vec()])` for h2 upstreams.
pub fn client_config_with_alpn(
    tls: &BackendTls,
    alpn: &Alpn,
) -> Result<Arc<ClientConfig>, TlsError> {
    let what = format!("backend TLS for {}", tls.hostname);
    server_name(tls)?;
    let provider = crate::provider();
    let roots = Arc::new(root_store(tls, &what)?);
    let webpki = WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
        .build()
        .map_err(|e| TlsError::Config {
            what: what.clone(),
            reason: e.to_string(),
        })?;
    let verifier = Arc::new(BackendVerifier {
        roots,
        webpki,
        sans: tls.subject_alt_names.clone(),
        provider: provider.clone(),
    });
    let builder = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config {
            what: what.clone(),
            reason: e.to_string(),
        })?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match &tls.client_certificate {
        Some(cert) => {
            let (chain, key) = pem::chain_and_key(cert, "backend client certificate")?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|source| TlsError::Key {
                    what: what.clone(),
                    source,
                })?
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = alpn.protocols();
    Ok(Arc::new(config))
}

fn root_store(tls: &BackendTls, what: &str) -> Result<RootCertStore, TlsError> {
    let mut store = RootCertStore::empty();
    if !tls.ca_pem.trim().is_empty() {
        store.add_parsable_certificates(pem::certs(&tls.ca_pem, what)?);
    }
    if tls.system_roots {
        let loaded = rustls_native_certs::load_native_certs();
        for e in &loaded.errors {
            tracing::warn!(error = %e, "reading system CA certificates");
        }
        store.add_parsable_certificates(loaded.certs);
    }
    if store.is_empty() {
        return Err(TlsError::NoRoots(what.to_owned()));
    }
    Ok(store)
}

/// Chain validation as `WebPkiServerVerifier` does it; the name check is
/// `hostname` or, with SANs configured, any of the SANs.
#[derive(Debug)]
struct BackendVerifier {
    roots: Arc<RootCertStore>,
    /// Used as is when no SANs are configured.
    webpki: Arc<WebPkiServerVerifier>,
    sans: Vec<SubjectAltName>,
    provider: Arc<CryptoProvider>,
}

impl BackendVerifier {
    fn san_matches(&self, cert: &ParsedCertificate<'_>, der: &CertificateDer<'_>) -> bool {
        let mut uris: Option<Vec<String>> = None;
        self.sans.iter().any(|san| match san {
            SubjectAltName::Hostname(h) => ServerName::try_from(h.as_str())
                .is_ok_and(|name| verify_server_name(cert, &name).is_ok()),
            SubjectAltName::Uri(u) => uris
                .get_or_insert_with(|| uri_sans(der))
                .iter()
                .any(|c| c == u),
        })
    }
}

/// The DNS and URI entries of a certificate's subjectAltName extension.
fn sans_of(der: &CertificateDer<'_>) -> Vec<SubjectAltName> {
    use x509_parser::extensions::GeneralName;
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der.as_ref()) else {
        return vec![];
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return vec![];
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(u) => Some(SubjectAltName::Uri((*u).to_owned())),
            GeneralName::DNSName(d) => Some(SubjectAltName::Hostname((*d).to_owned())),
            _ => None,
        })
        .collect()
}

/// URI entries of a certificate's subjectAltName extension.
fn uri_sans(der: &CertificateDer<'_>) -> Vec<String> {
    sans_of(der)
        .into_iter()
        .filter_map(|s| match s {
            SubjectAltName::Uri(u) => Some(u),
            SubjectAltName::Hostname(_) => None,
        })
        .collect()
}

/// The certificate chains to a trusted root but carries none of the wanted SANs.
#[derive(Debug)]
struct SanMismatch {
    wanted: Vec<SubjectAltName>,
    presented: Vec<SubjectAltName>,
}

impl std::fmt::Display for SanMismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "certificate matches none of the subjectAltNames {:?}; it presents {:?}",
            self.wanted, self.presented
        )
    }
}

impl std::error::Error for SanMismatch {}

impl ServerCertVerifier for BackendVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if self.sans.is_empty() {
            return self.webpki.verify_server_cert(
                end_entity,
                intermediates,
                server_name,
                ocsp_response,
                now,
            );
        }
        let cert = ParsedCertificate::try_from(end_entity)?;
        verify_server_cert_signed_by_trust_anchor(
            &cert,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        if self.san_matches(&cert, end_entity) {
            return Ok(ServerCertVerified::assertion());
        }
        let mismatch = SanMismatch {
            wanted: self.sans.clone(),
            presented: sans_of(end_entity),
        };
        Err(rustls::Error::InvalidCertificate(CertificateError::Other(
            rustls::OtherError(Arc::new(mismatch)),
        )))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
