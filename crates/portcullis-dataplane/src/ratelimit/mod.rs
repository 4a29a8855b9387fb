//! BackendTrafficPolicy rate limits on the request path.
//!
//! A route rule's [`RateLimit`] is compiled from the IR when a table is built:
//! selectors (regexes compiled), and for local rules the bucket itself, taken
//! from the [`Limiters`] registry so that a bucket outlives the table (a
//! reload does not refill anyone's bucket) and is shared by every route rule
//! with the same bucket id. On a request every rule whose selectors hold
//! takes `cost` tokens: local rules from their [`gcra`] bucket (no lock for
//! a plain bucket, one short shard lock for a `Distinct` one), global rules
//! from Redis in one round trip ([`redis`]). The request is refused (429,
//! `Retry-After`, `RateLimit-*`) when any enforced rule is over its limit;
//! admitted responses carry the `RateLimit-*` fields of the tightest rule.
//!
//! When Redis cannot decide (down, slow, not configured), global rules fail
//! open by default (the request passes, `failed_open` is counted) or, with
//! `fail_open: false`, closed (503).

pub mod gcra;
pub mod redis;

use std::collections::HashMap;
use std::hash::Hasher;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use http::HeaderMap;
use portcullis_ir::traffic as ir;
use portcullis_obs::metrics::RateLimitStats;
use sha1::{Digest, Sha1};

use crate::error::{ProxyError, Quota};
use gcra::{Cell, Decision, Keyed, Limit};
use redis::{Global, GlobalBucket, RedisTarget};

/// Rate-limit settings of a data plane.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RateLimitOptions {
    /// Redis for global rules; none: global rules cannot be decided.
    pub redis: Option<RedisTarget>,
    /// Let requests through when Redis cannot decide (the default).
    pub fail_open: bool,
    /// Most buckets one `Distinct` local rule remembers (memory bound).
    pub max_keys_per_rule: usize,
}

impl Default for RateLimitOptions {
    fn default() -> Self {
        RateLimitOptions {
            redis: None,
            fail_open: true,
            max_keys_per_rule: 100_000,
        }
    }
}

/// A local bucket: one, or one per distinct key.
#[derive(Debug)]
enum Bucket {
    One(Cell),
    PerKey(Keyed),
}

type BucketKey = (String, Limit, bool);

/// Buckets and the Redis client, shared by every table of the data plane.
#[derive(Debug)]
pub struct Limiters {
    opts: RateLimitOptions,
    global: Option<Arc<Global>>,
    buckets: Mutex<HashMap<BucketKey, Weak<Bucket>>>,
}

impl Limiters {
    /// The registry; connects to Redis when one is configured.
    pub fn new(opts: RateLimitOptions) -> Self {
        Limiters {
            global: opts.redis.clone().map(Global::new),
            opts,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn bucket(&self, id: &str, limit: Limit, distinct: bool) -> Arc<Bucket> {
        let mut m = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let key = (id.to_string(), limit, distinct);
        if let Some(b) = m.get(&key).and_then(Weak::upgrade) {
            return b;
        }
        m.retain(|_, w| w.strong_count() > 0);
        let b = Arc::new(if distinct {
            Bucket::PerKey(Keyed::new(self.opts.max_keys_per_rule))
        } else {
            Bucket::One(Cell::default())
        });
        m.insert(key, Arc::downgrade(&b));
        b
    }
}

/// A compiled value match.
#[derive(Debug)]
enum Value {
    Exact(Box<[u8]>),
    Regex(regex::bytes::Regex),
    Distinct,
}

#[derive(Debug)]
struct Header {
    name: http::HeaderName,
    value: Value,
    invert: bool,
}

#[derive(Debug)]
enum PathKind {
    Exact(Box<str>),
    Prefix(Box<str>),
    Regex(regex::Regex),
}

#[derive(Debug)]
struct Selector {
    headers: Vec<Header>,
    methods: Vec<(http::Method, bool)>,
    path: Option<(PathKind, bool)>,
    source: Option<(ipnet::IpNet, bool)>,
}

/// What a request is matched on.
pub struct Req<'a> {
    /// The method.
    pub method: &'a http::Method,
    /// The normalised path, without the query.
    pub path: &'a str,
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The client address (see `client_ip`).
    pub client: IpAddr,
}

fn full(re: &str) -> String {
    format!("^(?:{re})$")
}

impl Selector {
    fn new(s: &ir::Selector) -> Option<Self> {
        let headers = s
            .headers
            .iter()
            .map(|h| {
                Some(Header {
                    name: http::HeaderName::from_bytes(h.name.as_bytes()).ok()?,
                    value: match &h.value {
                        ir::ValueMatch::Exact(v) => Value::Exact(v.as_bytes().into()),
                        ir::ValueMatch::Regex(r) => {
                            Value::Regex(regex::bytes::Regex::new(&full(r)).ok()?)
                        }
                        ir::ValueMatch::Distinct => Value::Distinct,
                    },
                    invert: h.invert,
                })
            })
            .collect::<Option<_>>()?;
        let path = match &s.path {
            None => None,
            Some(p) => Some((
                match p.kind {
                    ir::PathKind::Exact => PathKind::Exact(p.value.as_str().into()),
                    ir::PathKind::Prefix => PathKind::Prefix(p.value.trim_end_matches('/').into()),
                    ir::PathKind::Regex => {
                        PathKind::Regex(regex::Regex::new(&full(&p.value)).ok()?)
                    }
                },
                p.invert,
            )),
        };
        let source = match &s.source {
            None => None,
            Some(src) => Some((src.cidr.parse().ok()?, src.distinct)),
        };
        Some(Selector {
            headers,
            methods: s
                .methods
                .iter()
                .map(|m| {
                    Some((
                        http::Method::from_bytes(m.method.as_bytes()).ok()?,
                        m.invert,
                    ))
                })
                .collect::<Option<_>>()?,
            path,
            source,
        })
    }

    /// Whether the request is selected; distinct values go to `key`.
    fn matches(&self, r: &Req<'_>, key: &mut dyn FnMut(&[u8])) -> bool {
        for h in &self.headers {
            let v = r.headers.get(&h.name).map(|v| v.as_bytes());
            let hit = match (&h.value, v) {
                (Value::Distinct, Some(v)) => {
                    key(h.name.as_str().as_bytes());
                    key(v);
                    true
                }
                (_, None) => false,
                (Value::Exact(want), Some(v)) => **want == *v,
                (Value::Regex(re), Some(v)) => re.is_match(v),
            };
            if hit == h.invert {
                return false;
            }
        }
        if !self.methods.is_empty()
            && !self
                .methods
                .iter()
                .any(|(m, invert)| (m == r.method) != *invert)
        {
            return false;
        }
        if let Some((p, invert)) = &self.path {
            let hit = match p {
                PathKind::Exact(v) => r.path == &**v,
                PathKind::Prefix(v) => {
                    v.is_empty()
                        || r.path
                            .strip_prefix(&**v)
                            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
                }
                PathKind::Regex(re) => re.is_match(r.path),
            };
            if hit == *invert {
                return false;
            }
        }
        if let Some((net, distinct)) = &self.source {
            if !net.contains(&r.client) {
                return false;
            }
            if *distinct {
                match r.client {
                    IpAddr::V4(a) => key(&a.octets()),
                    IpAddr::V6(a) => key(&a.octets()),
                }
            }
        }
        true
    }
}

fn distinct(sel: &[Selector]) -> bool {
    sel.iter().any(|s| {
        s.headers.iter().any(|h| matches!(h.value, Value::Distinct))
            || s.source.is_some_and(|(_, d)| d)
    })
}

/// Whether every selector holds; distinct values go to `key`.
fn selected(sel: &[Selector], r: &Req<'_>, key: &mut dyn FnMut(&[u8])) -> bool {
    sel.iter().all(|s| s.matches(r, key))
}

#[derive(Debug)]
struct LocalRule {
    selectors: Vec<Selector>,
    limit: Limit,
    cost: u64,
    shadow: bool,
    bucket: Arc<Bucket>,
}

#[derive(Debug)]
struct GlobalRule {
    selectors: Vec<Selector>,
    distinct: bool,
    key: String,
    requests: u64,
    interval_us: u64,
    unit_us: u64,
    cost: u64,
    shadow: bool,
}

/// The compiled rate limits of a route rule.
#[derive(Debug)]
pub struct RateLimit {
    policy: Box<str>,
    local: Vec<LocalRule>,
    global: Vec<GlobalRule>,
    redis: Option<Arc<Global>>,
    fail_open: bool,
    local_stats: RateLimitStats,
    global_stats: RateLimitStats,
}

fn quota(d: &Decision, requests: u64) -> Quota {
    let secs = |ns: u64| ns.div_ceil(1_000_000_000);
    Quota {
        limit: requests,
        remaining: d.remaining,
        reset_secs: secs(d.reset_ns),
        retry_after_secs: secs(d.retry_after_ns).max(1),
    }
}

/// The answer so far: the tightest admitted quota, the refusal if any.
#[derive(Default)]
struct Verdict {
    tightest: Option<Quota>,
    refused: Option<Quota>,
}

impl Verdict {
    fn add(&mut self, d: &Decision, requests: u64) {
        let q = quota(d, requests);
        if !d.allowed {
            if self
                .refused
                .is_none_or(|r| q.retry_after_secs > r.retry_after_secs)
            {
                self.refused = Some(q);
            }
        } else if self.tightest.is_none_or(|t| q.remaining < t.remaining) {
            self.tightest = Some(q);
        }
    }
}

impl RateLimit {
    /// Compile a route rule's limits; `None` when a selector cannot be
    /// compiled (translation has already refused such a policy).
    pub fn new(rl: &ir::RateLimit, limiters: &Limiters) -> Option<Self> {
        let metrics = portcullis_obs::metrics::metrics();
        let local = rl
            .local
            .iter()
            .map(|r| {
                let selectors: Vec<Selector> = r
                    .selectors
                    .iter()
                    .map(Selector::new)
                    .collect::<Option<_>>()?;
                let limit = Limit::new(r.requests, Duration::from_secs(r.unit_seconds));
                let bucket = limiters.bucket(&r.id, limit, distinct(&selectors));
                Some(LocalRule {
                    selectors,
                    limit,
                    cost: r.cost,
                    shadow: r.shadow,
                    bucket,
                })
            })
            .collect::<Option<_>>()?;
        let global = rl
            .global
            .iter()
            .map(|r| {
                let selectors: Vec<Selector> = r
                    .selectors
                    .iter()
                    .map(Selector::new)
                    .collect::<Option<_>>()?;
                let unit_us = r.unit_seconds.saturating_mul(1_000_000);
                Some(GlobalRule {
                    distinct: distinct(&selectors),
                    selectors,
                    key: format!(
                        "portcullis:{{{}}}:{}:{}:{}",
                        rl.policy, r.id, r.requests, r.unit_seconds
                    ),
                    requests: r.requests,
                    interval_us: (unit_us / r.requests.max(1)).max(1),
                    unit_us,
                    cost: r.cost,
                    shadow: r.shadow,
                })
            })
            .collect::<Option<_>>()?;
        Some(RateLimit {
            local_stats: metrics.rate_limit(&rl.policy, "local"),
            global_stats: metrics.rate_limit(&rl.policy, "global"),
            policy: rl.policy.as_str().into(),
            local,
            global,
            redis: limiters.global.clone(),
            fail_open: limiters.opts.fail_open,
        })
    }

    /// Take from every bucket the request is selected by. `Ok` with the
    /// quota to show on the response (if any rule applied), or the refusal.
    pub async fn check(&self, r: &Req<'_>) -> Result<Option<Quota>, ProxyError> {
        let now = gcra::now_ns();
        let mut v = Verdict::default();
        let mut local_shadow = false;
        for rule in &self.local {
            let d = match &*rule.bucket {
                Bucket::One(cell) => {
                    if !selected(&rule.selectors, r, &mut |_| {}) {
                        continue;
                    }
                    cell.take(&rule.limit, now, rule.cost)
                }
                Bucket::PerKey(keyed) => {
                    let mut h = keyed.hasher();
                    if !selected(&rule.selectors, r, &mut |b| {
                        h.write(b);
                        h.write_u8(0xff);
                    }) {
                        continue;
                    }
                    keyed.take(h.finish(), &rule.limit, now, rule.cost)
                }
            };
            if rule.shadow {
                if !d.allowed {
                    local_shadow = true;
                }
                continue;
            }
            v.add(&d, rule.limit.requests);
        }
        if let Some(q) = v.refused {
            // A local refusal needs no round trip to Redis.
            self.local_stats.limited.inc();
            tracing::debug!(policy = %self.policy, "rate limited (local)");
            return Err(ProxyError::RateLimited(q));
        }
        if local_shadow {
            self.local_stats.shadow_limited.inc();
        } else if !self.local.is_empty() {
            self.local_stats.allowed.inc();
        }
        if !self.global.is_empty() {
            self.check_global(r, &mut v).await?;
        }
        if let Some(q) = v.refused {
            return Err(ProxyError::RateLimited(q));
        }
        Ok(v.tightest)
    }

    async fn check_global(&self, r: &Req<'_>, v: &mut Verdict) -> Result<(), ProxyError> {
        let mut buckets = Vec::with_capacity(self.global.len());
        let mut rules = Vec::with_capacity(self.global.len());
        for rule in &self.global {
            let mut h = Sha1::new();
            if !selected(&rule.selectors, r, &mut |b| {
                h.update((b.len() as u32).to_be_bytes());
                h.update(b);
            }) {
                continue;
            }
            let key = if rule.distinct {
                let digest = h.finalize();
                let mut k = String::with_capacity(rule.key.len() + 41);
                k.push_str(&rule.key);
                k.push(':');
                for b in digest {
                    k.push_str(&format!("{b:02x}"));
                }
                k
            } else {
                rule.key.clone()
            };
            buckets.push(GlobalBucket {
                key,
                interval_us: rule.interval_us,
                unit_us: rule.unit_us,
                cost: rule.cost,
                shadow: rule.shadow,
            });
            rules.push(rule);
        }
        if buckets.is_empty() {
            return Ok(());
        }
        let result = match &self.redis {
            Some(g) => g.take(&buckets).await.map_err(|e| e.to_string()),
            None => Err("no Redis configured (--rate-limit-redis)".to_string()),
        };
        let decisions = match result {
            Ok(d) if d.len() == rules.len() => d,
            other => {
                let why = other.err().unwrap_or_else(|| "malformed reply".into());
                portcullis_obs::metrics::metrics()
                    .rate_limit_redis_errors
                    .inc();
                if self.fail_open {
                    self.global_stats.failed_open.inc();
                    tracing::debug!(policy = %self.policy, error = %why, "global rate limit failed open");
                    return Ok(());
                }
                self.global_stats.failed_closed.inc();
                tracing::warn!(policy = %self.policy, error = %why, "global rate limit failed closed");
                return Err(ProxyError::RateLimitUnavailable);
            }
        };
        let mut shadow = false;
        let before = v.refused.is_some();
        for (rule, d) in rules.iter().zip(&decisions) {
            if rule.shadow {
                shadow |= !d.allowed;
                continue;
            }
            v.add(d, rule.requests);
        }
        if v.refused.is_some() && !before {
            self.global_stats.limited.inc();
        } else if shadow {
            self.global_stats.shadow_limited.inc();
        } else {
            self.global_stats.allowed.inc();
        }
        Ok(())
    }
}
