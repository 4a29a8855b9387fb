//! Every error the gateway answers itself, mapped to a response in one place.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};

use crate::body::{self, ProxyBody};

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
        }
    }

    /// The access-log response flag.
    pub fn flag(&self) -> &'static str {
        match self {
            ProxyError::NoListener | ProxyError::NoRoute => "NR",
            ProxyError::InvalidBackend(_) => "IB",
            ProxyError::InvalidFilter(_) => "IF",
            ProxyError::NoEndpoints => "UH",
            ProxyError::Upstream(_) => "UF",
            ProxyError::Timeout => "UT",
            ProxyError::BadRequest(_) => "BR",
            ProxyError::PayloadTooLarge => "PL",
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
        }
    }

    /// The response. 400 and 413 also close the connection.
    pub fn response(&self) -> Response<ProxyBody> {
        let mut r = Response::new(body::full(Bytes::from_static(self.body().as_bytes())));
        *r.status_mut() = self.status();
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
        if matches!(
            self,
            ProxyError::BadRequest(_) | ProxyError::PayloadTooLarge
        ) {
            r.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        r
    }
}
