//! `portcullis explain` golden cases: `tests/explain/<case>.in.yaml` (the
//! configuration) and `<case>.requests` (one request per line: `METHOD URL`,
//! then `| name: value` headers; `-o json` first for the JSON output) →
//! `<case>.out.txt`, the binary's output for every request in turn.
//! `UPDATE_GOLDEN=1` rewrites the expected files (read them before committing).

use std::path::Path;
use std::process::Command;

fn explain(config: &Path, line: &str) -> String {
    let (json, line) = match line.strip_prefix("-o json ") {
        Some(rest) => (true, rest),
        None => (false, line),
    };
    let mut parts = line.split('|').map(str::trim);
    let request = parts.next().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_portcullis"));
    cmd.arg("explain").arg("--config").arg(config).arg(request);
    for h in parts {
        cmd.args(["-H", h]);
    }
    if json {
        cmd.args(["-o", "json"]);
    }
    let out = cmd.output().expect("run portcullis explain");
    assert!(
        out.status.success(),
        "{line}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    if json {
        let v: serde_json::Value = serde_json::from_str(&stdout).expect("explain -o json is JSON");
        assert!(v["answer"].is_object(), "{stdout}");
    }
    stdout
}

#[test]
fn golden() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/explain");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            let name = p
                .file_name()?
                .to_str()?
                .strip_suffix(".in.yaml")?
                .to_string();
            Some(name)
        })
        .collect();
    cases.sort();
    assert!(cases.len() >= 2, "cases: {cases:?}");
    let mut failed = vec![];
    for case in &cases {
        let config = dir.join(format!("{case}.in.yaml"));
        let requests = std::fs::read_to_string(dir.join(format!("{case}.requests"))).unwrap();
        let mut got = String::new();
        for line in requests
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        {
            got.push_str(&format!("$ {line}\n"));
            got.push_str(&explain(&config, line));
            got.push('\n');
        }
        let expected_path = dir.join(format!("{case}.out.txt"));
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&expected_path, &got).unwrap();
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != got {
            eprintln!("--- {case}: expected\n{expected}\n--- got\n{got}");
            failed.push(case.clone());
        }
    }
    assert!(failed.is_empty(), "golden cases differ: {failed:?}");
}
