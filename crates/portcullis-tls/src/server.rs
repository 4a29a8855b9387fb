//! Frontend TLS of one port: certificates by SNI, per-listener client validation, ALPN.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use portcullis_ir::{ClientValidation, Listener, TlsMode};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};

use crate::{TlsError, names, pem};

/// ALPN protocols a listener offers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Alpn {
    /// `h2` then `http/1.1`: HTTPS listeners.
    #[default]
    Http,
    /// `http/1.1` only.
    Http1,
    /// No ALPN: TLS listeners that terminate to TCP (TLSRoute Terminate).
    None,
    /// Any list, in preference order.
    Custom(Vec<Vec<u8>>),
}

/// ClientTrafficPolicy TLS settings of a port: versions and cipher suites.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ServerSettings {
    /// Refuse TLS 1.2 (`minVersion: "1.3"`).
    pub tls13_only: bool,
    /// Refuse TLS 1.3 (`maxVersion: "1.2"`).
    pub tls12_only: bool,
    /// Cipher suites allowed, by IANA name (empty: every suite of the build).
    pub ciphers: Vec<String>,
}

impl ServerSettings {
    fn provider(&self) -> Result<Arc<rustls::crypto::CryptoProvider>, TlsError> {
        let base = crate::provider();
        if self.ciphers.is_empty() {
            return Ok(base);
        }
        let mut p = (*base).clone();
        p.cipher_suites.retain(|s| {
            let name = format!("{:?}", s.suite());
            self.ciphers
                .iter()
                .any(|c| *c == name || c.replacen("TLS_", "TLS13_", 1) == name)
        });
        if p.cipher_suites.is_empty() {
            return Err(TlsError::Config {
                what: "server TLS config".into(),
                reason: format!("no supported cipher suite among {:?}", self.ciphers),
            });
        }
        Ok(Arc::new(p))
    }

    fn versions(&self) -> Vec<&'static rustls::SupportedProtocolVersion> {
        match (self.tls13_only, self.tls12_only) {
            (true, _) => vec![&rustls::version::TLS13],
            (false, true) => vec![&rustls::version::TLS12],
            (false, false) => vec![&rustls::version::TLS13, &rustls::version::TLS12],
        }
    }
}

impl Alpn {
    /// The wire identifiers, in preference order.
    pub fn protocols(&self) -> Vec<Vec<u8>> {
        match self {
            Alpn::Http => vec![b"h2".to_vec(), b"http/1.1".to_vec()],
            Alpn::Http1 => vec![b"http/1.1".to_vec()],
            Alpn::None => vec![],
            Alpn::Custom(p) => p.clone(),
        }
    }
}

/// One listener as the resolver sees it.
struct Entry {
    name: String,
    hostname: Option<String>,
    /// Certificates in certificateRefs order; the first whose key can sign with
    /// a scheme the client offers is served (RSA, ECDSA and Ed25519 side by side).
    keys: Vec<Arc<CertifiedKey>>,
    /// Index into [`ServerTls::groups`].
    group: usize,
}

/// Picks the listener by SNI and the certificate by the client's signature schemes.
struct SniResolver {
    entries: Arc<Vec<Entry>>,
    /// Listener that answers ClientHellos without SNI: the least specific one.
    default: Option<usize>,
}

impl fmt::Debug for SniResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SniResolver")
            .field("listeners", &self.entries.len())
            .finish()
    }
}

impl SniResolver {
    fn index(&self, sni: Option<&str>) -> Option<usize> {
        match sni {
            Some(name) => names::select(
                Some(name),
                self.entries.iter().map(|e| e.hostname.as_deref()),
            ),
            None => self.default,
        }
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let entry = &self.entries[self.index(hello.server_name())?];
        let schemes = hello.signature_schemes();
        entry
            .keys
            .iter()
            .find(|k| k.key.choose_scheme(schemes).is_some())
            .cloned()
    }
}

/// Client-certificate validation of one listener (GEP-91).
#[derive(Debug)]
pub(crate) struct FrontendVerifier {
    /// webpki chain validation against the listener's CA bundle.
    pub(crate) inner: Arc<dyn ClientCertVerifier>,
    /// `AllowInsecureFallback`: a missing or invalid certificate is accepted.
    pub(crate) fallback: bool,
}

impl FrontendVerifier {
    fn new(v: &ClientValidation, what: &str) -> Result<Self, TlsError> {
        let roots = Arc::new(pem::roots(&v.ca_pem, what)?);
        let builder = WebPkiClientVerifier::builder_with_provider(roots, crate::provider());
        let builder = if v.allow_insecure_fallback {
            builder.allow_unauthenticated()
        } else {
            builder
        };
        let inner = builder.build().map_err(|e| TlsError::Config {
            what: what.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(FrontendVerifier {
            inner,
            fallback: v.allow_insecure_fallback,
        })
    }

    /// Re-validates a presented chain (after a fallback handshake).
    pub(crate) fn is_valid(&self, chain: &[CertificateDer<'_>]) -> bool {
        let Some((end, rest)) = chain.split_first() else {
            return false;
        };
        self.inner
            .verify_client_cert(end, rest, UnixTime::now())
            .is_ok()
    }
}

impl ClientCertVerifier for FrontendVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        !self.fallback
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        match self
            .inner
            .verify_client_cert(end_entity, intermediates, now)
        {
            Ok(v) => Ok(v),
            Err(e) if self.fallback => {
                tracing::debug!(error = %e, "invalid client certificate accepted (AllowInsecureFallback)");
                Ok(ClientCertVerified::assertion())
            }
            Err(e) => Err(e),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// Listeners with the same client validation share one `ServerConfig`.
pub(crate) struct Group {
    pub(crate) config: Arc<ServerConfig>,
    pub(crate) verifier: Option<Arc<FrontendVerifier>>,
}

/// The frontend TLS of one bound port, built from its listeners.
///
/// Immutable: a rotated certificate or changed listener means a new IR and a
/// new `ServerTls`, swapped in with [`SwappableAcceptor::store`](crate::SwappableAcceptor::store).
pub struct ServerTls {
    entries: Arc<Vec<Entry>>,
    resolver: Arc<SniResolver>,
    groups: Vec<Group>,
}

impl fmt::Debug for ServerTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServerTls")
            .field(
                "listeners",
                &self.entries.iter().map(|e| &e.name).collect::<Vec<_>>(),
            )
            .field("configs", &self.groups.len())
            .finish()
    }
}

impl ServerTls {
    /// Builds the TLS of a port from its listeners (most specific first, as the IR orders them).
    ///
    /// Listeners whose `tls` is `Terminate` take part; listeners without TLS or
    /// in `Passthrough` mode are skipped (passthrough is layer-4 routing, before
    /// any handshake). A listener with TLS but no certificate still claims its
    /// hostname: an SNI that selects it fails the handshake rather than getting
    /// another listener's certificate. Any unparsable PEM, or a key that does
    /// not match its certificate, is an error naming the listener and Secret.
    pub fn build<L: Borrow<Listener>>(listeners: &[L], alpn: Alpn) -> Result<ServerTls, TlsError> {
        Self::build_with(listeners, alpn, &ServerSettings::default())
    }

    /// [`ServerTls::build`] with a port's TLS versions and cipher suites.
    pub fn build_with<L: Borrow<Listener>>(
        listeners: &[L],
        alpn: Alpn,
        settings: &ServerSettings,
    ) -> Result<ServerTls, TlsError> {
        let alpn = alpn.protocols();
        let mut entries = Vec::new();
        let mut validations: Vec<Option<ClientValidation>> = Vec::new();
        for l in listeners.iter().map(Borrow::borrow) {
            let Some(tls) = l.tls.as_ref().filter(|t| t.mode == TlsMode::Terminate) else {
                continue;
            };
            let keys = tls
                .certificates
                .iter()
                .map(|c| pem::certified_key(c, &format!("listener {}", l.name)))
                .collect::<Result<Vec<_>, _>>()?;
            let group = match validations.iter().position(|v| *v == tls.client_validation) {
                Some(g) => g,
                None => {
                    validations.push(tls.client_validation.clone());
                    validations.len() - 1
                }
            };
            entries.push(Entry {
                name: l.name.clone(),
                hostname: l.hostname.clone(),
                keys,
                group,
            });
        }
        if validations.is_empty() {
            validations.push(None);
        }
        let default = entries
            .iter()
            .enumerate()
            .min_by_key(|(i, e)| (names::specificity(e.hostname.as_deref()), *i))
            .map(|(i, _)| i);
        let entries = Arc::new(entries);
        let resolver = Arc::new(SniResolver {
            entries: entries.clone(),
            default,
        });
        let groups = validations
            .iter()
            .map(|v| build_group(v.as_ref(), resolver.clone(), &alpn, settings))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ServerTls {
            entries,
            resolver,
            groups,
        })
    }

    /// The `ServerConfig` for a ClientHello with this SNI: the one carrying the
    /// selected listener's client validation. With a single validation setting
    /// on the port (the GEP-91 per-port case) every SNI gets the same config.
    pub fn config_for_sni(&self, sni: Option<&str>) -> Arc<ServerConfig> {
        self.groups[self.group_for_sni(sni)].config.clone()
    }

    /// The port's config for callers that use a plain `TlsAcceptor`: the one of
    /// the listener answering ClientHellos without SNI. Equal to every other
    /// listener's when all listeners on the port share their client validation
    /// (see [`ServerTls::single_config`]); prefer
    /// [`SwappableAcceptor`](crate::SwappableAcceptor), which always picks the right one.
    pub fn server_config(&self) -> Arc<ServerConfig> {
        self.config_for_sni(None)
    }

    /// Whether one `ServerConfig` serves every listener on the port.
    pub fn single_config(&self) -> bool {
        self.groups.len() == 1
    }

    /// Name of the listener an SNI selects (`None` when no listener matches,
    /// which fails the handshake).
    pub fn listener_for_sni(&self, sni: Option<&str>) -> Option<&str> {
        self.resolver
            .index(sni)
            .map(|i| self.entries[i].name.as_str())
    }

    pub(crate) fn group_for_sni(&self, sni: Option<&str>) -> usize {
        self.resolver
            .index(sni)
            .or(self.resolver.default)
            .map(|i| self.entries[i].group)
            .unwrap_or(0)
    }

    pub(crate) fn group(&self, i: usize) -> &Group {
        &self.groups[i]
    }

    /// Number of TLS-terminating listeners.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no listener terminates TLS here.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

fn build_group(
    validation: Option<&ClientValidation>,
    resolver: Arc<SniResolver>,
    alpn: &[Vec<u8>],
    settings: &ServerSettings,
) -> Result<Group, TlsError> {
    let what = "server TLS config";
    let builder = ServerConfig::builder_with_provider(settings.provider()?)
        .with_protocol_versions(&settings.versions())
        .map_err(|e| TlsError::Config {
            what: what.into(),
            reason: e.to_string(),
        })?;
    let (builder, verifier) = match validation {
        Some(v) => {
            let verifier = Arc::new(FrontendVerifier::new(v, "frontend client validation CA")?);
            (
                builder.with_client_cert_verifier(verifier.clone()),
                Some(verifier),
            )
        }
        None => (builder.with_no_client_auth(), None),
    };
    let mut config = builder.with_cert_resolver(resolver);
    config.alpn_protocols = alpn.to_vec();
    Ok(Group {
        config: Arc::new(config),
        verifier,
    })
}
