//! HTTPS listeners: certificates by SNI, ALPN, 421, client certificates,
//! rotation on apply, and curl.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::tls::*;
use common::*;
use portcullis_dataplane::{Dataplane, Options};
use portcullis_ir::*;

fn https(addr: SocketAddr, listeners: Vec<Listener>) -> Port {
    port(addr, PortProtocol::Https, listeners)
}

/// Two listeners on one port: `a.example.com` (RSA certificate) and
/// `*.example.com` (ECDSA certificate), each routing to its own echo.
struct TwoListeners {
    ca: Ca,
    exact: Leaf,
    wild: Leaf,
    _a: Echo,
    _w: Echo,
    dp: Dataplane,
    addr: SocketAddr,
}

async fn two_listeners() -> TwoListeners {
    let ca = Ca::new("frontend ca");
    let exact = ca.leaf_with(&["a.example.com"], true);
    let wild = ca.leaf(&["*.example.com"]);
    let (a, w) = (Echo::start("a").await, Echo::start("w").await);
    let dp = Dataplane::new(Options::default());
    let listeners = vec![
        tls_listener(
            "gw/a",
            Some("a.example.com"),
            vec![exact.ir("ns/a")],
            None,
            vec![rule("ra", prefix("/"), vec![wb(1, a.backend())])],
        ),
        tls_listener(
            "gw/w",
            Some("*.example.com"),
            vec![wild.ir("ns/w")],
            None,
            vec![rule("rw", prefix("/"), vec![wb(1, w.backend())])],
        ),
    ];
    let addr = apply_port(&dp, |a| https(a, listeners.clone())).await;
    TwoListeners {
        ca,
        exact,
        wild,
        _a: a,
        _w: w,
        dp,
        addr,
    }
}

#[tokio::test]
async fn sni_selects_exact_then_wildcard_certificate_and_listener() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let t = two_listeners().await;
        let cfg = client_config(&t.ca, &[b"http/1.1"], None);

        let mut c = TlsHttp::connect(t.addr, cfg.clone(), "a.example.com")
            .await
            .unwrap();
        assert_eq!(
            c.cert,
            t.exact.der(),
            "exact SNI gets the exact listener's certificate"
        );
        let g = c.get("a.example.com", "/x").await.unwrap();
        assert_eq!(g.status, 200);
        assert_eq!(g.json()["backend"], "a");
        assert_eq!(g.echoed("x-forwarded-proto").as_deref(), Some("https"));

        let mut c = TlsHttp::connect(t.addr, cfg.clone(), "b.example.com")
            .await
            .unwrap();
        assert_eq!(
            c.cert,
            t.wild.der(),
            "other names get the wildcard certificate"
        );
        let g = c.get("b.example.com", "/").await.unwrap();
        assert_eq!(g.json()["backend"], "w");
        let g = c.get("deep.b.example.com", "/").await.unwrap();
        assert_eq!(g.json()["backend"], "w");

        assert!(
            tls_connect(t.addr, cfg, "other.org").await.is_err(),
            "an SNI no listener serves fails the handshake"
        );
        t.dp.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn alpn_selects_http2_or_http1_over_tls() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let t = two_listeners().await;
        for (alpn, want_h2) in [
            (&[&b"h2"[..], b"http/1.1"][..], true),
            (&[&b"http/1.1"[..]][..], false),
            (&[][..], false),
        ] {
            let cfg = client_config(&t.ca, alpn, None);
            let mut c = TlsHttp::connect(t.addr, cfg, "a.example.com")
                .await
                .unwrap();
            assert_eq!(c.h2, want_h2, "ALPN {alpn:?}");
            for i in 0..3 {
                let g = c.get("a.example.com", &format!("/n{i}")).await.unwrap();
                assert_eq!(g.status, 200, "ALPN {alpn:?}");
                assert_eq!(g.json()["path"], format!("/n{i}"));
                assert_eq!(g.json()["host"], "a.example.com");
            }
        }
        t.dp.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn host_of_another_listener_than_the_sni_is_misdirected_421() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let t = two_listeners().await;
        for alpn in [&b"http/1.1"[..], b"h2"] {
            let cfg = client_config(&t.ca, &[alpn], None);
            // SNI a (exact listener), Host of the wildcard listener.
            let mut c = TlsHttp::connect(t.addr, cfg.clone(), "a.example.com")
                .await
                .unwrap();
            let g = c.get("b.example.com", "/").await.unwrap();
            assert_eq!(g.status, 421, "{alpn:?}");
            // The connection stays usable for its own host.
            assert_eq!(c.get("a.example.com", "/").await.unwrap().status, 200);
            // SNI b (wildcard), Host a: a more specific listener owns it.
            let mut c = TlsHttp::connect(t.addr, cfg.clone(), "b.example.com")
                .await
                .unwrap();
            assert_eq!(c.get("a.example.com", "/").await.unwrap().status, 421);
            // Same listener, another name it covers: served.
            let g = c.get("c.example.com:443", "/").await.unwrap();
            assert_eq!(g.status, 200);
            assert_eq!(g.json()["backend"], "w");
            // A host no listener serves is not misdirected: plain 404.
            assert_eq!(c.get("unknown.org", "/").await.unwrap().status, 404);
        }
        t.dp.shutdown().await;
    })
    .await
    .unwrap();
}

async fn client_cert_port(
    fallback: bool,
    client_ca: &Ca,
    server: &Leaf,
    e: &Echo,
) -> (Dataplane, SocketAddr) {
    let dp = Dataplane::new(Options::default());
    let validation = ClientValidation {
        ca_pem: client_ca.pem.clone(),
        allow_insecure_fallback: fallback,
    };
    let l = tls_listener(
        "gw/mtls",
        Some("mtls.example.com"),
        vec![server.ir("ns/mtls")],
        Some(validation),
        vec![rule("r", prefix("/"), vec![wb(1, e.backend())])],
    );
    let addr = apply_port(&dp, |a| https(a, vec![l.clone()])).await;
    (dp, addr)
}

/// Whether a GET over a fresh TLS connection succeeds (200).
async fn get_ok(addr: SocketAddr, cfg: Arc<portcullis_tls::rustls::ClientConfig>) -> bool {
    let Ok(mut c) = TlsHttp::connect(addr, cfg, "mtls.example.com").await else {
        return false;
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(5), c.get("mtls.example.com", "/")).await,
        Ok(Ok(g)) if g.status == 200
    )
}

#[tokio::test]
async fn client_certificate_required_or_insecure_fallback() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let ca = Ca::new("server ca");
        let server = ca.leaf(&["mtls.example.com"]);
        let client_ca = Ca::new("client ca");
        let good = client_ca.leaf(&["client.example.com"]);
        let bad = Ca::new("rogue ca").leaf(&["client.example.com"]);
        let e = Echo::start("mtls").await;
        let none = client_config(&ca, &[b"http/1.1"], None);
        let with_good = client_config(&ca, &[b"h2"], Some(&good));
        let with_bad = client_config(&ca, &[b"http/1.1"], Some(&bad));

        let (dp, strict) = client_cert_port(false, &client_ca, &server, &e).await;
        assert!(
            get_ok(strict, with_good.clone()).await,
            "valid client certificate"
        );
        assert!(
            !get_ok(strict, none.clone()).await,
            "no client certificate is refused"
        );
        assert!(
            !get_ok(strict, with_bad.clone()).await,
            "an untrusted client certificate is refused"
        );
        dp.shutdown().await;

        let (dp, lax) = client_cert_port(true, &client_ca, &server, &e).await;
        assert!(get_ok(lax, with_good).await);
        assert!(
            get_ok(lax, none).await,
            "AllowInsecureFallback: no certificate is accepted"
        );
        assert!(
            get_ok(lax, with_bad).await,
            "AllowInsecureFallback: an invalid certificate is accepted"
        );
        dp.shutdown().await;
    })
    .await
    .unwrap();
}

fn rotating(addr: SocketAddr, cert: Certificate, e: &Echo) -> Arc<Config> {
    Arc::new(Config {
        ports: vec![https(
            addr,
            vec![tls_listener(
                "gw/r",
                Some("r.example.com"),
                vec![cert],
                None,
                vec![rule("r", prefix("/"), vec![wb(1, e.backend())])],
            )],
        )],
    })
}

#[tokio::test]
async fn rotation_on_apply_keeps_open_connections_and_serves_the_new_certificate() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let ca = Ca::new("rotation ca");
        let (v1, v2) = (ca.leaf(&["r.example.com"]), ca.leaf(&["r.example.com"]));
        let e = Echo::start("r").await;
        let dp = Dataplane::new(Options::default());
        let addr = apply_port(&dp, |a| rotating(a, v1.ir("ns/r"), &e).ports[0].clone()).await;
        let h2 = client_config(&ca, &[b"h2"], None);
        let h1 = client_config(&ca, &[b"http/1.1"], None);
        let mut old_h2 = TlsHttp::connect(addr, h2.clone(), "r.example.com")
            .await
            .unwrap();
        let mut old_h1 = TlsHttp::connect(addr, h1.clone(), "r.example.com")
            .await
            .unwrap();
        assert_eq!(old_h2.cert, v1.der());
        assert_eq!(old_h2.get("r.example.com", "/").await.unwrap().status, 200);

        let report = dp.apply(rotating(addr, v2.ir("ns/r"), &e)).await;
        assert!(
            report.tls_errors.is_empty() && report.bind_errors.is_empty(),
            "{report:?}"
        );
        for c in [&mut old_h2, &mut old_h1] {
            let g = c
                .get("r.example.com", "/after")
                .await
                .expect("open connection survives rotation");
            assert_eq!(g.status, 200);
        }
        let mut new = TlsHttp::connect(addr, h1.clone(), "r.example.com")
            .await
            .unwrap();
        assert_eq!(
            new.cert,
            v2.der(),
            "the next handshake sees the new certificate"
        );
        assert_eq!(new.get("r.example.com", "/").await.unwrap().status, 200);

        // A key that does not match its certificate: reported, the previous
        // configuration stays.
        let broken = Certificate {
            source: "ns/r".into(),
            cert_pem: v1.cert_pem.clone(),
            key_pem: v2.key_pem.clone(),
        };
        let report = dp.apply(rotating(addr, broken, &e)).await;
        assert!(report.tls_errors.contains_key(&addr), "{report:?}");
        let mut after = TlsHttp::connect(addr, h2, "r.example.com").await.unwrap();
        assert_eq!(after.cert, v2.der());
        assert_eq!(after.get("r.example.com", "/").await.unwrap().status, 200);
        assert_eq!(old_h2.get("r.example.com", "/").await.unwrap().status, 200);
        dp.shutdown().await;
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn new_https_port_with_unusable_certificate_is_reported_then_fixed() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let ca = Ca::new("ca");
        let (good, other) = (ca.leaf(&["r.example.com"]), ca.leaf(&["r.example.com"]));
        let e = Echo::start("r").await;
        let dp = Dataplane::new(Options::default());
        let broken = Certificate {
            source: "ns/r".into(),
            cert_pem: good.cert_pem.clone(),
            key_pem: other.key_pem.clone(),
        };
        let addr = free_addr();
        let report = dp.apply(rotating(addr, broken, &e)).await;
        assert!(report.bind_errors.is_empty(), "{report:?}");
        assert!(
            report.tls_errors[&addr].contains("Secret ns/r"),
            "the error names the Secret: {report:?}"
        );
        let cfg = client_config(&ca, &[b"http/1.1"], None);
        assert!(
            tls_connect(addr, cfg.clone(), "r.example.com")
                .await
                .is_err()
        );
        let report = dp.apply(rotating(addr, good.ir("ns/r"), &e)).await;
        assert!(report.tls_errors.is_empty(), "{report:?}");
        let mut c = TlsHttp::connect(addr, cfg, "r.example.com").await.unwrap();
        assert_eq!(c.get("r.example.com", "/").await.unwrap().status, 200);
        dp.shutdown().await;
    })
    .await
    .unwrap();
}

/// Runs curl with `args`; fails the test with a clear message when curl is missing.
async fn curl(args: &[String]) -> std::process::Output {
    let mut cmd = tokio::process::Command::new("curl");
    cmd.args(args).kill_on_drop(true);
    match cmd.output().await {
        Ok(o) => o,
        Err(e) => panic!("this test needs curl on PATH (could not run it: {e})"),
    }
}

#[tokio::test]
async fn curl_http2_and_client_certificate_against_https_listener() {
    tokio::time::timeout(TEST_TIMEOUT, async {
        let version = curl(&["--version".into()]).await;
        let version = String::from_utf8_lossy(&version.stdout);
        assert!(
            version.contains("HTTP2"),
            "this test needs a curl with HTTP/2 support:\n{version}"
        );
        let t = two_listeners().await;
        let dir = std::env::temp_dir().join(format!(
            "portcullis-https-{}-{}",
            std::process::id(),
            t.addr.port()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let ca_file = dir.join("ca.pem");
        std::fs::write(&ca_file, &t.ca.pem).unwrap();
        let port = t.addr.port();
        let out = curl(&[
            "--http2".into(),
            "-sS".into(),
            "--max-time".into(),
            "10".into(),
            "--cacert".into(),
            ca_file.display().to_string(),
            "--resolve".into(),
            format!("a.example.com:{port}:127.0.0.1"),
            "-w".into(),
            "\n%{http_version} %{response_code}".into(),
            format!("https://a.example.com:{port}/curl"),
        ])
        .await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "curl failed: {}\n{stdout}",
            String::from_utf8_lossy(&out.stderr)
        );
        let (body, meta) = stdout.rsplit_once('\n').unwrap();
        assert_eq!(meta, "2 200", "curl negotiated HTTP/2 and got 200");
        let json: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(json["backend"], "a");
        assert_eq!(json["path"], "/curl");

        // Misdirected: SNI a.example.com, Host header of the wildcard listener.
        let out = curl(&[
            "--http2".into(),
            "-sS".into(),
            "--max-time".into(),
            "10".into(),
            "--cacert".into(),
            ca_file.display().to_string(),
            "--resolve".into(),
            format!("a.example.com:{port}:127.0.0.1"),
            "-H".into(),
            "Host: b.example.com".into(),
            "-o".into(),
            "/dev/null".into(),
            "-w".into(),
            "%{response_code}".into(),
            format!("https://a.example.com:{port}/"),
        ])
        .await;
        assert_eq!(String::from_utf8_lossy(&out.stdout), "421");
        t.dp.shutdown().await;

        // Client certificate with --cert/--key.
        let client_ca = Ca::new("client ca");
        let client = client_ca.leaf(&["client.example.com"]);
        let server = t.ca.leaf(&["mtls.example.com"]);
        let e = Echo::start("mtls").await;
        let (dp, addr) = client_cert_port(false, &client_ca, &server, &e).await;
        let (cert_file, key_file) = (dir.join("client.pem"), dir.join("client.key"));
        std::fs::write(&cert_file, &client.cert_pem).unwrap();
        std::fs::write(&key_file, &client.key_pem).unwrap();
        let base = |with_cert: bool| {
            let mut a: Vec<String> = vec![
                "-sS".into(),
                "--max-time".into(),
                "10".into(),
                "--cacert".into(),
                ca_file.display().to_string(),
                "--resolve".into(),
                format!("mtls.example.com:{}:127.0.0.1", addr.port()),
                "-o".into(),
                "/dev/null".into(),
                "-w".into(),
                "%{response_code}".into(),
            ];
            if with_cert {
                a.extend([
                    "--cert".into(),
                    cert_file.display().to_string(),
                    "--key".into(),
                    key_file.display().to_string(),
                ]);
            }
            a.push(format!("https://mtls.example.com:{}/", addr.port()));
            a
        };
        let out = curl(&base(true)).await;
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "200",
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = curl(&base(false)).await;
        assert!(
            !out.status.success(),
            "without a client certificate curl must fail"
        );
        dp.shutdown().await;
        let _ = std::fs::remove_dir_all(&dir);
    })
    .await
    .unwrap();
}

/// The TLS metrics after real handshakes: completed ones, and failed ones by
/// reason (a plain-text request on the TLS port is `protocol`, a client that
/// hangs up mid-handshake is `eof`), labelled by the bound port.
#[tokio::test]
async fn tls_handshakes_and_their_failures_are_counted() {
    let t = two_listeners().await;
    let cfg = client_config(&t.ca, &[b"http/1.1"], None);
    for _ in 0..2 {
        let s = tls_connect(t.addr, cfg.clone(), "a.example.com")
            .await
            .unwrap();
        drop(s);
    }
    // Plain HTTP on the TLS port.
    let mut s = tokio::net::TcpStream::connect(t.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut s, b"GET / HTTP/1.1\r\nhost: a\r\n\r\n")
        .await
        .unwrap();
    let mut sink = Vec::new();
    let _ = tokio::time::timeout(
        Duration::from_secs(5),
        tokio::io::AsyncReadExt::read_to_end(&mut s, &mut sink),
    )
    .await;
    // A ClientHello's first bytes, then gone.
    let mut s = tokio::net::TcpStream::connect(t.addr).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut s, &[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .unwrap();
    drop(s);
    let port = format!(":{}\"", t.addr.port());
    let value = |text: &str, prefix: &str| -> Option<u64> {
        text.lines()
            .find(|l| l.starts_with(prefix) && l.contains(&port))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
    };
    let mut text = String::new();
    for _ in 0..250 {
        text = portcullis_obs::render();
        let done = value(&text, "portcullis_tls_handshakes_total{") == Some(2)
            && value(&text, "portcullis_tls_handshake_failures_total{").is_some()
            && text.contains("reason=\"eof\"");
        if done {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(
        value(&text, "portcullis_tls_handshakes_total{"),
        Some(2),
        "{text}"
    );
    let failures: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("portcullis_tls_handshake_failures_total{") && l.contains(&port))
        .collect();
    assert!(
        failures
            .iter()
            .any(|l| l.contains("reason=\"protocol\"") && l.ends_with(" 1")),
        "{failures:?}"
    );
    assert!(
        failures
            .iter()
            .any(|l| l.contains("reason=\"eof\"") && l.ends_with(" 1")),
        "{failures:?}"
    );
    // Four connections accepted on the port, whatever became of them.
    assert!(
        text.lines().any(
            |l| l.starts_with("portcullis_downstream_connections_total{")
                && l.contains(&port)
                && l.contains("protocol=\"https\"")
                && l.ends_with(" 4")
        ),
        "{text}"
    );
    drop(t.dp);
}
