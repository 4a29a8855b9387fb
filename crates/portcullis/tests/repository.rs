//! The repository stands on its own: no file refers to a sibling folder
//! (a `shared` folder next to it) or to a path on one developer's machine, and the upstream
//! files the tests read are vendored under `third_party/`.

use std::path::{Path, PathBuf};

/// The workspace root (two levels above this crate).
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every file of the repository, build output and VCS metadata excluded.
fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name == "target" {
            continue;
        }
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

#[test]
fn no_file_names_a_sibling_folder_or_a_machine_path() {
    // Built from pieces so that this file does not match itself.
    let forbidden = [
        format!("../{}", "shared"),
        format!("/{}/", "work"),
        format!("/{}/", "home"),
        format!("/{}/", "Users"),
    ];
    let mut all = Vec::new();
    files(&root(), &mut all);
    assert!(
        all.len() > 100,
        "only {} files under {}",
        all.len(),
        root().display()
    );
    let mut hits = Vec::new();
    for path in &all {
        let Ok(text) = std::fs::read_to_string(path) else {
            continue; // not UTF-8 text
        };
        for (n, line) in text.lines().enumerate() {
            for f in &forbidden {
                if line.contains(f.as_str()) {
                    let rel = path.strip_prefix(root()).unwrap_or(path);
                    hits.push(format!("{}:{}: {}", rel.display(), n + 1, line.trim()));
                }
            }
        }
    }
    assert!(
        hits.is_empty(),
        "paths outside the repository:\n{}",
        hits.join("\n")
    );
}

#[test]
fn upstream_conformance_manifests_are_vendored_with_their_license() {
    let dir = root().join("third_party/gateway-api/v1.6.1");
    for f in ["LICENSE", "README.md", "conformance/base/manifests.yaml"] {
        assert!(
            dir.join(f).is_file(),
            "{} is missing",
            dir.join(f).display()
        );
    }
    let license = std::fs::read_to_string(dir.join("LICENSE")).unwrap();
    assert!(
        license.contains("Apache License"),
        "LICENSE is not the Apache License"
    );
    let tests = std::fs::read_dir(dir.join("conformance/tests"))
        .unwrap()
        .count();
    assert!(tests > 100, "only {tests} conformance test manifests");
}
