//! The optional HTTPS listener: rustls (aws-lc-rs) with ALPN h2/http1.1 and, when
//! `TLS_CLIENT_CACERTS` is set, optional client-certificate verification.

use std::path::Path;
use std::sync::Arc;

use base64::Engine;
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

use super::EchoError;
use super::handler::TlsAssertions;

fn tls_err(what: &str, path: &Path, err: impl std::fmt::Display) -> EchoError {
    EchoError::Tls(format!("{what} {}: {err}", path.display()))
}

/// Builds the server configuration from PEM files.
pub(crate) fn server_config(
    cert: &Path,
    key: &Path,
    client_ca: Option<&Path>,
) -> Result<Arc<ServerConfig>, EchoError> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| tls_err("reading certificate", cert, e))?
        .collect::<Result<_, _>>()
        .map_err(|e| tls_err("parsing certificate", cert, e))?;
    let key_der = PrivateKeyDer::from_pem_file(key).map_err(|e| tls_err("reading key", key, e))?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| EchoError::Tls(e.to_string()))?;
    let builder = match client_ca {
        Some(ca_path) => {
            let mut roots = rustls::RootCertStore::empty();
            for ca in CertificateDer::pem_file_iter(ca_path)
                .map_err(|e| tls_err("reading client CA", ca_path, e))?
            {
                let ca = ca.map_err(|e| tls_err("parsing client CA", ca_path, e))?;
                roots
                    .add(ca)
                    .map_err(|e| tls_err("adding client CA", ca_path, e))?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .allow_unauthenticated()
                .build()
                .map_err(|e| EchoError::Tls(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
        None => builder.with_no_client_auth(),
    };
    let mut config = builder
        .with_single_cert(certs, key_der)
        .map_err(|e| EchoError::Tls(e.to_string()))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// PEM-encodes one DER certificate the way Go's `pem.Encode` does.
pub(crate) fn pem_encode_certificate(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for chunk in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}

/// Describes an established server-side TLS connection.
pub(crate) fn assertions(conn: &rustls::ServerConnection) -> TlsAssertions {
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3",
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2",
        Some(rustls::ProtocolVersion::TLSv1_1) => "TLSv1.1",
        Some(rustls::ProtocolVersion::TLSv1_0) => "TLSv1.0",
        _ => "",
    };
    let cipher_suite = conn
        .negotiated_cipher_suite()
        .map(|s| format!("{:?}", s.suite()).replacen("TLS13_", "TLS_", 1))
        .unwrap_or_default();
    TlsAssertions {
        version: version.to_string(),
        peer_certificates: conn
            .peer_certificates()
            .unwrap_or_default()
            .iter()
            .map(|c| pem_encode_certificate(c.as_ref()))
            .collect(),
        server_name: conn.server_name().unwrap_or_default().to_string(),
        negotiated_protocol: conn
            .alpn_protocol()
            .map(|p| String::from_utf8_lossy(p).into_owned())
            .unwrap_or_default(),
        cipher_suite,
    }
}
