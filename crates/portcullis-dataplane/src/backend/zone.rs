//! Zone-aware routing (BackendTrafficPolicy `loadBalancer.zoneAware.preferLocal`):
//! prefer the endpoints of the proxy's own zone (`--zone`,
//! `PORTCULLIS_ZONE`), spilling over to the other zones when the local ones
//! are too few or out of service.
//!
//! An endpoint is local when its EndpointSlice `hints.forZones` names the
//! proxy's zone, or, without hints, when its `zone` is the proxy's. Without
//! `force`, the local zone takes all the traffic while it has at least its
//! fair share of the endpoints in service (their number divided by the
//! number of zones: as Envoy, assuming the proxies are spread evenly over
//! the zones), else that fraction of it, the rest going to the other zones.
//! With `force`, all the traffic stays local while at least
//! `minEndpointsInZoneThreshold` local endpoints are in service. Nothing of
//! this applies below `minEndpointsThreshold` endpoints, without a zone for
//! the proxy, or when every endpoint is in one zone; and a request is
//! considered for it with `percentageEnabled` percent.

use std::borrow::Cow;
use std::collections::BTreeSet;

use portcullis_ir::Endpoint;
use portcullis_ir::traffic::ZoneAware;

use super::balance::random_below;

/// The zones of one backend's endpoints, compiled.
#[derive(Debug)]
pub struct Zones {
    /// Indices of the local endpoints, ascending.
    local: Box<[usize]>,
    /// Indices of the others, ascending.
    others: Box<[usize]>,
    /// Distinct zones among the endpoints.
    zone_count: usize,
    /// `force`: the least number of local endpoints in service to keep all
    /// the traffic local.
    force_min: Option<usize>,
    /// Share of requests considered, in percent.
    percent: u32,
}

/// Whether an endpoint is for `zone`.
fn is_local(e: &Endpoint, zone: &str) -> bool {
    if e.for_zones.is_empty() {
        e.zone.as_deref() == Some(zone)
    } else {
        e.for_zones.iter().any(|z| z == zone)
    }
}

impl Zones {
    /// Compile for `eps` (the endpoints in the set's order) and the proxy's
    /// `zone`; `None` when zone-aware routing cannot apply.
    pub fn new(cfg: &ZoneAware, zone: Option<&str>, eps: &[&Endpoint]) -> Option<Zones> {
        let zone = zone.filter(|z| !z.is_empty())?;
        let n = eps.len();
        if (n as u64) < cfg.min_endpoints.max(1) {
            return None;
        }
        let (local, others): (Vec<usize>, Vec<usize>) =
            (0..n).partition(|i| is_local(eps[*i], zone));
        let zones: BTreeSet<&str> = eps.iter().filter_map(|e| e.zone.as_deref()).collect();
        if local.is_empty() || others.is_empty() {
            return None;
        }
        Some(Zones {
            local: local.into(),
            others: others.into(),
            zone_count: zones.len().max(2),
            force_min: cfg
                .force_min_in_zone
                .map(|m| usize::try_from(m).unwrap_or(usize::MAX).max(1)),
            percent: cfg.percentage.min(100),
        })
    }

    /// The candidates of one pick: `live` (the endpoints in service, `None`
    /// for all) narrowed to the local zone or to the others. Never empty
    /// when `live` is not.
    pub fn candidates<'a>(&'a self, live: Option<&'a [usize]>) -> Option<Cow<'a, [usize]>> {
        if self.percent < 100 && random_below(100) as u32 >= self.percent {
            return live.map(Cow::Borrowed);
        }
        let narrow = |set: &'a [usize]| -> Cow<'a, [usize]> {
            match live {
                None => Cow::Borrowed(set),
                Some(l) => Cow::Owned(
                    set.iter()
                        .copied()
                        .filter(|i| l.binary_search(i).is_ok())
                        .collect(),
                ),
            }
        };
        let (local, others) = (narrow(&self.local), narrow(&self.others));
        let pick = if let Some(min) = self.force_min {
            (local.len() >= min).then_some(local)
        } else if local.is_empty() {
            Some(others)
        } else if others.is_empty() {
            Some(local)
        } else {
            // All local while the zone has its fair share (total / zones),
            // else that fraction of the requests.
            let total = local.len() + others.len();
            let weight = local.len() * self.zone_count;
            if weight >= total || random_below(total) < weight {
                Some(local)
            } else {
                Some(others)
            }
        };
        match pick {
            Some(c) if !c.is_empty() => Some(c),
            _ => live.map(Cow::Borrowed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ep(i: u8, zone: &str) -> Endpoint {
        Endpoint {
            addr: ([10, 0, 0, i], 80).into(),
            terminating: false,
            zone: Some(zone.into()),
            for_zones: vec![],
        }
    }

    fn cfg(force: Option<u32>) -> ZoneAware {
        ZoneAware {
            min_endpoints: 1,
            percentage: 100,
            force_min_in_zone: force,
        }
    }

    fn local_share(z: &Zones, live: Option<&[usize]>, local: &[usize]) -> usize {
        (0..1000)
            .filter(|_| {
                let c = z.candidates(live).unwrap();
                c.iter().all(|i| local.contains(i))
            })
            .count()
    }

    #[test]
    fn the_local_zone_takes_its_fair_share_and_spills_over_when_short() {
        let eps = [ep(1, "a"), ep(2, "a"), ep(3, "b"), ep(4, "b")];
        let refs: Vec<&Endpoint> = eps.iter().collect();
        let z = Zones::new(&cfg(None), Some("a"), &refs).unwrap();
        assert_eq!(
            local_share(&z, None, &[0, 1]),
            1000,
            "two of four in two zones: all local"
        );
        // One local endpoint out of service: 1 local of 3, half of a fair share of 1.5.
        let live = [1, 2, 3];
        let share = local_share(&z, Some(&live), &[1]);
        assert!((550..780).contains(&share), "local share {share}/1000");
        // Every local one out: all to the other zone.
        assert_eq!(local_share(&z, Some(&[2, 3]), &[]), 0);
        assert!(z.candidates(Some(&[2, 3])).unwrap().iter().all(|i| *i >= 2));
        // force: all local while one is in service.
        let f = Zones::new(&cfg(Some(1)), Some("a"), &refs).unwrap();
        assert_eq!(local_share(&f, Some(&live), &[1]), 1000);
        assert_eq!(f.candidates(Some(&[2, 3])).unwrap().as_ref(), [2, 3]);
    }

    #[test]
    fn zone_routing_needs_a_zone_enough_endpoints_and_two_zones() {
        let eps = [ep(1, "a"), ep(2, "b")];
        let refs: Vec<&Endpoint> = eps.iter().collect();
        assert!(Zones::new(&cfg(None), None, &refs).is_none());
        assert!(
            Zones::new(&cfg(None), Some("c"), &refs).is_none(),
            "no local endpoint"
        );
        let mut c = cfg(None);
        c.min_endpoints = 3;
        assert!(Zones::new(&c, Some("a"), &refs).is_none());
        let same = [ep(1, "a"), ep(2, "a")];
        let refs: Vec<&Endpoint> = same.iter().collect();
        assert!(Zones::new(&cfg(None), Some("a"), &refs).is_none());
        // Hints win over the endpoint's own zone.
        let mut hinted = ep(3, "b");
        hinted.for_zones = vec!["a".into()];
        let eps = [ep(1, "b"), hinted];
        let refs: Vec<&Endpoint> = eps.iter().collect();
        let z = Zones::new(&cfg(None), Some("a"), &refs).unwrap();
        assert_eq!(z.local.as_ref(), [1]);
    }
}
