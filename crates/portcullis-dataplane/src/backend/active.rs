//! Active health checks (BackendTrafficPolicy `healthCheck.active`): one task
//! per endpoint probes it every `interval` (HTTP/1.1 request, or TCP connect
//! with optional bytes sent and expected), each probe bounded by `timeout`.
//! `unhealthyThreshold` failures in a row mark the endpoint unhealthy (no
//! traffic); `healthyThreshold` passes in a row bring it back. Endpoints start
//! healthy, so a configuration change (which rebuilds the endpoints) never
//! takes traffic away. The tasks end when the endpoint set is dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use portcullis_ir::traffic::{ActiveHealth, Check};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::endpoint::EndpointState;

/// The probing tasks of one endpoint set; dropping it stops them.
#[derive(Debug, Default)]
pub struct Prober {
    tasks: Vec<tokio::task::AbortHandle>,
}

impl Drop for Prober {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Largest response read by an HTTP probe.
const MAX_READ: usize = 64 * 1024;

impl Prober {
    /// Start probing `eps`; `down` counts the endpoints marked unhealthy.
    /// Without a Tokio runtime, nothing is probed (and a warning is logged).
    pub fn start(eps: &[Arc<EndpointState>], cfg: &ActiveHealth, down: &Arc<AtomicUsize>) -> Self {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            tracing::warn!("active health checks need a runtime: not started");
            return Prober::default();
        };
        let cfg = Arc::new(cfg.clone());
        let n = eps.len().max(1) as u64;
        let tasks = eps
            .iter()
            .enumerate()
            .map(|(i, ep)| {
                let (ep, cfg, down) = (ep.clone(), cfg.clone(), down.clone());
                // Spread the first probes over one interval.
                let first = Duration::from_millis(cfg.interval_ms * i as u64 / n);
                rt.spawn(run(ep, cfg, down, first)).abort_handle()
            })
            .collect();
        Prober { tasks }
    }
}

async fn run(
    ep: Arc<EndpointState>,
    cfg: Arc<ActiveHealth>,
    down: Arc<AtomicUsize>,
    first: Duration,
) {
    tokio::time::sleep(first).await;
    let (mut passes, mut fails) = (0u32, 0u32);
    loop {
        let ok = matches!(
            tokio::time::timeout(
                Duration::from_millis(cfg.timeout_ms),
                probe(&ep, &cfg.check)
            )
            .await,
            Ok(Ok(()))
        );
        if ok {
            passes += 1;
            fails = 0;
            if passes >= cfg.healthy_threshold && ep.health.set_unhealthy(false) {
                down.fetch_sub(1, Ordering::Relaxed);
                if let Some(r) = &ep.ramp {
                    super::slow_start::restart(r);
                }
                tracing::info!(endpoint = %ep.addr, "active health check: endpoint healthy");
            }
        } else {
            fails += 1;
            passes = 0;
            if fails >= cfg.unhealthy_threshold && ep.health.set_unhealthy(true) {
                down.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(endpoint = %ep.addr, "active health check: endpoint unhealthy");
            }
        }
        tokio::time::sleep(Duration::from_millis(cfg.interval_ms)).await;
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

async fn probe(ep: &EndpointState, check: &Check) -> std::io::Result<()> {
    let bad = |m: &str| std::io::Error::other(m.to_string());
    let mut s = TcpStream::connect(ep.addr).await?;
    match check {
        Check::Tcp { send, receive } => {
            if let Some(b) = send {
                s.write_all(b).await?;
            }
            if let Some(want) = receive {
                let mut got = Vec::new();
                let mut buf = [0u8; 4096];
                while !contains(&got, want) {
                    let n = s.read(&mut buf).await?;
                    if n == 0 || got.len() > MAX_READ {
                        return Err(bad("expected bytes not received"));
                    }
                    got.extend_from_slice(&buf[..n]);
                }
            }
            Ok(())
        }
        Check::Http {
            hostname,
            path,
            method,
            expected_statuses,
            expected_body,
        } => {
            let host = hostname.clone().unwrap_or_else(|| ep.addr.to_string());
            let req = format!(
                "{method} {path} HTTP/1.1\r\nhost: {host}\r\nuser-agent: portcullis-health-check\r\nconnection: close\r\n\r\n"
            );
            s.write_all(req.as_bytes()).await?;
            let mut got = Vec::new();
            let mut buf = [0u8; 4096];
            loop {
                let n = s.read(&mut buf).await?;
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
                if got.len() >= MAX_READ {
                    break;
                }
                let head_done = got.windows(4).any(|w| w == b"\r\n\r\n");
                if head_done && expected_body.is_none() {
                    break;
                }
                if let Some(want) = expected_body
                    && contains(&got, want)
                {
                    break;
                }
            }
            let status: u16 = std::str::from_utf8(got.get(9..12).unwrap_or_default())
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| bad("no HTTP status"))?;
            if !got.starts_with(b"HTTP/1.") || !expected_statuses.contains(&status) {
                return Err(bad("unexpected status"));
            }
            let body_at = got
                .windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map_or(got.len(), |p| p + 4);
            match expected_body {
                Some(want) if !contains(&got[body_at..], want) => {
                    Err(bad("expected body not received"))
                }
                _ => Ok(()),
            }
        }
    }
}
