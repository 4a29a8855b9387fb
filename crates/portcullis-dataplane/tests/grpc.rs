//! gRPC through the data plane: unary, server-, client- and bidirectional
//! streaming with trailers, over h2c and HTTPS, to h2c and TLS upstreams;
//! gRPC-shaped errors.

mod common;

use std::net::SocketAddr;

use common::grpc::*;
use common::tls::*;
use common::*;
use portcullis_dataplane::{Dataplane, Options};
use portcullis_ir::*;

fn grpc_rule(name: &str, path: PathMatch, backends: Vec<WeightedBackend>) -> HttpRouteRule {
    let mut r = rule(name, path, backends);
    r.meta.kind = "GRPCRoute".into();
    r.matches.grpc = true;
    r
}

fn with_tls(b: Backend, tls: BackendTls) -> Backend {
    match b {
        Backend::Service(mut s) => {
            s.tls = Some(tls);
            Backend::Service(s)
        }
        other => other,
    }
}

async fn h2c_gateway(rules: Vec<HttpRouteRule>) -> (Dataplane, SocketAddr) {
    serve_with(Options::default(), vec![listener("gw/grpc", None, rules)]).await
}

/// Unary, server streaming (gated: the second message is only sent after the
/// client got the first), client streaming and bidirectional (each reply
/// awaited before the next message is sent) on one HTTP/2 connection.
async fn exercise_streams(
    s: &mut hyper::client::conn::http2::SendRequest<ChanBody>,
    scheme: &str,
    authority: &str,
    backend: &GrpcBackend,
) {
    // Unary.
    let mut c = Call::start(s, scheme, authority, "/echo.Echo/Unary", Some(b"hi")).await;
    c.close_send();
    assert_eq!(c.status, 200);
    assert_eq!(c.headers["x-echo-header"], "yes");
    assert_eq!(c.finish().await, vec!["hi"]);
    let t = c.trailers.as_ref().expect("unary trailers");
    assert_eq!(t["grpc-status"], "0");
    assert_eq!(t["x-trailer"], "Unary");

    // Server streaming.
    let mut c = Call::start(s, scheme, authority, "/echo.Echo/ServerStream", Some(b"s")).await;
    c.close_send();
    assert_eq!(
        c.next().await.as_deref(),
        Some(&b"s-0"[..]),
        "first message arrives alone"
    );
    backend.gate.notify_one();
    assert_eq!(c.finish().await, vec!["s-1", "s-2"]);
    assert_eq!(c.grpc_status().as_deref(), Some("0"));
    assert_eq!(c.trailers.as_ref().unwrap()["x-trailer"], "ServerStream");

    // Client streaming.
    let mut c = Call::start(s, scheme, authority, "/echo.Echo/ClientStream", Some(b"a")).await;
    c.send(b"b").await;
    c.send(b"c").await;
    c.close_send();
    assert_eq!(c.finish().await, vec!["3:abc"]);
    assert_eq!(c.grpc_status().as_deref(), Some("0"));

    // Bidirectional.
    let mut c = Call::start(s, scheme, authority, "/echo.Echo/Bidi", Some(b"m0")).await;
    assert_eq!(c.next().await.as_deref(), Some(&b"m0"[..]));
    for i in 1..4 {
        let m = format!("m{i}");
        c.send(m.as_bytes()).await;
        assert_eq!(
            c.next().await.as_deref(),
            Some(m.as_bytes()),
            "reply {i} before the next message"
        );
    }
    c.close_send();
    assert!(c.finish().await.is_empty());
    let t = c.trailers.as_ref().expect("bidi trailers");
    assert_eq!(t["grpc-status"], "0");
    assert_eq!(t["x-trailer"], "Bidi");
}

#[tokio::test]
async fn grpc_streams_and_trailers_pass_through_h2c() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let b = GrpcBackend::start().await;
        let (dp, addr) = h2c_gateway(vec![grpc_rule(
            "g",
            prefix("/echo.Echo"),
            vec![wb(1, service("grpc", &[b.addr], None))],
        )])
        .await;
        let mut s = h2c(addr).await;
        exercise_streams(&mut s, "http", "grpc.example.com", &b).await;
        let seen = b.seen.lock().unwrap().clone();
        assert_eq!(seen.len(), 4);
        for (path, version, headers) in &seen {
            assert_eq!(
                version, "HTTP/2.0",
                "{path}: GRPCRoute rules go upstream over HTTP/2"
            );
            assert_eq!(headers["te"], "trailers", "{path}");
            assert_eq!(headers["content-type"], "application/grpc");
        }
        dp.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn grpc_request_on_an_httproute_rule_goes_upstream_over_http2() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let b = GrpcBackend::start().await;
        // A plain HTTPRoute rule; the backend only speaks HTTP/2.
        let (dp, addr) = h2c_gateway(vec![rule(
            "h",
            prefix("/"),
            vec![wb(1, service("grpc", &[b.addr], None))],
        )])
        .await;
        let mut s = h2c(addr).await;
        let mut c = Call::start(&mut s, "http", "x.example", "/echo.Echo/Unary", Some(b"u")).await;
        c.close_send();
        assert_eq!(c.finish().await, vec!["u"]);
        assert_eq!(c.grpc_status().as_deref(), Some("0"));
        dp.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn grpc_over_https_to_a_tls_upstream() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let ca = Ca::new("ca");
        let upstream_leaf = ca.leaf(&["grpc-backend.example.com"]);
        let b = GrpcBackend::start_tls(&upstream_leaf).await;
        let backend = with_tls(
            service("grpc-tls", &[b.addr], None),
            BackendTls {
                hostname: "grpc-backend.example.com".into(),
                ca_pem: ca.pem.clone(),
                system_roots: false,
                subject_alt_names: vec![],
                client_certificate: None,
            },
        );
        let front = ca.leaf(&["grpc.example.com"]);
        let dp = Dataplane::new(Options::default());
        let l = tls_listener(
            "gw/grpcs",
            Some("grpc.example.com"),
            vec![front.ir("ns/front")],
            None,
            vec![grpc_rule("g", prefix("/echo.Echo"), vec![wb(1, backend)])],
        );
        let addr = apply_port(&dp, |a| port(a, PortProtocol::Https, vec![l.clone()])).await;
        let tls = tls_connect(addr, client_config(&ca, &[b"h2"], None), "grpc.example.com")
            .await
            .unwrap();
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let mut s = h2_handshake(tls).await;
        exercise_streams(&mut s, "https", "grpc.example.com", &b).await;
        let seen = b.seen.lock().unwrap().clone();
        assert!(
            seen.iter()
                .all(|(_, v, h)| v == "HTTP/2.0" && h["x-forwarded-proto"] == "https")
        );
        dp.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn gateway_errors_are_grpc_shaped_for_grpc_requests() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let b = GrpcBackend::start().await;
        let dead = free_addr();
        let mut slow = grpc_rule(
            "slow",
            exact("/echo.Echo/Slow"),
            vec![wb(1, service("grpc", &[b.addr], None))],
        );
        slow.action.request_timeout_ms = Some(300);
        let (dp, addr) = h2c_gateway(vec![
            grpc_rule(
                "g",
                prefix("/echo.Echo"),
                vec![wb(1, service("grpc", &[b.addr], None))],
            ),
            slow,
            grpc_rule(
                "dead",
                prefix("/dead.Svc"),
                vec![wb(1, service("dead", &[dead], None))],
            ),
            grpc_rule(
                "empty",
                prefix("/empty.Svc"),
                vec![wb(1, service("empty", &[], None))],
            ),
            grpc_rule(
                "invalid",
                prefix("/invalid.Svc"),
                vec![wb(
                    1,
                    Backend::Invalid {
                        reason: "Service ns/missing not found".into(),
                    },
                )],
            ),
        ])
        .await;
        let mut s = h2c(addr).await;
        for (path, code) in [
            ("/other.Svc/Method", "12"),
            ("/dead.Svc/M", "14"),
            ("/empty.Svc/M", "14"),
            ("/invalid.Svc/M", "14"),
            ("/echo.Echo/Slow", "4"),
        ] {
            let mut c = Call::start(&mut s, "http", "grpc.example.com", path, Some(b"x")).await;
            c.close_send();
            assert_eq!(c.status, 200, "{path}: gRPC errors are HTTP 200");
            assert_eq!(
                c.headers.get("grpc-status").map(|v| v.to_str().unwrap()),
                Some(code),
                "{path}: trailers-only answer"
            );
            assert_eq!(c.headers["content-type"], "application/grpc", "{path}");
            assert!(c.finish().await.is_empty(), "{path}: no message");
        }
        // The same errors for plain HTTP requests keep their HTTP status.
        let g = send(
            &h2_client(),
            addr,
            "POST",
            "grpc.example.com",
            "/other.Svc/Method",
            &[],
        )
        .await;
        assert_eq!(g.status, 404);
        let g = send(
            &h2_client(),
            addr,
            "POST",
            "grpc.example.com",
            "/dead.Svc/M",
            &[],
        )
        .await;
        assert_eq!(g.status, 502);
        dp.shutdown().await;
    })
    .await
    .unwrap();
}
