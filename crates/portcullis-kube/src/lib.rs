//! Kubernetes mode: `portcullis controller`, and what `portcullis proxy`
//! (crate `portcullis-proxy`) needs from it: the config stream client, its
//! health endpoints. This crate depends on translation, never on the data plane.
//!
//! The controller watches the cluster (one reflector per kind; Secrets and
//! ConfigMaps by metadata only, their data fetched for the ones that are
//! referenced), and runs one debounced loop over the whole snapshot with the
//! same pure [`portcullis_translate::translate`] as standalone mode. From the
//! output it
//!
//! - writes statuses back through the status subresource ([`status`]): only
//!   our own `controllerName` entries in `parents[]`/`ancestors[]`, no write
//!   when nothing changed, rate-limited and guarded by `resourceVersion`;
//! - provisions one proxy (ServiceAccount, Deployment, Service) per accepted
//!   Gateway of our class ([`provision`]), and post-processes the Gateway's
//!   status for what translation cannot know (bad `parametersRef` →
//!   `Accepted=False/InvalidParameters`; `status.addresses` from the Service);
//! - streams each Gateway's part of the IR to its proxies ([`stream`]);
//! - serves the Ingresses of Portcullis' IngressClasses through Gateway API
//!   objects derived from them, one provisioned proxy per IngressClass, and
//!   writes their `status.loadBalancer` ([`ingress`]).
//!
//! Only the holder of a `coordination.k8s.io` Lease ([`leader`]) writes
//! statuses and provisions; every replica serves config streams.
#![deny(missing_docs)]

pub mod args;
pub mod controller;
pub mod discovery;
mod error;
pub mod health;
pub mod ingress;
pub mod kinds;
pub mod leader;
pub mod metrics;
pub mod provision;
pub mod proxystate;
pub mod rbac;
pub mod reflect;
pub mod scope;
pub mod status;
pub mod stream;

pub use args::ControllerArgs;
pub use controller::{View, run_controller, run_controller_with};
pub use error::KubeModeError;

/// Audience of the projected ServiceAccount tokens proxies present to the controller.
pub const TOKEN_AUDIENCE: &str = "portcullis";

/// Field manager for server-side apply and status patches.
pub const FIELD_MANAGER: &str = "portcullis";

/// The longest one API call made from the translation loop may take (a read
/// of a referenced Secret, an apply, an event). The client's own read timeout
/// is minutes long (it serves watches too); a call that hangs on a stalled
/// connection must not hold every later change for that long.
pub const LOOP_CALL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// Run one API call of the translation loop, bounded by [`LOOP_CALL_TIMEOUT`].
pub(crate) async fn bounded<T>(
    call: impl std::future::Future<Output = Result<T, kube::Error>>,
) -> Result<T, String> {
    match tokio::time::timeout(LOOP_CALL_TIMEOUT, call).await {
        Ok(r) => r.map_err(|e| e.to_string()),
        Err(_) => Err(format!("no answer in {LOOP_CALL_TIMEOUT:?}")),
    }
}
