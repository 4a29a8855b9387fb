//! HTTP Basic authentication (`basicAuth`) against an htpasswd file.
//!
//! - Hashes: bcrypt (`$2y$`, `$2b$`, `$2a$`, as `htpasswd -B` writes) and
//!   `{SHA}` (base64 SHA-1, `htpasswd -s`). Lines with another scheme (MD5
//!   `$apr1$`, crypt) are skipped with a warning at apply time. The `{SHA}`
//!   digests are compared in constant time.
//! - Success: `forwardUsernameHeader` (if set) carries the user name (an
//!   inbound copy is always dropped); the `Authorization` header is removed.
//! - Failure: 401 with `WWW-Authenticate: Basic realm="http://<host>"`.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::{HeaderName, HeaderValue, Response, StatusCode, header};
use portcullis_ir::security as ir;
use sha1::{Digest, Sha1};
use subtle::ConstantTimeEq;

use super::plain;
use crate::body::ProxyBody;
use crate::filters::ReqState;

enum Hash {
    Bcrypt(String),
    Sha([u8; 20]),
}

/// A compiled `basicAuth`.
pub struct BasicAuth {
    users: Vec<(String, Hash)>,
    forward: Option<HeaderName>,
}

impl std::fmt::Debug for BasicAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BasicAuth")
            .field("users", &self.users.len())
            .field("forward", &self.forward)
            .finish()
    }
}

/// Parse an htpasswd file: `(user, hash)` lines, unsupported schemes skipped.
fn parse(text: &str) -> Vec<(String, Hash)> {
    let mut out = vec![];
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((user, hash)) = line.split_once(':') else {
            tracing::warn!(line = n + 1, "htpasswd line without ':' skipped");
            continue;
        };
        let h = if let Some(b64) = hash.strip_prefix("{SHA}") {
            match STANDARD
                .decode(b64)
                .ok()
                .and_then(|d| <[u8; 20]>::try_from(d).ok())
            {
                Some(d) => Hash::Sha(d),
                None => {
                    tracing::warn!(
                        line = n + 1,
                        "htpasswd {{SHA}} hash is not base64 SHA-1; skipped"
                    );
                    continue;
                }
            }
        } else if ["$2y$", "$2b$", "$2a$"].iter().any(|p| hash.starts_with(p)) {
            Hash::Bcrypt(hash.to_string())
        } else {
            tracing::warn!(
                line = n + 1,
                "htpasswd hash scheme not supported (bcrypt and {{SHA}} are); skipped"
            );
            continue;
        };
        out.push((user.to_string(), h));
    }
    out
}

impl BasicAuth {
    /// Compile.
    pub fn new(b: &ir::BasicAuth) -> Result<Self, String> {
        let users = parse(b.htpasswd.expose());
        if users.is_empty() {
            return Err("the htpasswd file has no usable user".into());
        }
        let forward = b
            .forward_username_header
            .as_deref()
            .map(|h| {
                HeaderName::from_bytes(h.as_bytes())
                    .map_err(|e| format!("forwardUsernameHeader: {e}"))
            })
            .transpose()?;
        Ok(BasicAuth { users, forward })
    }

    fn verify(&self, user: &str, password: &str) -> bool {
        let Some((_, hash)) = self.users.iter().find(|(u, _)| u == user) else {
            return false;
        };
        match hash {
            Hash::Sha(d) => {
                let got: [u8; 20] = Sha1::digest(password.as_bytes()).into();
                bool::from(got.ct_eq(d))
            }
            Hash::Bcrypt(h) => bcrypt::verify(password, h).unwrap_or(false),
        }
    }

    /// Authenticate.
    pub fn check(&self, st: &mut ReqState) -> Result<(), Response<ProxyBody>> {
        if let Some(h) = &self.forward {
            st.headers.remove(h);
        }
        let creds = st
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, rest) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("basic").then_some(rest.trim())
            })
            .and_then(|b64| STANDARD.decode(b64).ok())
            .and_then(|d| String::from_utf8(d).ok());
        let realm = format!(
            "Basic realm=\"http://{}\"",
            st.host_name.replace(['"', '\\'], "")
        );
        let challenge =
            HeaderValue::from_str(&realm).unwrap_or_else(|_| HeaderValue::from_static("Basic"));
        let Some(creds) = creds else {
            return Err(plain(
                StatusCode::UNAUTHORIZED,
                "User authentication failed. Missing username and password.\n",
                Some(challenge),
            ));
        };
        let (user, password) = creds.split_once(':').unwrap_or((creds.as_str(), ""));
        if !self.verify(user, password) {
            return Err(plain(
                StatusCode::UNAUTHORIZED,
                "User authentication failed. Invalid username/password combination.\n",
                Some(challenge),
            ));
        }
        let user = user.to_string();
        st.headers.remove(header::AUTHORIZATION);
        if let Some(h) = &self.forward
            && let Ok(v) = HeaderValue::from_str(&user)
        {
            st.headers.insert(h.clone(), v);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha_and_bcrypt() {
        // "{SHA}" of "secret"; bcrypt of "hunter2" (cost 4).
        let sha = format!("{{SHA}}{}", STANDARD.encode(Sha1::digest(b"secret")));
        let bc = bcrypt::hash("hunter2", 4).unwrap();
        let text = format!("# users\nalice:{sha}\nbob:{bc}\ncarol:$apr1$xyz$abc\n");
        let b = BasicAuth::new(&ir::BasicAuth {
            htpasswd: portcullis_ir::SecretString(text),
            forward_username_header: None,
        })
        .unwrap();
        assert_eq!(b.users.len(), 2);
        assert!(b.verify("alice", "secret"));
        assert!(!b.verify("alice", "Secret"));
        assert!(b.verify("bob", "hunter2"));
        assert!(!b.verify("bob", "hunter3"));
        assert!(!b.verify("carol", "x"));
        assert!(!format!("{b:?}").contains("SHA"));
    }
}
