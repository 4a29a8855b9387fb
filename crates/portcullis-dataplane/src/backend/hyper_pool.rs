//! Upstream connections of a backend with a connection policy
//! ([`ConnPolicy`]) for the requests hyper carries: HTTP/2 (h2c Service
//! ports, gRPC), TLS (BackendTLSPolicy, HTTP/1.1 or HTTP/2 by ALPN) and
//! HTTP/1.1 upgrades (WebSocket). Plain HTTP/1.1 goes through the lean client
//! ([`super::h1`]), which applies the same policy.
//!
//! hyper-util's pooled client cannot count connections against a limit, cap
//! the requests a connection carries or retire it at an age, so these
//! connections are made with `hyper::client::conn` and pooled here, one pool
//! per policy (that is, per backend and configuration version):
//!
//! - **`maxConnections` / `maxPendingRequests`**: a connection takes a
//!   [`super::upstream::ConnSlot`] before it is dialled and holds it in its
//!   socket until the socket closes (an upgraded connection keeps it while
//!   the tunnel lives). Past the limit a request waits as a pending request,
//!   at most the connect timeout, or fails at once (503 `UO`).
//! - **`maxRequestsPerConnection`**: counted when a request is given a
//!   connection, so an HTTP/2 connection shared by concurrent streams never
//!   carries more than the limit; a spent connection leaves the pool and
//!   closes when its last stream ends.
//! - **`maxConnectionDuration`**: an older connection is given no new request
//!   and closes when its last request ends.
//! - **`connectionIdleTimeout`** (else `--upstream-idle-timeout`): each
//!   connection's task closes it that long after its last request ended.
//! - **`connectTimeout`** (else `--connect-timeout`): the TCP connect and the
//!   TLS handshake together.
//!
//! An HTTP/2 connection stays in the pool while it serves streams (it is
//! shared); an HTTP/1.1 connection leaves it for one exchange and comes back
//! when the response body has ended and hyper reports it ready, if the
//! policy still lets it be reused and no request waits for a slot (the
//! connection then closes, and its slot goes to the waiter). Unlike the lean
//! client's per-thread pools this pool is one per policy, shared by every
//! worker, so an idle connection here can serve any request and may hold
//! the last slot.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use http::{Request, Response, Uri};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::Notify;

use super::pool::Holding;
use super::tls::TlsUpstream;
use super::upstream::{ConnPolicy, ConnSlot, SlotError};
use crate::body::{Guarded, ProxyBody};

/// Why a request got no response from the pool.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// `maxConnections` and `maxPendingRequests` (503 `UO`).
    #[error(transparent)]
    Overflow(#[from] SlotError),
    /// The connect (and TLS handshake) did not finish in time.
    #[error("upstream connect timed out")]
    ConnectTimeout,
    /// The TCP connect failed.
    #[error("upstream connect: {0}")]
    Connect(std::io::Error),
    /// The TLS handshake failed.
    #[error("upstream TLS handshake: {0}")]
    Tls(std::io::Error),
    /// The HTTP handshake failed.
    #[error("upstream HTTP handshake: {0}")]
    Handshake(hyper::Error),
    /// The exchange failed.
    #[error("upstream request: {0}")]
    Request(hyper::Error),
}

impl PoolError {
    /// Whether no connection could be made (outlier detection and retries
    /// count these as connect failures).
    pub fn is_connect(&self) -> bool {
        matches!(
            self,
            PoolError::ConnectTimeout
                | PoolError::Connect(_)
                | PoolError::Tls(_)
                | PoolError::Handshake(_)
        )
    }
}

/// Which connections may carry a request: the endpoint, the TLS client (by
/// identity; 0 for cleartext) and the protocol.
type Key = (SocketAddr, usize, bool);

/// The pooled connections of one policy.
#[derive(Debug, Default)]
pub struct HyperPool {
    conns: Mutex<HashMap<Key, Vec<Pooled>>>,
}

#[derive(Debug)]
enum Sender {
    H1(http1::SendRequest<ProxyBody>),
    H2(http2::SendRequest<ProxyBody>),
}

#[derive(Debug)]
struct Pooled {
    sender: Sender,
    state: Arc<ConnState>,
}

/// What the pool and a connection's task share about the connection.
#[derive(Debug)]
struct ConnState {
    born: Instant,
    /// Requests given to it.
    uses: AtomicU64,
    /// Requests in flight (until their response body ends).
    active: AtomicUsize,
    /// When the last request ended, as nanoseconds after `born`.
    last_end: AtomicU64,
    /// Wakes the task when `active` falls to zero.
    changed: Notify,
}

impl ConnState {
    fn new() -> Arc<Self> {
        Arc::new(ConnState {
            born: Instant::now(),
            uses: AtomicU64::new(0),
            active: AtomicUsize::new(0),
            last_end: AtomicU64::new(0),
            changed: Notify::new(),
        })
    }

    fn begin(&self) {
        self.uses.fetch_add(1, Ordering::AcqRel);
        self.active.fetch_add(1, Ordering::AcqRel);
    }

    fn end(&self) {
        let since = u64::try_from(self.born.elapsed().as_nanos()).unwrap_or(u64::MAX);
        self.last_end.store(since, Ordering::Release);
        if self.active.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.changed.notify_one();
        }
    }

    fn idle_since(&self) -> Instant {
        self.born + Duration::from_nanos(self.last_end.load(Ordering::Acquire))
    }
}

impl Sender {
    fn is_closed(&self) -> bool {
        match self {
            Sender::H1(s) => s.is_closed(),
            Sender::H2(s) => s.is_closed(),
        }
    }
}

/// How long a finished HTTP/1.1 exchange may take to leave its connection
/// ready for the next (hyper reads the response's end); after it the
/// connection is dropped.
const READY_WAIT: Duration = Duration::from_secs(10);

/// Ends a request's hold on its connection when the response body ends (or
/// is dropped); an HTTP/1.1 connection then goes back to the pool once
/// hyper has finished the exchange.
struct InFlight {
    state: Arc<ConnState>,
    back: Option<(http1::SendRequest<ProxyBody>, Arc<ConnPolicy>, Key)>,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.state.end();
        let Some((mut sender, policy, key)) = self.back.take() else {
            return;
        };
        let state = self.state.clone();
        tokio::spawn(async move {
            // Ready once the response has been read to its end; an
            // exchange cut short closes the connection instead.
            if tokio::time::timeout(READY_WAIT, sender.ready())
                .await
                .is_ok_and(|r| r.is_ok())
                && !policy.has_waiters()
                && policy.reusable(
                    state.born,
                    state.uses.load(Ordering::Acquire),
                    Instant::now(),
                )
            {
                policy.hyper.put(key, Sender::H1(sender), state);
            }
        });
    }
}

/// A socket holding its place in the backend's `maxConnections` (and in
/// the connection gauges) until it closes.
type Slotted<T> = Holding<T, (ConnSlot, portcullis_obs::metrics::ActiveGuard)>;

/// The process defaults a policy without its own timeouts falls back to.
#[derive(Clone, Copy, Debug)]
pub struct Defaults {
    /// `--connect-timeout`.
    pub connect: Duration,
    /// `--upstream-idle-timeout`.
    pub idle: Duration,
}

impl HyperPool {
    /// A connection that may carry one more request now, marked as carrying it.
    fn checkout(&self, policy: &ConnPolicy, key: &Key) -> Option<(Sender, Arc<ConnState>)> {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        let list = conns.get_mut(key)?;
        let now = Instant::now();
        list.retain(|p| {
            !p.sender.is_closed()
                && policy.reusable(p.state.born, p.state.uses.load(Ordering::Acquire), now)
        });
        let found = match key.2 {
            // HTTP/2: shared while it has room for a stream.
            true => list.iter().find_map(|p| match &p.sender {
                Sender::H2(s) if s.is_ready() => {
                    p.state.begin();
                    Some((Sender::H2(s.clone()), p.state.clone()))
                }
                _ => None,
            }),
            // HTTP/1.1: taken out for one exchange (most recently used first).
            false => {
                let i = list.iter().rposition(|p| match &p.sender {
                    Sender::H1(s) => s.is_ready(),
                    Sender::H2(_) => false,
                });
                i.map(|i| {
                    let p = list.swap_remove(i);
                    p.state.begin();
                    (p.sender, p.state)
                })
            }
        };
        if list.is_empty() {
            conns.remove(key);
        }
        found
    }

    fn put(&self, key: Key, sender: Sender, state: Arc<ConnState>) {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        conns.entry(key).or_default().push(Pooled { sender, state });
    }

    /// Called by a connection's task before it closes an idle connection:
    /// removes it from the pool unless a request took it meanwhile (the
    /// pool's lock orders the two).
    fn retire_if_idle(&self, key: &Key, state: &Arc<ConnState>) -> bool {
        let mut conns = self.conns.lock().unwrap_or_else(|e| e.into_inner());
        if state.active.load(Ordering::Acquire) != 0 {
            return false;
        }
        if let Some(list) = conns.get_mut(key) {
            list.retain(|p| !Arc::ptr_eq(&p.state, state));
            if list.is_empty() {
                conns.remove(key);
            }
        }
        true
    }
}

/// Send `req` (absolute URI naming the endpoint) to `addr` over a
/// connection of `policy`'s pool, made if none can take it.
pub async fn send(
    policy: &Arc<ConnPolicy>,
    tls: Option<&Arc<TlsUpstream>>,
    h2: bool,
    addr: SocketAddr,
    mut req: Request<ProxyBody>,
    defaults: Defaults,
) -> Result<Response<ProxyBody>, PoolError> {
    let key = (addr, tls.map_or(0, |t| Arc::as_ptr(t) as usize), h2);
    let (sender, state) = match policy.hyper.checkout(policy, &key) {
        Some(found) => found,
        None => connect(policy, tls, key, defaults).await?,
    };
    let sent = match sender {
        Sender::H2(mut s) => {
            let in_flight = InFlight { state, back: None };
            (s.send_request(req).await, in_flight)
        }
        Sender::H1(mut s) => {
            // Origin form on an HTTP/1.1 connection of our own.
            if let Some(pq) = req.uri().path_and_query().cloned() {
                *req.uri_mut() = Uri::from(pq);
            }
            let f = s.send_request(req);
            // A connection spent by this request is not kept: dropping its
            // sender closes it when the exchange ends.
            let again = policy.reusable(
                state.born,
                state.uses.load(Ordering::Acquire),
                Instant::now(),
            );
            let back = again.then(|| (s, policy.clone(), key));
            (f.await, InFlight { state, back })
        }
    };
    // Until the response head arrives the request holds the connection
    // through `in_flight`; then through the response body.
    match sent {
        (Ok(resp), in_flight) => Ok(resp.map(|b| Guarded::wrap(crate::body::boxed(b), in_flight))),
        (Err(e), _) => Err(PoolError::Request(e)),
    }
}

/// Dial a new connection within the connect timeout, after taking a slot.
async fn connect(
    policy: &Arc<ConnPolicy>,
    tls: Option<&Arc<TlsUpstream>>,
    key: Key,
    defaults: Defaults,
) -> Result<(Sender, Arc<ConnState>), PoolError> {
    let (addr, _, h2) = key;
    let timeout = policy.connect_timeout.unwrap_or(defaults.connect);
    let slot = policy.slot(timeout).await?;
    let deadline = tokio::time::Instant::now() + timeout;
    let tcp = tokio::time::timeout_at(deadline, TcpStream::connect(addr))
        .await
        .map_err(|_| PoolError::ConnectTimeout)?
        .map_err(PoolError::Connect)?;
    tcp.set_nodelay(true).map_err(PoolError::Connect)?;
    let open = portcullis_obs::metrics().upstream_opened("hyper");
    let state = ConnState::new();
    let idle = policy.idle_timeout.unwrap_or(defaults.idle);
    let watch = Watch {
        pool: Arc::downgrade(policy),
        key,
        state: state.clone(),
        idle,
        max_duration: policy.max_duration,
    };
    let sender = match tls {
        Some(t) => {
            let io = tokio::time::timeout_at(deadline, t.handshake(h2, tcp))
                .await
                .map_err(|_| PoolError::ConnectTimeout)?
                .map_err(PoolError::Tls)?;
            handshake(Holding::new(io, (slot, open)), h2, deadline, watch).await?
        }
        None => handshake(Holding::new(tcp, (slot, open)), h2, deadline, watch).await?,
    };
    state.begin();
    if let Sender::H2(s) = &sender {
        // Shared from now on.
        policy.hyper.put(key, Sender::H2(s.clone()), state.clone());
    }
    Ok((sender, state))
}

async fn handshake<T>(
    io: Slotted<T>,
    h2: bool,
    deadline: tokio::time::Instant,
    watch: Watch,
) -> Result<Sender, PoolError>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let io = TokioIo::new(io);
    if h2 {
        let mut b = http2::Builder::new(TokioExecutor::new());
        b.timer(TokioTimer::new());
        let (sender, conn) = tokio::time::timeout_at(deadline, b.handshake(io))
            .await
            .map_err(|_| PoolError::ConnectTimeout)?
            .map_err(PoolError::Handshake)?;
        tokio::spawn(watch.drive(conn));
        Ok(Sender::H2(sender))
    } else {
        let (sender, conn) = tokio::time::timeout_at(
            deadline,
            http1::Builder::new()
                .preserve_header_case(true)
                .handshake(io),
        )
        .await
        .map_err(|_| PoolError::ConnectTimeout)?
        .map_err(PoolError::Handshake)?;
        tokio::spawn(watch.drive(conn.with_upgrades()));
        Ok(Sender::H1(sender))
    }
}

/// A connection's task: drives it, and closes it when it has been idle for
/// the idle timeout or is past its maximum duration with no request left.
struct Watch {
    pool: Weak<ConnPolicy>,
    key: Key,
    state: Arc<ConnState>,
    idle: Duration,
    max_duration: Option<Duration>,
}

impl Watch {
    async fn drive<F, E>(self, conn: F)
    where
        F: std::future::Future<Output = Result<(), E>>,
        E: std::fmt::Display,
    {
        tokio::pin!(conn);
        loop {
            let changed = self.state.changed.notified();
            tokio::pin!(changed);
            changed.as_mut().enable();
            let busy = self.state.active.load(Ordering::Acquire) != 0;
            let mut at = if busy {
                None
            } else {
                Some(self.state.idle_since() + self.idle)
            };
            if let Some(d) = self.max_duration {
                let old = self.state.born + d;
                if !busy {
                    at = Some(at.map_or(old, |a| a.min(old)));
                }
            }
            let sleep = async {
                match at {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = &mut conn => {
                    if let Err(e) = r {
                        tracing::debug!(addr = %self.key.0, error = %e, "upstream connection ended");
                    }
                    break;
                }
                () = &mut changed => {}
                () = sleep => {
                    let Some(policy) = self.pool.upgrade() else { break };
                    if policy.hyper.retire_if_idle(&self.key, &self.state) {
                        break;
                    }
                }
            }
        }
        // Dropping the connection closes the socket and frees its slot.
    }
}
