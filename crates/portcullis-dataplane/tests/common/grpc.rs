//! gRPC test support, hand-framed (5-byte prefix + message bytes): an h2c
//! echo backend with unary, server-streaming, client-streaming and
//! bidirectional methods, and a streaming HTTP/2 client.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ::http::{HeaderMap, HeaderValue, Request, Response};
use bytes::{Buf, Bytes, BytesMut};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::client::conn::http2;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, mpsc};

/// A body fed frame by frame.
pub type ChanBody = BoxBody<Bytes, Infallible>;

/// A gRPC message on the wire: flag 0, big-endian length, bytes.
pub fn frame(msg: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(5 + msg.len());
    b.extend_from_slice(&[0]);
    b.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    b.extend_from_slice(msg);
    b.freeze()
}

/// Splits a byte stream into gRPC messages.
#[derive(Default)]
pub struct Deframer {
    buf: BytesMut,
}

impl Deframer {
    pub fn push(&mut self, data: &[u8]) -> Vec<Bytes> {
        self.buf.extend_from_slice(data);
        let mut out = vec![];
        while self.buf.len() >= 5 {
            let len = u32::from_be_bytes(self.buf[1..5].try_into().unwrap()) as usize;
            if self.buf.len() < 5 + len {
                break;
            }
            self.buf.advance(5);
            out.push(self.buf.split_to(len).freeze());
        }
        out
    }
}

/// A body and the sender feeding it; dropping the sender ends the body.
pub fn channel_body() -> (mpsc::Sender<Frame<Bytes>>, ChanBody) {
    let (tx, rx) = mpsc::channel::<Frame<Bytes>>(16);
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|f| (Ok::<_, Infallible>(f), rx))
    });
    (tx, StreamBody::new(stream).boxed())
}

/// The h2c gRPC echo backend. Methods of service `echo.Echo`:
/// `Unary` and `Bidi` echo each message as it arrives; `ServerStream`
/// answers three messages `<msg>-<i>`, waiting on `gate` after the first;
/// `ClientStream` answers one message `<count>:<concatenation>`; `Slow`
/// waits 2 s before the response head. Every answer ends with trailers
/// `grpc-status: 0` and `x-trailer: <method>`.
pub struct GrpcBackend {
    pub addr: SocketAddr,
    pub gate: Arc<Notify>,
    /// Path, version and headers of each request.
    pub seen: Arc<Mutex<Vec<(String, String, HeaderMap)>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for GrpcBackend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl GrpcBackend {
    /// Over h2c (HTTP/2 prior knowledge).
    pub async fn start() -> GrpcBackend {
        Self::start_inner(None).await
    }

    /// Over TLS with `leaf`, ALPN `h2`.
    pub async fn start_tls(leaf: &super::tls::Leaf) -> GrpcBackend {
        let cfg = super::tls::server_config(leaf, &[b"h2"]);
        Self::start_inner(Some(portcullis_tls::tokio_rustls::TlsAcceptor::from(cfg))).await
    }

    async fn start_inner(tls: Option<portcullis_tls::tokio_rustls::TlsAcceptor>) -> GrpcBackend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let gate = Arc::new(Notify::new());
        let seen: Arc<Mutex<Vec<(String, String, HeaderMap)>>> = Arc::default();
        let (gate2, seen2) = (gate.clone(), seen.clone());
        let task = tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let (gate, seen, tls) = (gate2.clone(), seen2.clone(), tls.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req| {
                        let (gate, seen) = (gate.clone(), seen.clone());
                        async move {
                            if req.uri().path().ends_with("/Slow") {
                                tokio::time::sleep(Duration::from_secs(2)).await;
                            }
                            Ok::<_, Infallible>(handle(req, gate, seen))
                        }
                    });
                    let server = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
                    match tls {
                        None => {
                            let _ = server.serve_connection(TokioIo::new(tcp), svc).await;
                        }
                        Some(acceptor) => {
                            if let Ok(s) = acceptor.accept(tcp).await {
                                let _ = server.serve_connection(TokioIo::new(s), svc).await;
                            }
                        }
                    }
                });
            }
        });
        GrpcBackend {
            addr,
            gate,
            seen,
            task,
        }
    }
}

fn handle(
    req: Request<Incoming>,
    gate: Arc<Notify>,
    seen: Arc<Mutex<Vec<(String, String, HeaderMap)>>>,
) -> Response<ChanBody> {
    let path = req.uri().path().to_string();
    seen.lock().unwrap().push((
        path.clone(),
        format!("{:?}", req.version()),
        req.headers().clone(),
    ));
    let (tx, body) = channel_body();
    tokio::spawn(async move {
        let mut body = req.into_body();
        let mut de = Deframer::default();
        let method = path.rsplit('/').next().unwrap_or("").to_string();
        let mut all = vec![];
        while let Some(Ok(f)) = body.frame().await {
            let Ok(data) = f.into_data() else { continue };
            for m in de.push(&data) {
                if method == "Unary" || method == "Bidi" {
                    if tx.send(Frame::data(frame(&m))).await.is_err() {
                        return;
                    }
                } else {
                    all.push(m);
                }
            }
        }
        match method.as_str() {
            "ServerStream" => {
                let m = String::from_utf8_lossy(all.first().map(|b| &b[..]).unwrap_or(b""))
                    .into_owned();
                for i in 0..3 {
                    let _ = tx
                        .send(Frame::data(frame(format!("{m}-{i}").as_bytes())))
                        .await;
                    if i == 0 {
                        gate.notified().await;
                    }
                }
            }
            "ClientStream" => {
                let cat: Vec<u8> = all.iter().flat_map(|b| b.iter().copied()).collect();
                let out = format!("{}:{}", all.len(), String::from_utf8_lossy(&cat));
                let _ = tx.send(Frame::data(frame(out.as_bytes()))).await;
            }
            _ => {}
        }
        let mut t = HeaderMap::new();
        t.insert("grpc-status", HeaderValue::from_static("0"));
        t.insert("x-trailer", HeaderValue::from_str(&method).unwrap());
        let _ = tx.send(Frame::trailers(t)).await;
    });
    Response::builder()
        .header("content-type", "application/grpc")
        .header("x-echo-header", "yes")
        .body(body)
        .unwrap()
}

/// HTTP/2 over any stream (h2c prior knowledge on TCP, or TLS with ALPN h2).
pub async fn h2_handshake<IO>(io: IO) -> http2::SendRequest<ChanBody>
where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (s, conn) = http2::handshake(TokioExecutor::new(), TokioIo::new(io))
        .await
        .unwrap();
    tokio::spawn(conn);
    s
}

/// HTTP/2 prior knowledge to `addr`.
pub async fn h2c(addr: SocketAddr) -> http2::SendRequest<ChanBody> {
    h2_handshake(TcpStream::connect(addr).await.unwrap()).await
}

/// An RPC in progress: a sender of request messages and the response reader.
pub struct Call {
    pub tx: Option<mpsc::Sender<Frame<Bytes>>>,
    pub status: u16,
    pub headers: HeaderMap,
    body: Incoming,
    de: Deframer,
    pending: VecDeque<Bytes>,
    pub trailers: Option<HeaderMap>,
}

impl Call {
    /// Start `POST https://{authority}{path}` with `first` as the first message.
    pub async fn start(
        s: &mut http2::SendRequest<ChanBody>,
        scheme: &str,
        authority: &str,
        path: &str,
        first: Option<&[u8]>,
    ) -> Call {
        let (tx, body) = channel_body();
        if let Some(m) = first {
            tx.send(Frame::data(frame(m))).await.unwrap();
        }
        let req = Request::post(format!("{scheme}://{authority}{path}"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(body)
            .unwrap();
        s.ready().await.unwrap();
        let resp = tokio::time::timeout(Duration::from_secs(10), s.send_request(req))
            .await
            .expect("response head timed out")
            .expect("request failed");
        let (parts, body) = resp.into_parts();
        Call {
            tx: Some(tx),
            status: parts.status.as_u16(),
            headers: parts.headers,
            body,
            de: Deframer::default(),
            pending: VecDeque::new(),
            trailers: None,
        }
    }

    pub async fn send(&self, msg: &[u8]) {
        self.tx
            .as_ref()
            .unwrap()
            .send(Frame::data(frame(msg)))
            .await
            .unwrap();
    }

    /// End the request stream.
    pub fn close_send(&mut self) {
        self.tx = None;
    }

    /// The next response message; `None` at the end (trailers then in `trailers`).
    pub async fn next(&mut self) -> Option<Bytes> {
        loop {
            if let Some(m) = self.pending.pop_front() {
                return Some(m);
            }
            let f = tokio::time::timeout(Duration::from_secs(10), self.body.frame())
                .await
                .expect("response frame timed out")?
                .expect("response body failed");
            match f.into_data() {
                Ok(d) => self.pending.extend(self.de.push(&d)),
                Err(f) => self.trailers = f.into_trailers().ok(),
            }
        }
    }

    /// Read to the end; returns the remaining messages.
    pub async fn finish(&mut self) -> Vec<Bytes> {
        let mut out = vec![];
        while let Some(m) = self.next().await {
            out.push(m);
        }
        out
    }

    /// `grpc-status` from the trailers, or from the headers of a trailers-only answer.
    pub fn grpc_status(&self) -> Option<String> {
        self.trailers
            .as_ref()
            .and_then(|t| t.get("grpc-status"))
            .or_else(|| self.headers.get("grpc-status"))
            .map(|v| v.to_str().unwrap().to_owned())
    }
}
