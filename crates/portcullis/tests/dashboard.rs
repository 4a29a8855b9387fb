//! The dashboard in a real browser: `portcullis run` with a valid route and
//! an invalid one (a backendRef to a missing Service) behind an admin
//! token, some traffic, then headless Chromium driven over the WebDriver
//! HTTP protocol (`chromedriver`, found on `PATH` or named by
//! `CHROMEDRIVER`; Chromium found by chromedriver or named by `CHROME_BIN`)
//! loads `/ui#token=...` and must show the routes, the invalid route's
//! reason and what to do about it, the problem's file:line, a nonzero
//! request count, and an explanation from the "explain a request" form.
//!
//! The screenshot is written to `docs/images/dashboard.png` with
//! `UPDATE_SCREENSHOT=1`, else to a temporary directory; either way it
//! must be a PNG. Chromium runs with `--headless=new --no-sandbox
//! --disable-gpu --disable-dev-shm-usage` (as root, in a container, the
//! sandbox and /dev/shm are not available).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{Proc, Recorder, free_addr, free_port, gateway_and_service, get, start, wait_for};
use serde_json::{Value, json};

/// One WebDriver command: `(HTTP status, JSON body)`.
fn wd(driver: SocketAddr, method: &str, path: &str, body: Option<&Value>) -> (u16, Value) {
    let mut s = TcpStream::connect_timeout(&driver, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: {driver}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    // Read the head, then the body by its framing (chromedriver may keep
    // the connection open).
    let mut out = Vec::new();
    let mut buf = [0u8; 16384];
    let body_start = loop {
        if let Some(i) = out.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = s.read(&mut buf).unwrap();
        assert!(n > 0, "chromedriver closed before a response head");
        out.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&out[..body_start]).to_ascii_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let length: Option<usize> = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok());
    let chunked = head.contains("transfer-encoding: chunked");
    loop {
        let body = &out[body_start..];
        let done = match length {
            Some(n) => body.len() >= n,
            None if chunked => body.ends_with(b"0\r\n\r\n"),
            None => false,
        };
        if done {
            break;
        }
        let n = s.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    let rest = String::from_utf8_lossy(&out[body_start..]).into_owned();
    let payload = if chunked { dechunk(&rest) } else { rest };
    (
        status,
        serde_json::from_str(&payload).unwrap_or(Value::Null),
    )
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let bytes: Vec<u8> = s.bytes().filter(|c| !b"=\r\n".contains(c)).collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let v: Vec<u32> = chunk.iter().map(|c| u32::from(val(*c))).collect();
        let n = v.iter().fold(0u32, |a, x| a << 6 | x) << (6 * (4 - v.len()));
        let b = n.to_be_bytes();
        out.extend_from_slice(&b[1..v.len()]);
    }
    out
}

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

#[test]
fn the_dashboard_shows_routes_errors_and_traffic_in_chromium() {
    let backend = Recorder::start();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let mut yaml = gateway_and_service(port, backend.addr);
    yaml.push_str(INVALID_ROUTE);
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

    let driver_port = free_port();
    let driver_bin = std::env::var("CHROMEDRIVER").unwrap_or_else(|_| "chromedriver".into());
    let child = Command::new(&driver_bin)
        .arg(format!("--port={driver_port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {driver_bin} ({e}): install chromium and chromium-driver \
                 (Debian) or set CHROMEDRIVER; this test needs a real browser"
            )
        });
    let _driver = Proc(child);
    let driver: SocketAddr = format!("127.0.0.1:{driver_port}").parse().unwrap();
    wait_for("chromedriver", Duration::from_secs(20), || {
        TcpStream::connect(driver).is_ok() && wd(driver, "GET", "/status", None).0 == 200
    });
    let mut chrome = json!({"args": ["--headless=new", "--no-sandbox", "--disable-gpu",
        "--disable-dev-shm-usage", "--window-size=1280,1800"]});
    if let Ok(bin) = std::env::var("CHROME_BIN") {
        chrome["binary"] = json!(bin);
    }
    let caps = json!({"capabilities": {"alwaysMatch": {"goog:chromeOptions": chrome}}});
    let (status, session) = wd(driver, "POST", "/session", Some(&caps));
    assert_eq!(status, 200, "Chromium did not start: {session}");
    let id = session["value"]["sessionId"].as_str().unwrap().to_string();
    let session = |p: &str| format!("/session/{id}{p}");
    let url = format!("http://{admin}/ui#token={token}");
    let (status, v) = wd(driver, "POST", &session("/url"), Some(&json!({"url": url})));
    assert_eq!(status, 200, "{v}");
    let run = |script: &str| -> Value {
        let body = json!({"script": script, "args": []});
        let (status, v) = wd(driver, "POST", &session("/execute/sync"), Some(&body));
        assert_eq!(status, 200, "{script}: {v}");
        v["value"].clone()
    };

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

    let (status, shot) = wd(driver, "GET", &session("/screenshot"), None);
    assert_eq!(status, 200);
    let png = base64_decode(shot["value"].as_str().unwrap());
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
    let _ = wd(driver, "DELETE", &session(""), None);
}
