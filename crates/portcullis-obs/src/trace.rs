//! Traces: W3C `traceparent`/`tracestate` (and B3, when asked for:
//! [`crate::propagate`]) extracted from each request, a server span per
//! request with the OpenTelemetry HTTP semantic-convention attributes and the
//! route, the span's context propagated upstream, and export over OTLP/HTTP
//! (protobuf) or OTLP/gRPC ([`crate::otlp_grpc`]) by the SDK's batch
//! processor.
//!
//! - Off unless [`install`]ed; then [`enabled`] is one atomic load.
//! - Sampling: parent-based (a sampled parent is followed), else the
//!   configured ratio of trace ids. An unsampled request still gets a span
//!   context, so upstreams see one trace id.
//! - Never blocking: ended spans go to the batch processor's bounded queue
//!   (a full queue drops them, counted in
//!   `portcullis_trace_spans_dropped_total`, as are spans of failed exports); its own
//!   thread exports them, through an HTTP/1.1 (OTLP/HTTP) or HTTP/2
//!   (OTLP/gRPC) client that runs on the given Tokio runtime. No `reqwest`,
//!   no tonic: the clients are hyper-util's.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use http::HeaderMap;
use opentelemetry::trace::{SpanKind, Status, TraceContextExt, Tracer as _, TracerProvider as _};
use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{Sampler, SdkTracer, SdkTracerProvider};

pub use crate::propagate::Propagation;

/// How spans are exported.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ExportProtocol {
    /// OTLP/HTTP with protobuf bodies (`http://collector:4318/v1/traces`).
    #[default]
    HttpProtobuf,
    /// OTLP/gRPC over HTTP/2 (`grpc://collector:4317` in clear text,
    /// `grpcs://collector:4317` over TLS).
    Grpc,
}

impl std::str::FromStr for ExportProtocol {
    type Err = String;

    /// `http/protobuf` or `grpc` (the `OTEL_EXPORTER_OTLP_PROTOCOL` values).
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "http/protobuf" | "http" => Ok(ExportProtocol::HttpProtobuf),
            "grpc" => Ok(ExportProtocol::Grpc),
            _ => Err(format!(
                "OTLP protocol {s:?}: expected grpc or http/protobuf"
            )),
        }
    }
}

impl ExportProtocol {
    /// The protocol an endpoint implies: `grpc://` and `grpcs://` are
    /// gRPC, anything else OTLP/HTTP.
    pub fn of_endpoint(endpoint: &str) -> Self {
        if endpoint.starts_with("grpc://") || endpoint.starts_with("grpcs://") {
            ExportProtocol::Grpc
        } else {
            ExportProtocol::HttpProtobuf
        }
    }
}

/// Tracing settings.
#[derive(Clone, Debug)]
pub struct Config {
    /// Traces endpoint: OTLP/HTTP, e.g. `http://otel-collector:4318/v1/traces`
    /// (`https://` over TLS), or OTLP/gRPC, e.g. `grpc://otel-collector:4317`
    /// (`grpcs://` over TLS).
    pub endpoint: String,
    /// How spans are sent to `endpoint`.
    pub protocol: ExportProtocol,
    /// For `https://` and `grpcs://` endpoints: trust only the certificates
    /// in this PEM file (default: the system's roots).
    pub ca_file: Option<std::path::PathBuf>,
    /// Which trace-context formats are read and written.
    pub propagation: Propagation,
    /// Ratio of new traces sampled (0.0..=1.0); a parent's decision is followed.
    pub ratio: f64,
    /// `service.name` of the spans.
    pub service_name: String,
    /// Spans waiting for export before new ones are dropped.
    pub max_queue: usize,
    /// How often batches are sent.
    pub delay: Duration,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            endpoint: "http://127.0.0.1:4318/v1/traces".into(),
            protocol: ExportProtocol::HttpProtobuf,
            ca_file: None,
            propagation: Propagation::default(),
            ratio: 1.0,
            service_name: "portcullis".into(),
            max_queue: 4096,
            delay: Duration::from_secs(2),
        }
    }
}

/// Why tracing could not be started.
#[derive(Debug, thiserror::Error)]
pub enum TraceError {
    /// The exporter could not be built.
    #[error("OTLP exporter: {0}")]
    Exporter(String),
    /// Already installed in this process.
    #[error("tracing is already installed")]
    Installed,
}

struct Tracing {
    provider: SdkTracerProvider,
    tracer: SdkTracer,
    propagator: TraceContextPropagator,
    propagation: Propagation,
    ratio: f64,
}

static ENABLED: AtomicBool = AtomicBool::new(false);
static TRACING: OnceLock<Tracing> = OnceLock::new();

/// Whether tracing is installed.
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Start exporting spans (once per process). Exports run on `rt`.
pub fn install(cfg: &Config, rt: tokio::runtime::Handle) -> Result<(), TraceError> {
    if TRACING.get().is_some() {
        return Err(TraceError::Installed);
    }
    let processor = crate::export::processor(cfg, rt)?;
    let provider = SdkTracerProvider::builder()
        .with_span_processor(processor)
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::TraceIdRatioBased(
            cfg.ratio.clamp(0.0, 1.0),
        ))))
        .with_resource(
            opentelemetry_sdk::Resource::builder()
                .with_service_name(cfg.service_name.clone())
                .build(),
        )
        .build();
    let tracer = provider.tracer("portcullis");
    TRACING
        .set(Tracing {
            provider,
            tracer,
            propagator: TraceContextPropagator::new(),
            propagation: cfg.propagation,
            ratio: cfg.ratio.clamp(0.0, 1.0),
        })
        .map_err(|_| TraceError::Installed)?;
    ENABLED.store(true, Ordering::Relaxed);
    Ok(())
}

/// Export what is queued and stop (at shutdown).
pub fn shutdown() {
    if let Some(t) = TRACING.get() {
        ENABLED.store(false, Ordering::Relaxed);
        let _ = t.provider.force_flush();
        let _ = t.provider.shutdown();
    }
}

/// Export what is queued now (tests, shutdown).
pub fn flush() {
    if let Some(t) = TRACING.get() {
        let _ = t.provider.force_flush();
    }
}

/// What a server span is started with.
#[derive(Debug, Clone, Copy)]
pub struct RequestInfo<'a> {
    /// Method.
    pub method: &'a str,
    /// `http` or `https`.
    pub scheme: &'a str,
    /// Path (no query).
    pub path: &'a str,
    /// Host, without port.
    pub host: &'a str,
    /// The listener's port.
    pub port: u16,
    /// Client address.
    pub peer: std::net::SocketAddr,
    /// `1.0`, `1.1`, `2`.
    pub protocol_version: &'static str,
    /// `User-Agent`, if any.
    pub user_agent: Option<&'a str>,
}

/// The server span of one request.
#[derive(Debug)]
pub struct ServerSpan {
    cx: Context,
    method: Box<str>,
}

impl ServerSpan {
    /// Start a span for a request whose parent (if any) is in `headers`
    /// (`traceparent`/`tracestate`, or B3 when enabled), and replace those
    /// headers with the span's context, so the upstream request carries it.
    /// `None` when tracing is off.
    pub fn start(headers: &mut HeaderMap, info: &RequestInfo<'_>) -> Option<Box<Self>> {
        let t = TRACING.get()?;
        let parent = t.propagation.extract(headers, &t.propagator, t.ratio);
        let mut attrs = Vec::with_capacity(10);
        attrs.push(KeyValue::new("http.request.method", info.method.to_owned()));
        attrs.push(KeyValue::new("url.path", info.path.to_owned()));
        attrs.push(KeyValue::new("url.scheme", info.scheme.to_owned()));
        attrs.push(KeyValue::new("server.address", info.host.to_owned()));
        attrs.push(KeyValue::new("server.port", i64::from(info.port)));
        attrs.push(KeyValue::new("client.address", info.peer.ip().to_string()));
        attrs.push(KeyValue::new("client.port", i64::from(info.peer.port())));
        attrs.push(KeyValue::new("network.protocol.name", "http"));
        attrs.push(KeyValue::new(
            "network.protocol.version",
            info.protocol_version,
        ));
        if let Some(ua) = info.user_agent {
            attrs.push(KeyValue::new("user_agent.original", ua.to_owned()));
        }
        let span = t
            .tracer
            .span_builder(info.method.to_owned())
            .with_kind(SpanKind::Server)
            .with_attributes(attrs)
            .start_with_context(&t.tracer, &parent);
        let cx = parent.with_span(span);
        t.propagation.inject(&cx, headers, &t.propagator);
        Some(Box::new(ServerSpan {
            cx,
            method: info.method.into(),
        }))
    }

    /// The trace id, 32 hex digits.
    pub fn trace_id(&self) -> String {
        self.cx.span().span_context().trace_id().to_string()
    }

    /// End the span with the response and where the request went.
    pub fn end(self, status: u16, route: &Route<'_>, error: Option<&str>) {
        let span = self.cx.span();
        if !route.route.is_empty() {
            span.update_name(format!("{} {}", self.method, route.route));
        }
        let mut attrs = vec![KeyValue::new(
            "http.response.status_code",
            i64::from(status),
        )];
        for (k, v) in [
            ("portcullis.gateway", route.gateway),
            ("portcullis.listener", route.listener),
            ("portcullis.route", route.route),
            ("portcullis.rule", route.rule),
            ("portcullis.backend", route.backend),
        ] {
            if !v.is_empty() {
                attrs.push(KeyValue::new(k, v.to_owned()));
            }
        }
        if let Some(u) = route.upstream {
            attrs.push(KeyValue::new("network.peer.address", u.ip().to_string()));
            attrs.push(KeyValue::new("network.peer.port", i64::from(u.port())));
        }
        if status >= 500 || error.is_some() {
            let e = error.map_or_else(|| status.to_string(), str::to_owned);
            attrs.push(KeyValue::new("error.type", e.clone()));
            span.set_status(Status::error(e));
        }
        span.set_attributes(attrs);
        span.end();
    }
}

/// Where a request went, for its span.
#[derive(Debug, Default, Clone, Copy)]
pub struct Route<'a> {
    /// Gateway `namespace/name`.
    pub gateway: &'a str,
    /// Listener name.
    pub listener: &'a str,
    /// Route `namespace/name`.
    pub route: &'a str,
    /// Rule name or index.
    pub rule: &'a str,
    /// Backend `namespace/name:port`.
    pub backend: &'a str,
    /// Upstream endpoint.
    pub upstream: Option<std::net::SocketAddr>,
}
