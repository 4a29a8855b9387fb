//! A rotated certificate the data plane would refuse: the old one keeps
//! serving and the listener's status says why (real `openssl` peers).

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

fn openssl(args: &[&str], dir: &Path) {
    let st = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("openssl is installed (.ci/run installs it)");
    assert!(st.success(), "openssl {args:?}");
}

/// A self-signed certificate for `cn` with its own key: (cert PEM, key PEM).
fn self_signed(dir: &Path, cn: &str) -> (String, String) {
    openssl(
        &[
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
            &format!("/CN={cn}"),
            "-addext",
            &format!("subjectAltName=DNS:{cn}"),
            "-keyout",
            &format!("{cn}.key"),
            "-out",
            &format!("{cn}.crt"),
        ],
        dir,
    );
    let read = |f: String| std::fs::read_to_string(dir.join(f)).unwrap();
    (read(format!("{cn}.crt")), read(format!("{cn}.key")))
}

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

fn config(port: u16, cert: &str, key: &str) -> String {
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
  listeners:
    - name: https
      port: {port}
      protocol: HTTPS
      hostname: a.example
      tls: {{certificateRefs: [{{name: cert}}]}}
---
apiVersion: v1
kind: Secret
metadata: {{name: cert, namespace: default}}
type: kubernetes.io/tls
data:
  tls.crt: {crt}
  tls.key: {k}
"#,
        crt = b64(cert),
        k = b64(key)
    )
}

/// The subject of the certificate served for SNI `a.example`.
fn served_subject(addr: SocketAddr) -> String {
    let out = Command::new("openssl")
        .args([
            "s_client",
            "-connect",
            &addr.to_string(),
            "-servername",
            "a.example",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.starts_with("subject="))
        .unwrap_or("")
        .replace(' ', "")
}

fn listener_condition(doc: &serde_json::Value, type_: &str) -> serde_json::Value {
    doc.as_array()
        .unwrap()
        .iter()
        .find(|o| o["kind"] == "Gateway")
        .and_then(|g| {
            g["status"]["listeners"][0]["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == type_)
                .cloned()
        })
        .unwrap_or_default()
}

#[test]
fn refused_certificate_keeps_the_old_one_and_says_why() {
    let certs = tempfile::tempdir().unwrap();
    let (one_crt, one_key) = self_signed(certs.path(), "a.example");
    let (two_crt, _) = {
        let d = tempfile::tempdir().unwrap();
        self_signed(d.path(), "a.example")
    };
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let gw: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let admin = free_addr();
    std::fs::write(
        dir.path().join("all.yaml"),
        config(port, &one_crt, &one_key),
    )
    .unwrap();
    let _p = start(dir.path(), admin, &[]);
    wait_for("https served", Duration::from_secs(10), || {
        served_subject(gw).contains("CN=a.example")
    });
    let fingerprint = |pem: &str| {
        let f = certs.path().join("fp.pem");
        std::fs::write(&f, pem).unwrap();
        let out = Command::new("openssl")
            .args(["x509", "-noout", "-fingerprint", "-sha256", "-in"])
            .arg(&f)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    let served_fp = || {
        let out = Command::new("sh")
            .arg("-c")
            .arg(format!(
                "openssl s_client -connect {gw} -servername a.example </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256"
            ))
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    assert_eq!(served_fp(), fingerprint(&one_crt));
    let doc = status_doc(admin);
    assert_eq!(listener_condition(&doc, "ResolvedRefs")["status"], "True");

    // Rotate to a certificate whose key is not in the Secret (key mismatch).
    std::fs::write(
        dir.path().join("all.yaml"),
        config(port, &two_crt, &one_key),
    )
    .unwrap();
    wait_for(
        "status names the refused certificate",
        Duration::from_secs(10),
        || listener_condition(&status_doc(admin), "ResolvedRefs")["status"] == "False",
    );
    let doc = status_doc(admin);
    let resolved = listener_condition(&doc, "ResolvedRefs");
    assert_eq!(resolved["reason"], "InvalidCertificateRef", "{resolved}");
    assert!(
        resolved["message"]
            .as_str()
            .unwrap()
            .contains("default/cert"),
        "{resolved}"
    );
    assert_eq!(
        listener_condition(&doc, "Programmed")["status"],
        "True",
        "the old certificate is still served: {doc}"
    );
    assert_eq!(
        served_fp(),
        fingerprint(&one_crt),
        "the old certificate keeps serving"
    );
}
