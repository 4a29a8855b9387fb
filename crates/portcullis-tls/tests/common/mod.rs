//! Test helpers: rcgen CAs and certificates, IR listeners, TLS clients and an
//! echo server behind a `SwappableAcceptor`.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use portcullis_ir::{Certificate, ClientValidation, Listener, ListenerTls, TlsMode};
use portcullis_tls::{HandshakeInfo, SwappableAcceptor};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Runs a test body with a hard time bound.
pub async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(30), f)
        .await
        .expect("test timed out after 30s")
}

/// Key algorithm of a generated certificate.
#[derive(Clone, Copy, Debug)]
pub enum Alg {
    Rsa,
    Ecdsa,
    Ed25519,
}

fn keypair(alg: Alg) -> KeyPair {
    let a = match alg {
        Alg::Rsa => &rcgen::PKCS_RSA_SHA256,
        Alg::Ecdsa => &rcgen::PKCS_ECDSA_P256_SHA256,
        Alg::Ed25519 => &rcgen::PKCS_ED25519,
    };
    KeyPair::generate_for(a).expect("key generation")
}

/// A test certificate authority.
pub struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pub pem: String,
}

/// A certificate chain (leaf first) and its key, as PEM.
#[derive(Clone)]
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Leaf {
    /// The leaf as an IR certificate.
    pub fn ir(&self, source: &str) -> Certificate {
        Certificate {
            source: source.to_owned(),
            cert_pem: self.cert_pem.clone(),
            key_pem: self.key_pem.clone(),
        }
    }

    /// DER of the leaf certificate, to compare with what a peer presented.
    pub fn der(&self) -> CertificateDer<'static> {
        CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .next()
            .unwrap()
            .unwrap()
    }

    /// Chain and key for a rustls client.
    pub fn chain_and_key(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let chain = CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        (
            chain,
            PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap(),
        )
    }
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = keypair(Alg::Ecdsa);
        let pem = params.self_signed(&key).unwrap().pem();
        Ca { params, key, pem }
    }

    /// A leaf for `names`: DNS names, IP addresses, or URIs (anything with `://`).
    pub fn leaf(&self, names: &[&str], alg: Alg) -> Leaf {
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, names.first().copied().unwrap_or("leaf"));
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.subject_alt_names = names
            .iter()
            .map(|n| {
                if let Ok(ip) = n.parse() {
                    SanType::IpAddress(ip)
                } else if n.contains("://") {
                    SanType::URI((*n).try_into().unwrap())
                } else {
                    SanType::DnsName((*n).try_into().unwrap())
                }
            })
            .collect();
        let key = keypair(alg);
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    pub fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(self.pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        roots
    }
}

/// A TLS-terminating IR listener.
pub fn listener(
    name: &str,
    hostname: Option<&str>,
    certs: Vec<Certificate>,
    client_validation: Option<ClientValidation>,
) -> Listener {
    Listener {
        name: name.to_owned(),
        hostname: hostname.map(str::to_owned),
        tls: Some(ListenerTls {
            mode: TlsMode::Terminate,
            certificates: certs,
            client_validation,
        }),
        http_routes: vec![],
        l4_routes: vec![],
        client: None,
    }
}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// A rustls client trusting `ca`, offering `alpn`, optionally with a client certificate.
pub fn client(ca: &Ca, alpn: &[&[u8]], cert: Option<&Leaf>) -> Arc<rustls::ClientConfig> {
    let b = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(ca.roots());
    let mut c = match cert {
        Some(l) => {
            let (chain, key) = l.chain_and_key();
            b.with_client_auth_cert(chain, key).unwrap()
        }
        None => b.with_no_client_auth(),
    };
    c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(c)
}

/// Connects and handshakes; `sni` `None` connects by IP (no SNI is sent).
pub async fn connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    sni: Option<&str>,
) -> std::io::Result<TlsStream<TcpStream>> {
    let name = match sni {
        Some(s) => ServerName::try_from(s.to_owned()).unwrap(),
        None => ServerName::IpAddress(addr.ip().into()),
    };
    let tcp = TcpStream::connect(addr).await?;
    TlsConnector::from(config).connect(name, tcp).await
}

/// Writes `msg` and reads the echo; an error means the server dropped the connection.
pub async fn roundtrip<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    s: &mut S,
    msg: &[u8],
) -> std::io::Result<()> {
    s.write_all(msg).await?;
    s.flush().await?;
    let mut buf = vec![0; msg.len()];
    s.read_exact(&mut buf).await?;
    assert_eq!(buf, msg);
    Ok(())
}

/// What the echo server learnt from each handshake.
pub type Handshakes = mpsc::UnboundedReceiver<Result<HandshakeInfo, String>>;

/// A TLS echo server on 127.0.0.1 behind `acceptor`.
pub async fn echo_server(acceptor: Arc<SwappableAcceptor>) -> (SocketAddr, Handshakes) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match acceptor.accept(tcp).await {
                    Ok((mut tls, info)) => {
                        let _ = tx.send(Ok(info));
                        let mut buf = [0u8; 4096];
                        loop {
                            match tls.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => {
                                    if tls.write_all(&buf[..n]).await.is_err() {
                                        return;
                                    }
                                    let _ = tls.flush().await;
                                }
                            }
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                    }
                }
            });
        }
    });
    (addr, rx)
}

/// The next handshake result the server saw.
pub async fn next(rx: &mut Handshakes) -> Result<HandshakeInfo, String> {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("no handshake seen by the server")
        .expect("server stopped")
}
