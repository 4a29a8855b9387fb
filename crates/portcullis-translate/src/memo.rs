//! [`Memo`]: what one translation keeps for the next, so that a change to one
//! route does not redo the work of every other route.
//!
//! The memo is transparent: [`crate::translate_with`] gives exactly the output
//! of [`crate::translate`] for the same input, whatever the memo holds.
//!
//! Entries are keyed by what the API itself uses to tell versions of an
//! object apart: kind, `namespace/name`, `metadata.uid` and
//! `metadata.resourceVersion` (both sources stamp every object: the API
//! server, and the file source from the object's content). An object without
//! a `resourceVersion` is never reused. No entry depends on where an object
//! lives in memory, so a source may rebuild its snapshot freely.
//!
//! What is kept per route:
//! - its view (metadata and spec in the shape translation reads), a pure
//!   function of the route object;
//! - what its rules turn into ([`Built`]: IR rules, unresolved references,
//!   invalid rules), which also depends on the objects rules reference
//!   (Services, EndpointSlices, Secrets, ConfigMaps, Namespaces,
//!   ReferenceGrants, BackendTLSPolicies): kept only while every one of those
//!   has the same version as when it was computed.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use portcullis_store::types::ObjectMeta;
use portcullis_store::{Kind, ObjectKey, Snapshot};

use crate::routes::{Built, RouteObject, RouteView};

/// `metadata.uid` and `metadata.resourceVersion`: one version of one object.
#[derive(Clone, PartialEq, Eq, Debug)]
struct Version(Option<String>, String);

impl Version {
    /// `None` when the object carries no `resourceVersion`.
    fn of(m: &ObjectMeta) -> Option<Version> {
        Some(Version(m.uid.clone(), m.resource_version.clone()?))
    }

    /// Whether `m` is this version (without copying its fields).
    fn is(&self, m: &ObjectMeta) -> bool {
        m.resource_version.as_deref() == Some(self.1.as_str()) && m.uid == self.0
    }
}

/// One route's memoised results.
struct Slot {
    version: Version,
    view: Arc<RouteView>,
    /// What its rules turn into, for the current [`World`].
    built: Option<Arc<Built>>,
}

/// The versions of every object route rules can reference; `None` when one
/// of them has no version (then nothing built is kept).
#[derive(Default)]
struct World(Option<Vec<(Kind, ObjectKey, Version)>>);

impl World {
    /// Every object route rules can reference, in a fixed order.
    fn objects(s: &Snapshot) -> impl Iterator<Item = (Kind, &ObjectKey, &ObjectMeta)> {
        fn of<T: kube_core::Resource>(
            kind: Kind,
            m: &BTreeMap<ObjectKey, Arc<T>>,
        ) -> impl Iterator<Item = (Kind, &ObjectKey, &ObjectMeta)> {
            m.iter().map(move |(k, o)| (kind, k, o.meta()))
        }
        of(Kind::Service, &s.services)
            .chain(of(Kind::EndpointSlice, &s.endpoint_slices))
            .chain(of(Kind::Secret, &s.secrets))
            .chain(of(Kind::ConfigMap, &s.config_maps))
            .chain(of(Kind::Namespace, &s.namespaces))
            .chain(of(Kind::ReferenceGrant, &s.reference_grants))
            .chain(of(Kind::BackendTLSPolicy, &s.backend_tls_policies))
    }

    fn of(s: &Snapshot) -> World {
        World(
            World::objects(s)
                .map(|(kind, k, m)| Some((kind, k.clone(), Version::of(m)?)))
                .collect(),
        )
    }

    /// Whether `s` holds exactly the versions this world was made of (and
    /// each has one), compared in place: no copy of the world is made on a
    /// translation where none of these objects changed.
    fn is_of(&self, s: &Snapshot) -> bool {
        let Some(v) = &self.0 else { return false };
        let mut objects = World::objects(s);
        v.iter().all(|(kind, key, ver)| {
            objects
                .next()
                .is_some_and(|(k, o, m)| k == *kind && o == key && ver.is(m))
        }) && objects.next().is_none()
    }
}

/// Results kept from one translation for the next; see the module docs.
#[derive(Default)]
pub struct Memo {
    /// By kind, then key (looked up by reference: no key is copied for a
    /// route found in the memo).
    ///
    /// foldhash: every route is looked up on every translation (with SipHash
    /// the lookups were ≈ 20 % of route attachment's profile samples).
    slots: HashMap<Kind, HashMap<ObjectKey, Slot, foldhash::fast::RandomState>>,
    world: World,
    /// Views and builds computed (not found in the memo), for tests and logs.
    misses: usize,
}

impl std::fmt::Debug for Memo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memo")
            .field(
                "routes",
                &self.slots.values().map(HashMap::len).sum::<usize>(),
            )
            .field("misses", &self.misses)
            .finish()
    }
}

impl Memo {
    /// An empty memo.
    pub fn new() -> Self {
        Memo::default()
    }

    /// Views and builds computed since the memo was created (those found in
    /// the memo are not counted).
    pub fn misses(&self) -> usize {
        self.misses
    }

    /// Start a translation of `s`: forget builds if a referenceable object
    /// changed, and entries of routes the snapshot no longer holds.
    pub(crate) fn begin(&mut self, s: &Snapshot) {
        if !self.world.is_of(s) {
            self.slots
                .values_mut()
                .flat_map(|m| m.values_mut())
                .for_each(|e| e.built = None);
            self.world = World::of(s);
        }
        for (kind, slots) in self.slots.iter_mut() {
            slots.retain(|key, _| match kind {
                Kind::HTTPRoute => s.http_routes.contains_key(key),
                Kind::GRPCRoute => s.grpc_routes.contains_key(key),
                Kind::TLSRoute => s.tls_routes.contains_key(key),
                Kind::TCPRoute => s.tcp_routes.contains_key(key),
                Kind::UDPRoute => s.udp_routes.contains_key(key),
                _ => false,
            });
        }
    }

    /// The view of a route object, computed once per version of the object.
    pub(crate) fn view<T: RouteObject>(
        &mut self,
        kind: Kind,
        key: &ObjectKey,
        o: &T,
    ) -> Arc<RouteView> {
        let slots = self.slots.entry(kind).or_default();
        if let Some(e) = slots.get(key)
            && e.version.is(o.meta())
        {
            return e.view.clone();
        }
        self.misses += 1;
        let view = Arc::new(o.view());
        match Version::of(o.meta()) {
            Some(version) => {
                slots.insert(
                    key.clone(),
                    Slot {
                        version,
                        view: view.clone(),
                        built: None,
                    },
                );
            }
            None => {
                slots.remove(key);
            }
        }
        view
    }

    /// What a route's rules turn into, computed once per version of the
    /// route and of the world.
    pub(crate) fn built(
        &mut self,
        kind: Kind,
        key: &ObjectKey,
        f: impl FnOnce() -> Built,
    ) -> Arc<Built> {
        let misses = &mut self.misses;
        // The slot's view was looked up (and the slot dropped if stale) by
        // `view` earlier in this same translation.
        match self.slots.get_mut(&kind).and_then(|m| m.get_mut(key)) {
            Some(e) if self.world.0.is_some() => e
                .built
                .get_or_insert_with(|| {
                    *misses += 1;
                    Arc::new(f())
                })
                .clone(),
            _ => Arc::new(f()),
        }
    }
}
