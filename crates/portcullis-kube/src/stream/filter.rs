//! One Gateway's part of the IR.
//!
//! In Kubernetes mode translation runs with an internal address pool, so
//! every Gateway gets its own (never bound) address and its listeners land
//! on their own ports in the IR, never merged with another Gateway's. A
//! Gateway's config is the ports bound to its address, rebound to
//! `0.0.0.0:<port>`: each Gateway runs in its own pods. Certificates live in
//! listeners, so a proxy only ever receives its own Gateway's.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use portcullis_ir::Config;
use portcullis_store::ObjectKey;

/// The internal pool that keeps Gateways apart in the IR (never bound, never shown in statuses).
pub const INTERNAL_POOL: &str = "127.128.0.0/9";

/// Split the IR by Gateway, given each Gateway's address from translation.
pub fn split(
    config: &Config,
    addresses: &BTreeMap<ObjectKey, IpAddr>,
) -> BTreeMap<ObjectKey, Config> {
    let mut out: BTreeMap<ObjectKey, Config> = addresses
        .keys()
        .map(|k| (k.clone(), Config::default()))
        .collect();
    let by_ip: BTreeMap<IpAddr, &ObjectKey> = addresses.iter().map(|(k, ip)| (*ip, k)).collect();
    for port in &config.ports {
        let Some(gw) = by_ip.get(&port.bind.ip()) else {
            continue;
        };
        let mut p = port.clone();
        p.bind = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port.bind.port());
        out.entry((*gw).clone()).or_default().ports.push(p);
    }
    out
}

/// Rebind every port of `config` to `ip` (the proxy's `--bind-address`).
pub fn rebind(mut config: Config, ip: IpAddr) -> Config {
    for p in &mut config.ports {
        p.bind.set_ip(ip);
    }
    config
}
