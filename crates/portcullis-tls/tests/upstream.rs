//! Upstream TLS (BackendTLSPolicy) verification against real TLS backends.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use common::*;
use portcullis_ir::{BackendTls, SubjectAltName};
use portcullis_tls::{Alpn, client_config, client_config_with_alpn, server_name};
use rustls::server::WebPkiClientVerifier;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

/// What a backend saw: the SNI and whether a client certificate was presented.
type Seen = mpsc::UnboundedReceiver<(Option<String>, bool)>;

/// A TLS echo backend serving `leaf`, optionally requiring client certificates from `client_ca`.
async fn backend(leaf: &Leaf, client_ca: Option<&Ca>, alpn: &[&[u8]]) -> (SocketAddr, Seen) {
    let (chain, key) = leaf.chain_and_key();
    let b = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .unwrap();
    let b = match client_ca {
        Some(ca) => b.with_client_cert_verifier(
            WebPkiClientVerifier::builder_with_provider(Arc::new(ca.roots()), provider())
                .build()
                .unwrap(),
        ),
        None => b.with_no_client_auth(),
    };
    let mut cfg = b.with_single_cert(chain, key).unwrap();
    cfg.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    let acceptor = TlsAcceptor::from(Arc::new(cfg));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let (acceptor, tx) = (acceptor.clone(), tx.clone());
            tokio::spawn(async move {
                if let Ok(mut s) = acceptor.accept(tcp).await {
                    let conn = s.get_ref().1;
                    let _ = tx.send((
                        conn.server_name().map(str::to_owned),
                        conn.peer_certificates().is_some(),
                    ));
                    let mut buf = [0u8; 1024];
                    use tokio::io::{AsyncReadExt, AsyncWriteExt};
                    while let Ok(n) = s.read(&mut buf).await {
                        if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                }
            });
        }
    });
    (addr, rx)
}

fn policy(hostname: &str, ca: &Ca, sans: Vec<SubjectAltName>) -> BackendTls {
    BackendTls {
        hostname: hostname.into(),
        ca_pem: ca.pem.clone(),
        system_roots: false,
        subject_alt_names: sans,
        client_certificate: None,
    }
}

/// Connects with the policy's config; the result is the full roundtrip's.
async fn call(addr: SocketAddr, tls: &BackendTls, alpn: &Alpn) -> Result<Option<Vec<u8>>, String> {
    let cfg = client_config_with_alpn(tls, alpn).map_err(|e| e.to_string())?;
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut s = tokio_rustls::TlsConnector::from(cfg)
        .connect(server_name(tls).unwrap(), tcp)
        .await
        .map_err(|e| e.to_string())?;
    roundtrip(&mut s, b"upstream")
        .await
        .map_err(|e| e.to_string())?;
    Ok(s.get_ref().1.alpn_protocol().map(<[u8]>::to_vec))
}

#[tokio::test]
async fn verifies_hostname_and_sends_it_as_sni() {
    bounded(async {
        let ca = Ca::new("backend ca");
        let leaf = ca.leaf(&["backend.example.com"], Alg::Rsa);
        let (addr, mut seen) = backend(&leaf, None, &[]).await;

        call(
            addr,
            &policy("backend.example.com", &ca, vec![]),
            &Alpn::None,
        )
        .await
        .unwrap();
        assert_eq!(
            seen.recv().await.unwrap().0.as_deref(),
            Some("backend.example.com")
        );

        let err = call(addr, &policy("other.example.com", &ca, vec![]), &Alpn::None)
            .await
            .unwrap_err();
        assert!(err.contains("not valid for name"), "{err}");
    })
    .await
}

#[tokio::test]
async fn wrong_ca_is_refused() {
    bounded(async {
        let ca = Ca::new("backend ca");
        let other = Ca::new("unrelated ca");
        let leaf = ca.leaf(
            &["backend.example.com", "spiffe://cluster.local/ns/a/sa/b"],
            Alg::Ecdsa,
        );
        let (addr, _) = backend(&leaf, None, &[]).await;
        let err = call(
            addr,
            &policy("backend.example.com", &other, vec![]),
            &Alpn::None,
        )
        .await
        .unwrap_err();
        assert!(err.contains("UnknownIssuer"), "{err}");
        // Matching SANs do not excuse an untrusted chain.
        let sans = vec![SubjectAltName::Uri(
            "spiffe://cluster.local/ns/a/sa/b".into(),
        )];
        let err = call(
            addr,
            &policy("backend.example.com", &other, sans),
            &Alpn::None,
        )
        .await
        .unwrap_err();
        assert!(err.contains("UnknownIssuer"), "{err}");
    })
    .await
}

#[tokio::test]
async fn subject_alt_names_replace_the_hostname_check() {
    bounded(async {
        let ca = Ca::new("backend ca");
        let spiffe = "spiffe://cluster.local/ns/app/sa/backend";
        let leaf = ca.leaf(
            &["backend.internal", "*.svc.example.com", spiffe],
            Alg::Ecdsa,
        );
        let (addr, mut seen) = backend(&leaf, None, &[]).await;
        // `hostname` is not in the certificate: with SANs it is only the SNI.
        let host = "abc.example.com";
        for (sans, ok) in [
            (vec![SubjectAltName::Uri(spiffe.into())], true),
            (
                vec![SubjectAltName::Uri(
                    "spiffe://cluster.local/ns/app/sa/other".into(),
                )],
                false,
            ),
            (
                vec![SubjectAltName::Uri(
                    "SPIFFE://cluster.local/ns/app/sa/backend".into(),
                )],
                false,
            ),
            (
                vec![SubjectAltName::Hostname("backend.internal".into())],
                true,
            ),
            (
                vec![SubjectAltName::Hostname("x.svc.example.com".into())],
                true,
            ),
            (
                vec![SubjectAltName::Hostname("svc.example.com".into())],
                false,
            ),
            (
                vec![
                    SubjectAltName::Hostname("nope.example.org".into()),
                    SubjectAltName::Uri(spiffe.into()),
                ],
                true,
            ),
        ] {
            let r = call(addr, &policy(host, &ca, sans.clone()), &Alpn::None).await;
            assert_eq!(r.is_ok(), ok, "{sans:?}: {r:?}");
            if ok {
                assert_eq!(seen.recv().await.unwrap().0.as_deref(), Some(host));
            } else {
                let err = r.unwrap_err();
                assert!(err.contains("SanMismatch"), "{err}");
            }
        }
        // Without SANs the hostname must be in the certificate again.
        assert!(
            call(addr, &policy(host, &ca, vec![]), &Alpn::None)
                .await
                .is_err()
        );
    })
    .await
}

#[tokio::test]
async fn client_certificate_is_presented_to_backends_that_ask() {
    bounded(async {
        let ca = Ca::new("backend ca");
        let gw_ca = Ca::new("gateway client ca");
        let leaf = ca.leaf(&["mtls.backend"], Alg::Ecdsa);
        let gw_cert = gw_ca.leaf(&["gateway.example.com"], Alg::Rsa);
        let (addr, mut seen) = backend(&leaf, Some(&gw_ca), &[]).await;

        let mut p = policy("mtls.backend", &ca, vec![]);
        assert!(
            call(addr, &p, &Alpn::None).await.is_err(),
            "backend requires a client certificate"
        );
        p.client_certificate = Some(gw_cert.ir("gw-ns/client-cert"));
        call(addr, &p, &Alpn::None).await.unwrap();
        let (sni, presented) = seen.recv().await.unwrap();
        assert_eq!(sni.as_deref(), Some("mtls.backend"));
        assert!(presented);
    })
    .await
}

#[tokio::test]
async fn alpn_h2_for_h2_upstreams() {
    bounded(async {
        let ca = Ca::new("backend ca");
        let leaf = ca.leaf(&["h2.backend"], Alg::Ecdsa);
        let (addr, _) = backend(&leaf, None, &[b"h2", b"http/1.1"]).await;
        let p = policy("h2.backend", &ca, vec![]);
        let h2 = Alpn::Custom(vec![b"h2".to_vec()]);
        assert_eq!(
            call(addr, &p, &h2).await.unwrap().as_deref(),
            Some(&b"h2"[..])
        );
        assert_eq!(call(addr, &p, &Alpn::None).await.unwrap(), None);
        assert!(client_config(&p).unwrap().alpn_protocols.is_empty());
    })
    .await
}

#[test]
fn configuration_errors() {
    let ca = Ca::new("ca");
    let mut p = policy("backend.example.com", &ca, vec![]);
    p.ca_pem = String::new();
    assert!(matches!(
        client_config(&p),
        Err(portcullis_tls::TlsError::NoRoots(_))
    ));
    let p = policy("not a hostname!", &ca, vec![]);
    assert!(matches!(
        client_config(&p),
        Err(portcullis_tls::TlsError::ServerName(_))
    ));
}
