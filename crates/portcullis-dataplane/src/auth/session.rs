//! Sealed cookies for the OIDC flow: AES-256-GCM (aws-lc-rs), which both
//! encrypts and authenticates, so a cookie the gateway did not write, or one
//! changed by a single bit, does not open.
//!
//! - The key ([`SessionKey`]) is either derived (HKDF-SHA256) from the
//!   `session-key` of the policy's client-secret Secret, so every replica and
//!   restart shares it, or else 32 random bytes drawn once per process
//!   ([`SessionKey::process`]): then sessions do not survive a restart and
//!   are not shared between replicas (a user is sent through the provider
//!   again, silently while the provider's own session lasts). No key is ever
//!   logged or serialised.
//! - A sealed value is `base64url(nonce ‖ ciphertext ‖ tag)` with a fresh
//!   random 96-bit nonce; the cookie's name is the associated data, so a
//!   value cannot be moved from one cookie (or policy) to another.
//! - Also here: random tokens (state, nonce, PKCE verifier) and the PKCE
//!   `S256` challenge.

use std::sync::OnceLock;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use aws_lc_rs::hkdf::{HKDF_SHA256, Salt};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;

/// A cookie key (AES-256-GCM).
pub struct SessionKey(LessSafeKey);

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionKey(<redacted>)")
    }
}

/// HKDF salt: fixed, so that one secret gives the same key everywhere.
const SALT: &[u8] = b"portcullis oidc session cookie v1";

impl SessionKey {
    /// The key derived from a shared secret (HKDF-SHA256).
    pub fn from_secret(secret: &[u8]) -> SessionKey {
        let prk = Salt::new(HKDF_SHA256, SALT).extract(secret);
        let info: [&[u8]; 1] = [b"aes-256-gcm"];
        let okm = prk
            .expand(&info, &AES_256_GCM)
            .expect("HKDF output of one AES-256 key");
        SessionKey(LessSafeKey::new(UnboundKey::from(okm)))
    }

    /// The process-wide random key.
    pub fn process() -> &'static SessionKey {
        static KEY: OnceLock<SessionKey> = OnceLock::new();
        KEY.get_or_init(|| {
            let mut k = [0u8; 32];
            aws_lc_rs::rand::fill(&mut k).expect("system random source");
            let key = SessionKey(LessSafeKey::new(
                UnboundKey::new(&AES_256_GCM, &k).expect("32-byte AES-256 key"),
            ));
            k.fill(0);
            key
        })
    }

    /// Encrypt and authenticate `plain`, bound to `aad` (the cookie name).
    pub fn seal(&self, aad: &str, plain: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        aws_lc_rs::rand::fill(&mut nonce).expect("system random source");
        let mut buf = plain.to_vec();
        self.0
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

    /// Open a value sealed by this key with the same `aad`; `None` for anything else.
    pub fn open(&self, aad: &str, sealed: &str) -> Option<Vec<u8>> {
        let raw = B64.decode(sealed.as_bytes()).ok()?;
        if raw.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return None;
        }
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut buf = ct.to_vec();
        let plain = self
            .0
            .open_in_place(nonce, Aad::from(aad.as_bytes()), &mut buf)
            .ok()?;
        Some(plain.to_vec())
    }
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
        let k = SessionKey::process();
        let seal = |a: &str, p: &[u8]| k.seal(a, p);
        let open = |a: &str, v: &str| k.open(a, v);
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
    fn a_shared_secret_gives_the_same_key_everywhere() {
        let a = SessionKey::from_secret(b"0123456789abcdef0123456789abcdef");
        let b = SessionKey::from_secret(b"0123456789abcdef0123456789abcdef");
        let c = SessionKey::from_secret(b"another secret, another key.....");
        let v = a.seal("n", b"x");
        assert_eq!(b.open("n", &v).as_deref(), Some(&b"x"[..]));
        assert_eq!(c.open("n", &v), None);
        assert_eq!(SessionKey::process().open("n", &v), None);
    }

    #[test]
    fn pkce_s256_matches_rfc7636_appendix_b() {
        assert_eq!(
            s256("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }
}
