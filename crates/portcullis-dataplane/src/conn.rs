//! Serving one accepted connection: HTTP/1.1 or HTTP/2 prior knowledge
//! (hyper-util auto) on cleartext ports; on TLS, the protocol ALPN chose
//! (`h2`, else HTTP/1.1). With upgrades, slowloris limits, idle keep-alive
//! timeout and graceful drain.
//!
//! - Headers: hyper's HTTP/1 `header_read_timeout` and `max_buf_size`
//!   (oversized heads are answered 431), HTTP/2 `max_header_list_size`.
//! - A connection with no request in flight is closed gracefully after
//!   `header_read_timeout` if it never sent a request, after `idle_timeout`
//!   otherwise.
//! - Drain: on the signal the connection is shut down gracefully (in-flight
//!   requests finish; HTTP/1 closes after the current response, HTTP/2 sends
//!   GOAWAY) and dropped at the deadline if still open.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use http::Response;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::time::Instant;

use crate::Options;
use crate::body::Guarded;
use crate::drain::DrainWatch;
use crate::handler::{self, ConnCtx, PortCtx};

/// The connection builders of a port.
pub struct Builders {
    /// HTTP/1.1 or HTTP/2 prior knowledge, detected from the first bytes.
    pub auto: auto::Builder<TokioExecutor>,
    /// HTTP/1.1 only (TLS without ALPN `h2`).
    pub h1: auto::Builder<TokioExecutor>,
    /// HTTP/2 only (TLS with ALPN `h2`).
    pub h2: auto::Builder<TokioExecutor>,
}

impl Builders {
    /// Builders for `opts`, with a port's ClientTrafficPolicy HTTP/2 settings.
    pub fn new(opts: &Options, client: Option<&portcullis_ir::ClientConnection>) -> Self {
        let mut auto = builder(opts);
        crate::client_traffic::h2_settings(&mut auto, client);
        Builders {
            h1: auto.clone().http1_only(),
            h2: auto.clone().http2_only(),
            auto,
        }
    }
}

/// The HTTP protocol a connection speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proto {
    /// Detect HTTP/1.1 or the HTTP/2 preface (cleartext).
    Auto,
    /// HTTP/1.1 only.
    Http1,
    /// HTTP/2 only.
    Http2,
}

/// Build the connection builder for a port.
pub fn builder(opts: &Options) -> auto::Builder<TokioExecutor> {
    let mut b = auto::Builder::new(TokioExecutor::new());
    b.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(opts.header_read_timeout)
        .max_buf_size(opts.max_header_bytes.max(8192))
        .preserve_header_case(opts.http1_preserve_case)
        .keep_alive(true);
    b.http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(opts.max_header_bytes).unwrap_or(u32::MAX));
    b
}

/// Requests in flight on a connection and when it was last active.
struct Tracker {
    start: Instant,
    active: AtomicUsize,
    last_ms: AtomicU64,
    served: AtomicBool,
}

struct ActiveGuard(Arc<Tracker>);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        let t = &self.0;
        t.last_ms
            .store(t.start.elapsed().as_millis() as u64, Ordering::Relaxed);
        t.active.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Tracker {
    fn begin(self: &Arc<Self>) -> ActiveGuard {
        self.active.fetch_add(1, Ordering::Relaxed);
        self.served.store(true, Ordering::Relaxed);
        ActiveGuard(self.clone())
    }

    /// How long the connection has had nothing in flight.
    fn idle_for(&self) -> Duration {
        if self.active.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        let last = Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last)
    }
}

/// Serve a connection until it closes, idles out, or its drain deadline
/// passes. `sni` is the ClientHello's server name on TLS connections.
/// HTTP/1 starts on the fast path ([`crate::http1`]); HTTP/2 (ALPN) goes
/// to hyper directly.
pub async fn serve<IO>(
    stream: IO,
    peer: SocketAddr,
    port: Arc<PortCtx>,
    drain: DrainWatch,
    proto: Proto,
    sni: Option<Box<str>>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    match proto {
        // Boxed, so that the fast path's connection task stays small.
        Proto::Http2 => Box::pin(serve_hyper(stream, peer, port, drain, proto, sni)).await,
        Proto::Auto | Proto::Http1 => {
            crate::http1::serve(stream, peer, port, drain, proto, sni).await
        }
    }
}

/// Serve a connection with hyper (HTTP/1.1 with bodies and upgrades, or
/// HTTP/2), until it closes, idles out, or its drain deadline passes.
pub async fn serve_hyper<IO>(
    stream: IO,
    peer: SocketAddr,
    port: Arc<PortCtx>,
    mut drain: DrainWatch,
    proto: Proto,
    sni: Option<Box<str>>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let opts = &port.opts;
    let (first_limit, idle_limit) = (opts.header_read_timeout, opts.idle_timeout);
    let check =
        (first_limit.min(idle_limit) / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    let tracker = Arc::new(Tracker {
        start: Instant::now(),
        active: AtomicUsize::new(0),
        last_ms: AtomicU64::new(0),
        served: AtomicBool::new(false),
    });
    let cx = Arc::new(ConnCtx {
        port: port.clone(),
        peer,
        drain: drain.clone(),
        sni,
    });
    let svc_tracker = tracker.clone();
    let trailers = port.opts.http1_trailers;
    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let cx = cx.clone();
        let active = svc_tracker.begin();
        // `http1.enableTrailers: false` (crate::h1_trailers): HTTP/1
        // trailers dropped both ways.
        let drop_trailers = crate::h1_trailers::drops(trailers, req.version());
        let req = req.map(|b| crate::h1_trailers::RequestBody::new(b, drop_trailers));
        async move {
            // Boxed: hyper moves the service future (into each HTTP/2 stream
            // task); the handler's large state is allocated once instead.
            let (parts, mut body) = Box::pin(handler::handle(req, cx)).await.into_parts();
            if drop_trailers {
                body = crate::h1_trailers::strip(body);
            }
            Ok::<_, Infallible>(Response::from_parts(parts, Guarded::wrap(body, active)))
        }
    });
    let builder = match proto {
        Proto::Auto => &port.builders.auto,
        Proto::Http1 => &port.builders.h1,
        Proto::Http2 => &port.builders.h2,
    };
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), svc);
    tokio::pin!(conn);
    let mut deadline: Option<Instant> = None;
    let mut tick = tokio::time::interval(check);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            r = conn.as_mut() => {
                if let Err(e) = r {
                    tracing::debug!(%peer, error = %e, "connection ended with error");
                }
                break;
            }
            d = drain.signaled(), if deadline.is_none() => {
                conn.as_mut().graceful_shutdown();
                deadline = Some(d);
            }
            _ = tokio::time::sleep_until(deadline.unwrap_or_else(Instant::now)), if deadline.is_some() => {
                tracing::debug!(%peer, "force-closing connection at drain deadline");
                break;
            }
            _ = tick.tick(), if deadline.is_none() => {
                let limit = if tracker.served.load(Ordering::Relaxed) { idle_limit } else { first_limit };
                if tracker.idle_for() >= limit {
                    tracing::debug!(%peer, "closing idle connection");
                    conn.as_mut().graceful_shutdown();
                    deadline = Some(Instant::now() + Duration::from_secs(1));
                }
            }
        }
    }
}
