//! Every manifest of the upstream conformance suite is accepted.

use std::path::{Path, PathBuf};

fn conformance_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../third_party/gateway-api/v1.6.1/conformance")
}

/// Copy the tree, substituting the placeholders the upstream suite fills in
/// before applying the manifests.
fn copy_substituted(from: &Path, to: &Path) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let dest = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&dest).unwrap();
            n += copy_substituted(&entry.path(), &dest);
        } else {
            let text = std::fs::read_to_string(entry.path()).unwrap();
            let text = text
                .replace("{GATEWAY_CLASS_NAME}", "portcullis")
                .replace(
                    "{GATEWAY_CONTROLLER_NAME}",
                    "portcullis.dev/gateway-controller",
                )
                // Overlaid by the suite with the caller's address pools.
                .replace("PLACEHOLDER_UNUSABLE_ADDRS", "203.0.113.1")
                .replace("PLACEHOLDER_USABLE_ADDRS", "127.0.0.1");
            std::fs::write(dest, text).unwrap();
            n += 1;
        }
    }
    n
}

#[test]
fn every_conformance_manifest_is_valid() {
    let dir = conformance_dir();
    assert!(
        dir.is_dir(),
        "the conformance manifests are missing: {} does not exist",
        dir.display()
    );
    let tmp = tempfile::tempdir().unwrap();
    let files = copy_substituted(&dir, tmp.path());
    assert!(files > 100, "only {files} files");

    // The suite applies each test's manifests on their own (the base
    // manifests stay): load each file the same way.
    let mut paths = Vec::new();
    collect(tmp.path(), &mut paths);
    assert_eq!(paths.len(), files);
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let mut deployments = 0;
    let mut objects = 0;
    for p in &paths {
        // Strict field validation: no upstream manifest has an unknown field.
        let loaded = portcullis_source::load_path(p);
        for e in &loaded.errors {
            // Deployments are the conformance suite's backends, which the
            // runner replaces with local processes: not a kind Portcullis reads.
            if e.kind.as_deref() == Some("Deployment")
                && e.message
                    .starts_with("no matches for kind \"Deployment\" in version \"apps/v1\"")
            {
                deployments += 1;
            } else {
                errors.push(e.to_string());
            }
        }
        warnings.extend(loaded.warnings);
        objects += loaded.objects.len();
    }
    assert!(
        errors.is_empty(),
        "{} errors:\n{}",
        errors.len(),
        errors.join("\n")
    );
    assert!(warnings.is_empty(), "{warnings:#?}");
    assert!(objects > 400, "only {objects} objects");
    assert_eq!(deployments, 36);
    let unsupported = portcullis_source::unsupported_rules();
    assert!(
        unsupported.is_empty(),
        "CEL rules the interpreter could not evaluate: {unsupported:#?}"
    );
}

fn collect(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            collect(&p, out)
        } else {
            out.push(p)
        }
    }
}
