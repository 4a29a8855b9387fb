//! Control-plane metrics shared by both modes.

use std::collections::BTreeMap;

use portcullis_store::status::Statuses;

/// Set the object and condition gauges from the statuses.
pub fn record_objects(statuses: &Statuses) {
    // Keys borrow from the statuses: one pass, no copies (10,000 routes are
    // 20,000 conditions).
    let mut objects: BTreeMap<&str, i64> = BTreeMap::new();
    let mut conditions: BTreeMap<[&str; 4], i64> = BTreeMap::new();
    for (obj, status) in statuses {
        let kind = obj.kind.as_str();
        for c in status.conditions().into_iter().flatten() {
            let k = [kind, &c.type_, &c.status, &c.reason];
            *conditions.entry(k).or_default() += 1;
        }
        *objects.entry(kind).or_default() += 1;
    }
    portcullis_obs::metrics().control.objects(
        objects.iter().map(|(k, n)| (*k, *n)),
        conditions.iter().map(|(k, n)| (*k, *n)),
    );
}
