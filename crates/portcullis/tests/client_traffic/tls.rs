//! ClientTrafficPolicy `tls` through `portcullis run`, with real TLS clients
//! (`openssl s_client`, `curl`) on 127.0.0.1: `minVersion: "1.3"` refuses a
//! TLS 1.2 client and serves a TLS 1.3 one; `maxVersion: "1.2"` negotiates
//! 1.2; `ciphers` restricts the TLS 1.2 suites; `alpnProtocols: [http/1.1]`
//! answers an h2-offering client over HTTP/1.1.

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::common::{
    Recorder, free_addr, free_port, gateway_with, listener_policy, route_to_svc, start, wait_for,
};

/// A self-signed P-256 certificate for `a.example`: (cert PEM, key PEM).
fn self_signed(dir: &Path) -> (String, String) {
    let st = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=a.example",
            "-addext",
            "subjectAltName=DNS:a.example",
            "-keyout",
            "k.pem",
            "-out",
            "c.pem",
        ])
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl is installed");
    assert!(st.success(), "openssl req");
    let read = |f: &str| std::fs::read_to_string(dir.join(f)).unwrap();
    (read("c.pem"), read("k.pem"))
}

/// Base64 of `s` (a Secret `data` value).
fn b64(s: &str) -> String {
    use std::io::Write;
    let mut child = Command::new("base64")
        .arg("-w0")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap()
}

fn config(ports: [u16; 3], backend: SocketAddr, crt: &str, key: &str) -> String {
    let listener = |name: &str, port: u16| {
        format!(
            "  - {{name: {name}, port: {port}, protocol: HTTPS, tls: {{certificateRefs: [{{name: cert}}]}}}}\n"
        )
    };
    let secret = format!(
        "---\napiVersion: v1\nkind: Secret\nmetadata: {{name: cert, namespace: default}}\ntype: kubernetes.io/tls\ndata:\n  tls.crt: {}\n  tls.key: {}\n",
        b64(crt),
        b64(key)
    );
    let docs = secret
        + &route_to_svc("")
        + &listener_policy("tls13", r#"  tls: {minVersion: "1.3"}"#)
        + &listener_policy(
            "tls12",
            r#"  tls: {maxVersion: "1.2", ciphers: [ECDHE-ECDSA-AES128-GCM-SHA256]}"#,
        )
        + &listener_policy("alpn", "  tls: {alpnProtocols: [http/1.1]}");
    let listeners =
        listener("tls13", ports[0]) + &listener("tls12", ports[1]) + &listener("alpn", ports[2]);
    gateway_with(&listeners, &docs, backend)
}

/// `openssl s_client` against `port` with `args`: (success, stdout). The
/// process ends on its own once stdin (empty) is closed, bounded by `timeout`.
fn s_client(port: u16, args: &[&str]) -> (bool, String) {
    let out = Command::new("timeout")
        .args(["10", "openssl", "s_client", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .args(["-servername", "a.example"])
        .args(args)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .expect("openssl is installed");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// The line `New, TLSv1.x, Cipher is …` of an `s_client` session, if any.
fn session(out: &str) -> Option<&str> {
    out.lines()
        .find(|l| l.starts_with("New, TLS"))
        .map(str::trim)
}

/// `curl` of `/path` on `port` with `args`: (exit code, `http_version status`).
fn curl(port: u16, path: &str, args: &[&str]) -> (i32, String) {
    let out = Command::new("curl")
        .args(["-sk", "--max-time", "10", "-o", "/dev/null"])
        .args(["-w", "%{http_version} %{http_code}"])
        .args(["--resolve", &format!("a.example:{port}:127.0.0.1")])
        .args(args)
        .arg(format!("https://a.example:{port}{path}"))
        .output()
        .expect("curl is installed");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn tls_settings_with_real_clients() {
    let backend = Recorder::start();
    let ports = [free_port(), free_port(), free_port()];
    let admin = free_addr();
    let certs = tempfile::tempdir().unwrap();
    let (crt, key) = self_signed(certs.path());
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("gateway.yaml"),
        config(ports, backend.addr, &crt, &key),
    )
    .unwrap();
    let _p = start(dir.path(), admin, &[]);
    wait_for("https listeners", Duration::from_secs(10), || {
        ports.iter().all(|p| curl(*p, "/ready", &[]).0 == 0)
    });

    // minVersion 1.3: a TLS 1.2-only client is refused, a TLS 1.3 one served.
    let (ok, out) = s_client(ports[0], &["-tls1_2"]);
    assert!(
        !ok && session(&out).is_none_or(|s| s.contains("(NONE)")),
        "{out}"
    );
    let (code, _) = curl(ports[0], "/v12", &["--tlsv1.2", "--tls-max", "1.2"]);
    assert_eq!(code, 35, "curl: TLS handshake failure");
    let (ok, out) = s_client(ports[0], &["-tls1_3"]);
    assert!(ok, "{out}");
    assert!(session(&out).unwrap().starts_with("New, TLSv1.3"), "{out}");
    assert_eq!(curl(ports[0], "/v13", &["--tlsv1.3"]), (0, "2 200".into()));
    assert!(backend.received().contains("GET /v13 "));
    assert!(!backend.received().contains("GET /v12 "));

    // maxVersion 1.2 with one TLS 1.2 suite: 1.2 is negotiated with that
    // suite; another suite, or TLS 1.3 only, is refused.
    let (ok, out) = s_client(ports[1], &[]);
    assert!(ok, "{out}");
    assert_eq!(
        session(&out),
        Some("New, TLSv1.2, Cipher is ECDHE-ECDSA-AES128-GCM-SHA256"),
        "{out}"
    );
    let (ok, out) = s_client(
        ports[1],
        &["-tls1_2", "-cipher", "ECDHE-ECDSA-AES256-GCM-SHA384"],
    );
    assert!(!ok, "a suite outside `ciphers` was accepted: {out}");
    let (ok, out) = s_client(ports[1], &["-tls1_3"]);
    assert!(!ok, "TLS 1.3 accepted above maxVersion: {out}");
    assert_eq!(curl(ports[1], "/max12", &[]), (0, "2 200".into()));

    // alpnProtocols [http/1.1]: an h2-offering client gets HTTP/1.1.
    let (ok, out) = s_client(ports[2], &["-alpn", "h2,http/1.1"]);
    assert!(ok, "{out}");
    assert!(out.contains("ALPN protocol: http/1.1"), "{out}");
    assert_eq!(curl(ports[2], "/alpn", &["--http2"]), (0, "1.1 200".into()));
    // Without the setting, the same client gets h2.
    assert_eq!(curl(ports[1], "/h2", &["--http2"]), (0, "2 200".into()));
}
