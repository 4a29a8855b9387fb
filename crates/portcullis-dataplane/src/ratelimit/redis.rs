//! Global rate-limit buckets in Redis, shared by every proxy.
//!
//! One decision is one round trip: a Lua script (sent once, then called by
//! its SHA with `EVALSHA`) runs the GCRA of [`super::gcra`] for every rule
//! the request matched, atomically, on Redis' clock (`TIME`), so proxies on
//! different machines agree without synchronised clocks. Nothing is taken
//! unless every enforced rule admits the request.
//!
//! Keys are `portcullis:{<policy>}:<rule id>[:<sha1 of the distinct values>]`;
//! the `{<policy>}` hash tag puts every key of one decision in one slot of a
//! Redis Cluster (a request is limited by one policy). Each key expires when
//! its bucket is full again, so Redis holds only buckets in use.
//!
//! Targets: `redis://`, `rediss://` (TLS, system roots) and `unix://` URLs;
//! several comma-separated URLs, or [`RedisTarget::cluster`], make a Redis
//! Cluster client seeded with them. The connection is made in the background
//! and remade after failures; until it is up, decisions fail (and the
//! caller's failure mode applies).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arc_swap::ArcSwapOption;

use super::gcra::{Decision, now_ns};

/// Where Redis is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RedisTarget {
    /// URLs (`redis://host:port/db`, `rediss://…`, `unix:///path`).
    pub urls: Vec<String>,
    /// A Redis Cluster (also implied by several URLs).
    pub cluster: bool,
    /// Longest wait for a decision (connect included) before it counts as failed.
    pub timeout: Duration,
}

/// Why a global decision could not be made.
#[derive(Debug, thiserror::Error)]
pub enum GlobalError {
    /// Not connected (yet, or any more); a connection is being made.
    #[error("not connected to Redis")]
    NotConnected,
    /// No answer within the timeout.
    #[error("Redis did not answer in time")]
    Timeout,
    /// Redis answered with an error, or the connection failed.
    #[error("Redis: {0}")]
    Redis(#[from] redis::RedisError),
}

const SCRIPT: &str = r"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local out = {}
local news = {}
local deny = false
for i = 1, #KEYS do
  local o = (i - 1) * 4
  local interval = tonumber(ARGV[o + 1])
  local unit = tonumber(ARGV[o + 2])
  local cost = tonumber(ARGV[o + 3])
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  local base = math.max(tat, now)
  local new = base + cost * interval
  local horizon = now + unit
  if new <= horizon then
    out[i] = {1, math.floor((horizon - new) / interval), new - now, 0}
    if cost > 0 then news[i] = new end
  else
    out[i] = {0, math.floor((horizon - base) / interval), base - now, new - horizon}
    if ARGV[o + 4] ~= '1' then deny = true end
  end
end
if not deny then
  for i = 1, #KEYS do
    if news[i] then
      redis.call('SET', KEYS[i], string.format('%.0f', news[i]), 'PX', math.ceil((news[i] - now) / 1000) + 1)
    end
  end
end
return out
";

#[derive(Clone)]
enum Conn {
    Single(redis::aio::ConnectionManager),
    Cluster(redis::cluster_async::ClusterConnection),
}

/// One bucket of a global decision.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GlobalBucket {
    /// The Redis key.
    pub key: String,
    /// Emission interval in microseconds (`unit / requests`).
    pub interval_us: u64,
    /// The unit in microseconds.
    pub unit_us: u64,
    /// Tokens this request takes.
    pub cost: u64,
    /// Shadow mode: never refuses the request.
    pub shadow: bool,
}

/// The connection to Redis, shared by every table.
pub struct Global {
    target: RedisTarget,
    conn: ArcSwapOption<Conn>,
    connecting: AtomicBool,
    last_attempt_ns: AtomicU64,
    runtime: Option<tokio::runtime::Handle>,
    script: redis::Script,
    /// Woken when a connection attempt ends.
    attempted: tokio::sync::Notify,
}

impl std::fmt::Debug for Global {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Global")
            .field("target", &self.target)
            .finish_non_exhaustive()
    }
}

const RETRY_EVERY_NS: u64 = 1_000_000_000;

impl Global {
    /// A client for `target`; the first connection is started now (in the
    /// current Tokio runtime, if any).
    pub fn new(target: RedisTarget) -> Arc<Self> {
        let g = Arc::new(Global {
            target,
            conn: ArcSwapOption::empty(),
            connecting: AtomicBool::new(false),
            last_attempt_ns: AtomicU64::new(0),
            runtime: tokio::runtime::Handle::try_current().ok(),
            script: redis::Script::new(SCRIPT),
            attempted: tokio::sync::Notify::new(),
        });
        g.clone().reconnect();
        g
    }

    /// Start a connection in the background, unless one is being made or
    /// the last attempt was less than a second ago.
    fn reconnect(self: Arc<Self>) {
        let now = now_ns();
        let last = self.last_attempt_ns.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < RETRY_EVERY_NS {
            return;
        }
        let Some(rt) = self.runtime.clone() else {
            return;
        };
        if self.connecting.swap(true, Ordering::AcqRel) {
            return;
        }
        self.last_attempt_ns.store(now, Ordering::Relaxed);
        rt.spawn(async move {
            match tokio::time::timeout(self.target.timeout.max(Duration::from_secs(1)), self.connect()).await {
                Ok(Ok(c)) => {
                    tracing::info!(urls = ?self.target.urls, "connected to Redis for global rate limits");
                    self.conn.store(Some(Arc::new(c)));
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "cannot connect to Redis for global rate limits"),
                Err(_) => tracing::warn!("cannot connect to Redis for global rate limits: timed out"),
            }
            self.connecting.store(false, Ordering::Release);
            self.attempted.notify_waiters();
        });
    }

    async fn connect(&self) -> Result<Conn, redis::RedisError> {
        let t = &self.target;
        if t.cluster || t.urls.len() > 1 {
            let client = redis::cluster::ClusterClientBuilder::new(t.urls.clone())
                .connection_timeout(t.timeout)
                .response_timeout(t.timeout)
                .build()?;
            Ok(Conn::Cluster(client.get_async_connection().await?))
        } else {
            let client = redis::Client::open(t.urls.first().map(String::as_str).unwrap_or(""))?;
            let cfg = redis::aio::ConnectionManagerConfig::new()
                .set_connection_timeout(Some(t.timeout))
                .set_response_timeout(Some(t.timeout))
                .set_number_of_retries(1);
            Ok(Conn::Single(
                redis::aio::ConnectionManager::new_with_config(client, cfg).await?,
            ))
        }
    }

    /// Take from every bucket at once: one decision per bucket, in order.
    pub async fn take(
        self: &Arc<Self>,
        buckets: &[GlobalBucket],
    ) -> Result<Vec<Decision>, GlobalError> {
        let conn = match self.conn.load_full() {
            Some(c) => c,
            None => {
                // A connection being made (at start, say) is waited for, within
                // the decision's time budget.
                let attempt = self.attempted.notified();
                self.clone().reconnect();
                if self.connecting.load(Ordering::Acquire) {
                    let _ = tokio::time::timeout(self.target.timeout, attempt).await;
                }
                self.conn.load_full().ok_or(GlobalError::NotConnected)?
            }
        };
        let mut inv = self.script.prepare_invoke();
        for b in buckets {
            inv.key(&b.key)
                .arg(b.interval_us)
                .arg(b.unit_us)
                .arg(b.cost)
                .arg(if b.shadow { "1" } else { "0" });
        }
        let call = async {
            let mut conn = (*conn).clone();
            match &mut conn {
                Conn::Single(c) => inv.invoke_async::<Vec<Vec<i64>>>(c).await,
                Conn::Cluster(c) => inv.invoke_async::<Vec<Vec<i64>>>(c).await,
            }
        };
        let rows = match tokio::time::timeout(self.target.timeout, call).await {
            Ok(Ok(rows)) => rows,
            Ok(Err(e)) => {
                if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() {
                    self.clone().reconnect();
                }
                return Err(GlobalError::Redis(e));
            }
            Err(_) => return Err(GlobalError::Timeout),
        };
        let us = |v: i64| u64::try_from(v).unwrap_or(0).saturating_mul(1000);
        Ok(rows
            .into_iter()
            .map(|r| Decision {
                allowed: r.first().copied() == Some(1),
                remaining: r
                    .get(1)
                    .copied()
                    .and_then(|v| u64::try_from(v).ok())
                    .unwrap_or(0),
                reset_ns: us(r.get(2).copied().unwrap_or(0)),
                retry_after_ns: us(r.get(3).copied().unwrap_or(0)),
            })
            .collect())
    }
}
