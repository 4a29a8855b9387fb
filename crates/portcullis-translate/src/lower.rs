//! IR lowering: the served listeners of accepted Gateways, grouped per bound
//! socket (address, port, transport), most specific hostname first; at equal
//! specificity, listeners of Gateways derived from Ingresses (labelled
//! [`INGRESS_CLASS_LABEL`]) come after the others, so on a socket shared by
//! an Ingress and Gateway API listeners, a host a Gateway API listener
//! serves is served by it (the Gateway API wins).

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};

use portcullis_ir as ir;
use portcullis_store::ObjectKey;

use crate::gateway::{ListenerState, Owner, Proto};

/// The ports being built, keyed by socket and transport (a TCP and a UDP
/// listener may share a port number).
#[derive(Default)]
pub(crate) struct Ports(
    BTreeMap<(SocketAddr, bool), ir::Port>,
    /// Owners (`namespace/name` of a Gateway) derived from Ingresses.
    BTreeSet<String>,
);

/// The label of a Gateway derived from Ingresses (its IngressClass), as
/// `portcullis_import::serve::CLASS_LABEL` sets it.
pub const INGRESS_CLASS_LABEL: &str = "portcullis.dev/ingress-class";

impl Ports {
    /// Add the programmed listeners of the accepted Gateway `gateway`, bound
    /// at `ip`; `derived` when it was derived from Ingresses.
    pub(crate) fn add(
        &mut self,
        gateway: &ObjectKey,
        derived: bool,
        ip: IpAddr,
        listeners: Vec<ListenerState>,
    ) {
        if derived {
            self.1.insert(gateway.to_string());
        }
        for l in listeners {
            if !l.programmed() {
                continue;
            }
            let proto = l.protocol.expect("attachable");
            let bind = SocketAddr::new(ip, l.spec.port as u16);
            let port_proto = match proto {
                Proto::Http => ir::PortProtocol::Http,
                Proto::Https => ir::PortProtocol::Https,
                Proto::Tls => ir::PortProtocol::Tls,
                Proto::Tcp => ir::PortProtocol::Tcp,
                Proto::Udp => ir::PortProtocol::Udp,
            };
            let owner = match &l.owner {
                Owner::Gateway => gateway.to_string(),
                Owner::ListenerSet(k) => format!("{k} (ListenerSet)"),
            };
            let port = self
                .0
                .entry((bind, proto == Proto::Udp))
                .or_insert_with(|| ir::Port {
                    bind,
                    protocol: port_proto,
                    listeners: vec![],
                    client: None,
                });
            if port.client.is_none() && matches!(proto, Proto::Http | Proto::Https) {
                port.client = l.client_conn.clone();
            }
            if port_proto == ir::PortProtocol::Tls {
                port.protocol = ir::PortProtocol::Tls;
            }
            port.listeners.push(ir::Listener {
                name: format!("{owner}/{}", l.spec.name),
                hostname: l.spec.hostname.clone(),
                tls: l.tls.clone(),
                http_routes: l.http_rules,
                l4_routes: l.l4_routes,
                client: l.client.clone(),
            });
        }
    }

    /// The configuration: every port, its listeners most specific first.
    pub(crate) fn finish(self) -> ir::Config {
        let derived = self.1;
        let mut ports: Vec<ir::Port> = self.0.into_values().collect();
        for p in &mut ports {
            p.listeners.sort_by_key(|l| {
                let owner = l.name.rsplit_once('/').map_or("", |(o, _)| o);
                (
                    hostname_rank(l.hostname.as_deref()),
                    derived.contains(owner),
                )
            });
        }
        ir::Config { ports }
    }
}

/// Most specific first: exact names, then wildcards by length, then none.
fn hostname_rank(h: Option<&str>) -> (u8, std::cmp::Reverse<usize>) {
    match h {
        Some(h) if !h.starts_with('*') => (0, std::cmp::Reverse(h.len())),
        Some(h) => (1, std::cmp::Reverse(h.len())),
        None => (2, std::cmp::Reverse(0)),
    }
}
