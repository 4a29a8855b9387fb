//! ingress-nginx basic-auth Secrets → Portcullis `.htpasswd` Secrets.

use base64::Engine as _;
use k8s_openapi::api::core::v1::Secret;
use serde_json::{Value, json};

use crate::input::secret_value;

/// The hash scheme of one htpasswd line's hash, when Portcullis skips it.
fn unsupported_hash(hash: &str) -> Option<&'static str> {
    if hash.starts_with("$2a$")
        || hash.starts_with("$2b$")
        || hash.starts_with("$2y$")
        || hash.starts_with("{SHA}")
    {
        None
    } else if hash.starts_with("$apr1$") || hash.starts_with("$1$") {
        Some("MD5")
    } else {
        Some("crypt or plain")
    }
}

/// Build `name` in `ns` with a `.htpasswd` key from an ingress-nginx Secret
/// (`auth` key, or one key per user when `map`); the warnings name users
/// whose hashes Portcullis skips.
pub fn htpasswd(secret: &Secret, ns: &str, name: &str, map: bool) -> (Value, Vec<String>) {
    let mut lines: Vec<String> = vec![];
    if map {
        let mut keys: Vec<String> = secret.data.iter().flat_map(|d| d.keys().cloned()).collect();
        keys.extend(secret.string_data.iter().flat_map(|d| d.keys().cloned()));
        keys.sort();
        keys.dedup();
        for k in keys {
            if let Some(v) = secret_value(secret, &k) {
                lines.push(format!("{k}:{}", String::from_utf8_lossy(&v).trim()));
            }
        }
    } else if let Some(v) = secret_value(secret, "auth") {
        lines.extend(
            String::from_utf8_lossy(&v)
                .lines()
                .map(str::trim)
                .filter(|l| !l.is_empty())
                .map(str::to_string),
        );
    }
    let mut warnings = vec![];
    for l in &lines {
        if let Some((user, hash)) = l.split_once(':')
            && let Some(kind) = unsupported_hash(hash)
        {
            warnings.push(format!(
                "user {user:?} has a {kind} hash, which Portcullis skips: re-hash it with `htpasswd -B`"
            ));
        }
    }
    if lines.is_empty() {
        warnings.push(format!(
            "the Secret has no {} to convert",
            if map { "keys" } else { "`auth` key" }
        ));
    }
    let mut text = lines.join("\n");
    text.push('\n');
    let obj = json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": ns},
        "type": "Opaque",
        "data": {".htpasswd": base64::engine::general_purpose::STANDARD.encode(text)},
    });
    (obj, warnings)
}
