//! Gateway addresses (`spec.addresses`; `status.addresses`): an explicit
//! `IPAddress`, else one from the address pool (kept stable across
//! translations), else the bind address.

use std::collections::BTreeSet;
use std::net::IpAddr;

use crate::Input;
use crate::conditions::*;
use crate::gateway::GatewayState;

/// Give each Gateway its address: `spec.addresses`, else the pool (stable), else the bind address.
pub(crate) fn assign_addresses(input: &Input<'_>, gws: &mut [GatewayState]) {
    let mut used: BTreeSet<IpAddr> = BTreeSet::new();
    let mut pending = vec![];
    for (i, gw) in gws.iter_mut().enumerate() {
        let mut explicit = None;
        let mut problem = None;
        for a in &gw.spec.addresses {
            let t = a.type_.as_deref().unwrap_or("IPAddress");
            match (t, a.value.as_deref()) {
                ("IPAddress", Some(v)) if !v.is_empty() => match v.parse::<IpAddr>() {
                    Ok(ip) if explicit.is_none() => explicit = Some(ip),
                    Ok(_) => {}
                    Err(_) => {
                        problem = Some(Problem::new(
                            Reason::UnsupportedAddress,
                            format!("address {v:?} is not an IP address"),
                        ))
                    }
                },
                ("IPAddress", _) => {}
                (t, _) => {
                    problem = Some(Problem::new(
                        Reason::UnsupportedAddress,
                        format!("address type {t:?} is not supported; use IPAddress"),
                    ))
                }
            }
        }
        if let Some(p) = problem {
            gw.address = Err(p);
        } else if let Some(ip) = explicit {
            used.insert(ip);
            gw.address = Ok(ip);
        } else if input.options.address_pool.is_some() {
            gw.requested_pool = true;
            pending.push(i);
        } else {
            gw.address = Ok(input.options.bind_address);
        }
    }
    let Some(pool) = input.options.address_pool else {
        return;
    };
    // Keep previous assignments first, so that assignments are stable.
    let mut rest = vec![];
    for i in pending {
        match input.previous_addresses.get(&gws[i].key) {
            Some(ip) if pool.contains(ip) && !used.contains(ip) => {
                used.insert(*ip);
                gws[i].address = Ok(*ip);
            }
            _ => rest.push(i),
        }
    }
    let mut free = pool.hosts().filter(|ip| !used.contains(ip));
    for i in rest {
        gws[i].address = match free.next() {
            Some(ip) => Ok(ip),
            None => Err(Problem::new(
                Reason::AddressNotAssigned,
                format!("address pool {pool} is exhausted"),
            )),
        };
    }
}
