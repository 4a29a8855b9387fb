//! Certificate selection by SNI and ALPN negotiation over real sockets.

mod common;

use std::sync::Arc;

use common::*;
use portcullis_tls::{Alpn, ServerTls, SwappableAcceptor};
use rustls::SignatureScheme;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};

struct Setup {
    ca: Ca,
    exact: Leaf,
    wildcard: Leaf,
    any: Leaf,
}

fn setup() -> (Setup, ServerTls) {
    let ca = Ca::new("sni ca");
    let exact = ca.leaf(&["a.example.com"], Alg::Rsa);
    let wildcard = ca.leaf(&["*.example.com", "*.y.example.com"], Alg::Ecdsa);
    let any = ca.leaf(&["default.test", "127.0.0.1"], Alg::Ed25519);
    // Most specific first, as the IR orders them.
    let ls = [
        listener(
            "gw/exact",
            Some("a.example.com"),
            vec![exact.ir("ns/exact")],
            None,
        ),
        listener(
            "gw/wild",
            Some("*.example.com"),
            vec![wildcard.ir("ns/wild")],
            None,
        ),
        listener("gw/any", None, vec![any.ir("ns/any")], None),
    ];
    let tls = ServerTls::build(&ls, Alpn::Http).unwrap();
    (
        Setup {
            ca,
            exact,
            wildcard,
            any,
        },
        tls,
    )
}

fn peer_leaf(
    s: &tokio_rustls::client::TlsStream<tokio::net::TcpStream>,
) -> CertificateDer<'static> {
    s.get_ref().1.peer_certificates().unwrap()[0]
        .clone()
        .into_owned()
}

#[tokio::test]
async fn sni_selects_exact_then_wildcard_then_any() {
    bounded(async {
        let (s, tls) = setup();
        let (addr, mut hs) = echo_server(Arc::new(SwappableAcceptor::new(tls))).await;
        let cfg = client(&s.ca, &[], None);
        let cases = [
            (Some("a.example.com"), &s.exact, "gw/exact"),
            (Some("b.example.com"), &s.wildcard, "gw/wild"),
            (Some("x.y.example.com"), &s.wildcard, "gw/wild"),
            (Some("default.test"), &s.any, "gw/any"),
            // No SNI: the least specific listener answers.
            (None, &s.any, "gw/any"),
        ];
        for (sni, leaf, listener) in cases {
            let mut c = connect(addr, cfg.clone(), sni)
                .await
                .unwrap_or_else(|e| panic!("{sni:?}: {e}"));
            assert_eq!(peer_leaf(&c), leaf.der(), "certificate for SNI {sni:?}");
            roundtrip(&mut c, b"hello").await.unwrap();
            let info = next(&mut hs).await.unwrap();
            assert_eq!(info.sni.as_deref(), sni);
            assert_eq!(info.listener.as_deref(), Some(listener));
        }
    })
    .await
}

#[tokio::test]
async fn sni_matching_no_listener_fails_the_handshake() {
    bounded(async {
        let ca = Ca::new("ca");
        let a = ca.leaf(&["a.example.com", "127.0.0.1"], Alg::Ecdsa);
        let w = ca.leaf(&["*.example.com"], Alg::Ecdsa);
        let ls = [
            listener("gw/a", Some("a.example.com"), vec![a.ir("ns/a")], None),
            listener("gw/w", Some("*.example.com"), vec![w.ir("ns/w")], None),
        ];
        let tls = ServerTls::build(&ls, Alpn::Http).unwrap();
        assert_eq!(tls.listener_for_sni(Some("other.org")), None);
        let (addr, mut hs) = echo_server(Arc::new(SwappableAcceptor::new(tls))).await;
        let cfg = client(&ca, &[], None);
        assert!(connect(addr, cfg.clone(), Some("other.org")).await.is_err());
        assert!(next(&mut hs).await.is_err());
        // The apex is not covered by the wildcard.
        assert!(
            connect(addr, cfg.clone(), Some("example.com"))
                .await
                .is_err()
        );
        assert!(next(&mut hs).await.is_err());
        // Without SNI the least specific listener (the wildcard) answers: its
        // certificate is not valid for 127.0.0.1, so the client refuses it.
        let err = connect(addr, cfg.clone(), None).await.unwrap_err();
        assert!(err.to_string().contains("not valid for name"), "{err}");
        let _ = next(&mut hs).await;
    })
    .await
}

#[tokio::test]
async fn alpn_h2_http11_and_none() {
    bounded(async {
        let (s, tls) = setup();
        let (addr, mut hs) = echo_server(Arc::new(SwappableAcceptor::new(tls))).await;
        for (offer, want) in [
            (vec![&b"h2"[..], b"http/1.1"], Some(&b"h2"[..])),
            (vec![&b"http/1.1"[..]], Some(&b"http/1.1"[..])),
            (vec![], None),
        ] {
            let c = connect(addr, client(&s.ca, &offer, None), Some("a.example.com"))
                .await
                .unwrap();
            assert_eq!(c.get_ref().1.alpn_protocol(), want);
            let info = next(&mut hs).await.unwrap();
            assert_eq!(info.alpn.as_deref(), want);
            assert_eq!(info.is_h2(), want == Some(b"h2"));
        }
        // A client offering only a protocol we do not speak is refused.
        assert!(
            connect(addr, client(&s.ca, &[b"imap"], None), Some("a.example.com"))
                .await
                .is_err()
        );
        let _ = next(&mut hs).await;

        // Terminate-to-TCP listeners offer no ALPN at all.
        let ls = [listener("gw/tcp", None, vec![s.any.ir("ns/any")], None)];
        let tls = ServerTls::build(&ls, Alpn::None).unwrap();
        let (addr, mut hs) = echo_server(Arc::new(SwappableAcceptor::new(tls))).await;
        let mut c = connect(addr, client(&s.ca, &[b"h2"], None), None)
            .await
            .unwrap();
        assert_eq!(c.get_ref().1.alpn_protocol(), None);
        roundtrip(&mut c, b"raw tcp").await.unwrap();
        assert_eq!(next(&mut hs).await.unwrap().alpn, None);
    })
    .await
}

/// A verifier that validates like webpki but offers only some signature schemes,
/// to see the server pick the certificate that can sign with them.
#[derive(Debug)]
struct OnlySchemes(Arc<WebPkiServerVerifier>, Vec<SignatureScheme>);

impl ServerCertVerifier for OnlySchemes {
    fn verify_server_cert(
        &self,
        e: &CertificateDer<'_>,
        i: &[CertificateDer<'_>],
        n: &ServerName<'_>,
        o: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        self.0.verify_server_cert(e, i, n, o, now)
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(m, c, d)
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(m, c, d)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.1.clone()
    }
}

#[tokio::test]
async fn several_certificates_on_one_listener_chosen_by_signature_scheme() {
    bounded(async {
        let ca = Ca::new("ca");
        let rsa = ca.leaf(&["multi.example.com"], Alg::Rsa);
        let ecdsa = ca.leaf(&["multi.example.com"], Alg::Ecdsa);
        let ls = [listener(
            "gw/multi",
            Some("multi.example.com"),
            vec![rsa.ir("ns/rsa"), ecdsa.ir("ns/ecdsa")],
            None,
        )];
        let tls = ServerTls::build(&ls, Alpn::Http).unwrap();
        let (addr, _hs) = echo_server(Arc::new(SwappableAcceptor::new(tls))).await;
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(ca.roots()), provider())
            .build()
            .unwrap();
        for (schemes, want) in [
            (vec![SignatureScheme::ECDSA_NISTP256_SHA256], &ecdsa),
            (
                vec![
                    SignatureScheme::RSA_PSS_SHA256,
                    SignatureScheme::RSA_PKCS1_SHA256,
                ],
                &rsa,
            ),
            // Both offered: certificateRefs order decides.
            (webpki.supported_verify_schemes(), &rsa),
        ] {
            let mut cfg = rustls::ClientConfig::builder_with_provider(provider())
                .with_safe_default_protocol_versions()
                .unwrap()
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(OnlySchemes(webpki.clone(), schemes)))
                .with_no_client_auth();
            cfg.alpn_protocols = vec![];
            let c = connect(addr, Arc::new(cfg), Some("multi.example.com"))
                .await
                .unwrap();
            assert_eq!(c.get_ref().1.peer_certificates().unwrap()[0], want.der());
        }
    })
    .await
}

#[tokio::test]
async fn tls12_clients_are_accepted() {
    bounded(async {
        let (s, tls) = setup();
        let (addr, mut hs) = echo_server(Arc::new(SwappableAcceptor::new(tls))).await;
        let cfg = rustls::ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS12])
            .unwrap()
            .with_root_certificates(s.ca.roots())
            .with_no_client_auth();
        let mut c = connect(addr, Arc::new(cfg), Some("b.example.com"))
            .await
            .unwrap();
        roundtrip(&mut c, b"tls12").await.unwrap();
        let info = next(&mut hs).await.unwrap();
        assert_eq!(info.version, Some(rustls::ProtocolVersion::TLSv1_2));
    })
    .await
}

#[test]
fn bad_pem_and_mismatched_keys_are_errors_naming_the_listener() {
    let ca = Ca::new("ca");
    let a = ca.leaf(&["a.example.com"], Alg::Ecdsa);
    let b = ca.leaf(&["b.example.com"], Alg::Ecdsa);
    let mut mismatched = a.ir("ns/mismatch");
    mismatched.key_pem = b.key_pem.clone();
    let err = ServerTls::build(
        &[listener("gw/bad", None, vec![mismatched], None)],
        Alpn::Http,
    )
    .unwrap_err()
    .to_string();
    assert!(
        err.contains("gw/bad") && err.contains("ns/mismatch"),
        "{err}"
    );

    let mut garbage = a.ir("ns/garbage");
    garbage.cert_pem = "not a certificate".into();
    let err = ServerTls::build(
        &[listener("gw/garbage", None, vec![garbage], None)],
        Alpn::Http,
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("no certificate"), "{err}");
}
