//! TLS test support: rcgen CAs and leaves, IR TLS listeners, TLS clients
//! (raw and HTTP/1.1 or HTTP/2 over TLS), TLS backends (byte echo and the
//! HTTP echo over TLS).

use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use ::http::Request;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use portcullis_ir::*;
use portcullis_tls::rustls;
use portcullis_tls::rustls::pki_types::pem::PemObject;
use portcullis_tls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use portcullis_tls::tokio_rustls::client::TlsStream;
use portcullis_tls::tokio_rustls::{TlsAcceptor, TlsConnector};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::Got;

/// A test certificate authority.
pub struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pub pem: String,
}

/// A certificate (leaf first) and its key, as PEM.
#[derive(Clone)]
pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Leaf {
    pub fn ir(&self, source: &str) -> Certificate {
        Certificate {
            source: source.into(),
            cert_pem: self.cert_pem.clone(),
            key_pem: self.key_pem.clone(),
        }
    }

    pub fn der(&self) -> CertificateDer<'static> {
        CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .next()
            .unwrap()
            .unwrap()
    }

    pub fn chain_and_key(&self) -> (Vec<CertificateDer<'static>>, PrivateKeyDer<'static>) {
        let chain = CertificateDer::pem_slice_iter(self.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(self.key_pem.as_bytes()).unwrap();
        (chain, key)
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
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Ca { params, key, pem }
    }

    /// A leaf for `names`: DNS names, or URIs (anything with `://`). ECDSA,
    /// or RSA when `rsa`.
    pub fn leaf_with(&self, names: &[&str], rsa: bool) -> Leaf {
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
                if n.contains("://") {
                    SanType::URI((*n).try_into().unwrap())
                } else {
                    SanType::DnsName((*n).try_into().unwrap())
                }
            })
            .collect();
        let alg = if rsa {
            &rcgen::PKCS_RSA_SHA256
        } else {
            &rcgen::PKCS_ECDSA_P256_SHA256
        };
        let key = KeyPair::generate_for(alg).unwrap();
        let issuer = Issuer::from_params(&self.params, &self.key);
        let cert = params.signed_by(&key, &issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    pub fn leaf(&self, names: &[&str]) -> Leaf {
        self.leaf_with(names, false)
    }

    pub fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_slice_iter(self.pem.as_bytes()) {
            roots.add(c.unwrap()).unwrap();
        }
        roots
    }
}

/// An HTTPS (or TLS-terminate) listener.
pub fn tls_listener(
    name: &str,
    hostname: Option<&str>,
    certs: Vec<Certificate>,
    client_validation: Option<ClientValidation>,
    rules: Vec<HttpRouteRule>,
) -> Listener {
    Listener {
        name: name.into(),
        hostname: hostname.map(Into::into),
        tls: Some(ListenerTls {
            mode: TlsMode::Terminate,
            certificates: certs,
            client_validation,
        }),
        http_routes: rules.into_iter().map(Arc::new).collect(),
        l4_routes: vec![],
        client: None,
    }
}

/// A rustls client config trusting `ca`, offering `alpn`, optionally with a client certificate.
pub fn client_config(ca: &Ca, alpn: &[&[u8]], cert: Option<&Leaf>) -> Arc<rustls::ClientConfig> {
    let b = rustls::ClientConfig::builder_with_provider(portcullis_tls::provider())
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

/// Connect and handshake with SNI `sni`.
pub async fn tls_connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    sni: &str,
) -> io::Result<TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(sni.to_owned()).unwrap();
    TlsConnector::from(config).connect(name, tcp).await
}

/// The certificate the server presented.
pub fn peer_cert(s: &TlsStream<TcpStream>) -> CertificateDer<'static> {
    s.get_ref().1.peer_certificates().unwrap()[0].clone()
}

enum Sender {
    H1(http1::SendRequest<Full<Bytes>>),
    H2(http2::SendRequest<Full<Bytes>>),
}

/// An HTTP connection over TLS: HTTP/2 when ALPN chose `h2`, else HTTP/1.1.
pub struct TlsHttp {
    sender: Sender,
    /// Whether ALPN chose `h2`.
    pub h2: bool,
    /// The certificate the server presented.
    pub cert: CertificateDer<'static>,
}

impl TlsHttp {
    pub async fn connect(
        addr: SocketAddr,
        config: Arc<rustls::ClientConfig>,
        sni: &str,
    ) -> io::Result<TlsHttp> {
        let tls = tls_connect(addr, config, sni).await?;
        let cert = peer_cert(&tls);
        let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
        let io = TokioIo::new(tls);
        let sender = if h2 {
            let (s, conn) = http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(io::Error::other)?;
            tokio::spawn(conn);
            Sender::H2(s)
        } else {
            let (s, conn) = http1::handshake(io).await.map_err(io::Error::other)?;
            tokio::spawn(conn);
            Sender::H1(s)
        };
        Ok(TlsHttp { sender, h2, cert })
    }

    /// GET `path` with Host `host`; `Err` when the connection failed.
    pub async fn get(&mut self, host: &str, path: &str) -> Result<Got, hyper::Error> {
        let resp = match &mut self.sender {
            Sender::H1(s) => {
                let req = Request::get(path)
                    .header("host", host)
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                s.ready().await?;
                s.send_request(req).await?
            }
            Sender::H2(s) => {
                let req = Request::get(format!("https://{host}{path}"))
                    .body(Full::new(Bytes::new()))
                    .unwrap();
                s.ready().await?;
                s.send_request(req).await?
            }
        };
        let (parts, body) = resp.into_parts();
        let body = body.collect().await?.to_bytes();
        Ok(Got {
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
        })
    }
}

/// A rustls server config with `leaf`, offering `alpn`.
pub fn server_config(leaf: &Leaf, alpn: &[&[u8]]) -> Arc<rustls::ServerConfig> {
    let (chain, key) = leaf.chain_and_key();
    let mut c = rustls::ServerConfig::builder_with_provider(portcullis_tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(c)
}

/// A TLS server that sends `hello <name>\n`, then echoes bytes.
pub async fn tls_echo_backend(name: &str, leaf: &Leaf) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(server_config(leaf, &[]));
    let greeting = format!("hello {name}\n");
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (acceptor, greeting) = (acceptor.clone(), greeting.clone());
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(tcp).await else {
                    return;
                };
                if s.write_all(greeting.as_bytes()).await.is_err() {
                    return;
                }
                let _ = s.flush().await;
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                    let _ = s.flush().await;
                }
            });
        }
    });
    addr
}

/// The HTTP echo backend ([`super::Echo`]'s answers) behind TLS with
/// `leaf`, offering ALPN `h2` and `http/1.1`. Records the SNI of every
/// handshake.
pub struct TlsEchoHttp {
    pub addr: SocketAddr,
    pub snis: Arc<Mutex<Vec<Option<String>>>>,
    pub seen: Arc<Mutex<Vec<serde_json::Value>>>,
}

impl TlsEchoHttp {
    pub async fn start(name: &str, leaf: &Leaf) -> TlsEchoHttp {
        Self::start_with(name, server_config(leaf, &[b"h2", b"http/1.1"])).await
    }

    /// Requiring a client certificate issued by `client_ca`.
    pub async fn start_mtls(name: &str, leaf: &Leaf, client_ca: &Ca) -> TlsEchoHttp {
        let provider = portcullis_tls::provider();
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(client_ca.roots()),
            provider.clone(),
        )
        .build()
        .unwrap();
        let (chain, key) = leaf.chain_and_key();
        let mut c = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .unwrap();
        c.alpn_protocols = vec![b"http/1.1".to_vec()];
        Self::start_with(name, Arc::new(c)).await
    }

    pub async fn start_with(name: &str, config: Arc<rustls::ServerConfig>) -> TlsEchoHttp {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let acceptor = TlsAcceptor::from(config);
        let snis: Arc<Mutex<Vec<Option<String>>>> = Arc::default();
        let seen: Arc<Mutex<Vec<serde_json::Value>>> = Arc::default();
        let (snis2, seen2, name) = (snis.clone(), seen.clone(), name.to_string());
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (acceptor, snis, seen, name) =
                    (acceptor.clone(), snis2.clone(), seen2.clone(), name.clone());
                tokio::spawn(async move {
                    let Ok(s) = acceptor.accept(tcp).await else {
                        snis.lock().unwrap().push(None);
                        return;
                    };
                    let sni = s.get_ref().1.server_name().map(str::to_owned);
                    snis.lock().unwrap().push(sni);
                    let svc = service_fn(move |req| {
                        super::echo(req, name.clone(), seen.clone(), Default::default())
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(s), svc)
                        .await;
                });
            }
        });
        TlsEchoHttp { addr, snis, seen }
    }
}

/// A Service backend `name` at `addr` behind TLS: SNI and verified name
/// `hostname`, trusting `ca` only.
pub fn tls_backend(name: &str, addr: SocketAddr, hostname: &str, ca: &Ca) -> Backend {
    match super::service(name, &[addr], None) {
        Backend::Service(mut s) => {
            s.tls = Some(BackendTls {
                hostname: hostname.into(),
                ca_pem: ca.pem.clone(),
                system_roots: false,
                subject_alt_names: vec![],
                client_certificate: None,
            });
            Backend::Service(s)
        }
        other => other,
    }
}
