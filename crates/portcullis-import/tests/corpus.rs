//! Golden tests: every `tests/corpus/<case>.in.yaml` converts to
//! `<case>.out.yaml` (the objects) and `<case>.report.txt` (the report).
//! `UPDATE_GOLDEN=1` rewrites them; read the diff before committing.
//! (`crates/portcullis/tests/import.rs` runs each output through
//! `portcullis validate`.)

use std::path::{Path, PathBuf};

use portcullis_import::{Options, Source, convert};

fn cases() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".in.yaml"))
        .collect();
    v.sort();
    assert!(v.len() >= 10, "corpus went missing: {v:?}");
    v
}

fn check(path: &Path, got: &str) -> Option<String> {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(path, got).unwrap();
        return None;
    }
    let want = std::fs::read_to_string(path).unwrap_or_default();
    (want != got).then(|| {
        format!(
            "{} differs (UPDATE_GOLDEN=1 to rewrite):\n{}",
            path.display(),
            pretty_assertions::StrComparison::new(&want, got)
        )
    })
}

#[test]
fn golden_corpus() {
    let mut failures = vec![];
    for input in cases() {
        let name = input.file_name().unwrap().to_string_lossy().to_string();
        let base = name.trim_end_matches(".in.yaml");
        let text = std::fs::read_to_string(&input).unwrap();
        let c = convert(
            &[Source {
                name: name.clone(),
                text,
            }],
            &Options::default(),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        let dir = input.parent().unwrap();
        failures.extend(check(&dir.join(format!("{base}.out.yaml")), &c.yaml()));
        failures.extend(check(
            &dir.join(format!("{base}.report.txt")),
            &c.report.text(),
        ));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_annotation_in_the_corpus_is_reported_once() {
    for input in cases() {
        let text = std::fs::read_to_string(&input).unwrap();
        let c = convert(
            &[Source {
                name: "x".into(),
                text,
            }],
            &Options::default(),
        )
        .unwrap();
        for (i, r) in c.report.ingresses.iter().enumerate() {
            let found = &c.report.ingresses[i];
            let mut names: Vec<&str> = r.entries.iter().map(|e| e.annotation.as_str()).collect();
            let n = names.len();
            names.dedup();
            assert_eq!(
                n,
                names.len(),
                "{}: {} reports an annotation twice",
                input.display(),
                found.ingress
            );
        }
    }
}
