//! The controller side of the stream: an HTTP/2 server over TLS (the
//! certificate comes from [`super::pki`]) authenticating proxies by their
//! token and streaming them their Gateway's config until the token expires.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use kube::api::PostParams;
use kube::{Api, Client};
use portcullis_ir::Config;
use portcullis_store::ObjectKey;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;

use super::wire::{Message, WIRE_HEADER, encode_for, negotiate};

/// A boxed future, for the object-safe [`TokenReviewer`].
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Authenticates a bearer token; `Ok(username)`, e.g. `system:serviceaccount:ns:name`.
pub trait TokenReviewer: Send + Sync + 'static {
    /// Review one token.
    fn review<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<String, String>>;
}

/// Reviews tokens with the API server (`authentication.k8s.io/v1` TokenReview, audience `portcullis`).
pub struct KubeTokenReviewer {
    client: Client,
}

impl KubeTokenReviewer {
    /// A reviewer using `client`.
    pub fn new(client: Client) -> Self {
        KubeTokenReviewer { client }
    }
}

impl TokenReviewer for KubeTokenReviewer {
    fn review<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            let api: Api<TokenReview> = Api::all(self.client.clone());
            let review = TokenReview {
                spec: TokenReviewSpec {
                    token: Some(token.to_string()),
                    audiences: Some(vec![crate::TOKEN_AUDIENCE.to_string()]),
                },
                ..Default::default()
            };
            let out = api
                .create(&PostParams::default(), &review)
                .await
                .map_err(|e| format!("TokenReview failed: {e}"))?;
            let st = out.status.unwrap_or_default();
            if st.authenticated != Some(true) {
                return Err(st.error.unwrap_or_else(|| "token not authenticated".into()));
            }
            if !st
                .audiences
                .unwrap_or_default()
                .iter()
                .any(|a| a == crate::TOKEN_AUDIENCE)
            {
                return Err(format!(
                    "token is not for audience {}",
                    crate::TOKEN_AUDIENCE
                ));
            }
            st.user
                .and_then(|u| u.username)
                .ok_or_else(|| "token has no username".into())
        })
    }
}

/// What the controller publishes to proxies.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Published {
    /// Increases with every publication that changed something.
    pub version: u64,
    /// Each served Gateway's config (Arcs are reused while a Gateway's config is unchanged).
    pub gateways: BTreeMap<ObjectKey, Arc<Config>>,
    /// The user each Gateway's proxies must authenticate as.
    pub identities: BTreeMap<ObjectKey, String>,
    /// The Gateway `metadata.generation` each config was computed from.
    pub generations: BTreeMap<ObjectKey, i64>,
}

/// The proxies streaming a configuration now: each authenticated stream's
/// peer address and Gateway (the dashboard reads their `/metrics`).
#[derive(Clone, Debug, Default)]
pub struct Proxies {
    streams: Arc<Mutex<BTreeMap<u64, (IpAddr, ObjectKey)>>>,
    next: Arc<AtomicU64>,
}

/// Removes its stream from [`Proxies`] when the stream ends.
struct Connected(Proxies, u64);

impl Drop for Connected {
    fn drop(&mut self) {
        if let Ok(mut m) = self.0.streams.lock() {
            m.remove(&self.1);
        }
    }
}

impl Proxies {
    /// The connected proxies' distinct (address, Gateway).
    pub fn list(&self) -> Vec<(IpAddr, ObjectKey)> {
        let mut v: Vec<_> = self
            .streams
            .lock()
            .map(|m| m.values().cloned().collect())
            .unwrap_or_default();
        v.sort();
        v.dedup();
        v
    }

    fn add(&self, ip: IpAddr, gateway: ObjectKey) -> Connected {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut m) = self.streams.lock() {
            m.insert(id, (ip, gateway));
        }
        Connected(self.clone(), id)
    }
}

/// A running stream server; dropping it closes every stream.
pub struct StreamServer {
    addr: SocketAddr,
    tasks: JoinSet<()>,
    proxies: Proxies,
}

impl StreamServer {
    /// Serve on `listener`, TLS with `tls`.
    pub fn start(
        listener: TcpListener,
        published: watch::Receiver<Arc<Published>>,
        reviewer: Arc<dyn TokenReviewer>,
        tls: Arc<rustls::ServerConfig>,
    ) -> Self {
        let addr = listener.local_addr().expect("bound");
        let proxies = Proxies::default();
        let mut tasks = JoinSet::new();
        tasks.spawn(accept(
            listener,
            published,
            reviewer,
            tokio_rustls::TlsAcceptor::from(tls),
            proxies.clone(),
        ));
        StreamServer {
            addr,
            tasks,
            proxies,
        }
    }

    /// The proxies connected now.
    pub fn proxies(&self) -> Proxies {
        self.proxies.clone()
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stop accepting and close every stream.
    pub fn stop(&mut self) {
        self.tasks.abort_all();
    }
}

async fn accept(
    listener: TcpListener,
    published: watch::Receiver<Arc<Published>>,
    reviewer: Arc<dyn TokenReviewer>,
    acceptor: tokio_rustls::TlsAcceptor,
    proxies: Proxies,
) {
    let mut conns = JoinSet::new();
    loop {
        let (sock, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!("config stream accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let (published, reviewer, acceptor, proxies) = (
            published.clone(),
            reviewer.clone(),
            acceptor.clone(),
            proxies.clone(),
        );
        conns.spawn(async move {
            let sock =
                match tokio::time::timeout(Duration::from_secs(10), acceptor.accept(sock)).await {
                    Ok(Ok(s)) => s,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, "config stream TLS handshake: {e}");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "config stream TLS handshake timed out");
                        return;
                    }
                };
            let svc = hyper::service::service_fn(move |req| {
                let from = (peer.ip(), proxies.clone());
                handle(req, published.clone(), reviewer.clone(), from)
            });
            let mut b = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
            b.timer(TokioTimer::new())
                .keep_alive_interval(Some(Duration::from_secs(10)))
                .keep_alive_timeout(Duration::from_secs(20));
            if let Err(e) = b.serve_connection(TokioIo::new(sock), svc).await {
                tracing::debug!(%peer, "config stream connection: {e}");
            }
        });
        while conns.try_join_next().is_some() {}
    }
}

type Body = BoxBody<Bytes, Infallible>;

fn plain(status: StatusCode, msg: impl Into<String>) -> Response<Body> {
    let mut r = Response::new(Full::new(Bytes::from(msg.into())).boxed());
    *r.status_mut() = status;
    r
}

async fn handle(
    req: Request<Incoming>,
    published: watch::Receiver<Arc<Published>>,
    reviewer: Arc<dyn TokenReviewer>,
    (peer, proxies): (IpAddr, Proxies),
) -> Result<Response<Body>, Infallible> {
    let Some(key) = req
        .uri()
        .path()
        .strip_prefix("/v1/config/")
        .and_then(|p| p.split_once('/'))
        .map(|(ns, n)| ObjectKey::new(ns, n))
    else {
        return Ok(plain(
            StatusCode::NOT_FOUND,
            "use /v1/config/<namespace>/<gateway>",
        ));
    };
    let token = req
        .headers()
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(token) = token.filter(|t| !t.is_empty()) else {
        return Ok(plain(StatusCode::UNAUTHORIZED, "missing bearer token"));
    };
    let expires_in = super::auth::expires_in(token);
    if expires_in == Some(Duration::ZERO) {
        return Ok(plain(StatusCode::UNAUTHORIZED, "token expired"));
    }
    let user = match reviewer.review(token).await {
        Ok(u) => u,
        Err(e) => {
            tracing::warn!(gateway = %key, "proxy refused: {e}");
            return Ok(plain(StatusCode::UNAUTHORIZED, e));
        }
    };
    let expected = published.borrow().identities.get(&key).cloned();
    match expected {
        None => {
            return Ok(plain(
                StatusCode::NOT_FOUND,
                format!("gateway {key} is not served"),
            ));
        }
        Some(e) if e != user => {
            tracing::warn!(gateway = %key, %user, "proxy refused: not the Gateway's ServiceAccount");
            return Ok(plain(
                StatusCode::FORBIDDEN,
                format!("{user} may not read the config of {key}"),
            ));
        }
        Some(_) => {}
    }
    let wire = negotiate(req.headers().get(WIRE_HEADER).and_then(|v| v.to_str().ok()));
    tracing::info!(gateway = %key, %user, wire, "proxy connected");
    let (tx, rx) = mpsc::channel::<Bytes>(4);
    let deadline = expires_in.map(|d| tokio::time::Instant::now() + d);
    let connected = proxies.add(peer, key.clone());
    tokio::spawn(async move {
        let _connected = connected;
        feed(key, published, tx, wire, deadline).await;
    });
    let body = StreamBody::new(tokio_stream_from(rx).map(|b| Ok::<_, Infallible>(Frame::data(b))));
    let mut r = Response::new(BodyExt::boxed(body));
    r.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/x-portcullis-config-stream"),
    );
    r.headers_mut()
        .insert(WIRE_HEADER, http::HeaderValue::from(wire));
    Ok(r)
}

fn tokio_stream_from(mut rx: mpsc::Receiver<Bytes>) -> impl futures_util::Stream<Item = Bytes> {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

/// Send the Gateway's config now and after every change, until the proxy
/// goes away or its token expires (the proxy then reconnects with its
/// refreshed token). A Gateway that is not published any more (not accepted)
/// sends nothing: its proxies keep the last config they received.
async fn feed(
    key: ObjectKey,
    mut published: watch::Receiver<Arc<Published>>,
    tx: mpsc::Sender<Bytes>,
    wire: u32,
    deadline: Option<tokio::time::Instant>,
) {
    let mut last: Option<Arc<Config>> = None;
    let expired = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(expired);
    loop {
        let (version, cfg, generation) = {
            let p = published.borrow_and_update();
            (
                p.version,
                p.gateways.get(&key).cloned(),
                p.generations.get(&key).copied().unwrap_or(0),
            )
        };
        if let Some(cfg) = cfg
            && last
                .as_ref()
                .is_none_or(|l| !Arc::ptr_eq(l, &cfg) && **l != *cfg)
        {
            let frame = encode_for(
                &Message {
                    version,
                    config: (*cfg).clone(),
                    generation,
                },
                wire,
            );
            if tx.send(frame).await.is_err() {
                return;
            }
            last = Some(cfg);
        }
        tokio::select! {
            r = published.changed() => if r.is_err() { return },
            _ = tx.closed() => return,
            _ = &mut expired => {
                tracing::info!(gateway = %key, "proxy token expired: closing its stream");
                return;
            }
        }
    }
}
