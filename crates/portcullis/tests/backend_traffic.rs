//! BackendTrafficPolicy backends through `portcullis run`: load balancing,
//! consistent hashing, outlier detection and panic mode, the circuit breaker
//! and retries, against backends on 127.0.0.N that the test breaks and heals.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicU64, Ordering};
use std::time::Duration;

use common::{free_addr, free_port, start, wait_for};

/// A backend on 127.0.0.`n`:`port` answering `status` with its name as the
/// body, after `delay_ms`.
struct Backend {
    name: String,
    status: Arc<AtomicU16>,
    delay_ms: Arc<AtomicU64>,
}

impl Backend {
    fn start(n: u8, port: u16) -> Backend {
        let l = TcpListener::bind(("127.0.0.".to_string() + &n.to_string(), port)).unwrap();
        let b = Backend {
            name: format!("b{n}"),
            status: Arc::new(AtomicU16::new(200)),
            delay_ms: Arc::default(),
        };
        let (name, status, delay) = (b.name.clone(), b.status.clone(), b.delay_ms.clone());
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                let (name, status, delay) = (name.clone(), status.clone(), delay.clone());
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 8192];
                    let mut acc = Vec::new();
                    loop {
                        let Ok(n) = s.read(&mut buf) else { return };
                        if n == 0 {
                            return;
                        }
                        acc.extend_from_slice(&buf[..n]);
                        while let Some(end) = acc.windows(4).position(|w| w == b"\r\n\r\n") {
                            acc.drain(..end + 4);
                            std::thread::sleep(Duration::from_millis(
                                delay.load(Ordering::Relaxed),
                            ));
                            let st = status.load(Ordering::Relaxed);
                            let resp = format!(
                                "HTTP/1.1 {st} X\r\ncontent-length: {}\r\n\r\n{name}",
                                name.len()
                            );
                            if s.write_all(resp.as_bytes()).is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        b
    }
}

/// One request; (status, body, whole answer).
fn request(addr: SocketAddr, path: &str, headers: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: h\r\nconnection: close\r\n{headers}\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    (status, body, out)
}

/// Gateway on `port`, Service `svc` with endpoints 127.0.0.2..=`n+1` on
/// `bport`, one HTTPRoute per `(name, path)`, and the policies.
fn config(port: u16, bport: u16, n: u8, routes: &[(&str, &str)], policies: &str) -> String {
    let eps: Vec<String> = (2..n + 2).map(|i| format!("\"127.0.0.{i}\"")).collect();
    let mut y = format!(
        r#"apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {{name: portcullis}}
spec: {{controllerName: portcullis.dev/gateway-controller}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {{name: gw, namespace: default}}
spec:
  gatewayClassName: portcullis
  addresses: [{{type: IPAddress, value: 127.0.0.1}}]
  listeners: [{{name: http, port: {port}, protocol: HTTP}}]
---
apiVersion: v1
kind: Service
metadata: {{name: svc, namespace: default}}
spec:
  ports: [{{name: http, port: 80}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: svc-1, namespace: default, labels: {{kubernetes.io/service-name: svc}}}}
addressType: IPv4
ports: [{{name: http, port: {bport}}}]
endpoints: [{{addresses: [{eps}], conditions: {{ready: true}}}}]
"#,
        eps = eps.join(", ")
    );
    for (name, path) in routes {
        y.push_str(&format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  parentRefs: [{{name: gw}}]\n  rules:\n  - matches: [{{path: {{type: PathPrefix, value: {path}}}}}]\n    backendRefs: [{{name: svc, port: 80}}]\n"
        ));
    }
    y.push_str(policies);
    y
}

fn policy(name: &str, route: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: portcullis.dev/v1alpha1\nkind: BackendTrafficPolicy\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: {route}}}]\n{spec}"
    )
}

struct Env {
    gw: SocketAddr,
    backends: Vec<Backend>,
    _p: common::Proc,
    _dir: tempfile::TempDir,
}

fn env(n: u8, routes: &[(&str, &str)], policies: &str) -> Env {
    let bport = free_port();
    let backends: Vec<Backend> = (2..n + 2).map(|i| Backend::start(i, bport)).collect();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("gw.yaml"),
        config(port, bport, n, routes, policies),
    )
    .unwrap();
    let p = start(dir.path(), free_addr(), &[]);
    let gw: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_for("the routes", Duration::from_secs(10), || {
        routes
            .iter()
            .all(|(_, path)| request(gw, path, "").0 == 200)
    });
    Env {
        gw,
        backends,
        _p: p,
        _dir: dir,
    }
}

fn tally(e: &Env, path: &str, headers: &str, n: usize) -> HashMap<String, usize> {
    let mut m = HashMap::new();
    for _ in 0..n {
        let (s, body, a) = request(e.gw, path, headers);
        assert!(matches!(s, 200 | 500 | 503), "{a}");
        *m.entry(body).or_insert(0) += 1;
    }
    m
}

#[test]
fn round_robin_takes_turns_and_consistent_hash_sticks_and_moves_few_keys() {
    let policies = policy("rr", "rr", "  loadBalancer: {type: RoundRobin}\n")
        + &policy(
            "by-user",
            "hash",
            "  loadBalancer:\n    type: ConsistentHash\n    consistentHash: {type: Header, header: {name: x-user}}\n",
        )
        + &policy(
            "by-cookie",
            "cookie",
            "  loadBalancer:\n    type: ConsistentHash\n    consistentHash: {type: Cookie, cookie: {name: lb, ttl: 1h}}\n",
        );
    let e = env(
        3,
        &[("rr", "/rr"), ("hash", "/hash"), ("cookie", "/cookie")],
        &policies,
    );
    let t = tally(&e, "/rr", "", 30);
    assert_eq!(t.len(), 3, "{t:?}");
    assert!(t.values().all(|c| *c == 10), "round robin: {t:?}");

    let mut owner = HashMap::new();
    for u in 0..30 {
        let h = format!("x-user: user-{u}\r\n");
        let first = request(e.gw, "/hash", &h).1;
        for _ in 0..3 {
            assert_eq!(request(e.gw, "/hash", &h).1, first, "user-{u} sticks");
        }
        owner.insert(u, first);
    }
    let used: std::collections::HashSet<_> = owner.values().collect();
    assert_eq!(used.len(), 3, "30 users spread over 3 endpoints: {owner:?}");

    let (s, first, a) = request(e.gw, "/cookie", "");
    assert_eq!(s, 200);
    let set = a
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie: lb="))
        .unwrap_or_else(|| panic!("a generated cookie: {a}"));
    assert!(
        set.contains("Max-Age=3600") && set.contains("HttpOnly"),
        "{set}"
    );
    let value = set.split_once("lb=").unwrap().1.split(';').next().unwrap();
    let cookie = format!("cookie: other=1; lb={value}\r\n");
    for _ in 0..5 {
        let (_, body, a) = request(e.gw, "/cookie", &cookie);
        assert_eq!(
            body, first,
            "the generated cookie names the endpoint of the first answer"
        );
        assert!(!a.to_ascii_lowercase().contains("set-cookie"), "{a}");
    }
}

#[test]
fn outlier_detection_ejects_a_failing_endpoint_heals_it_and_panics_when_all_fail() {
    let spec = "  healthCheck:\n    passive: {consecutive5XxErrors: 2, baseEjectionTime: 2s, interval: 1s, maxEjectionPercent: 100}\n";
    let e = env(3, &[("r", "/r")], &policy("eject", "r", spec));
    e.backends[0].status.store(503, Ordering::Relaxed);
    // Until b2 has answered 503 twice it is still chosen.
    wait_for("b2 ejected", Duration::from_secs(10), || {
        let t = tally(&e, "/r", "", 20);
        !t.contains_key("b2")
    });
    let t = tally(&e, "/r", "", 30);
    assert!(
        !t.contains_key("b2"),
        "an ejected endpoint gets no traffic: {t:?}"
    );
    // Healed: back in service once the ejection (2 s × ejections) is over.
    e.backends[0].status.store(200, Ordering::Relaxed);
    wait_for("b2 back", Duration::from_secs(20), || {
        tally(&e, "/r", "", 20).contains_key("b2")
    });
    // Every endpoint failing: all ejected, and traffic is spread over all of
    // them (panic mode), not refused by the gateway.
    for b in &e.backends {
        b.status.store(503, Ordering::Relaxed);
    }
    let _ = tally(&e, "/r", "", 40);
    let t = tally(&e, "/r", "", 60);
    assert_eq!(t.len(), 3, "panic mode spreads over every endpoint: {t:?}");
    assert!(
        t.keys().all(|k| k.starts_with('b')),
        "answers come from the backends: {t:?}"
    );
}

#[test]
fn the_circuit_breaker_fails_fast_and_retries_go_to_another_endpoint() {
    let policies = policy(
        "cb",
        "slow",
        "  loadBalancer: {type: RoundRobin}\n  circuitBreaker: {maxParallelRequests: 2}\n",
    ) + &policy(
        "retry",
        "retry",
        "  loadBalancer: {type: RoundRobin}\n  retry:\n    numRetries: 2\n    retryOn: {triggers: [retriable-status-codes], httpStatusCodes: [503]}\n    perRetry: {backOff: {baseInterval: 10ms, maxInterval: 50ms}}\n",
    );
    let e = env(2, &[("slow", "/slow"), ("retry", "/retry")], &policies);
    for b in &e.backends {
        b.delay_ms.store(800, Ordering::Relaxed);
    }
    let gw = e.gw;
    let started = std::time::Instant::now();
    let answers: Vec<(u16, String, Duration)> = (0..6)
        .map(|_| {
            std::thread::spawn(move || {
                let t = std::time::Instant::now();
                let (s, body, _) = request(gw, "/slow", "");
                (s, body, t.elapsed())
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().unwrap())
        .collect();
    assert!(started.elapsed() < Duration::from_secs(5));
    let ok = answers.iter().filter(|a| a.0 == 200).count();
    let fast_503 = answers
        .iter()
        .filter(|a| a.0 == 503 && a.1 == "upstream overflow\n" && a.2 < Duration::from_millis(600))
        .count();
    assert_eq!((ok, fast_503), (2, 4), "{answers:?}");
    for b in &e.backends {
        b.delay_ms.store(0, Ordering::Relaxed);
    }
    // One endpoint answers 503: a retry goes to the other, so every request succeeds.
    e.backends[0].status.store(503, Ordering::Relaxed);
    for _ in 0..10 {
        let (s, body, a) = request(e.gw, "/retry", "");
        assert_eq!((s, body.as_str()), (200, "b3"), "{a}");
    }
}

#[test]
fn active_health_checks_take_an_unhealthy_endpoint_out_and_bring_it_back() {
    let policies = policy(
        "http-check",
        "http",
        "  healthCheck:\n    active:\n      type: HTTP\n      interval: 100ms\n      timeout: 500ms\n      unhealthyThreshold: 2\n      healthyThreshold: 1\n      http: {path: /healthz, expectedStatuses: [200], expectedResponse: {type: Text, text: b}}\n",
    ) + &policy(
        "tcp-check",
        "tcp",
        "  healthCheck:\n    active:\n      type: TCP\n      interval: 100ms\n      unhealthyThreshold: 2\n      tcp:\n        send: {type: Text, text: \"GET /ping HTTP/1.1\\r\\nhost: x\\r\\n\\r\\n\"}\n        receive: {type: Binary, binary: MjAwIFg=}\n",
    );
    let e = env(3, &[("http", "/http"), ("tcp", "/tcp")], &policies);
    e.backends[1].status.store(500, Ordering::Relaxed);
    for path in ["/http", "/tcp"] {
        // A TCP probe of b3 fails only at its timeout (1 s by default: it
        // waits for bytes that never come), so b3 stays healthy for about 2 s
        // while this loop tallies. The default balancer picks at random: a
        // tally of 20 missing a healthy b3 ((2/3)^20 = 3e-4) passed once in a
        // loaded run; of 60, 3e-11.
        wait_for("b3 unhealthy", Duration::from_secs(10), || {
            !tally(&e, path, "", 60).contains_key("b3")
        });
        let t = tally(&e, path, "", 30);
        assert!(
            !t.contains_key("b3"),
            "{path}: an unhealthy endpoint gets no traffic: {t:?}"
        );
        assert_eq!(t.len(), 2, "{t:?}");
    }
    e.backends[1].status.store(200, Ordering::Relaxed);
    for path in ["/http", "/tcp"] {
        wait_for("b3 healthy again", Duration::from_secs(10), || {
            tally(&e, path, "", 30).contains_key("b3")
        });
    }
    // All unhealthy: panic mode spreads the traffic over all of them.
    for b in &e.backends {
        b.status.store(500, Ordering::Relaxed);
    }
    std::thread::sleep(Duration::from_millis(800));
    let t = tally(&e, "/http", "", 60);
    assert_eq!(t.len(), 3, "panic mode: {t:?}");
}

#[test]
fn faults_are_injected_and_responses_overridden() {
    let policies = policy(
        "abort",
        "abort",
        "  faultInjection:\n    abort: {httpStatus: 418}\n",
    ) + &policy(
        "delay",
        "delay",
        "  faultInjection:\n    delay: {fixedDelay: 400ms, percentage: 100}\n",
    ) + &policy(
        "override",
        "override",
        "  responseOverride:\n  - match: {statusCodes: [{type: Range, range: {start: 500, end: 599}}]}\n    response: {contentType: text/html, statusCode: 503, body: {type: Inline, inline: \"<p>sorry</p>\"}}\n  - match: {statusCodes: [{value: 404}]}\n    response: {body: {inline: nothing here}}\n",
    );
    let e = env(
        1,
        &[
            ("abort", "/abort"),
            ("delay", "/delay"),
            ("override", "/override"),
        ],
        "",
    );
    // The policies arrive after the routes serve: a reload.
    let dir = e._dir.path();
    let yaml = std::fs::read_to_string(dir.join("gw.yaml")).unwrap();
    std::fs::write(dir.join("gw.yaml"), yaml + &policies).unwrap();
    wait_for("the abort fault", Duration::from_secs(10), || {
        request(e.gw, "/abort", "").0 == 418
    });
    let (_, body, a) = request(e.gw, "/abort", "");
    assert_eq!(body, "fault filter abort\n", "{a}");
    let t = std::time::Instant::now();
    let (s, body, _) = request(e.gw, "/delay", "");
    assert_eq!((s, body.as_str()), (200, "b2"));
    assert!(
        t.elapsed() >= Duration::from_millis(400),
        "{:?}",
        t.elapsed()
    );
    assert_eq!(
        request(e.gw, "/override", "").0,
        200,
        "2xx is not overridden"
    );
    e.backends[0].status.store(502, Ordering::Relaxed);
    let (s, body, a) = request(e.gw, "/override", "");
    assert_eq!((s, body.as_str()), (503, "<p>sorry</p>"), "{a}");
    assert!(
        a.to_ascii_lowercase().contains("content-type: text/html"),
        "{a}"
    );
    e.backends[0].status.store(404, Ordering::Relaxed);
    let (s, body, _) = request(e.gw, "/override", "");
    assert_eq!((s, body.as_str()), (404, "nothing here"));
}
