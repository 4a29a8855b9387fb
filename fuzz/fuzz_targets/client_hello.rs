//! The TLS ClientHello peeker (`portcullis_l4::client_hello`): no panic on
//! any input; a ClientHello found is found the same whatever follows it,
//! and every prefix of the bytes it needed is "need more" or an error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use portcullis_l4::client_hello::parse_client_hello;

fuzz_target!(|data: &[u8]| {
    let Ok(Some(hello)) = parse_client_hello(data) else {
        return;
    };
    if let Some(sni) = &hello.sni {
        assert_eq!(*sni, sni.to_ascii_lowercase());
    }
    let mut more = data.to_vec();
    more.extend_from_slice(b"\x17\x03\x03\x00\x01x");
    assert_eq!(parse_client_hello(&more), Ok(Some(hello.clone())));
    for cut in [1, data.len() / 2] {
        if cut < data.len() {
            let short = parse_client_hello(&data[..data.len() - cut]);
            assert!(
                !matches!(short, Ok(Some(ref h)) if *h != hello),
                "a prefix gave another ClientHello"
            );
        }
    }
});
