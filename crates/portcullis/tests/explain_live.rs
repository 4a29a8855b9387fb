//! `portcullis explain` agrees with the running gateway: for each request,
//! the offline prediction (`portcullis explain -o json` on the files) and
//! the admin API's `/explain` on the served configuration are the same, and
//! a real request sent through `portcullis run` gets what they predict: the
//! gateway's own status (and `Location`), or the predicted backend (two
//! `portcullis-echo` backends that name themselves) answering.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::{Proc, free_port, raw_exchange, start, status_of, wait_for};
use portcullis_conformance::echo::{EchoConfig, EchoContext};

/// A `portcullis-echo` on 127.0.0.1 naming itself `pod`, on its own runtime thread.
fn echo(pod: &str) -> SocketAddr {
    let (http_port, h2c_port) = (free_port(), free_port());
    let config = EchoConfig {
        bind: "127.0.0.1".parse().unwrap(),
        http_port,
        h2c_port,
        https_port: 0,
        context: EchoContext {
            namespace: "default".into(),
            pod: pod.into(),
            ..Default::default()
        },
        tls: None,
    };
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(portcullis_conformance::echo::run(config))
    });
    let addr: SocketAddr = format!("127.0.0.1:{http_port}").parse().unwrap();
    wait_for("echo backend", Duration::from_secs(10), || {
        std::net::TcpStream::connect(addr).is_ok()
    });
    addr
}

fn service(name: &str, backend: Option<SocketAddr>) -> String {
    let mut s = format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: default}}\nspec: {{ports: [{{name: http, port: 80}}]}}\n"
    );
    if let Some(b) = backend {
        s.push_str(&format!(
            "---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}-1, namespace: default, labels: {{kubernetes.io/service-name: {name}}}}}\naddressType: IPv4\nports: [{{name: http, port: {}}}]\nendpoints: [{{addresses: [\"127.0.0.1\"], conditions: {{ready: true}}}}]\n",
            b.port()
        ));
    }
    s
}

fn config(port: u16, v1: SocketAddr, v2: SocketAddr) -> String {
    let mut s = format!(
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
  listeners:
    - {{name: any, port: {port}, protocol: HTTP}}
    - {{name: shop, port: {port}, protocol: HTTP, hostname: shop.example.com}}
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: app, namespace: default, creationTimestamp: "2026-01-01T00:00:00Z"}}
spec:
  parentRefs: [{{name: gw, sectionName: any}}]
  rules:
    - matches: [{{path: {{type: PathPrefix, value: /}}}}]
      backendRefs: [{{name: v1, port: 80}}]
    - matches: [{{path: {{type: PathPrefix, value: /cart}}, headers: [{{name: x-env, value: canary}}]}}]
      backendRefs: [{{name: v2, port: 80}}]
    - matches: [{{path: {{type: Exact, value: /old}}}}]
      filters:
        - type: RequestRedirect
          requestRedirect: {{hostname: new.example.com, statusCode: 302, path: {{type: ReplaceFullPath, replaceFullPath: /new}}}}
    - matches: [{{path: {{type: PathPrefix, value: /broken}}}}]
      backendRefs: [{{name: missing, port: 80}}]
    - matches: [{{path: {{type: PathPrefix, value: /empty}}}}]
      backendRefs: [{{name: empty, port: 80}}]
---
apiVersion: gateway.networking.k8s.io/v1
kind: HTTPRoute
metadata: {{name: shop, namespace: default, creationTimestamp: "2026-01-01T00:00:00Z"}}
spec:
  parentRefs: [{{name: gw, sectionName: shop}}]
  rules:
    - matches: [{{path: {{type: PathPrefix, value: /api}}}}]
      backendRefs: [{{name: v2, port: 80}}]
"#
    );
    s.push_str(&service("v1", Some(v1)));
    s.push_str(&service("v2", Some(v2)));
    s.push_str(&service("empty", None));
    s
}

/// `(host, path, headers)` of each request.
const CASES: &[(&str, &str, &[&str])] = &[
    ("localhost", "/", &[]),
    ("localhost", "/cart/items?x=1", &[]),
    ("localhost", "/cart/items", &["x-env: canary"]),
    ("localhost", "/old?q=1", &[]),
    ("localhost", "/broken/x", &[]),
    ("localhost", "/empty", &[]),
    ("shop.example.com", "/api/users", &[]),
    ("shop.example.com", "/other", &[]),
];

fn offline(dir: &std::path::Path, url: &str, headers: &[&str]) -> serde_json::Value {
    let mut cmd = Command::new(common::bin());
    cmd.args(["explain", "-o", "json", "--config"])
        .arg(dir)
        .arg(format!("GET {url}"));
    for h in headers {
        cmd.args(["-H", h]);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

fn pct(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn live(admin: SocketAddr, url: &str, headers: &[&str]) -> serde_json::Value {
    let mut q = format!("/explain?request={}", pct(&format!("GET {url}")));
    for h in headers {
        q.push_str(&format!("&header={}", pct(h)));
    }
    let answer = raw_exchange(
        admin,
        format!("GET {q} HTTP/1.1\r\nhost: admin\r\nconnection: close\r\n\r\n").as_bytes(),
    );
    assert_eq!(status_of(&answer), 200, "{answer}");
    serde_json::from_str(answer.split("\r\n\r\n").nth(1).unwrap()).unwrap()
}

#[test]
fn explain_predicts_what_the_running_gateway_answers() {
    let (v1, v2) = (echo("v1"), echo("v2"));
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("gw.yaml"), config(port, v1, v2)).unwrap();
    let admin = common::free_addr();
    let _gw: Proc = start(dir.path(), admin, &[]);
    let gw: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let pods = [("default/v1:80", "v1"), ("default/v2:80", "v2")];
    let mut seen = std::collections::BTreeSet::new();
    for (host, path, headers) in CASES {
        let url = format!("http://{host}:{port}{path}");
        let predicted = offline(dir.path(), &url, headers);
        let served = live(admin, &url, headers);
        assert_eq!(
            predicted["answer"], served["answer"],
            "{url}: offline and admin /explain differ"
        );
        assert_eq!(predicted["route"], served["route"], "{url}");
        let a = &predicted["answer"];
        let mut raw = format!("GET {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n");
        for h in *headers {
            raw.push_str(&format!("{h}\r\n"));
        }
        raw.push_str("\r\n");
        let got = raw_exchange(gw, raw.as_bytes());
        let status = status_of(&got);
        if a["forwarded"] == true {
            let backend = a["backend"].as_str().expect("one backend");
            let pod = pods.iter().find(|(b, _)| *b == backend).unwrap().1;
            assert_eq!(status, 200, "{url}: predicted {a}, got {got}");
            let body: serde_json::Value =
                serde_json::from_str(got.split("\r\n\r\n").nth(1).unwrap_or("")).unwrap();
            assert_eq!(body["pod"], pod, "{url}: predicted {backend}, got {body}");
            seen.insert(format!("forwarded to {pod}"));
        } else {
            let want = a["status"].as_u64().expect("a status") as u16;
            assert_eq!(status, want, "{url}: predicted {a}, got {got}");
            if let Some(loc) = a["location"].as_str() {
                let line = got
                    .lines()
                    .find(|l| l.to_ascii_lowercase().starts_with("location:"))
                    .unwrap_or_default();
                assert_eq!(line[9..].trim(), loc, "{url}");
            }
            seen.insert(want.to_string());
        }
    }
    // The cases cover both backends and the gateway's own answers.
    let want = [
        "forwarded to v1",
        "forwarded to v2",
        "302",
        "404",
        "500",
        "503",
    ];
    for w in want {
        assert!(seen.contains(w), "no case gave {w}: {seen:?}");
    }
}
