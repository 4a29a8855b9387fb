//! Upstream TLS from BackendTLSPolicy: CA bundle, SNI = hostname,
//! subjectAltNames, verification failures, per-policy pools, config errors.

mod common;

use std::net::SocketAddr;

use common::tls::*;
use common::*;
use portcullis_dataplane::{Dataplane, Options};
use portcullis_ir::*;

fn policy(hostname: &str, ca: &Ca, sans: Vec<SubjectAltName>) -> BackendTls {
    BackendTls {
        hostname: hostname.into(),
        ca_pem: ca.pem.clone(),
        system_roots: false,
        subject_alt_names: sans,
        client_certificate: None,
    }
}

fn tls_service(name: &str, addr: SocketAddr, tls: BackendTls) -> Backend {
    match service(name, &[addr], None) {
        Backend::Service(mut s) => {
            s.tls = Some(tls);
            Backend::Service(s)
        }
        other => other,
    }
}

/// One HTTP port with a rule per `(path prefix, backend)`.
async fn gateway(rules: Vec<(&str, Backend)>) -> (Dataplane, SocketAddr) {
    let rules = rules
        .into_iter()
        .enumerate()
        .map(|(i, (p, b))| rule(&format!("r{i}"), prefix(p), vec![wb(1, b)]))
        .collect();
    serve(rules).await
}

#[tokio::test]
async fn backend_tls_verifies_hostname_against_the_ca_and_sends_sni() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let ca = Ca::new("backend ca");
        let b = TlsEchoHttp::start("secure", &ca.leaf(&["secure.example.com"])).await;
        let rogue = Ca::new("rogue ca");
        let (dp, addr) = gateway(vec![
            (
                "/ok",
                tls_service("ok", b.addr, policy("secure.example.com", &ca, vec![])),
            ),
            (
                "/wrong-name",
                tls_service("wn", b.addr, policy("other.example.com", &ca, vec![])),
            ),
            (
                "/wrong-ca",
                tls_service("wc", b.addr, policy("secure.example.com", &rogue, vec![])),
            ),
        ])
        .await;
        let c = client();
        for i in 0..3 {
            let g = send(&c, addr, "GET", "front.example", &format!("/ok/{i}"), &[]).await;
            assert_eq!(g.status, 200, "{:?}", g.body);
            assert_eq!(g.json()["backend"], "secure");
            assert_eq!(g.json()["host"], "front.example", "Host is the client's");
        }
        assert_eq!(
            *b.snis.lock().unwrap(),
            vec![Some("secure.example.com".to_string())],
            "one pooled connection, SNI = hostname"
        );
        assert_eq!(get(addr, "front.example", "/wrong-name").await.status, 502);
        assert_eq!(get(addr, "front.example", "/wrong-ca").await.status, 502);
        assert_eq!(
            b.seen.lock().unwrap().len(),
            3,
            "failed verifications send nothing"
        );
        dp.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn backend_tls_subject_alt_names_replace_the_hostname_check() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let ca = Ca::new("backend ca");
        let spiffe = "spiffe://cluster.local/ns/app/sa/backend";
        let b = TlsEchoHttp::start("san", &ca.leaf(&["san.example.com", spiffe])).await;
        let (dp, addr) = gateway(vec![
            (
                "/uri",
                tls_service(
                    "uri",
                    b.addr,
                    policy(
                        "sni.example.com",
                        &ca,
                        vec![SubjectAltName::Uri(spiffe.into())],
                    ),
                ),
            ),
            (
                "/dns",
                tls_service(
                    "dns",
                    b.addr,
                    policy(
                        "sni.example.com",
                        &ca,
                        vec![SubjectAltName::Hostname("san.example.com".into())],
                    ),
                ),
            ),
            (
                "/none",
                tls_service(
                    "none",
                    b.addr,
                    policy(
                        "san.example.com",
                        &ca,
                        vec![SubjectAltName::Uri("spiffe://cluster.local/other".into())],
                    ),
                ),
            ),
        ])
        .await;
        assert_eq!(get(addr, "f.example", "/uri").await.status, 200);
        assert_eq!(get(addr, "f.example", "/dns").await.status, 200);
        assert_eq!(
            get(addr, "f.example", "/none").await.status,
            502,
            "with SANs set, the hostname alone is not enough"
        );
        let snis = b.snis.lock().unwrap().clone();
        assert_eq!(
            snis.iter()
                .filter(|s| s.as_deref() == Some("sni.example.com"))
                .count(),
            2,
            "each policy has its own pool; SNI is the hostname even with SANs: {snis:?}"
        );
        dp.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn backend_tls_config_errors_are_reported_and_answered_as_invalid() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let ca = Ca::new("backend ca");
        let b = TlsEchoHttp::start("secure", &ca.leaf(&["secure.example.com"])).await;
        let mut bad = policy("secure.example.com", &ca, vec![]);
        bad.ca_pem = "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n".into();
        let dp = Dataplane::new(Options::default());
        let addr = free_addr();
        let cfg = |tls: BackendTls| {
            config(
                addr,
                vec![listener(
                    "gw/l",
                    None,
                    vec![rule(
                        "r",
                        prefix("/"),
                        vec![wb(1, tls_service("bad", b.addr, tls))],
                    )],
                )],
            )
        };
        let report = dp.apply(cfg(bad)).await;
        assert!(report.bind_errors.is_empty());
        assert!(
            report.backend_tls_errors.contains_key("ns/bad:80"),
            "{report:?}"
        );
        assert_eq!(get(addr, "f.example", "/").await.status, 500);
        let report = dp
            .apply(cfg(policy("secure.example.com", &ca, vec![])))
            .await;
        assert!(report.backend_tls_errors.is_empty(), "{report:?}");
        assert_eq!(get(addr, "f.example", "/").await.status, 200);
        dp.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn backend_tls_pools_survive_unrelated_config_changes() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let ca = Ca::new("backend ca");
        let b = TlsEchoHttp::start("secure", &ca.leaf(&["secure.example.com"])).await;
        let e = Echo::start("plain").await;
        let dp = Dataplane::new(Options::default());
        let addr = free_addr();
        let cfg = |extra: &str| {
            config(
                addr,
                vec![listener(
                    "gw/l",
                    None,
                    vec![
                        rule(
                            "tls",
                            prefix("/tls"),
                            vec![wb(
                                1,
                                tls_service("s", b.addr, policy("secure.example.com", &ca, vec![])),
                            )],
                        ),
                        rule("plain", prefix(extra), vec![wb(1, e.backend())]),
                    ],
                )],
            )
        };
        assert_eq!(dp.apply(cfg("/a")).await, Default::default());
        assert_eq!(get(addr, "f.example", "/tls").await.status, 200);
        for p in ["/b", "/c"] {
            assert_eq!(dp.apply(cfg(p)).await, Default::default());
            assert_eq!(get(addr, "f.example", "/tls").await.status, 200);
            assert_eq!(get(addr, "f.example", p).await.json()["backend"], "plain");
        }
        assert_eq!(
            b.snis.lock().unwrap().len(),
            1,
            "the pooled TLS connection was reused across applies"
        );
        dp.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn backend_tls_presents_the_gateway_client_certificate() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let ca = Ca::new("backend ca");
        let client_ca = Ca::new("gateway client ca");
        let b = TlsEchoHttp::start_mtls("mtls", &ca.leaf(&["mtls.example.com"]), &client_ca).await;
        let mut with_cert = policy("mtls.example.com", &ca, vec![]);
        with_cert.client_certificate =
            Some(client_ca.leaf(&["gateway.example.com"]).ir("ns/gw-client"));
        let (dp, addr) = gateway(vec![
            ("/with", tls_service("with", b.addr, with_cert)),
            (
                "/without",
                tls_service("without", b.addr, policy("mtls.example.com", &ca, vec![])),
            ),
        ])
        .await;
        let g = get(addr, "f.example", "/with").await;
        assert_eq!(g.status, 200, "{:?}", g.body);
        assert_eq!(g.json()["backend"], "mtls");
        assert_eq!(get(addr, "f.example", "/without").await.status, 502);
        assert_eq!(b.seen.lock().unwrap().len(), 1);
        dp.shutdown().await;
    })
    .await
    .unwrap();
}
