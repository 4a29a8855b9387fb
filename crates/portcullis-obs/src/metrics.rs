//! The process-wide Prometheus registry and every metric Portcullis exposes.
//!
//! [`metrics()`] is the one registry of the process (both `portcullis run`
//! and `portcullis proxy` serve it on `/metrics`); [`render`] encodes it as
//! OpenMetrics text. Handles with labels ([`PortStats`], [`L4Stats`],
//! [`crate::http::HttpStats`]) are resolved when a port or route table is
//! built; the request path only adds to atomics. Names and labels are
//! documented in `docs/observability.md`.

use std::sync::atomic::{AtomicI64, AtomicU64};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::http::{HttpCollector, HttpRegistry};

/// The `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Label sets of the fixed metric families.
pub type Labels = Vec<(&'static str, String)>;

type CounterFamily = Family<Labels, Counter>;
type GaugeFamily = Family<Labels, Gauge>;

/// Every metric of the process.
pub struct Metrics {
    registry: Registry,
    /// Per-route HTTP statistics.
    pub http: Arc<HttpRegistry>,
    /// Endpoint health of the live backends (read at scrape time).
    pub health: Arc<crate::health::HealthRegistry>,
    downstream_total: CounterFamily,
    downstream_active: GaugeFamily,
    tls_handshakes: CounterFamily,
    tls_failures: CounterFamily,
    upstream_total: CounterFamily,
    upstream_active: GaugeFamily,
    l4_sessions: CounterFamily,
    l4_active: GaugeFamily,
    l4_bytes: CounterFamily,
    rate_limit: CounterFamily,
    auth: CounterFamily,
    /// Global rate-limit decisions Redis could not make (unreachable, timed out, an error).
    pub rate_limit_redis_errors: Counter,
    /// Control plane.
    pub control: Control,
    /// Access-log lines dropped because the writer fell behind.
    pub access_log_dropped: Counter,
    /// Spans dropped because the exporter fell behind.
    pub spans_dropped: Counter,
}

/// Decision counters of one rate-limit policy and scope.
#[derive(Clone, Debug, Default)]
pub struct RateLimitStats {
    /// Requests the rules let through.
    pub allowed: Counter,
    /// Requests refused (429).
    pub limited: Counter,
    /// Requests over a shadow-mode rule's limit, let through.
    pub shadow_limited: Counter,
    /// Requests let through because Redis could not decide (fail open).
    pub failed_open: Counter,
    /// Requests refused because Redis could not decide (fail closed, 503).
    pub failed_closed: Counter,
}

/// Decision counters of one SecurityPolicy.
#[derive(Clone, Debug, Default)]
pub struct AuthStats {
    /// Requests every step let through.
    pub allowed: Counter,
    /// Requests a step refused (401, 403, an ext-auth service's answer, a
    /// failed OIDC login redirect included).
    pub denied: Counter,
    /// Requests answered 500 because the policy is invalid (fail closed).
    pub invalid: Counter,
    /// CORS preflight requests answered by the policy.
    pub preflight: Counter,
}

/// Control-plane metrics.
pub struct Control {
    reloads: CounterFamily,
    last_success: Gauge<f64, AtomicU64>,
    generation: Gauge<i64, AtomicI64>,
    translate: Histogram,
    objects: GaugeFamily,
    conditions: GaugeFamily,
    status_writes: CounterFamily,
    /// Status patches the API server refused with 409 (the object changed
    /// since it was read); each is merged again and retried.
    pub status_conflicts: Counter,
    /// 1 while this controller replica holds the leader Lease.
    pub leader: Gauge<i64, AtomicI64>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// The process's metrics.
pub fn metrics() -> &'static Metrics {
    static M: OnceLock<Metrics> = OnceLock::new();
    M.get_or_init(Metrics::new)
}

/// The registry as OpenMetrics text (ends with `# EOF`).
pub fn render() -> String {
    let mut s = String::with_capacity(16 * 1024);
    if encode(&mut s, &metrics().registry).is_err() {
        s.clear();
    }
    s
}

fn reg<M: prometheus_client::registry::Metric + Clone>(
    r: &mut Registry,
    name: &str,
    help: &str,
    m: &M,
) {
    r.register(name, help, m.clone());
}

impl Metrics {
    fn new() -> Self {
        let mut r = Registry::default();
        let http = Arc::new(HttpRegistry::default());
        r.register_collector(Box::new(HttpCollector(http.clone())));
        let health = Arc::new(crate::health::HealthRegistry::default());
        r.register_collector(Box::new(crate::health::HealthCollector(health.clone())));
        let m = Metrics {
            http,
            health,
            downstream_total: Family::default(),
            downstream_active: Family::default(),
            tls_handshakes: Family::default(),
            tls_failures: Family::default(),
            upstream_total: Family::default(),
            upstream_active: Family::default(),
            l4_sessions: Family::default(),
            l4_active: Family::default(),
            l4_bytes: Family::default(),
            rate_limit: Family::default(),
            auth: Family::default(),
            rate_limit_redis_errors: Counter::default(),
            control: Control {
                reloads: Family::default(),
                last_success: Gauge::default(),
                generation: Gauge::default(),
                translate: Histogram::new(crate::hist::BUCKETS),
                objects: Family::default(),
                conditions: Family::default(),
                status_writes: Family::default(),
                status_conflicts: Counter::default(),
                leader: Gauge::default(),
            },
            access_log_dropped: Counter::default(),
            spans_dropped: Counter::default(),
            registry: Registry::default(),
        };
        let p = "portcullis_";
        let n = |s: &str| format!("{p}{s}");
        reg(
            &mut r,
            &n("auth_decisions"),
            "SecurityPolicy decisions, by policy and outcome (allowed, denied, invalid: the policy is invalid and requests are answered 500, preflight: CORS preflights answered)",
            &m.auth,
        );
        reg(
            &mut r,
            &n("rate_limit_decisions"),
            "BackendTrafficPolicy rate-limit decisions, by policy, scope (local or global) and outcome (allowed, limited, shadow_limited, failed_open, failed_closed)",
            &m.rate_limit,
        );
        reg(
            &mut r,
            &n("rate_limit_redis_errors"),
            "Global rate-limit decisions Redis could not make (unreachable, timed out, an error reply)",
            &m.rate_limit_redis_errors,
        );
        reg(
            &mut r,
            &n("downstream_connections"),
            "Client connections accepted, by port and protocol",
            &m.downstream_total,
        );
        reg(
            &mut r,
            &n("downstream_connections_active"),
            "Client connections open, by port and protocol",
            &m.downstream_active,
        );
        reg(
            &mut r,
            &n("tls_handshakes"),
            "TLS handshakes completed by client connections, by port",
            &m.tls_handshakes,
        );
        reg(
            &mut r,
            &n("tls_handshake_failures"),
            "TLS handshakes that failed, by port and reason (timeout, eof, protocol, io)",
            &m.tls_failures,
        );
        reg(
            &mut r,
            &n("upstream_connections"),
            "Upstream connections opened, by client (http1: the lean HTTP/1.1 client; hyper: HTTP/2, upgrades, mirrors)",
            &m.upstream_total,
        );
        reg(
            &mut r,
            &n("upstream_connections_active"),
            "Upstream connections open (in use or pooled), by client (http1: the lean HTTP/1.1 client; hyper: HTTP/2, upgrades, mirrors, upstream TLS)",
            &m.upstream_active,
        );
        reg(
            &mut r,
            &n("l4_sessions"),
            "Layer-4 sessions (TCP connections, TLS passthrough connections, UDP sessions) to a backend, by gateway, listener, route and protocol",
            &m.l4_sessions,
        );
        reg(
            &mut r,
            &n("l4_sessions_active"),
            "Layer-4 sessions open",
            &m.l4_active,
        );
        reg(
            &mut r,
            &n("l4_bytes"),
            "Layer-4 bytes by direction (rx: from clients, tx: to clients)",
            &m.l4_bytes,
        );
        let c = &m.control;
        reg(
            &mut r,
            &n("config_reloads"),
            "Configuration reloads by result (success, error: invalid objects kept their last good version or ports could not be bound)",
            &c.reloads,
        );
        reg(
            &mut r,
            &n("config_last_reload_success_timestamp_seconds"),
            "When the last successful reload was applied (Unix seconds)",
            &c.last_success,
        );
        reg(
            &mut r,
            &n("config_applied_generation"),
            "Generation of the applied configuration (standalone: applies since start; proxy: the controller's version)",
            &c.generation,
        );
        reg(
            &mut r,
            &n("translate_duration_seconds"),
            "Time to translate the Gateway API objects into the data-plane configuration",
            &c.translate,
        );
        reg(
            &mut r,
            &n("config_objects"),
            "Gateway API objects with a status, by kind",
            &c.objects,
        );
        reg(
            &mut r,
            &n("config_object_conditions"),
            "Status conditions by object kind, condition type, status and reason",
            &c.conditions,
        );
        reg(
            &mut r,
            &n("status_writes"),
            "Kubernetes mode: status writes by result (written, unchanged, stale: the object changed generation or is gone, failed)",
            &c.status_writes,
        );
        reg(
            &mut r,
            &n("status_write_conflicts"),
            "Kubernetes mode: status patches refused with 409 Conflict (merged again and retried)",
            &c.status_conflicts,
        );
        reg(
            &mut r,
            &n("leader"),
            "Kubernetes mode: 1 while this controller replica holds the leader Lease, else 0",
            &c.leader,
        );
        reg(
            &mut r,
            &n("access_log_dropped_lines"),
            "Access-log lines dropped because the writer fell behind",
            &m.access_log_dropped,
        );
        reg(
            &mut r,
            &n("trace_spans_dropped"),
            "Spans dropped because the exporter fell behind",
            &m.spans_dropped,
        );
        Metrics { registry: r, ..m }
    }

    /// The connection counters of a port (`bind` address, IR protocol in lower case).
    pub fn port(&self, bind: &str, protocol: &str) -> PortStats {
        let l: Labels = vec![("port", bind.to_owned()), ("protocol", protocol.to_owned())];
        let pl: Labels = vec![("port", bind.to_owned())];
        PortStats {
            accepted: self.downstream_total.get_or_create(&l).clone(),
            active: self.downstream_active.get_or_create(&l).clone(),
            handshakes: self.tls_handshakes.get_or_create(&pl).clone(),
            port: bind.into(),
        }
    }

    /// Count a failed handshake on `port`.
    pub fn tls_failure(&self, port: &str, reason: &'static str) {
        let l: Labels = vec![("port", port.to_owned()), ("reason", reason.to_owned())];
        self.tls_failures.get_or_create(&l).inc();
    }

    /// Count a new upstream connection of `client` (`http1` or `hyper`).
    pub fn upstream_connection(&self, client: &'static str) -> &Counter {
        static H1: OnceLock<Counter> = OnceLock::new();
        static HYPER: OnceLock<Counter> = OnceLock::new();
        let cell = if client == "http1" { &H1 } else { &HYPER };
        cell.get_or_init(|| {
            let l: Labels = vec![("client", client.to_owned())];
            self.upstream_total.get_or_create(&l).clone()
        })
    }

    /// A new upstream connection of `client` (`http1` or `hyper`): counted
    /// in `portcullis_upstream_connections_total`, and open in
    /// `portcullis_upstream_connections_active` until the guard drops (keep
    /// it with the socket). Two atomic additions and a reference-count
    /// increment: no lock, no allocation.
    pub fn upstream_opened(&self, client: &'static str) -> ActiveGuard {
        static H1: OnceLock<Gauge> = OnceLock::new();
        static HYPER: OnceLock<Gauge> = OnceLock::new();
        let cell = if client == "http1" { &H1 } else { &HYPER };
        let g = cell.get_or_init(|| {
            let l: Labels = vec![("client", client.to_owned())];
            self.upstream_active.get_or_create(&l).clone()
        });
        self.upstream_connection(client).inc();
        g.inc();
        ActiveGuard(g.clone())
    }

    /// Upstream connections of `client` open now.
    pub fn upstream_open(&self, client: &'static str) -> i64 {
        let l: Labels = vec![("client", client.to_owned())];
        self.upstream_active.get_or_create(&l).get()
    }

    /// The decision counters of a rate-limit policy's `scope` (`local` or
    /// `global`). Takes the family's lock: called when a table is built.
    pub fn rate_limit(&self, policy: &str, scope: &'static str) -> RateLimitStats {
        let c = |outcome: &'static str| {
            let l: Labels = vec![
                ("policy", policy.to_owned()),
                ("scope", scope.to_owned()),
                ("outcome", outcome.to_owned()),
            ];
            self.rate_limit.get_or_create(&l).clone()
        };
        RateLimitStats {
            allowed: c("allowed"),
            limited: c("limited"),
            shadow_limited: c("shadow_limited"),
            failed_open: c("failed_open"),
            failed_closed: c("failed_closed"),
        }
    }

    /// The decision counters of a SecurityPolicy (`namespace/name`). Takes
    /// the family's lock: called when a table is built.
    pub fn auth(&self, policy: &str) -> AuthStats {
        let c = |outcome: &'static str| {
            let l: Labels = vec![
                ("policy", policy.to_owned()),
                ("outcome", outcome.to_owned()),
            ];
            self.auth.get_or_create(&l).clone()
        };
        AuthStats {
            allowed: c("allowed"),
            denied: c("denied"),
            invalid: c("invalid"),
            preflight: c("preflight"),
        }
    }

    /// The counters of layer-4 sessions of a route (`protocol`: `tcp`, `tls`, `udp`).
    /// Takes the family's lock: called once per session, not per packet.
    pub fn l4(&self, ir_listener: &str, route: &str, protocol: &'static str) -> L4Stats {
        let (gateway, listener) = crate::http::split_listener(ir_listener);
        let base: Labels = vec![
            ("gateway", gateway.to_owned()),
            ("listener", listener.to_owned()),
            ("route", route.to_owned()),
            ("protocol", protocol.to_owned()),
        ];
        let dir = |d: &str| {
            let mut l = base.clone();
            l.push(("direction", d.to_owned()));
            self.l4_bytes.get_or_create(&l).clone()
        };
        L4Stats {
            sessions: self.l4_sessions.get_or_create(&base).clone(),
            active: self.l4_active.get_or_create(&base).clone(),
            rx: dir("rx"),
            tx: dir("tx"),
        }
    }
}

/// Connection counters of one port.
#[derive(Clone, Debug)]
pub struct PortStats {
    accepted: Counter,
    active: Gauge,
    handshakes: Counter,
    port: Arc<str>,
}

/// Decrements the active-connection gauge when dropped.
#[derive(Debug)]
pub struct ActiveGuard(Gauge);

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl PortStats {
    /// A connection was accepted; it counts as active until the guard drops.
    #[inline]
    pub fn accepted(&self) -> ActiveGuard {
        self.accepted.inc();
        self.active.inc();
        ActiveGuard(self.active.clone())
    }

    /// A TLS handshake completed.
    #[inline]
    pub fn handshake(&self) {
        self.handshakes.inc();
    }

    /// A TLS handshake failed.
    pub fn handshake_failed(&self, reason: &'static str) {
        metrics().tls_failure(&self.port, reason);
    }
}

/// Counters of one layer-4 route.
#[derive(Clone, Debug)]
pub struct L4Stats {
    sessions: Counter,
    active: Gauge,
    rx: Counter,
    tx: Counter,
}

impl L4Stats {
    /// A session opened; it counts as active until the guard drops.
    pub fn open(&self) -> ActiveGuard {
        self.sessions.inc();
        self.active.inc();
        ActiveGuard(self.active.clone())
    }

    /// Bytes from the client (`rx`) and to the client (`tx`).
    pub fn bytes(&self, rx: u64, tx: u64) {
        self.rx.inc_by(rx);
        self.tx.inc_by(tx);
    }
}

impl Control {
    /// A reload was applied (`ok`: no invalid object, every port bound).
    pub fn reload(&self, ok: bool, generation: i64, translate: Duration) {
        self.translate.observe(translate.as_secs_f64());
        self.applied(ok, generation);
    }

    /// A configuration was applied without a translation here (`portcullis
    /// proxy` applies what its controller translated).
    pub fn applied(&self, ok: bool, generation: i64) {
        let l: Labels = vec![("result", if ok { "success" } else { "error" }.to_owned())];
        self.reloads.get_or_create(&l).inc();
        self.generation.set(generation);
        if ok {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64());
            self.last_success.set(now);
        }
    }

    /// A status write finished: `written`, `unchanged`, `stale` or `failed`.
    pub fn status_write(&self, result: &str) {
        let l: Labels = vec![("result", result.to_owned())];
        self.status_writes.get_or_create(&l).inc();
    }

    /// Replace the object and condition gauges: `objects` by kind, and
    /// `conditions` by (kind, type, status, reason).
    pub fn objects<'a>(
        &self,
        objects: impl IntoIterator<Item = (&'a str, i64)>,
        conditions: impl IntoIterator<Item = ([&'a str; 4], i64)>,
    ) {
        self.objects.clear();
        for (kind, n) in objects {
            let l: Labels = vec![("kind", kind.to_owned())];
            self.objects.get_or_create(&l).set(n);
        }
        self.conditions.clear();
        for ([kind, type_, status, reason], n) in conditions {
            let l: Labels = vec![
                ("kind", kind.to_owned()),
                ("type", type_.to_owned()),
                ("status", status.to_owned()),
                ("reason", reason.to_owned()),
            ];
            self.conditions.get_or_create(&l).set(n);
        }
    }
}

#[cfg(test)]
mod dashboard_tests {
    use std::collections::BTreeSet;
    use std::sync::Arc;

    /// Every metric the Grafana dashboard queries is one the registry has
    /// (a renamed metric would leave a panel silently empty).
    #[test]
    fn the_grafana_dashboard_queries_metrics_that_exist() {
        // A family is exposed once it has a series: give each one.
        let m = super::metrics();
        let _ = m.port("127.0.0.1:1", "https");
        m.tls_failure("127.0.0.1:1", "eof");
        drop(m.upstream_opened("http1"));
        let backend: Arc<dyn crate::health::BackendHealth> = Arc::new(OneEndpoint);
        m.health.register(Arc::downgrade(&backend));
        let _ = m.l4("ns/gw/tcp", "ns/r", "tcp");
        let _ = m.rate_limit("ns/p", "local");
        let _ = m.auth("ns/p");
        m.control
            .reload(true, 1, std::time::Duration::from_millis(1));
        m.control.objects(
            [("HTTPRoute", 1)],
            [(["HTTPRoute", "Accepted", "True", "Accepted"], 1)],
        );
        m.control.status_write("written");
        let text = super::render();
        let families: BTreeSet<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split(' ').next())
            .collect();
        assert!(families.contains("portcullis_http_requests"), "{text}");
        let json = include_str!("../../../deploy/grafana/portcullis.json");
        let mut checked = 0;
        for (i, _) in json.match_indices("portcullis_") {
            let name: String = json[i..]
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                .collect();
            let known = families.contains(name.as_str())
                || ["_total", "_bucket", "_sum", "_count"]
                    .iter()
                    .any(|s| name.strip_suffix(s).is_some_and(|b| families.contains(b)));
            assert!(known, "the dashboard queries {name}, which is not a metric");
            checked += 1;
        }
        assert!(checked > 20, "only {checked} names found");
        drop(backend);
    }

    /// A backend with one healthy endpoint.
    struct OneEndpoint;

    impl crate::health::BackendHealth for OneEndpoint {
        fn backend_name(&self) -> &str {
            "ns/s:80"
        }
        fn endpoint_states(
            &self,
            f: &mut dyn FnMut(std::net::SocketAddr, crate::health::EndpointHealth),
        ) {
            f(
                ([127, 0, 0, 1], 1).into(),
                crate::health::EndpointHealth::Healthy,
            );
        }
    }
}
