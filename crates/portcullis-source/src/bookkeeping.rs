//! [`FileSource`]: reloads with metadata bookkeeping and last-good versions.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use portcullis_store::{Kind, Object, ObjectKey, Snapshot};
use serde_json::Value;

use crate::object::{Outcome, Position};
use crate::{FileCache, Seen, SourceError, load_with_cache};

/// What the source knows about one object: its last good version and the
/// metadata it assigned.
#[derive(Clone, Debug)]
struct Entry {
    /// The last good version, metadata bookkeeping applied.
    object: Object,
    /// The defaulted JSON it was decoded from (metadata as written).
    json: Value,
    /// Everything but metadata and status: a change bumps the generation.
    body: Value,
    file: PathBuf,
    line: usize,
    position: Position,
    generation: i64,
    uid: String,
    created: String,
    resource_version: u64,
}

/// The result of [`FileSource::reload`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Reload {
    /// Every object: the new version of each valid one, the last good version
    /// of each invalid one that had one.
    pub snapshot: Snapshot,
    /// Every error of this reload.
    pub errors: Vec<SourceError>,
    /// Every warning of this reload.
    pub warnings: Vec<String>,
    /// Whether the snapshot differs from the previous reload's (always true
    /// on the first reload).
    pub changed: bool,
}

/// A stateful file source: reads a path again on every [`reload`](Self::reload),
/// keeping metadata bookkeeping and the last good version of every object.
///
/// - `metadata.generation` is 1 when an object is first seen, and goes up by
///   one each time its defaulted spec (everything but metadata and status)
///   changes.
/// - `metadata.creationTimestamp` and `metadata.uid` come from the file when
///   given, else from the time the object was first seen and a generated
///   UUID, both kept across reloads.
/// - `metadata.resourceVersion` is a counter of the source, set anew on an
///   object each time anything in it changes.
/// - Objects no longer in the files are forgotten: written again, they start
///   over at generation 1 with a new uid and creationTimestamp.
/// - An invalid object keeps being served in its last good version; a file
///   that cannot be parsed keeps all its objects of the last good load.
/// - Transition rules (CEL rules reading `oldSelf`, such as the immutable
///   `GatewayClass.spec.controllerName`) are checked against the last good
///   version, as on an update.
#[derive(Debug)]
pub struct FileSource {
    path: PathBuf,
    entries: HashMap<(Kind, ObjectKey), Entry>,
    resource_version: u64,
    reloaded: bool,
    /// Processed objects of the files read last time, reused while a file
    /// is unchanged (same size, modification and change times, inode).
    files: FileCache,
}

impl FileSource {
    /// A source reading `path` (a file or a directory).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileSource {
            path: path.into(),
            entries: HashMap::new(),
            resource_version: 0,
            reloaded: false,
            files: FileCache::new(),
        }
    }

    /// The path this source reads.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Read everything again.
    pub fn reload(&mut self) -> Reload {
        let entries = &self.entries;
        let old =
            |kind: Kind, key: &ObjectKey| entries.get(&(kind, key.clone())).map(|e| e.json.clone());
        let raw = load_with_cache(&self.path, &old, Some(&mut self.files));
        let mut errors = raw.errors;
        let keep_everything = !errors.is_empty();
        let mut next: HashMap<(Kind, ObjectKey), Entry> = HashMap::new();
        let mut seen = Seen::default();

        for file in raw.files {
            let processed = match file.parsed {
                Ok(p) => p,
                Err(e) => {
                    errors.push(*e);
                    let mut kept: Vec<&Entry> = self
                        .entries
                        .values()
                        .filter(|e| e.file == file.file)
                        .collect();
                    kept.sort_by_key(|e| e.line);
                    for e in kept {
                        self.keep(e, &mut next, &mut seen, &mut errors);
                    }
                    continue;
                }
            };
            for p in processed {
                match p.outcome {
                    Outcome::Valid {
                        kind,
                        key,
                        object,
                        json,
                    } => {
                        if let Some(e) = seen.duplicate(kind, &key, &file.file, p.line) {
                            errors.push(e);
                            continue;
                        }
                        let entry =
                            self.account(kind, &key, *object, json, &file.file, p.line, p.position);
                        next.insert((kind, key), entry);
                    }
                    Outcome::Invalid {
                        kind,
                        key,
                        errors: errs,
                    } => {
                        errors.extend(errs);
                        let last_good = match (kind, key) {
                            (Some(kind), Some(key)) => self.entries.get(&(kind, key)),
                            // Unidentifiable: the object that was at the same place.
                            _ => self
                                .entries
                                .values()
                                .find(|e| e.file == file.file && e.position == p.position),
                        };
                        if let Some(e) = last_good {
                            self.keep(e, &mut next, &mut seen, &mut errors);
                        }
                    }
                    Outcome::Skipped => {}
                }
            }
        }
        if keep_everything {
            for (k, e) in &self.entries {
                next.entry(k.clone()).or_insert_with(|| e.clone());
            }
        }

        let changed = !self.reloaded
            || next.len() != self.entries.len()
            || next.iter().any(|(k, e)| {
                self.entries
                    .get(k)
                    .is_none_or(|o| o.resource_version != e.resource_version)
            });
        self.entries = next;
        self.reloaded = true;
        let mut snapshot = Snapshot::default();
        for e in self.entries.values() {
            snapshot.insert(e.object.clone());
        }
        Reload {
            snapshot,
            errors,
            warnings: raw.warnings,
            changed,
        }
    }

    /// Keep serving the last good version of an object.
    fn keep(
        &self,
        e: &Entry,
        next: &mut HashMap<(Kind, ObjectKey), Entry>,
        seen: &mut Seen,
        errors: &mut Vec<SourceError>,
    ) {
        let kind = e.object.kind();
        let key = ObjectKey::of(e.object.meta());
        if next.contains_key(&(kind, key.clone())) {
            return;
        }
        match seen.duplicate(kind, &key, &e.file, e.line) {
            None => {
                next.insert((kind, key), e.clone());
            }
            Some(err) => errors.push(err),
        }
    }

    /// Metadata bookkeeping for a new valid version of an object.
    #[allow(clippy::too_many_arguments)]
    fn account(
        &mut self,
        kind: Kind,
        key: &ObjectKey,
        mut object: Object,
        json: Value,
        file: &Path,
        line: usize,
        position: Position,
    ) -> Entry {
        let mut body = json.clone();
        if let Some(o) = body.as_object_mut() {
            for k in ["metadata", "status", "apiVersion", "kind"] {
                o.remove(k);
            }
        }
        let written = |f: &str| {
            json.pointer(&format!("/metadata/{f}"))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let previous = self.entries.get(&(kind, key.clone()));
        let (generation, uid, created, resource_version) = match previous {
            Some(p) => {
                let generation = if p.body == body {
                    p.generation
                } else {
                    p.generation + 1
                };
                let rv = if p.json == json {
                    p.resource_version
                } else {
                    self.resource_version += 1;
                    self.resource_version
                };
                let uid = written("uid").unwrap_or_else(|| p.uid.clone());
                let created = written("creationTimestamp").unwrap_or_else(|| p.created.clone());
                (generation, uid, created, rv)
            }
            None => {
                self.resource_version += 1;
                let uid = written("uid").unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
                let created = written("creationTimestamp")
                    .unwrap_or_else(|| chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string());
                (1, uid, created, self.resource_version)
            }
        };
        let meta = object.meta_mut();
        meta.generation = Some(generation);
        meta.uid = Some(uid.clone());
        meta.resource_version = Some(resource_version.to_string());
        meta.creation_timestamp = serde_json::from_value(Value::String(created.clone())).ok();
        Entry {
            object,
            json,
            body,
            file: file.to_path_buf(),
            line,
            position,
            generation,
            uid,
            created,
            resource_version,
        }
    }
}
