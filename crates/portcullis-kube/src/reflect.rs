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

use futures_util::stream::BoxStream;
use futures_util::{StreamExt, TryStreamExt, stream};
use kube::api::{DynamicObject, PartialObjectMeta};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use portcullis_store::Watch;
use portcullis_store::types;
use portcullis_store::{Kind, Object, ObjectKey, ObjectRef, Snapshot};
use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::discovery::Served;
use crate::kinds::{Watched, api};
use crate::scope::Scope;

/// One list/watch: a kind, in one namespace (`""`: every namespace).
type Stream = (Kind, String);

#[derive(Default)]
struct State {
    snapshot: Snapshot,
    /// The watches that have listed once.
    synced: BTreeSet<Stream>,
    /// resourceVersion of every Secret and ConfigMap (metadata watch).
    metas: BTreeMap<ObjectRef, String>,
}

/// The watched objects; every replica keeps one.
pub struct Cache {
    state: Mutex<State>,
    changed: watch::Sender<u64>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// The watches started (a kind may have one per watched namespace).
    watched: Vec<Stream>,
}

impl Cache {
    /// Start watching every kind `served` says is installed, at the version it
    /// is served: namespaced kinds in the namespaces of `scope` (one watch
    /// each), Secrets in its Secret namespaces, cluster-scoped kinds
    /// cluster-wide. Kinds that are not installed are not watched and do not
    /// hold back [`Cache::wait_synced`].
    pub fn start(client: &Client, scope: &Scope, served: &Served) -> Arc<Cache> {
        let lists = |k: Kind| match k {
            Kind::Secret => scope.secret_lists(),
            k if k.namespaced() => scope.watch_lists(),
            _ => vec![None],
        };
        let cache = Arc::new(Cache {
            state: Mutex::default(),
            changed: watch::channel(0).0,
            tasks: Mutex::default(),
            watched: Kind::ALL
                .into_iter()
                .filter(|k| k.watched_in_cluster() != Watch::No)
                .filter(|k| served.serves(*k))
                .flat_map(|k| {
                    lists(k)
                        .into_iter()
                        .map(move |ns| (k, ns.unwrap_or_default()))
                })
                .collect(),
        });
        let c = &cache;
        let mut tasks: Vec<JoinHandle<()>> = vec![];
        for ns in scope.watch_lists() {
            let ns = ns.as_deref();
            tasks.extend(
                [
                    spawn_full::<types::Gateway>(client, ns, served, c),
                    spawn_full::<types::ListenerSet>(client, ns, served, c),
                    spawn_full::<types::HTTPRoute>(client, ns, served, c),
                    spawn_full::<types::GRPCRoute>(client, ns, served, c),
                    spawn_full::<types::TLSRoute>(client, ns, served, c),
                    spawn_full::<types::TCPRoute>(client, ns, served, c),
                    spawn_full::<types::UDPRoute>(client, ns, served, c),
                    spawn_full::<types::ReferenceGrant>(client, ns, served, c),
                    spawn_full::<types::BackendTLSPolicy>(client, ns, served, c),
                    spawn_full::<types::SecurityPolicy>(client, ns, served, c),
                    spawn_full::<types::BackendTrafficPolicy>(client, ns, served, c),
                    spawn_full::<types::ClientTrafficPolicy>(client, ns, served, c),
                    spawn_full::<types::Service>(client, ns, served, c),
                    spawn_full::<types::EndpointSlice>(client, ns, served, c),
                    spawn_full::<types::Ingress>(client, ns, served, c),
                ]
                .into_iter()
                .flatten(),
            );
            tasks.push(tokio::spawn(meta::<types::ConfigMap>(
                client.clone(),
                ns.map(str::to_string),
                cache.clone(),
            )));
        }
        for ns in scope.secret_lists() {
            tasks.push(tokio::spawn(meta::<types::Secret>(
                client.clone(),
                ns,
                cache.clone(),
            )));
        }
        tasks.extend(
            [
                spawn_full::<types::GatewayClass>(client, None, served, c),
                spawn_full::<types::Namespace>(client, None, served, c),
                spawn_full::<types::IngressClass>(client, None, served, c),
            ]
            .into_iter()
            .flatten(),
        );
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
            let missing = self.missing();
            crate::KubeModeError::NotSynced(format!(
                "not listed after {timeout:?}: {}",
                missing.join(", ")
            ))
        })
    }

    fn missing(&self) -> Vec<String> {
        let st = self.state.lock().expect("lock");
        self.watched
            .iter()
            .filter(|s| !st.synced.contains(*s))
            .map(|(k, ns)| match ns.as_str() {
                "" => k.to_string(),
                ns => format!("{k} in {ns}"),
            })
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

/// A watch event with the object already converted (or dropped when it cannot be).
enum Ev {
    Init,
    InitApply(Object),
    InitDone,
    Apply(Object),
    Delete(ObjectKey),
    Error(String),
}

impl Ev {
    fn from_typed<K: Watched>(r: Result<watcher::Event<K>, watcher::Error>) -> Option<Ev> {
        Some(match r {
            Ok(watcher::Event::Init) => Ev::Init,
            Ok(watcher::Event::InitApply(o)) => Ev::InitApply(o.into_object()),
            Ok(watcher::Event::InitDone) => Ev::InitDone,
            Ok(watcher::Event::Apply(o)) => Ev::Apply(o.into_object()),
            Ok(watcher::Event::Delete(o)) => Ev::Delete(ObjectKey::of(o.meta())),
            Err(e) => Ev::Error(e.to_string()),
        })
    }

    /// An object watched at another version than `K`'s: decoded through JSON
    /// (the served versions of a Gateway API kind are schema-compatible).
    fn from_dynamic<K: Watched>(
        r: Result<watcher::Event<DynamicObject>, watcher::Error>,
    ) -> Option<Ev> {
        Some(match r {
            Ok(watcher::Event::Init) => Ev::Init,
            Ok(watcher::Event::InitApply(o)) => Ev::InitApply(convert::<K>(o)?),
            Ok(watcher::Event::InitDone) => Ev::InitDone,
            Ok(watcher::Event::Apply(o)) => Ev::Apply(convert::<K>(o)?),
            Ok(watcher::Event::Delete(o)) => Ev::Delete(ObjectKey::of(&o.metadata)),
            Err(e) => Ev::Error(e.to_string()),
        })
    }
}

/// Decode a `DynamicObject` as `K` (its apiVersion rewritten to `K`'s).
pub fn convert<K: Watched>(o: DynamicObject) -> Option<Object> {
    let name = ObjectKey::of(&o.metadata);
    let mut v = match serde_json::to_value(&o) {
        Ok(v) => v,
        Err(e) => {
            tracing::warn!(kind = %K::KIND, object = %name, "cannot encode: {e}");
            return None;
        }
    };
    v["apiVersion"] = Value::String(K::api_version(&()).into_owned());
    match serde_json::from_value::<K>(v) {
        Ok(k) => Some(k.into_object()),
        Err(e) => {
            tracing::warn!(kind = %K::KIND, object = %name, "cannot decode, ignored: {e}");
            None
        }
    }
}

fn spawn_full<K: Watched>(
    client: &Client,
    ns: Option<&str>,
    served: &Served,
    cache: &Arc<Cache>,
) -> Option<JoinHandle<()>> {
    let ar = served.resource(K::KIND)?;
    let events: BoxStream<'static, Ev> = if ar.api_version == K::api_version(&()) {
        watcher(api::<K>(client, ns), watcher::Config::default())
            .default_backoff()
            .filter_map(|r| std::future::ready(Ev::from_typed(r)))
            .boxed()
    } else {
        tracing::debug!(kind = %K::KIND, version = %ar.version, "watching at the served version");
        let dyn_api: Api<DynamicObject> = match (ns, K::KIND.namespaced()) {
            (Some(ns), true) => Api::namespaced_with(client.clone(), ns, &ar),
            _ => Api::all_with(client.clone(), &ar),
        };
        watcher(dyn_api, watcher::Config::default())
            .default_backoff()
            .filter_map(|r| std::future::ready(Ev::from_dynamic::<K>(r)))
            .boxed()
    };
    let stream = (
        K::KIND,
        ns.filter(|_| K::KIND.namespaced())
            .unwrap_or_default()
            .to_string(),
    );
    Some(tokio::spawn(full(stream, events, cache.clone())))
}

/// One watch (`stream`) of a kind. With one watch per namespace, each only
/// removes the objects it listed itself.
async fn full(stream: Stream, mut events: BoxStream<'static, Ev>, cache: Arc<Cache>) {
    let kind = stream.0;
    let mut known: BTreeSet<ObjectKey> = BTreeSet::new();
    let mut init: Option<Vec<Object>> = None;
    while let Some(ev) = events.next().await {
        match ev {
            Ev::Init => init = Some(vec![]),
            Ev::InitApply(o) => init.get_or_insert_with(Vec::new).push(o),
            Ev::InitDone => {
                let objects = init.take().unwrap_or_default();
                let fresh: BTreeSet<ObjectKey> =
                    objects.iter().map(|o| ObjectKey::of(o.meta())).collect();
                let gone: Vec<ObjectKey> = known.difference(&fresh).cloned().collect();
                known = fresh;
                cache.update(|st| {
                    for k in &gone {
                        st.snapshot.remove(kind, k);
                    }
                    for o in objects {
                        st.snapshot.insert(o);
                    }
                    st.synced.insert(stream.clone());
                });
                tracing::debug!(%kind, objects = known.len(), "listed");
            }
            Ev::Apply(o) => {
                known.insert(ObjectKey::of(o.meta()));
                cache.update(|st| st.snapshot.insert(o));
            }
            Ev::Delete(key) => {
                known.remove(&key);
                cache.update(|st| {
                    st.snapshot.remove(kind, &key);
                });
            }
            Ev::Error(e) => tracing::warn!(%kind, "watch: {e}"),
        }
    }
}

/// The metadata watch of Secrets or ConfigMaps in `ns` (`None`: every namespace).
async fn meta<K: Watched + kube::Resource<Scope = k8s_openapi::NamespaceResourceScope>>(
    client: Client,
    ns: Option<String>,
    cache: Arc<Cache>,
) {
    let api = meta_api::<K>(&client, ns.as_deref());
    let stream: Stream = (K::KIND, ns.clone().unwrap_or_default());
    let mine =
        |r: &ObjectRef| r.kind == K::KIND && ns.as_ref().is_none_or(|n| r.key.namespace == *n);
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
                    st.metas.retain(|r, _| !mine(r));
                    st.metas.extend(fresh);
                    st.synced.insert(stream.clone());
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
    /// Returns `false` when a read failed: the object's previous version (a
    /// certificate that was serving, say) is kept, and the caller retries soon.
    pub async fn fill(
        &mut self,
        client: &Client,
        wanted: &BTreeSet<ObjectRef>,
        metas: &BTreeMap<ObjectRef, String>,
        snapshot: &mut Snapshot,
    ) -> bool {
        // Deleted or unreferenced objects go; changed ones stay until their new version is read.
        self.objects
            .retain(|r, _| wanted.contains(r) && metas.contains_key(r));
        let fetch: Vec<ObjectRef> = wanted
            .iter()
            .filter(|r| {
                metas
                    .get(*r)
                    .is_some_and(|rv| self.objects.get(*r).is_none_or(|(have, _)| have != rv))
            })
            .cloned()
            .collect();
        let got: Vec<(ObjectRef, Result<Option<Object>, ()>)> = stream::iter(fetch)
            .map(|r| async move {
                let res = match r.kind {
                    Kind::Secret => crate::bounded(
                        Api::<types::Secret>::namespaced(client.clone(), &r.key.namespace)
                            .get_opt(&r.key.name),
                    )
                    .await
                    .map(|o| o.map(Object::Secret)),
                    _ => crate::bounded(
                        Api::<types::ConfigMap>::namespaced(client.clone(), &r.key.namespace)
                            .get_opt(&r.key.name),
                    )
                    .await
                    .map(|o| o.map(Object::ConfigMap)),
                };
                match res {
                    Ok(o) => Ok::<_, ()>((r, Ok(o))),
                    Err(e) => {
                        tracing::warn!(object = %r, "cannot read (keeping the version read before, retrying): {e}");
                        Ok((r, Err(())))
                    }
                }
            })
            .buffer_unordered(8)
            .try_collect()
            .await
            .unwrap_or_default();
        let mut complete = true;
        for (r, o) in got {
            match o {
                Ok(Some(o)) => {
                    let rv = o.meta().resource_version.clone().unwrap_or_default();
                    self.objects.insert(r, (rv, o));
                }
                Ok(None) => {
                    self.objects.remove(&r);
                }
                Err(()) => complete = false,
            }
        }
        for (_, o) in self.objects.values() {
            snapshot.insert(o.clone());
        }
        complete
    }
}
