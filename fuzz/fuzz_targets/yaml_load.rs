//! The file source: YAML/JSON parsing with line numbers, CRD defaulting,
//! structural schema and CEL validation, decoding (`portcullis_source::load_path`).
//! No input may panic; every error names a line within the file.
#![no_main]

use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;

fn file() -> &'static PathBuf {
    static FILE: OnceLock<PathBuf> = OnceLock::new();
    FILE.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("portcullis-fuzz-yaml-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("input.yaml")
    })
}

fuzz_target!(|data: &[u8]| {
    // Large inputs only slow the fuzzer down; the parser's own limits are
    // exercised by the regression tests.
    if data.len() > 16 * 1024 {
        return;
    }
    let path = file();
    std::fs::write(path, data).unwrap();
    let loaded = portcullis_source::load_path(path);
    let lines = data.iter().filter(|b| **b == b'\n').count() + 1;
    for o in &loaded.objects {
        assert!(
            o.line >= 1 && o.line <= lines,
            "object at line {} of {lines}",
            o.line
        );
    }
});
