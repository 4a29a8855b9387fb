//! The dashboard in a real browser: `portcullis run` with a valid route and
//! an invalid one (a backendRef to a missing Service) behind an admin
//! token, some traffic, then headless Chromium driven over the WebDriver
//! HTTP protocol (`chromedriver`, found on `PATH` or named by
//! `CHROMEDRIVER`; Chromium found by chromedriver or named by `CHROME_BIN`)
//! loads `/ui#token=...` and must show the routes, the invalid route's
//! reason and what to do about it, the problem's file:line, a nonzero
//! request count, an explanation from the "explain a request" form, and
//! endpoint health: a backend whose only endpoint nothing listens on, with
//! an active TCP health check (BackendTrafficPolicy), shows as unhealthy,
//! the working one as healthy.
//!
//! The screenshot is written to `docs/images/dashboard.png` with
//! `UPDATE_SCREENSHOT=1`, else to a temporary directory; either way it
//! must be a PNG. Chromium runs with `--headless=new --no-sandbox
//! --disable-gpu --disable-dev-shm-usage` (as root, in a container, the
//! sandbox and /dev/shm are not available).

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::webdriver::Browser;
use common::{Recorder, free_addr, free_port, gateway_and_service, get, start};

const INVALID_ROUTE: &str = r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: orders, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
    - matches: [{path: {type: PathPrefix, value: /orders}}]
      backendRefs: [{name: orders-svc, port: 80}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {name: shop, namespace: default}
spec:
  parentRefs: [{name: gw}]
  rules:
    - matches: [{path: {type: PathPrefix, value: /}}]
      backendRefs: [{name: svc, port: 80}]
"#;

/// A route to Service `flaky`, whose one endpoint (`127.0.0.1:{dead}`)
/// nothing listens on, health-checked over TCP every 200 ms.
fn flaky(dead: u16) -> String {
    format!(
        r#"---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: flaky, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  hostnames: [flaky.test]
  rules:
    - backendRefs: [{{name: flaky, port: 80}}]
---
apiVersion: v1
kind: Service
metadata: {{name: flaky, namespace: default}}
spec:
  ports: [{{name: http, port: 80}}]
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {{name: flaky-1, namespace: default, labels: {{kubernetes.io/service-name: flaky}}}}
addressType: IPv4
ports: [{{name: http, port: {dead}}}]
endpoints: [{{addresses: ["127.0.0.1"], conditions: {{ready: true}}}}]
---
apiVersion: portcullis.dev/v1alpha1
kind: BackendTrafficPolicy
metadata: {{name: flaky-hc, namespace: default}}
spec:
  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: flaky}}]
  healthCheck:
    active:
      type: TCP
      interval: 200ms
      timeout: 1s
      unhealthyThreshold: 1
      healthyThreshold: 1
"#
    )
}

#[test]
fn the_dashboard_shows_routes_errors_and_traffic_in_chromium() {
    let backend = Recorder::start();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let mut yaml = gateway_and_service(port, backend.addr);
    yaml.push_str(INVALID_ROUTE);
    let dead = free_port();
    yaml.push_str(&flaky(dead));
    std::fs::write(dir.path().join("gateway.yaml"), yaml).unwrap();
    let token = "dash-token-1";
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, token).unwrap();
    let admin = free_addr();
    let _gw = start(
        dir.path(),
        admin,
        &["--admin-token-file", token_file.to_str().unwrap()],
    );
    // The page's data needs the token; its assets do not hold any.
    assert_eq!(get(admin, "admin", "/ui/api/state").unwrap().0, 401);
    assert_eq!(
        get(admin, "admin", "/explain?request=http://x/").unwrap().0,
        401
    );
    assert_eq!(get(admin, "admin", "/ui").unwrap().0, 200);

    let gw: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    for i in 0..5 {
        assert_eq!(get(gw, "shop.test", &format!("/item/{i}")).unwrap().0, 200);
    }
    assert_eq!(get(gw, "shop.test", "/orders/1").unwrap().0, 500);

    let browser = Browser::start();
    browser.open(&format!("http://{admin}/ui#token={token}"));
    let run = |script: &str| browser.run(script);

    // Two polls at least, so rates have a previous sample.
    let start_wait = Instant::now();
    let snapshot = loop {
        let v = run(
            "const row = document.querySelector('#traffic tr[data-route=\"default/shop\"] td.requests');
             return {text: document.body.innerText, polls: Number(document.body.dataset.polls || 0),
                     requests: row ? Number(row.textContent) : 0, hash: location.hash};",
        );
        if v["polls"].as_u64().unwrap_or(0) >= 2 && v["requests"].as_u64().unwrap_or(0) > 0 {
            break v;
        }
        assert!(
            start_wait.elapsed() < Duration::from_secs(20),
            "the page never showed the traffic: {v}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let text = snapshot["text"].as_str().unwrap();
    assert_eq!(snapshot["requests"], 5, "{text}");
    for want in [
        "HTTPRoute default/shop",
        "HTTPRoute default/orders",
        "Gateway default/gw",
        "ResolvedRefs=False",
        "BackendNotFound",
        "Service default/orders-svc does not exist",
        "How to fix: create the Service",
        "gateway.yaml:",
        "live",
    ] {
        assert!(
            text.contains(want),
            "the page does not show {want:?}:\n{text}"
        );
    }
    assert_eq!(
        snapshot["hash"], "",
        "the token is taken out of the address bar"
    );

    // Traffic while the page polls shows as a live rate.
    let polls = snapshot["polls"].as_u64().unwrap();
    let start_wait = Instant::now();
    loop {
        for i in 0..4 {
            assert_eq!(get(gw, "shop.test", &format!("/live/{i}")).unwrap().0, 200);
        }
        let v = run(
            "const row = document.querySelector('#traffic tr[data-route=\"default/shop\"]');
             return {polls: Number(document.body.dataset.polls || 0),
                     rate: Number(row.querySelector('td.rate').textContent),
                     requests: Number(row.querySelector('td.requests').textContent)};",
        );
        if v["polls"].as_u64().unwrap_or(0) > polls && v["rate"].as_f64().unwrap_or(0.0) > 0.0 {
            assert!(v["requests"].as_u64().unwrap() > 5, "{v}");
            break;
        }
        assert!(
            start_wait.elapsed() < Duration::from_secs(15),
            "no live rate: {v}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    // The explain form, through /explain with the token.
    run(&format!(
        "document.getElementById('ex-request').value = 'GET http://shop.test:{port}/orders/7';
         document.querySelector('#explain-form button').click(); return null;"
    ));
    let start_wait = Instant::now();
    loop {
        let out = run("return document.getElementById('explain-out').textContent;");
        let out = out.as_str().unwrap_or_default();
        if out.contains("answer") {
            assert!(out.contains("HTTPRoute default/orders"), "{out}");
            assert!(out.contains("500 (IB)"), "{out}");
            break;
        }
        assert!(
            start_wait.elapsed() < Duration::from_secs(10),
            "no explanation: {out:?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // Endpoint health: the flaky backend's endpoint fails its health
    // check; the shop's answers.
    let start_wait = Instant::now();
    loop {
        let v = run(&format!(
            "const q = a => document.querySelector('span.endpoint[data-endpoint=\"' + a + '\"]');
             const f = q('127.0.0.1:{dead}'), s = q('{b}');
             return {{flaky: f ? f.dataset.health : null, flakyText: f ? f.textContent : null,
                      shop: s ? s.dataset.health : null}};",
            b = backend.addr
        ));
        if v["flaky"] == "unhealthy" && v["shop"] == "healthy" {
            assert_eq!(
                v["flakyText"],
                format!("127.0.0.1:{dead} (unhealthy)"),
                "{v}"
            );
            break;
        }
        assert!(
            start_wait.elapsed() < Duration::from_secs(20),
            "the page never showed the endpoints' health: {v}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    let png = browser.screenshot();
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n") && png.len() > 10_000,
        "{}",
        png.len()
    );
    let path = if std::env::var_os("UPDATE_SCREENSHOT").is_some() {
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/images/dashboard.png")
    } else {
        dir.path().join("dashboard.png")
    };
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &png).unwrap();
}
