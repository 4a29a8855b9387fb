//! Certificate rotation: a new `ServerTls` is used by the next handshake while
//! connections that are already open keep working.

mod common;

use std::sync::Arc;

use common::*;
use portcullis_tls::{Alpn, ServerTls, SwappableAcceptor};

#[tokio::test]
async fn rotated_certificate_is_served_on_the_next_handshake_open_connections_untouched() {
    bounded(async {
        let ca = Ca::new("rotation ca");
        let old = ca.leaf(&["rot.example.com"], Alg::Rsa);
        let new = ca.leaf(&["rot.example.com"], Alg::Ecdsa);
        let build = |leaf: &Leaf| {
            ServerTls::build(
                &[listener(
                    "gw/rot",
                    Some("rot.example.com"),
                    vec![leaf.ir("ns/rot")],
                    None,
                )],
                Alpn::Http,
            )
            .unwrap()
        };
        let acceptor = Arc::new(SwappableAcceptor::new(build(&old)));
        let (addr, mut hs) = echo_server(acceptor.clone()).await;
        let cfg = client(&ca, &[b"h2"], None);

        let mut before = connect(addr, cfg.clone(), Some("rot.example.com"))
            .await
            .unwrap();
        roundtrip(&mut before, b"before rotation").await.unwrap();
        assert_eq!(
            before.get_ref().1.peer_certificates().unwrap()[0],
            old.der()
        );
        next(&mut hs).await.unwrap();

        // The Secret changed: a new IR, a new ServerTls, swapped in.
        acceptor.store(build(&new));

        let mut after = connect(addr, cfg.clone(), Some("rot.example.com"))
            .await
            .unwrap();
        assert_eq!(after.get_ref().1.peer_certificates().unwrap()[0], new.der());
        roundtrip(&mut after, b"after rotation").await.unwrap();
        next(&mut hs).await.unwrap();

        // The connection opened before the swap still works, on its old certificate.
        for i in 0..3 {
            roundtrip(&mut before, format!("still open {i}").as_bytes())
                .await
                .unwrap();
        }
        assert_eq!(
            before.get_ref().1.peer_certificates().unwrap()[0],
            old.der()
        );
    })
    .await
}

#[tokio::test]
async fn handshake_timeout_bounds_silent_clients() {
    bounded(async {
        let ca = Ca::new("ca");
        let leaf = ca.leaf(&["t.example.com"], Alg::Ecdsa);
        let tls = ServerTls::build(
            &[listener("gw/t", None, vec![leaf.ir("ns/t")], None)],
            Alpn::Http,
        )
        .unwrap();
        let acceptor = SwappableAcceptor::new(tls)
            .with_handshake_timeout(std::time::Duration::from_millis(200));
        let (addr, mut hs) = echo_server(Arc::new(acceptor)).await;
        let _silent = tokio::net::TcpStream::connect(addr).await.unwrap();
        let err = next(&mut hs).await.unwrap_err();
        assert!(err.contains("timed out"), "{err}");
    })
    .await
}
