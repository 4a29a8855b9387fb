//! TLS for the config stream.
//!
//! The controller keeps a CA in a Secret in its own namespace (created if
//! absent; any replica may create it, a 409 means another one did first).
//! Each replica serves the stream with a short-lived certificate it signs
//! with that CA for the names of the controller's Service; each provisioned
//! proxy trusts the CA bundle (a ConfigMap next to its Deployment) and
//! connects with `https://` only.
//!
//! Rotation: once a CA has lived two thirds of its validity, a replica
//! replaces it in the Secret and keeps the old one as `previous`. The trust
//! bundle carries both, and the new CA only signs server certificates once
//! it is [`SIGNING_GRACE`] old, so proxies have received the new bundle
//! before they meet a certificate signed by it.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::PostParams;
use kube::{Api, Client};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::sync::watch;

/// Validity of a generated CA.
pub const CA_VALIDITY: Duration = Duration::from_secs(365 * 24 * 3600);
/// Validity of a server certificate (re-issued at half its life).
pub const SERVER_VALIDITY: Duration = Duration::from_secs(24 * 3600);
/// How old a new CA must be before it signs server certificates.
pub const SIGNING_GRACE: Duration = Duration::from_secs(600);
/// Name of the CA bundle file in a proxy's ConfigMap and volume.
pub const BUNDLE_KEY: &str = "ca.crt";

/// Why the PKI could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// Key or certificate generation failed.
    #[error("certificate generation: {0}")]
    Generate(#[from] rcgen::Error),
    /// The API server refused or failed.
    #[error("CA Secret {0}: {1}")]
    Api(String, #[source] Box<kube::Error>),
    /// Replicas kept racing on the Secret.
    #[error("CA Secret {0}: conflicting updates, giving up for now")]
    Conflict(String),
    /// The Secret exists but does not hold a CA.
    #[error("CA Secret {0} is malformed: {1}")]
    Malformed(String, String),
    /// rustls refused the key, a certificate or the configuration.
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
    /// A PEM file did not parse.
    #[error("PEM: {0}")]
    Pem(#[from] rustls_pki_types::pem::Error),
}

/// One CA: certificate, key and what is needed to sign with it again.
#[derive(Clone, Debug, PartialEq)]
pub struct Ca {
    /// Certificate (PEM).
    pub cert_pem: String,
    /// PKCS#8 key (PEM).
    pub key_pem: String,
    /// Subject common name (unique per CA).
    pub cn: String,
    /// Start of validity, Unix seconds.
    pub not_before: i64,
    /// End of validity, Unix seconds.
    pub not_after: i64,
}

fn ts(secs: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp(secs).unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

fn ca_params(cn: &str, not_before: i64, not_after: i64) -> CertificateParams {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    p.distinguished_name = dn;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = ts(not_before);
    p.not_after = ts(not_after);
    p
}

impl Ca {
    /// A new CA valid from `now` for `validity`.
    pub fn generate(now: i64, validity: Duration) -> Result<Ca, PkiError> {
        let key = KeyPair::generate()?;
        let cn = format!("portcullis-stream-ca-{now}-{:08x}", rand::random::<u32>());
        let not_after = now + validity.as_secs() as i64;
        let cert = ca_params(&cn, now, not_after).self_signed(&key)?;
        Ok(Ca {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            cn,
            not_before: now,
            not_after,
        })
    }

    /// Sign a server certificate for `names` (DNS names or IP addresses).
    pub fn issue(
        &self,
        names: &[String],
        now: i64,
        validity: Duration,
    ) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), PkiError> {
        let issuer = Issuer::new(
            ca_params(&self.cn, self.not_before, self.not_after),
            KeyPair::from_pem(&self.key_pem)?,
        );
        let mut p = CertificateParams::new(names.to_vec())?;
        let mut dn = DistinguishedName::new();
        dn.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        p.distinguished_name = dn;
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.not_before = ts(now - 300);
        p.not_after = ts((now + validity.as_secs() as i64).min(self.not_after));
        let key = KeyPair::generate()?;
        let cert = p.signed_by(&key, &issuer)?;
        Ok((
            vec![cert.der().clone()],
            PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        ))
    }
}

/// The CA in use and the one it replaced.
#[derive(Clone, Debug, PartialEq)]
pub struct CaBundle {
    /// The newest CA.
    pub current: Ca,
    /// The CA before the last rotation, trusted until it expires.
    pub previous: Option<Ca>,
}

impl CaBundle {
    /// Whether `current` has lived two thirds of its validity.
    pub fn needs_rotation(&self, now: i64) -> bool {
        let c = &self.current;
        now >= c.not_after - (c.not_after - c.not_before) / 3
    }

    /// The certificates proxies must trust (PEM): the current CA, and the previous one while valid.
    pub fn trust_pem(&self, now: i64) -> String {
        let mut out = self.current.cert_pem.clone();
        if let Some(p) = self.previous.as_ref().filter(|p| p.not_after > now) {
            out.push_str(&p.cert_pem);
        }
        out
    }

    /// The CA that signs server certificates now: the current one once it is
    /// [`SIGNING_GRACE`] old (or when the previous one has expired).
    pub fn signer(&self, now: i64) -> &Ca {
        match &self.previous {
            Some(p)
                if now < self.current.not_before + SIGNING_GRACE.as_secs() as i64
                    && p.not_after > now + 3600 =>
            {
                p
            }
            _ => &self.current,
        }
    }
}

fn put(data: &mut BTreeMap<String, ByteString>, prefix: &str, ca: &Ca) {
    data.insert(
        format!("{prefix}.crt"),
        ByteString(ca.cert_pem.clone().into()),
    );
    data.insert(
        format!("{prefix}.key"),
        ByteString(ca.key_pem.clone().into()),
    );
    let meta =
        serde_json::json!({"cn": ca.cn, "notBefore": ca.not_before, "notAfter": ca.not_after});
    data.insert(
        format!("{prefix}.meta"),
        ByteString(meta.to_string().into()),
    );
}

fn take(data: &BTreeMap<String, ByteString>, prefix: &str) -> Result<Option<Ca>, String> {
    let get = |k: &str| {
        data.get(&format!("{prefix}.{k}"))
            .map(|b| String::from_utf8_lossy(&b.0).into_owned())
    };
    let (Some(cert_pem), Some(key_pem), Some(meta)) = (get("crt"), get("key"), get("meta")) else {
        return Ok(None);
    };
    let m: serde_json::Value =
        serde_json::from_str(&meta).map_err(|e| format!("{prefix}.meta: {e}"))?;
    Ok(Some(Ca {
        cert_pem,
        key_pem,
        cn: m["cn"].as_str().unwrap_or_default().to_string(),
        not_before: m["notBefore"].as_i64().unwrap_or(0),
        not_after: m["notAfter"].as_i64().unwrap_or(0),
    }))
}

/// The Secret holding `bundle`.
pub fn to_secret(
    ns: &str,
    name: &str,
    bundle: &CaBundle,
    resource_version: Option<String>,
) -> Secret {
    let mut data = BTreeMap::new();
    put(&mut data, "ca", &bundle.current);
    if let Some(p) = &bundle.previous {
        put(&mut data, "previous", p);
    }
    let mut s = Secret {
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Default::default()
    };
    s.metadata.name = Some(name.into());
    s.metadata.namespace = Some(ns.into());
    s.metadata.resource_version = resource_version;
    s.metadata.labels = Some(BTreeMap::from([(
        "app.kubernetes.io/managed-by".to_string(),
        "portcullis".to_string(),
    )]));
    s
}

/// Read a bundle from its Secret.
pub fn from_secret(s: &Secret) -> Result<CaBundle, String> {
    let empty = BTreeMap::new();
    let data = s.data.as_ref().unwrap_or(&empty);
    let current = take(data, "ca")?.ok_or("no ca.crt, ca.key and ca.meta")?;
    Ok(CaBundle {
        current,
        previous: take(data, "previous")?,
    })
}

/// Read the CA Secret, creating it when absent and rotating it when due.
pub async fn ensure(client: &Client, ns: &str, name: &str, now: i64) -> Result<CaBundle, PkiError> {
    let api: Api<Secret> = Api::namespaced(client.clone(), ns);
    let what = format!("{ns}/{name}");
    for _ in 0..5 {
        let existing = api
            .get_opt(name)
            .await
            .map_err(|e| PkiError::Api(what.clone(), Box::new(e)))?;
        let (next, rv) = match existing {
            None => (
                CaBundle {
                    current: Ca::generate(now, CA_VALIDITY)?,
                    previous: None,
                },
                None,
            ),
            Some(s) => {
                let b = from_secret(&s).map_err(|e| PkiError::Malformed(what.clone(), e))?;
                if !b.needs_rotation(now) {
                    return Ok(b);
                }
                (
                    CaBundle {
                        current: Ca::generate(now, CA_VALIDITY)?,
                        previous: Some(b.current),
                    },
                    s.metadata.resource_version.clone(),
                )
            }
        };
        let secret = to_secret(ns, name, &next, rv.clone());
        let r = match rv {
            None => api.create(&PostParams::default(), &secret).await,
            Some(_) => api.replace(name, &PostParams::default(), &secret).await,
        };
        match r {
            Ok(_) => {
                tracing::info!(secret = %what, ca = %next.current.cn, "config stream CA created");
                return Ok(next);
            }
            Err(kube::Error::Api(s)) if s.code == 409 => continue,
            Err(e) => return Err(PkiError::Api(what, Box::new(e))),
        }
    }
    Err(PkiError::Conflict(what))
}

/// Serves whichever server certificate was issued last (none until the first).
#[derive(Debug, Default)]
pub struct CertCell(RwLock<Option<Arc<CertifiedKey>>>);

impl CertCell {
    /// Replace the certificate new handshakes get.
    pub fn set(
        &self,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<(), PkiError> {
        let signing = provider().key_provider.load_private_key(key)?;
        *self.0.write().expect("lock") = Some(Arc::new(CertifiedKey::new(chain, signing)));
        Ok(())
    }

    /// Whether a certificate is loaded.
    pub fn is_set(&self) -> bool {
        self.0.read().expect("lock").is_some()
    }
}

impl ResolvesServerCert for CertCell {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.0.read().expect("lock").clone()
    }
}

/// The crypto provider (aws-lc-rs), as in the rest of Portcullis.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    static P: std::sync::OnceLock<Arc<rustls::crypto::CryptoProvider>> = std::sync::OnceLock::new();
    P.get_or_init(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
        .clone()
}

/// The stream server's TLS configuration (HTTP/2 only), serving `cell`'s certificate.
pub fn server_config(cell: Arc<CertCell>) -> Result<Arc<rustls::ServerConfig>, PkiError> {
    let mut c = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(cell);
    c.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(c))
}

/// A proxy's TLS configuration: trust exactly the CA certificates in `bundle_pem`.
pub fn client_config(bundle_pem: &[u8]) -> Result<Arc<rustls::ClientConfig>, PkiError> {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(bundle_pem) {
        roots.add(cert?)?;
    }
    if roots.is_empty() {
        return Err(PkiError::Tls(rustls::Error::General(
            "the CA bundle holds no certificate".into(),
        )));
    }
    let mut c = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    c.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(c))
}

/// The names a server certificate covers, from the stream URL's host: for
/// `svc.ns.svc` also `svc`, `svc.ns` and `svc.ns.svc.cluster.local`.
pub fn server_names(stream_url: &str, extra: &[String]) -> Vec<String> {
    let host = stream_url
        .parse::<http::Uri>()
        .ok()
        .and_then(|u| u.host().map(|h| h.trim_matches(['[', ']']).to_string()))
        .unwrap_or_default();
    let mut out = vec![];
    if !host.is_empty() {
        out.push(host.clone());
    }
    if let Some(base) = host.strip_suffix(".svc") {
        let mut parts = base.splitn(2, '.');
        if let (Some(svc), Some(ns)) = (parts.next(), parts.next()) {
            out.extend([
                svc.to_string(),
                format!("{svc}.{ns}"),
                format!("{svc}.{ns}.svc.cluster.local"),
            ]);
        }
    }
    out.extend(extra.iter().cloned());
    out.dedup();
    out
}

fn unix_now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Keep the CA (create, rotate) and this replica's server certificate
/// current: checks every `every`, re-issues at half life or when the signer
/// changes, retries failures after a few seconds. Publishes the trust bundle.
pub async fn maintain(
    client: Client,
    secret: (String, String),
    names: Vec<String>,
    cell: Arc<CertCell>,
    bundle: watch::Sender<String>,
    every: Duration,
) {
    let (ns, name) = secret;
    let mut issued: Option<(String, i64)> = None; // (signer cn, issued at)
    let mut retry = Duration::from_millis(500);
    loop {
        let now = unix_now();
        let r = async {
            let b = ensure(&client, &ns, &name, now).await?;
            let signer = b.signer(now);
            let due = issued.as_ref().is_none_or(|(cn, at)| {
                *cn != signer.cn || now - at >= SERVER_VALIDITY.as_secs() as i64 / 2
            });
            if due {
                let (chain, key) = signer.issue(&names, now, SERVER_VALIDITY)?;
                cell.set(chain, key)?;
                tracing::info!(ca = %signer.cn, names = ?names, "config stream certificate issued");
                issued = Some((signer.cn.clone(), now));
            }
            bundle.send_if_modified(|cur| {
                let t = b.trust_pem(now);
                (*cur != t).then(|| *cur = t).is_some()
            });
            Ok::<_, PkiError>(())
        }
        .await;
        let wait = match r {
            Ok(()) => {
                retry = Duration::from_millis(500);
                every
            }
            Err(e) => {
                tracing::warn!("config stream TLS: {e}; retrying in {retry:?}");
                let w = retry;
                retry = (retry * 2).min(Duration::from_secs(30));
                w
            }
        };
        tokio::time::sleep(wait).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_names_cover_the_service() {
        assert_eq!(
            server_names("https://portcullis-controller.sys.svc:9977", &[]),
            vec![
                "portcullis-controller.sys.svc",
                "portcullis-controller",
                "portcullis-controller.sys",
                "portcullis-controller.sys.svc.cluster.local"
            ]
        );
        assert_eq!(
            server_names("https://127.0.0.1:9977", &[]),
            vec!["127.0.0.1"]
        );
    }

    #[test]
    fn rotation_keeps_the_old_ca_trusted_and_signing_for_a_grace_period() {
        let year = 365 * 24 * 3600;
        let old = Ca::generate(0, CA_VALIDITY).unwrap();
        let b = CaBundle {
            current: old.clone(),
            previous: None,
        };
        assert!(!b.needs_rotation(year / 2));
        assert!(b.needs_rotation(year * 2 / 3 + 1));
        let now = year * 2 / 3 + 1;
        let new = Ca::generate(now, CA_VALIDITY).unwrap();
        let r = CaBundle {
            current: new.clone(),
            previous: Some(old.clone()),
        };
        assert_eq!(
            r.signer(now).cn,
            old.cn,
            "the old CA signs during the grace period"
        );
        assert_eq!(r.signer(now + 601).cn, new.cn);
        assert_eq!(
            r.trust_pem(now),
            format!("{}{}", new.cert_pem, old.cert_pem)
        );
        assert_eq!(
            r.trust_pem(year + 1),
            new.cert_pem,
            "an expired CA is dropped"
        );
        let s = to_secret("ns", "ca", &r, None);
        assert_eq!(from_secret(&s).unwrap(), r);
    }
}
