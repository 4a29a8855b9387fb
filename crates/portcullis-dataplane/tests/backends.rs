//! Backends: weights, errors, timeouts, retries, endpoints, session persistence.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use portcullis_ir::*;

#[tokio::test]
async fn weighted_split_is_statistically_right() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let (a, b, z) = (
            Echo::start("a").await,
            Echo::start("b").await,
            Echo::start("zero").await,
        );
        let r = rule(
            "r",
            prefix("/"),
            vec![wb(1, a.backend()), wb(3, b.backend()), wb(0, z.backend())],
        );
        let (_dp, addr) = serve(vec![r]).await;
        let c = client();
        let n = 800;
        let mut counts: HashMap<String, u32> = HashMap::new();
        for _ in 0..n {
            let g = send(&c, addr, "GET", "h", "/", &[]).await;
            *counts
                .entry(g.json()["backend"].as_str().unwrap().to_string())
                .or_default() += 1;
        }
        assert_eq!(z.count(), 0, "weight 0 is never chosen");
        let b_share = f64::from(counts["b"]) / f64::from(n);
        // Expected 0.75; with n = 800 the standard deviation is ~0.015: allow 5 sigma.
        assert!((b_share - 0.75).abs() < 0.075, "b share {b_share}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn invalid_backend_answers_500_in_proportion_to_its_weight() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let a = Echo::start("a").await;
        let r = rule(
            "r",
            prefix("/"),
            vec![
                wb(1, a.backend()),
                wb(
                    1,
                    Backend::Invalid {
                        reason: "no such service".into(),
                    },
                ),
            ],
        );
        let (_dp, addr) = serve(vec![r]).await;
        let c = client();
        let n = 400;
        let mut errors = 0;
        for _ in 0..n {
            let g = send(&c, addr, "GET", "h", "/", &[]).await;
            match g.status {
                500 => errors += 1,
                200 => {}
                s => panic!("unexpected {s}"),
            }
        }
        let share = f64::from(errors) / f64::from(n);
        assert!((share - 0.5).abs() < 0.125, "500 share {share}");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn gateway_errors_500_502_503_504() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let slow = Echo::start_slow("slow", 3000).await;
        let mut timeout_rule = rule("t", prefix("/timeout"), vec![wb(1, slow.backend())]);
        timeout_rule.action.request_timeout_ms = Some(300);
        let mut per_try = rule("t2", prefix("/per-try"), vec![wb(1, slow.backend())]);
        per_try.action.backend_request_timeout_ms = Some(200);
        let rules = vec![
            rule("empty", prefix("/empty"), vec![]),
            rule("zero", prefix("/zero"), vec![wb(0, slow.backend())]),
            rule(
                "dead",
                prefix("/dead"),
                vec![wb(1, service("dead", &[free_addr()], None))],
            ),
            rule(
                "none",
                prefix("/none"),
                vec![wb(1, service("none", &[], None))],
            ),
            timeout_rule,
            per_try,
        ];
        let (_dp, addr) = serve(rules).await;
        let c = client();
        let check = |g: Got, status: u16, body: &str| {
            assert_eq!(g.status, status);
            assert_eq!(std::str::from_utf8(&g.body).unwrap(), body);
        };
        check(
            send(&c, addr, "GET", "h", "/empty", &[]).await,
            500,
            "invalid backend\n",
        );
        check(
            send(&c, addr, "GET", "h", "/zero", &[]).await,
            500,
            "invalid backend\n",
        );
        check(
            send(&c, addr, "GET", "h", "/dead", &[]).await,
            502,
            "upstream connect error\n",
        );
        check(
            send(&c, addr, "GET", "h", "/none", &[]).await,
            503,
            "no healthy upstream\n",
        );
        let start = Instant::now();
        check(
            send(&c, addr, "GET", "h", "/timeout", &[]).await,
            504,
            "upstream request timeout\n",
        );
        assert!(start.elapsed() < Duration::from_secs(2));
        check(
            send(&c, addr, "GET", "h", "/per-try", &[]).await,
            504,
            "upstream request timeout\n",
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn retries_on_listed_codes_and_connect_errors() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let e = Echo::start("e").await;
        let retry = |codes: Vec<u16>, attempts| {
            Some(Retry {
                codes,
                attempts,
                backoff_ms: Some(10),
                ..Retry::default()
            })
        };
        let mut r = rule("r", prefix("/retry"), vec![wb(1, e.backend())]);
        r.action.retry = retry(vec![503], 2);
        let mut few = rule("few", prefix("/few"), vec![wb(1, e.backend())]);
        few.action.retry = retry(vec![503], 1);
        let mut other = rule("other", prefix("/other"), vec![wb(1, e.backend())]);
        other.action.retry = retry(vec![500], 3);
        // One dead endpoint and one live one: connect errors are retried on another pick.
        let mut conn = rule(
            "conn",
            prefix("/conn"),
            vec![wb(1, service("mixed", &[free_addr(), e.addr], None))],
        );
        conn.action.retry = retry(vec![], 5);
        let (_dp, addr) = serve(vec![r, few, other, conn]).await;
        let c = client();
        let g = send(
            &c,
            addr,
            "GET",
            "h",
            "/retry",
            &[("x-echo-fail-times", "2"), ("x-echo-key", "k1")],
        )
        .await;
        assert_eq!(g.status, 200, "two failures then success within 2 retries");
        let g = send(
            &c,
            addr,
            "GET",
            "h",
            "/few",
            &[("x-echo-fail-times", "2"), ("x-echo-key", "k2")],
        )
        .await;
        assert_eq!(g.status, 503, "one retry is not enough");
        let g = send(
            &c,
            addr,
            "GET",
            "h",
            "/other",
            &[("x-echo-fail-times", "1"), ("x-echo-key", "k3")],
        )
        .await;
        assert_eq!(g.status, 503, "503 is not a listed code");
        let before = e.count();
        let g = send_body(
            &c,
            addr,
            "POST",
            "h",
            "/retry",
            &[("x-echo-fail-times", "1"), ("x-echo-key", "k4")],
            "body".into(),
        )
        .await;
        assert_eq!(g.status, 200, "buffered bodies are replayed");
        assert_eq!(e.count() - before, 2);
        assert_eq!(e.seen.lock().unwrap().last().unwrap()["body"], "body");
        for _ in 0..10 {
            assert_eq!(send(&c, addr, "GET", "h", "/conn", &[]).await.status, 200);
        }
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn retries_are_bounded_by_the_request_timeout() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let e = Echo::start("e").await;
        let mut r = rule("r", prefix("/"), vec![wb(1, e.backend())]);
        r.action.retry = Some(Retry {
            codes: vec![503],
            attempts: 100,
            backoff_ms: Some(100),
            ..Retry::default()
        });
        r.action.request_timeout_ms = Some(500);
        let (_dp, addr) = serve(vec![r]).await;
        let start = Instant::now();
        let g = send(
            &client(),
            addr,
            "GET",
            "h",
            "/",
            &[("x-echo-fail-times", "1000"), ("x-echo-key", "k")],
        )
        .await;
        assert_eq!(g.status, 504);
        assert!(start.elapsed() < Duration::from_secs(2));
        assert!(e.count() < 10);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn terminating_endpoints_only_when_nothing_else() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let (ready, term) = (Echo::start("ready").await, Echo::start("term").await);
        let svc = |eps: Vec<Endpoint>| {
            Backend::Service(ServiceBackend {
                name: "ns/s:80".into(),
                namespace: "ns".into(),
                app_protocol: None,
                endpoints: eps,
                tls: None,
            })
        };
        let mixed = svc(vec![
            Endpoint {
                addr: ready.addr,
                terminating: false,
                zone: None,
                for_zones: vec![],
            },
            Endpoint {
                addr: term.addr,
                terminating: true,
                zone: None,
                for_zones: vec![],
            },
        ]);
        let only_term = svc(vec![Endpoint {
            addr: term.addr,
            terminating: true,
            zone: None,
            for_zones: vec![],
        }]);
        let (_dp, addr) = serve(vec![
            rule("a", prefix("/mixed"), vec![wb(1, mixed)]),
            rule("b", prefix("/term"), vec![wb(1, only_term)]),
        ])
        .await;
        let c = client();
        for _ in 0..20 {
            assert_eq!(
                send(&c, addr, "GET", "h", "/mixed", &[]).await.json()["backend"],
                "ready"
            );
        }
        assert_eq!(
            send(&c, addr, "GET", "h", "/term", &[]).await.json()["backend"],
            "term"
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn least_request_spreads_load_over_endpoints() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let (a, b) = (Echo::start("a").await, Echo::start("b").await);
        let r = rule(
            "r",
            prefix("/"),
            vec![wb(1, service("s", &[a.addr, b.addr], None))],
        );
        let (_dp, addr) = serve(vec![r]).await;
        let c = client();
        for _ in 0..100 {
            send(&c, addr, "GET", "h", "/", &[]).await;
        }
        assert!(
            a.count() > 20 && b.count() > 20,
            "{} / {}",
            a.count(),
            b.count()
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn session_persistence_cookie_and_header() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let echos = [
            Echo::start("e0").await,
            Echo::start("e1").await,
            Echo::start("e2").await,
        ];
        let addrs: Vec<_> = echos.iter().map(|e| e.addr).collect();
        let mut ck = rule(
            "c",
            prefix("/cookie"),
            vec![wb(1, service("s", &addrs, None))],
        );
        ck.action.session_persistence = Some(SessionPersistence {
            name: "sticky".into(),
            cookie: true,
            absolute_timeout_s: None,
            permanent: false,
        });
        let mut hd = rule(
            "h",
            prefix("/header"),
            vec![wb(1, service("s", &addrs, None))],
        );
        hd.action.session_persistence = Some(SessionPersistence {
            name: "x-session".into(),
            cookie: false,
            absolute_timeout_s: None,
            permanent: false,
        });
        let (_dp, addr) = serve(vec![ck, hd]).await;
        let c = client();
        let first = send(&c, addr, "GET", "h", "/cookie", &[]).await;
        let set = first
            .header("set-cookie")
            .expect("first response sets the cookie")
            .to_string();
        let token = set.split(';').next().unwrap().to_string();
        for a in &addrs {
            assert!(
                !set.contains(&a.to_string()) && !set.contains("127.0.0.1"),
                "token is opaque: {set}"
            );
        }
        let pinned = first.json()["backend"].as_str().unwrap().to_string();
        for _ in 0..20 {
            let g = send(
                &c,
                addr,
                "GET",
                "h",
                "/cookie",
                &[("cookie", token.as_str())],
            )
            .await;
            assert_eq!(g.json()["backend"], pinned.as_str());
            assert!(g.header("set-cookie").is_none());
        }
        let first = send(&c, addr, "GET", "h", "/header", &[]).await;
        let token = first
            .header("x-session")
            .expect("session header")
            .to_string();
        let pinned = first.json()["backend"].as_str().unwrap().to_string();
        for _ in 0..20 {
            let g = send(
                &c,
                addr,
                "GET",
                "h",
                "/header",
                &[("x-session", token.as_str())],
            )
            .await;
            assert_eq!(g.json()["backend"], pinned.as_str());
        }
        let g = send(
            &c,
            addr,
            "GET",
            "h",
            "/header",
            &[("x-session", "unknown-token")],
        )
        .await;
        assert_eq!(g.status, 200);
        assert!(
            g.header("x-session").is_some(),
            "an unknown token gets a new session"
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn forwarded_headers_and_hop_by_hop() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let e = Echo::start("e").await;
        let (_dp, addr) = serve(vec![rule("r", prefix("/"), vec![wb(1, e.backend())])]).await;
        let g = send(
            &client(),
            addr,
            "GET",
            "front.example",
            "/",
            &[
                ("x-forwarded-for", "6.6.6.6"),
                ("x-forwarded-proto", "https"),
                ("forwarded", "for=6.6.6.6;proto=https"),
                ("x-real-ip", "6.6.6.6"),
                ("true-client-ip", "6.6.6.6"),
                ("x-forwarded-port", "443"),
                ("connection", "x-hop"),
                ("x-hop", "1"),
                ("proxy-connection", "keep-alive"),
            ],
        )
        .await;
        // Every forwarding header from an untrusted client is replaced or dropped.
        assert_eq!(
            g.echoed("forwarded").as_deref(),
            Some("for=127.0.0.1;proto=http;host=\"front.example\"")
        );
        assert_eq!(g.echoed("x-real-ip").as_deref(), Some("127.0.0.1"));
        assert_eq!(g.echoed("true-client-ip"), None);
        assert_eq!(g.echoed("x-forwarded-port"), None);
        assert_eq!(
            g.echoed("x-forwarded-for").as_deref(),
            Some("127.0.0.1"),
            "untrusted XFF is replaced"
        );
        assert_eq!(g.echoed("x-forwarded-proto").as_deref(), Some("http"));
        assert_eq!(
            g.echoed("x-forwarded-host").as_deref(),
            Some("front.example")
        );
        assert_eq!(g.echoed("x-hop"), None);
        assert_eq!(g.echoed("proxy-connection"), None);

        let opts = portcullis_dataplane::Options {
            client_ip: portcullis_dataplane::client_ip::ClientIpDetection {
                trusted_hops: 1,
                ..Default::default()
            },
            ..Default::default()
        };
        let (_dp2, addr2) = serve_with(
            opts,
            vec![listener(
                "gw/l",
                None,
                vec![rule("r", prefix("/"), vec![wb(1, e.backend())])],
            )],
        )
        .await;
        let g = send(
            &client(),
            addr2,
            "GET",
            "h",
            "/",
            &[
                ("x-forwarded-for", "6.6.6.6"),
                ("x-forwarded-proto", "https"),
            ],
        )
        .await;
        assert_eq!(
            g.echoed("x-forwarded-for").as_deref(),
            Some("6.6.6.6, 127.0.0.1")
        );
        // One trusted hop: the client is the rightmost XFF entry.
        assert_eq!(g.echoed("x-real-ip").as_deref(), Some("6.6.6.6"));
        assert_eq!(g.echoed("x-forwarded-proto").as_deref(), Some("https"));
    })
    .await
    .unwrap();
}

/// A backend that accepts connections and never answers; counts connections.
async fn silent_backend() -> (SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let n = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let n2 = n.clone();
    tokio::spawn(async move {
        let mut held = vec![];
        while let Ok((s, _)) = l.accept().await {
            n2.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(s);
        }
    });
    (addr, n)
}

#[tokio::test]
async fn backend_request_timeouts_are_retried() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let e = Echo::start("e").await;
        let (silent, attempts) = silent_backend().await;
        let retry = Some(Retry {
            codes: vec![],
            attempts: 2,
            backoff_ms: None,
            ..Retry::default()
        });
        // Only a silent endpoint: every attempt times out; 1 + 2 retries, then 504.
        let mut dead = rule(
            "dead",
            prefix("/dead"),
            vec![wb(1, service("silent", &[silent], None))],
        );
        dead.action.retry = retry.clone();
        dead.action.backend_request_timeout_ms = Some(150);
        // A silent and a live endpoint: a timed-out attempt is retried on another pick.
        let mut mixed = rule(
            "mixed",
            prefix("/mixed"),
            vec![wb(1, service("mixed", &[silent, e.addr], None))],
        );
        mixed.action.retry = retry;
        mixed.action.backend_request_timeout_ms = Some(150);
        let (_dp, addr) = serve(vec![dead, mixed]).await;
        let c = client();
        let start = Instant::now();
        assert_eq!(send(&c, addr, "GET", "h", "/dead", &[]).await.status, 504);
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "three attempts of 150 ms"
        );
        assert_eq!(
            attempts.load(std::sync::atomic::Ordering::SeqCst),
            3,
            "the first attempt and two retries"
        );
        for _ in 0..10 {
            assert_eq!(send(&c, addr, "GET", "h", "/mixed", &[]).await.status, 200);
        }
    })
    .await
    .unwrap();
}
