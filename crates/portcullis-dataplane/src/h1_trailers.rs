//! `http1.enableTrailers: false` (ClientTrafficPolicy): HTTP/1 trailers are
//! dropped in both directions for HTTP/1.1 clients.
//!
//! Without a policy, or with the field unset, trailers pass through as they
//! always did (request trailers to the backend; response trailers to a client
//! that sent `TE: trailers`). A port whose policy sets `enableTrailers: false`
//! ([`crate::Options::http1_trailers`] is `false`):
//!
//! - requests read by hyper (chunked bodies; the fast path in
//!   [`crate::http1`] only reads `Content-Length` bodies, which have none)
//!   have their trailers removed before the handler sees the body
//!   ([`RequestBody`]: one `bool` test per frame, no allocation);
//! - responses to HTTP/1.x requests lose their trailers ([`strip`] on the
//!   hyper path; the fast path writes them only when both the client asked
//!   with `TE: trailers` and the port allows them).
//!
//! HTTP/2 is not affected (Envoy Gateway's field is HTTP/1 only).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};

use crate::body::ProxyBody;

/// A request body that drops its trailers when `drop` is set.
#[derive(Debug)]
pub struct RequestBody<B> {
    inner: B,
    drop: bool,
}

impl<B> RequestBody<B> {
    /// Wrap `inner`; trailers are removed when `drop`.
    pub fn new(inner: B, drop: bool) -> Self {
        RequestBody { inner, drop }
    }
}

impl<B> Body for RequestBody<B>
where
    B: Body<Data = Bytes> + Unpin,
{
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        loop {
            match Pin::new(&mut this.inner).poll_frame(cx) {
                Poll::Ready(Some(Ok(f))) if this.drop && f.is_trailers() => continue,
                other => return other,
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// `body` without its trailers (boxed again: only on ports that drop them).
pub fn strip(body: ProxyBody) -> ProxyBody {
    use http_body_util::BodyExt;
    RequestBody::new(body, true).boxed_unsync()
}

/// Whether a response to a request of `version` loses its trailers on a
/// port that allows them (`allowed`) or not.
pub fn drops(allowed: bool, version: http::Version) -> bool {
    !allowed && version <= http::Version::HTTP_11
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::body::BoxError;
    use http::HeaderMap;
    use http_body_util::{BodyExt, StreamBody};

    fn body() -> ProxyBody {
        let mut t = HeaderMap::new();
        t.insert("x-checksum", "abc".parse().unwrap());
        let frames: Vec<Result<Frame<Bytes>, BoxError>> = vec![
            Ok(Frame::data(Bytes::from_static(b"hello"))),
            Ok(Frame::trailers(t)),
        ];
        StreamBody::new(futures_util::stream::iter(frames)).boxed_unsync()
    }

    #[tokio::test]
    async fn trailers_dropped_or_kept() {
        let kept = RequestBody::new(body(), false).collect().await.unwrap();
        assert_eq!(kept.trailers().unwrap()["x-checksum"], "abc");
        let dropped = strip(body()).collect().await.unwrap();
        assert!(dropped.trailers().is_none());
        assert_eq!(dropped.to_bytes(), "hello");
    }

    #[test]
    fn only_http1_responses_lose_them() {
        assert!(drops(false, http::Version::HTTP_11));
        assert!(drops(false, http::Version::HTTP_10));
        assert!(!drops(false, http::Version::HTTP_2));
        assert!(!drops(true, http::Version::HTTP_11));
    }
}
