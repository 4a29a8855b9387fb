//! Frontend client-certificate validation (GEP-91) over real sockets.

mod common;

use std::sync::Arc;

use common::*;
use portcullis_ir::ClientValidation;
use portcullis_tls::{Alpn, ClientCert, ServerTls, SwappableAcceptor};

struct Certs {
    server_ca: Ca,
    client_ca: Ca,
    server: Leaf,
    good_client: Leaf,
    other_client: Leaf,
}

fn certs() -> Certs {
    let server_ca = Ca::new("server ca");
    let client_ca = Ca::new("client ca");
    let other_ca = Ca::new("other client ca");
    Certs {
        server: server_ca.leaf(&["mtls.example.com", "open.example.com"], Alg::Ecdsa),
        good_client: client_ca.leaf(&["client.example.com"], Alg::Ecdsa),
        other_client: other_ca.leaf(&["client.example.com"], Alg::Rsa),
        server_ca,
        client_ca,
    }
}

async fn server(c: &Certs, fallback: bool) -> (std::net::SocketAddr, Handshakes) {
    let v = ClientValidation {
        ca_pem: c.client_ca.pem.clone(),
        allow_insecure_fallback: fallback,
    };
    let ls = [listener(
        "gw/mtls",
        Some("mtls.example.com"),
        vec![c.server.ir("ns/srv")],
        Some(v),
    )];
    echo_server(Arc::new(SwappableAcceptor::new(
        ServerTls::build(&ls, Alpn::Http).unwrap(),
    )))
    .await
}

/// With TLS 1.3 the client's handshake can finish before the server has judged
/// its certificate; a rejected client sees the failure on its first read.
async fn rejected(addr: std::net::SocketAddr, cfg: Arc<rustls::ClientConfig>) -> bool {
    match connect(addr, cfg, Some("mtls.example.com")).await {
        Err(_) => true,
        Ok(mut s) => roundtrip(&mut s, b"ping").await.is_err(),
    }
}

#[tokio::test]
async fn allow_valid_only_requires_a_valid_certificate() {
    bounded(async {
        let c = certs();
        let (addr, mut hs) = server(&c, false).await;

        let mut s = connect(
            addr,
            client(&c.server_ca, &[], Some(&c.good_client)),
            Some("mtls.example.com"),
        )
        .await
        .unwrap();
        roundtrip(&mut s, b"valid").await.unwrap();
        assert_eq!(next(&mut hs).await.unwrap().client_cert, ClientCert::Valid);

        assert!(
            rejected(addr, client(&c.server_ca, &[], None)).await,
            "no certificate must be refused"
        );
        let err = next(&mut hs).await.unwrap_err();
        assert!(
            err.contains("CertificateRequired") || err.contains("certificate"),
            "{err}"
        );

        assert!(
            rejected(addr, client(&c.server_ca, &[], Some(&c.other_client))).await,
            "a certificate from another CA must be refused"
        );
        assert!(next(&mut hs).await.is_err());

        // The valid connection opened first is still served.
        roundtrip(&mut s, b"still here").await.unwrap();
    })
    .await
}

#[tokio::test]
async fn allow_insecure_fallback_accepts_missing_and_invalid_certificates() {
    bounded(async {
        let c = certs();
        let (addr, mut hs) = server(&c, true).await;
        for (cert, want) in [
            (Some(&c.good_client), ClientCert::Valid),
            (None, ClientCert::Missing),
            (Some(&c.other_client), ClientCert::Invalid),
        ] {
            let mut s = connect(
                addr,
                client(&c.server_ca, &[b"h2"], cert),
                Some("mtls.example.com"),
            )
            .await
            .unwrap();
            roundtrip(&mut s, b"fallback").await.unwrap();
            let info = next(&mut hs).await.unwrap();
            assert_eq!(info.client_cert, want);
            assert!(info.is_h2());
        }
    })
    .await
}

#[tokio::test]
async fn validation_is_per_listener_on_a_shared_port() {
    bounded(async {
        let c = certs();
        let v = ClientValidation {
            ca_pem: c.client_ca.pem.clone(),
            allow_insecure_fallback: false,
        };
        let ls = [
            listener(
                "gw/mtls",
                Some("mtls.example.com"),
                vec![c.server.ir("ns/srv")],
                Some(v),
            ),
            listener(
                "gw/open",
                Some("open.example.com"),
                vec![c.server.ir("ns/srv")],
                None,
            ),
        ];
        let tls = ServerTls::build(&ls, Alpn::Http).unwrap();
        assert!(!tls.single_config());
        let (addr, mut hs) = echo_server(Arc::new(SwappableAcceptor::new(tls))).await;

        let mut s = connect(
            addr,
            client(&c.server_ca, &[], None),
            Some("open.example.com"),
        )
        .await
        .unwrap();
        roundtrip(&mut s, b"open").await.unwrap();
        let info = next(&mut hs).await.unwrap();
        assert_eq!(
            (info.listener.as_deref(), info.client_cert),
            (Some("gw/open"), ClientCert::NotRequested)
        );

        assert!(rejected(addr, client(&c.server_ca, &[], None)).await);
        assert!(next(&mut hs).await.is_err());

        let mut s = connect(
            addr,
            client(&c.server_ca, &[], Some(&c.good_client)),
            Some("mtls.example.com"),
        )
        .await
        .unwrap();
        roundtrip(&mut s, b"mtls").await.unwrap();
        let info = next(&mut hs).await.unwrap();
        assert_eq!(
            (info.listener.as_deref(), info.client_cert),
            (Some("gw/mtls"), ClientCert::Valid)
        );
    })
    .await
}

#[test]
fn a_ca_bundle_without_certificates_is_an_error() {
    let c = certs();
    let v = ClientValidation {
        ca_pem: "garbage".into(),
        allow_insecure_fallback: false,
    };
    let ls = [listener(
        "gw/mtls",
        None,
        vec![c.server.ir("ns/srv")],
        Some(v),
    )];
    assert!(ServerTls::build(&ls, Alpn::Http).is_err());
}
