//! Kubernetes mode: `portcullis controller --dashboard` serves the dashboard's
//! document, `/explain`, `/status` and `/config` from its own translation,
//! with the traffic counted by its proxies. The controller and a proxy are
//! the real binary; the controller talks to the fake API server of the
//! controller crate's tests (on 127.0.0.1) through a kubeconfig, the proxy
//! to the controller's config stream; the page is also rendered in headless
//! Chromium (see `common/webdriver.rs`).

mod common;
#[path = "../../portcullis-kube/tests/common/mod.rs"]
mod kubetest;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{Proc, Recorder, bin, free_addr, free_port, wait_for};
use kubetest::*;
use serde_json::{Value, json};

/// `GET path` with an optional bearer token: (status, body).
fn fetch(addr: SocketAddr, path: &str, token: Option<&str>) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let auth = token.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: dashboard\r\n{auth}connection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_owned())?;
    Some((status, body))
}

fn kubeconfig(dir: &std::path::Path, api: SocketAddr) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{api}\n\
         users:\n- name: test\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: test\n\
         current-context: fake\n"
    );
    std::fs::write(&path, text).unwrap();
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_serves_the_dashboard_and_explain() {
    let api = FakeApi::new();
    let backend = Recorder::start();
    let port = free_port();
    for o in [
        namespace("default"),
        class(),
        gateway("gw", port),
        route("web", "gw", "web"),
        service("web"),
        endpoints("web", backend.addr),
    ] {
        api.put(o);
    }
    // The broken route only takes /broken, so that explain can tell them apart.
    let mut broken = route("broken", "gw", "nope");
    broken["spec"]["rules"][0]["matches"] =
        json!([{"path": {"type": "PathPrefix", "value": "/broken"}}]);
    api.put(broken);
    let api_addr = api.listen(0).await;
    let dir = tempfile::tempdir().unwrap();
    let config = kubeconfig(dir.path(), api_addr);
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret\n").unwrap();
    let dashboard = free_addr();
    let (stream, proxy_admin) = (free_addr(), free_addr());
    let child = Command::new(bin())
        .args(["controller", "--no-provisioning", "--identity", "dash-test"])
        .args([
            "--stream-listen",
            &stream.to_string(),
            "--admin",
            "127.0.0.1:0",
        ])
        .args(["--stream-tls-san", "127.0.0.1", "--debounce-ms", "20"])
        .args(["--dashboard", &dashboard.to_string()])
        .args(["--proxy-metrics-port", &proxy_admin.port().to_string()])
        .arg("--dashboard-token-file")
        .arg(&token_file)
        .env("KUBECONFIG", &config)
        .env("POD_NAMESPACE", "portcullis-system")
        .env_remove("PORTCULLIS_WATCH_NAMESPACES")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("portcullis controller starts");
    let _child = Proc(child);
    // A proxy for the Gateway, authenticated as its ServiceAccount.
    api.allow_token("proxy-token", "system:serviceaccount:default:gw-portcullis");
    std::fs::write(dir.path().join("ca.crt"), stream_ca(&api).await).unwrap();
    std::fs::write(dir.path().join("proxy-token"), "proxy-token\n").unwrap();
    let proxy = Command::new(bin())
        .args([
            "proxy",
            "--gateway",
            "default/gw",
            "--bind-address",
            "127.0.0.1",
        ])
        .args(["--controller", &format!("https://{stream}")])
        .arg("--controller-ca")
        .arg(dir.path().join("ca.crt"))
        .arg("--token-file")
        .arg(dir.path().join("proxy-token"))
        .args(["--admin", &proxy_admin.to_string(), "--access-log", "off"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("portcullis proxy starts");
    let _proxy = Proc(proxy);

    tokio::task::spawn_blocking(move || {
        let token = Some("s3cret");
        let state = || -> Option<Value> {
            let (code, body) = fetch(dashboard, "/ui/api/state", token)?;
            (code == 200).then(|| serde_json::from_str(&body).ok())?
        };
        let mut doc = Value::Null;
        wait_for("both routes on the dashboard", Duration::from_secs(30), || {
            doc = state().unwrap_or_default();
            doc["ready"] == true && doc["routes"].as_array().is_some_and(|r| r.len() == 2)
        });
        assert_eq!(doc["mode"], "kubernetes");
        assert_eq!(doc["problems"], json!([]));
        let gw = &doc["gateways"][0];
        assert_eq!(gw["name"], "default/gw");
        assert!(
            gw["conditions"].as_array().unwrap().iter().any(|c| c["type"] == "Accepted" && c["status"] == "True"),
            "{gw}"
        );
        assert_eq!(gw["listeners"][0]["name"], "http", "{gw}");
        let route = |name: &str| {
            doc["routes"]
                .as_array()
                .unwrap()
                .iter()
                .find(|r| r["name"] == name)
                .cloned()
                .unwrap_or_else(|| panic!("route {name}: {doc}"))
        };
        let web = route("default/web");
        assert_eq!(web["backends"][0]["name"], "default/web:8080", "{web}");
        let endpoint = backend.addr.to_string();
        assert!(web.to_string().contains(&endpoint), "its endpoint: {web}");

        let broken = route("default/broken");
        let resolved = broken["parents"][0]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "ResolvedRefs")
            .cloned()
            .unwrap();
        assert_eq!(
            (resolved["status"].as_str(), resolved["reason"].as_str()),
            (Some("False"), Some("BackendNotFound"))
        );
        assert!(resolved["fix"].as_str().unwrap().contains("create the Service"), "{resolved}");

        // Traffic through the proxy shows on the controller's dashboard.
        let through = SocketAddr::from(([127, 0, 0, 1], port));
        wait_for("the proxy serving", Duration::from_secs(30), || {
            common::get(through, "shop.example.com", "/ready").is_some_and(|(c, _)| c == 200)
        });
        for i in 0..3 {
            let (code, _) = common::get(through, "shop.example.com", &format!("/cart/{i}")).unwrap();
            assert_eq!(code, 200);
        }
        let (code, _) = common::get(through, "shop.example.com", "/broken/1").unwrap();
        assert_eq!(code, 500);
        let counted = |doc: &Value, route: &str| -> u64 {
            doc["stats"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|s| s["route"] == route && s["gateway"] == "default/gw")
                .map(|s| s["requests"].as_u64().unwrap_or(0))
                .sum()
        };
        wait_for("the proxy's counts on the dashboard", Duration::from_secs(10), || {
            doc = state().unwrap_or_default();
            counted(&doc, "default/web") >= 4 && counted(&doc, "default/broken") == 1
        });
        let broken_stats = doc["stats"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["route"] == "default/broken")
            .unwrap();
        assert_eq!(broken_stats["server_errors"], 1, "{broken_stats}");
        assert_eq!(broken_stats["listener"], "http", "{broken_stats}");

        // The page in headless Chromium: the same document, rendered.
        let browser = common::webdriver::Browser::start();
        browser.open(&format!("http://{dashboard}/ui#token=s3cret"));
        let started = std::time::Instant::now();
        let page = loop {
            let v = browser.run(
                "const row = document.querySelector('#traffic tr[data-route=\"default/web\"] td.requests');
                 return {text: document.body.innerText, polls: Number(document.body.dataset.polls || 0),
                         requests: row ? Number(row.textContent) : 0};",
            );
            if v["polls"].as_u64().unwrap_or(0) >= 2 && v["requests"].as_u64().unwrap_or(0) >= 4 {
                break v;
            }
            assert!(
                started.elapsed() < Duration::from_secs(20),
                "the page never showed the proxy's traffic: {v}"
            );
            std::thread::sleep(Duration::from_millis(200));
        };
        let text = page["text"].as_str().unwrap();
        for want in [
            "Kubernetes mode",
            "Gateway default/gw",
            "HTTPRoute default/web",
            "HTTPRoute default/broken",
            "BackendNotFound",
            "How to fix: create the Service",
        ] {
            assert!(text.contains(want), "the page does not show {want:?}:\n{text}");
        }
        drop(browser);

        // Explain on the controller's IR, for the Gateway's listener.
        let ask = |path: &str| {
            let q = format!(
                "/explain?request=GET%20http%3A%2F%2Fshop.example.com%3A{port}{path}&gateway=default%2Fgw"
            );
            let (code, body) = fetch(dashboard, &q, token).unwrap();
            assert_eq!(code, 200, "{body}");
            serde_json::from_str::<Value>(&body).unwrap()
        };
        let ok = ask("/cart");
        assert_eq!(ok["answer"]["forwarded"], true, "{ok}");
        assert_eq!(ok["answer"]["backend"], "default/web:8080", "{ok}");
        let bad = ask("/broken/x");
        assert_eq!(bad["answer"]["status"], 500, "{bad}");
        assert_eq!(bad["answer"]["flag"], "IB", "{bad}");

        // The CLI asks the running controller the same.
        let out = Command::new(bin())
            .args(["explain", "--admin", &format!("http://{dashboard}")])
            .arg("--admin-token-file")
            .arg(&token_file)
            .args(["--gateway", "default/gw"])
            .arg(format!("GET http://shop.example.com:{port}/broken/x"))
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{text} {}", String::from_utf8_lossy(&out.stderr));
        assert!(text.contains("HTTPRoute default/broken"), "{text}");
        assert!(text.contains("500") && text.contains("IB"), "{text}");

        // Token required for every document; the page's assets are open.
        for p in ["/ui/api/state", "/status", "/config", "/explain?request=http://x/"] {
            assert_eq!(fetch(dashboard, p, None).unwrap().0, 401, "{p}");
        }
        assert_eq!(fetch(dashboard, "/ui", None).unwrap().0, 200);
        let (code, status) = fetch(dashboard, "/status", token).unwrap();
        assert_eq!(code, 200);
        assert!(status.contains("\"HTTPRoute\""), "{status}");
    })
    .await
    .unwrap();
}
