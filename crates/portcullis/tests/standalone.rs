//! End-to-end tests of the `portcullis` binary in standalone mode: real
//! processes, real sockets on 127.0.0.1, real files.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use common::{bin, free_port, start, wait_for};

/// A tiny HTTP/1.1 backend answering `backend:<name> path:<path>` to every request.
fn backend(name: &'static str) -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
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
                        let head = String::from_utf8_lossy(&acc[..end]).to_string();
                        acc.drain(..end + 4);
                        let path = head.split_whitespace().nth(1).unwrap_or("").to_string();
                        let body = format!("backend:{name} path:{path}");
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n{}",
                            body.len(),
                            body
                        );
                        if s.write_all(resp.as_bytes()).is_err() {
                            return;
                        }
                    }
                }
            });
        }
    });
    addr
}

/// One HTTP/1.1 request on a fresh connection: (status, body).
fn get(addr: SocketAddr, host: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split("\r\n\r\n").nth(1).unwrap_or("").to_string();
    Some((status, body))
}

fn manifest(port: u16, backend: SocketAddr, path: &str) -> String {
    format!(
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
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: route, namespace: default}}
spec:
  parentRefs: [{{name: gw}}]
  rules:
    - matches: [{{path: {{type: PathPrefix, value: {path}}}}}]
      backendRefs: [{{name: svc, port: 80}}]
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
endpoints: [{{addresses: ["127.0.0.1"], conditions: {{ready: true}}}}]
"#,
        bport = backend.port()
    )
}

fn admin_get(admin: SocketAddr, path: &str) -> Option<(u16, String)> {
    get(admin, "admin", path)
}

#[test]
fn metrics_on_the_admin_api_and_the_metrics_listener() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let metrics: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let b = backend("m");
    let gw: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    std::fs::write(dir.path().join("all.yaml"), manifest(port, b, "/app")).unwrap();
    let _p = start(
        dir.path(),
        admin,
        &[
            "--metrics",
            &metrics.to_string(),
            "--metrics-endpoint-labels",
        ],
    );
    wait_for("route live", Duration::from_secs(10), || {
        get(gw, "x", "/app/1").is_some_and(|(s, _)| s == 200)
    });
    // Endpoint health: counts by state, and (opt-in flag) per endpoint.
    let endpoint =
        format!(r#"portcullis_endpoint_healthy{{backend="default/svc:80",endpoint="{b}"}} 1"#);
    let want = r#"portcullis_http_requests_total{gateway="default/gw",listener="http",route="default/route",backend="default/svc:80",method="GET",code="2xx"}"#;
    for addr in [admin, metrics] {
        let mut text = String::new();
        wait_for("request counted", Duration::from_secs(10), || {
            text = get(addr, "m", "/metrics")
                .map(|(_, b)| b)
                .unwrap_or_default();
            text.contains(want)
        });
        for name in [
            "portcullis_http_request_duration_seconds_bucket",
            "portcullis_downstream_connections_total",
            r#"portcullis_config_reloads_total{result="success"} "#,
            "portcullis_config_last_reload_success_timestamp_seconds ",
            "portcullis_config_applied_generation ",
            "portcullis_translate_duration_seconds_count ",
            r#"portcullis_config_objects{kind="HTTPRoute"} 1"#,
            r#"portcullis_config_object_conditions{kind="HTTPRoute",type="Accepted",status="True",reason="Accepted"} 1"#,
            r#"portcullis_backend_endpoints{backend="default/svc:80",state="healthy"} 1"#,
            r#"portcullis_backend_endpoints{backend="default/svc:80",state="unhealthy"} 0"#,
            "# TYPE portcullis_upstream_connections_active gauge",
            &endpoint,
            "# EOF",
        ] {
            assert!(text.contains(name), "{name} missing in\n{text}");
        }
    }
}

#[test]
fn serves_reloads_and_survives_bad_edits() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let b = backend("one");
    let gw: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    std::fs::write(dir.path().join("all.yaml"), manifest(port, b, "/app")).unwrap();
    let _p = start(dir.path(), admin, &[]);

    // Served as configured; unmatched paths are 404.
    wait_for("route live", Duration::from_secs(10), || {
        get(gw, "x", "/app/1").is_some_and(|(s, _)| s == 200)
    });
    let (s, body) = get(gw, "example.com", "/app/hello").unwrap();
    assert_eq!((s, body.as_str()), (200, "backend:one path:/app/hello"));
    assert_eq!(get(gw, "example.com", "/other").unwrap().0, 404);

    // The status document reports the route accepted, with observedGeneration 1.
    let (_, status) = admin_get(admin, "/status").unwrap();
    let doc: serde_json::Value = serde_json::from_str(&status).unwrap();
    let route = doc
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["kind"] == "HTTPRoute")
        .unwrap();
    let accepted = route["status"]["parents"][0]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Accepted")
        .unwrap();
    assert_eq!(accepted["status"], "True");
    assert_eq!(accepted["observedGeneration"], 1);

    // An edit applies live: the new prefix serves, the old one is gone.
    std::fs::write(dir.path().join("all.yaml"), manifest(port, b, "/v2")).unwrap();
    wait_for("edited route live", Duration::from_secs(10), || {
        get(gw, "x", "/v2/x").is_some_and(|(s, _)| s == 200)
    });
    assert_eq!(get(gw, "x", "/app/1").unwrap().0, 404);

    // A bad edit (invalid path value) is rejected; the last good version keeps serving.
    let bad = manifest(port, b, "/v2").replace("value: /v2", "value: no-slash");
    std::fs::write(dir.path().join("all.yaml"), bad).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(get(gw, "x", "/v2/still").unwrap().0, 200);

    // An edit with an unknown field (a typo) is rejected whole (strict field
    // validation, as kubectl): its other change (the new prefix) is not
    // applied either, and the last good version keeps serving.
    let typo = manifest(port, b, "/v3").replace("backendRefs:", "backendRefz:");
    std::fs::write(dir.path().join("all.yaml"), typo).unwrap();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(get(gw, "x", "/v2/still").unwrap().0, 200);
    assert_eq!(get(gw, "x", "/v3/x").unwrap().0, 404);
}

#[test]
fn validate_reports_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let b: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let bad = manifest(18080, b, "/x").replace("value: /x", "value: nope");
    std::fs::write(dir.path().join("bad.yaml"), &bad).unwrap();
    let out = Command::new(bin())
        .args(["validate", "--config"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stdout);
    let line = bad.lines().position(|l| l.contains("value: nope")).unwrap() + 1;
    assert!(
        text.contains(&format!("bad.yaml:{line}")),
        "expected file:line {line} in {text}"
    );
    assert!(
        text.contains("HTTPRoute") && text.contains("route"),
        "{text}"
    );

    std::fs::write(dir.path().join("bad.yaml"), manifest(18080, b, "/x")).unwrap();
    let out = Command::new(bin())
        .args(["validate", "--config"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn status_command_prints_json_for_every_object() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("a.yaml"),
        manifest(18081, "127.0.0.1:9".parse().unwrap(), "/"),
    )
    .unwrap();
    let out = Command::new(bin())
        .args(["status", "-o", "json", "--config"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(out.status.success());
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let kinds: Vec<&str> = doc
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["kind"].as_str().unwrap())
        .collect();
    assert_eq!(kinds, ["GatewayClass", "Gateway", "HTTPRoute"]);
    let gw = &doc[1];
    assert_eq!(gw["status"]["addresses"][0]["value"], "127.0.0.1");
    assert_eq!(gw["status"]["listeners"][0]["attachedRoutes"], 1);
}

/// The access log goes to a file with the fields asked for, and SIGHUP
/// (sent to the process by its PID) reopens it after a rotation.
#[test]
fn access_log_file_is_reopened_on_sighup() {
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("conf");
    std::fs::create_dir(&conf).unwrap();
    let port = free_port();
    let admin: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let b = backend("log");
    let gw: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    std::fs::write(conf.join("all.yaml"), manifest(port, b, "/app")).unwrap();
    let log = dir.path().join("access.log");
    let rotated = dir.path().join("access.log.1");
    let log_arg = log.display().to_string();
    let p = start(
        &conf,
        admin,
        &[
            "--access-log",
            "json",
            "--access-log-file",
            &log_arg,
            "--access-log-fields",
            "path,status,route",
        ],
    );
    let read = |f: &std::path::Path| std::fs::read_to_string(f).unwrap_or_default();
    wait_for("the first request logged", Duration::from_secs(10), || {
        let _ = get(gw, "x", "/app/before");
        read(&log).contains("/app/before")
    });
    std::fs::rename(&log, &rotated).unwrap();
    let hup = Command::new("kill")
        .args(["-HUP", &p.0.id().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    // The signal is handled asynchronously: requests until one lands in
    // the new file.
    let mut n = 0;
    wait_for(
        "a request logged in the new file",
        Duration::from_secs(10),
        || {
            n += 1;
            let _ = get(gw, "x", &format!("/app/after-{n}"));
            read(&log).contains("/app/after-")
        },
    );
    let old = read(&rotated);
    assert!(old.contains("/app/before"), "{old}");
    let new = read(&log);
    assert!(!new.contains("/app/before"), "{new}");
    for line in new.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let keys: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(keys.len(), 3, "{line}");
        assert_eq!(v["status"], 200, "{line}");
        assert_eq!(v["route"], "default/route", "{line}");
    }
}
