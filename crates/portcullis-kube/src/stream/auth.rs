//! Proxy authentication: TokenReviews, bounded and cached, and the token's expiry.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use tokio::sync::Semaphore;

use super::server::{BoxFuture, TokenReviewer};

/// Limits of [`CachingReviewer`].
#[derive(Clone, Debug)]
pub struct ReviewLimits {
    /// TokenReviews in flight at once.
    pub concurrency: usize,
    /// How long one TokenReview may take.
    pub timeout: Duration,
    /// How long an accepted token is trusted without a new review (never past its expiry).
    pub ttl: Duration,
    /// How long a refused token stays refused without a new review.
    pub negative_ttl: Duration,
    /// Tokens remembered at most.
    pub capacity: usize,
}

impl Default for ReviewLimits {
    fn default() -> Self {
        ReviewLimits {
            concurrency: 8,
            timeout: Duration::from_secs(10),
            ttl: Duration::from_secs(60),
            negative_ttl: Duration::from_secs(5),
            capacity: 4096,
        }
    }
}

type Entry = (Result<String, String>, Instant);

/// Wraps a [`TokenReviewer`]: at most `concurrency` reviews in flight, each
/// bounded by `timeout`, answers cached (accepted for `ttl` but never past the
/// token's `exp`, refused for `negative_ttl`). Timeouts and API errors are not cached.
pub struct CachingReviewer {
    inner: Arc<dyn TokenReviewer>,
    limits: ReviewLimits,
    permits: Semaphore,
    cache: Mutex<HashMap<String, Entry>>,
}

impl CachingReviewer {
    /// Wrap `inner`.
    pub fn new(inner: Arc<dyn TokenReviewer>, limits: ReviewLimits) -> Self {
        CachingReviewer {
            permits: Semaphore::new(limits.concurrency.max(1)),
            inner,
            limits,
            cache: Mutex::default(),
        }
    }

    fn cached(&self, token: &str) -> Option<Result<String, String>> {
        let c = self.cache.lock().expect("lock");
        c.get(token)
            .filter(|(_, until)| *until > Instant::now())
            .map(|(r, _)| r.clone())
    }

    fn remember(&self, token: &str, r: &Result<String, String>) {
        let now = Instant::now();
        let until = match r {
            Ok(_) => {
                let ttl = expires_in(token).map_or(self.limits.ttl, |e| e.min(self.limits.ttl));
                now + ttl
            }
            Err(_) => now + self.limits.negative_ttl,
        };
        let mut c = self.cache.lock().expect("lock");
        if c.len() >= self.limits.capacity {
            c.retain(|_, (_, u)| *u > now);
            if c.len() >= self.limits.capacity {
                c.clear();
            }
        }
        c.insert(token.to_string(), (r.clone(), until));
    }
}

impl TokenReviewer for CachingReviewer {
    fn review<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<String, String>> {
        Box::pin(async move {
            if let Some(r) = self.cached(token) {
                return r;
            }
            let _permit = self
                .permits
                .acquire()
                .await
                .map_err(|_| "reviewer closed".to_string())?;
            // Another request may have reviewed the same token while we waited.
            if let Some(r) = self.cached(token) {
                return r;
            }
            match tokio::time::timeout(self.limits.timeout, self.inner.review(token)).await {
                Err(_) => Err(format!(
                    "TokenReview did not answer within {:?}",
                    self.limits.timeout
                )),
                Ok(r) => {
                    // A failed call (not a verdict) is not cached.
                    if !matches!(&r, Err(e) if e.starts_with("TokenReview failed")) {
                        self.remember(token, &r);
                    }
                    r
                }
            }
        })
    }
}

/// The `exp` claim of a JWT (not verified here: only used after a TokenReview accepted the token).
pub fn expiry(token: &str) -> Option<SystemTime> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    let v: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    let exp = v.get("exp")?.as_u64()?;
    Some(UNIX_EPOCH + Duration::from_secs(exp))
}

/// Time left until the token expires (zero if it has), `None` when it carries no `exp`.
pub fn expires_in(token: &str) -> Option<Duration> {
    let exp = expiry(token)?;
    Some(exp.duration_since(SystemTime::now()).unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A JWT-shaped token (unsigned) expiring at `exp`.
    pub fn jwt(exp: u64, salt: &str) -> String {
        let e = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
        format!(
            "{}.{}.sig",
            e(r#"{"alg":"RS256"}"#),
            e(&format!(r#"{{"exp":{exp},"sub":"{salt}"}}"#))
        )
    }

    struct Counting(AtomicUsize, Duration);
    impl TokenReviewer for Counting {
        fn review<'a>(&'a self, token: &'a str) -> BoxFuture<'a, Result<String, String>> {
            Box::pin(async move {
                self.0.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(self.1).await;
                if token.ends_with("sig") {
                    Ok("user".into())
                } else {
                    Err("invalid".into())
                }
            })
        }
    }

    #[test]
    fn expiry_is_read_from_the_payload() {
        let t = jwt(2_000_000_000, "a");
        assert_eq!(
            expiry(&t),
            Some(UNIX_EPOCH + Duration::from_secs(2_000_000_000))
        );
        assert_eq!(expiry("not-a-jwt"), None);
    }

    #[tokio::test]
    async fn reviews_are_cached_bounded_and_timed_out() {
        let inner = Arc::new(Counting(AtomicUsize::new(0), Duration::from_millis(20)));
        let r = CachingReviewer::new(
            inner.clone(),
            ReviewLimits {
                concurrency: 1,
                timeout: Duration::from_secs(5),
                ..Default::default()
            },
        );
        let far = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 3600;
        let t = jwt(far, "a");
        // 20 concurrent connections with the same token: one review.
        let all = futures_util::future::join_all((0..20).map(|_| r.review(&t))).await;
        assert!(all.iter().all(|x| x.as_deref() == Ok("user")));
        assert_eq!(inner.0.load(Ordering::SeqCst), 1);
        // Refusals are cached too (briefly).
        assert!(r.review("bad").await.is_err());
        assert!(r.review("bad").await.is_err());
        assert_eq!(inner.0.load(Ordering::SeqCst), 2);
        // An expired token is never served from the cache.
        let old = jwt(1, "b");
        assert!(r.review(&old).await.is_ok());
        assert!(r.review(&old).await.is_ok());
        assert_eq!(inner.0.load(Ordering::SeqCst), 4);
        // A review that hangs is cut off.
        let slow = CachingReviewer::new(
            Arc::new(Counting(AtomicUsize::new(0), Duration::from_secs(60))),
            ReviewLimits {
                timeout: Duration::from_millis(50),
                ..Default::default()
            },
        );
        let e = slow.review(&t).await.unwrap_err();
        assert!(e.contains("did not answer"), "{e}");
    }
}
