//! API discovery: which Gateway API kinds the API server serves, and at which version.
//!
//! The CRDs a cluster has installed decide what can be watched: the v1.6.1
//! standard channel serves TCPRoute, UDPRoute and TLSRoute at `v1` only (their
//! `v1alpha2`/`v1alpha3` versions are `served: false`), the experimental channel
//! serves them at every version, an older release may not have ListenerSet or
//! BackendTLSPolicy at all. Watching a version that is not served never lists,
//! so the controller asks the API server first (`GET /apis`, then
//! `GET /apis/gateway.networking.k8s.io/<version>` for each served version),
//! watches every kind at the most preferred version that serves it, and skips
//! the kinds that are not installed (logged, and shown by `/readyz`).
//!
//! Core kinds (Service, EndpointSlice, Secret, ConfigMap, Namespace) are always
//! served and not discovered.

use std::collections::BTreeMap;

use kube::Client;
use kube::api::ApiResource;
use portcullis_store::policy::PORTCULLIS_GROUP;
use portcullis_store::{GATEWAY_GROUP, Kind};

/// The Gateway API kinds the controller reads (from [`Kind::ALL`]).
pub fn gateway_kinds() -> impl Iterator<Item = Kind> {
    Kind::ALL.into_iter().filter(|k| k.is_gateway_api())
}

/// Portcullis' own kinds (group `portcullis.dev`, version `v1alpha1`).
fn portcullis_kinds() -> impl Iterator<Item = Kind> {
    Kind::ALL.into_iter().filter(|k| k.is_portcullis())
}

/// One served version of the group and the kinds it serves (`kind` → plural name).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServedVersion {
    /// The version, e.g. `v1`.
    pub version: String,
    /// Kinds served at this version, with their resource (plural) names.
    pub kinds: BTreeMap<String, String>,
}

/// Where each Gateway API kind is served, or why it is skipped.
#[derive(Clone, Debug, PartialEq)]
pub struct Served {
    resources: BTreeMap<Kind, ApiResource>,
}

impl Default for Served {
    /// Every kind at the version Portcullis' types are written for (what a
    /// cluster with the v1.6.1 experimental channel serves).
    fn default() -> Self {
        Served {
            resources: gateway_kinds()
                .chain(portcullis_kinds())
                .map(|k| (k, native_resource(k)))
                .collect(),
        }
    }
}

impl Served {
    /// Pick a version for every kind from the group's served versions, given
    /// in the API server's order of preference (preferred version first).
    /// Portcullis' own kinds are taken as served (see [`Served::discover`]).
    pub fn from_versions(versions: &[ServedVersion]) -> Served {
        let mut resources: BTreeMap<Kind, ApiResource> = portcullis_kinds()
            .map(|k| (k, native_resource(k)))
            .collect();
        for kind in gateway_kinds() {
            let found = versions
                .iter()
                .find_map(|v| v.kinds.get(kind.as_str()).map(|plural| (v, plural)));
            if let Some((v, plural)) = found {
                resources.insert(
                    kind,
                    ApiResource {
                        group: GATEWAY_GROUP.to_string(),
                        version: v.version.clone(),
                        api_version: format!("{GATEWAY_GROUP}/{}", v.version),
                        kind: kind.as_str().to_string(),
                        plural: plural.clone(),
                    },
                );
            }
        }
        Served { resources }
    }

    /// Ask the API server.
    pub async fn discover(client: &Client) -> Result<Served, kube::Error> {
        let groups = client.list_api_groups().await?;
        // Portcullis' own kinds: served only at the version of our types.
        let ours = groups.groups.iter().any(|g| {
            g.name == PORTCULLIS_GROUP && g.versions.iter().any(|v| v.version == "v1alpha1")
        });
        let mut own = BTreeMap::new();
        if ours {
            let list = client
                .list_api_group_resources(&format!("{PORTCULLIS_GROUP}/v1alpha1"))
                .await?;
            for kind in portcullis_kinds() {
                if list.resources.iter().any(|r| r.kind == kind.as_str()) {
                    own.insert(kind, native_resource(kind));
                }
            }
        }
        let mut served = Self::discover_gateway(client, groups).await?;
        for kind in portcullis_kinds() {
            if !own.contains_key(&kind) {
                served.resources.remove(&kind);
            }
        }
        Ok(served)
    }

    async fn discover_gateway(
        client: &Client,
        groups: k8s_openapi::apimachinery::pkg::apis::meta::v1::APIGroupList,
    ) -> Result<Served, kube::Error> {
        let Some(group) = groups.groups.into_iter().find(|g| g.name == GATEWAY_GROUP) else {
            return Ok(Served::from_versions(&[]));
        };
        // Preferred version first, then the rest in the order the server lists them
        // (which is Kubernetes' version priority: v1 > v1beta1 > v1alpha3 > v1alpha2).
        let preferred = group.preferred_version.as_ref().map(|p| p.version.clone());
        let mut order: Vec<String> = preferred.iter().cloned().collect();
        for v in &group.versions {
            if !order.contains(&v.version) {
                order.push(v.version.clone());
            }
        }
        let mut versions = vec![];
        for version in order {
            let list = client
                .list_api_group_resources(&format!("{GATEWAY_GROUP}/{version}"))
                .await?;
            let kinds = list
                .resources
                .into_iter()
                .filter(|r| !r.name.contains('/'))
                .map(|r| (r.kind, r.name))
                .collect();
            versions.push(ServedVersion { version, kinds });
        }
        Ok(Served::from_versions(&versions))
    }

    /// Where `kind` is served; `None` for a Gateway API kind that is not
    /// installed. Core kinds are always served.
    pub fn resource(&self, kind: Kind) -> Option<ApiResource> {
        if !kind.is_gateway_api() && !kind.is_portcullis() {
            return Some(native_resource(kind));
        }
        self.resources.get(&kind).cloned()
    }

    /// Whether `kind` can be watched.
    pub fn serves(&self, kind: Kind) -> bool {
        self.resource(kind).is_some()
    }

    /// The Gateway API kinds that are not installed.
    pub fn skipped(&self) -> Vec<Kind> {
        gateway_kinds()
            .chain(portcullis_kinds())
            .filter(|k| !self.resources.contains_key(k))
            .collect()
    }

    /// `Kind@version` of every served Gateway API kind, for logs.
    pub fn describe(&self) -> String {
        self.resources
            .iter()
            .map(|(k, r)| format!("{k}@{}", r.version))
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Readiness detail: empty when every kind is served.
    pub fn readiness_note(&self) -> String {
        let skipped = self.skipped();
        if skipped.is_empty() {
            return String::new();
        }
        let names: Vec<&str> = skipped.iter().map(|k| k.as_str()).collect();
        format!(
            "not watched (CRD not installed or no served version): {}\n",
            names.join(", ")
        )
    }
}

/// The `ApiResource` of a kind at the version Portcullis' types are written for.
pub fn native_resource(kind: Kind) -> ApiResource {
    let api_version = kind.api_version().to_string();
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g.to_string(), v.to_string()),
        None => (String::new(), api_version.clone()),
    };
    let plural = match kind {
        Kind::GatewayClass => "gatewayclasses".to_string(),
        Kind::BackendTLSPolicy => "backendtlspolicies".to_string(),
        Kind::SecurityPolicy => "securitypolicies".to_string(),
        Kind::BackendTrafficPolicy => "backendtrafficpolicies".to_string(),
        Kind::ClientTrafficPolicy => "clienttrafficpolicies".to_string(),
        Kind::EndpointSlice => "endpointslices".to_string(),
        Kind::Ingress => "ingresses".to_string(),
        Kind::IngressClass => "ingressclasses".to_string(),
        k => format!("{}s", k.as_str().to_ascii_lowercase()),
    };
    ApiResource {
        group,
        version,
        api_version,
        kind: kind.as_str().to_string(),
        plural,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(v: &str, kinds: &[&str]) -> ServedVersion {
        ServedVersion {
            version: v.into(),
            kinds: kinds
                .iter()
                .map(|k| {
                    let plural = native_resource(Kind::parse(GATEWAY_GROUP, k).unwrap()).plural;
                    (k.to_string(), plural)
                })
                .collect(),
        }
    }

    const STANDARD_V1: &[&str] = &[
        "GatewayClass",
        "Gateway",
        "ListenerSet",
        "HTTPRoute",
        "GRPCRoute",
        "TLSRoute",
        "TCPRoute",
        "UDPRoute",
        "ReferenceGrant",
        "BackendTLSPolicy",
    ];

    #[test]
    fn standard_channel_watches_l4_routes_at_v1() {
        // v1.6.1 standard: v1 serves everything; v1beta1 a few kinds; v1alpha2 nothing.
        let served = Served::from_versions(&[
            version("v1", STANDARD_V1),
            version(
                "v1beta1",
                &["GatewayClass", "Gateway", "HTTPRoute", "ReferenceGrant"],
            ),
        ]);
        assert!(served.skipped().is_empty());
        for k in [
            Kind::TCPRoute,
            Kind::UDPRoute,
            Kind::TLSRoute,
            Kind::HTTPRoute,
        ] {
            assert_eq!(served.resource(k).unwrap().version, "v1", "{k}");
        }
        assert_eq!(served.resource(Kind::TCPRoute).unwrap().plural, "tcproutes");
        assert_eq!(
            served.resource(Kind::BackendTLSPolicy).unwrap().api_version,
            "gateway.networking.k8s.io/v1"
        );
        assert_eq!(served.readiness_note(), "");
    }

    #[test]
    fn older_install_skips_missing_kinds() {
        // An install without the L4 routes and ListenerSet, TCPRoute served only at v1alpha2.
        let served = Served::from_versions(&[
            version("v1", &["GatewayClass", "Gateway", "HTTPRoute", "GRPCRoute"]),
            version("v1alpha2", &["TCPRoute"]),
        ]);
        assert_eq!(served.resource(Kind::TCPRoute).unwrap().version, "v1alpha2");
        assert_eq!(
            served.skipped(),
            vec![
                Kind::ListenerSet,
                Kind::TLSRoute,
                Kind::UDPRoute,
                Kind::ReferenceGrant,
                Kind::BackendTLSPolicy
            ]
        );
        assert!(served.readiness_note().contains("UDPRoute"));
        // Core kinds are always served.
        assert_eq!(served.resource(Kind::Service).unwrap().version, "v1");
        assert_eq!(
            served.resource(Kind::EndpointSlice).unwrap().api_version,
            "discovery.k8s.io/v1"
        );
    }

    #[test]
    fn no_gateway_api_at_all() {
        let served = Served::from_versions(&[]);
        assert_eq!(served.skipped().len(), gateway_kinds().count());
        assert!(!served.serves(Kind::Gateway));
        assert!(served.serves(Kind::Secret));
    }

    #[test]
    fn default_is_the_native_versions() {
        let served = Served::default();
        assert_eq!(served.resource(Kind::TCPRoute).unwrap().version, "v1alpha2");
        assert_eq!(served.resource(Kind::Gateway).unwrap().version, "v1");
    }
}
