//! JWT authentication (`jwt.providers[]`).
//!
//! - The token is read from the provider's sources (default
//!   `Authorization: Bearer <token>`); the first provider whose source holds a
//!   token and validates it wins. No token anywhere: 401, unless `optional`.
//! - Algorithms: RS256/384/512, PS256/384/512, ES256/384, EdDSA. `alg: none`
//!   and the HMAC algorithms are refused. The key is chosen by `kid` when the
//!   token has one, else every key of the set is tried; a key whose JWK pins
//!   `alg` is only used with that algorithm.
//! - `exp` and `nbf` are checked when present with a clock skew of
//!   [`CLOCK_SKEW_S`] seconds; `iss` must equal `issuer` and `aud` contain one
//!   of `audiences` when they are set.
//! - On success `claimToHeaders` are set (strings, numbers, booleans; other
//!   types skipped) and the token is removed from the request: it is not
//!   forwarded to the backend.
//! - A token verified before is not verified again until it expires or the
//!   key set changes ([`super::verified`]).
//! - Failure: 401 with `WWW-Authenticate: Bearer realm="…", error="invalid_token"`
//!   (no `error` when the token is missing).

use std::collections::HashSet;
use std::sync::Arc;

use http::{HeaderName, HeaderValue, Response, StatusCode};
use jsonwebtoken::{Algorithm, Validation};
use portcullis_ir::security as ir;
use serde_json::{Map, Value};

use super::jwks::{JwksCache, KeySource, Keys};
use super::verified::{self, Verified};
use super::{Found, Identity, extract, plain, strip};
use crate::body::ProxyBody;
use crate::filters::ReqState;

/// Clock skew allowed on `exp` and `nbf`, in seconds.
pub const CLOCK_SKEW_S: u64 = 30;

const ALLOWED: [Algorithm; 9] = [
    Algorithm::RS256,
    Algorithm::RS384,
    Algorithm::RS512,
    Algorithm::PS256,
    Algorithm::PS384,
    Algorithm::PS512,
    Algorithm::ES256,
    Algorithm::ES384,
    Algorithm::EdDSA,
];

#[derive(Debug)]
struct Provider {
    name: Arc<str>,
    issuer: Option<String>,
    audiences: Vec<String>,
    keys: KeySource,
    claim_to_headers: Vec<(HeaderName, String)>,
    extract: ir::TokenSources,
    verified: Verified<Keys>,
}

/// A compiled `jwt`.
#[derive(Debug)]
pub struct JwtAuth {
    optional: bool,
    providers: Vec<Provider>,
}

/// Why a token was refused (for logs only).
#[derive(Debug, thiserror::Error)]
pub enum JwtError {
    /// Not three base64url parts, or a header that is not JSON.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// `alg` not allowed (`none`, HMAC, unknown).
    #[error("algorithm not allowed")]
    Algorithm,
    /// No key validates the signature.
    #[error("no key verifies the token")]
    Signature,
    /// Signature fine, claims not (`exp`, `nbf`, `iss`, `aud`).
    #[error("claims rejected: {0}")]
    Claims(String),
    /// The token names a `kid` the key set does not hold.
    #[error("unknown key id")]
    UnknownKid,
}

fn segment_ok(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

fn claim<'a>(claims: &'a Map<String, Value>, dotted: &str) -> Option<&'a Value> {
    let mut parts = dotted.split('.');
    let mut v = claims.get(parts.next()?)?;
    for p in parts {
        v = v.as_object()?.get(p)?;
    }
    Some(v)
}

/// A claim as a header value: strings, numbers and booleans.
pub(crate) fn claim_string(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

impl Provider {
    fn validate(&self, token: &str) -> Result<Arc<Map<String, Value>>, JwtError> {
        let keys: Arc<Keys> = self.keys.keys();
        let digest = verified::digest(token);
        let now = verified::now();
        if let Some(claims) = self.verified.get(&digest, &keys, now) {
            return Ok(claims);
        }
        let claims = verify(token, &keys, self.issuer.as_deref(), &self.audiences)
            .inspect_err(|e| {
                if matches!(e, JwtError::UnknownKid) {
                    self.keys.unknown_kid();
                }
            })
            .map_err(|e| match e {
                JwtError::UnknownKid => JwtError::Signature,
                e => e,
            })?;
        let claims = Arc::new(claims);
        self.verified
            .put(digest, claims.clone(), keys, now, CLOCK_SKEW_S);
        Ok(claims)
    }
}

/// Validate a token against a key set (the rules of the module docs):
/// signature, `exp`/`nbf` with skew, `iss` when given, `aud` when given.
/// [`JwtError::UnknownKid`] when the token names a key the set lacks.
pub(crate) fn verify(
    token: &str,
    keys: &Keys,
    issuer: Option<&str>,
    audiences: &[String],
) -> Result<Map<String, Value>, JwtError> {
    let parts: Vec<&str> = token.split('.').collect();
    if parts.len() != 3 || !parts.iter().take(2).all(|p| segment_ok(p)) {
        return Err(JwtError::Malformed("not three base64url segments".into()));
    }
    // `alg: none` and unknown algorithms fail to decode here.
    let header = jsonwebtoken::decode_header(token).map_err(|e| match e.kind() {
        jsonwebtoken::errors::ErrorKind::Json(_) => JwtError::Algorithm,
        _ => JwtError::Malformed(e.to_string()),
    })?;
    if !ALLOWED.contains(&header.alg) {
        return Err(JwtError::Algorithm);
    }
    if let Some(kid) = &header.kid
        && !keys.has_kid(kid)
    {
        return Err(JwtError::UnknownKid);
    }
    let mut v = Validation::new(header.alg);
    v.leeway = CLOCK_SKEW_S;
    v.validate_nbf = true;
    v.validate_exp = true;
    v.required_spec_claims = HashSet::new();
    match issuer {
        Some(i) => v.set_issuer(&[i]),
        None => v.iss = None,
    }
    if audiences.is_empty() {
        v.validate_aud = false;
    } else {
        v.set_audience(audiences);
    }
    let mut last = JwtError::Signature;
    for k in keys.0.iter() {
        if header.kid.is_some() && k.kid != header.kid {
            continue;
        }
        if k.alg.is_some_and(|a| a != header.alg) {
            continue;
        }
        match jsonwebtoken::decode::<Map<String, Value>>(token, &k.key, &v) {
            Ok(data) => return Ok(data.claims),
            Err(e) => {
                use jsonwebtoken::errors::ErrorKind as K;
                match e.kind() {
                    K::ExpiredSignature
                    | K::ImmatureSignature
                    | K::InvalidIssuer
                    | K::InvalidAudience
                    | K::MissingRequiredClaim(_) => last = JwtError::Claims(e.to_string()),
                    K::InvalidSignature | K::InvalidAlgorithm | K::InvalidKeyFormat => {}
                    _ => last = JwtError::Malformed(e.to_string()),
                }
                if matches!(last, JwtError::Claims(_)) {
                    return Err(last);
                }
            }
        }
    }
    Err(last)
}

impl JwtAuth {
    /// Compile: parse inline sets, share remote ones.
    pub fn new(j: &ir::Jwt, cache: &JwksCache) -> Result<Self, String> {
        let mut providers = vec![];
        for p in &j.providers {
            let keys = match &p.keys {
                ir::JwksSource::Local(json) => KeySource::Local(Arc::new(
                    Keys::parse(json.as_bytes())
                        .map_err(|e| format!("{}: localJWKS: {e}", p.name))?,
                )),
                ir::JwksSource::Remote { uri, refresh_s } => {
                    KeySource::Remote(cache.remote(uri, *refresh_s)?)
                }
            };
            let claim_to_headers = p
                .claim_to_headers
                .iter()
                .map(|(h, c)| {
                    HeaderName::from_bytes(h.as_bytes())
                        .map(|h| (h, c.clone()))
                        .map_err(|e| format!("{}: claimToHeaders {h:?}: {e}", p.name))
                })
                .collect::<Result<_, _>>()?;
            providers.push(Provider {
                name: p.name.as_str().into(),
                issuer: p.issuer.clone(),
                audiences: p.audiences.clone(),
                keys,
                claim_to_headers,
                extract: p.extract.clone(),
                verified: Verified::default(),
            });
        }
        Ok(JwtAuth {
            optional: j.optional,
            providers,
        })
    }

    fn challenge(st: &ReqState, error: bool) -> HeaderValue {
        let realm = format!("{}{}", st.host_name, st.path).replace(['"', '\\'], "");
        let v = if error {
            format!("Bearer realm=\"{realm}\", error=\"invalid_token\"")
        } else {
            format!("Bearer realm=\"{realm}\"")
        };
        HeaderValue::from_str(&v).unwrap_or_else(|_| HeaderValue::from_static("Bearer"))
    }

    /// Authenticate; on success the claims are in `id` and the token is stripped.
    pub fn check(&self, st: &mut ReqState, id: &mut Identity) -> Result<(), Response<ProxyBody>> {
        // Claim headers come from the gateway only: inbound copies are dropped.
        for p in &self.providers {
            for (h, _) in &p.claim_to_headers {
                st.headers.remove(h);
            }
        }
        let mut seen: Option<JwtError> = None;
        let mut strip_list: Vec<Found> = vec![];
        let mut ok: Option<(&Provider, Arc<Map<String, Value>>)> = None;
        for p in &self.providers {
            let Some((token, found)) = extract(&p.extract, st) else {
                continue;
            };
            if !strip_list.contains(&found) {
                strip_list.push(found);
            }
            match p.validate(&token) {
                Ok(claims) => {
                    ok = Some((p, claims));
                    break;
                }
                Err(e) => {
                    seen.get_or_insert(e);
                }
            }
        }
        let Some((p, claims)) = ok else {
            return match seen {
                None if self.optional => Ok(()),
                None => {
                    tracing::debug!("JWT missing");
                    Err(plain(
                        StatusCode::UNAUTHORIZED,
                        "Jwt is missing\n",
                        Some(Self::challenge(st, false)),
                    ))
                }
                Some(e) => {
                    tracing::debug!(error = %e, "JWT refused");
                    Err(plain(
                        StatusCode::UNAUTHORIZED,
                        "Jwt verification fails\n",
                        Some(Self::challenge(st, true)),
                    ))
                }
            };
        };
        for f in &strip_list {
            strip(st, f);
        }
        for (h, c) in &p.claim_to_headers {
            if let Some(v) = claim(&claims, c).and_then(claim_string)
                && let Ok(v) = HeaderValue::from_str(&v)
            {
                st.headers.insert(h.clone(), v);
            }
        }
        id.jwt = Some((p.name.clone(), claims));
        Ok(())
    }
}

/// A dotted claim of validated claims (authorization reads them).
pub(crate) fn lookup<'a>(claims: &'a Map<String, Value>, dotted: &str) -> Option<&'a Value> {
    claim(claims, dotted)
}
