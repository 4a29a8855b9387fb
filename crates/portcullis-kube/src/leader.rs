//! Leader election with a `coordination.k8s.io/v1` Lease.
//!
//! Every replica tries to take the Lease every `retry` period. A Lease is
//! free when it has no holder, or when its record (holder, renewTime) has not
//! changed for `lease_duration` as observed on *our* clock (like client-go,
//! so clock skew between nodes does not matter). The holder renews every
//! `retry`; a renewal that keeps failing for `lease_duration - retry` steps
//! down before anyone else can take over. Updates are guarded by
//! resourceVersion, so two replicas can never both win the same round.

use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::PostParams;
use kube::{Api, Client};
use tokio::sync::watch;

/// Election settings.
#[derive(Clone, Debug)]
pub struct LeaseOptions {
    /// Lease namespace.
    pub namespace: String,
    /// Lease name.
    pub name: String,
    /// This replica's identity.
    pub identity: String,
    /// How long a Lease stays valid without renewal.
    pub lease_duration: Duration,
    /// Period of renewals and acquisition attempts.
    pub retry: Duration,
}

/// A running election; `is_leader` says whether we hold the Lease now.
pub struct Elector {
    rx: watch::Receiver<bool>,
    task: tokio::task::JoinHandle<()>,
    stop: tokio::sync::oneshot::Sender<()>,
}

impl Elector {
    /// Start competing for the Lease.
    pub fn start(client: Client, opts: LeaseOptions) -> Elector {
        let (tx, rx) = watch::channel(false);
        let (stop, stop_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(run(
            Api::namespaced(client, &opts.namespace),
            opts,
            tx,
            stop_rx,
        ));
        Elector { rx, task, stop }
    }

    /// A receiver of the leadership state.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.rx.clone()
    }

    /// Whether we hold the Lease.
    pub fn is_leader(&self) -> bool {
        *self.rx.borrow()
    }

    /// Give the Lease up (so a standby takes over at once) and stop.
    pub async fn release(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

struct Observed {
    record: (Option<String>, Option<MicroTime>),
    at: Instant,
}

async fn run(
    api: Api<Lease>,
    opts: LeaseOptions,
    tx: watch::Sender<bool>,
    mut stop: tokio::sync::oneshot::Receiver<()>,
) {
    let mut observed: Option<Observed> = None;
    let mut last_renew = Instant::now();
    // A leader must renew within two thirds of the lease (client-go's renew
    // deadline): past it, it steps down even while a renewal is still in
    // flight, so it stops acting before a standby may take the lease over.
    let renew_deadline = opts.lease_duration.mul_f64(2.0 / 3.0);
    loop {
        let leading = *tx.borrow();
        let budget = if leading {
            renew_deadline
                .saturating_sub(last_renew.elapsed())
                .max(Duration::from_millis(100))
        } else {
            opts.lease_duration
        };
        let ok =
            match tokio::time::timeout(budget, try_acquire_or_renew(&api, &opts, &mut observed))
                .await
            {
                Ok(r) => r.map_err(|e| e.to_string()),
                Err(_) => Err(format!("no answer within {budget:?}")),
            };
        match ok {
            Ok(true) => {
                last_renew = Instant::now();
                if !leading {
                    tracing::info!(identity = %opts.identity, lease = %opts.name, "became leader");
                }
                tx.send_if_modified(|v| !std::mem::replace(v, true));
            }
            Ok(false) => {
                if leading {
                    tracing::warn!(identity = %opts.identity, "lost the lease");
                }
                tx.send_if_modified(|v| std::mem::replace(v, false));
            }
            Err(e) => {
                tracing::warn!(lease = %opts.name, "lease: {e}");
                if leading && last_renew.elapsed() + opts.retry >= renew_deadline {
                    tracing::warn!(identity = %opts.identity, "cannot renew the lease; stepping down");
                    tx.send_replace(false);
                }
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(opts.retry) => {}
            _ = &mut stop => {
                if *tx.borrow() {
                    release(&api, &opts).await;
                }
                tx.send_replace(false);
                return;
            }
        }
    }
}

fn now() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

async fn try_acquire_or_renew(
    api: &Api<Lease>,
    opts: &LeaseOptions,
    observed: &mut Option<Observed>,
) -> Result<bool, kube::Error> {
    let secs = opts.lease_duration.as_secs().max(1) as i32;
    let Some(mut lease) = api.get_opt(&opts.name).await? else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(opts.name.clone()),
                namespace: Some(opts.namespace.clone()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(opts.identity.clone()),
                lease_duration_seconds: Some(secs),
                acquire_time: Some(now()),
                renew_time: Some(now()),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(e),
        };
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    let record = (spec.holder_identity.clone(), spec.renew_time.clone());
    if observed.as_ref().is_none_or(|o| o.record != record) {
        *observed = Some(Observed {
            record,
            at: Instant::now(),
        });
    }
    let holder = spec.holder_identity.clone().filter(|h| !h.is_empty());
    let ours = holder.as_deref() == Some(opts.identity.as_str());
    let duration = spec
        .lease_duration_seconds
        .map(|s| Duration::from_secs(s.max(0) as u64))
        .unwrap_or(opts.lease_duration);
    let expired = observed
        .as_ref()
        .is_some_and(|o| o.at.elapsed() >= duration);
    if !ours && holder.is_some() && !expired {
        return Ok(false);
    }
    if !ours {
        spec.holder_identity = Some(opts.identity.clone());
        spec.acquire_time = Some(now());
        spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
    }
    spec.lease_duration_seconds = Some(secs);
    spec.renew_time = Some(now());
    match api
        .replace(&opts.name, &PostParams::default(), &lease)
        .await
    {
        Ok(_) => Ok(true),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(e),
    }
}

async fn release(api: &Api<Lease>, opts: &LeaseOptions) {
    let Ok(Some(mut lease)) = api.get_opt(&opts.name).await else {
        return;
    };
    let spec = lease.spec.get_or_insert_with(Default::default);
    if spec.holder_identity.as_deref() != Some(opts.identity.as_str()) {
        return;
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    if let Err(e) = api
        .replace(&opts.name, &PostParams::default(), &lease)
        .await
    {
        tracing::warn!("cannot release the lease: {e}");
    }
}
