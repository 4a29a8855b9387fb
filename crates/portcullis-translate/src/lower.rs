//! IR lowering: the served listeners of accepted Gateways, grouped per bound
//! socket (address, port, transport), most specific hostname first.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use portcullis_ir as ir;
use portcullis_store::ObjectKey;

use crate::gateway::{ListenerState, Owner, Proto};

/// The ports being built, keyed by socket and transport (a TCP and a UDP
/// listener may share a port number).
#[derive(Default)]
pub(crate) struct Ports(BTreeMap<(SocketAddr, bool), ir::Port>);

impl Ports {
    /// Add the programmed listeners of the accepted Gateway `gateway`, bound at `ip`.
    pub(crate) fn add(&mut self, gateway: &ObjectKey, ip: IpAddr, listeners: Vec<ListenerState>) {
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
        let mut ports: Vec<ir::Port> = self.0.into_values().collect();
        for p in &mut ports {
            p.listeners
                .sort_by_key(|l| hostname_rank(l.hostname.as_deref()));
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
