//! Prometheus metrics after real traffic over 127.0.0.1: names, labels and
//! values as `/metrics` shows them, and the series budget of a
//! 1,000-route configuration.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use portcullis_ir::*;
use portcullis_obs::http::{Finished, SERIES_PER_ENTRY};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Samples of a scrape: `name{labels}` → value.
fn samples(text: &str) -> BTreeMap<String, f64> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_string(), v.parse().ok()?))
        })
        .collect()
}

/// Fetch `/metrics` from the metrics listener over a real socket.
async fn scrape(addr: std::net::SocketAddr) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nhost: m\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8(out).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text"),
        "{head}"
    );
    assert!(body.trim_end().ends_with("# EOF"), "{body}");
    body.to_string()
}

/// Scrape until `want` holds (the last request of a keep-alive exchange is
/// recorded when its response body is done, which may be just after the
/// client has read it).
async fn scrape_until(
    addr: std::net::SocketAddr,
    want: impl Fn(&BTreeMap<String, f64>) -> bool,
) -> (String, BTreeMap<String, f64>) {
    for _ in 0..100 {
        let text = scrape(addr).await;
        let s = samples(&text);
        if want(&s) {
            return (text, s);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let text = scrape(addr).await;
    panic!("metrics never matched:\n{text}");
}

const RT: &str = r#"gateway="ns/gw-m",listener="http",route="ns/met",backend="ns/met-echo:80""#;

#[tokio::test]
async fn requests_are_counted_by_route_backend_method_and_status_class() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let (maddr, _task) = portcullis_obs::server::serve(([127, 0, 0, 1], 0).into())
            .await
            .unwrap();
        let e = Echo::start("met-echo").await;
        let (_dp, addr) = serve_with(
            Default::default(),
            vec![listener(
                "ns/gw-m/http",
                None,
                vec![rule("met", prefix("/ok"), vec![wb(1, e.backend())])],
            )],
        )
        .await;
        let c = client();
        for _ in 0..3 {
            assert_eq!(send(&c, addr, "GET", "m.example", "/ok", &[]).await.status, 200);
        }
        let posted = send_body(
            &c,
            addr,
            "POST",
            "m.example",
            "/ok/p?secret=1",
            &[],
            Bytes::from_static(b"hello"),
        )
        .await;
        assert_eq!(posted.status, 200);
        let failed = send(&c, addr, "GET", "m.example", "/ok", &[("x-echo-status", "503")]).await;
        assert_eq!(failed.status, 503);
        assert_eq!(send(&c, addr, "GET", "m.example", "/nope", &[]).await.status, 404);

        let get2 = format!(r#"portcullis_http_requests_total{{{RT},method="GET",code="2xx"}}"#);
        let (text, s) = scrape_until(maddr, |s| {
            s.get(&format!(r#"portcullis_http_request_duration_seconds_count{{{RT}}}"#))
                == Some(&5.0)
                && s.get(&get2) == Some(&3.0)
        })
        .await;
        let v = |k: &str| s.get(k).copied().unwrap_or_else(|| panic!("{k} missing in\n{text}"));
        assert_eq!(v(&get2), 3.0);
        assert_eq!(v(&format!(r#"portcullis_http_requests_total{{{RT},method="POST",code="2xx"}}"#)), 1.0);
        assert_eq!(v(&format!(r#"portcullis_http_requests_total{{{RT},method="GET",code="5xx"}}"#)), 1.0);
        // The 404: the listener's entry, without route and backend.
        assert_eq!(
            v(r#"portcullis_http_requests_total{gateway="ns/gw-m",listener="http",route="",backend="",method="GET",code="4xx"}"#),
            1.0
        );
        assert_eq!(v(&format!(r#"portcullis_http_request_bytes_total{{{RT}}}"#)), 5.0);
        let out = v(&format!(r#"portcullis_http_response_bytes_total{{{RT}}}"#));
        let echoed: usize = [posted.body.len(), failed.body.len()].iter().sum();
        assert!(out >= echoed as f64, "{out} < {echoed}");
        assert_eq!(v(&format!(r#"portcullis_http_upstream_duration_seconds_count{{{RT}}}"#)), 5.0);
        assert_eq!(
            v(&format!(r#"portcullis_http_request_duration_seconds_bucket{{le="+Inf",{RT}}}"#)),
            5.0
        );
        assert!(v(&format!(r#"portcullis_http_request_duration_seconds_sum{{{RT}}}"#)) > 0.0);
        let port = format!(r#"port="{addr}",protocol="http""#);
        assert!(v(&format!("portcullis_downstream_connections_total{{{port}}}")) >= 1.0);
        assert!(v(&format!("portcullis_downstream_connections_active{{{port}}}")) >= 1.0);
        assert!(v(r#"portcullis_upstream_connections_total{client="http1"}"#) >= 1.0);
        // Nothing about paths, hosts, queries or clients.
        for leak in ["/ok", "m.example", "secret", "127.0.0.1:"] {
            let hit = text
                .lines()
                .filter(|l| !l.starts_with('#'))
                .filter(|l| !l.contains("port=\""))
                .find(|l| l.contains(leak));
            assert!(hit.is_none(), "{leak} in {hit:?}");
        }
        // Every name follows the conventions.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            assert!(l.starts_with("portcullis_"), "{l}");
        }
    })
    .await
    .expect("test timed out");
}

#[tokio::test]
async fn tcp_sessions_and_bytes_are_counted() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        // A TCP echo backend.
        let backend = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let baddr = backend.local_addr().unwrap();
        let echo = tokio::spawn(async move {
            while let Ok((mut s, _)) = backend.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        let dp = portcullis_dataplane::Dataplane::new(Default::default());
        let addr = apply_port(&dp, |bind| {
            let mut l = listener("ns/gw-tcp/tcp", None, vec![]);
            l.l4_routes.push(L4Route {
                meta: RouteMeta {
                    kind: "TCPRoute".into(),
                    namespace: "ns".into(),
                    name: "tcp-met".into(),
                    creation_timestamp: "2024-01-01T00:00:00Z".into(),
                    rule_index: 0,
                    rule_name: None,
                },
                hostnames: vec![],
                backends: vec![wb(1, service("tcp-echo", &[baddr], None))],
                traffic: None,
            });
            port(bind, PortProtocol::Tcp, vec![l])
        })
        .await;
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(b"ping!").await.unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).await.unwrap();
        drop(s);
        let labels = r#"gateway="ns/gw-tcp",listener="tcp",route="ns/tcp-met",protocol="tcp""#;
        let want = format!(r#"portcullis_l4_bytes_total{{{labels},direction="rx"}}"#);
        let mut ok = false;
        for _ in 0..100 {
            let s = samples(&portcullis_obs::render());
            if s.get(&want) == Some(&5.0) {
                assert_eq!(s[&format!("portcullis_l4_sessions_total{{{labels}}}")], 1.0);
                assert_eq!(
                    s[&format!(r#"portcullis_l4_bytes_total{{{labels},direction="tx"}}"#)],
                    5.0
                );
                assert_eq!(
                    s[&format!("portcullis_l4_sessions_active{{{labels}}}")],
                    0.0
                );
                ok = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(ok, "{}", portcullis_obs::render());
        dp.shutdown().await;
        echo.abort();
    })
    .await
    .expect("test timed out");
}

/// The documented budget (docs/observability.md): at most
/// `SERIES_PER_ENTRY` per (listener, route, backend), per (listener, route)
/// for answers given before a backend was chosen, per listener for
/// unmatched requests and once for requests matching no listener, plus
/// the fixed families.
fn budget(listeners: usize, routes: usize, route_backends: usize, backends: usize) -> usize {
    SERIES_PER_ENTRY * (route_backends + routes + listeners + 1)
        + HEALTH_SERIES_PER_BACKEND * backends
        + FIXED_SERIES
}

/// `portcullis_backend_endpoints{backend,state}`: one per state and backend
/// (no per-endpoint series by default).
const HEALTH_SERIES_PER_BACKEND: usize = 4;

/// Series of the families without route labels, for a handful of ports.
const FIXED_SERIES: usize = 200;

#[tokio::test]
async fn a_thousand_routes_stay_within_the_series_budget() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let e = Echo::start("budget-echo").await;
        let rules: Vec<_> = (0..1000)
            .map(|i| {
                rule(
                    &format!("budget-{i}"),
                    prefix(&format!("/r{i}")),
                    vec![wb(1, e.backend())],
                )
            })
            .collect();
        let (_dp, addr) = serve_with(
            Default::default(),
            vec![listener("ns/gw-budget/http", None, rules)],
        )
        .await;
        // Before any traffic, routes expose nothing (the backend's endpoint
        // states are there: one series per state, whatever the routes).
        let idle = portcullis_obs::render();
        assert!(
            !idle.contains("route=\"ns/budget-"),
            "untouched routes are exposed"
        );
        let health: Vec<_> = idle.lines().filter(|l| l.contains("budget-echo")).collect();
        assert_eq!(health.len(), HEALTH_SERIES_PER_BACKEND, "{health:?}");
        assert!(
            health.contains(
                &r#"portcullis_backend_endpoints{backend="ns/budget-echo:80",state="healthy"} 1"#
            ),
            "{health:?}"
        );
        // Idle routes hold no statistics (at 10,000 routes that was 15 MiB).
        let route_entries = || {
            portcullis_obs::metrics()
                .http
                .entries()
                .iter()
                .filter(|(k, _)| k.route.starts_with("ns/budget-"))
                .count()
        };
        assert_eq!(route_entries(), 0);
        // A real request on every route (a route's entries are made by its
        // first request: one for its backend, one for answers given before
        // a backend was chosen)...
        let c = client();
        for i in 0..1000 {
            let got = send(&c, addr, "GET", "b.example", &format!("/r{i}"), &[]).await;
            assert_eq!(got.status, 200);
        }
        assert_eq!(route_entries(), 2000);
        // ...then the worst case: every entry sees every method class and
        // status class, upstream times, retries, timeouts and mirror errors.
        let mine = portcullis_obs::metrics()
            .http
            .entries()
            .into_iter()
            .filter(|(k, _)| &*k.gateway == "ns/gw-budget");
        for (_, s) in mine {
            for method in 0..8u8 {
                for status in [101, 200, 301, 404, 503] {
                    s.record(&Finished {
                        method,
                        status,
                        bytes_in: 1,
                        bytes_out: 1,
                        duration: Duration::from_millis(3),
                        upstream: Some(Duration::from_millis(2)),
                    });
                }
            }
            s.retry();
            s.timeout();
            s.mirror_error();
        }
        // This config's series (other tests of this binary run alongside),
        // and the fixed ones (no gateway label).
        let count = |text: &str| {
            let lines = text.lines().filter(|l| !l.starts_with('#'));
            let (mut mine, mut fixed) = (0, 0);
            for l in lines {
                if l.contains(r#"gateway="ns/gw-budget""#)
                    || l.contains(r#"backend="ns/budget-echo:80",state="#)
                {
                    mine += 1;
                } else if !l.contains("gateway=") {
                    fixed += 1;
                }
            }
            (mine, fixed)
        };
        let (series, fixed) = count(&portcullis_obs::render());
        let max = budget(1, 1000, 1000, 1);
        assert!(
            series + fixed <= max,
            "{series} + {fixed} series > budget {max}"
        );
        assert!(fixed <= FIXED_SERIES, "{fixed} fixed series");
        assert!(
            series > 1000 * SERIES_PER_ENTRY,
            "the worst case was not reached: {series}"
        );
        // Series grow with routes, not with requests: other paths, queries
        // and hosts add none.
        for i in 0..50 {
            let host = format!("h{i}.example");
            send(&c, addr, "GET", &host, &format!("/r{i}/x?q={i}"), &[]).await;
        }
        let (after, _) = count(&portcullis_obs::render());
        assert_eq!(after, series);
    })
    .await
    .expect("test timed out");
}

/// The sum of the samples of `name` whose labels name `route`.
fn by_route(s: &BTreeMap<String, f64>, name: &str, route: &str) -> f64 {
    let route = format!(r#"route="{route}""#);
    s.iter()
        .filter(|(k, _)| k.starts_with(&format!("{name}{{")) && k.contains(&route))
        .map(|(_, v)| v)
        .sum()
}

/// Retries, timeouts and mirror errors after real traffic: a backend that
/// fails twice and is retried, one too slow for the route's timeout, and a
/// mirror to an address nothing listens on.
#[tokio::test]
async fn retries_timeouts_and_mirror_errors_are_counted() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let (maddr, _task) = portcullis_obs::server::serve(([127, 0, 0, 1], 0).into())
            .await
            .unwrap();
        let e = Echo::start("rtm-echo").await;
        let mut retried = rule("rtm-retried", prefix("/retry"), vec![wb(1, e.backend())]);
        retried.action.retry = Some(Retry {
            codes: vec![503],
            attempts: 3,
            backoff_ms: Some(1),
            ..Retry::default()
        });
        let mut slow = rule("rtm-slow", prefix("/slow"), vec![wb(1, e.backend())]);
        slow.action.request_timeout_ms = Some(200);
        let mut mirrored = rule("rtm-mirrored", prefix("/mirror"), vec![wb(1, e.backend())]);
        mirrored.action.filters = vec![HttpFilter::RequestMirror(Mirror {
            backend: wb(1, service("rtm-dead", &[free_addr()], None)),
            numerator: 1,
            denominator: 1,
        })];
        let (_dp, addr) = serve_with(
            Default::default(),
            vec![listener(
                "ns/gw-rtm/http",
                None,
                vec![retried, slow, mirrored],
            )],
        )
        .await;
        let c = client();
        let ok = send(
            &c,
            addr,
            "GET",
            "r.example",
            "/retry",
            &[("x-echo-fail-times", "2"), ("x-echo-key", "rtm")],
        )
        .await;
        assert_eq!(ok.status, 200, "the third attempt succeeds");
        let late = send(
            &c,
            addr,
            "GET",
            "r.example",
            "/slow",
            &[("x-echo-delay-ms", "3000")],
        )
        .await;
        assert_eq!(late.status, 504);
        assert_eq!(
            send(&c, addr, "GET", "r.example", "/mirror", &[])
                .await
                .status,
            200
        );

        let (text, s) = scrape_until(maddr, |s| {
            by_route(s, "portcullis_http_mirror_errors_total", "ns/rtm-mirrored") >= 1.0
                && by_route(s, "portcullis_http_timeouts_total", "ns/rtm-slow") >= 1.0
        })
        .await;
        let v = |name: &str, route: &str| by_route(&s, name, route);
        assert_eq!(
            v("portcullis_http_retries_total", "ns/rtm-retried"),
            2.0,
            "{text}"
        );
        assert_eq!(
            v("portcullis_http_timeouts_total", "ns/rtm-slow"),
            1.0,
            "{text}"
        );
        assert_eq!(
            v("portcullis_http_mirror_errors_total", "ns/rtm-mirrored"),
            1.0,
            "{text}"
        );
        // Nothing is counted where it did not happen.
        assert_eq!(
            v("portcullis_http_retries_total", "ns/rtm-slow"),
            0.0,
            "{text}"
        );
        assert_eq!(
            v("portcullis_http_timeouts_total", "ns/rtm-retried"),
            0.0,
            "{text}"
        );
        assert_eq!(
            v("portcullis_http_requests_total", "ns/rtm-slow"),
            1.0,
            "one request, answered 504: {text}"
        );
    })
    .await
    .expect("test timed out");
}

/// `portcullis_upstream_connections_active{client}`: up while upstream
/// connections are open (the lean HTTP/1.1 client for the request, hyper
/// for its mirror), back to 0 once the pools close them (idle timeout).
/// Each test runs in its own process (nextest), so the gauges are this
/// test's.
#[tokio::test]
async fn upstream_connections_open_go_up_and_back_down() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let (maddr, _task) = portcullis_obs::server::serve(([127, 0, 0, 1], 0).into())
            .await
            .unwrap();
        let e = Echo::start("conn-echo").await;
        let mut mirrored = rule("conn-mirrored", prefix("/m"), vec![wb(1, e.backend())]);
        mirrored.action.filters = vec![HttpFilter::RequestMirror(Mirror {
            backend: wb(1, e.backend()),
            numerator: 1,
            denominator: 1,
        })];
        let opts = portcullis_dataplane::Options {
            upstream_idle_timeout: Duration::from_secs(1),
            ..Default::default()
        };
        let (_dp, addr) = serve_with(
            opts,
            vec![listener("ns/gw-conn/http", None, vec![mirrored])],
        )
        .await;
        let h1 = r#"portcullis_upstream_connections_active{client="http1"}"#;
        let hyper = r#"portcullis_upstream_connections_active{client="hyper"}"#;
        // Nothing open before the first request (no series yet, or 0).
        let s = samples(&scrape(maddr).await);
        assert!(s.get(h1).is_none_or(|v| *v == 0.0), "{s:?}");
        assert!(s.get(hyper).is_none_or(|v| *v == 0.0), "{s:?}");
        // A slow request (and its mirror, which carries the same headers)
        // keeps both connections open while it is in flight.
        let c = client();
        let slow = tokio::spawn(async move {
            send(
                &c,
                addr,
                "GET",
                "c.example",
                "/m",
                &[("x-echo-delay-ms", "1500")],
            )
            .await
        });
        let (text, s) = scrape_until(maddr, |s| {
            s.get(h1).is_some_and(|v| *v >= 1.0) && s.get(hyper).is_some_and(|v| *v >= 1.0)
        })
        .await;
        assert!(
            text.contains("# TYPE portcullis_upstream_connections_active gauge"),
            "{text}"
        );
        assert!(
            s[r#"portcullis_upstream_connections_total{client="http1"}"#] >= 1.0,
            "{text}"
        );
        assert!(
            s[r#"portcullis_upstream_connections_total{client="hyper"}"#] >= 1.0,
            "{text}"
        );
        assert_eq!(slow.await.unwrap().status, 200);
        // Pooled, then closed by the idle timeout (1 s): both back to 0.
        let mut closed = false;
        for _ in 0..150 {
            let s = samples(&scrape(maddr).await);
            if s.get(h1) == Some(&0.0) && s.get(hyper) == Some(&0.0) {
                closed = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(closed, "connections never closed:\n{}", scrape(maddr).await);
    })
    .await
    .expect("test timed out");
}

/// A TCP listener that accepts and drops connections (an endpoint the
/// active health check finds up), on `addr` when given.
async fn up(
    addr: Option<std::net::SocketAddr>,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.set_reuseaddr(true).unwrap();
    sock.bind(addr.unwrap_or_else(|| ([127, 0, 0, 1], 0).into()))
        .unwrap();
    let l = sock.listen(64).unwrap();
    let a = l.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((s, _)) = l.accept().await {
            drop(s);
        }
    });
    (a, task)
}

/// Active health checks flip `portcullis_backend_endpoints{state}` and,
/// with `--metrics-endpoint-labels`, `portcullis_endpoint_healthy`: an
/// endpoint whose listener goes away becomes unhealthy, and healthy again
/// when it comes back.
#[tokio::test]
async fn a_failing_health_check_flips_the_endpoint_state_series() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let (maddr, _task) = portcullis_obs::server::serve(([127, 0, 0, 1], 0).into())
            .await
            .unwrap();
        let (a, _a_task) = up(None).await;
        let (b, b_task) = up(None).await;
        let mut r = rule("hc", prefix("/"), vec![wb(1, service("hc", &[a, b], None))]);
        r.action.backend_traffic = Some(std::sync::Arc::new(traffic::BackendTraffic {
            active: Some(traffic::ActiveHealth {
                timeout_ms: 1000,
                interval_ms: 100,
                unhealthy_threshold: 2,
                healthy_threshold: 1,
                check: traffic::Check::Tcp {
                    send: None,
                    receive: None,
                },
            }),
            ..Default::default()
        }));
        let opts = portcullis_dataplane::Options {
            metrics_endpoint_labels: true,
            ..Default::default()
        };
        let (_dp, _addr) = serve_with(opts, vec![listener("ns/gw-hc/http", None, vec![r])]).await;
        let state = |st: &str| {
            format!(r#"portcullis_backend_endpoints{{backend="ns/hc:80",state="{st}"}}"#)
        };
        let ep = |e: std::net::SocketAddr| {
            format!(r#"portcullis_endpoint_healthy{{backend="ns/hc:80",endpoint="{e}"}}"#)
        };
        let (text, s) = scrape_until(maddr, |s| s.get(&state("healthy")) == Some(&2.0)).await;
        for st in ["unhealthy", "ejected", "slow_start"] {
            assert_eq!(s.get(&state(st)), Some(&0.0), "{st}: {text}");
        }
        assert_eq!(s.get(&ep(a)), Some(&1.0), "{text}");
        assert_eq!(s.get(&ep(b)), Some(&1.0), "{text}");
        // b's listener goes away: refused twice in a row, b is unhealthy.
        b_task.abort();
        let _ = b_task.await;
        let (text, s) = scrape_until(maddr, |s| s.get(&state("unhealthy")) == Some(&1.0)).await;
        assert_eq!(s.get(&state("healthy")), Some(&1.0), "{text}");
        assert_eq!(s.get(&ep(a)), Some(&1.0), "{text}");
        assert_eq!(s.get(&ep(b)), Some(&0.0), "{text}");
        // Back on the same address: healthy again.
        let (_, _b_again) = up(Some(b)).await;
        let (text, s) = scrape_until(maddr, |s| s.get(&state("healthy")) == Some(&2.0)).await;
        assert_eq!(s.get(&state("unhealthy")), Some(&0.0), "{text}");
        assert_eq!(s.get(&ep(b)), Some(&1.0), "{text}");
    })
    .await
    .expect("test timed out");
}
