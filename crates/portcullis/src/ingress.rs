//! Ingresses served directly in standalone mode: the `--ingress-http` and
//! `--ingress-https` flags, the derivation before translation
//! ([`portcullis_source::ingress::derive`]), and each served Ingress's
//! status after it: `loadBalancer`, `Accepted`, `PartiallyInvalid` (every
//! annotation or path not honoured, never silent) and `Conflicted` (a host
//! a Gateway API listener on the same socket takes: the Gateway API wins).

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;

use portcullis_dataplane::table::ListenerIndex;
use portcullis_ir::Config;
use portcullis_source::ingress::{Derived, ServeOptions, ServedIngress};
use portcullis_store::ingress_status::{
    AnnotationStatus, IngressStatus, LoadBalancer, LoadBalancerIngress, PortStatus,
};
use portcullis_store::status::{Condition, Status, Statuses};
use portcullis_store::{Kind, ObjectKey, ObjectRef, Snapshot};

/// Where Ingresses of Portcullis' IngressClasses are served.
#[derive(clap::Args, Debug, Clone)]
pub struct IngressArgs {
    /// Address and port of the HTTP listeners serving Ingresses of
    /// Portcullis' IngressClasses (controller `portcullis.dev/ingress-controller`).
    #[arg(long, default_value = "0.0.0.0:80")]
    pub ingress_http: SocketAddr,
    /// Address and port of their HTTPS listeners (`spec.tls`); same IP
    /// address as `--ingress-http`.
    #[arg(long, default_value = "0.0.0.0:443")]
    pub ingress_https: SocketAddr,
}

/// `--ingress-http` and `--ingress-https` that cannot be served together.
#[derive(Debug, thiserror::Error)]
pub enum IngressArgsError {
    /// The derived Gateway has one address for both.
    #[error(
        "--ingress-http {http} and --ingress-https {https} must have the same IP address (one Gateway per IngressClass serves both)"
    )]
    DifferentAddresses {
        /// `--ingress-http`.
        http: SocketAddr,
        /// `--ingress-https`.
        https: SocketAddr,
    },
    /// One socket cannot be both.
    #[error("--ingress-http and --ingress-https are both {0}")]
    SamePort(SocketAddr),
}

impl IngressArgs {
    /// The derivation's options.
    pub fn options(&self) -> Result<ServeOptions, IngressArgsError> {
        let (http, https) = (self.ingress_http, self.ingress_https);
        if http.ip() != https.ip() {
            return Err(IngressArgsError::DifferentAddresses { http, https });
        }
        if http == https {
            return Err(IngressArgsError::SamePort(http));
        }
        Ok(ServeOptions {
            http,
            https,
            provisioned_in: None,
        })
    }
}

/// Whether a listener's hostname pattern covers `host` (`""`: any host).
fn covers(pattern: Option<&str>, host: &str) -> bool {
    match pattern {
        None => true,
        Some(p) if host.is_empty() => p.is_empty(),
        Some(p) => match p.strip_prefix("*.") {
            Some(suffix) => host
                .strip_suffix(suffix)
                .is_some_and(|h| h.ends_with('.') && h.len() > 1),
            None => p.eq_ignore_ascii_case(host),
        },
    }
}

/// The hosts of an Ingress (`""` for rules without one and `defaultBackend`).
fn hosts(snapshot: &Snapshot, key: &ObjectKey) -> BTreeSet<String> {
    let Some(ing) = snapshot.ingresses.get(key) else {
        return BTreeSet::new();
    };
    let spec = ing.spec.clone().unwrap_or_default();
    let mut out: BTreeSet<String> = spec
        .rules
        .iter()
        .flatten()
        .map(|r| r.host.clone().unwrap_or_default())
        .collect();
    if spec.default_backend.is_some() {
        out.insert(String::new());
    }
    out
}

/// Hosts of a served Ingress that a listener of another Gateway takes on a
/// socket its own Gateway listens on: one sentence each.
fn conflicts(config: &Config, gateway: &str, hosts: &BTreeSet<String>) -> Vec<String> {
    let owner = |name: &str| name.rsplit_once('/').map_or("", |(o, _)| o).to_string();
    let mut out = vec![];
    for port in &config.ports {
        let ours: Vec<_> = port
            .listeners
            .iter()
            .filter(|l| owner(&l.name) == gateway)
            .collect();
        if ours.is_empty() {
            continue;
        }
        let index = ListenerIndex::new(&port.listeners);
        for h in hosts {
            if !ours.iter().any(|l| covers(l.hostname.as_deref(), h)) {
                continue;
            }
            // A request for no particular host: a name no listener names.
            let probe = if h.is_empty() {
                "ingress-probe.invalid".to_string()
            } else {
                h.replace('*', "ingress-probe")
            };
            let Some(l) = index.find(&probe).map(|i| &port.listeners[i]) else {
                continue;
            };
            if owner(&l.name) != gateway {
                let host = if h.is_empty() { "(any host)" } else { h };
                out.push(format!(
                    "host {host} on {}: listener {} serves it, not this Ingress (a Gateway API listener on the same address wins)",
                    port.bind, l.name
                ));
            }
        }
    }
    out
}

/// A condition of an Ingress.
fn cond(type_: &str, ok: bool, reason: &str, message: String, generation: i64) -> Condition {
    Condition::new(type_, ok, reason, message, generation)
}

/// The status of one served Ingress.
fn status_of(
    key: &ObjectKey,
    served: &ServedIngress,
    snapshot: &Snapshot,
    config: &Config,
    statuses: &Statuses,
    options: &ServeOptions,
) -> IngressStatus {
    let generation = snapshot
        .ingresses
        .get(key)
        .and_then(|i| i.metadata.generation)
        .unwrap_or(0);
    let gateway = served
        .objects
        .iter()
        .find(|o| o.kind == Kind::Gateway)
        .cloned();
    let gateway_status = gateway.as_ref().and_then(|g| match statuses.get(g) {
        Some(Status::Gateway(s)) => Some(s),
        _ => None,
    });
    let programmed = gateway_status.is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Programmed" && c.is_true())
    });
    let mut st = IngressStatus::default();
    let tls = snapshot
        .ingresses
        .get(key)
        .and_then(|i| i.spec.as_ref())
        .is_some_and(|s| s.tls.as_ref().is_some_and(|t| !t.is_empty()));
    if programmed && let Some(gs) = gateway_status {
        let mut ports = vec![PortStatus {
            port: options.http.port(),
            protocol: "TCP".into(),
        }];
        if tls {
            ports.push(PortStatus {
                port: options.https.port(),
                protocol: "TCP".into(),
            });
        }
        st.load_balancer = LoadBalancer {
            ingress: gs
                .addresses
                .iter()
                .map(|a| LoadBalancerIngress {
                    ip: a.value.clone(),
                    ports: ports.clone(),
                })
                .collect(),
        };
    }
    let routes: Vec<String> = served
        .objects
        .iter()
        .filter(|o| o.kind != Kind::Gateway)
        .map(ToString::to_string)
        .collect();
    st.conditions.push(match (&gateway, programmed) {
        (Some(g), true) => cond(
            "Accepted",
            true,
            "Accepted",
            format!(
                "served by Gateway {} (IngressClass {}) on {} and {}: {}",
                g.key,
                served.class,
                options.http,
                options.https,
                routes.join(", ")
            ),
            generation,
        ),
        (Some(g), false) => cond(
            "Accepted",
            false,
            "GatewayNotProgrammed",
            format!(
                "Gateway {} (IngressClass {}) is not programmed; see its status",
                g.key, served.class
            ),
            generation,
        ),
        (None, _) => cond(
            "Accepted",
            false,
            "NotServed",
            format!(
                "no Gateway serves IngressClass {}: {}",
                served.class,
                served.problems.join("; ")
            ),
            generation,
        ),
    });
    for e in &served.report.entries {
        st.annotations.push(AnnotationStatus {
            name: e.annotation.clone(),
            outcome: e.outcome.as_str().into(),
            result: e.result.clone(),
            difference: e.difference.clone(),
        });
    }
    // Everything not honoured (the same list Kubernetes mode puts in events).
    let not_honoured = portcullis_source::ingress::not_honoured(served, statuses);
    if !not_honoured.is_empty() {
        st.conditions.push(cond(
            "PartiallyInvalid",
            true,
            "NotHonoured",
            not_honoured.join("; "),
            generation,
        ));
    }
    if let Some(g) = &gateway {
        let lost = conflicts(config, &g.key.to_string(), &hosts(snapshot, key));
        if !lost.is_empty() {
            st.conditions.push(cond(
                "Conflicted",
                true,
                "HostServedByGatewayAPI",
                lost.join("; "),
                generation,
            ));
        }
    }
    st
}

/// Add the status of every served Ingress to `statuses` (after translation).
pub fn add_statuses(
    derived: &Derived,
    config: &Config,
    statuses: &mut Statuses,
    options: &ServeOptions,
) {
    add_statuses_of(
        &derived.ingresses,
        &derived.snapshot,
        config,
        statuses,
        options,
    );
}

/// [`add_statuses`], from the parts of a [`Derived`] (`snapshot` is its snapshot).
pub fn add_statuses_of(
    ingresses: &BTreeMap<ObjectKey, ServedIngress>,
    snapshot: &Snapshot,
    config: &Config,
    statuses: &mut Statuses,
    options: &ServeOptions,
) {
    for (key, served) in ingresses {
        let st = status_of(key, served, snapshot, config, statuses, options);
        statuses.insert(
            ObjectRef {
                kind: Kind::Ingress,
                key: key.clone(),
            },
            Status::Ingress(st),
        );
    }
}

/// The Ingress a derived object comes from (its `portcullis.dev/from`
/// annotation), to locate its problems in the Ingress's file.
pub fn origin(snapshot: &Snapshot, oref: &ObjectRef) -> Option<ObjectKey> {
    let o = snapshot.get(oref.kind, &oref.key)?;
    let from = o
        .meta()
        .annotations
        .as_ref()?
        .get(portcullis_source::ingress::FROM_ANNOTATION)?
        .clone();
    from.split(", ").find_map(|f| {
        let (ns, n) = f.strip_prefix("Ingress ")?.split_once('/')?;
        Some(ObjectKey::new(ns, n))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostname_patterns() {
        assert!(covers(None, "a.example.com"));
        assert!(covers(None, ""));
        assert!(covers(Some("a.example.com"), "a.example.com"));
        assert!(!covers(Some("a.example.com"), ""));
        assert!(covers(Some("*.example.com"), "a.example.com"));
        assert!(!covers(Some("*.example.com"), "example.com"));
    }

    #[test]
    fn addresses_must_share_an_ip() {
        let a = |h: &str, s: &str| IngressArgs {
            ingress_http: h.parse().unwrap(),
            ingress_https: s.parse().unwrap(),
        };
        assert!(a("127.0.0.1:80", "127.0.0.1:443").options().is_ok());
        assert!(a("127.0.0.1:80", "127.0.0.2:443").options().is_err());
        assert!(a("127.0.0.1:80", "127.0.0.1:80").options().is_err());
    }

    #[test]
    fn the_label_translation_orders_by_is_the_one_derivation_sets() {
        assert_eq!(
            portcullis_translate::INGRESS_CLASS_LABEL,
            portcullis_source::ingress::CLASS_LABEL
        );
    }
}
