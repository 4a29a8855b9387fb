//! End to end: corpus Ingresses converted by `portcullis import ingress`,
//! served by `portcullis run` (real processes, 127.0.0.1, recorder backends),
//! and checked against the behaviour ingress-nginx documents for each
//! annotation. Where Portcullis answers differently, the assertion says so
//! (and the report's difference says the same).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{Proc, Recorder, free_addr, free_port, start};

fn corpus(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../portcullis-import/tests/corpus")
        .join(name)
}

/// One request; (status, whole answer).
fn req(addr: SocketAddr, method: &str, host: &str, path: &str, headers: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n{headers}\r\n"
    )
    .unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    (common::status_of(&out), out)
}

/// A response header's value.
fn header(answer: &str, name: &str) -> Option<String> {
    answer.split("\r\n\r\n").next()?.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case(name).then(|| v.trim().to_string())
    })
}

fn basic(user_pass: &str) -> String {
    const T: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let b = user_pass.as_bytes();
    let mut s = String::new();
    for c in b.chunks(3) {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for i in 0..4 {
            if i <= c.len() {
                s.push(T[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    format!("authorization: Basic {s}\r\n")
}

/// A Service (port `port`, name `http`) with one endpoint: `backend`.
fn service(ns: &str, name: &str, port: u16, backend: SocketAddr) -> String {
    format!(
        "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n  ports: [{{name: http, port: {port}}}]\n---\napiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}-1, namespace: {ns}, labels: {{kubernetes.io/service-name: {name}}}}}\naddressType: IPv4\nports: [{{name: http, port: {bport}}}]\nendpoints: [{{addresses: [\"127.0.0.1\"], conditions: {{ready: true}}}}]\n",
        bport = backend.port()
    )
}

/// The TLS Secrets of the corpus's cluster file.
fn tls_secrets() -> String {
    let text = std::fs::read_to_string(corpus("cluster.yaml")).unwrap();
    text.split("\n---\n")
        .filter(|d| d.contains("kind: Secret"))
        .map(|d| format!("---\n{d}\n"))
        .collect()
}

/// Convert `files`, add the Services, start `portcullis run`: (process, http address).
fn serve(dir: &Path, files: &[&str], services: &str) -> (Proc, SocketAddr) {
    let http = free_port();
    let https = free_port();
    let mut cmd = Command::new(common::bin());
    cmd.args([
        "import",
        "ingress",
        "--http-port",
        &http.to_string(),
        "--https-port",
        &https.to_string(),
    ]);
    for f in files {
        cmd.arg("-f").arg(corpus(f));
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
        format!("{services}{}", tls_secrets()),
    )
    .unwrap();
    let v = Command::new(common::bin())
        .args(["validate", "-c"])
        .arg(dir)
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", String::from_utf8_lossy(&v.stdout));
    let admin = free_addr();
    let p = start(dir, admin, &["--bind-address", "127.0.0.1"]);
    let addr: SocketAddr = format!("127.0.0.1:{http}").parse().unwrap();
    common::wait_for("the HTTP listener", Duration::from_secs(10), || {
        TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
    });
    (p, addr)
}

#[test]
fn redirects_rewrites_canaries_cors_ranges_and_limits_behave_as_in_ingress_nginx() {
    let primary = Recorder::start();
    let canary = Recorder::start();
    let p = primary.addr;
    let services = [
        service("default", "web", 80, p),
        service("default", "api", 8080, p),
        service("apps", "shop", 80, p),
        service("apps", "shop-canary", 80, canary.addr),
        service("apps", "admin", 80, p),
        service("apps", "app", 80, p),
    ]
    .concat();
    let dir = tempfile::tempdir().unwrap();
    let (_proc, gw) = serve(
        dir.path(),
        &[
            "redirects.in.yaml",
            "rewrite.in.yaml",
            "canary.in.yaml",
            "cors.in.yaml",
            "source-range.in.yaml",
            "rate-limit.in.yaml",
        ],
        &services,
    );

    // permanent-redirect + permanent-redirect-code: 308 to the URL.
    let (s, a) = req(gw, "GET", "old.example.com", "/anything", "");
    assert_eq!(s, 308, "{a}");
    assert_eq!(
        header(&a, "location").as_deref(),
        Some("https://new.example.com/landing")
    );
    // temporal-redirect: 302, host and port of the URL.
    let (s, a) = req(gw, "GET", "down.example.com", "/x", "");
    assert_eq!(s, 302, "{a}");
    assert_eq!(
        header(&a, "location").as_deref(),
        Some("http://status.example.com:8080/down")
    );
    // force-ssl-redirect: 308 to https before anything else (app-root included).
    let (s, a) = req(gw, "GET", "portal.example.com", "/", "");
    assert_eq!(s, 308, "{a}");
    assert_eq!(
        header(&a, "location").as_deref(),
        Some("https://portal.example.com/")
    );

    // rewrite-target /$2 on /something(/|$)(.*): the backend sees the rest.
    let (s, a) = req(
        gw,
        "GET",
        "rewrite.example.com",
        "/something/deep/path?x=1",
        "",
    );
    assert_eq!(s, 200, "{a}");
    assert!(a.ends_with("rec /deep/path?x=1"), "{a}");
    let (_, a) = req(gw, "GET", "rewrite.example.com", "/something", "");
    assert!(a.ends_with("rec /"), "{a}");
    // rewrite-target / without captures: the whole path is replaced (nginx's rewrite).
    let (_, a) = req(gw, "GET", "rewrite.example.com", "/app/page", "");
    assert!(a.ends_with("rec /"), "{a}");

    // canary-by-header: always → canary, never → primary; by cookie; by value.
    let (_, a) = req(
        gw,
        "GET",
        "shop.example.com",
        "/h-always",
        "x-canary: always\r\n",
    );
    assert!(
        a.ends_with("rec /h-always") && canary.received().contains("GET /h-always "),
        "{a}"
    );
    req(
        gw,
        "GET",
        "shop.example.com",
        "/h-never",
        "x-canary: never\r\n",
    );
    assert!(
        primary.received().contains("GET /h-never ") && !canary.received().contains("/h-never")
    );
    req(
        gw,
        "GET",
        "shop.example.com",
        "/c-always",
        "cookie: a=1; canary=always\r\n",
    );
    assert!(canary.received().contains("GET /c-always "));
    req(
        gw,
        "GET",
        "shop.example.com",
        "/checkout/beta",
        "x-beta: yes\r\n",
    );
    assert!(canary.received().contains("GET /checkout/beta "));
    req(gw, "GET", "shop.example.com", "/checkout/plain", "");
    assert!(primary.received().contains("GET /checkout/plain "));
    // canary-weight 20: about a fifth of the requests.
    for i in 0..200 {
        let (s, _) = req(gw, "GET", "shop.example.com", &format!("/w{i}"), "");
        assert_eq!(s, 200);
    }
    let to_canary = canary.received().matches("GET /w").count();
    assert!(
        (15..=75).contains(&to_canary),
        "{to_canary} of 200 went to the canary (weight 20)"
    );

    // enable-cors: a preflight from an allowed origin is answered at the gateway.
    let (s, a) = req(
        gw,
        "OPTIONS",
        "api.example.com",
        "/items",
        "origin: https://app.example.com\r\naccess-control-request-method: POST\r\n",
    );
    // ingress-nginx answers 204; Portcullis 200 (a documented difference).
    assert_eq!(s, 200, "{a}");
    assert_eq!(
        header(&a, "access-control-allow-origin").as_deref(),
        Some("https://app.example.com")
    );
    assert!(
        header(&a, "access-control-allow-methods").is_some_and(|m| m.contains("POST")),
        "{a}"
    );
    assert_eq!(header(&a, "access-control-max-age").as_deref(), Some("600"));
    let (_, a) = req(
        gw,
        "OPTIONS",
        "api.example.com",
        "/items",
        "origin: https://evil.example\r\naccess-control-request-method: POST\r\n",
    );
    assert_eq!(header(&a, "access-control-allow-origin"), None, "{a}");

    // whitelist-source-range 10/8, 192.168/16: 127.0.0.1 is refused 403.
    assert_eq!(req(gw, "GET", "admin.example.com", "/", "").0, 403);
    // denylist-source-range elsewhere: 127.0.0.1 passes.
    assert_eq!(req(gw, "GET", "app.example.com", "/", "").0, 200);

    // limit-rps 5: five at once pass, then 429 (ingress-nginx: 503, and a
    // burst of 5 × 3 more; the report says so).
    let answers: Vec<u16> = (0..12)
        .map(|i| req(gw, "GET", "api.example.com", &format!("/search?{i}"), "").0)
        .collect();
    assert!(answers[..5].iter().all(|s| *s == 200), "{answers:?}");
    assert!(answers.contains(&429), "{answers:?}");
}

#[test]
fn basic_auth_and_ssl_redirect_behave_as_in_ingress_nginx() {
    let backend = Recorder::start();
    let b = backend.addr;
    let services = [
        service("default", "web", 80, b),
        service("apps", "shop", 80, b),
        service("apps", "admin", 80, b),
        service("apps", "app", 80, b),
    ]
    .concat();
    let dir = tempfile::tempdir().unwrap();
    let (_proc, gw) = serve(
        dir.path(),
        &["basic-auth.in.yaml", "tls-multi.in.yaml"],
        &services,
    );

    // auth-type basic, auth-file Secret: 401 without credentials, 200 with.
    let (s, a) = req(gw, "GET", "admin.example.com", "/", "");
    assert_eq!(s, 401, "{a}");
    assert!(
        header(&a, "www-authenticate").is_some_and(|v| v.starts_with("Basic")),
        "{a}"
    );
    assert_eq!(
        req(
            gw,
            "GET",
            "admin.example.com",
            "/",
            &basic("alice:wonder land")
        )
        .0,
        200
    );
    assert_eq!(
        req(gw, "GET", "admin.example.com", "/", &basic("alice:wrong")).0,
        401
    );
    // bob's MD5 hash is skipped by Portcullis (the report says so): 401.
    assert_eq!(
        req(gw, "GET", "admin.example.com", "/", &basic("bob:anything")).0,
        401
    );
    // auth-map Secret in another namespace (ReferenceGrant).
    assert_eq!(req(gw, "GET", "ops.example.com", "/", "").0, 401);
    assert_eq!(
        req(
            gw,
            "GET",
            "ops.example.com",
            "/",
            &basic("carol:b0b-secret")
        )
        .0,
        200
    );

    // TLS host: HTTP is redirected 308 to https (ssl-redirect's default).
    let (s, a) = req(gw, "GET", "www.example.com", "/page?q=1", "");
    assert_eq!(s, 308, "{a}");
    assert_eq!(
        header(&a, "location").as_deref(),
        Some("https://www.example.com/page?q=1")
    );
    let (s, _) = req(gw, "GET", "x.tenants.example.com", "/", "");
    assert_eq!(s, 308);
    // ssl-redirect "false": HTTP is served.
    assert_eq!(req(gw, "GET", "shop.example.com", "/", "").0, 200);
}
