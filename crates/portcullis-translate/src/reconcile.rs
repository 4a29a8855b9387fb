//! [`Reconciler`]: the translation step both modes run on every change —
//! `portcullis run` (files) and `portcullis controller` (Kubernetes) — with
//! what one pass keeps for the next: the [`Memo`] and the pool addresses
//! given out. What each mode does with the output (apply it to the local
//! data plane, or stream it to provisioned proxies and write statuses) is
//! the mode's own; what a pass computes is this one function. Condition
//! transition times then follow one rule in both modes
//! ([`portcullis_store::status::TransitionTimes`]).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use portcullis_store::{ObjectKey, Snapshot};

use crate::{Input, Memo, Options, Output, translate_with};

/// Translation state kept across passes; see the module docs.
#[derive(Debug, Default)]
pub struct Reconciler {
    memo: Memo,
    addresses: BTreeMap<ObjectKey, IpAddr>,
}

impl Reconciler {
    /// A reconciler that has seen nothing yet.
    pub fn new() -> Self {
        Reconciler::default()
    }

    /// Translate `snapshot`, reusing the work of earlier passes for what did
    /// not change and keeping pool addresses stable. `bind_errors` are the
    /// data plane's, for `Programmed` (empty where the data plane is remote).
    pub fn translate(
        &mut self,
        snapshot: &Snapshot,
        options: &Options,
        bind_errors: &BTreeMap<SocketAddr, String>,
    ) -> Output {
        let input = Input {
            snapshot,
            options,
            previous_addresses: self.addresses.clone(),
            bind_errors: bind_errors.clone(),
        };
        let out = translate_with(&input, &mut self.memo);
        self.addresses.clone_from(&out.addresses);
        out
    }

    /// Every Gateway's address (pool assignments included) after the last pass.
    pub fn addresses(&self) -> &BTreeMap<ObjectKey, IpAddr> {
        &self.addresses
    }
}
