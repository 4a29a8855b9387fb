//! [`Memo`]: what one translation keeps for the next, so that a change to one
//! route does not redo the work of every other route.
//!
//! The memo is transparent: [`crate::translate_with`] gives exactly the output
//! of [`crate::translate`] for the same input, whatever the memo holds.
//! Entries are keyed by the identity of the snapshot's `Arc`'d objects: the
//! memo holds a `Weak` to each object it has an entry for, which keeps the
//! allocation (and so the address used as key) from being reused by another
//! object. A source that shares unchanged objects across snapshots (as the
//! file source does) gets every unchanged route from the memo.
//!
//! What is kept per route:
//! - its view (metadata and spec in the shape translation reads), a pure
//!   function of the route object;
//! - what its rules turn into ([`Built`]: IR rules, unresolved references,
//!   invalid rules), which also depends on the objects rules reference
//!   (Services, EndpointSlices, Secrets, ConfigMaps, Namespaces,
//!   ReferenceGrants, BackendTLSPolicies): kept only while every one of those
//!   is the very same object as when it was computed.

use std::any::Any;
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Weak};

use portcullis_store::{Kind, ObjectKey, Snapshot};

use crate::routes::{Built, RouteObject, RouteView};

/// One route's memoised results.
struct Slot {
    /// Pins the object's allocation while the entry exists.
    object: Weak<dyn Any + Send + Sync>,
    /// Its view; `None` if it could not be decoded.
    view: Option<Arc<RouteView>>,
    /// What its rules turn into, for the current [`World`].
    built: Option<Arc<Built>>,
}

/// The objects route rules can reference, by identity.
#[derive(Default, PartialEq)]
struct World(Vec<(Kind, ObjectKey, usize)>);

fn addr<T>(o: &Arc<T>) -> usize {
    Arc::as_ptr(o) as *const () as usize
}

impl World {
    fn of(s: &Snapshot) -> World {
        fn add<T>(
            out: &mut Vec<(Kind, ObjectKey, usize)>,
            kind: Kind,
            m: &BTreeMap<ObjectKey, Arc<T>>,
        ) {
            out.extend(m.iter().map(|(k, o)| (kind, k.clone(), addr(o))));
        }
        let mut v = Vec::new();
        add(&mut v, Kind::Service, &s.services);
        add(&mut v, Kind::EndpointSlice, &s.endpoint_slices);
        add(&mut v, Kind::Secret, &s.secrets);
        add(&mut v, Kind::ConfigMap, &s.config_maps);
        add(&mut v, Kind::Namespace, &s.namespaces);
        add(&mut v, Kind::ReferenceGrant, &s.reference_grants);
        add(&mut v, Kind::BackendTLSPolicy, &s.backend_tls_policies);
        World(v)
    }
}

/// Results kept from one translation for the next; see the module docs.
#[derive(Default)]
pub struct Memo {
    slots: HashMap<(Kind, usize), Slot>,
    world: World,
    /// Views and builds computed (not found in the memo), for tests and logs.
    misses: usize,
}

impl std::fmt::Debug for Memo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memo")
            .field("routes", &self.slots.len())
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
    /// changed, and entries of objects no snapshot holds any more.
    pub(crate) fn begin(&mut self, s: &Snapshot) {
        let world = World::of(s);
        if world != self.world {
            self.slots.values_mut().for_each(|e| e.built = None);
            self.world = world;
        }
        self.slots.retain(|_, e| e.object.strong_count() > 0);
    }

    /// The view of a route object, computed once per object.
    pub(crate) fn view<T: RouteObject>(
        &mut self,
        kind: Kind,
        o: &Arc<T>,
    ) -> (usize, Option<Arc<RouteView>>) {
        let a = addr(o);
        if let Some(e) = self.slots.get(&(kind, a)) {
            return (a, e.view.clone());
        }
        self.misses += 1;
        let view = Some(Arc::new(o.view()));
        let object: Arc<dyn Any + Send + Sync> = o.clone();
        self.slots.insert(
            (kind, a),
            Slot {
                object: Arc::downgrade(&object),
                view: view.clone(),
                built: None,
            },
        );
        (a, view)
    }

    /// What a route's rules turn into, computed once per object and world.
    pub(crate) fn built(&mut self, kind: Kind, a: usize, f: impl FnOnce() -> Built) -> Arc<Built> {
        let misses = &mut self.misses;
        match self.slots.get_mut(&(kind, a)) {
            Some(e) => e
                .built
                .get_or_insert_with(|| {
                    *misses += 1;
                    Arc::new(f())
                })
                .clone(),
            None => Arc::new(f()),
        }
    }
}
