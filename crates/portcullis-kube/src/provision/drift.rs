//! Drift: what the controller provisioned, as the API server has it now.
//!
//! Deployments and ServiceAccounts labelled `app.kubernetes.io/managed-by=portcullis`
//! are watched by metadata (resourceVersion, generation); Services and
//! ConfigMaps are already in the controller's cache. The [`Provisioner`]
//! re-applies an object that was deleted, or edited since it applied it (a
//! Deployment's `generation` moved, another object's `resourceVersion` moved).
//!
//! [`Provisioner`]: super::apply::Provisioner

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// `(kind, namespace, name)` of a provisioned object.
pub type Key = (String, String, String);

/// What the API server holds of one object: resourceVersion and generation.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Live {
    /// `metadata.resourceVersion`.
    pub resource_version: String,
    /// `metadata.generation` (0 when the kind has none).
    pub generation: i64,
}

/// The watched provisioned Deployments and ServiceAccounts.
pub struct Owned {
    objects: Mutex<BTreeMap<Key, Live>>,
    changed: watch::Sender<u64>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// Label every provisioned object carries.
pub const MANAGED_BY: &str = "app.kubernetes.io/managed-by=portcullis";

impl Owned {
    /// Start watching, in each of `namespaces` (`None`: every namespace).
    pub fn start(client: &Client, namespaces: &[Option<String>]) -> Arc<Owned> {
        let owned = Arc::new(Owned {
            objects: Mutex::default(),
            changed: watch::channel(0).0,
            tasks: Mutex::default(),
        });
        let mut tasks = vec![];
        for ns in namespaces {
            let (d, s): (
                Api<PartialObjectMeta<Deployment>>,
                Api<PartialObjectMeta<ServiceAccount>>,
            ) = match ns {
                Some(ns) => (
                    Api::namespaced(client.clone(), ns),
                    Api::namespaced(client.clone(), ns),
                ),
                None => (Api::all(client.clone()), Api::all(client.clone())),
            };
            tasks.push(tokio::spawn(run(
                d,
                "Deployment",
                ns.clone(),
                owned.clone(),
            )));
            tasks.push(tokio::spawn(run(
                s,
                "ServiceAccount",
                ns.clone(),
                owned.clone(),
            )));
        }
        *owned.tasks.lock().expect("lock") = tasks;
        owned
    }

    /// The object as last seen, `None` when absent (deleted, or not listed yet).
    pub fn get(&self, key: &Key) -> Option<Live> {
        self.objects.lock().expect("lock").get(key).cloned()
    }

    /// Sees a new value whenever an object appears, goes, or its spec changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// Stop watching.
    pub fn stop(&self) {
        for t in self.tasks.lock().expect("lock").drain(..) {
            t.abort();
        }
    }

    fn set(&self, kind: &str, m: &kube::core::ObjectMeta, present: bool) {
        let key = (
            kind.to_string(),
            m.namespace.clone().unwrap_or_default(),
            m.name.clone().unwrap_or_default(),
        );
        let live = Live {
            resource_version: m.resource_version.clone().unwrap_or_default(),
            generation: m.generation.unwrap_or(0),
        };
        let mut objects = self.objects.lock().expect("lock");
        let notify = if present {
            let old = objects.insert(key, live.clone());
            // A Deployment's status moves its resourceVersion all the time: only spec changes count.
            match old {
                None => true,
                Some(o) if kind == "Deployment" => o.generation != live.generation,
                Some(o) => o.resource_version != live.resource_version,
            }
        } else {
            objects.remove(&key).is_some()
        };
        drop(objects);
        if notify {
            self.changed.send_modify(|n| *n += 1);
        }
    }
}

impl Drop for Owned {
    fn drop(&mut self) {
        self.stop();
    }
}

async fn run<K>(
    api: Api<PartialObjectMeta<K>>,
    kind: &'static str,
    ns: Option<String>,
    owned: Arc<Owned>,
) where
    K: kube::Resource + Clone + std::fmt::Debug + serde::de::DeserializeOwned + Send + 'static,
    K::DynamicType: Default,
{
    let mut events = watcher(api, watcher::Config::default().labels(MANAGED_BY))
        .default_backoff()
        .boxed();
    let mut init: Vec<PartialObjectMeta<K>> = vec![];
    while let Some(ev) = events.next().await {
        match ev {
            Ok(watcher::Event::Init) => init.clear(),
            Ok(watcher::Event::InitApply(m)) => init.push(m),
            Ok(watcher::Event::InitDone) => {
                owned
                    .objects
                    .lock()
                    .expect("lock")
                    .retain(|k, _| k.0 != kind || ns.as_ref().is_some_and(|n| k.1 != *n));
                for m in init.drain(..) {
                    owned.set(kind, &m.metadata, true);
                }
                owned.changed.send_modify(|n| *n += 1);
            }
            Ok(watcher::Event::Apply(m)) => owned.set(kind, &m.metadata, true),
            Ok(watcher::Event::Delete(m)) => owned.set(kind, &m.metadata, false),
            Err(e) => tracing::warn!(%kind, "watch: {e}"),
        }
    }
}
