//! OTLP over gRPC: `opentelemetry.proto.collector.trace.v1.TraceService/Export`
//! as one unary call per batch, over HTTP/2 — cleartext (h2c, `grpc://`) or
//! TLS with ALPN `h2` (`grpcs://`) — with hyper-util's client.
//!
//! No tonic: the messages are `opentelemetry-proto`'s prost structs (the
//! same ones the OTLP/HTTP exporter sends), the gRPC framing is the
//! 5-byte length prefix, and the answer is read from `grpc-status` (in the
//! trailers, or in the head of a trailers-only answer). The exporter runs
//! on the batch processor's thread; each call is spawned on the process's
//! Tokio runtime and bounded by a timeout, so a collector that hangs costs
//! one export, never the request path.

use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::transform::common::tonic::ResourceAttributesWithSchema;
use opentelemetry_proto::transform::trace::tonic::group_spans_by_resource_and_scope;
use opentelemetry_sdk::error::{OTelSdkError, OTelSdkResult};
use opentelemetry_sdk::trace::{SpanData, SpanExporter};
use prost::Message;

/// The gRPC method path.
pub const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum GrpcExportError {
    /// The endpoint is not a `grpc://`, `grpcs://`, `http://` or `https://`
    /// URL with a host.
    #[error(
        "OTLP/gRPC endpoint {0:?}: expected grpc://host:port (grpcs:// over TLS) or http(s)://host:port"
    )]
    Endpoint(String),
    /// Connecting or exchanging failed.
    #[error("OTLP/gRPC export: {0}")]
    Transport(String),
    /// No answer in time.
    #[error("OTLP/gRPC export timed out after {0:?}")]
    Timeout(Duration),
    /// The collector answered with an HTTP status other than 200.
    #[error("OTLP/gRPC export: HTTP status {0}")]
    Http(u16),
    /// The collector answered with a gRPC status other than OK.
    #[error("OTLP/gRPC export: grpc-status {status}: {message}")]
    Status {
        /// `grpc-status`.
        status: String,
        /// `grpc-message`.
        message: String,
    },
}

/// A span exporter speaking OTLP/gRPC.
#[derive(Debug)]
pub struct GrpcExporter {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    uri: http::Uri,
    rt: tokio::runtime::Handle,
    timeout: Duration,
    resource: ResourceAttributesWithSchema,
}

/// `grpc://host:port` or `http://host:port` (cleartext), `grpcs://` or
/// `https://` (TLS); any path is ignored, gRPC names the method in the path
/// → the Export method's URI.
pub fn export_uri(endpoint: &str) -> Result<http::Uri, GrpcExportError> {
    let bad = || GrpcExportError::Endpoint(endpoint.to_owned());
    let (scheme, rest) = [
        ("grpc://", "http"),
        ("http://", "http"),
        ("grpcs://", "https"),
        ("https://", "https"),
    ]
    .iter()
    .find_map(|(p, scheme)| endpoint.strip_prefix(p).map(|rest| (*scheme, rest)))
    .ok_or_else(bad)?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err(bad());
    }
    format!("{scheme}://{authority}{EXPORT_PATH}")
        .parse()
        .map_err(|_| bad())
}

impl GrpcExporter {
    /// An exporter to `endpoint` whose calls run on `rt`, connecting with
    /// `connector` (which offers HTTP/2 only over TLS).
    pub fn new(
        endpoint: &str,
        rt: tokio::runtime::Handle,
        timeout: Duration,
        connector: HttpsConnector<HttpConnector>,
    ) -> Result<Self, GrpcExportError> {
        let uri = export_uri(endpoint)?;
        let client = Client::builder(TokioExecutor::new())
            .http2_only(true)
            .build(connector);
        Ok(GrpcExporter {
            client,
            uri,
            rt,
            timeout,
            resource: ResourceAttributesWithSchema::default(),
        })
    }

    /// The request body: the gRPC frame (uncompressed flag, length, message).
    fn frame(&self, batch: Vec<SpanData>) -> Bytes {
        let msg = ExportTraceServiceRequest {
            resource_spans: group_spans_by_resource_and_scope(batch, &self.resource),
        };
        let len = msg.encoded_len();
        let mut buf = BytesMut::with_capacity(5 + len);
        buf.put_u8(0);
        buf.put_u32(u32::try_from(len).unwrap_or(u32::MAX));
        msg.encode(&mut buf).expect("capacity reserved");
        buf.freeze()
    }
}

/// The outcome of one call, from the head and the trailers.
fn grpc_outcome(
    head: &http::HeaderMap,
    trailers: Option<&http::HeaderMap>,
) -> Result<(), GrpcExportError> {
    let status = trailers
        .and_then(|t| t.get("grpc-status"))
        .or_else(|| head.get("grpc-status"));
    let Some(status) = status else {
        return Err(GrpcExportError::Status {
            status: "missing".into(),
            message: "no grpc-status in the answer".into(),
        });
    };
    if status.as_bytes() == b"0" {
        return Ok(());
    }
    let message = trailers
        .and_then(|t| t.get("grpc-message"))
        .or_else(|| head.get("grpc-message"))
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    Err(GrpcExportError::Status {
        status: String::from_utf8_lossy(status.as_bytes()).into_owned(),
        message: percent_decode(message),
    })
}

/// `grpc-message` is percent-encoded.
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (b[i], b.get(i + 1).copied(), b.get(i + 2).copied()) {
            (b'%', Some(h), Some(l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn call(
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    uri: http::Uri,
    body: Bytes,
) -> Result<(), GrpcExportError> {
    let req = http::Request::post(uri)
        .header(http::header::CONTENT_TYPE, "application/grpc")
        .header(http::header::TE, "trailers")
        .body(Full::new(body))
        .map_err(|e| GrpcExportError::Transport(e.to_string()))?;
    let resp = client
        .request(req)
        .await
        .map_err(|e| GrpcExportError::Transport(e.to_string()))?;
    if resp.status() != http::StatusCode::OK {
        return Err(GrpcExportError::Http(resp.status().as_u16()));
    }
    let (parts, body) = resp.into_parts();
    let collected = body
        .collect()
        .await
        .map_err(|e| GrpcExportError::Transport(e.to_string()))?;
    grpc_outcome(&parts.headers, collected.trailers())
}

impl SpanExporter for GrpcExporter {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        if batch.is_empty() {
            return Ok(());
        }
        let body = self.frame(batch);
        let (client, uri, timeout) = (self.client.clone(), self.uri.clone(), self.timeout);
        let send = async move {
            tokio::time::timeout(timeout, call(client, uri, body))
                .await
                .map_err(|_| GrpcExportError::Timeout(timeout))?
        };
        match self.rt.spawn(send).await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(OTelSdkError::InternalFailure(e.to_string())),
            Err(e) => Err(OTelSdkError::InternalFailure(e.to_string())),
        }
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.resource = resource.into();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_name_the_export_method() {
        for e in [
            "grpc://127.0.0.1:4317",
            "http://127.0.0.1:4317",
            "http://127.0.0.1:4317/",
            "grpc://127.0.0.1:4317/v1/traces",
        ] {
            assert_eq!(
                export_uri(e).unwrap().to_string(),
                format!("http://127.0.0.1:4317{EXPORT_PATH}"),
                "{e}"
            );
        }
        for e in ["grpcs://c:4317", "https://c:4317/"] {
            assert_eq!(
                export_uri(e).unwrap().to_string(),
                format!("https://c:4317{EXPORT_PATH}")
            );
        }
        for e in ["ftp://c:4317", "127.0.0.1:4317", "grpc://", "grpc:///x"] {
            assert!(export_uri(e).is_err(), "{e}");
        }
    }

    #[test]
    fn grpc_status_is_read_from_trailers_then_head() {
        let mut ok = http::HeaderMap::new();
        ok.insert("grpc-status", "0".parse().unwrap());
        let empty = http::HeaderMap::new();
        assert!(grpc_outcome(&empty, Some(&ok)).is_ok());
        assert!(grpc_outcome(&ok, None).is_ok(), "trailers-only");
        let mut bad = http::HeaderMap::new();
        bad.insert("grpc-status", "14".parse().unwrap());
        bad.insert("grpc-message", "no%20capacity".parse().unwrap());
        let e = grpc_outcome(&empty, Some(&bad)).unwrap_err().to_string();
        assert!(e.contains("14") && e.contains("no capacity"), "{e}");
        assert!(grpc_outcome(&empty, Some(&empty)).is_err(), "no status");
    }
}
