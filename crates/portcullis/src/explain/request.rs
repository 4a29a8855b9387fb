//! The request to explain: `'GET https://shop.example.com/cart?x=1'` plus
//! `name: value` headers, as `curl` would send it (the URL's host is the
//! TLS SNI; a `Host` header, when given, is the authority routed on).

use serde::Serialize;

/// Why a request cannot be explained.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum RequestError {
    /// No URL.
    #[error("no request: give 'METHOD URL', e.g. 'GET http://example.com/'")]
    Empty,
    /// More than `METHOD URL`.
    #[error("a request is 'METHOD URL' or 'URL', got {0:?}")]
    Shape(String),
    /// A method that is not an HTTP token.
    #[error("method {0:?} is not an HTTP method token")]
    Method(String),
    /// The URL does not parse or is not absolute http(s).
    #[error("URL {0:?}: {1}")]
    Url(String, String),
    /// A header without `:`, or with a bad name or value.
    #[error("header {0:?}: {1}")]
    Header(String, String),
}

/// A parsed request.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Request {
    /// Upper-case method token.
    pub method: String,
    /// `http` or `https`.
    pub scheme: String,
    /// The authority routed on: the `Host` header if given, else the URL's.
    pub authority: String,
    /// The port the request is sent to (the URL's, else 80/443).
    pub port: u16,
    /// The TLS SNI (`https` only): the URL's host unless overridden.
    pub sni: Option<String>,
    /// The path as sent (not yet canonical).
    pub path: String,
    /// The raw query, without `?`.
    pub query: Option<String>,
    /// Headers other than `Host`, names lower case, in order.
    pub headers: Vec<(String, String)>,
}

impl Request {
    /// Parse `METHOD URL` (or `URL`, meaning `GET`) and `name: value` headers.
    pub fn parse(line: &str, headers: &[String]) -> Result<Self, RequestError> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let (method, url) = match words.as_slice() {
            [] => return Err(RequestError::Empty),
            [url] => ("GET", *url),
            [m, url] => (*m, *url),
            _ => return Err(RequestError::Shape(line.into())),
        };
        if !method.bytes().all(portcullis_route::chars::is_tchar) {
            return Err(RequestError::Method(method.into()));
        }
        let bad = |why: &str| RequestError::Url(url.into(), why.into());
        let uri: http::Uri = url
            .parse()
            .map_err(|e: http::uri::InvalidUri| bad(&e.to_string()))?;
        let scheme = match uri.scheme_str() {
            Some(s @ ("http" | "https")) => s.to_string(),
            Some(s) => return Err(bad(&format!("scheme {s} is not http or https"))),
            None => return Err(bad("not an absolute URL (http://host/path)")),
        };
        let auth = uri.authority().ok_or_else(|| bad("no host"))?;
        if auth.as_str().contains('@') {
            return Err(bad("userinfo is not allowed"));
        }
        let port = auth
            .port_u16()
            .unwrap_or(if scheme == "https" { 443 } else { 80 });
        let mut authority = auth.as_str().to_string();
        let mut list = Vec::new();
        for h in headers {
            let (n, v) = h
                .split_once(':')
                .ok_or_else(|| RequestError::Header(h.clone(), "no ':'".into()))?;
            let name = n.trim().to_ascii_lowercase();
            if name.is_empty() || !name.bytes().all(portcullis_route::chars::is_tchar) {
                return Err(RequestError::Header(h.clone(), "bad name".into()));
            }
            let value = v.trim().to_string();
            if http::HeaderValue::from_str(&value).is_err() {
                return Err(RequestError::Header(h.clone(), "bad value".into()));
            }
            if name == "host" {
                authority = value;
            } else {
                list.push((name, value));
            }
        }
        let sni = (scheme == "https").then(|| auth.host().to_ascii_lowercase());
        Ok(Request {
            method: method.to_ascii_uppercase(),
            scheme,
            authority,
            port,
            sni,
            path: match uri.path() {
                "" => "/".into(),
                p => p.into(),
            },
            query: uri.query().map(str::to_string),
            headers: list,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_host_is_sni_and_host_header_is_routed_on() {
        let r = Request::parse(
            "get https://shop.example.com/cart?x=1",
            &[
                "X-Env: canary".into(),
                "Host: other.example.com:8443".into(),
            ],
        )
        .unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.port, 443);
        assert_eq!(r.sni.as_deref(), Some("shop.example.com"));
        assert_eq!(r.authority, "other.example.com:8443");
        assert_eq!(r.path, "/cart");
        assert_eq!(r.query.as_deref(), Some("x=1"));
        assert_eq!(r.headers, vec![("x-env".into(), "canary".into())]);
    }

    #[test]
    fn bad_requests_say_why() {
        assert_eq!(Request::parse("", &[]), Err(RequestError::Empty));
        assert!(matches!(
            Request::parse("GET /relative", &[]),
            Err(RequestError::Url(..))
        ));
        assert!(matches!(
            Request::parse("GET ftp://x/", &[]),
            Err(RequestError::Url(..))
        ));
        assert!(matches!(
            Request::parse("http://x/", &["nocolon".into()]),
            Err(RequestError::Header(..))
        ));
        let r = Request::parse("http://x:8080", &[]).unwrap();
        assert_eq!(
            (r.method.as_str(), r.port, r.path.as_str()),
            ("GET", 8080, "/")
        );
        assert_eq!(r.sni, None);
    }
}
