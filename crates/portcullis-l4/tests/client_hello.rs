//! The ClientHello parser on real (rustls) and hand-built, broken and mutated inputs.

use std::sync::Arc;
use std::time::Duration;

use portcullis_l4::client_hello::{
    ClientHello, HelloError, MAX_CLIENT_HELLO, PeekError, parse_client_hello, read_client_hello,
};
use rand::{Rng, SeedableRng};
use rustls::pki_types::ServerName;
use tokio::io::AsyncWriteExt;

fn rustls_hello(name: ServerName<'static>, alpn: &[&[u8]]) -> Vec<u8> {
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let mut conn = rustls::ClientConnection::new(Arc::new(cfg), name).unwrap();
    let mut out = Vec::new();
    conn.write_tls(&mut out).unwrap();
    out
}

fn dns(name: &str) -> ServerName<'static> {
    ServerName::try_from(name.to_owned()).unwrap()
}

/// A ClientHello handshake message (header included) with these extensions.
fn handshake(exts: Option<&[(u16, Vec<u8>)]>) -> Vec<u8> {
    let mut body = vec![3, 3];
    body.extend([7u8; 32]); // random
    body.push(0); // session id
    body.extend([0, 2, 0x13, 0x01]); // one cipher suite
    body.extend([1, 0]); // null compression
    if let Some(exts) = exts {
        let mut e = Vec::new();
        for (ty, data) in exts {
            e.extend(ty.to_be_bytes());
            e.extend((data.len() as u16).to_be_bytes());
            e.extend(data);
        }
        body.extend((e.len() as u16).to_be_bytes());
        body.extend(e);
    }
    let mut hs = vec![1];
    hs.extend(&(body.len() as u32).to_be_bytes()[1..]);
    hs.extend(body);
    hs
}

/// Wraps handshake bytes in records of at most `max` bytes.
fn records(hs: &[u8], max: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for chunk in hs.chunks(max) {
        out.extend([22, 3, 1]);
        out.extend((chunk.len() as u16).to_be_bytes());
        out.extend(chunk);
    }
    out
}

fn sni_ext(names: &[(u8, &[u8])]) -> Vec<u8> {
    let mut list = Vec::new();
    for (kind, name) in names {
        list.push(*kind);
        list.extend((name.len() as u16).to_be_bytes());
        list.extend(*name);
    }
    let mut data = (list.len() as u16).to_be_bytes().to_vec();
    data.extend(list);
    data
}

#[test]
fn real_clienthello_sni_and_alpn() {
    let bytes = rustls_hello(dns("Backend.Example.com"), &[b"h2", b"http/1.1"]);
    let hello = parse_client_hello(&bytes).unwrap().unwrap();
    assert_eq!(hello.sni.as_deref(), Some("backend.example.com"));
    assert_eq!(hello.alpn, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);

    let by_ip = rustls_hello(
        ServerName::IpAddress("127.0.0.1".parse::<std::net::IpAddr>().unwrap().into()),
        &[],
    );
    assert_eq!(
        parse_client_hello(&by_ip).unwrap().unwrap(),
        ClientHello::default()
    );
}

#[test]
fn every_prefix_needs_more_and_fragmented_records_parse_the_same() {
    let bytes = rustls_hello(dns("a.example.com"), &[b"h2"]);
    for n in 0..bytes.len() {
        assert_eq!(
            parse_client_hello(&bytes[..n]),
            Ok(None),
            "prefix of {n} bytes"
        );
    }
    let whole = parse_client_hello(&bytes).unwrap().unwrap();
    // The same handshake message re-split into records of 1, 3, 50 and 200 bytes.
    let hs = &bytes[5..];
    for max in [1, 3, 50, 200] {
        let split = records(hs, max);
        assert_eq!(
            parse_client_hello(&split).unwrap().unwrap(),
            whole,
            "records of {max}"
        );
        assert_eq!(parse_client_hello(&split[..split.len() - 1]), Ok(None));
    }
    // Bytes after the ClientHello (e.g. early data) do not matter.
    let mut more = bytes.clone();
    more.extend([23, 3, 3, 0, 1, 0]);
    assert_eq!(parse_client_hello(&more).unwrap().unwrap(), whole);
}

#[test]
fn hand_built_edge_cases() {
    let parse = |hs: Vec<u8>| parse_client_hello(&records(&hs, 16384));
    // No extensions at all.
    assert_eq!(
        parse(handshake(None)).unwrap().unwrap(),
        ClientHello::default()
    );
    // Upper case and a trailing dot are normalised.
    let h = parse(handshake(Some(&[(
        0,
        sni_ext(&[(0, b"WWW.Example.COM.")]),
    )])))
    .unwrap()
    .unwrap();
    assert_eq!(h.sni.as_deref(), Some("www.example.com"));
    // Unknown name types are skipped.
    let h = parse(handshake(Some(&[(
        0,
        sni_ext(&[(9, b"\x00\x01"), (0, b"x.org")]),
    )])))
    .unwrap()
    .unwrap();
    assert_eq!(h.sni.as_deref(), Some("x.org"));

    let malformed = |exts: &[(u16, Vec<u8>)]| {
        matches!(parse(handshake(Some(exts))), Err(HelloError::Malformed(_)))
    };
    assert!(
        malformed(&[(0, sni_ext(&[(0, b"a.org"), (0, b"b.org")]))]),
        "two host names"
    );
    assert!(malformed(&[(0, sni_ext(&[(0, b"")]))]), "empty host name");
    assert!(
        malformed(&[(0, sni_ext(&[(0, b"bad name")]))]),
        "space in host name"
    );
    assert!(
        malformed(&[(0, sni_ext(&[(0, "é.org".as_bytes())]))]),
        "non-ASCII host name"
    );
    assert!(
        malformed(&[
            (0, sni_ext(&[(0, b"a.org")])),
            (0, sni_ext(&[(0, b"a.org")]))
        ]),
        "duplicate extension"
    );
    assert!(
        malformed(&[(0, vec![0, 9, 0, 0, 1, b'a'])]),
        "server_name_list longer than its extension"
    );
    assert!(
        malformed(&[(16, vec![0, 3, 0, 1, b'x'])]),
        "empty ALPN protocol"
    );

    // Extension block length past the end of the message.
    let mut hs = handshake(Some(&[(0, sni_ext(&[(0, b"a.org")]))]));
    let ext_len_at = 4 + 2 + 32 + 1 + 4 + 2;
    hs[ext_len_at + 1] += 1;
    assert!(matches!(parse(hs), Err(HelloError::Malformed(_))));
    // Trailing bytes after the extensions.
    let mut hs = handshake(Some(&[]));
    hs.push(0);
    let len = (hs.len() - 4) as u32;
    hs[1..4].copy_from_slice(&len.to_be_bytes()[1..]);
    assert!(matches!(parse(hs), Err(HelloError::Malformed(_))));
}

#[test]
fn not_tls_not_a_clienthello_and_too_large() {
    assert_eq!(
        parse_client_hello(b"GET / HTTP/1.1\r\n"),
        Err(HelloError::NotTls)
    );
    assert_eq!(
        parse_client_hello(&[21, 3, 3, 0, 2, 2, 40]),
        Err(HelloError::NotTls),
        "an alert"
    );
    assert_eq!(
        parse_client_hello(&[22, 2, 0, 0, 1, 0]),
        Err(HelloError::NotTls),
        "SSLv2-ish version"
    );
    assert!(
        matches!(
            parse_client_hello(&[22, 3, 1, 0, 0]),
            Err(HelloError::Malformed(_))
        ),
        "empty record"
    );
    assert!(
        matches!(
            parse_client_hello(&[22, 3, 1, 0x48, 0x01]),
            Err(HelloError::Malformed(_))
        ),
        "record > 16K"
    );
    assert_eq!(
        parse_client_hello(&records(&[2, 0, 0, 0], 100)),
        Err(HelloError::NotClientHello)
    );
    let huge = (MAX_CLIENT_HELLO as u32 + 1).to_be_bytes();
    assert_eq!(
        parse_client_hello(&records(&[1, huge[1], huge[2], huge[3]], 100)),
        Err(HelloError::TooLarge)
    );
    // A non-handshake record before the ClientHello is complete.
    let hs = handshake(Some(&[(0, sni_ext(&[(0, b"a.org")]))]));
    let mut bytes = records(&hs[..10], 100);
    bytes.extend([23, 3, 3, 0, 1, 0]);
    assert!(matches!(
        parse_client_hello(&bytes),
        Err(HelloError::Malformed(_))
    ));
}

#[test]
fn mutated_and_truncated_inputs_never_panic() {
    let base = rustls_hello(dns("fuzz.example.com"), &[b"h2", b"http/1.1"]);
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5EED);
    let mut outcomes = [0usize; 3];
    for _ in 0..20_000 {
        let mut b = base.clone();
        for _ in 0..rng.random_range(1..6) {
            let i = rng.random_range(0..b.len());
            b[i] = rng.random();
        }
        b.truncate(rng.random_range(0..=b.len()));
        match parse_client_hello(&b) {
            Ok(Some(h)) => {
                outcomes[0] += 1;
                if let Some(s) = h.sni {
                    assert!(
                        !s.is_empty() && s.len() <= 255 && s.bytes().all(|c| c.is_ascii_graphic())
                    );
                }
            }
            Ok(None) => outcomes[1] += 1,
            Err(_) => outcomes[2] += 1,
        }
    }
    // All three outcomes occur, so the mutations exercise every path.
    assert!(outcomes.iter().all(|&n| n > 0), "{outcomes:?}");
}

#[tokio::test]
async fn read_from_a_stream_slowly_eof_and_timeout() {
    let bytes = rustls_hello(dns("slow.example.com"), &[]);
    let (mut tx, mut rx) = tokio::io::duplex(64);
    let sent = bytes.clone();
    let writer = tokio::spawn(async move {
        for c in sent.chunks(10) {
            tx.write_all(c).await.unwrap();
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        tx
    });
    let (hello, read) = read_client_hello(&mut rx, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(hello.sni.as_deref(), Some("slow.example.com"));
    assert_eq!(read, bytes, "every byte read is returned for replay");
    drop(writer.await.unwrap());

    let (mut tx, mut rx) = tokio::io::duplex(4096);
    tx.write_all(&bytes[..20]).await.unwrap();
    drop(tx);
    assert!(matches!(
        read_client_hello(&mut rx, Duration::from_secs(10)).await,
        Err(PeekError::Eof)
    ));

    let (mut tx, mut rx) = tokio::io::duplex(4096);
    tx.write_all(&bytes[..20]).await.unwrap();
    let r = read_client_hello(&mut rx, Duration::from_millis(100)).await;
    assert!(matches!(r, Err(PeekError::Timeout)));
    drop(tx);
}
