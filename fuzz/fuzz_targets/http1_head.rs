//! The HTTP/1.1 fast path's head parser (`portcullis_dataplane::http1`):
//! no panic on any input, and what it decides to serve itself is
//! self-consistent (a complete head that stands alone, one plain
//! Content-Length within the buffering limit, no Transfer-Encoding,
//! Upgrade, Expect or CONNECT: those go to hyper).
#![no_main]

use http::{Method, header};
use libfuzzer_sys::fuzz_target;
use portcullis_dataplane::http1::parse_head_for_fuzzing;

const MAX_BODY: usize = 64;

fuzz_target!(|data: &[u8]| {
    let Some((n, req, body_len)) = parse_head_for_fuzzing(data, MAX_BODY) else {
        return;
    };
    assert!(n > 0 && n <= data.len());
    assert!(body_len <= MAX_BODY);
    assert_ne!(req.method(), Method::CONNECT);
    let h = req.headers();
    for name in [header::TRANSFER_ENCODING, header::UPGRADE, header::EXPECT] {
        assert!(!h.contains_key(&name), "{name} served by the fast path");
    }
    let lengths: Vec<_> = h.get_all(header::CONTENT_LENGTH).iter().collect();
    assert!(lengths.len() <= 1);
    match lengths.first() {
        Some(v) => assert_eq!(v.to_str().unwrap().parse::<usize>().unwrap(), body_len),
        None => assert_eq!(body_len, 0),
    }
    // The head stands alone: the same decision without what follows it,
    // and no decision one byte short of it.
    let (n2, req2, len2) =
        parse_head_for_fuzzing(&data[..n], MAX_BODY).expect("a served head parses alone");
    assert_eq!((n2, len2), (n, body_len));
    assert_eq!(req2.uri(), req.uri());
    assert_eq!(req2.headers(), req.headers());
    assert!(parse_head_for_fuzzing(&data[..n - 1], MAX_BODY).is_none());
});
