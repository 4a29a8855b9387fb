//! Real clients against a `SwappableAcceptor`: `openssl s_client -servername`
//! and `curl --cacert` (and `--cert`/`--key`). Both binaries are required:
//! `.ci/run` installs them; without them these tests fail and say so.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use common::*;
use portcullis_ir::{ClientValidation, Listener};
use portcullis_tls::{Alpn, ServerTls, SwappableAcceptor, host_allowed_for_sni};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::process::Command;

fn require(bin: &str) {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(bin).is_file()));
    assert!(
        found,
        "`{bin}` is not installed: these tests need the real `{bin}` binary (.ci/run installs curl and openssl)"
    );
}

/// Runs a client process to completion (killed through its handle if it overruns).
async fn run(cmd: &mut Command) -> std::process::Output {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let child = cmd.spawn().expect("spawning client");
    tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .expect("client process overran 20s")
        .expect("client process")
}

/// A tiny HTTP/1.1 server: answers 421 when the Host belongs to another
/// listener than the SNI's, else 200 with the listener and client-cert status.
async fn https_server(tls: ServerTls, listeners: Vec<Listener>) -> SocketAddr {
    let acceptor = Arc::new(SwappableAcceptor::new(tls));
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let listeners = Arc::new(listeners);
    tokio::spawn(async move {
        while let Ok((tcp, _)) = l.accept().await {
            let (acceptor, listeners) = (acceptor.clone(), listeners.clone());
            tokio::spawn(async move {
                let Ok((mut s, info)) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut req = Vec::new();
                let mut buf = [0u8; 2048];
                while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => req.extend_from_slice(&buf[..n]),
                    }
                }
                let req = String::from_utf8_lossy(&req);
                let host = req
                    .lines()
                    .find_map(|l| {
                        l.strip_prefix("Host: ")
                            .or_else(|| l.strip_prefix("host: "))
                    })
                    .unwrap_or("")
                    .trim()
                    .to_owned();
                let (status, body) = if host_allowed_for_sni(info.sni.as_deref(), &host, &listeners)
                {
                    (
                        "200 OK",
                        format!(
                            "listener={} client_cert={:?}\n",
                            info.listener.unwrap_or_default(),
                            info.client_cert
                        ),
                    )
                } else {
                    ("421 Misdirected Request", "misdirected\n".to_owned())
                };
                let resp = format!(
                    "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = s.write_all(resp.as_bytes()).await;
                let _ = s.shutdown().await;
            });
        }
    });
    addr
}

fn write(dir: &Path, name: &str, content: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p.to_str().unwrap().to_owned()
}

#[tokio::test]
async fn openssl_s_client_sees_the_sni_certificate_and_alpn() {
    require("openssl");
    bounded(async {
        let ca = Ca::new("openssl ca");
        let exact = ca.leaf(&["a.example.com"], Alg::Rsa);
        let wild = ca.leaf(&["*.example.com"], Alg::Ecdsa);
        let ls = vec![
            listener(
                "gw/exact",
                Some("a.example.com"),
                vec![exact.ir("ns/a")],
                None,
            ),
            listener(
                "gw/wild",
                Some("*.example.com"),
                vec![wild.ir("ns/w")],
                None,
            ),
        ];
        let addr = https_server(ServerTls::build(&ls, Alpn::Http).unwrap(), ls).await;
        let dir = tempfile::tempdir().unwrap();
        let ca_file = write(dir.path(), "ca.pem", &ca.pem);
        for (sni, cn) in [
            ("a.example.com", "a.example.com"),
            ("zz.example.com", "*.example.com"),
        ] {
            let out = run(Command::new("openssl").args([
                "s_client",
                "-connect",
                &addr.to_string(),
                "-servername",
                sni,
                "-CAfile",
                &ca_file,
                "-verify_hostname",
                sni,
                "-alpn",
                "h2,http/1.1",
            ]))
            .await;
            let stdout = String::from_utf8_lossy(&out.stdout);
            assert!(
                stdout.contains("Verify return code: 0 (ok)"),
                "{sni}: {stdout}"
            );
            assert!(stdout.contains("ALPN protocol: h2"), "{sni}: {stdout}");
            assert!(
                stdout.contains(&format!("CN = {cn}")) || stdout.contains(&format!("CN={cn}")),
                "{sni}: {stdout}"
            );
        }
        // An SNI no listener serves: the handshake fails.
        let out = run(Command::new("openssl").args([
            "s_client",
            "-connect",
            &addr.to_string(),
            "-servername",
            "other.org",
            "-CAfile",
            &ca_file,
        ]))
        .await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("no peer certificate available") && stdout.contains("Cipher is (NONE)"),
            "{stdout}"
        );
    })
    .await
}

#[tokio::test]
async fn curl_with_cacert_client_certificates_and_misdirected_requests() {
    require("curl");
    bounded(async {
        let ca = Ca::new("curl ca");
        let client_ca = Ca::new("curl client ca");
        let exact = ca.leaf(&["a.example.com"], Alg::Ecdsa);
        let wild = ca.leaf(&["*.example.com"], Alg::Rsa);
        let good = client_ca.leaf(&["curl-client"], Alg::Ecdsa);
        let stranger = Ca::new("stranger").leaf(&["curl-client"], Alg::Ecdsa);
        let v = ClientValidation {
            ca_pem: client_ca.pem.clone(),
            allow_insecure_fallback: false,
        };
        let ls = vec![
            listener(
                "gw/exact",
                Some("a.example.com"),
                vec![exact.ir("ns/a")],
                None,
            ),
            listener(
                "gw/mtls",
                Some("*.example.com"),
                vec![wild.ir("ns/w")],
                Some(v),
            ),
        ];
        let addr = https_server(ServerTls::build(&ls, Alpn::Http).unwrap(), ls).await;
        let port = addr.port();
        let dir = tempfile::tempdir().unwrap();
        let ca_file = write(dir.path(), "ca.pem", &ca.pem);
        let good_cert = write(dir.path(), "good.pem", &good.cert_pem);
        let good_key = write(dir.path(), "good.key", &good.key_pem);
        let bad_cert = write(dir.path(), "bad.pem", &stranger.cert_pem);
        let bad_key = write(dir.path(), "bad.key", &stranger.key_pem);
        let curl = |host: &str, extra: &[&str]| {
            let mut c = Command::new("curl");
            c.args(["-sS", "--http1.1", "--max-time", "10", "--cacert", &ca_file])
                .args(["--resolve", &format!("{host}:{port}:127.0.0.1")])
                .args(["-w", "\n%{http_code}"])
                .args(extra)
                .arg(format!("https://{host}:{port}/"));
            c
        };

        let out = run(&mut curl("a.example.com", &[])).await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout} {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.contains("listener=gw/exact client_cert=NotRequested")
                && stdout.ends_with("200"),
            "{stdout}"
        );

        // SNI a.example.com, Host of the other listener: 421.
        let out = run(&mut curl("a.example.com", &["-H", "Host: b.example.com"])).await;
        assert!(
            String::from_utf8_lossy(&out.stdout).ends_with("421"),
            "{:?}",
            out
        );

        // The wildcard listener requires a valid client certificate.
        let out = run(&mut curl(
            "b.example.com",
            &["--cert", &good_cert, "--key", &good_key],
        ))
        .await;
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            stdout.contains("listener=gw/mtls client_cert=Valid") && stdout.ends_with("200"),
            "{stdout} {out:?}"
        );
        let out = run(&mut curl("b.example.com", &[])).await;
        assert!(
            !out.status.success(),
            "no client certificate must fail: {out:?}"
        );
        let out = run(&mut curl(
            "b.example.com",
            &["--cert", &bad_cert, "--key", &bad_key],
        ))
        .await;
        assert!(
            !out.status.success(),
            "an untrusted client certificate must fail: {out:?}"
        );

        // Wrong CA on the client side: curl refuses the server.
        let wrong_ca = write(dir.path(), "wrong.pem", &client_ca.pem);
        let out = run(&mut curl("a.example.com", &["--cacert", &wrong_ca])).await;
        assert!(!out.status.success(), "{out:?}");
    })
    .await
}
