//! A lean HTTP/1.1 upstream client for cleartext backends and TLS backends
//! (BackendTLSPolicy: the TLS handshake with the policy's client config and
//! ALPN `http/1.1`, then the same exchange over the TLS stream).
//!
//! The request's own task drives the upstream socket: the head (and a small
//! buffered body) is written with one `write`, the response head is parsed
//! with `httparse`, and the response body reads the socket directly when the
//! server side of the proxy polls it. There is no connection task, no channel
//! between tasks and no lock: idle connections wait in a pool per worker
//! thread (each worker is a single-threaded runtime, so a connection stays on
//! the thread whose reactor it is registered with).
//!
//! Framing (RFC 9112 §6): a request body of known size is sent with
//! `Content-Length`, a stream of unknown size chunked. A response to `HEAD`,
//! and `1xx`/`204`/`304` responses, have no body; otherwise a final
//! `Transfer-Encoding: chunked` wins over `Content-Length` (and the
//! connection is then not reused), then `Content-Length`, then the body runs
//! to the end of the connection. Interim `1xx` responses are skipped; a `101`
//! is an error here (upgrades go through the hyper client).
//!
//! Reuse: a connection goes back to the pool only when the response said
//! nothing against keep-alive, the request and response bodies were both
//! sent and read to their end, and no stray byte followed. A pooled
//! connection is checked for a peer close before reuse; a request whose
//! reused connection fails before any byte of a response came back is sent
//! once more on a new connection when its body can be replayed.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue, Response, StatusCode, Version, header};
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

use super::h1pool::{self, Conn, Io};
use super::tls::TlsUpstream;
use super::upstream::{ConnPolicy, SlotError};
use crate::body::{BoxError, ProxyBody};
use crate::forward::{EncodeError, has_token, put_headers, target_ok};
use crate::header_case::{HeaderCase, put_headers_cased};

const MAX_HEADERS: usize = 128;
const MAX_HEAD_BYTES: usize = 64 * 1024;
const READ_CHUNK: usize = 8 * 1024;
/// Bodies up to this size are written together with the head.
const COALESCE_BODY: usize = 16 * 1024;

/// Why an upstream exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum H1Error {
    /// The connection could not be made.
    #[error("connect: {0}")]
    Connect(io::Error),
    /// The connect timeout elapsed.
    #[error("connect timeout")]
    ConnectTimeout,
    /// The TLS handshake failed (verification, protocol).
    #[error("TLS handshake: {0}")]
    Tls(io::Error),
    /// The backend's connection limits (`maxConnections`,
    /// `maxPendingRequests`) left no connection for the request.
    #[error(transparent)]
    Overflow(#[from] SlotError),
    /// Reading or writing failed.
    #[error("{0}")]
    Io(#[from] io::Error),
    /// The connection closed before a response head.
    #[error("connection closed before a response")]
    Closed,
    /// The response is not valid HTTP/1.
    #[error("invalid response: {0}")]
    Invalid(&'static str),
    /// The request body failed (the client went away or sent too much).
    #[error("request body: {0}")]
    Body(BoxError),
    /// The request head holds a byte not allowed where it stands; nothing
    /// was written and no connection was used.
    #[error(transparent)]
    Encode(#[from] EncodeError),
}

impl H1Error {
    /// Whether no connection was made (retryable by the retry policy).
    pub fn is_connect(&self) -> bool {
        matches!(
            self,
            H1Error::Connect(_) | H1Error::ConnectTimeout | H1Error::Tls(_)
        )
    }
}

/// A request body as the upstream client takes it.
pub enum H1Body {
    /// Complete bytes (possibly empty): sent with `Content-Length` when not
    /// empty (or when the request carried one), replayable.
    Bytes(Bytes),
    /// A stream: `Content-Length` when the request has one, else chunked.
    Stream(ProxyBody),
}

/// A request encoded for sending.
pub struct H1Request {
    head: Vec<u8>,
    body: H1Body,
    chunked: bool,
    head_only: bool,
    /// Record the response's header case (`http1.preserveHeaderCase`).
    keep_case: bool,
}

/// The client's settings; the idle connections live per thread.
#[derive(Clone, Debug)]
pub struct H1Client {
    connect_timeout: Duration,
    idle_timeout: Duration,
    max_idle_per_endpoint: usize,
}

/// An exchange that failed: `fresh` when it may be sent again on a new
/// connection (a reused one failed before any response byte).
struct Failed {
    error: H1Error,
    fresh: bool,
}

impl H1Client {
    /// A client with these timeouts, keeping up to 256 idle connections per
    /// endpoint and thread.
    pub fn new(connect_timeout: Duration, idle_timeout: Duration) -> Self {
        H1Client {
            connect_timeout,
            idle_timeout,
            max_idle_per_endpoint: 256,
        }
    }

    /// Encode a request for [`H1Client::send`]: `method`, origin-form
    /// `target`, and `headers` as given (they carry `Host`; `Content-Length`
    /// and `Transfer-Encoding` are set here from the body).
    ///
    /// Refuses a target or header that holds a byte not allowed there
    /// ([`EncodeError`]): nothing is sent, so no connection can carry a
    /// split request.
    pub fn prepare(
        method: &http::Method,
        target: &str,
        headers: &HeaderMap,
        body: H1Body,
    ) -> Result<H1Request, H1Error> {
        Self::prepare_cased(method, target, headers, body, None)
    }

    /// [`H1Client::prepare`] with the header names spelled as `case`
    /// recorded them (`http1.preserveHeaderCase`); with `case`, the
    /// response carries its own names' case as a [`HeaderCase`] extension.
    pub fn prepare_cased(
        method: &http::Method,
        target: &str,
        headers: &HeaderMap,
        body: H1Body,
        case: Option<&HeaderCase>,
    ) -> Result<H1Request, H1Error> {
        let mut head = Vec::with_capacity(192 + 40 * headers.len());
        let chunked = encode_head(&mut head, method, target, headers, &body, case)?;
        Ok(H1Request {
            head,
            body,
            chunked,
            head_only: method == http::Method::HEAD,
            keep_case: case.is_some(),
        })
    }

    /// The encoded request head (for the fuzz targets and tests).
    #[doc(hidden)]
    pub fn head_bytes(req: &H1Request) -> &[u8] {
        &req.head
    }

    /// Send a prepared request to `addr`, under the backend's connection
    /// policy if it has one, over TLS with `tls` if given.
    pub async fn send(
        &self,
        addr: SocketAddr,
        req: H1Request,
        policy: Option<&Arc<ConnPolicy>>,
        tls: Option<&Arc<TlsUpstream>>,
    ) -> Result<Response<UpstreamBody>, H1Error> {
        let H1Request {
            head,
            body,
            chunked,
            head_only,
            keep_case,
        } = req;
        let meta = Meta {
            chunked,
            head_only,
            keep_case,
        };
        let pooled = h1pool::checkout(addr, policy, tls);
        let replay = match (&pooled, &body) {
            (Some(_), H1Body::Bytes(b)) => Some(b.clone()),
            _ => None,
        };
        let reused = pooled.is_some();
        let first = match pooled {
            Some(io) => io,
            None => self.connect(addr, policy, tls).await?,
        };
        match self.exchange(first, addr, &head, body, meta, reused).await {
            Ok(r) => Ok(r),
            Err(Failed { error, fresh: true }) if replay.is_some() => {
                tracing::debug!(%addr, %error, "reused upstream connection failed; sending again on a new one");
                let io = self.connect(addr, policy, tls).await?;
                let body = H1Body::Bytes(replay.unwrap_or_default());
                self.exchange(io, addr, &head, body, meta, false)
                    .await
                    .map_err(|f| f.error)
            }
            Err(f) => Err(f.error),
        }
    }

    /// A new connection: a slot of the policy's `maxConnections` first
    /// (waiting at most the connect timeout), then the connect, within the
    /// connect timeout (the policy's `connectTimeout`, else the client's).
    async fn connect(
        &self,
        addr: SocketAddr,
        policy: Option<&Arc<ConnPolicy>>,
        tls: Option<&Arc<TlsUpstream>>,
    ) -> Result<Conn, H1Error> {
        let timeout = policy
            .and_then(|p| p.connect_timeout)
            .unwrap_or(self.connect_timeout);
        let slot = match policy {
            Some(p) => Some(p.slot(timeout).await?),
            None => None,
        };
        let started = Instant::now();
        let io = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| H1Error::ConnectTimeout)?
            .map_err(H1Error::Connect)?;
        io.set_nodelay(true).map_err(H1Error::Connect)?;
        let io = match tls {
            None => Io::Tcp(io),
            Some(t) => {
                // The handshake counts against the same connect timeout.
                let left = timeout.saturating_sub(started.elapsed());
                // Boxed: the handshake's future is large; inline it would
                // grow every request's future (cleartext too), which is
                // moved, that is copied, several times per request.
                let stream = tokio::time::timeout(left, Box::pin(t.handshake(false, io)))
                    .await
                    .map_err(|_| H1Error::ConnectTimeout)?
                    .map_err(H1Error::Tls)?;
                Io::Tls(Box::new(stream))
            }
        };
        Ok(Conn {
            io,
            tls: tls.cloned(),
            born: Instant::now(),
            uses: 0,
            slot,
            // portcullis_upstream_connections_active until the Conn drops.
            _open: portcullis_obs::metrics().upstream_opened("http1"),
        })
    }

    async fn exchange(
        &self,
        mut conn: Conn,
        addr: SocketAddr,
        head: &[u8],
        body: H1Body,
        meta: Meta,
        reused: bool,
    ) -> Result<Response<UpstreamBody>, Failed> {
        let Meta {
            chunked,
            head_only,
            keep_case,
        } = meta;
        let early = |error: H1Error| Failed {
            error,
            fresh: reused,
        };
        let late = |error: H1Error| Failed {
            error,
            fresh: false,
        };
        conn.uses += 1;
        let io = &mut conn.io;
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        let mut request_done = true;
        match body {
            H1Body::Bytes(b) if b.len() <= COALESCE_BODY => {
                if b.is_empty() {
                    io.write_all(head).await.map_err(|e| early(e.into()))?;
                } else {
                    let mut all = Vec::with_capacity(head.len() + b.len());
                    all.extend_from_slice(head);
                    all.extend_from_slice(&b);
                    io.write_all(&all).await.map_err(|e| early(e.into()))?;
                }
            }
            H1Body::Bytes(b) => {
                io.write_all(head).await.map_err(|e| early(e.into()))?;
                io.write_all(&b).await.map_err(|e| early(e.into()))?;
            }
            H1Body::Stream(stream) => {
                io.write_all(head).await.map_err(|e| early(e.into()))?;
                // Send the body while watching for an early response (a
                // server may answer, e.g. 413, before reading it all).
                request_done = match io {
                    Io::Tcp(t) => {
                        let (rd, wr) = t.split();
                        send_stream(rd, wr, stream, chunked, &mut buf).await
                    }
                    Io::Tls(t) => {
                        let (rd, wr) = tokio::io::split(&mut **t);
                        send_stream(rd, wr, stream, chunked, &mut buf).await
                    }
                }
                .map_err(late)?;
            }
        }
        let (resp, framing) = loop {
            match parse_head(&mut buf, head_only, keep_case).map_err(late)? {
                Some(Parsed::Final(resp, framing)) => break (resp, framing),
                Some(Parsed::Interim) => continue,
                None => {}
            }
            if buf.len() >= MAX_HEAD_BYTES {
                return Err(late(H1Error::Invalid("response head too large")));
            }
            buf.reserve(READ_CHUNK);
            match io.read_buf(&mut buf).await {
                Ok(0) if buf.is_empty() => return Err(early(H1Error::Closed)),
                Ok(0) => return Err(late(H1Error::Invalid("truncated response head"))),
                Ok(_) => {}
                Err(e) if buf.is_empty() => return Err(early(e.into())),
                Err(e) => return Err(late(e.into())),
            }
        };
        let mut body = UpstreamBody {
            conn: Some(conn),
            buf,
            state: framing.state,
            keep_alive: framing.keep_alive && request_done,
            addr,
            max_idle: self.max_idle_per_endpoint,
            idle_timeout: self.idle_timeout,
        };
        if matches!(body.state, State::Length(0)) {
            body.finish();
        }
        Ok(resp.map(|()| body))
    }
}

/// How a prepared request is framed and what its response keeps.
#[derive(Clone, Copy)]
struct Meta {
    chunked: bool,
    head_only: bool,
    keep_case: bool,
}

/// Write the request head into `out` (names spelled as `case` recorded
/// them, if given); returns whether the body is sent chunked.
fn encode_head(
    out: &mut Vec<u8>,
    method: &http::Method,
    target: &str,
    headers: &HeaderMap,
    body: &H1Body,
    case: Option<&HeaderCase>,
) -> Result<bool, EncodeError> {
    if !target_ok(target.as_bytes()) {
        return Err(EncodeError("request target"));
    }
    out.extend_from_slice(method.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(target.as_bytes());
    out.extend_from_slice(b" HTTP/1.1\r\n");
    let had_length = headers.contains_key(header::CONTENT_LENGTH);
    put_headers_cased(out, headers, case, |name| {
        name == header::CONTENT_LENGTH || name == header::TRANSFER_ENCODING
    })?;
    let chunked = match body {
        H1Body::Bytes(b) => {
            if !b.is_empty() || had_length {
                out.extend_from_slice(b"content-length: ");
                out.extend_from_slice(b.len().to_string().as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            false
        }
        H1Body::Stream(s) => match s.size_hint().exact().filter(|_| had_length) {
            Some(len) => {
                out.extend_from_slice(b"content-length: ");
                out.extend_from_slice(len.to_string().as_bytes());
                out.extend_from_slice(b"\r\n");
                false
            }
            None => {
                out.extend_from_slice(b"transfer-encoding: chunked\r\n");
                true
            }
        },
    };
    out.extend_from_slice(b"\r\n");
    Ok(chunked)
}

/// Send a streamed request body on `wr`, watching `rd` for an early
/// response; whether the whole body was sent (a response that came first is
/// left in `buf`).
async fn send_stream<R, W>(
    mut rd: R,
    mut wr: W,
    stream: ProxyBody,
    chunked: bool,
    buf: &mut BytesMut,
) -> Result<bool, H1Error>
where
    R: AsyncRead + Unpin,
    W: tokio::io::AsyncWrite + Unpin,
{
    let mut request_done = true;
    let write = write_stream(&mut wr, stream, chunked);
    tokio::pin!(write);
    let mut failed_write = None;
    tokio::select! {
        w = &mut write => match w {
            Ok(()) => {}
            Err(H1Error::Body(e)) => return Err(H1Error::Body(e)),
            Err(e) => failed_write = Some(e),
        },
        n = rd.read_buf(buf) => {
            request_done = false;
            match n {
                Ok(0) => return Err(H1Error::Closed),
                Ok(_) => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    if let Some(e) = failed_write {
        // The server may have answered before closing.
        request_done = false;
        if buf.is_empty() && rd.read_buf(buf).await.unwrap_or(0) == 0 {
            return Err(e);
        }
    }
    Ok(request_done)
}

async fn write_stream<W>(w: &mut W, mut body: ProxyBody, chunked: bool) -> Result<(), H1Error>
where
    W: tokio::io::AsyncWrite + Unpin,
{
    use http_body_util::BodyExt;
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(H1Error::Body)?;
        match frame.into_data() {
            Ok(data) if data.is_empty() => {}
            Ok(data) if chunked => {
                w.write_all(format!("{:x}\r\n", data.len()).as_bytes())
                    .await?;
                w.write_all(&data).await?;
                w.write_all(b"\r\n").await?;
            }
            Ok(data) => w.write_all(&data).await?,
            // Trailers: sent with a chunked body, dropped otherwise.
            Err(frame) => {
                if let (true, Ok(trailers)) = (chunked, frame.into_trailers()) {
                    let mut t = Vec::from(&b"0\r\n"[..]);
                    put_headers(&mut t, &trailers)
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                    t.extend_from_slice(b"\r\n");
                    w.write_all(&t).await?;
                    return Ok(w.flush().await?);
                }
            }
        }
    }
    if chunked {
        w.write_all(b"0\r\n\r\n").await?;
    }
    Ok(w.flush().await?)
}

struct Framing {
    state: State,
    keep_alive: bool,
}

enum Parsed {
    Final(Response<()>, Framing),
    Interim,
}

/// Parse a response head at the start of `buf`, consuming it when complete;
/// `keep_case`: the response carries its names' case ([`HeaderCase`]).
fn parse_head(
    buf: &mut BytesMut,
    head_only: bool,
    keep_case: bool,
) -> Result<Option<Parsed>, H1Error> {
    let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut parsed = httparse::Response::new(&mut slots);
    let len = match parsed.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(H1Error::Invalid("too many response headers"));
        }
        Err(_) => return Err(H1Error::Invalid("malformed response head")),
    };
    let code = parsed.code.unwrap_or(0);
    let status = StatusCode::from_u16(code).map_err(|_| H1Error::Invalid("bad status code"))?;
    let version = if parsed.version == Some(0) {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let mut headers = HeaderMap::with_capacity(parsed.headers.len());
    let mut case = keep_case.then(|| HeaderCase::with_capacity(parsed.headers.len()));
    for h in parsed.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes())
            .map_err(|_| H1Error::Invalid("bad header name"))?;
        let value =
            HeaderValue::from_bytes(h.value).map_err(|_| H1Error::Invalid("bad header value"))?;
        if let Some(c) = case.as_mut() {
            c.record(&name, h.name.as_bytes());
        }
        headers.append(name, value);
    }
    buf.advance(len);
    if status.is_informational() {
        if status == StatusCode::SWITCHING_PROTOCOLS {
            return Err(H1Error::Invalid("unexpected 101 from upstream"));
        }
        return Ok(Some(Parsed::Interim));
    }
    let mut keep_alive = if version == Version::HTTP_10 {
        has_token(&headers, &header::CONNECTION, "keep-alive")
    } else {
        !has_token(&headers, &header::CONNECTION, "close")
    };
    let state =
        if head_only || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
            State::Length(0)
        } else if headers.contains_key(header::TRANSFER_ENCODING) {
            let chunked_last = headers
                .get_all(header::TRANSFER_ENCODING)
                .iter()
                .next_back()
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.rsplit(',').next())
                .is_some_and(|t| t.trim().eq_ignore_ascii_case("chunked"));
            if headers.remove(header::CONTENT_LENGTH).is_some() {
                keep_alive = false;
            }
            if chunked_last {
                State::Chunked(Chunk::Size)
            } else {
                keep_alive = false;
                State::Eof
            }
        } else if let Some(first) = headers.get(header::CONTENT_LENGTH) {
            let n = content_length(first)?;
            for v in headers.get_all(header::CONTENT_LENGTH) {
                if content_length(v)? != n {
                    return Err(H1Error::Invalid("conflicting content-length"));
                }
            }
            State::Length(n)
        } else {
            keep_alive = false;
            State::Eof
        };
    let mut resp = Response::new(());
    *resp.status_mut() = status;
    *resp.version_mut() = version;
    *resp.headers_mut() = headers;
    if let Some(c) = case {
        resp.extensions_mut().insert(c);
    }
    Ok(Some(Parsed::Final(resp, Framing { state, keep_alive })))
}

fn content_length(v: &HeaderValue) -> Result<u64, H1Error> {
    let s = v
        .to_str()
        .map_err(|_| H1Error::Invalid("bad content-length"))?;
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(H1Error::Invalid("bad content-length"));
    }
    s.parse()
        .map_err(|_| H1Error::Invalid("bad content-length"))
}

enum State {
    /// Bytes left of a `Content-Length` body.
    Length(u64),
    /// A chunked body.
    Chunked(Chunk),
    /// Until the connection closes.
    Eof,
    /// Finished.
    Done,
}

enum Chunk {
    Size,
    Data(u64),
    DataEnd,
    Trailers,
}

/// A response body read straight from the upstream connection, which goes
/// back to the pool when the body ends cleanly.
pub struct UpstreamBody {
    conn: Option<Conn>,
    buf: BytesMut,
    state: State,
    keep_alive: bool,
    addr: SocketAddr,
    max_idle: usize,
    idle_timeout: Duration,
}

impl UpstreamBody {
    fn finish(&mut self) {
        self.state = State::Done;
        if let Some(conn) = self.conn.take()
            && self.keep_alive
            && self.buf.is_empty()
        {
            h1pool::checkin(self.addr, conn, self.idle_timeout, self.max_idle);
        }
        self.buf = BytesMut::new();
    }

    /// Read more into the buffer; `Ok(0)` at the end of the connection.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let Some(io) = self.conn.as_mut().map(|c| &mut c.io) else {
            return Poll::Ready(Ok(0));
        };
        if self.buf.capacity() - self.buf.len() < 1024 {
            self.buf.reserve(READ_CHUNK);
        }
        let spare = self.buf.spare_capacity_mut();
        let mut rb = ReadBuf::uninit(spare);
        ready!(Pin::new(io).poll_read(cx, &mut rb))?;
        let n = rb.filled().len();
        // SAFETY: `poll_read` initialised the first `n` bytes of the spare capacity.
        unsafe { self.buf.set_len(self.buf.len() + n) };
        Poll::Ready(Ok(n))
    }
}

/// Up to `max` buffered bytes.
fn take_data(buf: &mut BytesMut, max: u64) -> Bytes {
    let take = usize::try_from(max).unwrap_or(usize::MAX).min(buf.len());
    buf.split_to(take).freeze()
}

fn truncated() -> BoxError {
    "upstream closed the connection in the middle of the response body".into()
}

impl Body for UpstreamBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        loop {
            match &mut this.state {
                State::Done => return Poll::Ready(None),
                State::Length(0) => {
                    this.finish();
                    return Poll::Ready(None);
                }
                State::Length(left) => {
                    if !this.buf.is_empty() {
                        let left_now = *left;
                        let b = take_data(&mut this.buf, left_now);
                        let rest = left_now - b.len() as u64;
                        this.state = State::Length(rest);
                        if rest == 0 {
                            this.finish();
                        }
                        return Poll::Ready(Some(Ok(Frame::data(b))));
                    }
                    if ready!(this.poll_fill(cx))? == 0 {
                        this.conn = None;
                        this.state = State::Done;
                        return Poll::Ready(Some(Err(truncated())));
                    }
                }
                State::Eof => {
                    if !this.buf.is_empty() {
                        let b = this.buf.split().freeze();
                        return Poll::Ready(Some(Ok(Frame::data(b))));
                    }
                    if ready!(this.poll_fill(cx))? == 0 {
                        this.conn = None;
                        this.state = State::Done;
                        return Poll::Ready(None);
                    }
                }
                State::Chunked(chunk) => {
                    let progress = match chunk {
                        Chunk::Size => match httparse::parse_chunk_size(&this.buf) {
                            Ok(httparse::Status::Complete((used, size))) => {
                                this.buf.advance(used);
                                *chunk = if size == 0 {
                                    Chunk::Trailers
                                } else {
                                    Chunk::Data(size)
                                };
                                true
                            }
                            Ok(httparse::Status::Partial) if this.buf.len() < 4096 => false,
                            _ => {
                                return Poll::Ready(Some(Err(
                                    "bad chunk size from upstream".into()
                                )));
                            }
                        },
                        Chunk::Data(left) if !this.buf.is_empty() => {
                            let left_now = *left;
                            let b = take_data(&mut this.buf, left_now);
                            let rest = left_now - b.len() as u64;
                            *chunk = if rest == 0 {
                                Chunk::DataEnd
                            } else {
                                Chunk::Data(rest)
                            };
                            return Poll::Ready(Some(Ok(Frame::data(b))));
                        }
                        Chunk::Data(_) => false,
                        Chunk::DataEnd if this.buf.len() >= 2 => {
                            if &this.buf[..2] != b"\r\n" {
                                return Poll::Ready(Some(
                                    Err("bad chunk end from upstream".into()),
                                ));
                            }
                            this.buf.advance(2);
                            *chunk = Chunk::Size;
                            true
                        }
                        Chunk::DataEnd => false,
                        Chunk::Trailers => {
                            let mut slots = [httparse::EMPTY_HEADER; MAX_HEADERS];
                            match httparse::parse_headers(&this.buf, &mut slots) {
                                Ok(httparse::Status::Complete((used, list))) => {
                                    let mut trailers = HeaderMap::new();
                                    for h in list {
                                        if let (Ok(n), Ok(v)) = (
                                            HeaderName::from_bytes(h.name.as_bytes()),
                                            HeaderValue::from_bytes(h.value),
                                        ) {
                                            trailers.append(n, v);
                                        }
                                    }
                                    this.buf.advance(used);
                                    this.finish();
                                    if trailers.is_empty() {
                                        return Poll::Ready(None);
                                    }
                                    return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
                                }
                                Ok(httparse::Status::Partial)
                                    if this.buf.len() < MAX_HEAD_BYTES =>
                                {
                                    false
                                }
                                _ => {
                                    return Poll::Ready(Some(Err(
                                        "bad trailers from upstream".into()
                                    )));
                                }
                            }
                        }
                    };
                    if !progress && ready!(this.poll_fill(cx))? == 0 {
                        this.conn = None;
                        this.state = State::Done;
                        return Poll::Ready(Some(Err(truncated())));
                    }
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self.state, State::Done | State::Length(0))
    }

    fn size_hint(&self) -> SizeHint {
        match self.state {
            State::Length(n) => SizeHint::with_exact(n),
            State::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}
