//! `portcullis proxy`: the data plane of one Gateway, fed by the controller.
//!
//! Ready (`/readyz`) only once the first configuration is served; keeps
//! serving the last configuration while the controller is away; reconnects
//! with backoff; on SIGTERM turns unready, stops accepting and drains.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};

use crate::args::ProxyArgs;
use crate::stream::client::{Follow, follow};
use crate::stream::filter::rebind;
use crate::{KubeModeError, health};

/// Run the proxy until SIGINT/SIGTERM.
pub async fn run_proxy(args: ProxyArgs) -> Result<(), KubeModeError> {
    args.access_log
        .install(portcullis_obs::accesslog::Format::Json)
        .map_err(|e| KubeModeError::io("access log", e))?;
    args.trace
        .install()
        .map_err(|e| KubeModeError::InvalidArgument(e.to_string()))?;
    let trace = args.trace.clone();
    let r = run_proxy_until(args, crate::controller::shutdown_signal(), |_| {}).await;
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
    let (admin, admin_task) =
        health::serve(args.admin, ready_rx, watch::channel(String::new()).1).await?;
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
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
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
                tracing::info!(version = msg.version, ports, "configuration applied");
                ready_tx.send_replace(true);
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
