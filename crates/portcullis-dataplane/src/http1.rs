//! The HTTP/1.1 fast path: a connection loop that serves the common request
//! (a head with no body or a small one) itself, and hands the connection to
//! hyper for everything else.
//!
//! - A request head is read into a per-thread scratch buffer and parsed with
//!   `httparse`; a connection keeps a buffer of its own only while it holds
//!   a partial head or pipelined bytes, so an idle keep-alive connection
//!   holds no buffer at all, and the per-request handler future is boxed
//!   while it runs.
//! - Served here: HTTP/1.0 and HTTP/1.1 requests without `Upgrade`,
//!   `Expect`, `Transfer-Encoding` or `CONNECT`, whose body (one plain
//!   `Content-Length`) fits the buffering limit (`buffer_body_bytes`, and
//!   `max_body_bytes`): the body is read here before the handler runs, as
//!   the handler would buffer it anyway. A head with both `Content-Length` and
//!   `Transfer-Encoding` is answered 400 and the connection closed (RFC 9112
//!   §6.3 allows it; it is how requests are smuggled). Anything else (a body, an upgrade, a head that is
//!   malformed or over `max_header_bytes`, the HTTP/2 prior-knowledge
//!   preface) goes, with the bytes read so far replayed, to hyper for the rest
//!   of the connection ([`crate::conn::serve_hyper`]), which answers errors
//!   (400, 431) exactly as before.
//! - Responses (RFC 9112 §6): `Content-Length` when the response has one or
//!   its body's size is known, else chunked to HTTP/1.1 clients (trailers
//!   only when the client sent `TE: trailers` and the port does not drop
//!   them, [`crate::h1_trailers`]) and close-delimited to
//!   HTTP/1.0 clients; no body for `HEAD`, `1xx`, `204` and `304`. A `Date`
//!   is added when missing. The head and the body's first ready frames go
//!   out in one write. A body that fails or does not match its
//!   `Content-Length` closes the connection.
//! - Keep-alive: HTTP/1.1 unless `Connection: close`; HTTP/1.0 only with
//!   `Connection: keep-alive`. Timeouts: `header_read_timeout` for the first
//!   head and for any head once begun, `idle_timeout` between requests; a
//!   body read here: `body_idle_timeout` between reads and `body_timeout` in
//!   all, then 408 and the connection closes.
//!   Drain: an idle connection closes at once; a busy one finishes its
//!   response with `Connection: close`.

use std::cell::RefCell;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::SystemTime;

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, Uri, Version, header};
use http_body::Body;
use http_body_util::Full;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::time::Instant;

use crate::body::ProxyBody;
use crate::conn::{self, Proto};
use crate::drain::DrainWatch;
use crate::forward::put_headers;
use crate::handler::{self, ConnCtx, PortCtx};
use crate::header_case::{HeaderCase, put_headers_cased};

const MAX_HEADERS: usize = 100;
const SCRATCH: usize = 16 * 1024;
/// Flush the write buffer beyond this many bytes.
const WRITE_HIGH: usize = 64 * 1024;

thread_local! {
    static SCRATCH_BUF: RefCell<Box<[u8]>> = RefCell::new(vec![0u8; SCRATCH].into_boxed_slice());
    static WRITE_BUFS: RefCell<Vec<Vec<u8>>> = const { RefCell::new(Vec::new()) };
    static DATE: RefCell<(u64, HeaderValue)> = const { RefCell::new((0, HeaderValue::from_static(""))) };
}

/// A parsed request head that the fast path serves.
struct Head {
    req: Request<Full<Bytes>>,
    keep_alive: bool,
    trailers: bool,
    /// The body's `Content-Length` (read here before the handler runs).
    body_len: usize,
}

/// What one parse of buffered bytes gave.
enum Parse {
    /// A complete head of this many bytes that the fast path serves.
    Serve(usize, Box<Head>),
    /// Not complete yet.
    Partial,
    /// For hyper (a body, an upgrade, an error, HTTP/2, ...).
    Hyper,
    /// Both `Content-Length` and `Transfer-Encoding` (RFC 9112 §6.3: a
    /// request smuggling vector): answered 400 and the connection closed.
    Reject,
}

fn has_token(v: &HeaderValue, token: &str) -> bool {
    v.to_str()
        .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        .unwrap_or(false)
}

/// Parse a request head; `case`: record the header names' case
/// ([`crate::header_case`], `http1.preserveHeaderCase`).
fn parse(buf: &[u8], max_body: usize, case: bool) -> Parse {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut p = httparse::Request::new(&mut slots);
    let len = match p.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Parse::Partial,
        Err(_) => return Parse::Hyper,
    };
    let (Some(method), Some(path), Some(v)) = (p.method, p.path, p.version) else {
        return Parse::Hyper;
    };
    let Ok(method) = Method::from_bytes(method.as_bytes()) else {
        return Parse::Hyper;
    };
    if method == Method::CONNECT {
        return Parse::Hyper;
    }
    let Ok(uri) = Uri::from_maybe_shared(Bytes::copy_from_slice(path.as_bytes())) else {
        return Parse::Hyper;
    };
    let version = if v == 0 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let mut headers = HeaderMap::with_capacity(p.headers.len());
    let mut keep_alive = version == Version::HTTP_11;
    let mut trailers = false;
    let (mut te, mut cl, mut other) = (false, false, false);
    let mut body_len = 0usize;
    let mut wire_case = case.then(|| HeaderCase::with_capacity(p.headers.len()));
    for h in p.headers.iter() {
        let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(h.name.as_bytes()),
            HeaderValue::from_bytes(h.value),
        ) else {
            return Parse::Hyper;
        };
        match name {
            header::TRANSFER_ENCODING => te = true,
            header::CONTENT_LENGTH => {
                // One plain decimal value within the buffering limit is read
                // here; anything else is hyper's to judge.
                let n = std::str::from_utf8(value.as_bytes())
                    .ok()
                    .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
                    .and_then(|v| v.parse::<usize>().ok());
                match n {
                    Some(n) if !cl && n <= max_body => body_len = n,
                    _ => other = true,
                }
                cl = true;
            }
            header::UPGRADE | header::EXPECT => other = true,
            header::CONNECTION => {
                if has_token(&value, "close") {
                    keep_alive = false;
                } else if has_token(&value, "keep-alive") && version == Version::HTTP_10 {
                    keep_alive = true;
                }
            }
            header::TE => trailers |= has_token(&value, "trailers"),
            _ => {}
        }
        if let Some(c) = wire_case.as_mut() {
            c.record(&name, h.name.as_bytes());
        }
        headers.append(name, value);
    }
    if te && cl {
        return Parse::Reject;
    }
    if te || other {
        return Parse::Hyper;
    }
    let mut req = Request::new(Full::new(Bytes::new()));
    *req.method_mut() = method;
    *req.uri_mut() = uri;
    *req.version_mut() = version;
    *req.headers_mut() = headers;
    if let Some(c) = wire_case {
        req.extensions_mut().insert(c);
    }
    Parse::Serve(
        len,
        Box::new(Head {
            req,
            keep_alive,
            trailers,
            body_len,
        }),
    )
}

/// Read once into the scratch buffer. A head complete in what was read (with
/// nothing buffered before) is parsed straight from it; other bytes are
/// appended to `pending`. `Ready(Ok(None))`: more bytes are in `pending`.
fn poll_read_head<IO: AsyncRead + Unpin>(
    io: &mut IO,
    cx: &mut Context<'_>,
    pending: &mut BytesMut,
    max_body: usize,
    case: bool,
) -> Poll<io::Result<Option<Parse>>> {
    SCRATCH_BUF.with_borrow_mut(|s| {
        let mut rb = ReadBuf::new(&mut s[..]);
        ready!(Pin::new(io).poll_read(cx, &mut rb))?;
        let n = rb.filled().len();
        if n == 0 {
            return Poll::Ready(Err(io::ErrorKind::UnexpectedEof.into()));
        }
        let got = &s[..n];
        if pending.is_empty() {
            match parse(got, max_body, case) {
                Parse::Serve(len, head) => {
                    pending.extend_from_slice(&got[len..]);
                    return Poll::Ready(Ok(Some(Parse::Serve(0, head))));
                }
                Parse::Partial => {}
                Parse::Reject => return Poll::Ready(Ok(Some(Parse::Reject))),
                Parse::Hyper => {
                    pending.extend_from_slice(got);
                    return Poll::Ready(Ok(Some(Parse::Hyper)));
                }
            }
        }
        pending.extend_from_slice(got);
        Poll::Ready(Ok(None))
    })
}

/// How a wait for the next request ended.
enum Next {
    Serve(Box<Head>),
    Hyper,
    Reject,
    Close,
}

/// Serve a connection: HTTP/1.1 here, handed to hyper when needed.
pub async fn serve<IO>(
    mut io: IO,
    peer: SocketAddr,
    port: Arc<PortCtx>,
    drain: DrainWatch,
    proto: Proto,
    sni: Option<Box<str>>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let opts = &port.opts;
    let (first_limit, idle_limit, max_head) = (
        opts.header_read_timeout,
        opts.idle_timeout,
        opts.max_header_bytes,
    );
    let (body_idle, body_total) = (opts.body_idle_timeout, opts.body_timeout);
    let case = opts.http1_preserve_case;
    // Bodies up to the buffering limit (and under the body size limit) are
    // read here; larger ones stream through hyper.
    let max_body = opts.buffer_body_bytes.min(
        opts.max_body_bytes
            .map_or(usize::MAX, |m| usize::try_from(m).unwrap_or(usize::MAX)),
    );
    let cx = Arc::new(ConnCtx {
        port: port.clone(),
        peer,
        drain: drain.clone(),
        sni,
    });
    // One drain future for the connection's life (not one per request).
    let mut signal = drain.clone();
    let drain_signal = async move { signal.signaled().await };
    tokio::pin!(drain_signal);
    let mut drain_deadline: Option<Instant> = None;
    let mut pending = BytesMut::new();
    let mut served = false;
    let timer = tokio::time::sleep(first_limit);
    tokio::pin!(timer);
    loop {
        // Wait for a complete head (or a reason to hand over or close),
        // holding no buffer while there is nothing in it.
        if pending.is_empty() && pending.capacity() > 0 {
            pending = BytesMut::new();
        }
        let mut head_started = !pending.is_empty();
        let limit = if served && !head_started {
            idle_limit
        } else {
            first_limit
        };
        timer.as_mut().reset(Instant::now() + limit);
        let next = loop {
            if drain_deadline.is_some() && pending.is_empty() {
                break Next::Close;
            }
            if !pending.is_empty() {
                match parse(&pending, max_body, case) {
                    Parse::Serve(len, head) => {
                        pending.advance(len);
                        break Next::Serve(head);
                    }
                    Parse::Hyper => break Next::Hyper,
                    Parse::Reject => break Next::Reject,
                    Parse::Partial if pending.len() > max_head => break Next::Hyper,
                    Parse::Partial => {}
                }
                if !head_started {
                    head_started = true;
                    timer.as_mut().reset(Instant::now() + first_limit);
                }
            }
            let idle = pending.is_empty();
            let read =
                std::future::poll_fn(|c| poll_read_head(&mut io, c, &mut pending, max_body, case));
            tokio::select! {
                biased;
                r = read => match r {
                    Ok(Some(Parse::Serve(_, head))) => break Next::Serve(head),
                    Ok(Some(Parse::Hyper)) => break Next::Hyper,
                    Ok(Some(Parse::Reject)) => break Next::Reject,
                    Ok(_) => {}
                    Err(_) => break Next::Close,
                },
                _ = &mut timer => break Next::Close,
                d = &mut drain_signal, if drain_deadline.is_none() => {
                    drain_deadline = Some(d);
                    if idle {
                        break Next::Close;
                    }
                }
            }
        };
        let head = match next {
            Next::Serve(head) => head,
            Next::Close => return,
            Next::Reject => {
                let _ = io
                    .write_all(b"HTTP/1.1 400 Bad Request\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
                let _ = io.shutdown().await;
                return;
            }
            Next::Hyper => {
                if served && drain_deadline.is_some() {
                    return;
                }
                let io = portcullis_l4::Rewind::new(pending.freeze(), io);
                // Boxed: an idle fast-path connection does not carry hyper's state.
                return Box::pin(conn::serve_hyper(
                    io,
                    peer,
                    port,
                    drain,
                    proto,
                    cx.sni.clone(),
                ))
                .await;
            }
        };
        served = true;
        let Head {
            mut req,
            mut keep_alive,
            trailers,
            body_len,
        } = *head;
        if body_len > 0 {
            // The body: each read within `body_idle_timeout`, the whole
            // within `body_timeout`; else 408 and the connection closes.
            timer.as_mut().reset(Instant::now() + body_total);
            let body = tokio::select! {
                biased;
                b = read_body(&mut io, &mut pending, body_len, body_idle) => b,
                _ = &mut timer => Err(BodyEnd::Timeout),
            };
            match body {
                Ok(b) => *req.body_mut() = Full::new(b),
                Err(BodyEnd::Closed) => return,
                Err(BodyEnd::Timeout) => {
                    let _ = io
                        .write_all(b"HTTP/1.1 408 Request Timeout\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .await;
                    let _ = io.shutdown().await;
                    return;
                }
            }
        }
        let method_head = req.method() == Method::HEAD;
        let version = req.version();
        let work = async {
            let resp = Box::pin(handler::handle(req, cx.clone())).await;
            if drain.deadline().is_some() {
                keep_alive = false;
            }
            let (mut parts, body) = resp.into_parts();
            let out = Out {
                status: parts.status,
                version,
                head_only: method_head,
                // `http1.enableTrailers: false`: never (crate::h1_trailers).
                trailers: trailers && cx.port.opts.http1_trailers,
                // `http1.preserveHeaderCase`: the backend's spelling.
                case: parts.extensions.remove::<HeaderCase>(),
            };
            write_response(&mut io, out, parts.headers, body, keep_alive).await
        };
        // Past the drain deadline an unfinished exchange is cut.
        let done = {
            tokio::pin!(work);
            loop {
                tokio::select! {
                    biased;
                    r = &mut work => break r,
                    d = &mut drain_signal, if drain_deadline.is_none() => drain_deadline = Some(d),
                    _ = tokio::time::sleep_until(drain_deadline.unwrap_or_else(Instant::now)), if drain_deadline.is_some() => return,
                }
            }
        };
        match done {
            Ok(true) => {}
            Ok(false) | Err(_) => {
                let _ = io.shutdown().await;
                return;
            }
        }
    }
}

/// Why a request body could not be read.
enum BodyEnd {
    /// The connection closed or failed.
    Closed,
    /// The body idle timeout or the body deadline passed.
    Timeout,
}

/// Read a `len`-byte body: what `pending` holds first, then the socket,
/// each read within `idle`.
async fn read_body<IO: AsyncRead + Unpin>(
    io: &mut IO,
    pending: &mut BytesMut,
    len: usize,
    idle: std::time::Duration,
) -> Result<Bytes, BodyEnd> {
    use tokio::io::AsyncReadExt;
    if pending.len() >= len {
        return Ok(pending.split_to(len).freeze());
    }
    let mut body = BytesMut::with_capacity(len);
    body.extend_from_slice(pending);
    pending.clear();
    while body.len() < len {
        let mut chunk = (&mut *io).take((len - body.len()) as u64);
        match tokio::time::timeout(idle, chunk.read_buf(&mut body)).await {
            Err(_) => return Err(BodyEnd::Timeout),
            Ok(Ok(0) | Err(_)) => return Err(BodyEnd::Closed),
            Ok(Ok(_)) => {}
        }
    }
    Ok(body.freeze())
}

struct Out {
    status: StatusCode,
    version: Version,
    head_only: bool,
    trailers: bool,
    /// The response's header names as the backend spelled them, when kept.
    case: Option<HeaderCase>,
}

fn date() -> HeaderValue {
    let now = SystemTime::now();
    let secs = now
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    DATE.with_borrow_mut(|(at, v)| {
        if *at != secs {
            *at = secs;
            *v = HeaderValue::from_str(&httpdate::fmt_http_date(now))
                .unwrap_or_else(|_| HeaderValue::from_static(""));
        }
        v.clone()
    })
}

fn take_wbuf() -> Vec<u8> {
    WRITE_BUFS
        .with_borrow_mut(|b| b.pop())
        .unwrap_or_else(|| Vec::with_capacity(1024))
}

fn give_wbuf(mut b: Vec<u8>) {
    if b.capacity() <= WRITE_HIGH * 2 {
        b.clear();
        WRITE_BUFS.with_borrow_mut(|l| {
            if l.len() < 64 {
                l.push(b);
            }
        });
    }
}

enum Framing {
    None,
    Length(u64),
    Chunked,
    Close,
}

/// Write one response; `Ok(true)` when the connection can carry another.
async fn write_response<IO: AsyncWrite + Unpin>(
    io: &mut IO,
    out: Out,
    mut headers: HeaderMap,
    mut body: ProxyBody,
    mut keep_alive: bool,
) -> io::Result<bool> {
    let no_body = out.head_only
        || out.status.is_informational()
        || out.status == StatusCode::NO_CONTENT
        || out.status == StatusCode::NOT_MODIFIED;
    for h in [header::CONNECTION, header::TRANSFER_ENCODING] {
        headers.remove(h);
    }
    let declared = match headers.get(header::CONTENT_LENGTH) {
        Some(v) => match v.to_str().ok().and_then(|s| s.parse::<u64>().ok()) {
            Some(n) => Some(n),
            None => {
                headers.remove(header::CONTENT_LENGTH);
                None
            }
        },
        None => None,
    };
    let framing = if no_body {
        Framing::None
    } else if let Some(n) = declared {
        Framing::Length(n)
    } else if let Some(n) = body.size_hint().exact() {
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
        Framing::Length(n)
    } else if out.version == Version::HTTP_11 {
        Framing::Chunked
    } else {
        keep_alive = false;
        Framing::Close
    };
    if !headers.contains_key(header::DATE) {
        headers.insert(header::DATE, date());
    }
    let mut w = take_wbuf();
    w.extend_from_slice(if out.version == Version::HTTP_10 {
        b"HTTP/1.0 "
    } else {
        b"HTTP/1.1 "
    });
    w.extend_from_slice(out.status.as_str().as_bytes());
    w.push(b' ');
    w.extend_from_slice(out.status.canonical_reason().unwrap_or("").as_bytes());
    w.extend_from_slice(b"\r\n");
    if let Err(e) = put_headers_cased(&mut w, &headers, out.case.as_ref(), |_| false) {
        give_wbuf(w);
        return Err(io::Error::new(io::ErrorKind::InvalidData, e));
    }
    if matches!(framing, Framing::Chunked) {
        w.extend_from_slice(b"transfer-encoding: chunked\r\n");
    }
    if !keep_alive {
        w.extend_from_slice(b"connection: close\r\n");
    } else if out.version == Version::HTTP_10 {
        w.extend_from_slice(b"connection: keep-alive\r\n");
    }
    w.extend_from_slice(b"\r\n");
    if matches!(framing, Framing::None) {
        drop(body);
        io.write_all(&w).await?;
        io.flush().await?;
        give_wbuf(w);
        return Ok(keep_alive);
    }
    let mut sent: u64 = 0;
    let mut ended_with_trailers = false;
    loop {
        // Take what is ready now; write and wait only when nothing is.
        let ready = std::future::poll_fn(|c| {
            Poll::Ready(match Pin::new(&mut body).poll_frame(c) {
                Poll::Ready(f) => Some(f),
                Poll::Pending => None,
            })
        })
        .await;
        let frame = match ready {
            Some(f) => f,
            None => {
                io.write_all(&w).await?;
                io.flush().await?;
                w.clear();
                std::future::poll_fn(|c| Pin::new(&mut body).poll_frame(c)).await
            }
        };
        let frame = match frame {
            None => break,
            Some(Ok(f)) => f,
            Some(Err(e)) => {
                tracing::debug!(error = %e, "response body failed; closing the connection");
                let _ = io.write_all(&w).await;
                give_wbuf(w);
                return Ok(false);
            }
        };
        match frame.into_data() {
            Ok(data) => {
                if data.is_empty() {
                    continue;
                }
                match framing {
                    Framing::Length(n) => {
                        let room = n.saturating_sub(sent);
                        let take = (data.len() as u64).min(room) as usize;
                        w.extend_from_slice(&data[..take]);
                        sent += take as u64;
                        if take < data.len() {
                            tracing::debug!(
                                "response body longer than its content-length; closing"
                            );
                            io.write_all(&w).await?;
                            give_wbuf(w);
                            return Ok(false);
                        }
                    }
                    Framing::Chunked => {
                        w.extend_from_slice(format!("{:x}\r\n", data.len()).as_bytes());
                        w.extend_from_slice(&data);
                        w.extend_from_slice(b"\r\n");
                    }
                    Framing::Close | Framing::None => w.extend_from_slice(&data),
                }
            }
            Err(frame) => {
                if let (Framing::Chunked, true, Ok(t)) =
                    (&framing, out.trailers, frame.into_trailers())
                {
                    w.extend_from_slice(b"0\r\n");
                    put_headers(&mut w, &t)
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                    w.extend_from_slice(b"\r\n");
                    ended_with_trailers = true;
                }
            }
        }
        if w.len() >= WRITE_HIGH {
            io.write_all(&w).await?;
            w.clear();
        }
    }
    match framing {
        Framing::Chunked if !ended_with_trailers => w.extend_from_slice(b"0\r\n\r\n"),
        Framing::Length(n) if sent != n => {
            tracing::debug!(
                sent,
                declared = n,
                "response body shorter than its content-length; closing"
            );
            keep_alive = false;
        }
        _ => {}
    }
    io.write_all(&w).await?;
    io.flush().await?;
    give_wbuf(w);
    Ok(keep_alive)
}

/// For the fuzz targets (`fuzz/`), not an API: what the fast path makes of
/// `buf` with a body buffering limit of `max_body`: `Some((head length,
/// request, body length))` when it serves the request itself.
#[doc(hidden)]
pub fn parse_head_for_fuzzing(
    buf: &[u8],
    max_body: usize,
) -> Option<(usize, Request<Full<Bytes>>, usize)> {
    match parse(buf, max_body, false) {
        Parse::Serve(n, head) => Some((n, head.req, head.body_len)),
        _ => None,
    }
}

/// For the fuzz targets (`fuzz/`), not an API: the bytes the fast path
/// writes for a response with these headers and body.
#[doc(hidden)]
pub async fn write_response_for_fuzzing(
    status: StatusCode,
    version: Version,
    head_only: bool,
    headers: HeaderMap,
    body: Bytes,
) -> io::Result<(Vec<u8>, bool)> {
    let mut out = Vec::new();
    let out_meta = Out {
        status,
        version,
        head_only,
        trailers: false,
        case: None,
    };
    let keep = write_response(&mut out, out_meta, headers, crate::body::full(body), true).await?;
    Ok((out, keep))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_requests_are_served_here_and_the_rest_by_hyper() {
        let ok = |b: &[u8]| matches!(parse(b, 16, false), Parse::Serve(..));
        let hyper = |b: &[u8]| matches!(parse(b, 16, false), Parse::Hyper);
        assert!(ok(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n"));
        assert!(ok(b"GET / HTTP/1.0\r\n\r\n"));
        assert!(ok(
            b"DELETE /x HTTP/1.1\r\nhost: a\r\ncontent-length: 0\r\n\r\n"
        ));
        assert!(ok(
            b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\n\r\nabc"
        ));
        // Over the buffering limit, duplicated, or not plain digits: hyper.
        assert!(hyper(
            b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 17\r\n\r\n"
        ));
        assert!(hyper(
            b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 3\r\ncontent-length: 3\r\n\r\n"
        ));
        assert!(hyper(
            b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: +3\r\n\r\n"
        ));
        assert!(hyper(
            b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n"
        ));
        assert!(hyper(
            b"GET / HTTP/1.1\r\nhost: a\r\nupgrade: websocket\r\nconnection: upgrade\r\n\r\n"
        ));
        assert!(hyper(
            b"GET / HTTP/1.1\r\nhost: a\r\nexpect: 100-continue\r\n\r\n"
        ));
        assert!(hyper(b"CONNECT a:443 HTTP/1.1\r\nhost: a\r\n\r\n"));
        assert!(hyper(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"));
        assert!(hyper(b"GET / HTTP/1.1\r\nbad header\r\n\r\n"));
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nhost: a\r\n", 16, false),
            Parse::Partial
        ));
    }

    #[test]
    fn header_case_is_recorded_only_when_asked() {
        let head = b"GET / HTTP/1.1\r\nHost: a\r\nX-MiXeD-Case: 1\r\n\r\n";
        let Parse::Serve(_, h) = parse(head, 16, true) else {
            panic!("not served")
        };
        let case = h.req.extensions().get::<HeaderCase>().expect("recorded");
        let mut out = vec![];
        put_headers_cased(&mut out, h.req.headers(), Some(case), |_| false).unwrap();
        assert_eq!(out, b"Host: a\r\nX-MiXeD-Case: 1\r\n");
        let Parse::Serve(_, h) = parse(head, 16, false) else {
            panic!("not served")
        };
        assert!(h.req.extensions().get::<HeaderCase>().is_none());
    }

    #[test]
    fn keep_alive_by_version_and_connection() {
        let ka = |b: &[u8]| match parse(b, 16, false) {
            Parse::Serve(_, h) => h.keep_alive,
            _ => panic!("not served"),
        };
        assert!(ka(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n"));
        assert!(!ka(
            b"GET / HTTP/1.1\r\nhost: a\r\nconnection: close\r\n\r\n"
        ));
        assert!(!ka(b"GET / HTTP/1.0\r\n\r\n"));
        assert!(ka(b"GET / HTTP/1.0\r\nconnection: Keep-Alive\r\n\r\n"));
    }
}
