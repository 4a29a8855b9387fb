//! What [`crate::FileSource`] remembers of the files it read: enough to
//! replay an unchanged file (its objects' identities, errors and warnings)
//! without reading, parsing or validating it again, and without keeping a
//! second copy of its objects (those live in the source's entries and
//! snapshot only).

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};

use portcullis_store::{Kind, ObjectKey};
use serde_json::Value;

use crate::SourceError;
use crate::object::Position;

/// What a file was when it was last read: a rewrite (even of the same size,
/// within the same second) changes the modification time in nanoseconds,
/// the inode change time or, for a rename over it, the inode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Stamp {
    len: u64,
    mtime: (i64, i64),
    ctime: (i64, i64),
    ino: u64,
}

impl Stamp {
    /// The file's stamp now; `None` if it cannot be read.
    pub(crate) fn of(file: &Path) -> Option<Stamp> {
        std::fs::metadata(file).ok().map(|m| Stamp::from_meta(&m))
    }

    /// The stamp of metadata already read.
    pub(crate) fn from_meta(m: &std::fs::Metadata) -> Stamp {
        use std::os::unix::fs::MetadataExt;
        Stamp {
            len: m.len(),
            mtime: (m.mtime(), m.mtime_nsec()),
            ctime: (m.ctime(), m.ctime_nsec()),
            ino: m.ino(),
        }
    }
}

/// One object of a cached file, without the object itself.
#[derive(Clone, Debug)]
pub(crate) enum CachedItem {
    /// A valid object: the source's entry for it holds it.
    Valid {
        kind: Kind,
        key: ObjectKey,
        line: usize,
        position: Position,
    },
    /// An invalid object and its errors.
    Invalid {
        kind: Option<Kind>,
        key: Option<ObjectKey>,
        position: Position,
        errors: Vec<SourceError>,
    },
}

/// A file as last read.
#[derive(Clone, Debug)]
pub(crate) struct CachedFile {
    /// Its stamp then.
    pub(crate) stamp: Stamp,
    /// Its objects (skipped kinds left out), in file order.
    pub(crate) items: Vec<CachedItem>,
    /// The warnings it gave.
    pub(crate) warnings: Vec<String>,
}

/// Cached files by path.
pub(crate) type FileCache = HashMap<PathBuf, CachedFile>;

/// A 64-bit digest of a JSON value (object keys are sorted, so equal values
/// have equal digests). Used instead of keeping a copy of every object's
/// JSON to tell whether it changed.
pub(crate) fn digest(v: &Value) -> u64 {
    let mut h = DefaultHasher::new();
    v.hash(&mut h);
    h.finish()
}

/// The digest of an object's body: everything but `metadata`, `status`,
/// `apiVersion` and `kind` (a change of it bumps the generation).
pub(crate) fn body_digest(v: &Value) -> u64 {
    let mut h = DefaultHasher::new();
    if let Some(o) = v.as_object() {
        for (k, v) in o {
            if !matches!(k.as_str(), "metadata" | "status" | "apiVersion" | "kind") {
                k.hash(&mut h);
                v.hash(&mut h);
            }
        }
    } else {
        v.hash(&mut h);
    }
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_follow_equality_and_body_ignores_metadata() {
        let a: Value = serde_json::json!({"kind": "X", "metadata": {"name": "a"}, "spec": {"b": 1, "a": [1, 2]}});
        let b: Value = serde_json::json!({"spec": {"a": [1, 2], "b": 1}, "metadata": {"name": "a"}, "kind": "X"});
        let c: Value = serde_json::json!({"kind": "X", "metadata": {"name": "b"}, "spec": {"b": 1, "a": [1, 2]}});
        let d: Value = serde_json::json!({"kind": "X", "metadata": {"name": "a"}, "spec": {"b": 2, "a": [1, 2]}});
        assert_eq!(digest(&a), digest(&b));
        assert_ne!(digest(&a), digest(&c));
        assert_eq!(body_digest(&a), body_digest(&c));
        assert_ne!(body_digest(&a), body_digest(&d));
    }
}
