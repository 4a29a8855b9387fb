//! Command-line flags for the data plane's limits, shared by every command
//! that runs a data plane (`portcullis run` and `portcullis proxy`), so both
//! modes have the same flags and defaults (those of [`Options::default`]).
//! Enabled by the `cli` feature.

use std::time::Duration;

use crate::Options;

/// Data-plane limits and timeouts (see SECURITY.md for the whole table).
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub struct DataplaneArgs {
    /// Data-plane worker threads, one single-threaded runtime and one
    /// `SO_REUSEPORT` accept socket per port each (default: the number of
    /// cores this process may use, cgroup CPU quota included).
    #[arg(long, value_parser = positive)]
    pub workers: Option<usize>,
    /// Seconds to let in-flight requests finish on shutdown.
    #[arg(long, default_value_t = secs(Options::default().drain_timeout))]
    pub drain_timeout: u64,
    /// Seconds allowed for a request head to arrive (and for the first
    /// request on a new connection, and for a TLS handshake).
    #[arg(long, default_value_t = secs(Options::default().header_read_timeout), value_parser = clap::value_parser!(u64).range(1..))]
    pub header_read_timeout: u64,
    /// Seconds a keep-alive client connection with nothing in flight stays open.
    #[arg(long, default_value_t = secs(Options::default().idle_timeout), value_parser = clap::value_parser!(u64).range(1..))]
    pub idle_timeout: u64,
    /// Longest wait, in seconds, between two reads of a request body; past
    /// it the request is answered 408 and the connection closed.
    #[arg(long, default_value_t = secs(Options::default().body_idle_timeout), value_parser = clap::value_parser!(u64).range(1..))]
    pub body_idle_timeout: u64,
    /// Longest time, in seconds, to receive a whole request body; past it
    /// the request is answered 408 and the connection closed.
    #[arg(long, default_value_t = secs(Options::default().body_timeout), value_parser = clap::value_parser!(u64).range(1..))]
    pub body_timeout: u64,
    /// Longest wait, in seconds, for an upstream response head once the
    /// request was sent (504 past it); a route's `timeouts.backendRequest`
    /// replaces it.
    #[arg(long, default_value_t = secs(Options::default().upstream_header_timeout), value_parser = clap::value_parser!(u64).range(1..))]
    pub upstream_header_timeout: u64,
    /// Seconds an idle pooled upstream connection is kept.
    #[arg(long, default_value_t = secs(Options::default().upstream_idle_timeout), value_parser = clap::value_parser!(u64).range(1..))]
    pub upstream_idle_timeout: u64,
    /// Most client connections open at once on one port; past it new
    /// connections wait in the kernel's accept backlog.
    #[arg(long, default_value_t = Options::default().max_connections_per_port, value_parser = positive)]
    pub max_connections_per_port: usize,
    /// Largest request body in bytes (413 past it); 0 for no limit.
    #[arg(long, default_value_t = Options::default().max_body_bytes.unwrap_or(0))]
    pub max_request_body_bytes: u64,
    /// Proxies in front of the gateway whose `X-Forwarded-For` entries are
    /// trusted: the client is the N-th address from the right. 0 (the
    /// default) trusts no inbound forwarding header.
    #[arg(long, default_value_t = 0)]
    pub trusted_hops: u32,
    /// Peers in these networks are trusted proxies (repeat or comma-separate);
    /// the client is the rightmost `X-Forwarded-For` address outside them.
    #[arg(long, value_delimiter = ',')]
    pub trusted_cidrs: Vec<ipnet::IpNet>,
    /// Redis for BackendTrafficPolicy global rate limits: a `redis://`,
    /// `rediss://` (TLS) or `unix://` URL; several comma-separated URLs are
    /// the seed nodes of a Redis Cluster. Also read from the environment (a
    /// URL with a password stays out of the command line).
    #[arg(long, env = "PORTCULLIS_RATE_LIMIT_REDIS", value_delimiter = ',')]
    pub rate_limit_redis: Vec<String>,
    /// The `--rate-limit-redis` URL is one node of a Redis Cluster.
    #[arg(long)]
    pub rate_limit_redis_cluster: bool,
    /// Milliseconds a global rate-limit decision may take (Redis round trip)
    /// before it counts as failed.
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub rate_limit_redis_timeout_ms: u64,
    /// When Redis cannot decide, refuse requests that global rules select
    /// (503) instead of letting them through (the default: fail open).
    #[arg(long)]
    pub rate_limit_fail_closed: bool,
    /// The zone this proxy runs in, for BackendTrafficPolicy zone-aware
    /// routing (compared with the EndpointSlice `zone` and `hints.forZones`
    /// of the endpoints). Empty: none.
    #[arg(long, env = "PORTCULLIS_ZONE", default_value = "")]
    pub zone: String,
    /// Add `portcullis_endpoint_healthy{backend,endpoint}` to `/metrics`:
    /// one series per endpoint (1 in service, 0 ejected or unhealthy). Off
    /// by default, so that series grow with backends, not endpoints.
    #[arg(long)]
    pub metrics_endpoint_labels: bool,
}

fn positive(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("{s:?} is not a positive number")),
    }
}

fn secs(d: Duration) -> u64 {
    d.as_secs()
}

impl Default for DataplaneArgs {
    fn default() -> Self {
        DataplaneArgs::from(&Options::default())
    }
}

impl From<&Options> for DataplaneArgs {
    fn from(o: &Options) -> Self {
        DataplaneArgs {
            workers: (o.workers > 0).then_some(o.workers),
            drain_timeout: secs(o.drain_timeout),
            header_read_timeout: secs(o.header_read_timeout),
            idle_timeout: secs(o.idle_timeout),
            body_idle_timeout: secs(o.body_idle_timeout),
            body_timeout: secs(o.body_timeout),
            upstream_header_timeout: secs(o.upstream_header_timeout),
            upstream_idle_timeout: secs(o.upstream_idle_timeout),
            max_connections_per_port: o.max_connections_per_port,
            max_request_body_bytes: o.max_body_bytes.unwrap_or(0),
            trusted_hops: o.client_ip.trusted_hops,
            trusted_cidrs: o.client_ip.trusted_cidrs.clone(),
            rate_limit_redis: o
                .rate_limit
                .redis
                .as_ref()
                .map(|r| r.urls.clone())
                .unwrap_or_default(),
            rate_limit_redis_cluster: o.rate_limit.redis.as_ref().is_some_and(|r| r.cluster),
            rate_limit_redis_timeout_ms: o
                .rate_limit
                .redis
                .as_ref()
                .map(|r| u64::try_from(r.timeout.as_millis()).unwrap_or(u64::MAX))
                .unwrap_or(100),
            rate_limit_fail_closed: !o.rate_limit.fail_open,
            zone: o.zone.clone().unwrap_or_default(),
            metrics_endpoint_labels: o.metrics_endpoint_labels,
        }
    }
}

impl DataplaneArgs {
    /// Set these limits in `opts`.
    pub fn apply(&self, opts: &mut Options) {
        opts.workers = self
            .workers
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1);
        opts.drain_timeout = Duration::from_secs(self.drain_timeout);
        opts.header_read_timeout = Duration::from_secs(self.header_read_timeout);
        opts.idle_timeout = Duration::from_secs(self.idle_timeout);
        opts.body_idle_timeout = Duration::from_secs(self.body_idle_timeout);
        opts.body_timeout = Duration::from_secs(self.body_timeout);
        opts.upstream_header_timeout = Duration::from_secs(self.upstream_header_timeout);
        opts.upstream_idle_timeout = Duration::from_secs(self.upstream_idle_timeout);
        opts.max_connections_per_port = self.max_connections_per_port;
        opts.max_body_bytes =
            (self.max_request_body_bytes > 0).then_some(self.max_request_body_bytes);
        opts.client_ip = crate::client_ip::ClientIpDetection {
            trusted_hops: self.trusted_hops,
            trusted_cidrs: self.trusted_cidrs.clone(),
            ..Default::default()
        };
        opts.rate_limit.redis =
            (!self.rate_limit_redis.is_empty()).then(|| crate::ratelimit::redis::RedisTarget {
                urls: self.rate_limit_redis.clone(),
                cluster: self.rate_limit_redis_cluster,
                timeout: Duration::from_millis(self.rate_limit_redis_timeout_ms),
            });
        opts.rate_limit.fail_open = !self.rate_limit_fail_closed;
        opts.zone = (!self.zone.is_empty()).then(|| self.zone.clone());
        opts.metrics_endpoint_labels = self.metrics_endpoint_labels;
    }

    /// [`Options::default`] with these limits.
    pub fn options(&self) -> Options {
        let mut o = Options::default();
        self.apply(&mut o);
        o
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct P {
        #[command(flatten)]
        a: DataplaneArgs,
    }

    #[test]
    fn the_flags_default_to_the_options_defaults_and_set_them() {
        let p = P::parse_from(["x"]);
        assert_eq!(p.a, DataplaneArgs::default());
        let p = P::parse_from([
            "x",
            "--body-idle-timeout",
            "3",
            "--body-timeout",
            "7",
            "--upstream-header-timeout",
            "9",
            "--max-connections-per-port",
            "5",
        ]);
        let o = p.a.options();
        assert_eq!(o.body_idle_timeout, Duration::from_secs(3));
        assert_eq!(o.body_timeout, Duration::from_secs(7));
        assert_eq!(o.upstream_header_timeout, Duration::from_secs(9));
        assert_eq!(o.max_connections_per_port, 5);
        assert!(P::try_parse_from(["x", "--body-timeout", "0"]).is_err());
        assert!(!P::parse_from(["x"]).a.options().metrics_endpoint_labels);
        let o = P::parse_from(["x", "--metrics-endpoint-labels"])
            .a
            .options();
        assert!(o.metrics_endpoint_labels);
    }

    /// `run` and `proxy` flatten these flags: both serve on worker threads,
    /// one per core unless `--workers` says otherwise.
    #[test]
    fn workers_default_to_the_cores_and_drain_to_ten_seconds() {
        let o = P::parse_from(["x"]).a.options();
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(o.workers, cores);
        assert_eq!(o.drain_timeout, Duration::from_secs(10));
        let o = P::parse_from(["x", "--workers", "3", "--drain-timeout", "2"])
            .a
            .options();
        assert_eq!(o.workers, 3);
        assert_eq!(o.drain_timeout, Duration::from_secs(2));
        assert!(P::try_parse_from(["x", "--workers", "0"]).is_err());
    }
}
