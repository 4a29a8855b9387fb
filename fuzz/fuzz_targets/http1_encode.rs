//! The HTTP/1.1 encoders: the fast path's response writer and the lean
//! upstream client's request head. Whatever the status, method, target,
//! header names and values (as the `http` types admit them) and body, what
//! is written parses back, with httparse, as exactly one message with the
//! same start line and the same headers: nothing can be injected.
#![no_main]

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Version, header};
use libfuzzer_sys::arbitrary::{Arbitrary, Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use portcullis_dataplane::backend::h1::{H1Body, H1Client};
use portcullis_dataplane::http1::write_response_for_fuzzing;

#[derive(Debug)]
struct Input {
    status: u16,
    http10: bool,
    head_only: bool,
    method: Vec<u8>,
    target: String,
    headers: Vec<(Vec<u8>, Vec<u8>)>,
    body: Vec<u8>,
}

impl<'a> Arbitrary<'a> for Input {
    fn arbitrary(u: &mut Unstructured<'a>) -> Result<Self> {
        Ok(Input {
            status: u.int_in_range(100..=999)?,
            http10: u.arbitrary()?,
            head_only: u.arbitrary()?,
            method: u.arbitrary()?,
            target: u.arbitrary()?,
            headers: (0..u.int_in_range(0..=12)?)
                .map(|_| Ok((u.arbitrary()?, u.arbitrary()?)))
                .collect::<Result<_>>()?,
            body: u.arbitrary()?,
        })
    }
}

/// Headers the encoders set themselves.
fn framing(name: &HeaderName) -> bool {
    [
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::CONNECTION,
        header::DATE,
    ]
    .contains(name)
}

fn headers(raw: &[(Vec<u8>, Vec<u8>)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (n, v) in raw {
        if let (Ok(n), Ok(v)) = (HeaderName::from_bytes(n), HeaderValue::from_bytes(v))
            && !framing(&n)
        {
            h.append(n, v);
        }
    }
    h
}

/// The parsed headers, framing headers left out, values as httparse gives them.
fn parsed(hs: &[httparse::Header<'_>]) -> Vec<(String, Vec<u8>)> {
    hs.iter()
        .map(|h| (h.name.to_ascii_lowercase(), h.value.to_vec()))
        .filter(|(n, _)| !framing(&HeaderName::from_bytes(n.as_bytes()).unwrap()))
        .collect()
}

fn expected(h: &HeaderMap) -> Vec<(String, Vec<u8>)> {
    h.iter()
        .map(|(n, v)| (n.as_str().to_string(), v.as_bytes().trim_ascii().to_vec()))
        .collect()
}

thread_local! {
    static RT: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread().build().unwrap();
}

fuzz_target!(|input: Input| {
    let h = headers(&input.headers);
    // The response writer.
    let status = StatusCode::from_u16(input.status).unwrap();
    let version = if input.http10 {
        Version::HTTP_10
    } else {
        Version::HTTP_11
    };
    let body = Bytes::from(input.body.clone());
    let (out, _) = RT
        .with(|rt| {
            rt.block_on(write_response_for_fuzzing(
                status,
                version,
                input.head_only,
                h.clone(),
                body.clone(),
            ))
        })
        .unwrap();
    let mut slots = [httparse::EMPTY_HEADER; 64];
    let mut resp = httparse::Response::new(&mut slots);
    let n = match resp.parse(&out) {
        Ok(httparse::Status::Complete(n)) => n,
        other => panic!("response head does not parse: {other:?}"),
    };
    assert_eq!(resp.code, Some(input.status));
    assert_eq!(parsed(resp.headers), expected(&h));
    let no_body =
        input.head_only || status.is_informational() || input.status == 204 || input.status == 304;
    assert_eq!(&out[n..], if no_body { &[][..] } else { &body[..] });

    // The upstream request head.
    let Ok(method) = Method::from_bytes(&input.method) else {
        return;
    };
    // The encoder guard: a target is written only when it is origin-form
    // and visible ASCII (no space, CR, LF or other control byte); anything
    // else is refused before a byte is written.
    let wire_ok =
        input.target.starts_with('/') && input.target.bytes().all(|c| c.is_ascii_graphic());
    let req = match H1Client::prepare(&method, &input.target, &h, H1Body::Bytes(body.clone())) {
        Ok(req) => {
            assert!(wire_ok, "prepare accepted {:?}", input.target);
            req
        }
        Err(_) => {
            assert!(!wire_ok, "prepare refused {:?}", input.target);
            return;
        }
    };
    let head = H1Client::head_bytes(&req);
    let mut slots = [httparse::EMPTY_HEADER; 64];
    let mut parsed_req = httparse::Request::new(&mut slots);
    let n = match parsed_req.parse(head) {
        Ok(httparse::Status::Complete(n)) => n,
        other => panic!("request head does not parse: {other:?}"),
    };
    assert_eq!(n, head.len(), "one head, nothing after it");
    assert_eq!(parsed_req.method, Some(method.as_str()));
    assert_eq!(parsed_req.path, Some(input.target.as_str()));
    assert_eq!(parsed(parsed_req.headers), expected(&h));
});
