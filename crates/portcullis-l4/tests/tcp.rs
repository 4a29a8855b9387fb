//! TCP ports: weighted backends, the oldest route, refusals, idle timeout, route swaps and drain.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::*;
use portcullis_ir::{Backend, PortProtocol};
use portcullis_l4::{L4Options, L4Port};
use tokio::net::TcpStream;

#[tokio::test]
async fn weighted_backends_and_weight_zero() {
    bounded(async {
        let (a, b, zero) = (
            tcp_backend("A").await,
            tcp_backend("B").await,
            tcp_backend("ZERO").await,
        );
        let sock = bind_tcp().await;
        let p = port(
            sock.local_addr().unwrap(),
            PortProtocol::Tcp,
            vec![listener(
                "gw/tcp",
                None,
                None,
                vec![route(
                    "weighted",
                    "2024-01-01T00:00:00Z",
                    &[],
                    vec![
                        wb(1, svc("a", &[a])),
                        wb(3, svc("b", &[b])),
                        wb(0, svc("zero", &[zero])),
                    ],
                )],
            )],
        );
        let proxy = serve_tcp(L4Port::new(p), sock);
        const N: u32 = 400;
        let mut counts: HashMap<String, u32> = HashMap::new();
        for _ in 0..N {
            let mut s = TcpStream::connect(proxy.addr).await.unwrap();
            let name = greeting(&mut s)
                .await
                .expect("every connection reaches a backend");
            *counts.entry(name).or_default() += 1;
        }
        assert_eq!(
            counts.get("ZERO"),
            None,
            "weight 0 never chosen: {counts:?}"
        );
        let a_share = f64::from(counts["A"]) / f64::from(N);
        // Expected 0.25; binomial sd for N=400 is ~0.022, so ±0.09 is over 4 sd.
        assert!(
            (a_share - 0.25).abs() < 0.09,
            "A share {a_share}: {counts:?}"
        );
        assert_eq!(counts["A"] + counts["B"], N);
    })
    .await
}

#[tokio::test]
async fn the_oldest_route_carries_the_traffic() {
    bounded(async {
        let (old, new) = (tcp_backend("OLD").await, tcp_backend("NEW").await);
        let sock = bind_tcp().await;
        let p = port(
            sock.local_addr().unwrap(),
            PortProtocol::Tcp,
            vec![listener(
                "gw/tcp",
                None,
                None,
                vec![
                    route(
                        "older",
                        "2024-01-01T00:00:00Z",
                        &[],
                        vec![wb(1, svc("old", &[old]))],
                    ),
                    route(
                        "newer",
                        "2024-06-01T00:00:00Z",
                        &[],
                        vec![wb(1, svc("new", &[new]))],
                    ),
                ],
            )],
        );
        let proxy = serve_tcp(L4Port::new(p), sock);
        for _ in 0..20 {
            let mut s = TcpStream::connect(proxy.addr).await.unwrap();
            assert_eq!(greeting(&mut s).await.as_deref(), Some("OLD"));
        }
    })
    .await
}

#[tokio::test]
async fn refusals_close_the_connection() {
    bounded(async {
        let live = tcp_backend("LIVE").await;
        // A port nobody listens on.
        let dead = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let cases = vec![
            (
                "invalid",
                vec![wb(
                    1,
                    Backend::Invalid {
                        reason: "no such Service".into(),
                    },
                )],
            ),
            ("no endpoints", vec![wb(1, svc("empty", &[]))]),
            ("all weight zero", vec![wb(0, svc("a", &[live]))]),
            ("endpoint refuses", vec![wb(1, svc("dead", &[dead]))]),
        ];
        for (what, backends) in cases {
            let sock = bind_tcp().await;
            let p = port(
                sock.local_addr().unwrap(),
                PortProtocol::Tcp,
                vec![listener(
                    "gw/tcp",
                    None,
                    None,
                    vec![route("r", "2024-01-01T00:00:00Z", &[], backends)],
                )],
            );
            let proxy = serve_tcp(L4Port::new(p), sock);
            let mut s = TcpStream::connect(proxy.addr).await.unwrap();
            assert!(closed(&mut s).await, "{what}: connection must be closed");
        }
        // No route at all.
        let sock = bind_tcp().await;
        let p = port(
            sock.local_addr().unwrap(),
            PortProtocol::Tcp,
            vec![listener("gw/tcp", None, None, vec![])],
        );
        let proxy = serve_tcp(L4Port::new(p), sock);
        let mut s = TcpStream::connect(proxy.addr).await.unwrap();
        assert!(closed(&mut s).await);
    })
    .await
}

#[tokio::test]
async fn a_dead_endpoint_is_skipped() {
    bounded(async {
        let live = tcp_backend("LIVE").await;
        let dead = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let sock = bind_tcp().await;
        let p = port(
            sock.local_addr().unwrap(),
            PortProtocol::Tcp,
            vec![listener(
                "gw/tcp",
                None,
                None,
                vec![route(
                    "r",
                    "2024-01-01T00:00:00Z",
                    &[],
                    vec![wb(1, svc("s", &[dead, live]))],
                )],
            )],
        );
        let proxy = serve_tcp(L4Port::new(p), sock);
        for _ in 0..20 {
            let mut s = TcpStream::connect(proxy.addr).await.unwrap();
            assert_eq!(greeting(&mut s).await.as_deref(), Some("LIVE"));
        }
    })
    .await
}

#[tokio::test]
async fn route_swap_does_not_cut_an_open_connection() {
    bounded(async {
        let (a, b) = (tcp_backend("A").await, tcp_backend("B").await);
        let sock = bind_tcp().await;
        let bind = sock.local_addr().unwrap();
        let to = |addr| {
            port(
                bind,
                PortProtocol::Tcp,
                vec![listener(
                    "gw/tcp",
                    None,
                    None,
                    vec![route(
                        "r",
                        "2024-01-01T00:00:00Z",
                        &[],
                        vec![wb(1, svc("s", &[addr]))],
                    )],
                )],
            )
        };
        let l4 = L4Port::new(to(a));
        let proxy = serve_tcp(l4.clone(), sock);

        let mut open = TcpStream::connect(proxy.addr).await.unwrap();
        assert_eq!(greeting(&mut open).await.as_deref(), Some("A"));
        echo(&mut open, b"before swap").await.unwrap();

        l4.swap(to(b));
        let mut fresh = TcpStream::connect(proxy.addr).await.unwrap();
        assert_eq!(greeting(&mut fresh).await.as_deref(), Some("B"));

        for i in 0..5 {
            echo(&mut open, format!("after swap {i}").as_bytes())
                .await
                .unwrap();
        }
    })
    .await
}

#[tokio::test]
async fn idle_connections_are_closed() {
    bounded(async {
        let a = tcp_backend("A").await;
        let sock = bind_tcp().await;
        let p = port(
            sock.local_addr().unwrap(),
            PortProtocol::Tcp,
            vec![listener(
                "gw/tcp",
                None,
                None,
                vec![route(
                    "r",
                    "2024-01-01T00:00:00Z",
                    &[],
                    vec![wb(1, svc("a", &[a]))],
                )],
            )],
        );
        let opts = L4Options {
            idle_timeout: Some(Duration::from_millis(500)),
            ..L4Options::default()
        };
        let proxy = serve_tcp(L4Port::new(p).with_options(opts), sock);
        let mut s = TcpStream::connect(proxy.addr).await.unwrap();
        assert_eq!(greeting(&mut s).await.as_deref(), Some("A"));
        // Activity keeps it open past the timeout...
        for _ in 0..4 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            echo(&mut s, b"keepalive").await.unwrap();
        }
        // ...silence closes it.
        let started = tokio::time::Instant::now();
        assert!(closed(&mut s).await);
        let waited = started.elapsed();
        assert!(
            waited >= Duration::from_millis(400) && waited < Duration::from_secs(3),
            "{waited:?}"
        );
    })
    .await
}

#[tokio::test]
async fn drain_stops_accepting_lets_open_connections_finish_until_the_deadline() {
    bounded(async {
        let a = tcp_backend("A").await;
        let sock = bind_tcp().await;
        let p = port(
            sock.local_addr().unwrap(),
            PortProtocol::Tcp,
            vec![listener(
                "gw/tcp",
                None,
                None,
                vec![route(
                    "r",
                    "2024-01-01T00:00:00Z",
                    &[],
                    vec![wb(1, svc("a", &[a]))],
                )],
            )],
        );
        let mut proxy = serve_tcp(L4Port::new(p), sock);
        let mut open = TcpStream::connect(proxy.addr).await.unwrap();
        assert_eq!(greeting(&mut open).await.as_deref(), Some("A"));

        proxy.start_drain(Duration::from_millis(600));
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            TcpStream::connect(proxy.addr).await.is_err(),
            "no new connections while draining"
        );
        echo(&mut open, b"still served while draining")
            .await
            .unwrap();
        assert!(!proxy.task.is_finished());

        // At the deadline the rest is closed and serve_tcp returns.
        assert!(closed(&mut open).await);
        tokio::time::timeout(Duration::from_secs(5), proxy.task)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
    })
    .await
}

#[tokio::test]
async fn drain_returns_early_when_connections_finish() {
    bounded(async {
        let a = tcp_backend("A").await;
        let sock = bind_tcp().await;
        let p = port(
            sock.local_addr().unwrap(),
            PortProtocol::Tcp,
            vec![listener(
                "gw/tcp",
                None,
                None,
                vec![route(
                    "r",
                    "2024-01-01T00:00:00Z",
                    &[],
                    vec![wb(1, svc("a", &[a]))],
                )],
            )],
        );
        let mut proxy = serve_tcp(L4Port::new(p), sock);
        let mut open = TcpStream::connect(proxy.addr).await.unwrap();
        assert_eq!(greeting(&mut open).await.as_deref(), Some("A"));
        proxy.start_drain(Duration::from_secs(30));
        drop(open);
        tokio::time::timeout(Duration::from_secs(5), proxy.task)
            .await
            .expect("serve_tcp returns once idle")
            .unwrap()
            .unwrap();
    })
    .await
}
