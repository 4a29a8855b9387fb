//! Server-certificate verification with Go's crypto/tls semantics where they
//! differ from webpki, so that the runner accepts exactly what the upstream
//! (Go) suite accepts:
//! - hostname matching per Go's `matchHostnames` (a leading `*` label matches
//!   one label, so `*.org` matches `example.org`, which webpki refuses);
//! - a trusted certificate that is itself the leaf is accepted (Go treats every
//!   certificate in RootCAs as a trust anchor, webpki needs an issuer).

use std::net::IpAddr;
use std::sync::Arc;

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::{CertificateError, DigitallySignedStruct, Error, SignatureScheme};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

#[derive(Debug)]
pub struct GoVerifier {
    inner: Arc<WebPkiServerVerifier>,
    roots: Vec<Vec<u8>>,
}

impl GoVerifier {
    pub fn new(roots: Vec<CertificateDer<'static>>) -> anyhow::Result<Arc<Self>> {
        let mut store = rustls::RootCertStore::empty();
        let mut raw = Vec::new();
        for c in roots {
            raw.push(c.as_ref().to_vec());
            store.add(c)?;
        }
        let inner = WebPkiServerVerifier::builder_with_provider(
            Arc::new(store),
            Arc::new(rustls::crypto::aws_lc_rs::default_provider()),
        )
        .build()?;
        Ok(Arc::new(Self { inner, roots: raw }))
    }
}

/// Go's matchHostnames for one SAN pattern.
pub fn go_match_hostname(pattern: &str, host: &str) -> bool {
    let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    if pattern.is_empty() || host.is_empty() {
        return false;
    }
    let p: Vec<&str> = pattern.split('.').collect();
    let h: Vec<&str> = host.split('.').collect();
    if p.len() != h.len() {
        return false;
    }
    p.iter()
        .zip(h.iter())
        .enumerate()
        .all(|(i, (p, h))| (i == 0 && *p == "*") || p == h)
}

fn name_matches(der: &[u8], name: &ServerName<'_>) -> bool {
    let Ok((_, cert)) = x509_parser::parse_x509_certificate(der) else {
        return false;
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return false;
    };
    use x509_parser::extensions::GeneralName;
    match name {
        ServerName::DnsName(dns) => san.value.general_names.iter().any(|g| match g {
            GeneralName::DNSName(p) => go_match_hostname(p, dns.as_ref()),
            _ => false,
        }),
        ServerName::IpAddress(ip) => {
            let want: IpAddr = (*ip).into();
            san.value.general_names.iter().any(|g| match g {
                GeneralName::IPAddress(b) => match b.len() {
                    4 => IpAddr::from(<[u8; 4]>::try_from(*b).unwrap_or_default()) == want,
                    16 => IpAddr::from(<[u8; 16]>::try_from(*b).unwrap_or_default()) == want,
                    _ => false,
                },
                _ => false,
            })
        }
        _ => false,
    }
}

impl ServerCertVerifier for GoVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, Error> {
        match self
            .inner
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Ok(v) => Ok(v),
            Err(Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if name_matches(end_entity.as_ref(), server_name) => {
                Ok(ServerCertVerified::assertion())
            }
            Err(Error::InvalidCertificate(CertificateError::UnknownIssuer))
                if self
                    .roots
                    .iter()
                    .any(|r| r.as_slice() == end_entity.as_ref())
                    && name_matches(end_entity.as_ref(), server_name) =>
            {
                Ok(ServerCertVerified::assertion())
            }
            Err(e) => Err(e),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_hostname_matching() {
        assert!(go_match_hostname("*.org", "example.org"));
        assert!(go_match_hostname(
            "*.wildcard.org",
            "third-example.wildcard.org"
        ));
        assert!(!go_match_hostname("*.wildcard.org", "wildcard.org"));
        assert!(!go_match_hostname("*.org", "a.example.org"));
        assert!(go_match_hostname("Example.COM", "example.com."));
        assert!(go_match_hostname("*", "example"));
        assert!(!go_match_hostname("*", "a.example"));
        assert!(!go_match_hostname("f*.org", "foo.org"));
    }
}
