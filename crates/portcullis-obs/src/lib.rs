//! Portcullis observability.
//!
//! - [`metrics`]: the process-wide Prometheus registry ([`metrics::metrics`],
//!   [`metrics::render`]), connection, TLS, layer-4 and control-plane metrics.
//! - [`http`]: per-route HTTP statistics, resolved when a route table is
//!   built so that the request path only adds to atomics (no lock, no
//!   allocation), and the collector that encodes them.
//! - [`health`]: endpoint health by backend, read at scrape time.
//! - [`hist`]: the lock-free duration histogram they use.
//! - [`accesslog`]: JSON/text access logs behind a bounded queue.
//! - [`trace`]: server spans, OTLP/HTTP and OTLP/gRPC ([`otlp_grpc`])
//!   export; [`propagate`]: W3C trace context and B3.
//!
//! Metric names, labels and the series budget are documented in
//! `docs/observability.md`.
#![deny(missing_docs)]

pub mod accept;
pub mod accesslog;
pub mod conncap;
pub mod control;
mod export;
pub mod health;
pub mod hist;
pub mod http;
pub mod metrics;
pub mod otlp_grpc;
mod otlp_tls;
pub mod propagate;
pub mod server;
pub mod trace;

pub use metrics::{CONTENT_TYPE, metrics, render};
