//! ClientTrafficPolicy `http1.preserveHeaderCase`: HTTP/1.1 header names
//! keep the case they had on the wire, request names as the client sent
//! them to the backend, response names as the backend sent them to the
//! client.
//!
//! `http::HeaderName` is lower-case, and hyper's own original-case map is
//! private to hyper, so the case travels beside the headers in a
//! [`HeaderCase`] extension of the request or response:
//!
//! - the fast path ([`crate::http1`]) records it while parsing a request
//!   head, on a port whose policy asks for it ([`crate::Options::http1_preserve_case`]);
//! - the lean upstream client ([`crate::backend::h1`], cleartext and TLS
//!   backends) writes the request head with it, and records the response
//!   head's names when the request carried one;
//! - the fast path writes the response head with it.
//!
//! A connection handed to hyper uses hyper's own mechanism instead: the
//! port's hyper server records the case (`preserve_header_case`), the
//! request's extensions carry hyper's record to hyper's upstream client
//! (`ReqState::hyper_case`; such a request never takes the lean client),
//! and the response's extensions carry the backend's spelling back.
//!
//! Off (no policy, or `false`), nothing is recorded and the encoders take
//! their usual loop: no extension is ever present, so the only cost is one
//! `Option` test per head.

use bytes::Bytes;
use http::{HeaderMap, HeaderName};

use crate::forward::{EncodeError, put_header_as};

/// The wire names of an HTTP/1.1 message's headers, by lower-cased name, in
/// order of occurrence (so a name sent twice in two cases keeps both).
#[derive(Clone, Debug, Default)]
pub struct HeaderCase(HeaderMap<Bytes>);

impl HeaderCase {
    /// An empty map, with room for `n` names.
    pub fn with_capacity(n: usize) -> Self {
        HeaderCase(HeaderMap::with_capacity(n))
    }

    /// Record the next occurrence of `name`, as `wire` spelled it.
    pub fn record(&mut self, name: &HeaderName, wire: &[u8]) {
        self.0.append(name.clone(), Bytes::copy_from_slice(wire));
    }

    /// The wire spellings of `name`, in order.
    fn spellings<'a>(&'a self, name: &HeaderName) -> impl Iterator<Item = &'a Bytes> + 'a {
        self.0.get_all(name).iter()
    }
}

/// Write `name: value\r\n` for every header whose name `skip` does not
/// refuse, names in the case `case` recorded (lower-case for headers it does
/// not know, such as those the gateway added), checked as
/// [`crate::forward::put_headers`].
pub(crate) fn put_headers_cased(
    out: &mut Vec<u8>,
    headers: &HeaderMap,
    case: Option<&HeaderCase>,
    skip: impl Fn(&HeaderName) -> bool,
) -> Result<(), EncodeError> {
    let Some(case) = case else {
        for (name, value) in headers {
            if !skip(name) {
                put_header_as(out, name.as_str().as_bytes(), value)?;
            }
        }
        return Ok(());
    };
    for name in headers.keys() {
        if skip(name) {
            continue;
        }
        let lower = name.as_str().as_bytes();
        let mut wire = case.spellings(name);
        for value in headers.get_all(name) {
            // A spelling is only ever the same name in another case.
            let spelled = wire
                .next()
                .map(|w| &w[..])
                .filter(|w| w.eq_ignore_ascii_case(lower))
                .unwrap_or(lower);
            put_header_as(out, spelled, value)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn names_keep_their_recorded_case_and_others_stay_lower_case() {
        let mut h = HeaderMap::new();
        let mut c = HeaderCase::default();
        for (wire, v) in [("X-MiXeD", "1"), ("x-mixed", "2"), ("Host", "a")] {
            let n = HeaderName::from_bytes(wire.as_bytes()).unwrap();
            c.record(&n, wire.as_bytes());
            h.append(n, HeaderValue::from_static(v));
        }
        h.append("x-added", HeaderValue::from_static("3"));
        let mut out = vec![];
        put_headers_cased(&mut out, &h, Some(&c), |_| false).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "X-MiXeD: 1\r\nx-mixed: 2\r\nHost: a\r\nx-added: 3\r\n"
        );
        let mut out = vec![];
        put_headers_cased(&mut out, &h, None, |n| n == "host").unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "x-mixed: 1\r\nx-mixed: 2\r\nx-added: 3\r\n"
        );
    }
}
