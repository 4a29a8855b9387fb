//! The gRPC echo (`GRPC_ECHO_SERVER`): the upstream
//! `gateway_api_conformance.echo_basic.grpcecho.GrpcEcho` service over h2c on
//! `HTTP_PORT`. `Echo` and `EchoTwo` answer with the request metadata and pod
//! context; `EchoThree` and anything else are `UNIMPLEMENTED`, as upstream.
//! The protobuf messages are small enough to encode by hand (see [`proto`]).

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Request, Response};
use http_body_util::{BodyExt, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::TcpListener;

use super::{EchoConfig, EchoContext, EchoError};

/// The fully-qualified service name.
pub const SERVICE: &str = "gateway_api_conformance.echo_basic.grpcecho.GrpcEcho";

/// Hand-written protobuf encoding and decoding of the grpcecho messages.
pub mod proto {
    /// An EchoResponse's Assertions.
    #[derive(Debug, Clone, Default, PartialEq, Eq)]
    pub struct Assertions {
        /// `/package.Service/Method`.
        pub fully_qualified_method: String,
        /// Request metadata (key, value), including `:authority`.
        pub headers: Vec<(String, String)>,
        /// The `:authority`.
        pub authority: String,
        /// Namespace, ingress, service name, pod.
        pub context: [String; 4],
    }

    fn varint(out: &mut Vec<u8>, mut v: u64) {
        loop {
            let b = (v & 0x7f) as u8;
            v >>= 7;
            if v == 0 {
                out.push(b);
                return;
            }
            out.push(b | 0x80);
        }
    }

    fn field(out: &mut Vec<u8>, number: u32, bytes: &[u8]) {
        varint(out, u64::from(number << 3 | 2));
        varint(out, bytes.len() as u64);
        out.extend_from_slice(bytes);
    }

    fn string(out: &mut Vec<u8>, number: u32, s: &str) {
        if !s.is_empty() {
            field(out, number, s.as_bytes());
        }
    }

    /// Encodes `EchoResponse { assertions, request: EchoRequest{} }`.
    pub fn encode_echo_response(a: &Assertions) -> Vec<u8> {
        let mut assertions = Vec::new();
        string(&mut assertions, 1, &a.fully_qualified_method);
        for (k, v) in &a.headers {
            let mut h = Vec::new();
            string(&mut h, 1, k);
            string(&mut h, 2, v);
            field(&mut assertions, 2, &h);
        }
        string(&mut assertions, 3, &a.authority);
        let mut ctx = Vec::new();
        for (i, s) in a.context.iter().enumerate() {
            string(&mut ctx, i as u32 + 1, s);
        }
        field(&mut assertions, 4, &ctx);
        let mut out = Vec::new();
        field(&mut out, 1, &assertions);
        field(&mut out, 2, &[]);
        out
    }

    /// Splits a message into (field number, wire type, payload) triples;
    /// length-delimited payloads only are kept, others skipped.
    fn fields(mut buf: &[u8]) -> Option<Vec<(u32, &[u8])>> {
        let mut out = Vec::new();
        let read_varint = |buf: &mut &[u8]| -> Option<u64> {
            let mut v = 0u64;
            for shift in (0..64).step_by(7) {
                let (&b, rest) = buf.split_first()?;
                *buf = rest;
                v |= u64::from(b & 0x7f) << shift;
                if b & 0x80 == 0 {
                    return Some(v);
                }
            }
            None
        };
        while !buf.is_empty() {
            let key = read_varint(&mut buf)?;
            match key & 7 {
                0 => {
                    read_varint(&mut buf)?;
                }
                1 => buf = buf.get(8..)?,
                5 => buf = buf.get(4..)?,
                2 => {
                    let len = read_varint(&mut buf)? as usize;
                    out.push(((key >> 3) as u32, buf.get(..len)?));
                    buf = &buf[len..];
                }
                _ => return None,
            }
        }
        Some(out)
    }

    fn text(b: &[u8]) -> String {
        String::from_utf8_lossy(b).into_owned()
    }

    /// Decodes an EchoResponse's assertions.
    pub fn decode_echo_response(buf: &[u8]) -> Option<Assertions> {
        let mut a = Assertions::default();
        for (n, body) in fields(buf)? {
            if n != 1 {
                continue;
            }
            for (n, v) in fields(body)? {
                match n {
                    1 => a.fully_qualified_method = text(v),
                    2 => {
                        let (mut k, mut val) = (String::new(), String::new());
                        for (n, x) in fields(v)? {
                            match n {
                                1 => k = text(x),
                                2 => val = text(x),
                                _ => {}
                            }
                        }
                        a.headers.push((k, val));
                    }
                    3 => a.authority = text(v),
                    4 => {
                        for (n, x) in fields(v)? {
                            if (1..=4).contains(&n) {
                                a.context[n as usize - 1] = text(x);
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
        Some(a)
    }
}

type GrpcBody = BoxBody<Bytes, Infallible>;

fn trailers(status: u32, message: &str) -> HeaderMap {
    let mut t = HeaderMap::new();
    t.insert("grpc-status", HeaderValue::from(status));
    if let Ok(v) = HeaderValue::from_str(message) {
        t.insert("grpc-message", v);
    }
    t
}

fn response(frames: Vec<Frame<Bytes>>) -> Response<GrpcBody> {
    let stream = futures_util::stream::iter(frames.into_iter().map(Ok::<_, Infallible>));
    let mut resp = Response::new(StreamBody::new(stream).boxed());
    resp.headers_mut()
        .insert("content-type", HeaderValue::from_static("application/grpc"));
    resp
}

async fn handle(
    req: Request<Incoming>,
    context: EchoContext,
) -> Result<Response<GrpcBody>, Infallible> {
    let path = req.uri().path().to_string();
    let method = path
        .strip_prefix(&format!("/{SERVICE}/"))
        .filter(|m| *m == "Echo" || *m == "EchoTwo");
    let authority = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .unwrap_or_default();
    let mut headers = vec![(":authority".to_string(), authority.clone())];
    for (k, v) in req.headers() {
        headers.push((
            k.as_str().to_string(),
            String::from_utf8_lossy(v.as_bytes()).into_owned(),
        ));
    }
    // Drain the request message.
    let _ = req.into_body().collect().await;
    let Some(_) = method else {
        let t = trailers(12, &format!("unknown method {path}"));
        return Ok(response(vec![Frame::trailers(t)]));
    };
    super::log!("Received over plaintext: {path}");
    let msg = proto::encode_echo_response(&proto::Assertions {
        fully_qualified_method: path,
        headers,
        authority,
        context: [
            context.namespace,
            context.ingress,
            context.service,
            context.pod,
        ],
    });
    let mut framed = Vec::with_capacity(msg.len() + 5);
    framed.push(0);
    framed.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    framed.extend_from_slice(&msg);
    Ok(response(vec![
        Frame::data(Bytes::from(framed)),
        Frame::trailers(trailers(0, "")),
    ]))
}

/// Serves the GrpcEcho service until the listener fails.
pub async fn run(config: EchoConfig) -> Result<(), EchoError> {
    let addr = SocketAddr::new(config.bind, config.http_port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| EchoError::Bind { addr, source })?;
    super::log!("plaintext server listening at {addr}");
    loop {
        let (stream, _) = listener.accept().await?;
        let context = config.context.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| handle(req, context.clone()));
            let _ = auto::Builder::new(TokioExecutor::new())
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

#[cfg(test)]
mod tests {
    use super::proto::*;

    #[test]
    fn echo_response_round_trips() {
        let a = Assertions {
            fully_qualified_method: format!("/{}/Echo", super::SERVICE),
            headers: vec![
                (":authority".into(), "foo.com".into()),
                ("version".into(), "one".into()),
            ],
            authority: "foo.com".into(),
            context: ["ns".into(), String::new(), "svc".into(), "pod-1".into()],
        };
        assert_eq!(decode_echo_response(&encode_echo_response(&a)), Some(a));
    }
}
