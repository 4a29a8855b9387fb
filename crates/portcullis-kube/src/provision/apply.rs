//! Server-side apply of provisioned objects, skipping objects whose desired
//! state was already applied and that nobody changed since (the API server
//! would no-op them anyway, but each would still cost a request per
//! translation). An object deleted or edited since it was applied is applied
//! again ([`super::drift`]).

use std::collections::HashMap;

use kube::api::{ApiResource, DynamicObject, Patch, PatchParams};
use kube::{Api, Client};
use serde_json::Value;

use super::drift::{Key, Live};

/// Applies provisioned objects with the `portcullis` field manager.
pub struct Provisioner {
    client: Client,
    /// What was applied, the version the API server answered, and whether
    /// the watch has shown the object since (before that, a missing object is
    /// the watch lagging, not a deletion).
    applied: HashMap<Key, (Value, Live, bool)>,
}

impl Provisioner {
    /// A provisioner with nothing applied yet.
    pub fn new(client: Client) -> Self {
        Provisioner {
            client,
            applied: HashMap::new(),
        }
    }

    /// Forget what was applied (after regaining leadership, apply everything again).
    pub fn reset(&mut self) {
        self.applied.clear();
    }

    /// Apply every object that differs from what was applied last, or whose
    /// live version (`live`: `None` when absent) moved since; returns how many were sent.
    pub async fn apply(&mut self, objects: &[Value], live: impl Fn(&Key) -> Option<Live>) -> usize {
        let mut sent = 0;
        for obj in objects {
            let kind = obj["kind"].as_str().unwrap_or_default().to_string();
            let ns = obj["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let name = obj["metadata"]["name"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let key = (kind.clone(), ns.clone(), name.clone());
            let Some(ar) = resource(&kind) else { continue };
            let api: Api<DynamicObject> = Api::namespaced_with(self.client.clone(), &ns, &ar);
            if let Some((done, at, confirmed)) = self.applied.get_mut(&key)
                && done == obj
            {
                let now = live(&key);
                let same = now.as_ref().is_some_and(|l| {
                    if kind == "Deployment" {
                        l.generation == at.generation
                    } else {
                        l.resource_version == at.resource_version
                    }
                });
                // Once the watch has shown the object since the apply, its
                // absence is a deletion. Before that it may be the watch
                // lagging, or a deletion the watch showed before this pass
                // looked: the API server says which.
                if now.is_some() {
                    *confirmed = true;
                }
                if same {
                    continue;
                }
                if !*confirmed {
                    match crate::bounded(api.get_opt(&name)).await {
                        Ok(None) => {}
                        Ok(Some(_)) => continue,
                        Err(e) => {
                            tracing::warn!(%kind, object = %format!("{ns}/{name}"), "cannot read: {e}");
                            continue;
                        }
                    }
                }
                tracing::info!(%kind, object = %format!("{ns}/{name}"), "deleted or changed by someone else: applying again");
            }
            // What the watch shows now: when the apply changes nothing (same
            // resourceVersion back), the watch has already shown its result.
            let before = live(&key);
            sent += 1;
            match crate::bounded(api.patch(
                &name,
                &PatchParams::apply(crate::FIELD_MANAGER).force(),
                &Patch::Apply(obj),
            ))
            .await
            {
                Ok(o) => {
                    tracing::info!(%kind, object = %format!("{ns}/{name}"), "provisioned");
                    let at = Live {
                        resource_version: o.metadata.resource_version.clone().unwrap_or_default(),
                        generation: o.metadata.generation.unwrap_or(0),
                    };
                    let seen = before
                        .as_ref()
                        .is_some_and(|b| b.resource_version == at.resource_version);
                    self.applied.insert(key, (obj.clone(), at, seen));
                }
                Err(e) => {
                    tracing::warn!(%kind, object = %format!("{ns}/{name}"), "cannot apply: {e}")
                }
            }
        }
        sent
    }
}

fn resource(kind: &str) -> Option<ApiResource> {
    let (group, version, plural) = match kind {
        "ServiceAccount" => ("", "v1", "serviceaccounts"),
        "Service" => ("", "v1", "services"),
        "ConfigMap" => ("", "v1", "configmaps"),
        "Deployment" => ("apps", "v1", "deployments"),
        _ => return None,
    };
    let api_version = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    Some(ApiResource {
        group: group.into(),
        version: version.into(),
        api_version,
        kind: kind.into(),
        plural: plural.into(),
    })
}
