//! BackendTrafficPolicy `compression` through `portcullis run`, decoded by a
//! real client (curl, built with zlib, brotli and zstd).

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::Command;
use std::time::Duration;

use common::{free_addr, free_port, gateway_and_service, start, wait_for};

/// A backend answering `/page` with a 20 KB text/html page, `/png` with a
/// "compressed" image type, `/small` with a tiny text, `/enc` with an
/// already-encoded body.
fn backend() -> SocketAddr {
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
                        let (ct, extra, body) = match path.as_str() {
                            p if p.ends_with("/png") => ("image/png", "", page()),
                            p if p.ends_with("/small") => ("text/plain", "", "tiny".to_string()),
                            p if p.ends_with("/enc") => {
                                ("text/plain", "content-encoding: gzip\r\n", page())
                            }
                            _ => ("text/html; charset=utf-8", "etag: \"v1\"\r\n", page()),
                        };
                        let resp = format!(
                            "HTTP/1.1 200 OK\r\ncontent-type: {ct}\r\n{extra}content-length: {}\r\n\r\n{body}",
                            body.len()
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

fn page() -> String {
    (0..400)
        .map(|i| format!("<p>line {i} of a page that compresses well</p>\n"))
        .collect()
}

/// curl with `accept-encoding`; (headers, decoded body).
fn curl(url: &str, accept: &str) -> (String, String) {
    let out = Command::new("curl")
        .args(["-sS", "-D", "-", "--max-time", "10", "-H"])
        .arg(format!("accept-encoding: {accept}"))
        .args(if accept.is_empty() {
            vec![]
        } else {
            vec!["--compressed"]
        })
        .arg(url)
        .output()
        .expect("curl");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (h, b) = text.split_once("\r\n\r\n").unwrap();
    (h.to_ascii_lowercase(), b.to_string())
}

#[test]
fn responses_are_compressed_with_the_negotiated_algorithm_and_decode_to_the_original() {
    let b = backend();
    let port = free_port();
    let dir = tempfile::tempdir().unwrap();
    let mut yaml = gateway_and_service(port, b);
    for (name, algos) in [
        ("zbg", "[{type: Zstd}, {type: Brotli}, {type: Gzip}]"),
        ("gz", "[{type: Gzip, minContentLength: 100}]"),
    ] {
        yaml.push_str(&format!(
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  parentRefs: [{{name: gw}}]\n  rules:\n  - matches: [{{path: {{type: PathPrefix, value: /{name}}}}}]\n    backendRefs: [{{name: svc, port: 80}}]\n---\napiVersion: portcullis.dev/v1alpha1\nkind: BackendTrafficPolicy\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  targetRefs: [{{group: gateway.networking.k8s.io, kind: HTTPRoute, name: {name}}}]\n  compression: {algos}\n"
        ));
    }
    std::fs::write(dir.path().join("gw.yaml"), yaml).unwrap();
    let _p = start(dir.path(), free_addr(), &[]);
    let base = format!("http://127.0.0.1:{port}");
    wait_for("routes", Duration::from_secs(10), || {
        TcpStream::connect(("127.0.0.1", port)).is_ok()
            && curl(&format!("{base}/gz/page"), "").1 == page()
    });
    for (accept, want) in [
        ("gzip, br, zstd", "zstd"),
        ("gzip, br", "br"),
        ("gzip", "gzip"),
        ("br;q=0, gzip", "gzip"),
    ] {
        let (h, body) = curl(&format!("{base}/zbg/page"), accept);
        assert!(
            h.contains(&format!("content-encoding: {want}")),
            "{accept}: {h}"
        );
        assert!(
            h.contains("vary: accept-encoding") && h.contains("etag: w/\"v1\""),
            "{h}"
        );
        assert!(!h.contains("content-length"), "{h}");
        assert_eq!(body, page(), "{accept}: decodes to the original");
    }
    // Not compressed: no Accept-Encoding, an image, a short body, an encoded body.
    for (path, accept) in [
        ("/zbg/page", ""),
        ("/gz/png", "gzip"),
        ("/gz/small", "gzip"),
        ("/gz/enc", "br"),
    ] {
        let out = Command::new("curl")
            .args([
                "-sS",
                "-D",
                "-",
                "-o",
                "/dev/null",
                "--max-time",
                "10",
                "-H",
            ])
            .arg(format!("accept-encoding: {accept}"))
            .arg(format!("{base}{path}"))
            .output()
            .unwrap();
        let h = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
        let enc = h.lines().find(|l| l.starts_with("content-encoding"));
        let expected = (path == "/gz/enc").then_some("content-encoding: gzip");
        assert_eq!(enc.map(str::trim), expected, "{path}: {h}");
    }
}
