//! BackendTrafficPolicy rate limits through `portcullis run`: real processes,
//! real sockets on 127.0.0.1, and for global limits a real `redis-server`
//! (Debian's package) started by the test on a free loopback port and stopped
//! by PID.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Proc, Recorder, free_addr, free_port, gateway_and_service, get, start, wait_for};

/// One request with extra header lines; (status, whole answer).
fn request(addr: SocketAddr, path: &str, headers: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
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
    (status, out)
}

/// The value of response header `name` (lower-case) in `answer`.
fn header(answer: &str, name: &str) -> Option<String> {
    answer.split("\r\n\r\n").next()?.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

fn routes(paths: &[&str]) -> String {
    paths
        .iter()
        .map(|p| {
            format!(
                "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: r{n}, namespace: default}}\nspec:\n  parentRefs: [{{name: gw}}]\n  rules:\n  - matches: [{{path: {{type: PathPrefix, value: /{p}}}}}]\n    backendRefs: [{{name: svc, port: 80}}]\n",
                n = p,
            )
        })
        .collect()
}

fn write(dir: &Path, yaml: &str) {
    std::fs::write(dir.join("gateway.yaml"), yaml).unwrap();
}

/// The sum of `portcullis_rate_limit_decisions_total` samples with these label pairs.
fn decisions(admin: SocketAddr, labels: &[&str]) -> u64 {
    let (_, body) = get(admin, "admin", "/metrics").unwrap();
    body.lines()
        .filter(|l| l.starts_with("portcullis_rate_limit_decisions_total{"))
        .filter(|l| labels.iter().all(|x| l.contains(x)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

#[test]
fn local_limits_refuse_past_the_bucket_per_route_rule_and_per_distinct_value() {
    let backend = Recorder::start();
    let port = free_port();
    let admin = free_addr();
    let dir = tempfile::tempdir().unwrap();
    let base = format!(
        "{}{}",
        gateway_and_service(port, backend.addr),
        routes(&["a", "b", "users", "shadow"])
    );
    let policies = r#"---
apiVersion: portcullis.dev/v1alpha1
kind: BackendTrafficPolicy
metadata: {name: per-route, namespace: default}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: gw}]
  rateLimit:
    local:
      rules:
      - limit: {requests: 3, unit: Hour}
---
apiVersion: portcullis.dev/v1alpha1
kind: BackendTrafficPolicy
metadata: {name: per-user, namespace: default}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: rusers}]
  rateLimit:
    local:
      rules:
      - clientSelectors: [{headers: [{name: x-user, type: Distinct}]}]
        limit: {requests: 2, unit: Hour}
      - clientSelectors: [{methods: [{value: GET}], headers: [{name: x-plan, value: gold}]}]
        limit: {requests: 10, unit: Hour}
        cost: {request: {from: Number, number: 4}}
---
apiVersion: portcullis.dev/v1alpha1
kind: BackendTrafficPolicy
metadata: {name: shadow, namespace: default}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: HTTPRoute, name: rshadow}]
  rateLimit:
    local:
      rules:
      - limit: {requests: 1, unit: Hour}
        shadowMode: true
"#;
    write(dir.path(), &format!("{base}{policies}"));
    let _p = start(dir.path(), admin, &[]);
    let gw: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    wait_for("route /a", Duration::from_secs(10), || {
        request(gw, "/a", "").0 == 200
    });
    // The Gateway-wide rule: 3 per hour for each route rule. One went to the wait.
    for left in [1, 0] {
        let (s, a) = request(gw, "/a", "");
        assert_eq!(s, 200, "{a}");
        assert_eq!(header(&a, "ratelimit-limit").as_deref(), Some("3"));
        assert_eq!(header(&a, "ratelimit-remaining"), Some(left.to_string()));
    }
    let (s, a) = request(gw, "/a", "");
    assert_eq!(s, 429, "{a}");
    let retry: u64 = header(&a, "retry-after").unwrap().parse().unwrap();
    assert!(
        (1100..=1200).contains(&retry),
        "one token per 1200 s: {retry}"
    );
    assert_eq!(header(&a, "ratelimit-remaining").as_deref(), Some("0"));
    assert!(a.ends_with("too many requests\n"), "{a}");
    // Another route rule has its own bucket.
    for _ in 0..3 {
        assert_eq!(request(gw, "/b", "").0, 200);
    }
    assert_eq!(request(gw, "/b", "").0, 429);

    // Distinct: one bucket per x-user value; no x-user, no limit from that rule.
    for _ in 0..2 {
        assert_eq!(request(gw, "/users", "x-user: ann\r\n").0, 200);
    }
    assert_eq!(request(gw, "/users", "x-user: ann\r\n").0, 429);
    assert_eq!(request(gw, "/users", "x-user: bob\r\n").0, 200);
    for _ in 0..5 {
        assert_eq!(request(gw, "/users", "").0, 200);
    }
    // Cost: 4 of 10 per request, so two pass and the third does not.
    for want in [200, 200, 429] {
        assert_eq!(request(gw, "/users", "x-plan: gold\r\n").0, want);
    }
    // Shadow mode: over the limit, never refused, but counted.
    for _ in 0..3 {
        assert_eq!(request(gw, "/shadow", "").0, 200);
    }
    assert_eq!(
        decisions(
            admin,
            &["policy=\"default/shadow\"", "outcome=\"shadow_limited\""]
        ),
        2
    );
    assert_eq!(
        decisions(
            admin,
            &["policy=\"default/per-route\"", "outcome=\"limited\""]
        ),
        2
    );

    // A reload (an unrelated change) keeps every bucket: /a stays refused.
    write(dir.path(), &format!("{base}{}{policies}", routes(&["c"])));
    wait_for("route /c", Duration::from_secs(10), || {
        request(gw, "/c", "").0 == 200
    });
    assert_eq!(request(gw, "/a", "").0, 429, "a reload refills no bucket");
    // A policy removed: the limit is gone.
    write(dir.path(), &base);
    wait_for("/a unlimited", Duration::from_secs(10), || {
        request(gw, "/a", "").0 == 200
    });
}

/// `redis-server` on a free loopback port, no persistence; stopped by PID.
fn redis() -> (Proc, u16) {
    let port = free_port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect(
            "redis-server (Debian package redis-server) is needed for the global rate-limit test",
        );
    let p = Proc(child);
    wait_for("redis-server", Duration::from_secs(10), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    (p, port)
}

#[test]
fn global_limits_are_shared_by_two_gateways_through_redis_and_fail_open_or_closed() {
    let (mut redis, rport) = redis();
    let url = format!("redis://127.0.0.1:{rport}");
    let backend = Recorder::start();
    let policy = r#"---
apiVersion: portcullis.dev/v1alpha1
kind: BackendTrafficPolicy
metadata: {name: global, namespace: default}
spec:
  targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: gw}]
  rateLimit:
    global:
      rules:
      - clientSelectors: [{sourceCIDR: {type: Distinct, value: 127.0.0.0/8}}]
        limit: {requests: 10, unit: Hour}
"#;
    let mut gws = vec![];
    let mut procs = vec![];
    let mut admins = vec![];
    let mut dirs = vec![];
    for fail in ["", "--rate-limit-fail-closed"] {
        let port = free_port();
        let admin = free_addr();
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            &format!(
                "{}{}{policy}",
                gateway_and_service(port, backend.addr),
                routes(&["api"])
            ),
        );
        let mut extra = vec!["--rate-limit-redis", url.as_str()];
        if !fail.is_empty() {
            extra.push(fail);
        }
        procs.push(start(dir.path(), admin, &extra));
        let gw: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        wait_for("route /api", Duration::from_secs(10), || {
            get(gw, "h", "/nothing").is_some_and(|(s, _)| s == 404)
        });
        gws.push(gw);
        admins.push(admin);
        dirs.push(dir);
    }
    // 16 requests alternating between the two gateways: together they admit
    // exactly the limit, 10.
    let mut admitted = 0;
    let mut refused = 0;
    for i in 0..16 {
        let (s, a) = request(gws[i % 2], "/api", "");
        match s {
            200 => admitted += 1,
            429 => {
                refused += 1;
                assert_eq!(header(&a, "ratelimit-limit").as_deref(), Some("10"));
                assert!(header(&a, "retry-after").is_some(), "{a}");
            }
            other => panic!("unexpected {other}: {a}"),
        }
    }
    assert_eq!((admitted, refused), (10, 6));
    let limited: u64 = admins
        .iter()
        .map(|a| decisions(*a, &["scope=\"global\"", "outcome=\"limited\""]))
        .sum();
    assert_eq!(limited, 6);

    // Redis goes away: the first gateway fails open (and counts it), the
    // second, started with --rate-limit-fail-closed, answers 503.
    redis.0.kill().unwrap();
    redis.0.wait().unwrap();
    let (s, a) = request(gws[0], "/api", "");
    assert_eq!(s, 200, "fail open: {a}");
    assert!(decisions(admins[0], &["outcome=\"failed_open\""]) >= 1);
    let (s, a) = request(gws[1], "/api", "");
    assert_eq!(s, 503, "fail closed: {a}");
    assert!(a.contains("rate limit service unavailable"), "{a}");
    assert!(decisions(admins[1], &["outcome=\"failed_closed\""]) >= 1);
    drop(procs);
}
