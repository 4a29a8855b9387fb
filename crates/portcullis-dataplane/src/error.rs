//! Every error the gateway answers itself, mapped to a response in one place.
//!
//! gRPC requests (`content-type: application/grpc*`) get gRPC-shaped errors:
//! HTTP 200, a trailers-only response (one HEADERS frame with END_STREAM)
//! carrying `grpc-status` and `grpc-message`. No route is `12 UNIMPLEMENTED`;
//! an unavailable upstream (connect failure, no endpoints, an invalid backend
//! as GRPCRoute's `backendRefs` documentation requires) is `14 UNAVAILABLE`;
//! a timeout is `4 DEADLINE_EXCEEDED`; an invalid filter or a malformed
//! request `13 INTERNAL`; a too-large body `8 RESOURCE_EXHAUSTED`. A
//! misdirected request stays HTTP 421: it tells the client to use another
//! connection, which is not an RPC outcome.

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};

use crate::body::{self, ProxyBody};
use portcullis_obs::accesslog::Flag;

/// An error answered by the gateway.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// No listener on the port serves the request's host.
    #[error("no listener for host")]
    NoListener,
    /// No route rule matched.
    #[error("no matching route")]
    NoRoute,
    /// The chosen backend is invalid, or the rule has no backends.
    #[error("invalid backend: {0}")]
    InvalidBackend(String),
    /// The rule has a filter that could not be resolved.
    #[error("invalid filter: {0}")]
    InvalidFilter(String),
    /// The backend has no endpoints.
    #[error("no healthy endpoints")]
    NoEndpoints,
    /// The upstream connection or exchange failed.
    #[error("upstream failure: {0}")]
    Upstream(String),
    /// A request or backend-request timeout expired.
    #[error("upstream timeout")]
    Timeout,
    /// The request is malformed.
    #[error("bad request: {0}")]
    BadRequest(&'static str),
    /// The request body is larger than allowed.
    #[error("payload too large")]
    PayloadTooLarge,
    /// The request uses a feature the gateway does not implement (a
    /// transfer coding other than `chunked`), answered 501 as nginx does.
    #[error("not implemented: {0}")]
    NotImplemented(&'static str),
    /// The client did not send the request body in time (body idle timeout
    /// or total body deadline).
    #[error("request body timeout")]
    RequestTimeout,
    /// The request's Host belongs to another listener than the TLS
    /// connection's SNI selected.
    #[error("misdirected request")]
    Misdirected,
    /// A BackendTrafficPolicy rate limit is exhausted (429).
    #[error("rate limited")]
    RateLimited(Quota),
    /// The global rate-limit service (Redis) could not decide, and the limit
    /// fails closed (503).
    #[error("rate-limit service unavailable")]
    RateLimitUnavailable,
    /// The backend's circuit breaker is open (`maxParallelRequests`): 503 at once.
    #[error("upstream overflow")]
    Overflow,
    /// A ClientTrafficPolicy `customHeader` with `failClosed` gave no client
    /// address (403).
    #[error("client address unknown")]
    ClientAddress,
}

/// What a rate-limit answer tells the client: the draft IETF `RateLimit-*`
/// header fields (draft-ietf-httpapi-ratelimit-headers) and `Retry-After`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    /// `RateLimit-Limit`: the bucket size of the tightest rule.
    pub limit: u64,
    /// `RateLimit-Remaining`: requests left in it.
    pub remaining: u64,
    /// `RateLimit-Reset`: seconds until it is full again.
    pub reset_secs: u64,
    /// `Retry-After` (refused requests): seconds until this request would pass.
    pub retry_after_secs: u64,
}

impl Quota {
    /// Add the `RateLimit-*` fields (and `Retry-After` when refused).
    pub fn decorate(&self, h: &mut HeaderMap, refused: bool) {
        h.insert("ratelimit-limit", HeaderValue::from(self.limit));
        h.insert("ratelimit-remaining", HeaderValue::from(self.remaining));
        h.insert("ratelimit-reset", HeaderValue::from(self.reset_secs));
        if refused {
            h.insert(
                header::RETRY_AFTER,
                HeaderValue::from(self.retry_after_secs),
            );
        }
    }
}

/// A denial answered to a gRPC request, as gRPC: HTTP 200 with a trailers-only
/// `grpc-status` (401 → 16 UNAUTHENTICATED, 403 → 7 PERMISSION_DENIED, 429 → 8
/// RESOURCE_EXHAUSTED, 500 → 13 INTERNAL, 503 → 14 UNAVAILABLE), keeping the
/// answer's headers (`WWW-Authenticate`…). Other answers (a redirect, a CORS
/// preflight) are left as they are.
pub fn grpc_shaped(r: Response<ProxyBody>) -> Response<ProxyBody> {
    let code: u16 = match r.status().as_u16() {
        401 => 16,
        403 => 7,
        429 => 8,
        500 => 13,
        503 => 14,
        _ => return r,
    };
    let (mut parts, _) = r.into_parts();
    let message = parts
        .status
        .canonical_reason()
        .unwrap_or("denied")
        .to_ascii_lowercase();
    parts.status = StatusCode::OK;
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    parts.headers.insert("grpc-status", HeaderValue::from(code));
    if let Ok(m) = HeaderValue::from_str(&message) {
        parts.headers.insert("grpc-message", m);
    }
    Response::from_parts(parts, body::empty())
}

/// Whether a request is gRPC: `content-type: application/grpc` or `application/grpc+…`.
pub fn is_grpc(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).is_some_and(|v| {
        let v = v.as_bytes();
        v.len() >= 16
            && v[..16].eq_ignore_ascii_case(b"application/grpc")
            && matches!(v.get(16), None | Some(b'+' | b';'))
    })
}

impl ProxyError {
    /// The status answered.
    pub fn status(&self) -> StatusCode {
        match self {
            ProxyError::NoListener | ProxyError::NoRoute => StatusCode::NOT_FOUND,
            ProxyError::InvalidBackend(_) | ProxyError::InvalidFilter(_) => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            ProxyError::NoEndpoints => StatusCode::SERVICE_UNAVAILABLE,
            ProxyError::Upstream(_) => StatusCode::BAD_GATEWAY,
            ProxyError::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ProxyError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ProxyError::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ProxyError::NotImplemented(_) => StatusCode::NOT_IMPLEMENTED,
            ProxyError::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ProxyError::Misdirected => StatusCode::MISDIRECTED_REQUEST,
            ProxyError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ProxyError::RateLimitUnavailable | ProxyError::Overflow => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            ProxyError::ClientAddress => StatusCode::FORBIDDEN,
        }
    }

    /// The gRPC status code for a gRPC request, `None` when the error is
    /// answered with its HTTP status even to gRPC clients.
    pub fn grpc_status(&self) -> Option<u8> {
        match self {
            ProxyError::NoListener | ProxyError::NoRoute => Some(12),
            ProxyError::NoEndpoints | ProxyError::Upstream(_) | ProxyError::InvalidBackend(_) => {
                Some(14)
            }
            ProxyError::Timeout | ProxyError::RequestTimeout => Some(4),
            ProxyError::InvalidFilter(_) | ProxyError::BadRequest(_) => Some(13),
            ProxyError::PayloadTooLarge => Some(8),
            ProxyError::NotImplemented(_) => Some(12),
            ProxyError::Misdirected => None,
            ProxyError::RateLimited(_) => Some(8),
            ProxyError::RateLimitUnavailable | ProxyError::Overflow => Some(14),
            ProxyError::ClientAddress => Some(7),
        }
    }

    /// The access-log response flag's code.
    pub fn flag(&self) -> &'static str {
        self.response_flag().code()
    }

    /// The access-log response flag.
    pub fn response_flag(&self) -> Flag {
        match self {
            ProxyError::NoListener | ProxyError::NoRoute => Flag::NoRoute,
            ProxyError::InvalidBackend(_) => Flag::InvalidBackend,
            ProxyError::InvalidFilter(_) => Flag::InvalidFilter,
            ProxyError::NoEndpoints => Flag::NoHealthyUpstream,
            ProxyError::Upstream(_) => Flag::UpstreamFailure,
            ProxyError::Timeout => Flag::UpstreamTimeout,
            ProxyError::BadRequest(_) => Flag::BadRequest,
            ProxyError::PayloadTooLarge => Flag::PayloadTooLarge,
            ProxyError::NotImplemented(_) => Flag::NotImplemented,
            ProxyError::RequestTimeout => Flag::RequestTimeout,
            ProxyError::Misdirected => Flag::Misdirected,
            ProxyError::RateLimited(_) => Flag::RateLimited,
            ProxyError::RateLimitUnavailable => Flag::RateLimitServiceError,
            ProxyError::Overflow => Flag::UpstreamOverflow,
            ProxyError::ClientAddress => Flag::BadRequest,
        }
    }

    /// The short plain-text body.
    pub fn body(&self) -> &'static str {
        match self {
            ProxyError::NoListener | ProxyError::NoRoute => "no route\n",
            ProxyError::InvalidBackend(_) => "invalid backend\n",
            ProxyError::InvalidFilter(_) => "invalid filter\n",
            ProxyError::NoEndpoints => "no healthy upstream\n",
            ProxyError::Upstream(_) => "upstream connect error\n",
            ProxyError::Timeout => "upstream request timeout\n",
            ProxyError::BadRequest(_) => "bad request\n",
            ProxyError::PayloadTooLarge => "payload too large\n",
            ProxyError::NotImplemented(_) => "not implemented\n",
            ProxyError::RequestTimeout => "request body timeout\n",
            ProxyError::Misdirected => "misdirected request\n",
            ProxyError::RateLimited(_) => "too many requests\n",
            ProxyError::RateLimitUnavailable => "rate limit service unavailable\n",
            ProxyError::Overflow => "upstream overflow\n",
            ProxyError::ClientAddress => "forbidden\n",
        }
    }

    /// The response for a request; `grpc` when the request is gRPC (see
    /// [`is_grpc`]), which gets a trailers-only gRPC error when
    /// [`ProxyError::grpc_status`] has one.
    pub fn response_for(&self, grpc: bool) -> Response<ProxyBody> {
        let mut r = match self.grpc_status() {
            Some(code) if grpc => self.grpc_response(code),
            _ => self.response(),
        };
        if let ProxyError::RateLimited(q) = self {
            q.decorate(r.headers_mut(), true);
        }
        r
    }

    fn grpc_response(&self, code: u8) -> Response<ProxyBody> {
        let mut r = Response::new(body::empty());
        let h = r.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/grpc"),
        );
        h.insert("grpc-status", HeaderValue::from(u16::from(code)));
        // The plain-text body, without its newline, is the message.
        h.insert(
            "grpc-message",
            HeaderValue::from_static(self.body().trim_end()),
        );
        r
    }

    /// The plain HTTP response. 400, 408 and 413 also close the connection.
    pub fn response(&self) -> Response<ProxyBody> {
        let mut r = Response::new(body::full(Bytes::from_static(self.body().as_bytes())));
        *r.status_mut() = self.status();
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        if matches!(
            self,
            ProxyError::BadRequest(_) | ProxyError::PayloadTooLarge | ProxyError::RequestTimeout
        ) {
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body::Body;

    #[test]
    fn grpc_detection_and_trailers_only_errors() {
        let mut h = HeaderMap::new();
        assert!(!is_grpc(&h));
        for (v, want) in [
            ("application/grpc", true),
            ("application/grpc+proto", true),
            ("Application/GRPC; charset=x", true),
            ("application/grpc-web", false),
            ("application/json", false),
        ] {
            h.insert(header::CONTENT_TYPE, HeaderValue::from_static(v));
            assert_eq!(is_grpc(&h), want, "{v}");
        }
        let r = ProxyError::NoRoute.response_for(true);
        assert_eq!(r.status(), StatusCode::OK);
        assert_eq!(r.headers()["grpc-status"], "12");
        assert_eq!(r.headers()["grpc-message"], "no route");
        assert!(r.body().is_end_stream(), "trailers-only: no body");
        let r = ProxyError::InvalidBackend("x".into()).response_for(true);
        assert_eq!(r.headers()["grpc-status"], "14");
        assert_eq!(
            ProxyError::Timeout.response_for(true).headers()["grpc-status"],
            "4"
        );
        let r = ProxyError::Misdirected.response_for(true);
        assert_eq!(r.status(), StatusCode::MISDIRECTED_REQUEST);
        assert_eq!(ProxyError::NoRoute.response_for(false).status(), 404);
    }
}
