//! Session persistence (GEP-1619): a cookie or header naming the endpoint.
//!
//! The first response carries `name=<token>` (cookie) or `name: <token>`
//! (header); later requests carrying it go to that endpoint while it exists
//! in the backend. The token is an opaque keyed hash of the endpoint address
//! (see [`super::endpoint::EndpointSet`]), never the address itself. A
//! permanent cookie gets `Max-Age` from the absolute timeout; header sessions
//! have no expiry at the gateway.

use http::{HeaderMap, HeaderName, HeaderValue, header};
use portcullis_ir::SessionPersistence;

/// A compiled session persistence policy.
#[derive(Debug)]
pub struct SessionPolicy {
    kind: Kind,
}

#[derive(Debug)]
enum Kind {
    Cookie { name: Box<str>, attrs: Box<str> },
    Header(HeaderName),
}

impl SessionPolicy {
    /// Compile; `None` when the name is unusable.
    pub fn new(sp: &SessionPersistence) -> Option<Self> {
        let kind = if sp.cookie {
            if sp.name.is_empty() || sp.name.contains([';', '=', ' ', ',']) {
                return None;
            }
            let mut attrs = String::from("; Path=/; HttpOnly");
            if sp.permanent
                && let Some(t) = sp.absolute_timeout_s
            {
                attrs.push_str(&format!("; Max-Age={t}"));
            }
            Kind::Cookie {
                name: sp.name.as_str().into(),
                attrs: attrs.into(),
            }
        } else {
            Kind::Header(HeaderName::from_bytes(sp.name.as_bytes()).ok()?)
        };
        Some(SessionPolicy { kind })
    }

    /// The token a request carries, if any.
    pub fn token<'a>(&self, headers: &'a HeaderMap) -> Option<&'a str> {
        match &self.kind {
            Kind::Header(h) => headers.get(h).and_then(|v| v.to_str().ok()),
            Kind::Cookie { name, .. } => headers
                .get_all(header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .find_map(|kv| {
                    let (k, v) = kv.trim().split_once('=')?;
                    (k == &**name).then_some(v)
                }),
        }
    }

    /// Attach the token to a response.
    pub fn set(&self, headers: &mut HeaderMap, token: &str) {
        match &self.kind {
            Kind::Header(h) => {
                if let Ok(v) = HeaderValue::from_str(token) {
                    headers.insert(h.clone(), v);
                }
            }
            Kind::Cookie { name, attrs } => {
                if let Ok(v) = HeaderValue::from_str(&format!("{name}={token}{attrs}")) {
                    headers.append(header::SET_COOKIE, v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookie_round_trip() {
        let p = SessionPolicy::new(&SessionPersistence {
            name: "sess".into(),
            cookie: true,
            absolute_timeout_s: Some(60),
            permanent: true,
        })
        .unwrap();
        let mut resp = HeaderMap::new();
        p.set(&mut resp, "abc");
        assert_eq!(
            resp[header::SET_COOKIE],
            "sess=abc; Path=/; HttpOnly; Max-Age=60"
        );
        let mut req = HeaderMap::new();
        req.insert(header::COOKIE, HeaderValue::from_static("x=1; sess=abc"));
        assert_eq!(p.token(&req), Some("abc"));
    }
}
