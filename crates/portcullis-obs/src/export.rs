//! The span pipeline behind [`crate::trace`]: the SDK's batch processor,
//! bounded and counted, in front of the OTLP/HTTP or OTLP/gRPC exporter.
//!
//! [`Bounded`] counts the spans between `on_end` and the exporter; past the
//! queue size a span is dropped at once (one atomic add, no lock) and
//! counted in `portcullis_trace_spans_dropped_total`, as are the spans of a
//! batch whose export failed. The SDK's own queue has the same size, so it
//! never drops one uncounted.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry::Context;
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, Span, SpanData, SpanExporter, SpanProcessor,
};

use crate::trace::{Config, ExportProtocol, TraceError};

/// How long one export may take.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);

/// The OTLP/HTTP client: hyper-util's, its requests run on `rt`.
#[derive(Debug)]
struct OtlpClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    rt: tokio::runtime::Handle,
    timeout: Duration,
}

#[async_trait::async_trait]
impl HttpClient for OtlpClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let client = self.client.clone();
        let timeout = self.timeout;
        let send = async move {
            let resp = tokio::time::timeout(timeout, client.request(request.map(Full::new)))
                .await
                .map_err(|_| "OTLP export timed out")??;
            let (parts, body) = resp.into_parts();
            let body = body.collect().await?.to_bytes();
            Ok::<_, HttpError>(Response::from_parts(parts, body))
        };
        self.rt.spawn(send).await?
    }
}

/// Spans handed to the processor and not yet taken by the exporter.
#[derive(Debug, Default)]
struct Pending(AtomicUsize);

/// An exporter that releases [`Pending`] slots as batches leave the queue
/// and counts the spans of failed exports as dropped.
#[derive(Debug)]
struct Counting<E> {
    inner: E,
    pending: Arc<Pending>,
}

impl<E: SpanExporter> SpanExporter for Counting<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        self.pending.0.fetch_sub(n, Ordering::Relaxed);
        let r = self.inner.export(batch).await;
        if let Err(e) = &r {
            crate::metrics().spans_dropped.inc_by(n as u64);
            tracing::debug!(spans = n, error = %e, "span export failed");
        }
        r
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

/// The batch processor behind a counted bound.
#[derive(Debug)]
pub struct Bounded {
    inner: BatchSpanProcessor,
    pending: Arc<Pending>,
    max: usize,
}

impl SpanProcessor for Bounded {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.pending.0.fetch_add(1, Ordering::Relaxed) >= self.max {
            self.pending.0.fetch_sub(1, Ordering::Relaxed);
            crate::metrics().spans_dropped.inc();
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &opentelemetry_sdk::Resource) {
        self.inner.set_resource(resource);
    }
}

/// The processor for `cfg`: OTLP/HTTP or OTLP/gRPC, exports run on `rt`;
/// an endpoint the exporter cannot reach (another scheme, no host) or a CA
/// file that cannot be read is an error here, at start, rather than a
/// failure at every export.
pub fn processor(cfg: &Config, rt: tokio::runtime::Handle) -> Result<Bounded, TraceError> {
    let max = cfg.max_queue.max(1);
    let pending = Arc::new(Pending::default());
    let batch = BatchConfigBuilder::default()
        // One more than the bound: the SDK's queue never fills before ours.
        .with_max_queue_size(max + 1)
        .with_max_export_batch_size(max.min(512))
        .with_scheduled_delay(cfg.delay)
        .build();
    let inner = match cfg.protocol {
        ExportProtocol::HttpProtobuf
            if !(cfg.endpoint.starts_with("http://") || cfg.endpoint.starts_with("https://")) =>
        {
            return Err(TraceError::Exporter(format!(
                "OTLP/HTTP endpoint {:?}: expected http(s)://host:port/v1/traces",
                cfg.endpoint
            )));
        }
        ExportProtocol::HttpProtobuf => {
            let connector =
                crate::otlp_tls::connector(cfg.ca_file.as_deref(), false, EXPORT_TIMEOUT)?;
            let client = OtlpClient {
                client: Client::builder(TokioExecutor::new()).build(connector),
                rt,
                timeout: EXPORT_TIMEOUT,
            };
            let exporter = opentelemetry_otlp::SpanExporter::builder()
                .with_http()
                .with_http_client(client)
                .with_protocol(Protocol::HttpBinary)
                .with_endpoint(cfg.endpoint.clone())
                .build()
                .map_err(|e| TraceError::Exporter(e.to_string()))?;
            let exporter = Counting {
                inner: exporter,
                pending: pending.clone(),
            };
            BatchSpanProcessor::builder(exporter)
                .with_batch_config(batch)
                .build()
        }
        ExportProtocol::Grpc => {
            let connector =
                crate::otlp_tls::connector(cfg.ca_file.as_deref(), true, EXPORT_TIMEOUT)?;
            let exporter =
                crate::otlp_grpc::GrpcExporter::new(&cfg.endpoint, rt, EXPORT_TIMEOUT, connector)
                    .map_err(|e| TraceError::Exporter(e.to_string()))?;
            let exporter = Counting {
                inner: exporter,
                pending: pending.clone(),
            };
            BatchSpanProcessor::builder(exporter)
                .with_batch_config(batch)
                .build()
        }
    };
    Ok(Bounded {
        inner,
        pending,
        max,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_that_could_never_export_are_refused_at_start() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let cfg = |endpoint: &str, protocol| Config {
            endpoint: endpoint.into(),
            protocol,
            ..Default::default()
        };
        for (e, p) in [
            (
                "ftp://collector:4318/v1/traces",
                ExportProtocol::HttpProtobuf,
            ),
            ("collector:4318", ExportProtocol::HttpProtobuf),
            ("collector:4317", ExportProtocol::Grpc),
            ("grpc://", ExportProtocol::Grpc),
        ] {
            let err = processor(&cfg(e, p), rt.handle().clone()).unwrap_err();
            assert!(err.to_string().contains(e), "{e}: {err}");
        }
        let missing = Config {
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..cfg(
                "https://collector:4318/v1/traces",
                ExportProtocol::HttpProtobuf,
            )
        };
        let err = processor(&missing, rt.handle().clone()).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/ca.pem"), "{err}");
        for (e, p) in [
            (
                "http://collector:4318/v1/traces",
                ExportProtocol::HttpProtobuf,
            ),
            (
                "https://collector:4318/v1/traces",
                ExportProtocol::HttpProtobuf,
            ),
            ("grpc://collector:4317", ExportProtocol::Grpc),
            ("grpcs://collector:4317", ExportProtocol::Grpc),
            ("http://collector:4317", ExportProtocol::Grpc),
            ("https://collector:4317", ExportProtocol::Grpc),
        ] {
            let _guard = rt.enter();
            let p = processor(&cfg(e, p), rt.handle().clone()).expect(e);
            let _ = p.shutdown();
        }
    }
}
