//! Upstream TLS (BackendTLSPolicy): a TLS connector and pooled clients per
//! distinct [`BackendTls`], built at apply time and cached across applies.
//!
//! - The client config comes from [`portcullis_tls::client_config_with_alpn`]:
//!   the CA bundle and/or system roots, `hostname` as SNI and verified name
//!   (or the `subjectAltNames`), the Gateway's client certificate.
//! - Two clients per policy: HTTP/1.1 (ALPN `http/1.1`, upgrades work) and
//!   HTTP/2 (ALPN `h2`, for GRPCRoute rules and gRPC requests).
//! - Each distinct [`BackendTls`] has its own connection pool, so two
//!   policies pointing at the same endpoint with different SNI never share a
//!   connection. The cache keeps an entry while a compiled table holds it;
//!   [`UpstreamTlsCache::finish`] drops the others after each apply, so a
//!   config change that does not touch a policy keeps its pooled connections.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use http::{Request, Uri};
use hyper::rt::{Read, ReadBufCursor, Write};
use hyper_util::client::legacy::connect::{Connected, Connection, HttpConnector};
use hyper_util::client::legacy::{Client, ResponseFuture};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use portcullis_ir::{BackendTls, SubjectAltName};
use portcullis_tls::rustls::pki_types::ServerName;
use portcullis_tls::{Alpn, tokio_rustls};
use tokio::net::TcpStream;

use crate::body::{BoxError, ProxyBody};

/// Pooled TLS clients for one BackendTLSPolicy.
pub struct TlsUpstream {
    /// The SNI sent (`hostname`).
    pub server_name: Box<str>,
    h1: Client<TlsConnector, ProxyBody>,
    h2: Client<TlsConnector, ProxyBody>,
    h1_tls: tokio_rustls::TlsConnector,
    h2_tls: tokio_rustls::TlsConnector,
    name: ServerName<'static>,
}

impl std::fmt::Debug for TlsUpstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsUpstream")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl TlsUpstream {
    /// Build the client configs and clients (no connection is opened).
    pub fn new(
        tls: &BackendTls,
        connect_timeout: Duration,
        idle_timeout: Duration,
    ) -> Result<Self, portcullis_tls::TlsError> {
        let name = portcullis_tls::server_name(tls)?;
        let h1_cfg = portcullis_tls::client_config_with_alpn(tls, &Alpn::Http1)?;
        let h2_cfg =
            portcullis_tls::client_config_with_alpn(tls, &Alpn::Custom(vec![b"h2".to_vec()]))?;
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        http.enforce_http(false);
        let h1_tls = tokio_rustls::TlsConnector::from(h1_cfg);
        let h2_tls = tokio_rustls::TlsConnector::from(h2_cfg);
        let connector = |tls: &tokio_rustls::TlsConnector| TlsConnector {
            http: http.clone(),
            tls: tls.clone(),
            name: name.clone(),
        };
        let base = || {
            let mut b = Client::builder(TokioExecutor::new());
            b.pool_timer(TokioTimer::new())
                .pool_idle_timeout(idle_timeout)
                .set_host(false);
            b
        };
        Ok(TlsUpstream {
            server_name: tls.hostname.as_str().into(),
            h1: base()
                .http1_preserve_header_case(true)
                .build(connector(&h1_tls)),
            h2: base()
                .http2_only(true)
                .timer(TokioTimer::new())
                .build(connector(&h2_tls)),
            h1_tls,
            h2_tls,
            name,
        })
    }

    /// The TLS handshake over a connected socket, with the ALPN of `h2` or
    /// HTTP/1.1 (for the pools of backends with a connection policy, which
    /// make their own connections: [`super::hyper_pool`]).
    pub async fn handshake(
        &self,
        h2: bool,
        tcp: TcpStream,
    ) -> io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
        let tls = if h2 { &self.h2_tls } else { &self.h1_tls };
        tls.connect(self.name.clone(), tcp).await
    }

    /// Send a request (absolute `https` URI naming the endpoint).
    pub fn send(&self, h2: bool, req: Request<ProxyBody>) -> ResponseFuture {
        if h2 {
            self.h2.request(req)
        } else {
            self.h1.request(req)
        }
    }
}

/// Connects TCP to the URI's authority, then runs a TLS handshake with the
/// policy's config and SNI.
#[derive(Clone)]
pub struct TlsConnector {
    http: HttpConnector,
    tls: tokio_rustls::TlsConnector,
    name: ServerName<'static>,
}

impl std::fmt::Debug for TlsConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsConnector")
            .field("server_name", &self.name)
            .finish_non_exhaustive()
    }
}

impl tower_service::Service<Uri> for TlsConnector {
    type Response = TlsConn;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<TlsConn, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.http.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let tcp = self.http.call(uri);
        let (tls, name) = (self.tls.clone(), self.name.clone());
        Box::pin(async move {
            let tcp = tcp.await?.into_inner();
            let stream = tls.connect(name, tcp).await?;
            let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
            Ok(TlsConn {
                io: TokioIo::new(stream),
                h2,
                _open: portcullis_obs::metrics().upstream_opened("hyper"),
            })
        })
    }
}

/// An upstream TLS connection.
pub struct TlsConn {
    io: TokioIo<tokio_rustls::client::TlsStream<TcpStream>>,
    h2: bool,
    /// Counts it in `portcullis_upstream_connections_active` until dropped.
    _open: portcullis_obs::metrics::ActiveGuard,
}

impl Connection for TlsConn {
    fn connected(&self) -> Connected {
        let c = Connected::new();
        if self.h2 { c.negotiated_h2() } else { c }
    }
}

impl Read for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl Write for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }
}

struct Entry {
    tls: BackendTls,
    upstream: Arc<TlsUpstream>,
}

#[derive(Default)]
struct CacheState {
    entries: HashMap<u64, Vec<Entry>>,
    errors: BTreeMap<String, String>,
}

/// Upstream TLS clients by policy content, shared by every port.
pub struct UpstreamTlsCache {
    state: Mutex<CacheState>,
    connect_timeout: Duration,
    idle_timeout: Duration,
}

impl std::fmt::Debug for UpstreamTlsCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpstreamTlsCache").finish_non_exhaustive()
    }
}

fn key(t: &BackendTls) -> u64 {
    let mut h = DefaultHasher::new();
    t.hostname.hash(&mut h);
    t.ca_pem.hash(&mut h);
    t.system_roots.hash(&mut h);
    for s in &t.subject_alt_names {
        match s {
            SubjectAltName::Hostname(v) => (0u8, v).hash(&mut h),
            SubjectAltName::Uri(v) => (1u8, v).hash(&mut h),
        }
    }
    if let Some(c) = &t.client_certificate {
        (&c.source, &c.cert_pem, &c.key_pem).hash(&mut h);
    }
    h.finish()
}

impl UpstreamTlsCache {
    /// An empty cache; clients use these connect and pool-idle timeouts.
    pub fn new(connect_timeout: Duration, idle_timeout: Duration) -> Self {
        UpstreamTlsCache {
            state: Mutex::default(),
            connect_timeout,
            idle_timeout,
        }
    }

    /// The clients for `tls` (built on first use). A failure is recorded
    /// against `backend` for the apply report.
    pub fn get(&self, backend: &str, tls: &BackendTls) -> Result<Arc<TlsUpstream>, String> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let bucket = st.entries.entry(key(tls)).or_default();
        if let Some(e) = bucket.iter().find(|e| e.tls == *tls) {
            return Ok(e.upstream.clone());
        }
        match TlsUpstream::new(tls, self.connect_timeout, self.idle_timeout) {
            Ok(u) => {
                let upstream = Arc::new(u);
                bucket.push(Entry {
                    tls: tls.clone(),
                    upstream: upstream.clone(),
                });
                Ok(upstream)
            }
            Err(e) => {
                let msg = e.to_string();
                st.errors.insert(backend.to_owned(), msg.clone());
                Err(msg)
            }
        }
    }

    /// End of an apply: forget entries that no compiled table holds any
    /// more, and return the failures recorded since the previous `finish`.
    pub fn finish(&self) -> BTreeMap<String, String> {
        let mut st = self.state.lock().unwrap_or_else(|e| e.into_inner());
        st.entries.retain(|_, bucket| {
            bucket.retain(|e| Arc::strong_count(&e.upstream) > 1);
            !bucket.is_empty()
        });
        std::mem::take(&mut st.errors)
    }
}
