//! ClientTrafficPolicy in the data plane.
//!
//! - Per port ([`port_options`]): the policy's connection settings replace
//!   the process-wide [`Options`] for that port (request-received and idle
//!   timeouts, body buffering, HTTP/1 trailers and header case, HTTP/2 settings); a change of them restarts
//!   the port (see `Running::can_serve`).
//! - Per listener ([`ListenerClient`]): the client-address detection (the
//!   process default `--trusted-hops`/`--trusted-cidrs` when the policy has
//!   none), `_` in header names, `X-Request-ID`, and the fail-closed answer
//!   of an invalid policy, and the `path` settings ([`request_path`]: the
//!   canonical path that is routed and forwarded, or a redirect). Applied by
//!   the handler once the listener is known (before routing, so dropped
//!   headers are not matched on).

use std::net::IpAddr;
use std::time::Duration;

use http::header::{HeaderMap, HeaderName, HeaderValue};
use http::{Response, StatusCode};
use portcullis_ir::client::{ClientIp, RequestId, Underscores};
use portcullis_ir::{ClientConnection, ClientTraffic};

use portcullis_route::{EscapedSlashes, PathOptions, canonicalize};

use crate::Options;
use crate::body::ProxyBody;
use crate::client_ip::ClientIpDetection;
use crate::error::ProxyError;

const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The options of one port: the process options with the port's
/// ClientTrafficPolicy connection settings applied.
pub fn port_options(base: &Options, client: Option<&ClientConnection>) -> Options {
    let mut o = base.clone();
    let Some(c) = client else { return o };
    if let Some(ms) = c.request_received_timeout_ms {
        // The head within the timeout, and the body within it after the head.
        let t = Duration::from_millis(ms);
        o.header_read_timeout = t;
        o.body_timeout = t;
        o.body_idle_timeout = o.body_idle_timeout.min(t);
    }
    if let Some(ms) = c.idle_timeout_ms {
        o.idle_timeout = Duration::from_millis(ms);
    }
    if let Some(t) = c.h1_trailers {
        o.http1_trailers = t;
    }
    o.http1_preserve_case = c.h1_preserve_case;
    if let Some(b) = c.buffer_limit {
        o.buffer_body_bytes = usize::try_from(b).unwrap_or(usize::MAX);
    }
    o
}

/// HTTP/2 settings of a port's connection builder.
pub fn h2_settings(
    b: &mut hyper_util::server::conn::auto::Builder<hyper_util::rt::TokioExecutor>,
    c: Option<&ClientConnection>,
) {
    let Some(c) = c else { return };
    let mut h2 = b.http2();
    if let Some(n) = c.h2_max_concurrent_streams {
        h2.max_concurrent_streams(n);
    }
    if let Some(n) = c.h2_initial_stream_window {
        h2.initial_stream_window_size(n);
    }
    if let Some(n) = c.h2_initial_connection_window {
        h2.initial_connection_window_size(n);
    }
}

/// The request settings of one listener, compiled.
#[derive(Clone, Debug, Default)]
pub struct ListenerClient {
    /// Client-address detection (`None`: the process default).
    pub detect: Option<ClientIpDetection>,
    /// `_` in header names.
    pub underscores: Underscores,
    /// `X-Request-ID` handling.
    pub request_id: RequestId,
    /// The policy is invalid: requests are answered 500.
    pub invalid: Option<String>,
    /// `path`: escaped slashes and slash merging.
    pub path: PathOptions,
}

impl ListenerClient {
    /// Compile a listener's settings.
    pub fn new(c: Option<&ClientTraffic>) -> Option<Self> {
        let c = c?;
        let detect = c.client_ip.as_ref().map(|ip| match ip {
            ClientIp::XForwardedFor {
                trusted_hops,
                trusted_cidrs,
            } => ClientIpDetection {
                trusted_hops: *trusted_hops,
                trusted_cidrs: trusted_cidrs
                    .iter()
                    .filter_map(|c| c.parse().ok())
                    .collect(),
                ..Default::default()
            },
            ClientIp::CustomHeader { name, fail_closed } => ClientIpDetection {
                custom_header: HeaderName::from_bytes(name.as_bytes()).ok(),
                fail_closed: *fail_closed,
                ..Default::default()
            },
        });
        Some(ListenerClient {
            detect,
            underscores: c.underscores,
            request_id: c.request_id,
            invalid: c.invalid.clone(),
            path: c.path.into(),
        })
    }

    /// Apply the header settings to a request's headers: 400 for a header
    /// with `_` under `RejectRequest`, such headers removed under
    /// `DropHeader`, `X-Request-ID` kept, generated or removed.
    pub fn headers(&self, h: &mut HeaderMap) -> Result<(), ProxyError> {
        if let Some(why) = &self.invalid {
            return Err(ProxyError::InvalidBackend(why.clone()));
        }
        match self.underscores {
            Underscores::Allow => {}
            Underscores::Reject => {
                if h.keys().any(|k| k.as_str().contains('_')) {
                    return Err(ProxyError::BadRequest("header name with underscore"));
                }
            }
            Underscores::Drop => {
                let bad: Vec<HeaderName> = h
                    .keys()
                    .filter(|k| k.as_str().contains('_'))
                    .cloned()
                    .collect();
                for k in bad {
                    h.remove(k);
                }
            }
        }
        let has = h.contains_key(&X_REQUEST_ID);
        match self.request_id {
            RequestId::PassThrough => {}
            RequestId::Preserve => {}
            RequestId::PreserveOrGenerate if has => {}
            RequestId::PreserveOrGenerate | RequestId::Generate => {
                h.insert(X_REQUEST_ID, new_request_id());
            }
            RequestId::Disable => {
                h.remove(X_REQUEST_ID);
            }
        }
        Ok(())
    }
}

/// What the request path becomes under a listener's `path` settings.
#[derive(Debug, PartialEq, Eq)]
pub enum RoutedPath {
    /// Route and forward this (canonical) path.
    Route(String),
    /// `UnescapeAndRedirect` unescaped slashes: redirect to this path.
    Redirect(String),
}

/// The canonical path of `raw` under `opts` (the defaults without a policy):
/// 400 for a path that is not absolute, a bad percent-encoding, or an
/// escaped slash under `RejectRequest`.
pub fn request_path(raw: &str, opts: &PathOptions) -> Result<RoutedPath, ProxyError> {
    let c = canonicalize(raw, opts).map_err(|e| match e {
        portcullis_route::PathError::EscapedSlash => {
            ProxyError::BadRequest("escaped slash in path")
        }
        _ => ProxyError::BadRequest("bad path"),
    })?;
    let path = c.path.into_owned();
    Ok(
        if c.unescaped_slashes && opts.escaped_slashes == EscapedSlashes::UnescapeAndRedirect {
            RoutedPath::Redirect(path)
        } else {
            RoutedPath::Route(path)
        },
    )
}

/// The `UnescapeAndRedirect` answer: 307 to `path` with the request's query.
pub fn redirect(path: &str, query: Option<&str>) -> Result<Response<ProxyBody>, ProxyError> {
    let location = match query {
        Some(q) => format!("{path}?{q}"),
        None => path.to_owned(),
    };
    let location =
        HeaderValue::from_str(&location).map_err(|_| ProxyError::BadRequest("bad path"))?;
    let mut r = Response::new(crate::body::empty());
    *r.status_mut() = StatusCode::TEMPORARY_REDIRECT;
    r.headers_mut().insert(http::header::LOCATION, location);
    Ok(r)
}

/// A random UUID (version 4), as Envoy generates.
fn new_request_id() -> HeaderValue {
    let b: [u8; 16] = rand::random();
    let mut b = b;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    let s = format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    );
    HeaderValue::from_str(&s).expect("hex and dashes are a valid header value")
}

/// The client address under `detect`, or 403 when a fail-closed custom
/// header does not give one.
pub fn client_addr(
    detect: &ClientIpDetection,
    peer: IpAddr,
    h: &HeaderMap,
) -> Result<IpAddr, ProxyError> {
    detect
        .client_addr_checked(peer, h)
        .ok_or(ProxyError::ClientAddress)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client(u: Underscores, r: RequestId) -> ListenerClient {
        ListenerClient {
            underscores: u,
            request_id: r,
            ..Default::default()
        }
    }

    #[test]
    fn request_paths() {
        let o = |escaped_slashes, merge_slashes| PathOptions {
            escaped_slashes,
            merge_slashes,
        };
        let d = PathOptions::default();
        assert_eq!(request_path("//a", &d), Ok(RoutedPath::Route("/a".into())));
        let redirect = o(EscapedSlashes::UnescapeAndRedirect, true);
        assert_eq!(
            request_path("/a%2Fb", &redirect),
            Ok(RoutedPath::Redirect("/a/b".into()))
        );
        assert_eq!(
            request_path("/a//b", &redirect),
            Ok(RoutedPath::Route("/a/b".into())),
            "no escaped slash: no redirect"
        );
        assert!(matches!(
            request_path("/a%5c", &o(EscapedSlashes::RejectRequest, true)),
            Err(ProxyError::BadRequest(_))
        ));
    }

    #[test]
    fn underscores() {
        let mut h = HeaderMap::new();
        h.insert("x_user", HeaderValue::from_static("a"));
        h.insert("x-ok", HeaderValue::from_static("b"));
        let reject = client(Underscores::Reject, RequestId::PassThrough);
        assert!(matches!(
            reject.headers(&mut h.clone()),
            Err(ProxyError::BadRequest(_))
        ));
        let drop = client(Underscores::Drop, RequestId::PassThrough);
        drop.headers(&mut h).unwrap();
        assert!(h.get("x_user").is_none() && h.get("x-ok").is_some());
    }

    #[test]
    fn request_ids() {
        let mut h = HeaderMap::new();
        h.insert("x-request-id", HeaderValue::from_static("mine"));
        let mut k = h.clone();
        client(Underscores::Allow, RequestId::PreserveOrGenerate)
            .headers(&mut k)
            .unwrap();
        assert_eq!(k["x-request-id"], "mine");
        let mut g = h.clone();
        client(Underscores::Allow, RequestId::Generate)
            .headers(&mut g)
            .unwrap();
        let id = g["x-request-id"].to_str().unwrap().to_string();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        let mut d = h.clone();
        client(Underscores::Allow, RequestId::Disable)
            .headers(&mut d)
            .unwrap();
        assert!(d.get("x-request-id").is_none());
        let mut e = HeaderMap::new();
        client(Underscores::Allow, RequestId::Preserve)
            .headers(&mut e)
            .unwrap();
        assert!(e.get("x-request-id").is_none());
    }
}
