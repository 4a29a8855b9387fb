//! RequestRedirect.
//!
//! Gateway API `HTTPRequestRedirectFilter`: scheme and hostname default to the
//! request's; the path is modified by `ReplaceFullPath` / `ReplacePrefixMatch`
//! or kept. Port: "If redirect scheme is not-empty, the redirect port MUST be
//! the well-known port associated with the redirect scheme [...] If redirect
//! scheme is empty, the redirect port MUST be the Gateway Listener port."
//! The port is left out of `Location` for http on 80 and https on 443. The
//! query string is kept.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use portcullis_ir::{PathModifier, Redirect};

use super::rewrite::replace_prefix;
use crate::body::{self, ProxyBody};

/// A compiled redirect.
#[derive(Debug)]
pub struct RedirectFilter {
    scheme: Option<Box<str>>,
    hostname: Option<Box<str>>,
    path: Option<PathModifier>,
    port: Option<u16>,
    status: StatusCode,
}

/// The request facts a redirect needs.
#[derive(Debug)]
pub struct RedirectInput<'a> {
    /// Scheme of the listener (`http`/`https`).
    pub scheme: &'a str,
    /// Request host without port.
    pub host: &'a str,
    /// Listener port.
    pub listener_port: u16,
    /// Canonical request path.
    pub path: &'a str,
    /// Query string.
    pub query: Option<&'a str>,
    /// Prefix of the matched PathPrefix rule.
    pub matched_prefix: Option<&'a str>,
}

impl RedirectFilter {
    /// Compile; an unknown status code makes the filter invalid.
    pub fn new(r: &Redirect) -> Result<Self, String> {
        if !matches!(r.status_code, 301 | 302 | 303 | 307 | 308) {
            return Err(format!("unsupported redirect status {}", r.status_code));
        }
        if let Some(s) = &r.scheme
            && s != "http"
            && s != "https"
        {
            return Err(format!("unsupported redirect scheme {s:?}"));
        }
        Ok(RedirectFilter {
            scheme: r.scheme.as_deref().map(Into::into),
            hostname: r.hostname.as_deref().map(Into::into),
            path: r.path.clone(),
            port: r.port,
            status: StatusCode::from_u16(r.status_code).map_err(|e| e.to_string())?,
        })
    }

    /// The `Location` value.
    pub fn location(&self, i: &RedirectInput<'_>) -> String {
        let scheme = self.scheme.as_deref().unwrap_or(i.scheme);
        let host = self.hostname.as_deref().unwrap_or(i.host);
        let port = match (self.port, &self.scheme) {
            (Some(p), _) => p,
            (None, Some(s)) if &**s == "https" => 443,
            (None, Some(_)) => 80,
            (None, None) => i.listener_port,
        };
        let path = match &self.path {
            None => i.path.to_string(),
            Some(PathModifier::ReplaceFullPath(p)) => p.clone(),
            Some(PathModifier::ReplacePrefixMatch(r)) => match i.matched_prefix {
                Some(prefix) => replace_prefix(i.path, prefix, r),
                None => i.path.to_string(),
            },
        };
        let default_port = (scheme == "http" && port == 80) || (scheme == "https" && port == 443);
        let mut loc = format!("{scheme}://{host}");
        if !default_port {
            loc.push_str(&format!(":{port}"));
        }
        loc.push_str(&path);
        if let Some(q) = i.query {
            loc.push('?');
            loc.push_str(q);
        }
        loc
    }

    /// The redirect response.
    pub fn response(&self, i: &RedirectInput<'_>) -> Response<ProxyBody> {
        let mut r = Response::new(body::full(Bytes::new()));
        *r.status_mut() = self.status;
        if let Ok(v) = HeaderValue::from_str(&self.location(i)) {
            r.headers_mut().insert(header::LOCATION, v);
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input<'a>(port: u16, path: &'a str) -> RedirectInput<'a> {
        RedirectInput {
            scheme: "http",
            host: "example.com",
            listener_port: port,
            path,
            query: Some("a=1"),
            matched_prefix: Some("/foo"),
        }
    }

    fn r(
        scheme: Option<&str>,
        host: Option<&str>,
        port: Option<u16>,
        path: Option<PathModifier>,
    ) -> RedirectFilter {
        RedirectFilter::new(&Redirect {
            scheme: scheme.map(Into::into),
            hostname: host.map(Into::into),
            path,
            port,
            status_code: 302,
        })
        .unwrap()
    }

    #[test]
    fn port_derivation() {
        assert_eq!(
            r(None, None, None, None).location(&input(8080, "/x")),
            "http://example.com:8080/x?a=1"
        );
        assert_eq!(
            r(None, None, None, None).location(&input(80, "/x")),
            "http://example.com/x?a=1"
        );
        assert_eq!(
            r(Some("https"), None, None, None).location(&input(8080, "/x")),
            "https://example.com/x?a=1"
        );
        assert_eq!(
            r(Some("http"), None, None, None).location(&input(8080, "/x")),
            "http://example.com/x?a=1"
        );
        assert_eq!(
            r(Some("https"), None, Some(8443), None).location(&input(80, "/x")),
            "https://example.com:8443/x?a=1"
        );
        assert_eq!(
            r(None, Some("other.org"), Some(443), None).location(&input(80, "/x")),
            "http://other.org:443/x?a=1"
        );
        assert_eq!(
            r(Some("https"), None, Some(443), None).location(&input(80, "/x")),
            "https://example.com/x?a=1"
        );
    }

    #[test]
    fn paths() {
        let full = r(
            None,
            None,
            None,
            Some(PathModifier::ReplaceFullPath("/new".into())),
        );
        assert_eq!(
            full.location(&input(80, "/foo/bar")),
            "http://example.com/new?a=1"
        );
        let pre = r(
            None,
            None,
            None,
            Some(PathModifier::ReplacePrefixMatch("/bar".into())),
        );
        assert_eq!(
            pre.location(&input(80, "/foo/x")),
            "http://example.com/bar/x?a=1"
        );
        assert!(
            RedirectFilter::new(&Redirect {
                scheme: None,
                hostname: None,
                path: None,
                port: None,
                status_code: 200
            })
            .is_err()
        );
    }
}
