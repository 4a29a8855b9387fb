//! The test context (applying and patching manifests, cleanup), test
//! definitions, and selection by profile and feature as upstream does it.

use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use serde_json::Value;

use crate::certs::Certificates;
use crate::cluster::Cluster;
use crate::manifests::{self, Applier, ObjKey};
use crate::status::{Nn, poll};

pub type BoxFut<'a> = Pin<Box<dyn Future<Output = Result<()>> + 'a>>;
pub type TestFn = for<'a> fn(&'a mut Ctx) -> BoxFut<'a>;

/// One upstream conformance test.
pub struct TestDef {
    pub name: &'static str,
    pub features: &'static [&'static str],
    pub manifests: &'static [&'static str],
    pub provisional: bool,
    /// Why the test cannot run against a standalone gateway, if it cannot.
    pub needs_cluster: Option<&'static str>,
    /// `None` while the runner has no port of the test yet.
    pub run: Option<TestFn>,
}

/// A manifest file written for the current test.
struct Applied {
    path: PathBuf,
    docs: Vec<Value>,
}

/// What a test works with.
pub struct Ctx {
    pub admin: SocketAddr,
    /// Bound on each eventual-consistency wait.
    pub timeout: Duration,
    pub request_timeout: Duration,
    pub consecutive_successes: usize,
    pub controller_name: String,
    pub config_dir: PathBuf,
    pub upstream_dir: PathBuf,
    pub applier: Applier,
    pub cluster: Cluster,
    pub certs: Certificates,
    pub base_docs: Vec<Value>,
    /// The features the suite treats as supported (upstream SupportedFeatures).
    pub supported: BTreeSet<String>,
    applied: Vec<Applied>,
    scope: String,
}

impl Ctx {
    pub fn new(
        admin: SocketAddr,
        timeout: Duration,
        config_dir: PathBuf,
        upstream_dir: PathBuf,
        applier: Applier,
        cluster: Cluster,
        certs: Certificates,
    ) -> Self {
        Self {
            admin,
            timeout,
            request_timeout: Duration::from_secs(10),
            consecutive_successes: 3,
            controller_name: applier.controller_name.clone(),
            config_dir,
            upstream_dir,
            applier,
            cluster,
            certs,
            base_docs: Vec::new(),
            supported: BTreeSet::new(),
            applied: Vec::new(),
            scope: String::new(),
        }
    }

    pub fn begin(&mut self, test: &str) {
        self.scope = test.to_string();
    }

    /// Base and test documents, as written.
    pub fn all_docs(&self) -> Vec<Value> {
        let mut docs = self.base_docs.clone();
        for a in &self.applied {
            docs.extend(a.docs.iter().cloned());
        }
        docs
    }

    /// The written manifest of an object.
    pub fn spec_of(&self, kind: &str, nn: &Nn) -> Option<Value> {
        self.applied
            .iter()
            .rev()
            .flat_map(|a| a.docs.iter())
            .chain(self.base_docs.iter())
            .find(|d| {
                manifests::kind(d) == kind
                    && manifests::name(d) == nn.name
                    && manifests::namespace(d) == nn.namespace
            })
            .cloned()
    }

    /// Applies an upstream manifest (path relative to the upstream conformance
    /// directory, e.g. `tests/httproute-simple-same-namespace.yaml`).
    pub async fn apply(&mut self, manifest: &str) -> Result<()> {
        let path = self.upstream_dir.join("conformance").join(manifest);
        let docs = manifests::load_yaml_file(&path)?;
        let file_name = format!(
            "{}-{}",
            self.applied.len(),
            manifest.rsplit('/').next().unwrap_or(manifest)
        );
        self.apply_docs(&file_name, docs).await
    }

    /// Applies documents as one file of the current test.
    pub async fn apply_docs(&mut self, file_name: &str, mut docs: Vec<Value>) -> Result<()> {
        self.applier.prepare(&mut docs);
        let scope = self.scope.clone();
        let docs = self.cluster.apply(docs, &scope).await?;
        let path = self.config_dir.join("tests").join(file_name);
        manifests::write_docs(&path, &docs)?;
        self.applied.push(Applied { path, docs });
        Ok(())
    }

    /// Changes an applied object in place and rewrites its file (an update).
    pub fn patch(&mut self, kind: &str, nn: &Nn, f: impl FnOnce(&mut Value)) -> Result<()> {
        for applied in self.applied.iter_mut().rev() {
            if let Some(doc) = applied.docs.iter_mut().find(|d| {
                manifests::kind(d) == kind
                    && manifests::name(d) == nn.name
                    && manifests::namespace(d) == nn.namespace
            }) {
                f(doc);
                return manifests::write_docs(&applied.path, &applied.docs);
            }
        }
        bail!("{kind} {nn} was not applied by this test")
    }

    /// Removes one applied object (a delete) and rewrites its file.
    pub fn delete(&mut self, kind: &str, nn: &Nn) -> Result<()> {
        for applied in self.applied.iter_mut().rev() {
            let before = applied.docs.len();
            applied.docs.retain(|d| {
                !(manifests::kind(d) == kind
                    && manifests::name(d) == nn.name
                    && manifests::namespace(d) == nn.namespace)
            });
            if applied.docs.len() != before {
                return manifests::write_docs(&applied.path, &applied.docs);
            }
        }
        bail!("{kind} {nn} was not applied by this test")
    }

    /// Removes everything the current test applied and waits until its objects
    /// are gone from `/status`.
    pub async fn cleanup(&mut self) -> Result<()> {
        let sockets = self.test_gateway_sockets().await;
        let mut keys: BTreeSet<ObjKey> = BTreeSet::new();
        for applied in self.applied.drain(..) {
            keys.extend(manifests::status_keys(&applied.docs));
            if applied.path.exists() {
                std::fs::remove_file(&applied.path)
                    .with_context(|| format!("removing {}", applied.path.display()))?;
            }
        }
        let scope = self.scope.clone();
        self.cluster.remove_scope(&scope).await;
        poll(
            self,
            "cleanup",
            Duration::from_secs(15),
            Duration::from_millis(100),
            |snap| {
                let left: Vec<String> = keys
                    .iter()
                    .filter(|k| {
                        snap.find(
                            &k.kind,
                            &Nn {
                                namespace: k.namespace.clone(),
                                name: k.name.clone(),
                            },
                        )
                        .is_some()
                    })
                    .map(|k| k.to_string())
                    .collect();
                if left.is_empty() {
                    Ok(())
                } else {
                    Err(format!("still present: {}", left.join(", ")))
                }
            },
        )
        .await?;
        wait_sockets_released(&sockets).await;
        Ok(())
    }

    /// The (address, port, UDP?) of every listener of the Gateways this test
    /// applied, as they are bound now.
    async fn test_gateway_sockets(&self) -> Vec<(std::net::IpAddr, u16, bool)> {
        let Ok(objects) = crate::portcullis::status(self.admin).await else {
            return Vec::new();
        };
        let snap = crate::status::Snapshot(objects);
        let mut out = Vec::new();
        for doc in self.applied.iter().flat_map(|a| a.docs.iter()) {
            if manifests::kind(doc) != "Gateway" {
                continue;
            }
            let nn = Nn {
                namespace: manifests::namespace(doc).to_string(),
                name: manifests::name(doc).to_string(),
            };
            let Some(ip) = snap
                .find("Gateway", &nn)
                .and_then(|g| crate::status::arr(g, "/status/addresses").first().cloned())
                .and_then(|a| {
                    a.get("value")
                        .and_then(Value::as_str)
                        .and_then(|v| v.parse().ok())
                })
            else {
                continue;
            };
            for l in crate::status::arr(doc, "/spec/listeners") {
                let port = l.get("port").and_then(Value::as_u64).unwrap_or(0) as u16;
                let udp = l.get("protocol").and_then(Value::as_str) == Some("UDP");
                out.push((ip, port, udp));
            }
        }
        out
    }

    /// A Secret's or CA ConfigMap's certificate PEM (`namespace/name`).
    pub fn cert_pem(&self, key: &str) -> Result<String> {
        self.certs
            .pems
            .get(key)
            .cloned()
            .with_context(|| format!("no generated certificate {key}"))
    }
}

/// Conformance profiles (upstream utils/suite/profiles.go).
pub struct Profile {
    pub name: &'static str,
    pub core: &'static [&'static str],
    pub extended: &'static [&'static str],
}

const GATEWAY_EXTENDED: &[&str] = &[
    "GatewayPort8080",
    "GatewayStaticAddresses",
    "GatewayHTTPListenerIsolation",
    "GatewayHTTPSListenerDetectMisdirectedRequests",
    "GatewayInfrastructurePropagation",
    "GatewayAddressEmpty",
    "GatewayBackendClientCertificate",
    "GatewayFrontendClientCertificateValidation",
    "GatewayFrontendClientCertificateValidationInsecureFallback",
    "ListenerSet",
];

const HTTP_EXTENDED: &[&str] = &[
    "GatewayPort8080",
    "GatewayStaticAddresses",
    "GatewayHTTPListenerIsolation",
    "GatewayHTTPSListenerDetectMisdirectedRequests",
    "GatewayInfrastructurePropagation",
    "GatewayAddressEmpty",
    "GatewayBackendClientCertificate",
    "GatewayFrontendClientCertificateValidation",
    "GatewayFrontendClientCertificateValidationInsecureFallback",
    "ListenerSet",
    "HTTPRouteDestinationPortMatching",
    "HTTPRouteBackendRequestHeaderModification",
    "HTTPRouteQueryParamMatching",
    "HTTPRouteMethodMatching",
    "HTTPRouteResponseHeaderModification",
    "HTTPRoutePortRedirect",
    "HTTPRouteSchemeRedirect",
    "HTTPRoutePathRedirect",
    "HTTPRouteHostRewrite",
    "HTTPRoutePathRewrite",
    "HTTPRouteRequestMirror",
    "HTTPRouteRequestMultipleMirrors",
    "HTTPRouteRequestPercentageMirror",
    "HTTPRouteRequestTimeout",
    "HTTPRouteBackendTimeout",
    "HTTPRouteParentRefPort",
    "HTTPRouteBackendProtocolH2C",
    "HTTPRouteBackendProtocolWebSocket",
    "HTTPRouteNamedRouteRule",
    "HTTPRouteCORS",
    "HTTPRoute303RedirectStatusCode",
    "HTTPRoute307RedirectStatusCode",
    "HTTPRoute308RedirectStatusCode",
    "HTTPRouteRetry",
    "HTTPRouteRetryBackendTimeout",
    "HTTPRouteRetryConnectionError",
    "BackendTLSPolicy",
    "BackendTLSPolicySANValidation",
];

const TLS_EXTENDED: &[&str] = &[
    "GatewayPort8080",
    "GatewayStaticAddresses",
    "GatewayHTTPListenerIsolation",
    "GatewayHTTPSListenerDetectMisdirectedRequests",
    "GatewayInfrastructurePropagation",
    "GatewayAddressEmpty",
    "GatewayBackendClientCertificate",
    "GatewayFrontendClientCertificateValidation",
    "GatewayFrontendClientCertificateValidationInsecureFallback",
    "ListenerSet",
    "TLSRouteModeTerminate",
    "TLSRouteModeMixed",
];

pub const PROFILES: &[Profile] = &[
    Profile {
        name: "GATEWAY-HTTP",
        core: &["Gateway", "ReferenceGrant", "HTTPRoute"],
        extended: HTTP_EXTENDED,
    },
    Profile {
        name: "GATEWAY-GRPC",
        core: &["Gateway", "ReferenceGrant", "GRPCRoute"],
        extended: GATEWAY_EXTENDED,
    },
    Profile {
        name: "GATEWAY-TLS",
        core: &["Gateway", "ReferenceGrant", "TLSRoute"],
        extended: TLS_EXTENDED,
    },
    Profile {
        name: "GATEWAY-TCP",
        core: &["Gateway", "TCPRoute", "ReferenceGrant"],
        extended: GATEWAY_EXTENDED,
    },
    Profile {
        name: "GATEWAY-UDP",
        core: &["Gateway", "UDPRoute", "ReferenceGrant"],
        extended: GATEWAY_EXTENDED,
    },
];

const ROUTE_FEATURES: &[&str] = &["HTTPRoute", "GRPCRoute", "TLSRoute", "TCPRoute", "UDPRoute"];

pub fn profile(name: &str) -> Option<&'static Profile> {
    let upper = name.trim().to_ascii_uppercase();
    PROFILES.iter().find(|p| p.name == upper)
}

/// Whether a test belongs to a profile: upstream's rule (every feature of the
/// test is a core or extended feature of the profile), widened so that a test
/// whose features reach beyond every single profile (e.g. GRPCRouteNamedRule,
/// HTTPRouteDisallowedKind) still belongs to the profile of a route kind it uses.
pub fn in_profile(test: &TestDef, p: &Profile) -> bool {
    let all = test
        .features
        .iter()
        .all(|f| p.core.contains(f) || p.extended.contains(f));
    if all {
        return true;
    }
    let in_any = PROFILES.iter().any(|q| {
        test.features
            .iter()
            .all(|f| q.core.contains(f) || q.extended.contains(f))
    });
    !in_any
        && test
            .features
            .iter()
            .any(|f| ROUTE_FEATURES.contains(f) && p.core.contains(f))
}

/// Why a test is skipped, or `None` to run it.
pub fn skip_reason(
    test: &TestDef,
    supported: &BTreeSet<String>,
    all_features: bool,
    skip_provisional: bool,
) -> Option<String> {
    if skip_provisional && test.provisional {
        return Some("provisional test skipped".into());
    }
    if let Some(reason) = test.needs_cluster {
        return Some(format!("needs a real cluster: {reason}"));
    }
    if test.run.is_none() {
        return Some("not implemented in the runner yet".into());
    }
    if !all_features {
        for f in test.features {
            if !supported.contains(*f) {
                return Some(format!("feature {f} not supported"));
            }
        }
    }
    None
}

/// Test isolation: waits (bounded) until the listening sockets of the removed
/// Gateways are released, so that the next test's Gateway, which may get the
/// same pool address, can bind them. Like upstream's TestIsolation pause.
async fn wait_sockets_released(sockets: &[(std::net::IpAddr, u16, bool)]) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    for &(ip, port, udp) in sockets {
        loop {
            let free = if udp {
                std::net::UdpSocket::bind((ip, port)).is_ok()
            } else {
                std::net::TcpListener::bind((ip, port)).is_ok()
            };
            if free || tokio::time::Instant::now() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(features: &'static [&'static str]) -> TestDef {
        TestDef {
            name: "T",
            features,
            manifests: &[],
            provisional: false,
            needs_cluster: None,
            run: None,
        }
    }

    #[test]
    fn profiles_follow_upstream_membership() {
        let http = profile("gateway-http").unwrap();
        let grpc = profile("GATEWAY-GRPC").unwrap();
        let tls = profile("gateway-tls").unwrap();
        assert!(in_profile(&def(&["Gateway"]), http));
        assert!(in_profile(&def(&["Gateway"]), tls));
        assert!(in_profile(
            &def(&["Gateway", "HTTPRoute", "HTTPRouteCORS"]),
            http
        ));
        assert!(!in_profile(&def(&["Gateway", "HTTPRoute"]), grpc));
        // Outside every profile: falls back to the route kinds it uses.
        let disallowed = def(&["Gateway", "HTTPRoute", "TLSRoute"]);
        assert!(in_profile(&disallowed, http));
        assert!(in_profile(&disallowed, tls));
        assert!(in_profile(
            &def(&["Gateway", "GRPCRoute", "GRPCRouteNamedRouteRule"]),
            grpc
        ));
    }

    #[test]
    fn unsupported_features_skip() {
        let mut t = def(&["Gateway", "HTTPRouteCORS"]);
        t.run = Some(|_ctx| Box::pin(async { Ok(()) }));
        let supported: BTreeSet<String> = ["Gateway".to_string()].into();
        assert_eq!(
            skip_reason(&t, &supported, false, false).as_deref(),
            Some("feature HTTPRouteCORS not supported")
        );
        assert_eq!(skip_reason(&t, &supported, true, false), None);
    }
}
