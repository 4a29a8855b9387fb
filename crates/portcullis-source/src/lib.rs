//! The standalone file source of Portcullis.
//!
//! It reads Kubernetes manifests from a file or a directory tree (`.yaml`,
//! `.yml`, `.json`; multi-document YAML; `kind: List`), and treats each object
//! the way a Kubernetes API server with the Gateway API v1.6.1 experimental
//! CRDs installed would with kubectl's strict field validation: an unknown
//! field or kind is an error ([`FieldValidation`] relaxes this), defaults are
//! filled from the CRD schemas, and the object is validated against the
//! schema and its CEL rules. Built-in kinds (Service, EndpointSlice, Secret,
//! ConfigMap, Namespace) get the essential defaults and checks of the API
//! server. Every error names the file, line, object and field.
//!
//! - [`load_path`] is the pure step: parse, default, validate, decode.
//! - [`FileSource`] keeps state across reloads: metadata bookkeeping
//!   (generation, uid, creationTimestamp, resourceVersion) and the last good
//!   version of every object, which keeps being served while a newer version
//!   is invalid.
//! - [`watch()`] reports debounced changes under a path.
//! - [`ingress::derive`] adds the Gateway API objects that serve the
//!   Ingresses of Portcullis' IngressClasses (a pure step before translation).
//!
//! Details worth knowing:
//! - YAML is read with YAML 1.2 core booleans: `yes`, `no`, `on`, `off`, `y`
//!   and `n` are strings, not booleans.
//! - `status` is ignored for kinds with a status subresource (every Gateway
//!   API kind that has a status), as the API server does on writes.
//! - Fields of `metadata` the API server sets itself (`generation`,
//!   `resourceVersion`, `managedFields`, ...) are dropped; `uid` and
//!   `creationTimestamp` are kept when given.
//! - A CEL rule that reads a field the object does not set fails, as in
//!   Kubernetes; a rule the interpreter cannot compile or evaluate is logged
//!   once and passes ([`unsupported_rules`] lists them; none are known).
#![deny(missing_docs)]

mod bookkeeping;
mod builtin;
mod cache;
mod cel;
mod crd;
pub mod ingress;
mod object;
mod schema;
mod watch;
mod yaml;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};

use portcullis_store::{Kind, ObjectKey};

pub use bookkeeping::{FileSource, Reload};
pub use cel::unsupported_rules;
pub use watch::{Changes, SourceWatchError, Watch, watch};

use object::{OldLookup, Outcome, Processed};

/// What to do with a field, or a whole object's kind, that the schemas do not
/// know: kubectl's `--field-validation`.
///
/// Unknown fields are found against the CRD schemas (Gateway API kinds), the
/// fields of `ObjectMeta` (`metadata`), and the Kubernetes types of the
/// built-in kinds. The subtrees a schema marks
/// `x-kubernetes-preserve-unknown-fields` keep every field, as in Kubernetes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum FieldValidation {
    /// An unknown field, or an object of an unknown kind, makes the object
    /// invalid (an error naming the file, line, object and field), so its
    /// last good version keeps serving. kubectl's default.
    #[default]
    Strict,
    /// Unknown fields are dropped and objects of unknown kinds skipped, each
    /// with a warning.
    Warn,
    /// Unknown fields are dropped and objects of unknown kinds skipped, silently.
    Ignore,
}

impl FieldValidation {
    /// The name as kubectl spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            FieldValidation::Strict => "Strict",
            FieldValidation::Warn => "Warn",
            FieldValidation::Ignore => "Ignore",
        }
    }
}

impl fmt::Display for FieldValidation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A `--field-validation` value that is not `Strict`, `Warn` or `Ignore`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("invalid field validation {0:?}: use Strict, Warn or Ignore")]
pub struct ParseFieldValidationError(pub String);

impl std::str::FromStr for FieldValidation {
    type Err = ParseFieldValidationError;
    /// `Strict`, `Warn` or `Ignore`, in any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "strict" => Ok(FieldValidation::Strict),
            "warn" => Ok(FieldValidation::Warn),
            "ignore" => Ok(FieldValidation::Ignore),
            _ => Err(ParseFieldValidationError(s.to_string())),
        }
    }
}

/// An error about one file, object or field.
///
/// Displayed as `{file}:{line}: {kind} {namespace}/{name}: {field}: {message}`,
/// leaving out the parts that are unknown (a YAML syntax error has no kind or
/// object; an error about a whole object has no field).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceError {
    /// The file.
    pub file: PathBuf,
    /// The line (1-based; 0 when unknown).
    pub line: usize,
    /// The object's kind as written, if known.
    pub kind: Option<String>,
    /// The object's namespace and name, if known.
    pub object: Option<ObjectKey>,
    /// The field path, e.g. `spec.rules[0].matches[1].path.value`, if any.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for SourceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if self.line > 0 {
            write!(f, ":{}", self.line)?;
        }
        f.write_str(":")?;
        match (&self.kind, &self.object) {
            (Some(k), Some(o)) => write!(f, " {k} {o}:")?,
            (Some(k), None) => write!(f, " {k}:")?,
            (None, Some(o)) => write!(f, " {o}:")?,
            (None, None) => {}
        }
        if let Some(field) = &self.field {
            write!(f, " {field}:")?;
        }
        write!(f, " {}", self.message)
    }
}

impl std::error::Error for SourceError {}

impl SourceError {
    fn file(file: &Path, line: usize, message: impl Into<String>) -> Self {
        SourceError {
            file: file.to_path_buf(),
            line,
            kind: None,
            object: None,
            field: None,
            message: message.into(),
        }
    }
}

/// One valid object and where it was read.
#[derive(Clone, Debug, PartialEq)]
pub struct LoadedObject {
    /// The defaulted, validated, typed object.
    pub object: portcullis_store::Object,
    /// The file it is in.
    pub file: PathBuf,
    /// The line it starts at.
    pub line: usize,
}

/// The result of [`load_path`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Loaded {
    /// Every valid object, in file order; for duplicates, the first one.
    pub objects: Vec<LoadedObject>,
    /// Every error.
    pub errors: Vec<SourceError>,
    /// Warnings: ignored namespaces; with [`FieldValidation::Warn`], skipped
    /// kinds and dropped unknown fields.
    pub warnings: Vec<String>,
}

/// Parse, default and validate every file under `path` (a file, or a
/// directory read recursively for `.yaml`, `.yml` and `.json` files; names
/// starting with `.` are skipped, symbolic links are followed).
///
/// Pure with respect to state: no generation bookkeeping, and transition
/// rules (those reading `oldSelf`) are not evaluated, as on a create.
/// Unknown fields and kinds are errors ([`FieldValidation::Strict`]).
pub fn load_path(path: &Path) -> Loaded {
    load_path_with(path, FieldValidation::Strict)
}

/// [`load_path`] with the given handling of unknown fields and kinds.
pub fn load_path_with(path: &Path, fields: FieldValidation) -> Loaded {
    let raw = load(path, &|_, _| None, fields);
    let mut out = Loaded {
        errors: raw.errors,
        warnings: raw.warnings,
        ..Loaded::default()
    };
    let mut seen = Seen::default();
    for file in raw.files {
        let processed = match file.parsed {
            Ok(p) => p,
            Err(e) => {
                out.errors.push(*e);
                continue;
            }
        };
        for p in processed {
            match p.outcome {
                Outcome::Valid {
                    kind, key, object, ..
                } => match seen.duplicate(kind, &key, &file.file, p.line) {
                    None => out.objects.push(LoadedObject {
                        object: *object,
                        file: file.file.clone(),
                        line: p.line,
                    }),
                    Some(e) => out.errors.push(e),
                },
                Outcome::Invalid { errors, .. } => out.errors.extend(errors),
                Outcome::Skipped => {}
            }
        }
    }
    out
}

/// First locations of every object, to find duplicates.
#[derive(Default)]
pub(crate) struct Seen(HashMap<(Kind, ObjectKey), (PathBuf, usize)>);

impl Seen {
    /// Record an object; an error naming both places if it was seen already.
    pub(crate) fn duplicate(
        &mut self,
        kind: Kind,
        key: &ObjectKey,
        file: &Path,
        line: usize,
    ) -> Option<SourceError> {
        match self.0.get(&(kind, key.clone())) {
            Some((f, l)) => Some(SourceError {
                file: file.to_path_buf(),
                line,
                kind: Some(kind.to_string()),
                object: Some(key.clone()),
                field: None,
                message: format!(
                    "duplicate object: already defined at {}:{l}; this one is ignored",
                    f.display()
                ),
            }),
            None => {
                self.0
                    .insert((kind, key.clone()), (file.to_path_buf(), line));
                None
            }
        }
    }
}

/// What one file gave.
pub(crate) struct FileLoad {
    /// The file.
    pub(crate) file: PathBuf,
    /// Its objects, or why it could not be read or parsed.
    pub(crate) parsed: Result<Vec<Processed>, Box<SourceError>>,
}

/// Everything read under a path, file by file.
pub(crate) struct RawLoad {
    pub(crate) files: Vec<FileLoad>,
    /// Errors about the path itself (missing, unreadable directory).
    pub(crate) errors: Vec<SourceError>,
    pub(crate) warnings: Vec<String>,
}

pub(crate) fn load(path: &Path, old: OldLookup, fields: FieldValidation) -> RawLoad {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    let files = discover(path, &mut errors)
        .into_iter()
        .map(|file| {
            let parsed = process_file(&file, old, fields, &mut warnings);
            FileLoad { file, parsed }
        })
        .collect();
    RawLoad {
        files,
        errors,
        warnings,
    }
}

/// Parse, default, validate and decode every object of one file.
pub(crate) fn process_file(
    file: &Path,
    old: OldLookup,
    fields: FieldValidation,
    warnings: &mut Vec<String>,
) -> Result<Vec<Processed>, Box<SourceError>> {
    parse_file(file).map(|docs| {
        docs.into_iter()
            .enumerate()
            .flat_map(|(i, doc)| object::process_doc(file, doc, i, old, fields, warnings))
            .collect()
    })
}

pub(crate) fn is_manifest(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

/// The files to read under `path`, sorted.
pub(crate) fn discover(path: &Path, errors: &mut Vec<SourceError>) -> Vec<PathBuf> {
    discover_stamped(path, errors)
        .into_iter()
        .map(|(p, _)| p)
        .collect()
}

/// [`discover`], with each file's [`cache::Stamp`] taken from the metadata
/// the walk read anyway (`None` for a single file, stamped by the caller).
pub(crate) fn discover_stamped(
    path: &Path,
    errors: &mut Vec<SourceError>,
) -> Vec<(PathBuf, Option<cache::Stamp>)> {
    discover_plain(path, errors).0
}

/// [`discover_stamped`], and whether `path` is a directory tree without
/// symbolic links (then a file's path is the only way to reach it, and a
/// change under it is reported under that path).
pub(crate) fn discover_plain(
    path: &Path,
    errors: &mut Vec<SourceError>,
) -> (Vec<(PathBuf, Option<cache::Stamp>)>, bool) {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) => {
            errors.push(SourceError::file(path, 0, format!("cannot read: {e}")));
            return (Vec::new(), false);
        }
    };
    if !meta.is_dir() {
        let file = vec![(path.to_path_buf(), Some(cache::Stamp::from_meta(&meta)))];
        return (file, false);
    }
    let mut out = Vec::new();
    let mut visited = HashSet::new();
    let mut plain = std::fs::symlink_metadata(path).is_ok_and(|m| !m.file_type().is_symlink());
    walk(path, &mut out, &mut visited, errors, &mut plain);
    (out, plain)
}

fn walk(
    dir: &Path,
    out: &mut Vec<(PathBuf, Option<cache::Stamp>)>,
    visited: &mut HashSet<PathBuf>,
    errors: &mut Vec<SourceError>,
    plain: &mut bool,
) {
    // Guard against symbolic link loops.
    if !visited.insert(std::fs::canonicalize(dir).unwrap_or_else(|_| dir.to_path_buf())) {
        return;
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            errors.push(SourceError::file(
                dir,
                0,
                format!("cannot read directory: {e}"),
            ));
            return;
        }
    };
    let mut paths: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        // Hidden entries include the `..data` and `..2024_...` directories of
        // Kubernetes ConfigMap and Secret volumes, whose files are also linked
        // from the volume's top directory.
        .filter(|e| !e.file_name().to_string_lossy().starts_with('.'))
        .inspect(|e| {
            if e.file_type().map_or(true, |t| t.is_symlink()) {
                *plain = false;
            }
        })
        .map(|e| e.path())
        .collect();
    // Entries of one directory: ordering by name is ordering by path.
    paths.sort_unstable_by(|a, b| a.file_name().cmp(&b.file_name()));
    for p in paths {
        match std::fs::metadata(&p) {
            Ok(m) if m.is_dir() => walk(&p, out, visited, errors, plain),
            Ok(m) if m.is_file() && is_manifest(&p) => {
                let stamp = cache::Stamp::from_meta(&m);
                out.push((p, Some(stamp)))
            }
            Ok(_) => {}
            // A dangling symbolic link, or a file removed meanwhile.
            Err(_) => {}
        }
    }
}

fn parse_file(file: &Path) -> Result<Vec<yaml::Doc>, Box<SourceError>> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| Box::new(SourceError::file(file, 0, format!("cannot read: {e}"))))?;
    let json = file.extension().and_then(|e| e.to_str()) == Some("json");
    let parsed = if json {
        yaml::parse_json(&text)
    } else {
        yaml::parse_yaml(&text)
    };
    let what = if json { "JSON" } else { "YAML" };
    parsed.map_err(|e| {
        Box::new(SourceError::file(
            file,
            e.line,
            format!("invalid {what}: {}", e.message),
        ))
    })
}
