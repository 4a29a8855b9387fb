//! Test helpers: IR builders, certificates, TCP/TLS/UDP backends and a proxy runner.
#![allow(dead_code)]

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use portcullis_ir::{
    Backend, Certificate, Endpoint, L4Route, Listener, ListenerTls, Port, PortProtocol, RouteMeta,
    ServiceBackend, TlsMode, WeightedBackend,
};
use portcullis_l4::L4Port;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio::time::Instant;

pub async fn bounded<F: Future>(f: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(40), f)
        .await
        .expect("test timed out after 40s")
}

// ---------- IR ----------

pub fn svc(name: &str, addrs: &[SocketAddr]) -> Backend {
    Backend::Service(ServiceBackend {
        name: name.into(),
        namespace: "ns".into(),
        app_protocol: None,
        endpoints: addrs
            .iter()
            .map(|&addr| Endpoint {
                addr,
                terminating: false,
                zone: None,
                for_zones: vec![],
            })
            .collect(),
        tls: None,
    })
}

pub fn wb(weight: u32, backend: Backend) -> WeightedBackend {
    WeightedBackend {
        weight,
        backend,
        filters: vec![],
    }
}

pub fn route(
    name: &str,
    created: &str,
    hostnames: &[&str],
    backends: Vec<WeightedBackend>,
) -> L4Route {
    L4Route {
        meta: RouteMeta {
            kind: "TCPRoute".into(),
            namespace: "ns".into(),
            name: name.into(),
            creation_timestamp: created.into(),
            rule_index: 0,
            rule_name: None,
        },
        hostnames: hostnames.iter().map(|h| h.to_string()).collect(),
        backends,
        traffic: None,
    }
}

pub fn listener(
    name: &str,
    hostname: Option<&str>,
    tls: Option<ListenerTls>,
    routes: Vec<L4Route>,
) -> Listener {
    Listener {
        name: name.into(),
        hostname: hostname.map(str::to_owned),
        tls,
        http_routes: vec![],
        l4_routes: routes,
        client: None,
    }
}

pub fn passthrough() -> Option<ListenerTls> {
    Some(ListenerTls {
        mode: TlsMode::Passthrough,
        certificates: vec![],
        client_validation: None,
    })
}

pub fn terminate(cert: Certificate) -> Option<ListenerTls> {
    Some(ListenerTls {
        mode: TlsMode::Terminate,
        certificates: vec![cert],
        client_validation: None,
    })
}

pub fn port(bind: SocketAddr, protocol: PortProtocol, listeners: Vec<Listener>) -> Arc<Port> {
    Arc::new(Port {
        bind,
        protocol,
        listeners,
        client: None,
    })
}

// ---------- certificates ----------

pub struct Ca {
    params: CertificateParams,
    key: KeyPair,
    pub pem: String,
}

pub struct Leaf {
    pub cert_pem: String,
    pub key_pem: String,
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

    pub fn leaf(&self, dns: &[&str]) -> Leaf {
        let mut params = CertificateParams::default();
        params.distinguished_name.push(DnType::CommonName, dns[0]);
        params.subject_alt_names = dns
            .iter()
            .map(|d| SanType::DnsName((*d).try_into().unwrap()))
            .collect();
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = params
            .signed_by(&key, &Issuer::from_params(&self.params, &self.key))
            .unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }

    pub fn client(&self) -> Arc<rustls::ClientConfig> {
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(CertificateDer::from_pem_slice(self.pem.as_bytes()).unwrap())
            .unwrap();
        Arc::new(
            rustls::ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .with_root_certificates(roots)
                .with_no_client_auth(),
        )
    }
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
        CertificateDer::from_pem_slice(self.cert_pem.as_bytes()).unwrap()
    }
}

pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

pub async fn tls_connect(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
    sni: &str,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(addr).await?;
    tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from(sni.to_owned()).unwrap(), tcp)
        .await
}

// ---------- backends ----------

/// Serves each connection: writes `<name>\n`, then echoes.
async fn greet_and_echo<S: AsyncRead + AsyncWrite + Unpin>(mut s: S, name: &str) {
    if s.write_all(format!("{name}\n").as_bytes()).await.is_err() {
        return;
    }
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if s.write_all(&buf[..n]).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// A plain TCP backend that greets with its name and echoes.
pub async fn tcp_backend(name: &str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let name = name.to_owned();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let name = name.clone();
            tokio::spawn(async move { greet_and_echo(s, &name).await });
        }
    });
    addr
}

/// A TLS backend (its own certificate) that greets with its name and echoes.
pub async fn tls_backend(name: &str, leaf: &Leaf) -> SocketAddr {
    let chain = vec![leaf.der()];
    let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
    let cfg = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let name = name.to_owned();
    tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            let (acceptor, name) = (acceptor.clone(), name.clone());
            tokio::spawn(async move {
                if let Ok(tls) = acceptor.accept(s).await {
                    greet_and_echo(tls, &name).await;
                }
            });
        }
    });
    addr
}

/// A UDP backend answering `<name>|<sender port>|<payload>`.
pub async fn udp_backend(name: &str) -> SocketAddr {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = s.local_addr().unwrap();
    let name = name.to_owned();
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = s.recv_from(&mut buf).await {
            let reply = format!(
                "{name}|{}|{}",
                from.port(),
                String::from_utf8_lossy(&buf[..n])
            );
            let _ = s.send_to(reply.as_bytes(), from).await;
        }
    });
    addr
}

/// Reads the greeting line; `None` if the connection closed first.
pub async fn greeting<S: AsyncRead + Unpin>(s: &mut S) -> Option<String> {
    let mut r = BufReader::new(s);
    let mut line = String::new();
    match tokio::time::timeout(Duration::from_secs(10), r.read_line(&mut line)).await {
        Ok(Ok(n)) if n > 0 && line.ends_with('\n') => Some(line.trim_end().to_owned()),
        _ => None,
    }
}

/// Writes and reads back `msg`.
pub async fn echo<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, msg: &[u8]) -> std::io::Result<()> {
    s.write_all(msg).await?;
    s.flush().await?;
    let mut buf = vec![0; msg.len()];
    tokio::time::timeout(Duration::from_secs(10), s.read_exact(&mut buf))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "echo timed out"))??;
    assert_eq!(buf, msg);
    Ok(())
}

/// Whether the proxy closed the connection (EOF or reset) within 10s, without data.
pub async fn closed<S: AsyncRead + Unpin>(s: &mut S) -> bool {
    let mut buf = [0u8; 16];
    matches!(
        tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

// ---------- proxy ----------

/// A running proxy: its address, the trigger to start draining (with a
/// deadline) and the serve task.
pub struct Proxy {
    pub addr: SocketAddr,
    pub drain: Option<oneshot::Sender<Instant>>,
    pub task: JoinHandle<std::io::Result<()>>,
}

impl Proxy {
    pub fn start_drain(&mut self, grace: Duration) {
        let _ = self.drain.take().unwrap().send(Instant::now() + grace);
    }
}

async fn drain_future(rx: oneshot::Receiver<Instant>) -> Instant {
    match rx.await {
        Ok(d) => d,
        Err(_) => std::future::pending().await,
    }
}

pub async fn bind_tcp() -> TcpListener {
    TcpListener::bind("127.0.0.1:0").await.unwrap()
}

pub fn serve_tcp(l4: L4Port, listener: TcpListener) -> Proxy {
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(async move { l4.serve_tcp(listener, drain_future(rx)).await });
    Proxy {
        addr,
        drain: Some(tx),
        task,
    }
}

pub fn serve_udp(l4: L4Port, socket: UdpSocket) -> Proxy {
    let addr = socket.local_addr().unwrap();
    let (tx, rx) = oneshot::channel();
    let task = tokio::spawn(async move { l4.serve_udp(socket, drain_future(rx)).await });
    Proxy {
        addr,
        drain: Some(tx),
        task,
    }
}
