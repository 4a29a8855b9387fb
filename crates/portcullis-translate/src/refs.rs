//! ReferenceGrant checks (GEP-709): a reference across namespaces is allowed
//! only when a ReferenceGrant in the target namespace lets it in.

use portcullis_store::Snapshot;

use crate::model::{Obj, ReferenceGrantSpec};

/// Every ReferenceGrant, decoded once.
pub(crate) struct Grants {
    grants: Vec<(String, ReferenceGrantSpec)>,
}

impl Grants {
    pub fn new(snapshot: &Snapshot) -> Self {
        let grants = snapshot
            .reference_grants
            .values()
            .map(|g| Obj::<ReferenceGrantSpec>::of(&g.metadata, &g.spec))
            .map(|g| (g.metadata.namespace, g.spec))
            .collect();
        Grants { grants }
    }

    /// Whether `from_kind` (of the Gateway API group) in `from_ns` may reference `to_kind` named `to_name` in `to_ns`.
    /// Same-namespace references are always allowed.
    pub fn allowed(
        &self,
        from_kind: &str,
        from_ns: &str,
        to_group: &str,
        to_kind: &str,
        to_ns: &str,
        to_name: &str,
    ) -> bool {
        self.allowed_from(
            portcullis_store::GATEWAY_GROUP,
            from_kind,
            from_ns,
            to_group,
            to_kind,
            to_ns,
            to_name,
        )
    }

    /// [`Grants::allowed`] for a referring kind of any group (`portcullis.dev` policies).
    #[allow(clippy::too_many_arguments)]
    pub fn allowed_from(
        &self,
        from_group: &str,
        from_kind: &str,
        from_ns: &str,
        to_group: &str,
        to_kind: &str,
        to_ns: &str,
        to_name: &str,
    ) -> bool {
        if from_ns == to_ns {
            return true;
        }
        self.grants.iter().any(|(ns, g)| {
            ns == to_ns
                && g.from
                    .iter()
                    .any(|f| f.group == from_group && f.kind == from_kind && f.namespace == from_ns)
                && g.to.iter().any(|t| {
                    t.group == to_group
                        && t.kind == to_kind
                        && t.name.as_deref().is_none_or(|n| n == to_name)
                })
        })
    }
}
