//! API key authentication (`apiKeyAuth`).
//!
//! - Keys come from Secrets mapping client ID → key (the first Secret holding a
//!   client ID wins). The key is read from the first `extractFrom` source that
//!   holds one (header, query parameter or cookie).
//! - Every configured key is compared with the presented one in constant time
//!   (`subtle`), all of them, so the answer time does not tell which client or
//!   how much of a key matched.
//! - Success: `forwardClientIDHeader` (if set) carries the client ID (an
//!   inbound copy is always dropped); with `sanitize` the key is removed.
//! - Failure: 401 with `WWW-Authenticate: API-Key`.

use http::{HeaderName, HeaderValue, Response, StatusCode};
use portcullis_ir::security as ir;
use subtle::ConstantTimeEq;

use super::{extract, plain, strip};
use crate::body::ProxyBody;
use crate::filters::ReqState;

/// A compiled `apiKeyAuth`.
pub struct ApiKeyAuth {
    clients: Vec<(HeaderValue, Vec<u8>)>,
    extract: Vec<ir::TokenSources>,
    forward: Option<HeaderName>,
    sanitize: bool,
}

impl std::fmt::Debug for ApiKeyAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiKeyAuth")
            .field("clients", &self.clients.len())
            .field("forward", &self.forward)
            .field("sanitize", &self.sanitize)
            .finish_non_exhaustive()
    }
}

impl ApiKeyAuth {
    /// Compile.
    pub fn new(a: &ir::ApiKeyAuth) -> Result<Self, String> {
        let clients = a
            .clients
            .iter()
            .map(|(id, key)| {
                HeaderValue::from_str(id)
                    .map(|id| (id, key.expose().trim().as_bytes().to_vec()))
                    .map_err(|_| format!("client ID {id:?} is not a valid header value"))
            })
            .collect::<Result<_, _>>()?;
        let forward = a
            .forward_client_id_header
            .as_deref()
            .map(|h| {
                HeaderName::from_bytes(h.as_bytes())
                    .map_err(|e| format!("forwardClientIDHeader: {e}"))
            })
            .transpose()?;
        Ok(ApiKeyAuth {
            clients,
            extract: a.extract.clone(),
            forward,
            sanitize: a.sanitize,
        })
    }

    /// The client ID whose key is `presented`, comparing with every key.
    fn client(&self, presented: &[u8]) -> Option<&HeaderValue> {
        let mut found = None;
        for (id, key) in &self.clients {
            if bool::from(key.as_slice().ct_eq(presented)) && found.is_none() {
                found = Some(id);
            }
        }
        found
    }

    /// Authenticate.
    pub fn check(&self, st: &mut ReqState) -> Result<(), Response<ProxyBody>> {
        if let Some(h) = &self.forward {
            st.headers.remove(h);
        }
        let found = self.extract.iter().find_map(|src| extract(src, st));
        let Some((key, at)) = found else {
            return Err(deny("Client authentication failed.\n"));
        };
        let Some(id) = self.client(key.as_bytes()).cloned() else {
            return Err(deny("Client authentication failed.\n"));
        };
        if self.sanitize {
            strip(st, &at);
        }
        if let Some(h) = &self.forward {
            st.headers.insert(h.clone(), id);
        }
        Ok(())
    }
}

fn deny(text: &'static str) -> Response<ProxyBody> {
    plain(
        StatusCode::UNAUTHORIZED,
        text,
        Some(HeaderValue::from_static("API-Key")),
    )
}
