//! `portcullis controller --dashboard ADDR`: the dashboard (`/ui`),
//! `/explain`, `/status`, `/config` and `/metrics` of the controller, served
//! by the same admin API as standalone mode ([`crate::admin`]) from the
//! controller's last translation pass ([`portcullis_kube::View`]): every
//! Gateway of its class with its listeners, every route and policy with
//! their conditions in plain words, backends and endpoints, and explain on
//! the IR the proxies are streamed.
//!
//! - Traffic by route: the proxies count it, so each request for the
//!   dashboard's document reads `/metrics` of every proxy connected to the
//!   config stream (at the stream's peer address and
//!   `--proxy-metrics-port`), concurrently, each bounded by a timeout; a
//!   proxy that does not answer is left out of that poll.
//! - Kubernetes has no files, so there is no file:line problem list: what is
//!   wrong is in the conditions.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use portcullis_kube::ControllerArgs;

use crate::admin::{self, AdminState, AdminView, ProxyMetrics};

/// How long one proxy's `/metrics` may take.
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(1);
/// The most of a proxy's exposition read.
const SCRAPE_MAX_BYTES: usize = 16 << 20;

/// Run the controller, with the dashboard when `--dashboard` is given.
pub async fn run(args: ControllerArgs) -> anyhow::Result<()> {
    let state: AdminState = Default::default();
    if let Some(addr) = args.dashboard {
        let token = args
            .dashboard_token_file
            .as_deref()
            .map(admin::read_token)
            .transpose()?;
        admin::serve(addr, token, state.clone()).await?;
    }
    let serve = args.dashboard.is_some();
    let port = args.proxy_metrics_port;
    portcullis_kube::run_controller_with(args, move |ctl| {
        if !serve {
            return;
        }
        let proxies = ctl.proxies();
        let metrics: ProxyMetrics = Arc::new(move || {
            proxies
                .list()
                .into_iter()
                .map(|(ip, _)| SocketAddr::new(ip, port))
                .collect()
        });
        let mut views = ctl.view();
        tokio::spawn(async move {
            loop {
                let v = views.borrow_and_update().clone();
                if let Some(v) = v {
                    state.store(Some(Arc::new(AdminView {
                        snapshot: v.snapshot.clone(),
                        statuses: v.statuses.clone(),
                        config: v.config.clone(),
                        problems: Default::default(),
                        kubernetes: true,
                        proxy_metrics: Some(metrics.clone()),
                    })));
                }
                if views.changed().await.is_err() {
                    break;
                }
            }
        });
    })
    .await?;
    Ok(())
}

/// The expositions of `GET http://ADDR/metrics` for every address, one
/// after the other (each ends with `# EOF`); those that fail are left out.
pub async fn scrape(addrs: Vec<SocketAddr>) -> String {
    let client: Client<HttpConnector, Empty<Bytes>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let mut set = tokio::task::JoinSet::new();
    for addr in addrs {
        let client = client.clone();
        set.spawn(async move {
            let uri: http::Uri = format!("http://{addr}/metrics").parse().ok()?;
            let fetch = async {
                let resp = client.get(uri).await.ok()?;
                if !resp.status().is_success() {
                    return None;
                }
                let body = http_body_util::Limited::new(resp.into_body(), SCRAPE_MAX_BYTES);
                let bytes = body.collect().await.ok()?.to_bytes();
                String::from_utf8(bytes.to_vec()).ok()
            };
            let text = tokio::time::timeout(SCRAPE_TIMEOUT, fetch)
                .await
                .ok()
                .flatten();
            if text.is_none() {
                tracing::debug!(%addr, "dashboard: a proxy's /metrics did not answer");
            }
            text
        });
    }
    let mut out = String::new();
    while let Some(r) = set.join_next().await {
        if let Ok(Some(text)) = r {
            out.push_str(&text);
            out.push('\n');
        }
    }
    out
}
