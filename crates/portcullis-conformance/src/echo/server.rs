//! Listeners: plain HTTP/1.1 (`HTTP_PORT`), HTTP/1.1 + h2c prior knowledge
//! (`H2C_PORT`) and, when a certificate is configured, HTTPS (`HTTPS_PORT`).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;

use super::EchoError;
use super::handler::{ConnInfo, EchoContext, PortKind, State, handle};
use super::tls;

/// Certificate material for the HTTPS listener.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// PEM certificate chain (`TLS_SERVER_CERT`).
    pub cert: PathBuf,
    /// PEM private key (`TLS_SERVER_PRIVKEY`).
    pub key: PathBuf,
    /// PEM CA bundle for optional client-certificate checks (`TLS_CLIENT_CACERTS`).
    pub client_ca: Option<PathBuf>,
}

/// Configuration of one echo process.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EchoConfig {
    /// The address every listener binds.
    pub bind: IpAddr,
    /// Plain HTTP/1.1 port (upstream default 3000).
    pub http_port: u16,
    /// HTTP/1.1 + h2c port (upstream default 3001).
    pub h2c_port: u16,
    /// HTTPS port (upstream default 8443), served only with `tls`.
    pub https_port: u16,
    /// Pod context echoed back.
    pub context: EchoContext,
    /// HTTPS certificate material.
    pub tls: Option<TlsFiles>,
}

fn port_var(
    get: &impl Fn(&str) -> Option<String>,
    name: &str,
    default: u16,
) -> Result<u16, EchoError> {
    match get(name).filter(|v| !v.is_empty()) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| EchoError::Config(format!("{name}={v} is not a port"))),
    }
}

impl EchoConfig {
    /// Reads the upstream environment variables through `get` (usually
    /// `std::env::var`), binding to `bind`.
    pub fn from_env(bind: IpAddr, get: impl Fn(&str) -> Option<String>) -> Result<Self, EchoError> {
        let var = |name: &str| get(name).unwrap_or_default();
        let cert = get("TLS_SERVER_CERT").filter(|v| !v.is_empty());
        let key = get("TLS_SERVER_PRIVKEY").filter(|v| !v.is_empty());
        let tls = match (cert, key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.into(),
                key: key.into(),
                client_ca: get("TLS_CLIENT_CACERTS")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from),
            }),
            _ => None,
        };
        Ok(Self {
            bind,
            http_port: port_var(&get, "HTTP_PORT", 3000)?,
            h2c_port: port_var(&get, "H2C_PORT", 3001)?,
            https_port: port_var(&get, "HTTPS_PORT", 8443)?,
            context: EchoContext {
                namespace: var("NAMESPACE"),
                ingress: var("INGRESS_NAME"),
                service: var("SERVICE_NAME"),
                pod: var("POD_NAME"),
            },
            tls,
        })
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, EchoError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| EchoError::Bind { addr, source })
}

/// Serves until a listener fails. Listeners are bound before this returns its
/// future's first poll completes, so a bind error is reported at once.
pub async fn run(config: EchoConfig) -> Result<(), EchoError> {
    let state = Arc::new(State::new(
        config.context.clone(),
        config.http_port.to_string(),
    ));
    let http = bind(SocketAddr::new(config.bind, config.http_port)).await?;
    let h2c = bind(SocketAddr::new(config.bind, config.h2c_port)).await?;
    let https = match &config.tls {
        Some(files) => {
            let server_config =
                tls::server_config(&files.cert, &files.key, files.client_ca.as_deref())?;
            let listener = bind(SocketAddr::new(config.bind, config.https_port)).await?;
            Some((listener, TlsAcceptor::from(server_config)))
        }
        None => None,
    };
    super::log!(
        "Starting server, listening on port {} (http), {} (h2c){}",
        config.http_port,
        config.h2c_port,
        if https.is_some() {
            format!(", {} (https)", config.https_port)
        } else {
            String::new()
        }
    );
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(accept_loop(http, PortKind::Http, state.clone(), None));
    tasks.spawn(accept_loop(h2c, PortKind::H2c, state.clone(), None));
    if let Some((listener, acceptor)) = https {
        tasks.spawn(accept_loop(
            listener,
            PortKind::Https,
            state.clone(),
            Some(acceptor),
        ));
    }
    match tasks.join_next().await {
        Some(Ok(result)) => result,
        Some(Err(join)) => Err(EchoError::Io(std::io::Error::other(join.to_string()))),
        None => Ok(()),
    }
}

async fn accept_loop(
    listener: TcpListener,
    kind: PortKind,
    state: Arc<State>,
    acceptor: Option<TlsAcceptor>,
) -> Result<(), EchoError> {
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(err) => {
                eprintln!("accept error: {err}");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let state = state.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            if let Err(err) = serve_connection(stream, remote, kind, state, acceptor).await {
                eprintln!("connection from {remote}: {err}");
            }
        });
    }
}

async fn serve_connection(
    stream: TcpStream,
    remote: SocketAddr,
    kind: PortKind,
    state: Arc<State>,
    acceptor: Option<TlsAcceptor>,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let _ = stream.set_nodelay(true);
    match acceptor {
        None => {
            let std_stream = stream.into_std()?;
            let socket = std_stream.try_clone().ok();
            let stream = TcpStream::from_std(std_stream)?;
            let conn = Arc::new(ConnInfo {
                remote,
                kind,
                tls: None,
                socket,
            });
            let svc = service_fn(move |req| handle(req, state.clone(), conn.clone()));
            let io = TokioIo::new(stream);
            if kind == PortKind::Http {
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(io, svc)
                    .with_upgrades()
                    .await?;
            } else {
                auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(io, svc)
                    .await?;
            }
        }
        Some(acceptor) => {
            let tls_stream = acceptor.accept(stream).await?;
            let conn = Arc::new(ConnInfo {
                remote,
                kind,
                tls: Some(tls::assertions(tls_stream.get_ref().1)),
                socket: None,
            });
            let svc = service_fn(move |req| handle(req, state.clone(), conn.clone()));
            auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(tls_stream), svc)
                .await?;
        }
    }
    Ok(())
}
