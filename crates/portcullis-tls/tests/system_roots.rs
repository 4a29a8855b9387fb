//! `wellKnownCACertificates: System`: the platform trust store, here pointed at a
//! test CA with `SSL_CERT_FILE` (this file is its own test binary, so the
//! environment change touches no other test).

mod common;

use std::sync::Arc;

use common::*;
use portcullis_ir::BackendTls;
use portcullis_tls::{client_config, server_name};
use tokio::net::{TcpListener, TcpStream};

#[tokio::test]
async fn system_roots_come_from_the_platform_store() {
    bounded(async {
        let ca = Ca::new("system ca");
        let other = Ca::new("not in the store");
        let leaf = ca.leaf(&["sys.backend"], Alg::Ecdsa);
        let (chain, key) = leaf.chain_and_key();
        let cfg = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((tcp, _)) = l.accept().await {
                let a = acceptor.clone();
                tokio::spawn(async move {
                    if let Ok(mut s) = a.accept(tcp).await {
                        let _ = roundtrip_server(&mut s).await;
                    }
                });
            }
        });

        let dir = tempfile::tempdir().unwrap();
        let policy = BackendTls {
            hostname: "sys.backend".into(),
            ca_pem: String::new(),
            system_roots: true,
            subject_alt_names: vec![],
            client_certificate: None,
        };
        let attempt = |store_pem: &str| {
            let file = dir.path().join("store.pem");
            std::fs::write(&file, store_pem).unwrap();
            // SAFETY: this test binary runs this single test; nothing else reads the environment concurrently.
            unsafe { std::env::set_var("SSL_CERT_FILE", &file) };
            let cfg = client_config(&policy);
            unsafe { std::env::remove_var("SSL_CERT_FILE") };
            cfg
        };

        let trusting = attempt(&ca.pem).unwrap();
        let tcp = TcpStream::connect(addr).await.unwrap();
        let mut s = tokio_rustls::TlsConnector::from(trusting)
            .connect(server_name(&policy).unwrap(), tcp)
            .await
            .unwrap();
        roundtrip(&mut s, b"system").await.unwrap();

        let distrusting = attempt(&other.pem).unwrap();
        let tcp = TcpStream::connect(addr).await.unwrap();
        let err = tokio_rustls::TlsConnector::from(distrusting)
            .connect(server_name(&policy).unwrap(), tcp)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("UnknownIssuer"), "{err}");
    })
    .await
}

async fn roundtrip_server<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    s: &mut S,
) -> std::io::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut buf = [0u8; 512];
    loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        s.write_all(&buf[..n]).await?;
    }
}
