//! JSON Web Key Sets: parsed once, and for `remoteJWKS` fetched, cached and
//! refreshed in the background.
//!
//! - A remote set is fetched by one task per `(uri, refresh)` shared by every
//!   policy that names it ([`JwksCache`]); the task lives while a compiled
//!   table holds the set and is aborted when the last one is dropped.
//! - Refresh: every `cacheDuration` (default 300 s); after a failure, again
//!   after 1 s, then doubling up to the refresh interval. **A failed fetch
//!   keeps the last good keys.** A token naming a `kid` the set does not hold
//!   asks for an early refresh (at most one per second), so a rotated key is
//!   picked up without waiting for the interval.
//! - `https://` URIs are verified against the system roots (`SSL_CERT_FILE` /
//!   `SSL_CERT_DIR` are honoured); plain `http://` is allowed for local setups.
//! - Until the first fetch succeeds the set is empty and every token is refused (401).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Uri, header};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::sync::Notify;

/// Largest key set accepted.
const MAX_JWKS_BYTES: usize = 1 << 20;
/// Timeout of one fetch.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// One usable key.
pub struct Key {
    /// `kid`, if any.
    pub kid: Option<String>,
    /// The algorithm the JWK pins (`alg`), if any.
    pub alg: Option<Algorithm>,
    /// The key.
    pub key: DecodingKey,
}

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Key")
            .field("kid", &self.kid)
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// A parsed key set.
#[derive(Debug, Default)]
pub struct Keys(pub Vec<Key>);

impl Keys {
    /// Parse a JWKS document; keys that cannot be used are skipped (with a log line).
    pub fn parse(json: &[u8]) -> Result<Keys, String> {
        let set: JwkSet = serde_json::from_slice(json).map_err(|e| format!("not a JWKS: {e}"))?;
        let mut out = vec![];
        for jwk in &set.keys {
            match DecodingKey::from_jwk(jwk) {
                Ok(key) => out.push(Key {
                    kid: jwk.common.key_id.clone(),
                    alg: jwk
                        .common
                        .key_algorithm
                        .and_then(|a| a.to_string().parse::<Algorithm>().ok()),
                    key,
                }),
                Err(e) => tracing::debug!(kid = ?jwk.common.key_id, error = %e, "JWK skipped"),
            }
        }
        if out.is_empty() && !set.keys.is_empty() {
            return Err("no usable key in the JWKS".into());
        }
        Ok(Keys(out))
    }

    /// Whether a key with this `kid` is in the set.
    pub fn has_kid(&self, kid: &str) -> bool {
        self.0.iter().any(|k| k.kid.as_deref() == Some(kid))
    }
}

/// Where a provider's keys are read from on the request path.
#[derive(Debug, Clone)]
pub enum KeySource {
    /// Inline keys.
    Local(Arc<Keys>),
    /// A shared, refreshed remote set.
    Remote(Arc<RemoteJwks>),
}

impl KeySource {
    /// The current keys (cheap).
    pub fn keys(&self) -> Arc<Keys> {
        match self {
            KeySource::Local(k) => k.clone(),
            KeySource::Remote(r) => r.keys.load_full(),
        }
    }

    /// Ask for an early refresh (a token named an unknown `kid`).
    pub fn unknown_kid(&self) {
        if let KeySource::Remote(r) = self {
            r.wake.notify_one();
        }
    }
}

/// A remote key set and its refresh task.
#[derive(Debug)]
pub struct RemoteJwks {
    /// The URI.
    pub uri: Box<str>,
    keys: Arc<ArcSwap<Keys>>,
    wake: Arc<Notify>,
    task: Option<tokio::task::AbortHandle>,
}

impl Drop for RemoteJwks {
    fn drop(&mut self) {
        if let Some(t) = &self.task {
            t.abort();
        }
    }
}

/// Remote key sets by `(uri, refresh)`, and OIDC providers, shared across
/// policies and applies.
#[derive(Debug, Default)]
pub struct JwksCache {
    sets: Mutex<HashMap<(String, u64), Weak<RemoteJwks>>>,
    /// OIDC providers (discovery and keys), by issuer.
    pub(crate) oidc: super::oidc::Providers,
}

impl JwksCache {
    /// The shared set for `uri`, starting its refresh task if needed.
    pub fn remote(&self, uri: &str, refresh_s: u64) -> Result<Arc<RemoteJwks>, String> {
        let parsed: Uri = uri
            .parse()
            .map_err(|e| format!("remoteJWKS uri {uri:?}: {e}"))?;
        if !matches!(parsed.scheme_str(), Some("https" | "http")) || parsed.host().is_none() {
            return Err(format!("remoteJWKS uri {uri:?} is not an http(s) URL"));
        }
        let mut sets = self.sets.lock().expect("jwks cache lock");
        sets.retain(|_, w| w.strong_count() > 0);
        let key = (uri.to_string(), refresh_s);
        if let Some(r) = sets.get(&key).and_then(Weak::upgrade) {
            return Ok(r);
        }
        let keys = Arc::new(ArcSwap::from_pointee(Keys::default()));
        let wake = Arc::new(Notify::new());
        let task = tokio::runtime::Handle::try_current().ok().map(|h| {
            h.spawn(refresh_loop(
                parsed,
                Duration::from_secs(refresh_s.max(1)),
                keys.clone(),
                wake.clone(),
            ))
            .abort_handle()
        });
        let r = Arc::new(RemoteJwks {
            uri: uri.into(),
            keys,
            wake,
            task,
        });
        sets.insert(key, Arc::downgrade(&r));
        Ok(r)
    }
}

async fn refresh_loop(uri: Uri, every: Duration, keys: Arc<ArcSwap<Keys>>, wake: Arc<Notify>) {
    let mut backoff = Duration::from_secs(1);
    // The document last stored: an unchanged one keeps the same set (and so
    // the tokens verified with it, `super::verified`).
    let mut last: Option<Bytes> = None;
    loop {
        let fetched = match tokio::time::timeout(FETCH_TIMEOUT, fetch(&uri)).await {
            Ok(Ok(body)) => Keys::parse(&body).map(|k| (k, body)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err("timed out".to_string()),
        };
        let wait = match fetched {
            Ok((k, body)) => {
                tracing::debug!(%uri, keys = k.0.len(), "JWKS fetched");
                if last.as_ref() != Some(&body) {
                    keys.store(Arc::new(k));
                    last = Some(body);
                }
                backoff = Duration::from_secs(1);
                every
            }
            Err(e) => {
                tracing::warn!(%uri, error = %e, "JWKS fetch failed; keeping the last good keys");
                let w = backoff;
                backoff = (backoff * 2).min(every);
                w
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = wake.notified() => {
                // At most one early refresh per second.
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    }
}

/// GET the document (HTTP/1.1, one connection).
async fn fetch(uri: &Uri) -> Result<Bytes, String> {
    let mut h = http::HeaderMap::new();
    h.insert(
        header::ACCEPT,
        http::HeaderValue::from_static("application/json"),
    );
    h.insert(
        header::USER_AGENT,
        http::HeaderValue::from_static("portcullis-jwks"),
    );
    let a = super::outbound::call(
        http::Method::GET,
        &uri.to_string(),
        h,
        Bytes::new(),
        MAX_JWKS_BYTES,
    )
    .await
    .map_err(|e| e.to_string())?;
    if !a.status.is_success() {
        return Err(format!("status {}", a.status));
    }
    Ok(a.body)
}
