//! UDP ports: sessions per client, expiry, the bounded table, weights and drain.

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use common::*;
use portcullis_ir::PortProtocol;
use portcullis_l4::{L4Options, L4Port};
use tokio::net::UdpSocket;

async fn client() -> UdpSocket {
    UdpSocket::bind("127.0.0.1:0").await.unwrap()
}

/// Sends `msg` through the proxy; the reply as (backend, backend-seen source port), or `None`.
async fn ask(c: &UdpSocket, proxy: SocketAddr, msg: &str) -> Option<(String, u16)> {
    c.send_to(msg.as_bytes(), proxy).await.unwrap();
    let mut buf = [0u8; 2048];
    let (n, from) = tokio::time::timeout(Duration::from_millis(1500), c.recv_from(&mut buf))
        .await
        .ok()?
        .ok()?;
    assert_eq!(from, proxy, "replies come from the proxy's address");
    let reply = String::from_utf8_lossy(&buf[..n]).into_owned();
    let mut parts = reply.splitn(3, '|');
    let (name, port, payload) = (parts.next()?, parts.next()?, parts.next()?);
    assert_eq!(payload, msg);
    Some((name.to_owned(), port.parse().ok()?))
}

async fn start(backends: Vec<portcullis_ir::WeightedBackend>, opts: L4Options) -> (L4Port, Proxy) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let p = port(
        sock.local_addr().unwrap(),
        PortProtocol::Udp,
        vec![listener(
            "gw/udp",
            None,
            None,
            vec![route("udp", "2024-01-01T00:00:00Z", &[], backends)],
        )],
    );
    let l4 = L4Port::new(p).with_options(opts);
    let proxy = serve_udp(l4.clone(), sock);
    (l4, proxy)
}

#[tokio::test]
async fn echo_through_the_proxy_with_several_clients() {
    bounded(async {
        let a = udp_backend("A").await;
        let (_l4, proxy) = start(vec![wb(1, svc("a", &[a]))], L4Options::default()).await;
        let clients = [client().await, client().await, client().await];
        let mut session_ports = Vec::new();
        for (i, c) in clients.iter().enumerate() {
            let (name, port) = ask(c, proxy.addr, &format!("hello from {i}"))
                .await
                .expect("reply");
            assert_eq!(name, "A");
            session_ports.push(port);
        }
        // One upstream socket per client, kept for the session.
        assert_eq!(session_ports.iter().collect::<HashSet<_>>().len(), 3);
        for round in 0..3 {
            for (i, c) in clients.iter().enumerate() {
                let (_, port) = ask(c, proxy.addr, &format!("round {round} from {i}"))
                    .await
                    .unwrap();
                assert_eq!(port, session_ports[i], "client {i} keeps its session");
            }
        }
    })
    .await
}

#[tokio::test]
async fn idle_sessions_expire() {
    bounded(async {
        let a = udp_backend("A").await;
        let opts = L4Options {
            udp_idle_timeout: Duration::from_millis(500),
            ..L4Options::default()
        };
        let (_l4, proxy) = start(vec![wb(1, svc("a", &[a]))], opts).await;
        let c = client().await;
        let (_, first) = ask(&c, proxy.addr, "one").await.unwrap();
        // 5 x 150ms: longer than the idle timeout, but never idle for that long.
        for _ in 0..5 {
            tokio::time::sleep(Duration::from_millis(150)).await;
            assert_eq!(
                ask(&c, proxy.addr, "keep").await.unwrap().1,
                first,
                "active session kept"
            );
        }
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let (_, second) = ask(&c, proxy.addr, "after idle").await.unwrap();
        assert_ne!(
            second, first,
            "an expired session gets a new upstream socket"
        );
    })
    .await
}

#[tokio::test]
async fn session_table_is_bounded_least_recently_active_evicted() {
    bounded(async {
        let a = udp_backend("A").await;
        let opts = L4Options {
            udp_max_sessions: 2,
            ..L4Options::default()
        };
        let (_l4, proxy) = start(vec![wb(1, svc("a", &[a]))], opts).await;
        let (c1, c2, c3) = (client().await, client().await, client().await);
        let (_, p1) = ask(&c1, proxy.addr, "c1").await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        let (_, p2) = ask(&c2, proxy.addr, "c2").await.unwrap();
        tokio::time::sleep(Duration::from_millis(20)).await;
        // c1 is active again, so c2 is now the least recently active.
        assert_eq!(ask(&c1, proxy.addr, "c1 again").await.unwrap().1, p1);
        tokio::time::sleep(Duration::from_millis(20)).await;
        let (_, p3) = ask(&c3, proxy.addr, "c3").await.unwrap();
        assert_eq!(ask(&c1, proxy.addr, "c1 kept").await.unwrap().1, p1);
        assert_eq!(ask(&c3, proxy.addr, "c3 kept").await.unwrap().1, p3);
        let (_, p2b) = ask(&c2, proxy.addr, "c2 evicted").await.unwrap();
        assert_ne!(p2b, p2, "c2's session was evicted and reopened");
    })
    .await
}

#[tokio::test]
async fn weighted_per_session_and_weight_zero() {
    bounded(async {
        let (a, b, z) = (
            udp_backend("A").await,
            udp_backend("B").await,
            udp_backend("Z").await,
        );
        let (_l4, proxy) = start(
            vec![
                wb(1, svc("a", &[a])),
                wb(1, svc("b", &[b])),
                wb(0, svc("z", &[z])),
            ],
            L4Options::default(),
        )
        .await;
        let mut seen = HashSet::new();
        for i in 0..60 {
            let c = client().await;
            let (name, _) = ask(&c, proxy.addr, &format!("session {i}")).await.unwrap();
            // A session sticks to its backend.
            assert_eq!(ask(&c, proxy.addr, "again").await.unwrap().0, name);
            seen.insert(name);
        }
        // With 60 sessions at 50/50, missing one backend has probability 2^-59.
        assert_eq!(seen, HashSet::from(["A".to_owned(), "B".to_owned()]));
    })
    .await
}

#[tokio::test]
async fn route_swap_keeps_sessions_and_drain_opens_no_new_ones() {
    bounded(async {
        let (a, b) = (udp_backend("A").await, udp_backend("B").await);
        let opts = L4Options {
            udp_idle_timeout: Duration::from_secs(2),
            ..L4Options::default()
        };
        let (l4, mut proxy) = start(vec![wb(1, svc("a", &[a]))], opts).await;
        let old = client().await;
        assert_eq!(ask(&old, proxy.addr, "x").await.unwrap().0, "A");

        let mut swapped = (*l4.shared().load_full()).clone();
        swapped.listeners[0].l4_routes[0].backends = vec![wb(1, svc("b", &[b]))];
        l4.swap(std::sync::Arc::new(swapped));
        let new = client().await;
        assert_eq!(
            ask(&new, proxy.addr, "y").await.unwrap().0,
            "B",
            "new sessions use the new route"
        );
        assert_eq!(
            ask(&old, proxy.addr, "z").await.unwrap().0,
            "A",
            "the open session keeps its backend"
        );

        proxy.start_drain(Duration::from_secs(10));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(ask(&old, proxy.addr, "draining").await.unwrap().0, "A");
        assert!(
            ask(&client().await, proxy.addr, "late").await.is_none(),
            "no new session while draining"
        );
        // Once the sessions have gone idle, serve_udp returns (well before the 10s deadline).
        tokio::time::timeout(Duration::from_secs(5), proxy.task)
            .await
            .expect("serve_udp returns")
            .unwrap()
            .unwrap();
    })
    .await
}
