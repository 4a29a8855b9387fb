//! Layer-4 ports through the data plane: TLS passthrough and terminate
//! (mixed on one port), TCP with weights, UDP, swaps, drain, bind errors.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::tls::*;
use common::*;
use portcullis_dataplane::{Dataplane, Options};
use portcullis_ir::*;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

fn l4_route(kind: &str, name: &str, hostnames: &[&str], backends: Vec<WeightedBackend>) -> L4Route {
    L4Route {
        meta: RouteMeta {
            kind: kind.into(),
            namespace: "ns".into(),
            name: name.into(),
            creation_timestamp: "2024-01-01T00:00:00Z".into(),
            rule_index: 0,
            rule_name: None,
        },
        hostnames: hostnames.iter().map(|h| h.to_string()).collect(),
        backends,
        traffic: None,
    }
}

fn l4_listener(
    name: &str,
    hostname: Option<&str>,
    tls: Option<ListenerTls>,
    routes: Vec<L4Route>,
) -> Listener {
    Listener {
        name: name.into(),
        hostname: hostname.map(Into::into),
        tls,
        http_routes: vec![],
        l4_routes: routes,
        client: None,
    }
}

fn tcp_port(addr: SocketAddr, backends: Vec<WeightedBackend>) -> Port {
    port(
        addr,
        PortProtocol::Tcp,
        vec![l4_listener(
            "gw/tcp",
            None,
            None,
            vec![l4_route("TCPRoute", "t", &[], backends)],
        )],
    )
}

/// A TCP server that sends `hello <name>\n`, then echoes.
async fn tcp_backend(name: &str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let greeting = format!("hello {name}\n");
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let greeting = greeting.clone();
            tokio::spawn(async move {
                if s.write_all(greeting.as_bytes()).await.is_err() {
                    return;
                }
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 || s.write_all(&buf[..n]).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    addr
}

/// A UDP server answering `<name>:<payload>`.
async fn udp_backend(name: &str) -> SocketAddr {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = s.local_addr().unwrap();
    let name = name.to_string();
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while let Ok((n, from)) = s.recv_from(&mut buf).await {
            let mut out = format!("{name}:").into_bytes();
            out.extend_from_slice(&buf[..n]);
            let _ = s.send_to(&out, from).await;
        }
    });
    addr
}

/// Reads the greeting line; `None` if the connection closed first.
async fn greeting<S: AsyncRead + Unpin>(s: &mut S) -> Option<String> {
    let mut line = String::new();
    let mut r = BufReader::new(s);
    match tokio::time::timeout(Duration::from_secs(5), r.read_line(&mut line)).await {
        Ok(Ok(n)) if n > 0 => Some(line.trim_end().to_string()),
        _ => None,
    }
}

async fn echo<S: AsyncRead + AsyncWrite + Unpin>(s: &mut S, msg: &[u8]) -> std::io::Result<()> {
    s.write_all(msg).await?;
    s.flush().await?;
    let mut buf = vec![0u8; msg.len()];
    tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut buf))
        .await
        .map_err(|_| std::io::Error::other("echo timed out"))??;
    assert_eq!(buf, msg);
    Ok(())
}

#[tokio::test]
async fn tls_passthrough_and_terminate_mixed_on_one_port() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let backend_ca = Ca::new("backend ca");
        let backend_leaf = backend_ca.leaf(&["passthrough.example.com"]);
        let pt = tls_echo_backend("passthrough", &backend_leaf).await;
        let term = tcp_backend("terminated").await;
        let gw_ca = Ca::new("gateway ca");
        let gw_leaf = gw_ca.leaf(&["terminate.example.com"]);
        let listeners = vec![
            l4_listener(
                "gw/pt",
                Some("passthrough.example.com"),
                Some(ListenerTls {
                    mode: TlsMode::Passthrough,
                    certificates: vec![],
                    client_validation: None,
                }),
                vec![l4_route(
                    "TLSRoute",
                    "pt",
                    &["passthrough.example.com"],
                    vec![wb(1, service("pt", &[pt], None))],
                )],
            ),
            l4_listener(
                "gw/term",
                Some("terminate.example.com"),
                Some(ListenerTls {
                    mode: TlsMode::Terminate,
                    certificates: vec![gw_leaf.ir("ns/gw-cert")],
                    client_validation: None,
                }),
                vec![l4_route(
                    "TLSRoute",
                    "term",
                    &["terminate.example.com"],
                    vec![wb(1, service("term", &[term], None))],
                )],
            ),
        ];
        let dp = Dataplane::new(Options::default());
        let addr = apply_port(&dp, |a| port(a, PortProtocol::Tls, listeners.clone())).await;

        // Passthrough: the handshake is with the backend, end to end.
        let mut p = tls_connect(
            addr,
            client_config(&backend_ca, &[], None),
            "passthrough.example.com",
        )
        .await
        .expect("passthrough handshake with the backend");
        assert_eq!(peer_cert(&p), backend_leaf.der());
        assert_eq!(greeting(&mut p).await.as_deref(), Some("hello passthrough"));
        echo(&mut p, b"through the gateway untouched")
            .await
            .unwrap();

        // Terminate: the gateway's certificate, plaintext TCP to the backend.
        let mut s = tls_connect(
            addr,
            client_config(&gw_ca, &[], None),
            "terminate.example.com",
        )
        .await
        .expect("terminated handshake");
        assert_eq!(peer_cert(&s), gw_leaf.der());
        assert_eq!(greeting(&mut s).await.as_deref(), Some("hello terminated"));
        echo(&mut s, b"terminated at the gateway").await.unwrap();

        // No listener for the SNI: closed.
        let r = tls_connect(addr, client_config(&gw_ca, &[], None), "other.example.com").await;
        assert!(r.is_err(), "unknown SNI must not be served");
        drop((p, s));
        dp.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn tcp_weighted_backends_and_weight_zero() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let (a, b, z) = (
            tcp_backend("a").await,
            tcp_backend("b").await,
            tcp_backend("zero").await,
        );
        let backends = vec![
            wb(3, service("a", &[a], None)),
            wb(1, service("b", &[b], None)),
            wb(0, service("zero", &[z], None)),
        ];
        let dp = Dataplane::new(Options::default());
        let addr = apply_port(&dp, |x| tcp_port(x, backends.clone())).await;
        let mut counts: HashMap<String, u32> = HashMap::new();
        for _ in 0..200 {
            let mut s = TcpStream::connect(addr).await.unwrap();
            let g = greeting(&mut s).await.expect("greeting");
            *counts.entry(g).or_default() += 1;
        }
        assert!(!counts.contains_key("hello zero"), "{counts:?}");
        let a = counts.get("hello a").copied().unwrap_or(0);
        assert!(
            (125..=175).contains(&a),
            "weight 3:1 gives about 150/200 to a: {counts:?}"
        );
        assert_eq!(a + counts.get("hello b").copied().unwrap_or(0), 200);
        dp.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn udp_datagrams_are_echoed_through_the_port() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let u = udp_backend("u").await;
        // Open sessions hold the drain until they idle out or the deadline.
        let dp = Dataplane::new(Options {
            drain_timeout: Duration::from_secs(1),
            ..Default::default()
        });
        let addr = apply_port(&dp, |a| {
            port(
                a,
                PortProtocol::Udp,
                vec![l4_listener(
                    "gw/udp",
                    None,
                    None,
                    vec![l4_route(
                        "UDPRoute",
                        "u",
                        &[],
                        vec![wb(1, service("u", &[u], None))],
                    )],
                )],
            )
        })
        .await;
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.connect(addr).await.unwrap();
        let mut buf = [0u8; 2048];
        for i in 0..5 {
            let msg = format!("ping {i}");
            client.send(msg.as_bytes()).await.unwrap();
            let n = tokio::time::timeout(Duration::from_secs(5), client.recv(&mut buf))
                .await
                .expect("UDP answer")
                .unwrap();
            assert_eq!(&buf[..n], format!("u:{msg}").as_bytes());
        }
        dp.shutdown().await;
        assert!(
            std::net::UdpSocket::bind(addr).is_ok(),
            "the UDP port is released when shutdown returns"
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn l4_swap_keeps_open_connections_and_removal_drains() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let (a, b) = (tcp_backend("a").await, tcp_backend("b").await);
        let opts = Options {
            drain_timeout: Duration::from_millis(800),
            ..Default::default()
        };
        let dp = Dataplane::new(opts);
        let addr = apply_port(&dp, |x| tcp_port(x, vec![wb(1, service("a", &[a], None))])).await;
        let mut open = TcpStream::connect(addr).await.unwrap();
        assert_eq!(greeting(&mut open).await.as_deref(), Some("hello a"));

        let report = dp
            .apply(Arc::new(Config {
                ports: vec![tcp_port(addr, vec![wb(1, service("b", &[b], None))])],
            }))
            .await;
        assert_eq!(report, Default::default());
        let mut new = TcpStream::connect(addr).await.unwrap();
        assert_eq!(
            greeting(&mut new).await.as_deref(),
            Some("hello b"),
            "new connections use the new route"
        );
        echo(&mut open, b"still on a")
            .await
            .expect("open connection kept across the swap");

        // Removed: no new connections; open ones live until the drain deadline.
        assert_eq!(
            dp.apply(Arc::new(Config::default())).await,
            Default::default()
        );
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "a removed port refuses connections"
        );
        echo(&mut open, b"draining")
            .await
            .expect("open connection works while draining");
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let mut buf = [0u8; 16];
        let closed = matches!(
            tokio::time::timeout(Duration::from_secs(3), open.read(&mut buf)).await,
            Ok(Ok(0)) | Ok(Err(_))
        );
        assert!(closed, "the drain deadline closes what is left");
        dp.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn protocol_change_on_the_same_address_rebinds() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let t = tcp_backend("t").await;
        let e = Echo::start("http").await;
        let dp = Dataplane::new(Options::default());
        let addr = apply_port(&dp, |x| tcp_port(x, vec![wb(1, service("t", &[t], None))])).await;
        let mut s = TcpStream::connect(addr).await.unwrap();
        assert_eq!(greeting(&mut s).await.as_deref(), Some("hello t"));
        let report = dp
            .apply(config(
                addr,
                vec![listener(
                    "gw/l",
                    None,
                    vec![rule("r", prefix("/"), vec![wb(1, e.backend())])],
                )],
            ))
            .await;
        assert_eq!(report, Default::default());
        let g = get(addr, "x.example", "/").await;
        assert_eq!(g.status, 200);
        assert_eq!(g.json()["backend"], "http");
        drop(s);
        dp.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn l4_bind_errors_are_reported() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        init_tracing();
        let taken_tcp = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let taken_udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let (ta, ua) = (
            taken_tcp.local_addr().unwrap(),
            taken_udp.local_addr().unwrap(),
        );
        let dp = Dataplane::new(Options::default());
        let report = dp
            .apply(Arc::new(Config {
                ports: vec![tcp_port(ta, vec![]), port(ua, PortProtocol::Udp, vec![])],
            }))
            .await;
        assert!(report.bind_errors.contains_key(&ta), "{report:?}");
        assert!(report.bind_errors.contains_key(&ua), "{report:?}");
        // Retried by the next apply once the address is free.
        drop(taken_tcp);
        let report = dp
            .apply(Arc::new(Config {
                ports: vec![tcp_port(ta, vec![])],
            }))
            .await;
        assert!(report.bind_errors.is_empty(), "{report:?}");
        let mut s = TcpStream::connect(ta).await.expect("bound on retry");
        let mut buf = [0u8; 1];
        let r = tokio::time::timeout(Duration::from_secs(3), s.read(&mut buf)).await;
        assert!(
            matches!(r, Ok(Ok(0)) | Ok(Err(_))),
            "no route: the connection is closed"
        );
        dp.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn https_listener_shares_a_tls_port_with_passthrough() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let backend_ca = Ca::new("backend ca");
        let backend_leaf = backend_ca.leaf(&["passthrough.example.com"]);
        let pt = tls_echo_backend("passthrough", &backend_leaf).await;
        let e = Echo::start("www").await;
        let gw_ca = Ca::new("gateway ca");
        let (www, www2) = (
            gw_ca.leaf(&["www.example.com"]),
            gw_ca.leaf(&["www.example.com"]),
        );
        let listeners = |cert: Certificate| {
            vec![
                l4_listener(
                    "gw/pt",
                    Some("passthrough.example.com"),
                    Some(ListenerTls {
                        mode: TlsMode::Passthrough,
                        certificates: vec![],
                        client_validation: None,
                    }),
                    vec![l4_route(
                        "TLSRoute",
                        "pt",
                        &[],
                        vec![wb(1, service("pt", &[pt], None))],
                    )],
                ),
                tls_listener(
                    "gw/www",
                    Some("www.example.com"),
                    vec![cert],
                    None,
                    vec![rule("www", prefix("/"), vec![wb(1, e.backend())])],
                ),
            ]
        };
        let dp = Dataplane::new(Options::default());
        let addr = apply_port(&dp, |a| {
            port(a, PortProtocol::Tls, listeners(www.ir("ns/www")))
        })
        .await;

        let mut c = TlsHttp::connect(
            addr,
            client_config(&gw_ca, &[b"h2", b"http/1.1"], None),
            "www.example.com",
        )
        .await
        .unwrap();
        assert!(c.h2, "ALPN h2 on the HTTPS listener of a TLS port");
        assert_eq!(c.cert, www.der());
        let g = c.get("www.example.com", "/x").await.unwrap();
        assert_eq!(g.status, 200);
        assert_eq!(g.json()["backend"], "www");
        assert_eq!(g.echoed("x-forwarded-proto").as_deref(), Some("https"));
        assert_eq!(
            c.get("passthrough.example.com", "/").await.unwrap().status,
            421,
            "a host of another listener is misdirected"
        );

        let mut s = tls_connect(
            addr,
            client_config(&backend_ca, &[], None),
            "passthrough.example.com",
        )
        .await
        .expect("passthrough on the same port");
        assert_eq!(greeting(&mut s).await.as_deref(), Some("hello passthrough"));

        // Rotation on apply; a broken certificate is reported and the previous one stays.
        let report = dp
            .apply(Arc::new(Config {
                ports: vec![port(addr, PortProtocol::Tls, listeners(www2.ir("ns/www")))],
            }))
            .await;
        assert_eq!(report, Default::default());
        let mut c2 = TlsHttp::connect(
            addr,
            client_config(&gw_ca, &[b"http/1.1"], None),
            "www.example.com",
        )
        .await
        .unwrap();
        assert_eq!(c2.cert, www2.der());
        assert_eq!(c2.get("www.example.com", "/").await.unwrap().status, 200);
        assert_eq!(
            c.get("www.example.com", "/").await.unwrap().status,
            200,
            "open connection kept"
        );
        let broken = Certificate {
            key_pem: www.key_pem.clone(),
            ..www2.ir("ns/www")
        };
        let report = dp
            .apply(Arc::new(Config {
                ports: vec![port(addr, PortProtocol::Tls, listeners(broken))],
            }))
            .await;
        assert!(report.tls_errors.contains_key(&addr), "{report:?}");
        let c3 = TlsHttp::connect(
            addr,
            client_config(&gw_ca, &[b"http/1.1"], None),
            "www.example.com",
        )
        .await
        .unwrap();
        assert_eq!(c3.cert, www2.der());
        drop((s, c, c2, c3));
        dp.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn shutdown_closes_layer4_connections_by_the_deadline() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let t = tcp_backend("t").await;
        let u = udp_backend("u").await;
        let opts = Options {
            drain_timeout: Duration::from_millis(300),
            ..Default::default()
        };
        let dp = Dataplane::new(opts);
        let tcp_addr = free_addr();
        let udp_addr = free_udp_addr();
        let report = dp
            .apply(Arc::new(Config {
                ports: vec![
                    tcp_port(tcp_addr, vec![wb(1, service("t", &[t], None))]),
                    port(
                        udp_addr,
                        PortProtocol::Udp,
                        vec![l4_listener(
                            "gw/u",
                            None,
                            None,
                            vec![l4_route(
                                "UDPRoute",
                                "u",
                                &[],
                                vec![wb(1, service("u", &[u], None))],
                            )],
                        )],
                    ),
                ],
            }))
            .await;
        assert_eq!(report, Default::default());
        let mut open = TcpStream::connect(tcp_addr).await.unwrap();
        assert_eq!(greeting(&mut open).await.as_deref(), Some("hello t"));
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.send_to(b"x", udp_addr).await.unwrap();
        let mut buf = [0u8; 64];
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), client.recv_from(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..n], b"u:x");

        let started = std::time::Instant::now();
        dp.shutdown().await;
        let took = started.elapsed();
        assert!(
            took < Duration::from_millis(1400),
            "shutdown waited {took:?}"
        );
        let r = tokio::time::timeout(Duration::from_secs(2), open.read(&mut buf)).await;
        assert!(
            matches!(r, Ok(Ok(0)) | Ok(Err(_))),
            "open TCP connection closed by shutdown"
        );
        assert!(TcpStream::connect(tcp_addr).await.is_err());
        assert!(
            std::net::UdpSocket::bind(udp_addr).is_ok(),
            "the UDP socket is released after shutdown"
        );
    })
    .await
    .unwrap();
}
