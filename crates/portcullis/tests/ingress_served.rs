//! Proof of equivalence: each corpus Ingress
//! (`crates/portcullis-import/tests/corpus/*.in.yaml`) is served twice by
//! `portcullis run` — once as the Ingress itself (its IngressClass pointed at
//! Portcullis: `spec.controller: portcullis.dev/ingress-controller`), once as
//! its `portcullis import ingress` output — and the same requests must get the
//! same answers: status, redirect `Location`, CORS and auth headers, the body,
//! which backend was reached and the request line and `Host` it saw. Real
//! processes on 127.0.0.1, one Recorder backend per Service; requests go one
//! at a time so each backend hit is attributed to its request.
//!
//! Not compared here: HTTPS answers (only the HTTP side and its redirects),
//! weighted canaries (random by design), `auth-url` and HTTPS backends (they
//! need servers of their own); `import_e2e.rs` checks those behaviours on the
//! converted form.

mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Proc, Recorder, free_addr, free_port, start};

fn corpus(name: &str) -> String {
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../portcullis-import/tests/corpus")
        .join(name);
    std::fs::read_to_string(p).unwrap()
}

/// The IngressClass `nginx`, as the corpus Ingresses name it, pointed at Portcullis.
const CLASS: &str = "apiVersion: networking.k8s.io/v1\nkind: IngressClass\nmetadata: {name: nginx}\nspec: {controller: portcullis.dev/ingress-controller}\n";

/// Every Service the corpus files used here send to: (namespace, name, port).
const SERVICES: &[(&str, &str, u16)] = &[
    ("default", "web", 80),
    ("default", "api", 8080),
    ("default", "static", 80),
    ("default", "fallback", 80),
    ("apps", "shop", 80),
    ("apps", "shop-canary", 80),
    ("apps", "admin", 80),
    ("apps", "app", 80),
];

/// The backends: one Recorder per Service.
struct Backends(BTreeMap<String, Recorder>);

impl Backends {
    fn start() -> Backends {
        Backends(
            SERVICES
                .iter()
                .map(|(ns, n, _)| (format!("{ns}/{n}"), Recorder::start()))
                .collect(),
        )
    }

    /// Services and EndpointSlices, leaving out Services the `skip` text defines.
    fn yaml(&self, skip: &str) -> String {
        let mut s = String::new();
        for (ns, name, port) in SERVICES {
            let b = self.0[&format!("{ns}/{name}")].addr;
            if !skip.contains(&format!(
                "kind: Service\nmetadata: {{name: {name}, namespace: {ns}}}"
            )) {
                s.push_str(&format!("---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  ports: [{{name: http, port: {port}}}]\n"));
            }
            s.push_str(&format!("---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}-1, namespace: {ns}, labels: {{kubernetes.io/service-name: {name}}}}}\naddressType: IPv4\nports: [{{name: http, port: {}}}]\nendpoints: [{{addresses: [\"127.0.0.1\"], conditions: {{ready: true}}}}]\n", b.port()));
        }
        s
    }

    fn lengths(&self) -> Vec<usize> {
        self.0.values().map(|r| r.received().len()).collect()
    }

    /// What each backend received since `before`: (service, request line and Host).
    fn since(&self, before: &[usize]) -> Vec<(String, String)> {
        let mut out = vec![];
        for ((name, r), b) in self.0.iter().zip(before) {
            let all = r.received();
            let new = &all[*b..];
            if new.is_empty() {
                continue;
            }
            let line = new.lines().next().unwrap_or_default().to_string();
            let host = new
                .lines()
                .find(|l| l.to_ascii_lowercase().starts_with("host:"))
                .unwrap_or_default()
                .to_ascii_lowercase();
            out.push((name.clone(), format!("{line} | {host}")));
        }
        out
    }
}

/// The TLS Secrets of the corpus's cluster file.
fn tls_secrets() -> String {
    corpus("cluster.yaml")
        .split("\n---\n")
        .filter(|d| d.contains("kind: Secret"))
        .map(|d| format!("---\n{d}\n"))
        .collect()
}

/// Serve `files` as Ingresses: (process, HTTP address).
fn serve_ingresses(dir: &Path, files: &[&str], backends: &Backends) -> (Proc, SocketAddr) {
    let (http, https) = (free_port(), free_port());
    let mut all = String::new();
    for f in files {
        // The corpus's own default IngressClass names ingress-nginx: point it at Portcullis.
        let text = corpus(f).replace(
            "controller: k8s.io/ingress-nginx",
            "controller: portcullis.dev/ingress-controller",
        );
        std::fs::write(dir.join(f), &text).unwrap();
        all.push_str(&text);
    }
    if !all.contains("kind: IngressClass") {
        std::fs::write(dir.join("class.yaml"), CLASS).unwrap();
    }
    std::fs::write(
        dir.join("cluster.yaml"),
        format!("{}{}", backends.yaml(&all), tls_secrets()),
    )
    .unwrap();
    let admin = free_addr();
    let p = start(
        dir,
        admin,
        &[
            "--bind-address",
            "127.0.0.1",
            "--ingress-http",
            &format!("127.0.0.1:{http}"),
            "--ingress-https",
            &format!("127.0.0.1:{https}"),
        ],
    );
    let addr: SocketAddr = format!("127.0.0.1:{http}").parse().unwrap();
    common::wait_for("the Ingress HTTP listener", Duration::from_secs(10), || {
        TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
    });
    (p, addr)
}

/// Serve the `portcullis import ingress` output of `files`: (process, HTTP address).
fn serve_converted(dir: &Path, files: &[&str], backends: &Backends) -> (Proc, SocketAddr) {
    let (http, https) = (free_port(), free_port());
    let mut cmd = Command::new(common::bin());
    cmd.args(["import", "ingress", "--http-port", &http.to_string()])
        .args(["--https-port", &https.to_string()]);
    let inputs = tempfile::tempdir().unwrap();
    for f in files {
        let p = inputs.path().join(f);
        std::fs::write(&p, corpus(f)).unwrap();
        cmd.arg("-f").arg(p);
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::write(dir.join("converted.yaml"), &out.stdout).unwrap();
    std::fs::write(
        dir.join("cluster.yaml"),
        format!("{}{}", backends.yaml(""), tls_secrets()),
    )
    .unwrap();
    let admin = free_addr();
    let p = start(dir, admin, &["--bind-address", "127.0.0.1"]);
    let addr: SocketAddr = format!("127.0.0.1:{http}").parse().unwrap();
    common::wait_for(
        "the converted HTTP listener",
        Duration::from_secs(10),
        || TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok(),
    );
    (p, addr)
}

/// One request; the answer reduced to what must be the same.
fn ask(addr: SocketAddr, r: &Req, backends: &Backends) -> String {
    let before = backends.lengths();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "{} {} HTTP/1.1\r\nhost: {}\r\nconnection: close\r\n{}\r\n",
        r.method, r.path, r.host, r.headers
    )
    .unwrap();
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let mut kept: Vec<String> = head
        .lines()
        .skip(1)
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            let k = k.trim().to_ascii_lowercase();
            let keep =
                k == "location" || k == "www-authenticate" || k.starts_with("access-control-");
            keep.then(|| format!("{k}: {}", v.trim()))
        })
        .collect();
    kept.sort();
    // The backend may still be writing its record when the client has its answer.
    std::thread::sleep(Duration::from_millis(5));
    format!(
        "{} {kept:?} body={body:?} backend={:?}",
        common::status_of(&answer),
        backends.since(&before)
    )
}

struct Req {
    method: &'static str,
    host: &'static str,
    path: &'static str,
    headers: &'static str,
}

const fn get(host: &'static str, path: &'static str) -> Req {
    Req {
        method: "GET",
        host,
        path,
        headers: "",
    }
}

const fn with(host: &'static str, path: &'static str, headers: &'static str) -> Req {
    Req {
        method: "GET",
        host,
        path,
        headers,
    }
}

/// Serve `files` both ways and compare the answers to `requests`.
fn equivalent(files: &[&str], requests: &[Req]) {
    let backends = Backends::start();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (_served, ingress) = serve_ingresses(a.path(), files, &backends);
    let (_converted, converted) = serve_converted(b.path(), files, &backends);
    let mut served_somewhere = 0;
    for r in requests {
        let x = ask(ingress, r, &backends);
        let y = ask(converted, r, &backends);
        assert_eq!(
            x, y,
            "{} {}{}: as an Ingress (left) and converted (right)",
            r.method, r.host, r.path
        );
        if !x.starts_with("404") {
            served_somewhere += 1;
        }
    }
    // The comparison means something only if most requests were served.
    assert!(
        served_somewhere * 4 >= requests.len() * 3,
        "{served_somewhere} of {} requests served",
        requests.len()
    );
}

#[test]
fn redirects_rewrites_canaries_cors_and_ranges_are_served_as_converted() {
    equivalent(
        &[
            "redirects.in.yaml",
            "rewrite.in.yaml",
            "canary.in.yaml",
            "cors.in.yaml",
            "source-range.in.yaml",
        ],
        &[
            get("old.example.com", "/anything?q=1"),
            get("down.example.com", "/x"),
            get("portal.example.com", "/"),
            get("portal.example.com", "/deep"),
            get("rewrite.example.com", "/something/deep/path?x=1"),
            get("rewrite.example.com", "/something"),
            get("rewrite.example.com", "/app/page"),
            get("rewrite.example.com", "/appx"),
            get("swap.example.com", "/en/page"),
            get("api.example.com", "/v2/users"),
            with("shop.example.com", "/h-always", "x-canary: always\r\n"),
            with("shop.example.com", "/h-never", "x-canary: never\r\n"),
            with(
                "shop.example.com",
                "/c-always",
                "cookie: a=1; canary=always\r\n",
            ),
            with("shop.example.com", "/checkout/beta", "x-beta: yes\r\n"),
            with("shop.example.com", "/checkout/beta", "x-beta: no\r\n"),
            Req {
                method: "OPTIONS",
                host: "api.example.com",
                path: "/items",
                headers: "origin: https://app.example.com\r\naccess-control-request-method: POST\r\n",
            },
            Req {
                method: "OPTIONS",
                host: "api.example.com",
                path: "/items",
                headers: "origin: https://evil.example\r\naccess-control-request-method: POST\r\n",
            },
            with(
                "api.example.com",
                "/items",
                "origin: https://app.example.com\r\n",
            ),
            get("public.example.com", "/"),
            get("admin.example.com", "/"),
            get("app.example.com", "/"),
            get("nowhere.example.com", "/"),
        ],
    );
}

#[test]
fn auth_tls_hosts_path_types_and_default_backends_are_served_as_converted() {
    equivalent(
        &[
            "basic-auth.in.yaml",
            "tls-multi.in.yaml",
            "paths-multi-host.in.yaml",
            "auth-combo.in.yaml",
            "unsupported.in.yaml",
        ],
        &[
            get("admin.example.com", "/"),
            with(
                "admin.example.com",
                "/",
                "authorization: Basic YWxpY2U6d29uZGVyIGxhbmQ=\r\n",
            ),
            with(
                "admin.example.com",
                "/",
                "authorization: Basic YWxpY2U6d3Jvbmc=\r\n",
            ),
            get("ops.example.com", "/"),
            with(
                "ops.example.com",
                "/",
                "authorization: Basic Y2Fyb2w6YjBiLXNlY3JldA==\r\n",
            ),
            get("www.example.com", "/page?q=1"),
            get("x.tenants.example.com", "/"),
            get("shop.example.com", "/"),
            get("intranet.example.com", "/api"),
            get("api.example.com", "/v1/users"),
            get("api.example.com", "/v1x"),
            get("api.example.com", "/v2"),
            get("unknown.example.com", "/anything"),
            get("app.example.com", "/"),
            get("www.app.example.com", "/x"),
            get("app.example.net", "/x"),
        ],
    );
}

#[test]
fn rate_limits_are_served_as_converted() {
    let backends = Backends::start();
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let files = ["rate-limit.in.yaml"];
    let (_served, ingress) = serve_ingresses(a.path(), &files, &backends);
    let (_converted, converted) = serve_converted(b.path(), &files, &backends);
    for addr in [ingress, converted] {
        let answers: Vec<u16> = (0..12)
            .map(|i| {
                common::get(addr, "api.example.com", &format!("/search?{i}")).map_or(0, |(s, _)| s)
            })
            .collect();
        assert!(answers[..5].iter().all(|s| *s == 200), "{answers:?}");
        assert!(answers.contains(&429), "{answers:?}");
    }
}

#[test]
fn what_cannot_be_honoured_is_named_by_validate_and_status() {
    let dir = tempfile::tempdir().unwrap();
    let text = corpus("unsupported.in.yaml");
    std::fs::write(dir.path().join("ingress.yaml"), &text).unwrap();
    std::fs::write(dir.path().join("class.yaml"), CLASS).unwrap();
    // The tuned Ingress is the file's first object.
    let line = text
        .lines()
        .position(|l| l.starts_with("apiVersion:"))
        .expect("an object")
        + 1;
    let v = Command::new(common::bin())
        .args(["validate", "-c"])
        .arg(dir.path())
        .args([
            "--ingress-http",
            "127.0.0.1:1",
            "--ingress-https",
            "127.0.0.1:2",
        ])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&v.stdout);
    assert!(!v.status.success(), "{out}");
    let problem = out
        .lines()
        .find(|l| l.contains("Ingress apps/tuned: PartiallyInvalid=True (NotHonoured)"))
        .unwrap_or_else(|| panic!("{out}"));
    assert!(
        problem.contains(&format!("ingress.yaml:{line}:")),
        "located at the Ingress (line {line}): {problem}"
    );
    for a in [
        "configuration-snippet",
        "server-snippet",
        "upstream-hash-by",
        "load-balance",
        "custom-http-errors",
        "default-backend",
        "enable-magic",
    ] {
        assert!(
            problem.contains(&format!(
                "annotation nginx.ingress.kubernetes.io/{a} is not honoured"
            )),
            "{a}: {problem}"
        );
    }
    // Honoured annotations and other tools' annotations are not problems.
    assert!(!problem.contains("server-alias is not") && !problem.contains("cert-manager"));

    let s = Command::new(common::bin())
        .args(["status", "-o", "json", "-c"])
        .arg(dir.path())
        .args([
            "--ingress-http",
            "127.0.0.1:1",
            "--ingress-https",
            "127.0.0.1:2",
        ])
        .output()
        .unwrap();
    let doc: serde_json::Value = serde_json::from_slice(&s.stdout).unwrap();
    let tuned = doc
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["kind"] == "Ingress" && o["metadata"]["name"] == "tuned")
        .expect("the Ingress has a status");
    let st = &tuned["status"];
    assert_eq!(st["loadBalancer"]["ingress"][0]["ip"], "127.0.0.1", "{st}");
    assert_eq!(
        st["loadBalancer"]["ingress"][0]["ports"][0]["port"], 1,
        "{st}"
    );
    let annotations = st["annotations"].as_array().unwrap();
    assert_eq!(annotations.len(), 9, "every annotation is listed: {st}");
    assert!(
        annotations
            .iter()
            .any(|a| a["name"] == "nginx.ingress.kubernetes.io/server-alias"
                && a["outcome"] == "converted")
    );
}
