//! Hot reload, port add/remove, bind errors and graceful shutdown.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use common::*;
use http_body_util::BodyExt;
use portcullis_dataplane::{Dataplane, Options};
use portcullis_ir::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn kv(k: &str, v: &str) -> (String, String) {
    (k.into(), v.into())
}

/// The i-th edit of a config: weights, filters, matches and extra routes change.
fn edited(addr: std::net::SocketAddr, i: u32, a: &Echo, b: &Echo) -> Arc<Config> {
    let mut main = rule(
        "main",
        prefix("/load"),
        vec![wb(1 + i % 3, a.backend()), wb(1 + (i + 1) % 4, b.backend())],
    );
    main.action.filters = vec![HttpFilter::RequestHeaderModifier(HeaderModifier {
        set: vec![kv("x-edit", &i.to_string())],
        ..Default::default()
    })];
    let mut rules = vec![main];
    if i.is_multiple_of(2) {
        let mut hm = rule("hm", prefix("/load"), vec![wb(1, a.backend())]);
        hm.matches.headers = vec![ValueMatch {
            name: "x-never".into(),
            value: StringMatch::Exact(i.to_string()),
        }];
        rules.push(hm);
    }
    for j in 0..(i % 5) {
        rules.push(rule(
            &format!("extra{j}"),
            prefix(&format!("/extra{j}")),
            vec![wb(1, b.backend())],
        ));
    }
    config(addr, vec![listener("gw/l", None, rules)])
}

#[tokio::test]
async fn hot_reload_under_load_has_zero_failures() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let (a, b) = (Echo::start("a").await, Echo::start("b").await);
        let (dp, addr) = serve(vec![rule(
            "main",
            prefix("/load"),
            vec![wb(1, a.backend())],
        )])
        .await;
        let stop = Arc::new(AtomicBool::new(false));
        let (ok, failed) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
        let mut clients = Vec::new();
        for n in 0..8u32 {
            let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
            clients.push(tokio::spawn(async move {
                let c = client();
                while !stop.load(Ordering::Relaxed) {
                    let g = if n.is_multiple_of(2) {
                        send(&c, addr, "GET", "h", "/load/x", &[]).await
                    } else {
                        send_body(&c, addr, "POST", "h", "/load", &[], "data".into()).await
                    };
                    if g.status == 200 {
                        ok.fetch_add(1, Ordering::Relaxed)
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed)
                    };
                }
            }));
        }
        let start = Instant::now();
        for i in 0..20 {
            tokio::time::sleep(Duration::from_millis(140)).await;
            let report = dp.apply(edited(addr, i, &a, &b)).await;
            assert!(report.bind_errors.is_empty());
        }
        tokio::time::sleep(Duration::from_secs(3).saturating_sub(start.elapsed())).await;
        stop.store(true, Ordering::Relaxed);
        for c in clients {
            c.await.unwrap();
        }
        let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
        assert_eq!(failed, 0, "{failed} failed of {}", ok + failed);
        assert!(ok > 100, "only {ok} requests");
        // The last edit is live.
        let g = get(addr, "h", "/load").await;
        assert_eq!(g.echoed("x-edit").as_deref(), Some("19"));
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn websocket_and_stream_survive_100_applies() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let e = Echo::start("e").await;
        let base = || vec![rule("r", prefix("/"), vec![wb(1, e.backend())])];
        let (dp, addr) = serve(base()).await;

        // WebSocket.
        let mut ws = TcpStream::connect(addr).await.unwrap();
        ws.write_all(
            b"GET /ws HTTP/1.1\r\nHost: h\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
        )
        .await
        .unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            assert!(ws.read(&mut byte).await.unwrap() > 0);
            head.push(byte[0]);
        }
        assert!(head.starts_with(b"HTTP/1.1 101"));

        // A slow streaming response: 30 chunks, 100 ms apart.
        let c = client();
        let req = ::http::Request::builder()
            .uri(format!("http://{addr}/stream"))
            .header("host", "h")
            .header("x-echo-stream", "30")
            .body(http_body_util::Full::new(bytes::Bytes::new()))
            .unwrap();
        let resp = c.request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        let stream =
            tokio::spawn(async move { resp.into_body().collect().await.map(|b| b.to_bytes()) });

        for i in 0..100u32 {
            let mut rules = base();
            rules.push(rule(
                &format!("u{i}"),
                prefix(&format!("/unrelated{i}")),
                vec![wb(1, e.backend())],
            ));
            dp.apply(config(addr, vec![listener("gw/l", None, rules)]))
                .await;
            if i.is_multiple_of(20) {
                let msg = format!("ping {i}");
                ws.write_all(msg.as_bytes()).await.unwrap();
                let mut buf = vec![0u8; msg.len()];
                tokio::time::timeout(Duration::from_secs(5), ws.read_exact(&mut buf))
                    .await
                    .unwrap()
                    .unwrap();
                assert_eq!(buf, msg.as_bytes());
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        ws.write_all(b"still here").await.unwrap();
        let mut buf = [0u8; 10];
        tokio::time::timeout(Duration::from_secs(5), ws.read_exact(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf, b"still here");
        let body = stream.await.unwrap().expect("stream was cut");
        let text = String::from_utf8(body.to_vec()).unwrap();
        assert_eq!(text.lines().count(), 30, "{text}");
        assert!(text.ends_with("chunk29\n"));
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn new_route_goes_404_to_200_never_5xx() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let e = Echo::start("e").await;
        let (dp, addr) = serve(vec![rule("old", prefix("/old"), vec![wb(1, e.backend())])]).await;
        let poller = tokio::spawn(async move {
            let c = client();
            let mut statuses = Vec::new();
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(2) {
                let s = send(&c, addr, "GET", "h", "/new", &[]).await.status;
                statuses.push(s);
                if s == 200 && statuses.iter().filter(|s| **s == 200).count() > 20 {
                    break;
                }
            }
            statuses
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let rules = vec![
            rule("old", prefix("/old"), vec![wb(1, e.backend())]),
            rule("new", prefix("/new"), vec![wb(1, e.backend())]),
        ];
        dp.apply(config(addr, vec![listener("gw/l", None, rules)]))
            .await;
        let statuses = poller.await.unwrap();
        let first_ok = statuses
            .iter()
            .position(|s| *s == 200)
            .expect("route never became live");
        assert!(first_ok > 0, "route was live before apply");
        assert!(
            statuses[..first_ok].iter().all(|s| *s == 404),
            "{statuses:?}"
        );
        assert!(
            statuses[first_ok..].iter().all(|s| *s == 200),
            "{statuses:?}"
        );
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn identical_config_is_a_noop_and_bind_errors_are_reported() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let e = Echo::start("e").await;
        init_tracing();
        let dp = Dataplane::new(Options::default());
        let addr = free_addr();
        let cfg = config(
            addr,
            vec![listener(
                "gw/l",
                None,
                vec![rule("r", prefix("/"), vec![wb(1, e.backend())])],
            )],
        );
        assert!(dp.apply(cfg.clone()).await.bind_errors.is_empty());
        // A keep-alive connection stays usable across an identical apply.
        let c = client();
        assert_eq!(send(&c, addr, "GET", "h", "/", &[]).await.status, 200);
        let same = Arc::new((*cfg).clone());
        assert!(dp.apply(same).await.bind_errors.is_empty());
        assert_eq!(send(&c, addr, "GET", "h", "/", &[]).await.status, 200);

        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let busy = taken.local_addr().unwrap();
        let mut two = (*cfg).clone();
        two.ports.push(Port {
            bind: busy,
            protocol: PortProtocol::Http,
            listeners: cfg.ports[0].listeners.clone(),
            client: None,
        });
        let report = dp.apply(Arc::new(two)).await;
        assert_eq!(
            report.bind_errors.keys().copied().collect::<Vec<_>>(),
            vec![busy]
        );
        assert!(
            report.bind_errors[&busy].to_lowercase().contains("in use"),
            "{:?}",
            report.bind_errors
        );
        assert_eq!(
            get(addr, "h", "/").await.status,
            200,
            "the good port keeps serving"
        );
        dp.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn removed_port_drains_in_flight_and_refuses_new_connections() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let slow = Echo::start_slow("slow", 800).await;
        let opts = Options {
            drain_timeout: Duration::from_secs(5),
            ..Default::default()
        };
        let (dp, a) = serve_with(
            opts,
            vec![listener(
                "gw/l",
                None,
                vec![rule("r", prefix("/"), vec![wb(1, slow.backend())])],
            )],
        )
        .await;
        let inflight = tokio::spawn(async move { get(a, "h", "/").await.status });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let b = free_addr();
        let report = dp
            .apply(config(
                b,
                vec![listener(
                    "gw/l",
                    None,
                    vec![rule("r", prefix("/"), vec![wb(1, slow.backend())])],
                )],
            ))
            .await;
        assert!(report.bind_errors.is_empty());
        assert!(
            TcpStream::connect(a).await.is_err(),
            "removed port still accepts"
        );
        assert_eq!(
            inflight.await.unwrap(),
            200,
            "in-flight request on a removed port finishes"
        );
        assert_eq!(get(b, "h", "/").await.status, 200);
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn graceful_shutdown_finishes_in_flight_requests() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let slow = Echo::start_slow("slow", 1000).await;
        let opts = Options {
            drain_timeout: Duration::from_secs(5),
            ..Default::default()
        };
        let (dp, addr) = serve_with(
            opts,
            vec![listener(
                "gw/l",
                None,
                vec![rule("r", prefix("/"), vec![wb(1, slow.backend())])],
            )],
        )
        .await;
        // An idle keep-alive connection, which shutdown must close.
        let mut idle = TcpStream::connect(addr).await.unwrap();
        let inflight = tokio::spawn(async move { get(addr, "h", "/").await.status });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let start = Instant::now();
        dp.shutdown().await;
        assert_eq!(inflight.await.unwrap(), 200);
        assert!(
            start.elapsed() < Duration::from_secs(4),
            "shutdown waited {:?}",
            start.elapsed()
        );
        assert!(
            TcpStream::connect(addr).await.is_err(),
            "still accepting after shutdown"
        );
        let mut buf = [0u8; 16];
        let n = tokio::time::timeout(Duration::from_secs(2), idle.read(&mut buf))
            .await
            .unwrap()
            .unwrap_or(0);
        assert_eq!(n, 0, "idle connection closed by shutdown");
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn shutdown_force_closes_after_the_deadline() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let slow = Echo::start_slow("slow", 10_000).await;
        let opts = Options {
            drain_timeout: Duration::from_millis(500),
            ..Default::default()
        };
        let (dp, addr) = serve_with(
            opts,
            vec![listener(
                "gw/l",
                None,
                vec![rule("r", prefix("/"), vec![wb(1, slow.backend())])],
            )],
        )
        .await;
        let inflight = tokio::spawn(async move {
            let c = client();
            let req = ::http::Request::builder()
                .uri(format!("http://{addr}/"))
                .header("host", "h")
                .body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap();
            c.request(req).await.is_err()
        });
        tokio::time::sleep(Duration::from_millis(200)).await;
        let start = Instant::now();
        dp.shutdown().await;
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "shutdown took {:?}",
            start.elapsed()
        );
        assert!(
            inflight.await.unwrap(),
            "the stuck request was cut at the deadline"
        );
    })
    .await
    .unwrap();
}
