//! Control-plane metrics shared by both modes.

use std::collections::BTreeMap;

use portcullis_store::status::Statuses;

/// Set the object and condition gauges from the statuses.
pub fn record_objects(statuses: &Statuses) {
    let mut objects: BTreeMap<String, i64> = BTreeMap::new();
    let mut conditions: BTreeMap<[String; 4], i64> = BTreeMap::new();
    for (obj, status) in statuses {
        let kind = obj.kind.to_string();
        for c in status.conditions().into_iter().flatten() {
            let k = [
                kind.clone(),
                c.type_.clone(),
                c.status.clone(),
                c.reason.clone(),
            ];
            *conditions.entry(k).or_default() += 1;
        }
        *objects.entry(kind).or_default() += 1;
    }
    portcullis_obs::metrics().control.objects(
        objects.iter().map(|(k, n)| (k.as_str(), *n)),
        conditions
            .iter()
            .map(|([a, b, c, d], n)| ([a.as_str(), b.as_str(), c.as_str(), d.as_str()], *n)),
    );
}
