//! `portcullis proxy`: the data plane of one Gateway, fed by the controller
//! over its config stream ([`portcullis_kube::stream`]). This crate is where
//! Kubernetes mode meets the data plane, so that the controller crate
//! (`portcullis-kube`) depends on translation and never on the data plane.
//!
//! Ready (`/readyz`) only once the first configuration is served; keeps
//! serving the last configuration while the controller is away; reconnects
//! with backoff; reports what it applied at `/state` on the admin port (the
//! controller reads it back into the Gateway's status,
//! [`portcullis_kube::proxystate`]).
//!
//! Shutdown (SIGTERM), as a rolling update needs it to lose no request:
//! 1. turn unready at once, so the endpoint is taken out of the Service;
//! 2. keep accepting and serving for `--shutdown-delay` while that removal
//!    reaches every load balancer and kube-proxy;
//! 3. stop accepting and drain open connections for up to `--drain-timeout`.
//!
//! The provisioned Deployment's `terminationGracePeriodSeconds` covers both.
#![deny(missing_docs)]

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use portcullis_kube::args::{AccessLogArgs, TraceArgs};
use portcullis_kube::proxystate::ProxyState;
use portcullis_kube::stream::client::{Follow, follow};
use portcullis_kube::stream::filter::rebind;
use portcullis_kube::{KubeModeError, health};

/// Options of `portcullis proxy`.
#[derive(clap::Args, Debug, Clone)]
pub struct ProxyArgs {
    /// URL of the controller's config stream, e.g. `https://portcullis-controller.portcullis-system.svc:9977` (`https://` only).
    #[arg(long)]
    pub controller: String,
    /// CA bundle (PEM) the controller's certificate must chain to, re-read on every connection.
    #[arg(long, default_value = "/var/run/secrets/portcullis/ca.crt")]
    pub controller_ca: PathBuf,
    /// The Gateway this proxy serves, `namespace/name`.
    #[arg(long)]
    pub gateway: String,
    /// Projected ServiceAccount token (audience `portcullis`), re-read on every connection.
    #[arg(long, default_value = "/var/run/secrets/portcullis/token")]
    pub token_file: PathBuf,
    /// Address of `/healthz` and `/readyz` (ready once the first configuration is served).
    #[arg(long, default_value = "0.0.0.0:9902")]
    pub admin: SocketAddr,
    /// Address every listener binds in this pod.
    #[arg(long, default_value_t = IpAddr::V4(Ipv4Addr::UNSPECIFIED))]
    pub bind_address: IpAddr,
    /// Seconds to keep accepting after SIGTERM, unready, before draining
    /// (the time endpoint removal takes to reach every client).
    #[arg(long, default_value_t = 5)]
    pub shutdown_delay: u64,
    /// Data-plane limits and timeouts.
    #[command(flatten)]
    pub limits: portcullis_dataplane::cli::DataplaneArgs,
    /// Access log.
    #[command(flatten)]
    pub access_log: AccessLogArgs,
    /// Traces.
    #[command(flatten)]
    pub trace: TraceArgs,
}

/// Run the proxy until SIGINT/SIGTERM.
pub async fn run_proxy(args: ProxyArgs) -> Result<(), KubeModeError> {
    args.access_log
        .install(portcullis_obs::accesslog::Format::Json)
        .map_err(|e| KubeModeError::io("access log", e))?;
    args.trace
        .install()
        .map_err(|e| KubeModeError::InvalidArgument(e.to_string()))?;
    let trace = args.trace.clone();
    let r = run_proxy_until(args, portcullis_kube::controller::shutdown_signal(), |_| {}).await;
    trace.shutdown().await;
    r
}

/// Run the proxy until `shutdown` resolves; `on_admin` is told the admin address once bound.
pub async fn run_proxy_until(
    args: ProxyArgs,
    shutdown: impl Future<Output = ()>,
    on_admin: impl FnOnce(SocketAddr),
) -> Result<(), KubeModeError> {
    if !args.gateway.contains('/') {
        return Err(KubeModeError::InvalidArgument(format!(
            "--gateway must be namespace/name, not {:?}",
            args.gateway
        )));
    }
    if !args.controller.starts_with("https://") {
        return Err(KubeModeError::InvalidArgument(format!(
            "--controller must be an https:// URL, not {:?}",
            args.controller
        )));
    }
    let (ready_tx, ready_rx) = watch::channel(false);
    let mut state = ProxyState {
        gateway: args.gateway.clone(),
        ..Default::default()
    };
    let (state_tx, state_rx) = watch::channel(render(&state));
    let (admin, admin_task) = health::serve(
        args.admin,
        ready_rx,
        watch::channel(String::new()).1,
        state_rx,
    )
    .await?;
    on_admin(admin);
    // The same data-plane options, flags and defaults as `portcullis run`.
    let dataplane = portcullis_dataplane::Dataplane::new(args.limits.options());
    let (tx, mut rx) = mpsc::channel(1);
    let follower = tokio::spawn(follow(
        Follow {
            controller: args.controller.clone(),
            ca_file: args.controller_ca.clone(),
            gateway: args.gateway.clone(),
            token_file: args.token_file.clone(),
            min_backoff: Duration::from_millis(200),
            max_backoff: Duration::from_secs(30),
        },
        tx,
    ));
    tokio::pin!(shutdown);
    // Set once SIGTERM arrives: serve (unready) until then, then drain.
    let mut drain_at: Option<tokio::time::Instant> = None;
    loop {
        let deadline = drain_at.unwrap_or_else(tokio::time::Instant::now);
        tokio::select! {
            _ = &mut shutdown, if drain_at.is_none() => {
                let delay = Duration::from_secs(args.shutdown_delay);
                tracing::info!(delay_s = args.shutdown_delay, "shutting down: unready, still serving until the endpoint is removed");
                ready_tx.send_replace(false);
                state.draining = true;
                state_tx.send_replace(render(&state));
                drain_at = Some(tokio::time::Instant::now() + delay);
            }
            _ = tokio::time::sleep_until(deadline), if drain_at.is_some() => break,
            msg = rx.recv() => {
                let Some(msg) = msg else { break };
                let config = Arc::new(rebind(msg.config, args.bind_address));
                let ports = config.ports.len();
                let report = dataplane.apply(config).await;
                for (addr, e) in &report.bind_errors {
                    tracing::error!(%addr, "cannot bind: {e}");
                }
                portcullis_obs::metrics().control.applied(
                    report.bind_errors.is_empty() && report.tls_errors.is_empty(),
                    i64::try_from(msg.version).unwrap_or(i64::MAX),
                );
                tracing::info!(version = msg.version, generation = msg.generation, ports, "configuration applied");
                state.version = msg.version;
                state.generation = msg.generation;
                state.bind_errors = report
                    .bind_errors
                    .iter()
                    .map(|(addr, e)| (addr.port(), e.to_string()))
                    .collect();
                state_tx.send_replace(render(&state));
                if drain_at.is_none() {
                    ready_tx.send_replace(true);
                }
            }
        }
    }
    tracing::info!("shutting down: draining connections");
    ready_tx.send_replace(false);
    follower.abort();
    dataplane.shutdown().await;
    admin_task.abort();
    Ok(())
}

fn render(state: &ProxyState) -> String {
    state.to_json()
}
