//! Per-route HTTP statistics: one [`HttpStats`] per (gateway, listener,
//! route, backend), resolved when a route table is built and held by it, so
//! the request path only adds to atomics.
//!
//! The entries live in an [`HttpRegistry`] keyed by their labels: a table
//! rebuilt by a configuration change gets the same entries back (counters
//! keep counting across reloads), and an entry that no table holds any more
//! is dropped at the next scrape (its series go stale).
//!
//! An entry exposes nothing until its first request; then at most
//! [`SERIES_PER_ENTRY`] series: one `portcullis_http_requests_total` per
//! method class and status class seen, two duration histograms, bytes in and
//! out, retries, timeouts and mirror errors.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;

use crate::hist::{self, DurationHistogram};

/// Method classes, the `method` label: the common methods by name, the rest `OTHER`.
pub const METHOD_CLASSES: [&str; 8] = [
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "OTHER",
];

/// Status classes, the `code` label.
pub const STATUS_CLASSES: [&str; 5] = ["1xx", "2xx", "3xx", "4xx", "5xx"];

/// The most series one entry can expose.
pub const SERIES_PER_ENTRY: usize =
    METHOD_CLASSES.len() * STATUS_CLASSES.len() + 2 * hist::SERIES + 2 + 3;

/// The method class of a method.
#[inline]
pub fn method_class(method: &str) -> u8 {
    match method {
        "GET" => 0,
        "HEAD" => 1,
        "POST" => 2,
        "PUT" => 3,
        "PATCH" => 4,
        "DELETE" => 5,
        "OPTIONS" => 6,
        _ => 7,
    }
}

/// The status class of a status code (codes outside 100..=599 count as 5xx).
#[inline]
pub fn status_class(status: u16) -> u8 {
    match status {
        100..=199 => 0,
        200..=299 => 1,
        300..=399 => 2,
        400..=499 => 3,
        _ => 4,
    }
}

/// The labels of one entry. Empty strings stand for "none" (a request that
/// matched no listener, no route, or was answered before a backend was chosen).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct HttpKey {
    /// `namespace/name` of the Gateway.
    pub gateway: Box<str>,
    /// Listener name.
    pub listener: Box<str>,
    /// `namespace/name` of the route.
    pub route: Box<str>,
    /// `namespace/name:port` of the backend.
    pub backend: Box<str>,
}

impl HttpKey {
    /// The key of a listener named `gateway-namespace/gateway-name/listener`
    /// (the IR's listener names), for `route` and `backend`.
    pub fn new(ir_listener: &str, route: &str, backend: &str) -> Self {
        let (gateway, listener) = split_listener(ir_listener);
        HttpKey {
            gateway: gateway.into(),
            listener: listener.into(),
            route: route.into(),
            backend: backend.into(),
        }
    }
}

/// `ns/gw/listener` → (`ns/gw`, `listener`); a name without two slashes is all listener.
pub fn split_listener(name: &str) -> (&str, &str) {
    match name.rfind('/') {
        Some(i) if name[..i].contains('/') => (&name[..i], &name[i + 1..]),
        _ => ("", name),
    }
}

/// Counters of one (gateway, listener, route, backend).
#[derive(Debug, Default)]
pub struct HttpStats {
    /// Its labels (also the names the access log shows).
    pub key: HttpKey,
    requests: [[AtomicU64; STATUS_CLASSES.len()]; METHOD_CLASSES.len()],
    request_bytes: AtomicU64,
    response_bytes: AtomicU64,
    duration: DurationHistogram,
    upstream: DurationHistogram,
    retries: AtomicU64,
    timeouts: AtomicU64,
    mirror_errors: AtomicU64,
}

/// What one finished request adds.
#[derive(Clone, Copy, Debug, Default)]
pub struct Finished {
    /// [`method_class`].
    pub method: u8,
    /// HTTP status.
    pub status: u16,
    /// Request body bytes.
    pub bytes_in: u64,
    /// Response body bytes.
    pub bytes_out: u64,
    /// Whole request, from its head to the end of the response body.
    pub duration: Duration,
    /// Upstream, from the first attempt to the response head; `None` when no upstream answered.
    pub upstream: Option<Duration>,
}

impl HttpStats {
    /// Record a finished request.
    #[inline]
    pub fn record(&self, f: &Finished) {
        let m = usize::from(f.method).min(METHOD_CLASSES.len() - 1);
        let s = usize::from(status_class(f.status));
        self.requests[m][s].fetch_add(1, Ordering::Relaxed);
        if f.bytes_in > 0 {
            self.request_bytes.fetch_add(f.bytes_in, Ordering::Relaxed);
        }
        if f.bytes_out > 0 {
            self.response_bytes
                .fetch_add(f.bytes_out, Ordering::Relaxed);
        }
        self.duration.observe(f.duration);
        if let Some(u) = f.upstream {
            self.upstream.observe(u);
        }
    }

    /// Request body bytes streamed (counted as they pass).
    #[inline]
    pub fn add_request_bytes(&self, n: u64) {
        self.request_bytes.fetch_add(n, Ordering::Relaxed);
    }

    /// One retry (an attempt after the first).
    #[inline]
    pub fn retry(&self) {
        self.retries.fetch_add(1, Ordering::Relaxed);
    }

    /// One request or backend-request timeout answered.
    #[inline]
    pub fn timeout(&self) {
        self.timeouts.fetch_add(1, Ordering::Relaxed);
    }

    /// One failed mirrored copy.
    #[inline]
    pub fn mirror_error(&self) {
        self.mirror_errors.fetch_add(1, Ordering::Relaxed);
    }

    /// Requests recorded, all classes.
    pub fn total(&self) -> u64 {
        self.requests
            .iter()
            .flatten()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }

    fn touched(&self) -> bool {
        self.total() > 0 || self.mirror_errors.load(Ordering::Relaxed) > 0
    }
}

/// Every [`HttpStats`] by labels; also the collector that encodes them.
#[derive(Debug, Default)]
pub struct HttpRegistry {
    entries: Mutex<BTreeMap<HttpKey, Arc<HttpStats>>>,
}

impl HttpRegistry {
    /// The entry for `key` (the same one as long as something holds it).
    pub fn get(&self, key: HttpKey) -> Arc<HttpStats> {
        let mut m = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(key.clone())
            .or_insert_with(|| {
                Arc::new(HttpStats {
                    key,
                    ..Default::default()
                })
            })
            .clone()
    }

    /// Entries held by a route table (or a request in flight).
    pub fn len(&self) -> usize {
        self.entries.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    /// Whether there is no entry.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every entry (held or not), for tests and tools.
    pub fn entries(&self) -> Vec<(HttpKey, Arc<HttpStats>)> {
        let m = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        m.iter().map(|(k, s)| (k.clone(), s.clone())).collect()
    }

    /// Live entries, in label order; entries no one holds are dropped.
    fn live(&self) -> Vec<(HttpKey, Arc<HttpStats>)> {
        let mut m = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        m.retain(|_, s| Arc::strong_count(s) > 1);
        m.iter()
            .filter(|(_, s)| s.touched())
            .map(|(k, s)| (k.clone(), s.clone()))
            .collect()
    }
}

type Labels<'a> = [(&'a str, &'a str); 4];

fn labels(k: &HttpKey) -> Labels<'_> {
    [
        ("gateway", &k.gateway),
        ("listener", &k.listener),
        ("route", &k.route),
        ("backend", &k.backend),
    ]
}

/// The collector registered with the Prometheus registry.
#[derive(Debug)]
pub(crate) struct HttpCollector(pub(crate) Arc<HttpRegistry>);

fn counter(
    enc: &mut DescriptorEncoder,
    live: &[(HttpKey, Arc<HttpStats>)],
    name: &str,
    help: &str,
    get: impl Fn(&HttpStats) -> u64,
) -> std::fmt::Result {
    let mut d = enc.encode_descriptor(name, help, None, MetricType::Counter)?;
    for (k, s) in live {
        let l = labels(k);
        ConstCounter::new(get(s)).encode(d.encode_family(&l)?)?;
    }
    Ok(())
}

fn histogram(
    enc: &mut DescriptorEncoder,
    live: &[(HttpKey, Arc<HttpStats>)],
    name: &str,
    help: &str,
    get: impl Fn(&HttpStats) -> &DurationHistogram,
) -> std::fmt::Result {
    let mut d = enc.encode_descriptor(name, help, None, MetricType::Histogram)?;
    for (k, s) in live {
        let h = get(s);
        if h.count() == 0 {
            continue;
        }
        let (sum, count, buckets) = h.snapshot();
        let l = labels(k);
        d.encode_family(&l)?
            .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                sum, count, &buckets, None,
            )?;
    }
    Ok(())
}

impl Collector for HttpCollector {
    fn encode(&self, mut enc: DescriptorEncoder) -> std::fmt::Result {
        let live = self.0.live();
        {
            let mut d = enc.encode_descriptor(
                "portcullis_http_requests",
                "HTTP requests by gateway, listener, route, backend, method class and status class",
                None,
                MetricType::Counter,
            )?;
            for (k, s) in &live {
                for (m, row) in s.requests.iter().enumerate() {
                    for (c, v) in row.iter().enumerate() {
                        let v = v.load(Ordering::Relaxed);
                        if v == 0 {
                            continue;
                        }
                        let [g, li, r, b] = labels(k);
                        let l = [
                            g,
                            li,
                            r,
                            b,
                            ("method", METHOD_CLASSES[m]),
                            ("code", STATUS_CLASSES[c]),
                        ];
                        ConstCounter::new(v).encode(d.encode_family(&l)?)?;
                    }
                }
            }
        }
        histogram(
            &mut enc,
            &live,
            "portcullis_http_request_duration_seconds",
            "Time from the request head to the end of the response body",
            |s| &s.duration,
        )?;
        histogram(
            &mut enc,
            &live,
            "portcullis_http_upstream_duration_seconds",
            "Time from the first upstream attempt to the upstream response head (retries included)",
            |s| &s.upstream,
        )?;
        counter(
            &mut enc,
            &live,
            "portcullis_http_request_bytes",
            "Request body bytes received from clients",
            |s| s.request_bytes.load(Ordering::Relaxed),
        )?;
        counter(
            &mut enc,
            &live,
            "portcullis_http_response_bytes",
            "Response body bytes sent to clients",
            |s| s.response_bytes.load(Ordering::Relaxed),
        )?;
        counter(
            &mut enc,
            &live,
            "portcullis_http_retries",
            "Upstream attempts after the first (route retry policy)",
            |s| s.retries.load(Ordering::Relaxed),
        )?;
        counter(
            &mut enc,
            &live,
            "portcullis_http_timeouts",
            "Requests answered 504 because a request or backend-request timeout expired",
            |s| s.timeouts.load(Ordering::Relaxed),
        )?;
        counter(
            &mut enc,
            &live,
            "portcullis_http_mirror_errors",
            "Mirrored copies (RequestMirror filter) that failed or timed out",
            |s| s.mirror_errors.load(Ordering::Relaxed),
        )?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_and_listener_names() {
        assert_eq!(method_class("GET"), 0);
        assert_eq!(method_class("PROPFIND"), 7);
        assert_eq!(status_class(204), 1);
        assert_eq!(status_class(503), 4);
        assert_eq!(status_class(42), 4);
        assert_eq!(split_listener("ns/gw/http"), ("ns/gw", "http"));
        assert_eq!(split_listener("http"), ("", "http"));
    }

    #[test]
    fn entries_are_shared_by_labels_and_dropped_when_unheld() {
        let r = HttpRegistry::default();
        let a = r.get(HttpKey::new("ns/gw/l", "ns/r", "ns/b:80"));
        let b = r.get(HttpKey::new("ns/gw/l", "ns/r", "ns/b:80"));
        assert!(Arc::ptr_eq(&a, &b));
        a.record(&Finished {
            status: 200,
            ..Default::default()
        });
        assert_eq!(r.live().len(), 1);
        drop((a, b));
        assert!(r.live().is_empty());
        assert!(r.is_empty());
    }
}
