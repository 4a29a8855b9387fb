//! The certificates the upstream suite creates in `Setup` (Secrets with
//! `tls.crt`/`tls.key`, CA ConfigMaps with `ca.crt`), generated with rcgen.

use std::collections::BTreeMap;

use anyhow::{Context, Result};
use base64::Engine;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use serde_json::{Value, json};

const INFRA: &str = "gateway-conformance-infra";
const APP: &str = "gateway-conformance-app-backend";
const WEB: &str = "gateway-conformance-web-backend";

/// A generated certificate authority.
pub struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pub pem: String,
}

/// Everything generated, as documents plus the PEMs tests need.
pub struct Certificates {
    pub docs: Vec<Value>,
    /// `namespace/name` → certificate PEM, for Secrets and CA ConfigMaps.
    pub pems: BTreeMap<String, String>,
    /// `namespace/name` → private key PEM, for Secrets.
    pub keys: BTreeMap<String, String>,
}

fn key() -> Result<KeyPair> {
    KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256)
        .or_else(|_| KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256))
        .context("generating key")
}

fn is_dns1123_label(l: &str) -> bool {
    !l.is_empty()
        && l.len() <= 63
        && l.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !l.starts_with('-')
        && !l.ends_with('-')
}

/// Classifies a host as upstream's generateRSACert does: IP, DNS name (a `*.`
/// prefix allowed) or, failing both, URI.
pub fn san_for(host: &str) -> Result<SanType> {
    if let Ok(ip) = host.parse() {
        return Ok(SanType::IpAddress(ip));
    }
    let stripped = host.strip_prefix("*.").unwrap_or(host);
    if stripped.len() <= 253 && stripped.split('.').all(is_dns1123_label) {
        return Ok(SanType::DnsName(host.try_into()?));
    }
    Ok(SanType::URI(host.try_into()?))
}

fn leaf_params(hosts: &[&str], usage: ExtendedKeyUsagePurpose) -> Result<CertificateParams> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, "default");
    dn.push(DnType::OrganizationName, "Acme Co");
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![
        KeyUsagePurpose::KeyEncipherment,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.extended_key_usages = vec![usage];
    params.subject_alt_names = hosts.iter().map(|h| san_for(h)).collect::<Result<_>>()?;
    Ok(params)
}

/// A new CA like upstream's generateCACert.
pub fn new_ca() -> Result<Ca> {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Kubernetes Gateway API");
    dn.push(DnType::CountryName, "US");
    dn.push(DnType::CommonName, "gatewayapi");
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyCertSign,
    ];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ClientAuth,
        ExtendedKeyUsagePurpose::ServerAuth,
    ];
    let key = key()?;
    let pem = params.self_signed(&key)?.pem();
    Ok(Ca { params, key, pem })
}

fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn tls_secret(ns: &str, name: &str, cert: &str, key: &str) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "kubernetes.io/tls",
        "metadata": {"name": name, "namespace": ns},
        "data": {"tls.crt": b64(cert), "tls.key": b64(key)},
    })
}

impl Certificates {
    fn new() -> Self {
        Self {
            docs: Vec::new(),
            pems: BTreeMap::new(),
            keys: BTreeMap::new(),
        }
    }

    fn add_secret(&mut self, ns: &str, name: &str, cert: String, key: String) {
        self.docs.push(tls_secret(ns, name, &cert, &key));
        self.pems.insert(format!("{ns}/{name}"), cert);
        self.keys.insert(format!("{ns}/{name}"), key);
    }

    fn self_signed(&mut self, ns: &str, name: &str, hosts: &[&str]) -> Result<()> {
        let key = key()?;
        let cert = leaf_params(hosts, ExtendedKeyUsagePurpose::ServerAuth)?.self_signed(&key)?;
        self.add_secret(ns, name, cert.pem(), key.serialize_pem());
        Ok(())
    }

    fn ca_signed(
        &mut self,
        ns: &str,
        name: &str,
        hosts: &[&str],
        usage: ExtendedKeyUsagePurpose,
        ca: &Ca,
    ) -> Result<()> {
        let key = key()?;
        let issuer = Issuer::from_params(&ca.params, &ca.key);
        let cert = leaf_params(hosts, usage)?.signed_by(&key, &issuer)?;
        self.add_secret(ns, name, cert.pem(), key.serialize_pem());
        Ok(())
    }

    fn ca_config_map(&mut self, ns: &str, name: &str) -> Result<Ca> {
        let ca = new_ca()?;
        self.docs.push(json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": ns},
            "data": {"ca.crt": ca.pem, "key.crt": ca.key.serialize_pem()},
        }));
        self.pems.insert(format!("{ns}/{name}"), ca.pem.clone());
        Ok(ca)
    }
}

/// Generates the same set of Secrets and ConfigMaps as the upstream suite's Setup.
pub fn generate() -> Result<Certificates> {
    use ExtendedKeyUsagePurpose::{ClientAuth, ServerAuth};
    let mut c = Certificates::new();
    c.self_signed(WEB, "certificate", &["*"])?;
    c.self_signed(
        INFRA,
        "tls-validity-checks-certificate",
        &["*", "*.org", "*.wildcard.org"],
    )?;
    c.ca_config_map(WEB, "web-backend-cm")?;

    let ca = c.ca_config_map(INFRA, "tls-validity-checks-ca-certificate")?;
    c.ca_signed(
        INFRA,
        "tls-validity-checks-client-certificate",
        &[],
        ClientAuth,
        &ca,
    )?;
    let ca = c.ca_config_map(INFRA, "tls-validity-checks-per-port-ca-certificate")?;
    c.ca_signed(
        INFRA,
        "tls-validity-checks-per-port-client-certificate",
        &[],
        ClientAuth,
        &ca,
    )?;

    let ca = c.ca_config_map(INFRA, "tls-checks-ca-certificate")?;
    c.ca_signed(
        INFRA,
        "tls-checks-certificate",
        &[
            "abc.example.com",
            "spiffe://abc.example.com/test-identity",
            "other.example.com",
        ],
        ServerAuth,
        &ca,
    )?;
    c.ca_signed(INFRA, "tls-checks-client-certificate", &[], ClientAuth, &ca)?;
    c.ca_signed(
        INFRA,
        "tls-passthrough-checks-certificate",
        &["abc.example.com"],
        ServerAuth,
        &ca,
    )?;
    c.ca_signed(
        APP,
        "tls-passthrough-checks-certificate",
        &["abc.example.com"],
        ServerAuth,
        &ca,
    )?;
    c.ca_signed(
        INFRA,
        "tls-terminate-checks-certificate",
        &["tls.example.com"],
        ServerAuth,
        &ca,
    )?;
    c.ca_config_map(INFRA, "mismatch-ca-certificate")?;
    Ok(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_classified_like_upstream() {
        assert!(matches!(san_for("*").unwrap(), SanType::URI(_)));
        assert!(matches!(san_for("*.org").unwrap(), SanType::DnsName(_)));
        assert!(matches!(
            san_for("abc.example.com").unwrap(),
            SanType::DnsName(_)
        ));
        assert!(matches!(
            san_for("127.0.0.1").unwrap(),
            SanType::IpAddress(_)
        ));
        assert!(matches!(
            san_for("spiffe://abc.example.com/test-identity").unwrap(),
            SanType::URI(_)
        ));
    }

    #[test]
    fn ca_signed_certificate_verifies_against_its_ca() {
        let ca = new_ca().unwrap();
        let key = key().unwrap();
        let issuer = Issuer::from_params(&ca.params, &ca.key);
        let cert = leaf_params(&["abc.example.com"], ExtendedKeyUsagePurpose::ServerAuth)
            .unwrap()
            .signed_by(&key, &issuer)
            .unwrap();
        let mut roots = rustls::RootCertStore::empty();
        use rustls_pki_types::pem::PemObject;
        roots
            .add(rustls_pki_types::CertificateDer::from_pem_slice(ca.pem.as_bytes()).unwrap())
            .unwrap();
        let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
            roots.into(),
            rustls::crypto::aws_lc_rs::default_provider().into(),
        )
        .build()
        .unwrap();
        use rustls::client::danger::ServerCertVerifier;
        let name = rustls_pki_types::ServerName::try_from("abc.example.com").unwrap();
        verifier
            .verify_server_cert(
                cert.der(),
                &[],
                &name,
                &[],
                rustls_pki_types::UnixTime::now(),
            )
            .unwrap();
    }
}
