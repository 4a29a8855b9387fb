//! The CORS filter (Gateway API v1.6 `HTTPCORSFilter`).
//!
//! - A preflight (`OPTIONS` with `Origin` and `Access-Control-Request-Method`)
//!   is answered at the gateway with 200 and never reaches a backend. If the
//!   origin is not allowed the answer carries no CORS headers.
//! - Allowed origins: exact (scheme, host, port; the default port of the scheme
//!   is implied), `*` alone for any, or a `*` in the host that matches any
//!   number of labels to its left (`https://*.bar.com` matches
//!   `https://a.b.bar.com`). `Access-Control-Allow-Origin` always echoes the
//!   request's origin (valid with and without credentials).
//! - `allowMethods: ["*"]` and `allowHeaders: ["*"]` echo the request's
//!   `Access-Control-Request-Method` / `-Headers` (never `*`, which is invalid
//!   with credentials); otherwise the configured list is returned.
//! - `exposeHeaders` is returned on actual responses and preflights; a `*` is
//!   dropped when credentials are allowed. `maxAge` defaults to 5.
//! - Actual requests from an allowed origin get `Access-Control-Allow-Origin`,
//!   `-Allow-Credentials` and `-Expose-Headers` added to the backend's response.

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, Response, StatusCode, header};
use portcullis_ir::Cors;

use crate::body::{self, ProxyBody};

#[derive(Debug)]
enum Origin {
    Exact(String),
    Glob { prefix: String, suffix: String },
}

/// A compiled CORS policy.
#[derive(Debug)]
pub struct CorsPolicy {
    any_origin: bool,
    origins: Vec<Origin>,
    credentials: bool,
    methods: Option<HeaderValue>,
    methods_any: bool,
    headers: Option<HeaderValue>,
    headers_any: bool,
    expose: Option<HeaderValue>,
    max_age: HeaderValue,
}

fn join(list: &[String]) -> Result<Option<HeaderValue>, String> {
    if list.is_empty() {
        return Ok(None);
    }
    HeaderValue::from_str(&list.join(", "))
        .map(Some)
        .map_err(|e| e.to_string())
}

/// Lower-case the origin and drop the scheme's default port.
fn normalize_origin(o: &str) -> String {
    let o = o.trim().to_ascii_lowercase();
    if let Some(rest) = o.strip_suffix(":443")
        && rest.starts_with("https://")
    {
        return rest.to_string();
    }
    if let Some(rest) = o.strip_suffix(":80")
        && rest.starts_with("http://")
    {
        return rest.to_string();
    }
    o
}

impl CorsPolicy {
    /// Compile.
    pub fn new(c: &Cors) -> Result<Self, String> {
        let any_origin = c.allow_origins.iter().any(|o| o == "*");
        let origins = c
            .allow_origins
            .iter()
            .filter(|o| *o != "*")
            .map(|o| {
                let o = normalize_origin(o);
                match o.split_once('*') {
                    Some((p, s)) => Origin::Glob {
                        prefix: p.to_string(),
                        suffix: s.to_string(),
                    },
                    None => Origin::Exact(o),
                }
            })
            .collect();
        let methods_any = c.allow_methods.iter().any(|m| m == "*");
        let headers_any = c.allow_headers.iter().any(|m| m == "*");
        let expose: Vec<String> = c
            .expose_headers
            .iter()
            .filter(|h| !(c.allow_credentials && *h == "*"))
            .cloned()
            .collect();
        Ok(CorsPolicy {
            any_origin,
            origins,
            credentials: c.allow_credentials,
            methods: if methods_any {
                None
            } else {
                join(&c.allow_methods)?
            },
            methods_any,
            headers: if headers_any {
                None
            } else {
                join(&c.allow_headers)?
            },
            headers_any,
            expose: join(&expose)?,
            max_age: HeaderValue::from(c.max_age.unwrap_or(5)),
        })
    }

    /// Whether an `Origin` value is allowed.
    pub fn origin_allowed(&self, origin: &str) -> bool {
        if self.any_origin {
            return true;
        }
        let o = normalize_origin(origin);
        self.origins.iter().any(|p| match p {
            Origin::Exact(e) => *e == o,
            Origin::Glob { prefix, suffix } => {
                o.len() > prefix.len() + suffix.len()
                    && o.starts_with(prefix.as_str())
                    && o.ends_with(suffix.as_str())
            }
        })
    }

    /// Whether a request is a CORS preflight.
    pub fn is_preflight(method: &Method, h: &HeaderMap) -> bool {
        method == Method::OPTIONS
            && h.contains_key(header::ORIGIN)
            && h.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    }

    /// The allowed request origin, if the request has one and it is allowed.
    pub fn allowed_origin(&self, h: &HeaderMap) -> Option<HeaderValue> {
        let o = h.get(header::ORIGIN)?;
        self.origin_allowed(o.to_str().ok()?).then(|| o.clone())
    }

    /// The answer to a preflight.
    pub fn preflight(&self, req: &HeaderMap) -> Response<ProxyBody> {
        let mut r = Response::new(body::full(Bytes::new()));
        *r.status_mut() = StatusCode::OK;
        let h = r.headers_mut();
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
        let Some(origin) = self.allowed_origin(req) else {
            return r;
        };
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        if self.credentials {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        let echo = |name: HeaderName| req.get(name).cloned();
        let methods = if self.methods_any {
            echo(header::ACCESS_CONTROL_REQUEST_METHOD)
        } else {
            self.methods.clone()
        };
        if let Some(m) = methods {
            h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, m);
        }
        if req.contains_key(header::ACCESS_CONTROL_REQUEST_HEADERS) {
            let headers = if self.headers_any {
                echo(header::ACCESS_CONTROL_REQUEST_HEADERS)
            } else {
                self.headers.clone()
            };
            if let Some(v) = headers {
                h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, v);
            }
        }
        if let Some(e) = &self.expose {
            h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, e.clone());
        }
        h.insert(header::ACCESS_CONTROL_MAX_AGE, self.max_age.clone());
        r
    }

    /// Add the headers of an actual (non-preflight) response.
    pub fn decorate(&self, origin: HeaderValue, h: &mut HeaderMap) {
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.append(header::VARY, HeaderValue::from_static("Origin"));
        if self.credentials {
            h.insert(
                header::ACCESS_CONTROL_ALLOW_CREDENTIALS,
                HeaderValue::from_static("true"),
            );
        }
        if let Some(e) = &self.expose {
            h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, e.clone());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(origins: &[&str]) -> CorsPolicy {
        CorsPolicy::new(&Cors {
            allow_origins: origins.iter().map(|s| s.to_string()).collect(),
            allow_credentials: true,
            allow_methods: vec!["GET".into(), "OPTIONS".into()],
            allow_headers: vec!["x-header-1".into(), "x-header-2".into()],
            expose_headers: vec!["x-header-3".into(), "x-header-4".into()],
            max_age: Some(3600),
        })
        .unwrap()
    }

    #[test]
    fn origin_matching() {
        let p = policy(&["https://www.foo.com", "https://*.bar.com"]);
        assert!(p.origin_allowed("https://www.foo.com"));
        assert!(p.origin_allowed("https://www.foo.com:443"));
        assert!(p.origin_allowed("https://www.bar.com"));
        assert!(p.origin_allowed("https://xpto.www.bar.com"));
        assert!(!p.origin_allowed("https://bar.com"));
        assert!(!p.origin_allowed("https://foobar.com"));
        assert!(!p.origin_allowed("http://www.foo.com"));
        assert!(policy(&["*"]).origin_allowed("https://foobar.com:12345"));
    }

    #[test]
    fn preflight_headers() {
        let p = policy(&["https://www.foo.com"]);
        let mut req = HeaderMap::new();
        req.insert(
            header::ORIGIN,
            HeaderValue::from_static("https://www.foo.com"),
        );
        req.insert(
            header::ACCESS_CONTROL_REQUEST_METHOD,
            HeaderValue::from_static("GET"),
        );
        req.insert(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            HeaderValue::from_static("x-header-1"),
        );
        let r = p.preflight(&req);
        let h = r.headers();
        assert_eq!(r.status(), 200);
        assert_eq!(
            h[header::ACCESS_CONTROL_ALLOW_ORIGIN],
            "https://www.foo.com"
        );
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_METHODS], "GET, OPTIONS");
        assert_eq!(
            h[header::ACCESS_CONTROL_ALLOW_HEADERS],
            "x-header-1, x-header-2"
        );
        assert_eq!(
            h[header::ACCESS_CONTROL_EXPOSE_HEADERS],
            "x-header-3, x-header-4"
        );
        assert_eq!(h[header::ACCESS_CONTROL_MAX_AGE], "3600");
        assert_eq!(h[header::ACCESS_CONTROL_ALLOW_CREDENTIALS], "true");
        req.insert(header::ORIGIN, HeaderValue::from_static("https://evil.com"));
        let r = p.preflight(&req);
        assert!(
            !r.headers()
                .contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN)
        );
    }
}
