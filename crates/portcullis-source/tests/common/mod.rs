//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::Path;

use portcullis_source::{FieldValidation, Loaded, load_path_with};
use portcullis_store::Kind;
use serde_json::Value;

/// Load `text` written to `name` in a fresh directory. Errors and warnings
/// are rendered with paths relative to that directory.
pub fn load(name: &str, text: &str) -> (Loaded, Vec<String>, Vec<String>) {
    load_with(name, text, FieldValidation::Strict)
}

/// [`load`] with the given field validation.
pub fn load_with(
    name: &str,
    text: &str,
    fields: FieldValidation,
) -> (Loaded, Vec<String>, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join(name), text).unwrap();
    let loaded = load_path_with(dir.path(), fields);
    let errors = loaded
        .errors
        .iter()
        .map(|e| relative(dir.path(), &e.to_string()))
        .collect();
    let warnings = loaded
        .warnings
        .iter()
        .map(|w| relative(dir.path(), w))
        .collect();
    (loaded, errors, warnings)
}

pub fn relative(dir: &Path, s: &str) -> String {
    s.replace(&format!("{}/", dir.display()), "")
}

/// The only object of `kind` loaded, as JSON.
pub fn only(loaded: &Loaded, kind: Kind) -> Value {
    let found: Vec<_> = loaded
        .objects
        .iter()
        .filter(|o| o.object.kind() == kind)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "objects: {:?}, errors: {:?}",
        loaded.objects,
        loaded.errors
    );
    found[0].object.to_json()
}

/// Load and expect exactly these errors.
pub fn expect_errors(text: &str, expected: &[&str]) {
    let (_, errors, _) = load("test.yaml", text);
    assert_eq!(errors, expected);
}
