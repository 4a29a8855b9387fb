//! Command-line options of `portcullis controller` and `portcullis proxy`.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Options of `portcullis controller`.
#[derive(clap::Args, Debug, Clone)]
pub struct ControllerArgs {
    /// Read namespaced objects only in these namespaces, comma-separated
    /// (default: every namespace). Namespaced `Role`s are then enough;
    /// GatewayClasses, Namespaces and IngressClasses are still read cluster-wide.
    #[arg(
        long = "watch-namespaces",
        visible_alias = "namespace",
        env = "PORTCULLIS_WATCH_NAMESPACES",
        value_delimiter = ','
    )]
    pub watch_namespaces: Vec<String>,
    /// Read Secrets only in these namespaces, comma-separated (default: every
    /// watched namespace); each must be watched. A Secret referenced from
    /// elsewhere is treated as missing.
    #[arg(
        long = "secret-namespaces",
        env = "PORTCULLIS_SECRET_NAMESPACES",
        value_delimiter = ','
    )]
    pub secret_namespaces: Vec<String>,
    /// `spec.controllerName` of the GatewayClasses this controller serves.
    #[arg(long, default_value = portcullis_translate::CONTROLLER_NAME)]
    pub controller_name: String,
    /// Name of the coordination.k8s.io Lease used for leader election.
    #[arg(long, default_value = "portcullis-controller")]
    pub lease_name: String,
    /// Namespace of the Lease (default: the pod's namespace, from POD_NAMESPACE).
    #[arg(long, env = "POD_NAMESPACE", default_value = "portcullis-system")]
    pub lease_namespace: String,
    /// This replica's identity in the Lease (default: the pod name, from POD_NAME).
    #[arg(long, env = "POD_NAME")]
    pub identity: Option<String>,
    /// Seconds a leader's Lease stays valid without renewal.
    #[arg(long, default_value_t = 15)]
    pub lease_duration: u64,
    /// Seconds between Lease renewals (and acquisition attempts).
    #[arg(long, default_value_t = 2)]
    pub lease_retry: u64,
    /// Status writes per second (token bucket refill rate).
    #[arg(long, default_value_t = 500.0)]
    pub status_qps: f64,
    /// Status writes allowed in one burst (token bucket size).
    #[arg(long, default_value_t = 1000)]
    pub status_burst: u32,
    /// Status writes in flight at once.
    #[arg(long, default_value_t = 32)]
    pub status_concurrency: usize,
    /// Milliseconds to wait for more changes before translating.
    #[arg(long, default_value_t = 100)]
    pub debounce_ms: u64,
    /// Address the config stream (HTTP/2) listens on.
    #[arg(long, default_value = "0.0.0.0:9977")]
    pub stream_listen: SocketAddr,
    /// URL provisioned proxies use to reach the config stream (`https://`;
    /// its host is the name the stream's certificate is issued for).
    #[arg(
        long,
        default_value = "https://portcullis-controller.portcullis-system.svc:9977"
    )]
    pub stream_url: String,
    /// More names (DNS or IP) for the stream's certificate.
    #[arg(long)]
    pub stream_tls_san: Vec<String>,
    /// Secret (in the Lease namespace) holding the config stream's CA; created if absent.
    #[arg(long, default_value = "portcullis-stream-ca")]
    pub ca_secret: String,
    /// Image of provisioned proxies (normally the controller's own image).
    #[arg(
        long,
        env = "PORTCULLIS_IMAGE",
        default_value = "ghcr.io/portcullis-dev/portcullis:latest"
    )]
    pub proxy_image: String,
    /// Log filter passed to provisioned proxies.
    #[arg(long, default_value = "info")]
    pub proxy_log_level: String,
    /// Do not create Deployments and Services for Gateways (bring your own proxies).
    #[arg(long)]
    pub no_provisioning: bool,
    /// Address of `/healthz` and `/readyz`.
    #[arg(long, default_value = "0.0.0.0:9901")]
    pub admin: SocketAddr,
    /// Serve the dashboard (`/ui`), `/explain`, `/status` and `/config` of
    /// the controller's translation on this address, e.g. `127.0.0.1:9903`
    /// (reach it with `kubectl port-forward`). Off when not given; anything
    /// but a loopback address needs `--dashboard-token-file`.
    #[arg(long)]
    pub dashboard: Option<SocketAddr>,
    /// A file holding the bearer token the dashboard's documents require.
    #[arg(long)]
    pub dashboard_token_file: Option<PathBuf>,
    /// The port of the proxies' `/metrics` (their `--admin`), which the
    /// dashboard reads for its traffic numbers, at the address each proxy's
    /// config stream comes from.
    #[arg(long, default_value_t = 9902)]
    pub proxy_metrics_port: u16,
}

impl ControllerArgs {
    /// The defaults, as `portcullis controller` with no options would have them.
    pub fn defaults() -> Self {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct P {
            #[command(flatten)]
            a: ControllerArgs,
        }
        P::parse_from(["controller"]).a
    }

    /// The namespaces read (`--watch-namespaces`, `--secret-namespaces`).
    pub fn scope(&self) -> Result<crate::scope::Scope, crate::scope::ScopeError> {
        crate::scope::Scope::new(&self.watch_namespaces, &self.secret_namespaces)
    }
}

/// Access-log options of `portcullis run` and `portcullis proxy`
/// (formats and fields: `docs/observability.md`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct AccessLogArgs {
    /// Access log: `json`, `text` (logfmt) or `off` (default: `text` for
    /// `run`, `json` for `proxy`).
    #[arg(long, value_parser = parse_format)]
    pub access_log: Option<portcullis_obs::accesslog::Format>,
    /// Write the access log to this file (reopened on SIGHUP) instead of stdout.
    #[arg(long)]
    pub access_log_file: Option<PathBuf>,
    /// Comma-separated fields, in order (default: all but `query`).
    // `::std::vec::Vec`: one value parsed into a list (a bare `Vec` makes
    // clap expect a list of values, and panic when it reads this one).
    #[arg(long, value_parser = portcullis_obs::accesslog::parse_fields)]
    pub access_log_fields: Option<::std::vec::Vec<portcullis_obs::accesslog::Field>>,
}

fn parse_format(s: &str) -> Result<portcullis_obs::accesslog::Format, String> {
    s.parse()
}

impl AccessLogArgs {
    /// Start the access-log writer (format `default` unless given), and
    /// reopen its file on SIGHUP. Call inside a Tokio runtime.
    pub fn install(&self, default: portcullis_obs::accesslog::Format) -> std::io::Result<()> {
        use portcullis_obs::accesslog::{self, Config, Output};
        let format = self.access_log.unwrap_or(default);
        let output = match &self.access_log_file {
            Some(p) => Output::File(p.clone()),
            None => Output::Stdout,
        };
        accesslog::install(Config {
            format,
            fields: self
                .access_log_fields
                .clone()
                .unwrap_or_else(accesslog::default_fields),
            output,
        })?;
        #[cfg(unix)]
        if self.access_log_file.is_some() {
            let mut hup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
            tokio::spawn(async move {
                while hup.recv().await.is_some() {
                    tracing::info!("SIGHUP: reopening the access log");
                    accesslog::reopen();
                }
            });
        }
        Ok(())
    }
}

/// Tracing options of `portcullis run` and `portcullis proxy`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct TraceArgs {
    /// Export a server span per request to this OTLP endpoint: OTLP/HTTP
    /// (protobuf), e.g. `http://otel-collector:4318/v1/traces` (`https://`
    /// over TLS), or OTLP/gRPC, e.g. `grpc://otel-collector:4317`
    /// (`grpcs://` over TLS); also turns on trace context propagation. Off
    /// when not given.
    #[arg(long)]
    pub otlp_endpoint: Option<String>,
    /// `grpc` or `http/protobuf` (default: `grpc` for a `grpc://` or
    /// `grpcs://` endpoint, else `http/protobuf`).
    #[arg(long)]
    pub otlp_protocol: Option<portcullis_obs::trace::ExportProtocol>,
    /// For an `https://` or `grpcs://` endpoint: trust only the CA
    /// certificates in this PEM file (default: the system's roots).
    #[arg(long)]
    pub otlp_ca_file: Option<PathBuf>,
    /// Trace-context formats read from requests and written upstream, comma
    /// separated: `tracecontext` (W3C), `b3` (single header), `b3multi`
    /// (`X-B3-*`).
    #[arg(long, default_value = "tracecontext")]
    pub trace_propagation: portcullis_obs::trace::Propagation,
    /// Ratio of new traces sampled (0.0 to 1.0); a request whose
    /// `traceparent` is sampled is always followed.
    #[arg(long, default_value_t = 1.0)]
    pub trace_sample_ratio: f64,
    /// `service.name` of the spans.
    #[arg(long, default_value = "portcullis")]
    pub trace_service_name: String,
}

impl TraceArgs {
    /// Start exporting when an endpoint is given (inside a Tokio runtime,
    /// which runs the exports).
    pub fn install(&self) -> Result<(), portcullis_obs::trace::TraceError> {
        let Some(endpoint) = &self.otlp_endpoint else {
            return Ok(());
        };
        let protocol = self
            .otlp_protocol
            .unwrap_or_else(|| portcullis_obs::trace::ExportProtocol::of_endpoint(endpoint));
        portcullis_obs::trace::install(
            &portcullis_obs::trace::Config {
                endpoint: endpoint.clone(),
                protocol,
                ca_file: self.otlp_ca_file.clone(),
                propagation: self.trace_propagation,
                ratio: self.trace_sample_ratio,
                service_name: self.trace_service_name.clone(),
                ..Default::default()
            },
            tokio::runtime::Handle::current(),
        )?;
        tracing::info!(%endpoint, ?protocol, ratio = self.trace_sample_ratio, "exporting traces");
        Ok(())
    }

    /// Export what is queued and stop, without blocking the runtime.
    pub async fn shutdown(&self) {
        if self.otlp_endpoint.is_some() {
            let _ = tokio::task::spawn_blocking(portcullis_obs::trace::shutdown).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::ControllerArgs;
    use crate::scope::ScopeError;

    fn parse(args: &[&str]) -> Result<ControllerArgs, clap::Error> {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct P {
            #[command(flatten)]
            a: ControllerArgs,
        }
        P::try_parse_from(std::iter::once("controller").chain(args.iter().copied())).map(|p| p.a)
    }

    #[test]
    fn namespace_flags() {
        let a = parse(&["--watch-namespaces", "b,a", "--secret-namespaces=a"]).unwrap();
        assert_eq!(a.watch_namespaces, ["b", "a"]);
        let s = a.scope().unwrap();
        assert_eq!(s.watch_lists(), [Some("a".into()), Some("b".into())]);
        assert_eq!(s.secret_lists(), [Some("a".into())]);
        // Repeated flags add up; the old single `--namespace` still works.
        let a = parse(&["--watch-namespaces", "a", "--namespace", "c"]).unwrap();
        assert_eq!(a.watch_namespaces, ["a", "c"]);
        let a = parse(&[]).unwrap();
        assert_eq!(a.scope().unwrap().watch_lists(), [None]);
        let a = parse(&["--watch-namespaces", "a", "--secret-namespaces", "b"]).unwrap();
        assert_eq!(a.scope(), Err(ScopeError::NotWatched("b".into())));
        let a = parse(&["--secret-namespaces", "Bad"]).unwrap();
        assert!(matches!(a.scope(), Err(ScopeError::InvalidName { .. })));
    }
}
