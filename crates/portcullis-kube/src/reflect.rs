//! Reflectors: one watch per kind feeding one shared [`Snapshot`].
//!
//! Every kind translation reads is listed and watched (kube's `watcher`, with
//! its default backoff); a relist replaces that kind's objects atomically.
//! Secrets and ConfigMaps are watched by metadata only, so their data never
//! leaves the API server unless something references them: the controller
//! fetches the referenced ones (see [`RefCache`]). Each change bumps a counter
//! the controller loop waits on.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::{StreamExt, TryStreamExt, stream};
use kube::api::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use portcullis_store::types;
use portcullis_store::{Kind, Object, ObjectKey, ObjectRef, Snapshot};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::kinds::{Watched, api};

#[derive(Default)]
struct State {
    snapshot: Snapshot,
    synced: BTreeSet<Kind>,
    /// resourceVersion of every Secret and ConfigMap (metadata watch).
    metas: BTreeMap<ObjectRef, String>,
}

/// The watched objects; every replica keeps one.
pub struct Cache {
    state: Mutex<State>,
    changed: watch::Sender<u64>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

/// Kinds watched with full objects.
const FULL: [Kind; 14] = [
    Kind::GatewayClass,
    Kind::Gateway,
    Kind::ListenerSet,
    Kind::HTTPRoute,
    Kind::GRPCRoute,
    Kind::TLSRoute,
    Kind::TCPRoute,
    Kind::UDPRoute,
    Kind::ReferenceGrant,
    Kind::BackendTLSPolicy,
    Kind::SecurityPolicy,
    Kind::Service,
    Kind::EndpointSlice,
    Kind::Namespace,
];

impl Cache {
    /// Start watching every kind (namespaced kinds in `namespace` only, when given).
    pub fn start(client: &Client, namespace: Option<&str>) -> Arc<Cache> {
        let cache = Arc::new(Cache {
            state: Mutex::default(),
            changed: watch::channel(0).0,
            tasks: Mutex::default(),
        });
        let ns = namespace;
        let mut tasks = vec![
            tokio::spawn(full::<types::GatewayClass>(api(client, ns), cache.clone())),
            tokio::spawn(full::<types::Gateway>(api(client, ns), cache.clone())),
            tokio::spawn(full::<types::ListenerSet>(api(client, ns), cache.clone())),
            tokio::spawn(full::<types::HTTPRoute>(api(client, ns), cache.clone())),
            tokio::spawn(full::<types::GRPCRoute>(api(client, ns), cache.clone())),
            tokio::spawn(full::<types::TLSRoute>(api(client, ns), cache.clone())),
            tokio::spawn(full::<types::TCPRoute>(api(client, ns), cache.clone())),
            tokio::spawn(full::<types::UDPRoute>(api(client, ns), cache.clone())),
            tokio::spawn(full::<types::ReferenceGrant>(
                api(client, ns),
                cache.clone(),
            )),
            tokio::spawn(full::<types::BackendTLSPolicy>(
                api(client, ns),
                cache.clone(),
            )),
            tokio::spawn(full::<types::SecurityPolicy>(
                api(client, ns),
                cache.clone(),
            )),
            tokio::spawn(full::<types::Service>(api(client, ns), cache.clone())),
            tokio::spawn(full::<types::EndpointSlice>(api(client, ns), cache.clone())),
            tokio::spawn(full::<types::Namespace>(api(client, None), cache.clone())),
        ];
        tasks.push(tokio::spawn(meta::<types::Secret>(
            meta_api(client, ns),
            cache.clone(),
        )));
        tasks.push(tokio::spawn(meta::<types::ConfigMap>(
            meta_api(client, ns),
            cache.clone(),
        )));
        *cache.tasks.lock().expect("lock") = tasks;
        cache
    }

    /// Wait until every kind has been listed once.
    pub async fn wait_synced(&self, timeout: Duration) -> Result<(), crate::KubeModeError> {
        let mut rx = self.changed.subscribe();
        let wait = async {
            loop {
                if self.missing().is_empty() {
                    return;
                }
                if rx.changed().await.is_err() {
                    return;
                }
            }
        };
        tokio::time::timeout(timeout, wait).await.map_err(|_| {
            let missing: Vec<String> = self.missing().iter().map(|k| k.to_string()).collect();
            crate::KubeModeError::NotSynced(format!(
                "not listed after {timeout:?}: {}",
                missing.join(", ")
            ))
        })
    }

    fn missing(&self) -> Vec<Kind> {
        let st = self.state.lock().expect("lock");
        FULL.iter()
            .chain(&[Kind::Secret, Kind::ConfigMap])
            .copied()
            .filter(|k| !st.synced.contains(k))
            .collect()
    }

    /// A receiver that sees a new value after every change.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// The watched objects (no Secrets or ConfigMaps), and the resourceVersion
    /// of every Secret and ConfigMap.
    pub fn view(&self) -> (Snapshot, BTreeMap<ObjectRef, String>) {
        let st = self.state.lock().expect("lock");
        (st.snapshot.clone(), st.metas.clone())
    }

    /// Stop every watch.
    pub fn stop(&self) {
        for t in self.tasks.lock().expect("lock").drain(..) {
            t.abort();
        }
    }

    fn update(&self, f: impl FnOnce(&mut State)) {
        f(&mut self.state.lock().expect("lock"));
        self.changed.send_modify(|g| *g += 1);
    }
}

impl Drop for Cache {
    fn drop(&mut self) {
        self.stop();
    }
}

fn meta_api<K: Watched + kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>>(
    client: &Client,
    ns: Option<&str>,
) -> Api<PartialObjectMeta<K>> {
    match ns {
        Some(ns) => Api::namespaced(client.clone(), ns),
        None => Api::all(client.clone()),
    }
}

async fn full<K: Watched>(api: Api<K>, cache: Arc<Cache>) {
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut known: BTreeSet<ObjectKey> = BTreeSet::new();
    let mut init: Option<Vec<Object>> = None;
    while let Some(ev) = events.next().await {
        match ev {
            Ok(watcher::Event::Init) => init = Some(vec![]),
            Ok(watcher::Event::InitApply(o)) => {
                init.get_or_insert_with(Vec::new).push(o.into_object())
            }
            Ok(watcher::Event::InitDone) => {
                let objects = init.take().unwrap_or_default();
                let fresh: BTreeSet<ObjectKey> =
                    objects.iter().map(|o| ObjectKey::of(o.meta())).collect();
                let gone: Vec<ObjectKey> = known.difference(&fresh).cloned().collect();
                known = fresh;
                cache.update(|st| {
                    for k in &gone {
                        st.snapshot.remove(K::KIND, k);
                    }
                    for o in objects {
                        st.snapshot.insert(o);
                    }
                    st.synced.insert(K::KIND);
                });
                tracing::debug!(kind = %K::KIND, objects = known.len(), "listed");
            }
            Ok(watcher::Event::Apply(o)) => {
                let o = o.into_object();
                known.insert(ObjectKey::of(o.meta()));
                cache.update(|st| st.snapshot.insert(o));
            }
            Ok(watcher::Event::Delete(o)) => {
                let key = ObjectKey::of(o.meta());
                known.remove(&key);
                cache.update(|st| {
                    st.snapshot.remove(K::KIND, &key);
                });
            }
            Err(e) => tracing::warn!(kind = %K::KIND, "watch: {e}"),
        }
    }
}

async fn meta<K: Watched + kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>>(
    api: Api<PartialObjectMeta<K>>,
    cache: Arc<Cache>,
) {
    let mut events = watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut init: Option<BTreeMap<ObjectRef, String>> = None;
    let oref = |m: &PartialObjectMeta<K>| ObjectRef {
        kind: K::KIND,
        key: ObjectKey::of(&m.metadata),
    };
    let rv = |m: &PartialObjectMeta<K>| m.metadata.resource_version.clone().unwrap_or_default();
    while let Some(ev) = events.next().await {
        match ev {
            Ok(watcher::Event::Init) => init = Some(BTreeMap::new()),
            Ok(watcher::Event::InitApply(m)) => {
                init.get_or_insert_with(BTreeMap::new)
                    .insert(oref(&m), rv(&m));
            }
            Ok(watcher::Event::InitDone) => {
                let fresh = init.take().unwrap_or_default();
                cache.update(|st| {
                    st.metas.retain(|r, _| r.kind != K::KIND);
                    st.metas.extend(fresh);
                    st.synced.insert(K::KIND);
                });
            }
            Ok(watcher::Event::Apply(m)) => cache.update(|st| {
                st.metas.insert(oref(&m), rv(&m));
            }),
            Ok(watcher::Event::Delete(m)) => cache.update(|st| {
                st.metas.remove(&oref(&m));
            }),
            Err(e) => tracing::warn!(kind = %K::KIND, "watch: {e}"),
        }
    }
}

/// The referenced Secrets and ConfigMaps, fetched one by one and kept while
/// referenced; refetched when their resourceVersion changes.
#[derive(Default)]
pub struct RefCache {
    objects: BTreeMap<ObjectRef, (String, Object)>,
}

impl RefCache {
    /// Bring the cache in line with `wanted` (given every object's current
    /// resourceVersion in `metas`) and add the objects to `snapshot`.
    pub async fn fill(
        &mut self,
        client: &Client,
        wanted: &BTreeSet<ObjectRef>,
        metas: &BTreeMap<ObjectRef, String>,
        snapshot: &mut Snapshot,
    ) {
        self.objects
            .retain(|r, (rv, _)| wanted.contains(r) && metas.get(r) == Some(rv));
        let fetch: Vec<(ObjectRef, String)> = wanted
            .iter()
            .filter(|r| !self.objects.contains_key(r))
            .filter_map(|r| metas.get(r).map(|rv| (r.clone(), rv.clone())))
            .collect();
        let got: Vec<(ObjectRef, Option<Object>)> = stream::iter(fetch)
            .map(|(r, _)| async move {
                let res = match r.kind {
                    Kind::Secret => {
                        Api::<types::Secret>::namespaced(client.clone(), &r.key.namespace)
                            .get_opt(&r.key.name)
                            .await
                            .map(|o| o.map(Object::Secret))
                    }
                    _ => Api::<types::ConfigMap>::namespaced(client.clone(), &r.key.namespace)
                        .get_opt(&r.key.name)
                        .await
                        .map(|o| o.map(Object::ConfigMap)),
                };
                match res {
                    Ok(o) => Ok((r, o)),
                    Err(e) => {
                        tracing::warn!(object = %r, "cannot read: {e}");
                        Ok::<_, ()>((r, None))
                    }
                }
            })
            .buffer_unordered(8)
            .try_collect()
            .await
            .unwrap_or_default();
        for (r, o) in got {
            if let Some(o) = o {
                let rv = o.meta().resource_version.clone().unwrap_or_default();
                self.objects.insert(r, (rv, o));
            }
        }
        for (_, o) in self.objects.values() {
            snapshot.insert(o.clone());
        }
    }
}
