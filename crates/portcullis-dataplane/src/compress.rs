//! BackendTrafficPolicy `compression`: response bodies compressed with the
//! first of the policy's algorithms (in its order) that the request's
//! `Accept-Encoding` accepts (`q` > 0; `*` accepts any), streaming.
//!
//! Left alone: responses already encoded (`Content-Encoding`), `HEAD`
//! requests, 1xx/204/304 answers, `Cache-Control: no-transform`, content
//! types outside the compressible list (text, JSON, JavaScript, XML, SVG…:
//! images, video and archives are compressed already), and bodies known to
//! be shorter than `minContentLength`. A compressed response loses its
//! `Content-Length`, gains `Vary: Accept-Encoding`, and a strong `ETag`
//! becomes weak.

use async_compression::Level;
use bytes::Bytes;
use futures_util::TryStreamExt;
use http::{HeaderMap, HeaderValue, Response, StatusCode, header};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, StreamBody};
use portcullis_ir::traffic::{Compression, Compressor};
use tokio_util::io::{ReaderStream, StreamReader};

use crate::body::{self, ProxyBody};

/// Content types worth compressing (Envoy's default list, plus a few).
const COMPRESSIBLE: &[&str] = &[
    "text/",
    "application/json",
    "application/javascript",
    "application/x-javascript",
    "application/xml",
    "application/xhtml+xml",
    "application/rss+xml",
    "application/atom+xml",
    "application/ld+json",
    "application/graphql-response+json",
    "application/problem+json",
    "application/wasm",
    "image/svg+xml",
    "font/ttf",
    "font/otf",
];

fn token(c: Compressor) -> &'static str {
    match c {
        Compressor::Gzip => "gzip",
        Compressor::Brotli => "br",
        Compressor::Zstd => "zstd",
    }
}

/// The compressor to use for a request's `Accept-Encoding`, if any.
pub fn negotiate(cfg: &Compression, req: &HeaderMap) -> Option<Compressor> {
    let mut accepted: Vec<(String, bool)> = vec![];
    for v in req.get_all(header::ACCEPT_ENCODING) {
        for item in v.to_str().ok()?.split(',') {
            let mut parts = item.split(';');
            let name = parts.next()?.trim().to_ascii_lowercase();
            let zero = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q <= 0.0)
            });
            accepted.push((name, !zero));
        }
    }
    cfg.algorithms.iter().copied().find(|c| {
        let t = token(*c);
        match accepted.iter().find(|(n, _)| n == t) {
            Some((_, ok)) => *ok,
            None => accepted.iter().any(|(n, ok)| n == "*" && *ok),
        }
    })
}

fn compressible(h: &HeaderMap) -> bool {
    let Some(ct) = h.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let ct = ct.trim().to_ascii_lowercase();
    COMPRESSIBLE.iter().any(|p| ct.starts_with(p))
}

/// Compress `resp` (the answer to a `HEAD` request when `head`) with `with`
/// when it qualifies.
pub fn apply(
    cfg: &Compression,
    with: Compressor,
    head: bool,
    resp: Response<ProxyBody>,
) -> Response<ProxyBody> {
    let h = resp.headers();
    let st = resp.status();
    let small = resp
        .body()
        .size_hint()
        .exact()
        .is_some_and(|n| n < cfg.min_content_length);
    let no_transform = h.get_all(header::CACHE_CONTROL).iter().any(|v| {
        v.to_str()
            .is_ok_and(|v| v.to_ascii_lowercase().contains("no-transform"))
    });
    if head
        || st.is_informational()
        || st == StatusCode::NO_CONTENT
        || st == StatusCode::NOT_MODIFIED
        || h.contains_key(header::CONTENT_ENCODING)
        || no_transform
        || small
        || !compressible(h)
    {
        return resp;
    }
    let (mut parts, b) = resp.into_parts();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_ENCODING,
        HeaderValue::from_static(token(with)),
    );
    parts
        .headers
        .append(header::VARY, HeaderValue::from_static("accept-encoding"));
    if let Some(etag) = parts.headers.get(header::ETAG).cloned()
        && !etag.as_bytes().starts_with(b"W/")
    {
        let mut weak = b"W/".to_vec();
        weak.extend_from_slice(etag.as_bytes());
        if let Ok(v) = HeaderValue::from_bytes(&weak) {
            parts.headers.insert(header::ETAG, v);
        }
    }
    let reader = StreamReader::new(b.into_data_stream().map_err(std::io::Error::other));
    let level = Level::Default;
    let out: ProxyBody = match with {
        Compressor::Gzip => {
            stream(async_compression::tokio::bufread::GzipEncoder::with_quality(reader, level))
        }
        Compressor::Brotli => {
            // Brotli's default (11) is far too slow on the fly; 4 is the usual choice.
            stream(
                async_compression::tokio::bufread::BrotliEncoder::with_quality(
                    reader,
                    Level::Precise(4),
                ),
            )
        }
        Compressor::Zstd => {
            stream(async_compression::tokio::bufread::ZstdEncoder::with_quality(reader, level))
        }
    };
    Response::from_parts(parts, out)
}

fn stream<R>(r: R) -> ProxyBody
where
    R: tokio::io::AsyncRead + Send + 'static,
{
    body::boxed(StreamBody::new(
        ReaderStream::new(r).map_ok(Frame::<Bytes>::data),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(a: &[Compressor]) -> Compression {
        Compression {
            algorithms: a.to_vec(),
            min_content_length: 30,
        }
    }

    fn ae(v: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(header::ACCEPT_ENCODING, v.parse().unwrap());
        h
    }

    #[test]
    fn negotiation_follows_the_policy_order_and_q_values() {
        let c = cfg(&[Compressor::Zstd, Compressor::Brotli, Compressor::Gzip]);
        assert_eq!(negotiate(&c, &ae("gzip, br")), Some(Compressor::Brotli));
        assert_eq!(
            negotiate(&c, &ae("gzip, br;q=0, zstd;q=0.0")),
            Some(Compressor::Gzip)
        );
        assert_eq!(negotiate(&c, &ae("identity")), None);
        assert_eq!(negotiate(&c, &ae("*")), Some(Compressor::Zstd));
        assert_eq!(negotiate(&c, &HeaderMap::new()), None);
    }
}
