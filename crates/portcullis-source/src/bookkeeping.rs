//! [`FileSource`]: reloads with metadata bookkeeping and last-good versions.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use portcullis_store::{Kind, Object, ObjectKey, Snapshot};
use serde_json::Value;

use crate::cache::{CachedFile, CachedItem, FileCache, Stamp, body_digest, digest};
use crate::object::{Outcome, Position};
use crate::{FieldValidation, Seen, SourceError, crd, discover_plain, process_file};

mod incremental;

/// What the source knows about one object besides the object itself (which
/// is in the source's snapshot): the metadata it assigned and digests to
/// tell the next version apart.
#[derive(Clone, Debug)]
struct Entry {
    /// The defaulted JSON it was decoded from (metadata as written), kept
    /// only for kinds with transition rules.
    json: Option<Arc<Value>>,
    /// Digest of that JSON: a change gives a new resourceVersion.
    json_digest: u64,
    /// Digest of everything but metadata and status: a change bumps the generation.
    body_digest: u64,
    file: PathBuf,
    line: usize,
    position: Position,
    generation: i64,
    uid: String,
    created: String,
    resource_version: u64,
}

type Entries = HashMap<(Kind, ObjectKey), Entry>;

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
    entries: Entries,
    /// Every object of `entries`, bookkeeping applied.
    snapshot: Snapshot,
    resource_version: u64,
    reloaded: bool,
    /// The files read last time, replayed while unchanged (same size,
    /// modification and change times, inode).
    files: FileCache,
    /// What an unknown field or kind does.
    fields: FieldValidation,
    /// Whether the last reload allows the next one to read only the paths
    /// the watcher reported ([`FileSource::reload_changes`]): a directory
    /// tree without symbolic links, every file read and cached, and no
    /// error or warning (so nothing an unchanged file says needs
    /// repeating, and no duplicate object whose winner could change).
    incremental: bool,
}

impl FileSource {
    /// A source reading `path` (a file or a directory).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileSource {
            path: path.into(),
            entries: HashMap::new(),
            snapshot: Snapshot::default(),
            resource_version: 0,
            reloaded: false,
            files: FileCache::new(),
            fields: FieldValidation::Strict,
            incremental: false,
        }
    }

    /// Handle unknown fields and kinds this way (default:
    /// [`FieldValidation::Strict`]). Set before the first reload.
    pub fn with_field_validation(mut self, fields: FieldValidation) -> Self {
        self.fields = fields;
        self
    }

    /// The path this source reads.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where the version of an object in the last reload's snapshot was
    /// read: its file and the line it starts at.
    pub fn location(&self, kind: Kind, key: &ObjectKey) -> Option<(&Path, usize)> {
        self.entries
            .get(&(kind, key.clone()))
            .map(|e| (e.file.as_path(), e.line))
    }

    /// Read everything again. Files that did not change since the last
    /// reload are not read again: their objects are carried over as they
    /// were (the snapshot shares them), so a reload costs little more than
    /// the files that changed.
    pub fn reload(&mut self) -> Reload {
        let mut errors = Vec::new();
        let mut warnings = Vec::new();
        let (found, plain) = discover_plain(&self.path, &mut errors);
        let found_count = found.len();
        let keep_everything = !errors.is_empty();
        let mut next: Entries = HashMap::with_capacity(self.entries.len());
        let mut seen = Seen::default();
        let mut updates: Vec<Object> = Vec::new();
        let mut cache = std::mem::take(&mut self.files);
        let mut next_cache = FileCache::with_capacity(cache.len());

        for (file, stamp) in found {
            if let Some(cached) = cache.remove(&file)
                && Some(cached.stamp) == stamp
                && self.replayable(&file, &cached)
            {
                self.replay(&file, &cached, &mut next, &mut seen, &mut errors);
                warnings.extend(cached.warnings.iter().cloned());
                next_cache.insert(file, cached);
                continue;
            }
            let mut warned = Vec::new();
            let parsed = {
                let entries = &self.entries;
                let old = |kind: Kind, key: &ObjectKey| {
                    entries
                        .get(&(kind, key.clone()))
                        .and_then(|e| e.json.as_deref().cloned())
                };
                process_file(&file, &old, self.fields, &mut warned)
            };
            let processed = match parsed {
                Ok(p) => p,
                Err(e) => {
                    errors.push(*e);
                    warnings.extend(warned);
                    let mut kept: Vec<(&(Kind, ObjectKey), &Entry)> = self
                        .entries
                        .iter()
                        .filter(|(_, e)| e.file == file)
                        .collect();
                    kept.sort_by_key(|(_, e)| e.line);
                    for (k, e) in kept {
                        keep(k, e, &mut next, &mut seen, &mut errors);
                    }
                    continue;
                }
            };
            let mut items = Vec::with_capacity(processed.len());
            for p in processed {
                match p.outcome {
                    Outcome::Valid {
                        kind,
                        key,
                        object,
                        json,
                    } => {
                        items.push(CachedItem::Valid {
                            kind,
                            key: key.clone(),
                            line: p.line,
                            position: p.position,
                        });
                        if let Some(e) = seen.duplicate(kind, &key, &file, p.line) {
                            errors.push(e);
                            continue;
                        }
                        let (entry, object) =
                            self.account(kind, &key, *object, json, &file, p.line, p.position);
                        updates.extend(object);
                        next.insert((kind, key), entry);
                    }
                    Outcome::Invalid {
                        kind,
                        key,
                        errors: errs,
                    } => {
                        items.push(CachedItem::Invalid {
                            kind,
                            key: key.clone(),
                            position: p.position,
                            errors: errs.clone(),
                        });
                        errors.extend(errs);
                        self.keep_last_good(
                            kind,
                            key,
                            &file,
                            p.position,
                            &mut next,
                            &mut seen,
                            &mut errors,
                        );
                    }
                    Outcome::Skipped => {}
                }
            }
            // A stamp taken after the read must match: a file written while
            // being read is read again next time.
            if let Some(s) = stamp
                && Stamp::of(&file) == Some(s)
            {
                let warnings = warned.clone();
                next_cache.insert(
                    file,
                    CachedFile {
                        stamp: s,
                        items,
                        warnings,
                    },
                );
            }
            warnings.extend(warned);
        }
        self.files = next_cache;
        if keep_everything {
            for (k, e) in &self.entries {
                next.entry(k.clone()).or_insert_with(|| e.clone());
            }
        }

        let mut changed = !self.reloaded || !updates.is_empty();
        for (kind, key) in self.entries.keys() {
            if !next.contains_key(&(*kind, key.clone())) {
                self.snapshot.remove(*kind, key);
                changed = true;
            }
        }
        for o in updates {
            self.snapshot.insert(o);
        }
        self.entries = next;
        self.reloaded = true;
        self.incremental =
            plain && errors.is_empty() && warnings.is_empty() && self.files.len() == found_count;
        Reload {
            snapshot: self.snapshot.clone(),
            errors,
            warnings,
            changed,
        }
    }

    /// Whether a cached, unchanged file can be replayed: each of its valid
    /// objects is still the source's entry read from that file and place
    /// (it is not when it lost to a duplicate elsewhere).
    fn replayable(&self, file: &Path, cached: &CachedFile) -> bool {
        cached.items.iter().all(|i| match i {
            CachedItem::Valid {
                kind,
                key,
                position,
                ..
            } => self
                .entries
                .get(&(*kind, key.clone()))
                .is_some_and(|e| e.file == file && e.position == *position),
            CachedItem::Invalid { .. } => true,
        })
    }

    /// Carry an unchanged file's objects over (moved, not copied).
    fn replay(
        &mut self,
        file: &Path,
        cached: &CachedFile,
        next: &mut Entries,
        seen: &mut Seen,
        errors: &mut Vec<SourceError>,
    ) {
        for item in &cached.items {
            match item {
                CachedItem::Valid {
                    kind, key, line, ..
                } => {
                    if let Some(e) = seen.duplicate(*kind, key, file, *line) {
                        errors.push(e);
                        continue;
                    }
                    let k = (*kind, key.clone());
                    if let Some(e) = self.entries.remove(&k) {
                        next.insert(k, e);
                    }
                }
                CachedItem::Invalid {
                    kind,
                    key,
                    position,
                    errors: errs,
                } => {
                    errors.extend(errs.iter().cloned());
                    self.keep_last_good(*kind, key.clone(), file, *position, next, seen, errors);
                }
            }
        }
    }

    /// Keep serving the last good version of an invalid object: the one of
    /// the same kind and key, or, unidentifiable, the one that was at the
    /// same place.
    #[allow(clippy::too_many_arguments)]
    fn keep_last_good(
        &self,
        kind: Option<Kind>,
        key: Option<ObjectKey>,
        file: &Path,
        position: Position,
        next: &mut Entries,
        seen: &mut Seen,
        errors: &mut Vec<SourceError>,
    ) {
        let last_good = match (kind, key) {
            (Some(kind), Some(key)) => self.entries.get_key_value(&(kind, key)),
            _ => self
                .entries
                .iter()
                .find(|(_, e)| e.file == file && e.position == position),
        };
        if let Some((k, e)) = last_good {
            keep(k, e, next, seen, errors);
        }
    }

    /// Metadata bookkeeping for a new valid version of an object: its entry,
    /// and the object to put in the snapshot if anything in it changed.
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
    ) -> (Entry, Option<Object>) {
        let json_digest = digest(&json);
        let body_digest = body_digest(&json);
        let written = |f: &str| {
            json.pointer(&format!("/metadata/{f}"))
                .and_then(Value::as_str)
                .map(str::to_string)
        };
        let previous = self.entries.get(&(kind, key.clone()));
        let (generation, uid, created, resource_version) = match previous {
            Some(p) => {
                let generation = if p.body_digest == body_digest {
                    p.generation
                } else {
                    p.generation + 1
                };
                let rv = if p.json_digest == json_digest {
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
        // Same JSON as before: same object, same metadata; the snapshot keeps
        // the one it has (and its identity).
        let unchanged = previous.is_some_and(|p| p.resource_version == resource_version);
        let meta = object.meta_mut();
        meta.generation = Some(generation);
        meta.uid = Some(uid.clone());
        meta.resource_version = Some(resource_version.to_string());
        meta.creation_timestamp = serde_json::from_value(Value::String(created.clone())).ok();
        let entry = Entry {
            json: crd::has_transition_rules(kind).then(|| Arc::new(json)),
            json_digest,
            body_digest,
            file: file.to_path_buf(),
            line,
            position,
            generation,
            uid,
            created,
            resource_version,
        };
        (entry, (!unchanged).then_some(object))
    }
}

/// Keep serving the last good version of an object.
fn keep(
    k: &(Kind, ObjectKey),
    e: &Entry,
    next: &mut Entries,
    seen: &mut Seen,
    errors: &mut Vec<SourceError>,
) {
    if next.contains_key(k) {
        return;
    }
    match seen.duplicate(k.0, &k.1, &e.file, e.line) {
        None => {
            next.insert(k.clone(), e.clone());
        }
        Some(err) => errors.push(err),
    }
}
