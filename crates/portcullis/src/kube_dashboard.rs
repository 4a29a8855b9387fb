//! `portcullis controller --dashboard ADDR`: the dashboard (`/ui`),
//! `/explain`, `/status`, `/config` and `/metrics` of the controller, served
//! by the same admin API as standalone mode ([`crate::admin`]) from the
//! controller's last translation pass ([`portcullis_kube::View`]): every
//! Gateway of its class with its listeners, every route and policy with
//! their conditions in plain words, backends and endpoints, and explain on
//! the IR the proxies are streamed.
//!
//! Kubernetes has no files, so there is no file:line problem list: what is
//! wrong is in the conditions. Traffic numbers are the proxies' (each
//! proxy's `/metrics`, scraped by Prometheus; `deploy/grafana/`).

use std::sync::Arc;

use portcullis_kube::ControllerArgs;

use crate::admin::{self, AdminState, AdminView};

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
    portcullis_kube::run_controller_with(args, move |mut views| {
        if !serve {
            return;
        }
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
