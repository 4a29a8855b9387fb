//! `portcullis import ingress` on the corpus of `crates/portcullis-import`:
//! the binary writes exactly the golden output, and `portcullis validate`
//! accepts every output (with the corpus's cluster: Services, TLS Secrets).

use std::path::{Path, PathBuf};
use std::process::Command;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../portcullis-import/tests/corpus")
}

fn cases() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(corpus())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".in.yaml"))
        .collect();
    v.sort();
    assert!(v.len() >= 10);
    v
}

#[test]
fn every_converted_corpus_file_is_valid() {
    let bin = env!("CARGO_BIN_EXE_portcullis");
    let mut failures = vec![];
    for input in cases() {
        let base = input
            .file_name()
            .unwrap()
            .to_string_lossy()
            .replace(".in.yaml", "");
        let out = Command::new(bin)
            .args(["import", "ingress", "-f"])
            .arg(&input)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{base}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let yaml = String::from_utf8(out.stdout).unwrap();
        let golden = std::fs::read_to_string(corpus().join(format!("{base}.out.yaml"))).unwrap();
        assert_eq!(
            yaml, golden,
            "{base}: the binary's output is not the golden output"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("converted.yaml"), &yaml).unwrap();
        std::fs::copy(
            corpus().join("cluster.yaml"),
            dir.path().join("cluster.yaml"),
        )
        .unwrap();
        let v = Command::new(bin)
            .args(["validate", "-c"])
            .arg(dir.path())
            .output()
            .unwrap();
        if !v.status.success() {
            failures.push(format!(
                "{base}: portcullis validate:\n{}{}",
                String::from_utf8_lossy(&v.stdout),
                String::from_utf8_lossy(&v.stderr)
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn a_directory_output_has_one_file_per_kind_and_the_report() {
    let bin = env!("CARGO_BIN_EXE_portcullis");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let s = Command::new(bin)
        .args(["import", "ingress", "-f"])
        .arg(corpus().join("auth-combo.in.yaml"))
        .arg("-o")
        .arg(&out)
        .status()
        .unwrap();
    assert!(s.success());
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "gateway.yaml",
            "gatewayclass.yaml",
            "httproute.yaml",
            "import-report.txt",
            "secret.yaml",
            "securitypolicy.yaml"
        ]
    );
    let report = std::fs::read_to_string(out.join("import-report.txt")).unwrap();
    assert!(
        report.contains("nginx.ingress.kubernetes.io/auth-secret"),
        "{report}"
    );
}

/// `--from-cluster`'s arguments: `--namespace` needs it, `-f` excludes it, and
/// a kubeconfig that cannot be read is an error naming it (the conversion of
/// what a cluster holds is tested on the fake API server,
/// `crates/portcullis-kube/tests/ingress.rs`, and on a real one,
/// `testenv/e2e/ingress_test.go`).
#[test]
fn from_cluster_arguments_and_a_missing_kubeconfig() {
    let bin = env!("CARGO_BIN_EXE_portcullis");
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = Command::new(bin)
            .args(args)
            .env("KUBECONFIG", dir.path().join("missing-kubeconfig"))
            .env("HOME", dir.path())
            .env_remove("KUBERNETES_SERVICE_HOST")
            .output()
            .unwrap();
        assert!(!out.status.success(), "{args:?} should fail");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let case = corpus().join("auth-combo.in.yaml");
    let case = case.to_str().unwrap();
    let e = run(&["import", "ingress", "--namespace", "x", "-f", case]);
    assert!(e.contains("needs --from-cluster"), "{e}");
    let e = run(&["import", "ingress", "--from-cluster", "-f", case]);
    assert!(e.contains("cannot be used with"), "{e}");
    let e = run(&["import", "ingress", "--from-cluster"]);
    assert!(e.contains("missing-kubeconfig"), "{e}");
}
