//! The request body as the upstream exchange uses it: empty, buffered (small
//! enough to replay for retries and mirrors) or streamed (bounded by the
//! maximum body size, counted for the statistics).

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, header};
use http_body_util::{BodyExt, Limited};
use hyper::body::Body;
use portcullis_obs::http::HttpStats;

use crate::Options;
use crate::body::{self, BoxError, ProxyBody};
use crate::error::ProxyError;
use crate::observe::Counting;

/// The request body, buffered when small enough to replay.
pub(crate) enum ReqBody {
    Empty,
    Buffered(Bytes),
    Streaming(Option<ProxyBody>),
}

impl ReqBody {
    pub(crate) async fn prepare<B>(
        body: B,
        headers: &HeaderMap,
        opts: &Options,
        may_buffer: bool,
        stats: Option<&Arc<HttpStats>>,
    ) -> Result<Self, ProxyError>
    where
        B: Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        if body.is_end_stream() {
            return Ok(ReqBody::Empty);
        }
        let len = headers
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if let (Some(max), Some(len)) = (opts.max_body_bytes, len)
            && len > max
        {
            return Err(ProxyError::PayloadTooLarge);
        }
        if let Some(len) = len
            && may_buffer
            && len <= opts.buffer_body_bytes as u64
        {
            let b = body
                .collect()
                .await
                .map_err(|_| ProxyError::BadRequest("request body"))?
                .to_bytes();
            return Ok(ReqBody::Buffered(b));
        }
        // Counted inside the box the body gets anyway.
        Ok(ReqBody::Streaming(Some(
            match (opts.max_body_bytes, stats) {
                (Some(max), Some(s)) => body::boxed(Counting::new(
                    Limited::new(body, usize::try_from(max).unwrap_or(usize::MAX)),
                    s.clone(),
                )),
                (Some(max), None) => body::boxed(Limited::new(
                    body,
                    usize::try_from(max).unwrap_or(usize::MAX),
                )),
                (None, Some(s)) => body::boxed(Counting::new(body, s.clone())),
                (None, None) => body::boxed(body),
            },
        )))
    }

    pub(crate) fn replay(&self) -> Option<Bytes> {
        match self {
            ReqBody::Empty => Some(Bytes::new()),
            ReqBody::Buffered(b) => Some(b.clone()),
            ReqBody::Streaming(_) => None,
        }
    }

    pub(crate) fn for_attempt(&mut self) -> ProxyBody {
        match self {
            ReqBody::Empty => body::empty(),
            ReqBody::Buffered(b) => body::full(b.clone()),
            ReqBody::Streaming(s) => s.take().unwrap_or_else(body::empty),
        }
    }
}
