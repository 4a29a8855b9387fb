//! The status writer: a queue of pending writes, coalesced per object, sent
//! as JSON merge patches of the status subresource under a token-bucket rate
//! limit with a bounded number in flight.
//!
//! Each patch carries `metadata.resourceVersion` of the cached object it was
//! computed from, so the API server refuses it (409) when the object changed
//! since: a stale cache never overwrites a newer status. On 409 the writer
//! re-reads the object; if its generation moved on, the write is dropped (the
//! watch brings the new object and the next translation handles it),
//! otherwise the merge is recomputed against the fresh status and retried.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::{Api, Client};
use portcullis_store::status::Status;
use portcullis_store::{Kind, ObjectRef};
use serde_json::{Value, json};
use tokio::sync::{mpsc, watch};

use super::merge;

/// Tuning of the writer.
#[derive(Clone, Debug)]
pub struct WriterOptions {
    /// Writes per second.
    pub qps: f64,
    /// Bucket size.
    pub burst: u32,
    /// Writes in flight at once.
    pub concurrency: usize,
    /// Our `controllerName`.
    pub controller_name: String,
    /// The version each kind is served at (statuses are patched there).
    pub served: crate::discovery::Served,
}

/// One status to write.
#[derive(Clone, Debug, PartialEq)]
pub struct Pending {
    /// The object.
    pub oref: ObjectRef,
    /// resourceVersion of the cached object the status was computed from.
    pub resource_version: String,
    /// metadata.generation of that object.
    pub generation: i64,
    /// What translation said (to recompute the merge after a conflict).
    pub translated: Option<Status>,
    /// The status to write (every owned field, `null` for removed ones).
    pub status: Value,
}

/// Handle to the writer task.
pub struct StatusWriter {
    tx: mpsc::UnboundedSender<Vec<Pending>>,
    backlog: watch::Receiver<usize>,
    patches: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for StatusWriter {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl StatusWriter {
    /// Start the writer; it writes only while `leader` is true and forgets its queue when it is not.
    pub fn start(client: Client, opts: WriterOptions, leader: watch::Receiver<bool>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let (btx, backlog) = watch::channel(0);
        let patches = Arc::new(AtomicU64::new(0));
        let task = tokio::spawn(run(client, opts, leader, rx, btx, patches.clone()));
        StatusWriter {
            tx,
            backlog,
            patches,
            task,
        }
    }

    /// Queue writes; a newer write for the same object replaces a queued one.
    pub fn submit(&self, batch: Vec<Pending>) {
        if !batch.is_empty() {
            let _ = self.tx.send(batch);
        }
    }

    /// Queued plus in-flight writes.
    pub fn backlog(&self) -> watch::Receiver<usize> {
        self.backlog.clone()
    }

    /// PATCH requests sent so far.
    pub fn patches_sent(&self) -> u64 {
        self.patches.load(Ordering::Relaxed)
    }
}

/// A token bucket.
struct Bucket {
    tokens: f64,
    burst: f64,
    qps: f64,
    at: Instant,
}

impl Bucket {
    fn new(qps: f64, burst: u32) -> Self {
        let burst = f64::from(burst.max(1));
        Bucket {
            tokens: burst,
            burst,
            qps: qps.max(0.001),
            at: Instant::now(),
        }
    }
    async fn take(&mut self) {
        loop {
            let now = Instant::now();
            self.tokens = (self.tokens + now.duration_since(self.at).as_secs_f64() * self.qps)
                .min(self.burst);
            self.at = now;
            if self.tokens >= 1.0 {
                self.tokens -= 1.0;
                return;
            }
            tokio::time::sleep(Duration::from_secs_f64((1.0 - self.tokens) / self.qps)).await;
        }
    }
}

enum Outcome {
    Written(Value),
    Unchanged,
    Stale,
    Failed(String),
}

async fn run(
    client: Client,
    opts: WriterOptions,
    mut leader: watch::Receiver<bool>,
    mut rx: mpsc::UnboundedReceiver<Vec<Pending>>,
    backlog: watch::Sender<usize>,
    patches: Arc<AtomicU64>,
) {
    let mut queue: BTreeMap<ObjectRef, (Pending, u32)> = BTreeMap::new();
    let mut order: VecDeque<ObjectRef> = VecDeque::new();
    // The last status written per object, with the cache resourceVersion it was computed from:
    // until the watch delivers our own write, the same intent comes back and is skipped.
    let mut recent: HashMap<ObjectRef, (String, Value)> = HashMap::new();
    let mut in_flight = FuturesUnordered::new();
    // What is in flight per object (cache resourceVersion, status): the same intent is not queued again.
    let mut busy: HashMap<ObjectRef, (String, Value)> = HashMap::new();
    let mut bucket = Bucket::new(opts.qps, opts.burst);
    let opts = Arc::new(opts);
    // Failed writes come back here after their backoff.
    let (retry_tx, mut retry_rx) = mpsc::unbounded_channel::<(Pending, u32)>();
    loop {
        if !*leader.borrow() {
            queue.clear();
            order.clear();
            recent.clear();
        }
        while in_flight.len() < opts.concurrency.max(1) {
            let Some(pos) = order.iter().position(|r| !busy.contains_key(r)) else {
                break;
            };
            let oref = order.remove(pos).expect("position");
            let Some((p, attempt)) = queue.remove(&oref) else {
                continue;
            };
            bucket.take().await;
            busy.insert(oref.clone(), (p.resource_version.clone(), p.status.clone()));
            patches.fetch_add(1, Ordering::Relaxed);
            let (client, opts) = (client.clone(), opts.clone());
            in_flight.push(async move {
                let out = write(&client, &opts, &p).await;
                (p, attempt, out)
            });
        }
        backlog.send_replace(queue.len() + in_flight.len());
        tokio::select! {
            batch = rx.recv() => {
                let Some(batch) = batch else { return };
                if !*leader.borrow() {
                    continue;
                }
                for p in batch {
                    // Same object version and same status but for transition times taken at another pass.
                    let same = |x: Option<&(String, Value)>| x.is_some_and(|(rv, s)| *rv == p.resource_version && untimed(s) == untimed(&p.status));
                    if same(recent.get(&p.oref)) || same(busy.get(&p.oref)) {
                        continue;
                    }
                    if queue.insert(p.oref.clone(), (p.clone(), 0)).is_none() {
                        order.push_back(p.oref);
                    }
                }
            }
            Some((p, attempt, out)) = in_flight.next(), if !in_flight.is_empty() => {
                busy.remove(&p.oref);
                match out {
                    Outcome::Written(status) => {
                        portcullis_obs::metrics().control.status_write("written");
                        tracing::debug!(object = %p.oref, "status written");
                        recent.insert(p.oref.clone(), (p.resource_version.clone(), status));
                    }
                    Outcome::Unchanged => portcullis_obs::metrics().control.status_write("unchanged"),
                    Outcome::Stale => portcullis_obs::metrics().control.status_write("stale"),
                    Outcome::Failed(e) if attempt < 5 => {
                        portcullis_obs::metrics().control.status_write("failed");
                        tracing::warn!(object = %p.oref, attempt, "status write failed, retrying: {e}");
                        let retry_tx = retry_tx.clone();
                        tokio::spawn(async move {
                            tokio::time::sleep(Duration::from_millis(200 << attempt)).await;
                            let _ = retry_tx.send((p, attempt + 1));
                        });
                    }
                    Outcome::Failed(e) => {
                        portcullis_obs::metrics().control.status_write("failed");
                        tracing::warn!(object = %p.oref, "status write failed: {e}");
                    }
                }
            }
            Some((p, attempt)) = retry_rx.recv() => {
                // A newer write for the object supersedes the retry.
                if *leader.borrow() && !queue.contains_key(&p.oref) && !busy.contains_key(&p.oref) {
                    order.push_back(p.oref.clone());
                    queue.insert(p.oref.clone(), (p, attempt));
                }
            }
            r = leader.changed() => if r.is_err() { return },
        }
    }
}

/// A status without its `lastTransitionTime`s.
fn untimed(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| *k != "lastTransitionTime")
                .map(|(k, v)| (k.clone(), untimed(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(untimed).collect()),
        other => other.clone(),
    }
}

/// The `ApiResource` of a Gateway API kind at the version Portcullis' types are written for.
pub fn api_resource(kind: Kind) -> ApiResource {
    crate::discovery::native_resource(kind)
}

fn dyn_api(client: &Client, opts: &WriterOptions, oref: &ObjectRef) -> Api<DynamicObject> {
    let ar = opts
        .served
        .resource(oref.kind)
        .unwrap_or_else(|| api_resource(oref.kind));
    if oref.kind.namespaced() {
        Api::namespaced_with(client.clone(), &oref.key.namespace, &ar)
    } else {
        Api::all_with(client.clone(), &ar)
    }
}

async fn write(client: &Client, opts: &WriterOptions, p: &Pending) -> Outcome {
    let api = dyn_api(client, opts, &p.oref);
    let pp = PatchParams {
        field_manager: Some(crate::FIELD_MANAGER.to_string()),
        ..Default::default()
    };
    let (mut rv, mut status) = (p.resource_version.clone(), p.status.clone());
    for _ in 0..5 {
        let body = json!({"metadata": {"resourceVersion": rv}, "status": status});
        match api
            .patch_status(&p.oref.key.name, &pp, &Patch::Merge(&body))
            .await
        {
            Ok(_) => return Outcome::Written(status),
            Err(kube::Error::Api(s)) if s.code == 404 => return Outcome::Stale,
            Err(kube::Error::Api(s)) if s.code == 409 => {
                portcullis_obs::metrics().control.status_conflicts.inc();
                let fresh = match api.get(&p.oref.key.name).await {
                    Ok(o) => o,
                    Err(kube::Error::Api(s)) if s.code == 404 => return Outcome::Stale,
                    Err(e) => return Outcome::Failed(e.to_string()),
                };
                if fresh.metadata.generation.unwrap_or(0) != p.generation {
                    return Outcome::Stale;
                }
                let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                match merge::desired(
                    p.oref.kind,
                    fresh.data.get("status"),
                    p.translated.as_ref(),
                    &opts.controller_name,
                    &now,
                ) {
                    None => return Outcome::Unchanged,
                    Some(s) => {
                        status = s;
                        rv = fresh.metadata.resource_version.unwrap_or_default();
                    }
                }
            }
            Err(e) => return Outcome::Failed(e.to_string()),
        }
    }
    Outcome::Failed("conflict after 5 attempts".into())
}
