//! TLS ports: passthrough by SNI, terminate, both on one port, custom terminators.

mod common;

use std::sync::{Arc, Mutex};

use common::*;
use portcullis_ir::PortProtocol;
use portcullis_l4::client_hello::parse_client_hello;
use portcullis_l4::{L4Port, Rewind, TerminateContext, Terminator};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn passthrough_by_sni_to_two_backends() {
    bounded(async {
        let ca = Ca::new("backend ca");
        let a = tls_backend("A", &ca.leaf(&["a.example.com"])).await;
        let b = tls_backend("B", &ca.leaf(&["b.example.com", "c.example.com"])).await;
        let listener_sock = bind_tcp().await;
        let p = port(
            listener_sock.local_addr().unwrap(),
            PortProtocol::Tls,
            vec![
                listener(
                    "gw/a",
                    Some("a.example.com"),
                    passthrough(),
                    vec![route(
                        "to-a",
                        "2024-01-01T00:00:00Z",
                        &["a.example.com"],
                        vec![wb(1, svc("a", &[a]))],
                    )],
                ),
                listener(
                    "gw/wild",
                    Some("*.example.com"),
                    passthrough(),
                    vec![
                        route(
                            "to-b",
                            "2024-01-01T00:00:00Z",
                            &["b.example.com"],
                            vec![wb(1, svc("b", &[b]))],
                        ),
                        route(
                            "broken",
                            "2024-01-02T00:00:00Z",
                            &["c.example.com"],
                            vec![wb(
                                1,
                                portcullis_ir::Backend::Invalid {
                                    reason: "missing Service".into(),
                                },
                            )],
                        ),
                    ],
                ),
            ],
        );
        let proxy = serve_tcp(L4Port::new(p), listener_sock);
        let client = ca.client();

        // The handshake is end to end: the client verifies the backend's own certificate.
        for (sni, want) in [("a.example.com", "A"), ("b.example.com", "B")] {
            let mut s = tls_connect(proxy.addr, client.clone(), sni).await.unwrap();
            assert_eq!(greeting(&mut s).await.as_deref(), Some(want), "{sni}");
            echo(&mut s, format!("through to {want}").as_bytes())
                .await
                .unwrap();
        }
        // SNI on the wildcard listener matching no route; an invalid backend; no listener.
        for sni in ["d.example.com", "c.example.com", "other.org"] {
            assert!(
                tls_connect(proxy.addr, client.clone(), sni).await.is_err(),
                "{sni} must be refused"
            );
        }
        // Not TLS at all.
        let mut raw = TcpStream::connect(proxy.addr).await.unwrap();
        raw.write_all(b"GET / HTTP/1.1\r\nHost: a.example.com\r\n\r\n")
            .await
            .unwrap();
        assert!(closed(&mut raw).await);
    })
    .await
}

#[tokio::test]
async fn passthrough_clienthello_in_small_pieces() {
    bounded(async {
        let ca = Ca::new("ca");
        let a = tls_backend("A", &ca.leaf(&["slow.example.com"])).await;
        let sock = bind_tcp().await;
        let p = port(
            sock.local_addr().unwrap(),
            PortProtocol::Tls,
            vec![listener(
                "gw/any",
                None,
                passthrough(),
                vec![route(
                    "r",
                    "2024-01-01T00:00:00Z",
                    &[],
                    vec![wb(1, svc("a", &[a]))],
                )],
            )],
        );
        let proxy = serve_tcp(L4Port::new(p), sock);

        // Produce the ClientHello with rustls and send it in 7-byte writes.
        let name = rustls::pki_types::ServerName::try_from("slow.example.com").unwrap();
        let mut conn = rustls::ClientConnection::new(ca.client(), name).unwrap();
        let mut hello = Vec::new();
        conn.write_tls(&mut hello).unwrap();
        let mut tcp = TcpStream::connect(proxy.addr).await.unwrap();
        tcp.set_nodelay(true).unwrap();
        for chunk in hello.chunks(7) {
            tcp.write_all(chunk).await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
        // The backend's ServerHello comes back through the proxy.
        let mut buf = vec![0u8; 8192];
        let n = tcp.read(&mut buf).await.unwrap();
        assert!(
            n > 5 && buf[0] == 22,
            "expected a TLS handshake record, got {:?}",
            &buf[..n.min(8)]
        );
        conn.read_tls(&mut &buf[..n]).unwrap();
        conn.process_new_packets()
            .expect("the backend's answer is a valid ServerHello");
    })
    .await
}

#[tokio::test]
async fn mixed_terminate_and_passthrough_on_one_port_with_rotation() {
    bounded(async {
        let backend_ca = Ca::new("backend ca");
        let gateway_ca = Ca::new("gateway ca");
        let plain = tcp_backend("PLAIN").await;
        let pass = tls_backend("PASS", &backend_ca.leaf(&["pass.example.com"])).await;
        let sock = bind_tcp().await;
        let bind = sock.local_addr().unwrap();
        let gw_old = gateway_ca.leaf(&["term.example.com"]);
        let gw_new = gateway_ca.leaf(&["term.example.com"]);
        let make = |leaf: &Leaf| {
            port(
                bind,
                PortProtocol::Tls,
                vec![
                    listener(
                        "gw/pass",
                        Some("pass.example.com"),
                        passthrough(),
                        vec![route(
                            "tls-pass",
                            "2024-01-01T00:00:00Z",
                            &[],
                            vec![wb(1, svc("pass", &[pass]))],
                        )],
                    ),
                    listener(
                        "gw/term",
                        Some("term.example.com"),
                        terminate(leaf.ir("ns/gw-cert")),
                        vec![route(
                            "tls-term",
                            "2024-01-01T00:00:00Z",
                            &["term.example.com"],
                            vec![wb(1, svc("plain", &[plain]))],
                        )],
                    ),
                ],
            )
        };
        let l4 = L4Port::new(make(&gw_old));
        let proxy = serve_tcp(l4.clone(), sock);

        // Terminated at the gateway (its certificate), plain TCP to the backend.
        let mut term = tls_connect(proxy.addr, gateway_ca.client(), "term.example.com")
            .await
            .unwrap();
        assert_eq!(
            term.get_ref().1.peer_certificates().unwrap()[0],
            gw_old.der()
        );
        assert_eq!(term.get_ref().1.alpn_protocol(), None);
        assert_eq!(greeting(&mut term).await.as_deref(), Some("PLAIN"));
        echo(&mut term, b"decrypted at the gateway").await.unwrap();

        // Passed through: the backend's own certificate.
        let mut p = tls_connect(proxy.addr, backend_ca.client(), "pass.example.com")
            .await
            .unwrap();
        assert_eq!(greeting(&mut p).await.as_deref(), Some("PASS"));
        echo(&mut p, b"end to end").await.unwrap();

        // Rotation: the next handshake gets the new certificate, the open one keeps working.
        l4.swap(make(&gw_new));
        let mut rotated = tls_connect(proxy.addr, gateway_ca.client(), "term.example.com")
            .await
            .unwrap();
        assert_eq!(
            rotated.get_ref().1.peer_certificates().unwrap()[0],
            gw_new.der()
        );
        assert_eq!(greeting(&mut rotated).await.as_deref(), Some("PLAIN"));
        echo(&mut term, b"old connection still open").await.unwrap();
        echo(&mut p, b"passthrough still open").await.unwrap();
    })
    .await
}

/// Records what it was handed and answers with the SNI it re-parsed from the replayed bytes.
#[derive(Default)]
struct Recorder(Mutex<Vec<(String, Option<String>)>>);

impl Terminator for Recorder {
    fn terminate(
        &self,
        mut stream: Rewind<TcpStream>,
        ctx: TerminateContext,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send + 'static>> {
        self.0.lock().unwrap().push((
            ctx.port.listeners[ctx.listener].name.clone(),
            ctx.sni.clone(),
        ));
        Box::pin(async move {
            let replayed = stream.remaining_prefix().to_vec();
            let mut buf = vec![0u8; replayed.len()];
            stream.read_exact(&mut buf).await.unwrap();
            assert_eq!(buf, replayed);
            let hello = parse_client_hello(&buf).unwrap().unwrap();
            let _ = stream
                .write_all(format!("sni={}\n", hello.sni.unwrap_or_default()).as_bytes())
                .await;
        })
    }
}

#[tokio::test]
async fn custom_terminator_gets_the_replayed_clienthello() {
    bounded(async {
        let ca = Ca::new("ca");
        let sock = bind_tcp().await;
        let p = port(
            sock.local_addr().unwrap(),
            PortProtocol::Tls,
            vec![listener(
                "gw/term",
                Some("*.example.com"),
                terminate(ca.leaf(&["*.example.com"]).ir("ns/c")),
                vec![],
            )],
        );
        let recorder = Arc::new(Recorder::default());
        let proxy = serve_tcp(L4Port::new(p).with_terminator(recorder.clone()), sock);

        let name = rustls::pki_types::ServerName::try_from("x.example.com").unwrap();
        let mut conn = rustls::ClientConnection::new(ca.client(), name).unwrap();
        let mut hello = Vec::new();
        conn.write_tls(&mut hello).unwrap();
        let mut tcp = TcpStream::connect(proxy.addr).await.unwrap();
        tcp.write_all(&hello).await.unwrap();
        assert_eq!(
            greeting(&mut tcp).await.as_deref(),
            Some("sni=x.example.com")
        );
        assert_eq!(
            *recorder.0.lock().unwrap(),
            vec![("gw/term".to_owned(), Some("x.example.com".to_owned()))]
        );
    })
    .await
}

#[tokio::test]
async fn an_unusable_terminate_certificate_closes_only_terminated_connections() {
    bounded(async {
        let ca = Ca::new("ca");
        let pass = tls_backend("PASS", &ca.leaf(&["pass.example.com"])).await;
        let plain = tcp_backend("PLAIN").await;
        let mut broken = ca.leaf(&["term.example.com"]).ir("ns/broken");
        broken.key_pem = ca.leaf(&["other.example.com"]).key_pem; // key of another certificate
        let sock = bind_tcp().await;
        let p = port(
            sock.local_addr().unwrap(),
            PortProtocol::Tls,
            vec![
                listener(
                    "gw/pass",
                    Some("pass.example.com"),
                    passthrough(),
                    vec![route(
                        "p",
                        "2024-01-01T00:00:00Z",
                        &[],
                        vec![wb(1, svc("pass", &[pass]))],
                    )],
                ),
                listener(
                    "gw/term",
                    Some("term.example.com"),
                    terminate(broken),
                    vec![route(
                        "t",
                        "2024-01-01T00:00:00Z",
                        &[],
                        vec![wb(1, svc("plain", &[plain]))],
                    )],
                ),
            ],
        );
        let proxy = serve_tcp(L4Port::new(p), sock);
        for _ in 0..2 {
            assert!(
                tls_connect(proxy.addr, ca.client(), "term.example.com")
                    .await
                    .is_err()
            );
        }
        let mut s = tls_connect(proxy.addr, ca.client(), "pass.example.com")
            .await
            .unwrap();
        assert_eq!(greeting(&mut s).await.as_deref(), Some("PASS"));
    })
    .await
}
