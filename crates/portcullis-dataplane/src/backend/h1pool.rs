//! The idle connections of the lean HTTP/1.1 client ([`super::h1`]): one pool
//! per worker thread (no lock), keyed by endpoint and by the backend's
//! connection policy ([`ConnPolicy`]), so that connections counted against
//! one backend's limits are not used by another.
//!
//! An idle connection expires `idle timeout` after it was pooled (the
//! policy's `connectionIdleTimeout`, else `--upstream-idle-timeout`), or when
//! it reaches the policy's `maxConnectionDuration`, whichever is first. On a
//! worker thread (a current-thread runtime) a small sweeper task closes
//! expired connections, so the backend sees the close when the timeout
//! passes (within a second), not only when the connection is next wanted;
//! it runs only while the thread's pool holds a connection.

use std::cell::{Cell, RefCell};
use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;

use super::tls::TlsUpstream;
use super::upstream::{ConnPolicy, ConnSlot};

/// An upstream socket: cleartext, or TLS (BackendTLSPolicy, ALPN
/// `http/1.1`).
#[derive(Debug)]
pub(crate) enum Io {
    /// Cleartext TCP.
    Tcp(TcpStream),
    /// TLS over TCP.
    Tls(Box<portcullis_tls::tokio_rustls::client::TlsStream<TcpStream>>),
}

impl AsyncRead for Io {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(t) => Pin::new(t).poll_read(cx, buf),
            Io::Tls(t) => Pin::new(&mut **t).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Io {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Io::Tcp(t) => Pin::new(t).poll_write(cx, buf),
            Io::Tls(t) => Pin::new(&mut **t).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(t) => Pin::new(t).poll_flush(cx),
            Io::Tls(t) => Pin::new(&mut **t).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Io::Tcp(t) => Pin::new(t).poll_shutdown(cx),
            Io::Tls(t) => Pin::new(&mut **t).poll_shutdown(cx),
        }
    }
}

/// An upstream connection with what its reuse depends on.
#[derive(Debug)]
pub(crate) struct Conn {
    /// The socket.
    pub io: Io,
    /// The TLS client it was made with (held, so that the pool key made of
    /// its address names it as long as the connection exists).
    pub tls: Option<Arc<TlsUpstream>>,
    /// When it was made.
    pub born: Instant,
    /// Requests sent on it so far.
    pub uses: u64,
    /// Its place in the backend's `maxConnections` (a policy'd backend only).
    pub slot: Option<ConnSlot>,
    /// Counts it in `portcullis_upstream_connections_active` while it exists
    /// (pooled or in use).
    pub _open: portcullis_obs::metrics::ActiveGuard,
}

struct Idle {
    conn: Conn,
    expires: Instant,
}

/// Endpoint, connection policy (0: none), TLS client (0: cleartext).
type Key = (SocketAddr, usize, usize);

fn tls_key(tls: Option<&Arc<TlsUpstream>>) -> usize {
    tls.map_or(0, |t| Arc::as_ptr(t) as usize)
}

thread_local! {
    static IDLE: RefCell<HashMap<Key, VecDeque<Idle>>> = RefCell::new(HashMap::new());
    static SWEEPING: Cell<bool> = const { Cell::new(false) };
}

/// The longest a sweeper sleeps, so that a connection pooled with an earlier
/// expiry than the one it waits for is not kept long past it.
const SWEEP_AT_MOST: Duration = Duration::from_secs(1);

/// Take an idle connection to `addr` of `policy` that is still open and
/// reusable (most recently used first).
pub(crate) fn checkout(
    addr: SocketAddr,
    policy: Option<&Arc<ConnPolicy>>,
    tls: Option<&Arc<TlsUpstream>>,
) -> Option<Conn> {
    let key = (addr, policy.map_or(0, ConnPolicy::key), tls_key(tls));
    IDLE.with(|m| {
        let mut m = m.borrow_mut();
        let list = m.get_mut(&key)?;
        let now = Instant::now();
        while let Some(c) = list.pop_back() {
            let reusable = policy.is_none_or(|p| p.reusable(c.conn.born, c.conn.uses, now));
            if now < c.expires && reusable && still_open(&c.conn.io) {
                return Some(c.conn);
            }
        }
        None
    })
}

/// Put a connection whose exchange ended cleanly back in this thread's
/// pool, or close it when its policy says it may not be reused
/// (`maxRequestsPerConnection`, `maxConnectionDuration`, a request waiting
/// for a slot). `idle` is the client's idle timeout; at most `max` idle
/// connections per endpoint are kept (the oldest is closed).
pub(crate) fn checkin(addr: SocketAddr, conn: Conn, idle: Duration, max: usize) {
    let now = Instant::now();
    let (key, expires) = match conn.slot.as_ref().map(ConnSlot::policy) {
        None => (0, now + idle),
        Some(p) => {
            if !p.reusable(conn.born, conn.uses, now) || !p.may_pool() {
                return;
            }
            let mut expires = now + p.idle_timeout.unwrap_or(idle);
            if let Some(d) = p.max_duration {
                expires = expires.min(conn.born + d);
            }
            (p.key(), expires)
        }
    };
    IDLE.with(|m| {
        let mut m = m.borrow_mut();
        let list = m
            .entry((addr, key, tls_key(conn.tls.as_ref())))
            .or_default();
        if list.len() >= max {
            list.pop_front();
        }
        list.push_back(Idle { conn, expires });
    });
    start_sweeper();
}

/// Whether an idle connection shows no sign of a peer close or stray data
/// (on TLS, any byte waiting is taken as a sign: an alert or a record
/// nobody asked for; it is peeked, not read).
pub(crate) fn still_open(io: &Io) -> bool {
    let mut cx = Context::from_waker(Waker::noop());
    let io = match io {
        Io::Tcp(t) => t,
        Io::Tls(t) => {
            let mut one = [std::mem::MaybeUninit::uninit(); 1];
            let mut rb = ReadBuf::uninit(&mut one);
            return matches!(t.get_ref().0.poll_peek(&mut cx, &mut rb), Poll::Pending);
        }
    };
    match io.poll_read_ready(&mut cx) {
        Poll::Pending => true,
        Poll::Ready(Err(_)) => false,
        // Readiness may be left over from the last read: look.
        Poll::Ready(Ok(())) => matches!(
            io.try_read(&mut [0u8; 1]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock
        ),
    }
}

/// Close this thread's expired (or peer-closed) idle connections; the
/// earliest expiry left, if any.
fn sweep(now: Instant) -> Option<Instant> {
    IDLE.with(|m| {
        let mut m = m.borrow_mut();
        let mut next: Option<Instant> = None;
        m.retain(|_, list| {
            list.retain(|c| now < c.expires && still_open(&c.conn.io));
            for c in list.iter() {
                next = Some(next.map_or(c.expires, |n| n.min(c.expires)));
            }
            !list.is_empty()
        });
        next
    })
}

/// Start this thread's sweeper unless it runs, on a current-thread runtime
/// only (a multi-thread runtime may run a task on another thread, whose
/// pool is another; there, expired connections are closed when next looked
/// at).
fn start_sweeper() {
    if SWEEPING.get() {
        return;
    }
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    if rt.runtime_flavor() != tokio::runtime::RuntimeFlavor::CurrentThread {
        return;
    }
    SWEEPING.set(true);
    rt.spawn(async {
        loop {
            let now = Instant::now();
            let Some(next) = sweep(now) else {
                SWEEPING.set(false);
                return;
            };
            let wake = next.min(now + SWEEP_AT_MOST);
            tokio::time::sleep_until(wake.into()).await;
        }
    });
}
