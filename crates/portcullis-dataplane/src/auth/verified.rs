//! Tokens a JWT provider has verified, remembered until they expire, so a
//! client that sends the same token on every request pays for one signature
//! check (tens of microseconds for RS256) instead of one per request.
//!
//! - Keyed by the SHA-256 of the token: the token itself is not kept.
//! - An entry holds the claims, the moment it stops being valid (the token's
//!   `exp` plus the clock skew verification allows, at most
//!   [`MAX_TTL_S`] after it was verified) and the identity of the key set
//!   that verified it: once the set is replaced (a JWKS refresh), every entry
//!   is checked again, so a key removed from the set stops admitting tokens.
//! - Only successes are kept; `nbf` in the future fails verification, so a
//!   token is never admitted before its time.
//! - Bounded: [`SHARDS`] shards of at most [`PER_SHARD`] entries; a full
//!   shard drops its expired entries, then an arbitrary one.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::{Map, Value};

/// Longest time an entry is trusted without checking the signature again.
pub const MAX_TTL_S: u64 = 300;
/// Shards (a brief lock each; the hit path does not allocate).
pub const SHARDS: usize = 16;
/// Entries per shard.
pub const PER_SHARD: usize = 256;

type Digest = [u8; 32];

struct Entry<K> {
    claims: Arc<Map<String, Value>>,
    /// Unix seconds after which the entry is ignored.
    until: u64,
    /// The key set that verified the token (held, so its address is never
    /// reused by another set while the entry exists).
    keys: Arc<K>,
}

type Shard<K> = Mutex<HashMap<Digest, Entry<K>>>;

/// One provider's verified tokens; `K` is the key set type.
pub struct Verified<K> {
    shards: Box<[Shard<K>]>,
}

impl<K> std::fmt::Debug for Verified<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verified")
    }
}

impl<K> Default for Verified<K> {
    fn default() -> Self {
        Verified {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
        }
    }
}

/// The SHA-256 of a token.
pub fn digest(token: &str) -> Digest {
    let d = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

fn shard(d: &Digest) -> usize {
    d[0] as usize % SHARDS
}

/// Unix seconds now.
pub fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl<K> Verified<K> {
    /// The claims of a token verified before by key set `keys`, if still valid at `now`.
    pub fn get(&self, d: &Digest, keys: &Arc<K>, now: u64) -> Option<Arc<Map<String, Value>>> {
        let shard = self.shards[shard(d)].lock().ok()?;
        let e = shard.get(d)?;
        (Arc::ptr_eq(&e.keys, keys) && now <= e.until).then(|| e.claims.clone())
    }

    /// Remember a token verified at `now` by key set `keys`; `skew` is the
    /// clock skew verification allows past `exp`.
    pub fn put(
        &self,
        d: Digest,
        claims: Arc<Map<String, Value>>,
        keys: Arc<K>,
        now: u64,
        skew: u64,
    ) {
        let cap = now.saturating_add(MAX_TTL_S);
        let until = match claims.get("exp").and_then(Value::as_f64) {
            Some(exp) if exp >= 0.0 => ((exp as u64).saturating_add(skew)).min(cap),
            Some(_) => return,
            None => cap,
        };
        let Ok(mut shard) = self.shards[shard(&d)].lock() else {
            return;
        };
        if shard.len() >= PER_SHARD && !shard.contains_key(&d) {
            shard.retain(|_, e| e.until >= now);
            if shard.len() >= PER_SHARD
                && let Some(k) = shard.keys().next().copied()
            {
                shard.remove(&k);
            }
        }
        shard.insert(
            d,
            Entry {
                claims,
                until,
                keys,
            },
        );
    }

    /// Entries held (tests).
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().map_or(0, |s| s.len()))
            .sum()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: Option<i64>) -> Arc<Map<String, Value>> {
        let mut m = Map::new();
        m.insert("sub".into(), "alice".into());
        if let Some(e) = exp {
            m.insert("exp".into(), e.into());
        }
        Arc::new(m)
    }

    #[test]
    fn kept_until_exp_plus_skew_for_the_same_key_set_only() {
        let (k1, k2) = (Arc::new(1u8), Arc::new(1u8));
        let v = Verified::default();
        let d = digest("a.b.c");
        v.put(d, claims(Some(1_000)), k1.clone(), 900, 30);
        assert!(v.get(&d, &k1, 1_030).is_some());
        assert!(v.get(&d, &k1, 1_031).is_none(), "expired (exp + skew)");
        assert!(
            v.get(&d, &k2, 950).is_none(),
            "another key set checks again"
        );
        assert!(v.get(&digest("a.b.d"), &k1, 950).is_none());
    }

    #[test]
    fn without_exp_at_most_the_max_ttl() {
        let k = Arc::new(());
        let v = Verified::default();
        let d = digest("x.y.z");
        v.put(d, claims(None), k.clone(), 100, 30);
        assert!(v.get(&d, &k, 100 + MAX_TTL_S).is_some());
        assert!(v.get(&d, &k, 101 + MAX_TTL_S).is_none());
        // A far exp is capped as well.
        v.put(d, claims(Some(i64::MAX)), k.clone(), 100, 30);
        assert!(v.get(&d, &k, 101 + MAX_TTL_S).is_none());
    }

    #[test]
    fn bounded() {
        let k = Arc::new(());
        let v = Verified::default();
        for i in 0..(SHARDS * PER_SHARD * 3) {
            v.put(
                digest(&format!("t{i}")),
                claims(Some(10_000)),
                k.clone(),
                0,
                30,
            );
        }
        assert!(v.len() <= SHARDS * PER_SHARD, "{}", v.len());
        assert!(v.len() >= SHARDS * PER_SHARD / 2, "{}", v.len());
    }
}
