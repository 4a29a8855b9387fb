//! Sealed cookies for the OIDC flow: AES-256-GCM (aws-lc-rs), which both
//! encrypts and authenticates, so a cookie the gateway did not write, or one
//! changed by a single bit, does not open.
//!
//! - The key is 32 random bytes drawn once per process ([`key`]): sessions
//!   do not survive a restart and are not shared between replicas (a user is
//!   sent through the provider again, silently while the provider's own
//!   session lasts). No key is ever logged or serialised.
//! - A sealed value is `base64url(nonce ‖ ciphertext ‖ tag)` with a fresh
//!   random 96-bit nonce; the cookie's name is the associated data, so a
//!   value cannot be moved from one cookie (or policy) to another.
//! - Also here: random tokens (state, nonce, PKCE verifier) and the PKCE
//!   `S256` challenge.

use std::sync::OnceLock;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

/// The process-wide cookie key.
struct Key(LessSafeKey);

impl std::fmt::Debug for Key {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Key(<redacted>)")
    }
}

fn key() -> &'static Key {
    static KEY: OnceLock<Key> = OnceLock::new();
    KEY.get_or_init(|| {
        let mut k = [0u8; 32];
        aws_lc_rs::rand::fill(&mut k).expect("system random source");
        let key = Key(LessSafeKey::new(
            UnboundKey::new(&AES_256_GCM, &k).expect("32-byte AES-256 key"),
        ));
        k.fill(0);
        key
    })
}

/// Encrypt and authenticate `plain`, bound to `aad` (the cookie name).
pub fn seal(aad: &str, plain: &[u8]) -> String {
    let mut nonce = [0u8; NONCE_LEN];
    aws_lc_rs::rand::fill(&mut nonce).expect("system random source");
    let mut buf = plain.to_vec();
    key()
        .0
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad.as_bytes()),
            &mut buf,
        )
        .expect("AES-GCM seal");
    let mut out = nonce.to_vec();
    out.extend_from_slice(&buf);
    B64.encode(out)
}

/// Open a value [`seal`]ed with the same `aad`; `None` for anything else.
pub fn open(aad: &str, sealed: &str) -> Option<Vec<u8>> {
    let raw = B64.decode(sealed.as_bytes()).ok()?;
    if raw.len() < NONCE_LEN + AES_256_GCM.tag_len() {
        return None;
    }
    let (nonce, ct) = raw.split_at(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    let mut buf = ct.to_vec();
    let plain = key()
        .0
        .open_in_place(nonce, Aad::from(aad.as_bytes()), &mut buf)
        .ok()?;
    Some(plain.to_vec())
}

/// `n` random bytes, base64url.
pub fn random_token(n: usize) -> String {
    let mut b = vec![0u8; n];
    aws_lc_rs::rand::fill(&mut b).expect("system random source");
    B64.encode(b)
}

/// PKCE `S256`: `base64url(SHA-256(verifier))`.
pub fn s256(verifier: &str) -> String {
    B64.encode(aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, verifier.as_bytes()).as_ref())
}

/// A short hex digest of `s` (cookie-name suffixes).
pub fn short_hash(s: &str) -> String {
    aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, s.as_bytes())
        .as_ref()
        .iter()
        .take(4)
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_unchanged_and_under_their_name() {
        let v = seal("a", b"hello");
        assert_eq!(open("a", &v).as_deref(), Some(&b"hello"[..]));
        assert_eq!(open("b", &v), None, "bound to the cookie name");
        let mut raw = B64.decode(&v).unwrap();
        let last = raw.len() - 1;
        raw[last] ^= 1;
        assert_eq!(open("a", &B64.encode(raw)), None, "tampered");
        assert_eq!(open("a", "not base64!"), None);
        assert_ne!(seal("a", b"hello"), v, "fresh nonce every time");
    }

    #[test]
    fn pkce_s256_matches_rfc7636_appendix_b() {
        assert_eq!(
            s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
