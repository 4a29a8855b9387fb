//! [`FileSource::reload_changes`]: a reload that reads only the paths the
//! watcher reported, when that is known to give what a full reload gives.

use std::collections::{BTreeSet, HashSet};
use std::path::{Path, PathBuf};

use portcullis_store::{Kind, Object, ObjectKey};
use serde_json::Value;

use super::{FileSource, Reload};
use crate::cache::{CachedFile, CachedItem, Stamp};
use crate::object::{Outcome, Position};
use crate::watch::Changes;
use crate::{is_manifest, process_file};

/// A file to read again: its path and its stamp now (`None`: it is gone).
type Changed = (PathBuf, Option<Stamp>);

/// A valid object read from a changed file, before bookkeeping.
struct Read {
    kind: Kind,
    key: ObjectKey,
    object: Object,
    json: Value,
    line: usize,
    position: Position,
}

impl FileSource {
    /// Reload after the watcher reported `changes`
    /// ([`crate::Watch::take_changes`]): when the last reload allows it
    /// (a plain directory tree, every file cached, no error, no warning),
    /// only the reported files are read (their objects replace the ones
    /// they held, removed files' objects are forgotten) and the rest is
    /// kept as it is, without walking the tree; the result is what
    /// [`FileSource::reload`] gives. Anything else (a directory or link
    /// that changed, a file that does not parse, an invalid object, a
    /// duplicate, a warning) is a full [`FileSource::reload`].
    pub fn reload_changes(&mut self, changes: &Changes) -> Reload {
        let paths = match changes {
            Changes::Nothing => BTreeSet::new(),
            Changes::Paths(p) => p.clone(),
            Changes::Everything => return self.reload(),
        };
        if !self.reloaded || !self.incremental {
            return self.reload();
        }
        match self
            .changed_files(&paths)
            .and_then(|f| self.read_changed(f))
        {
            Some(reload) => reload,
            None => self.reload(),
        }
    }

    /// The manifest files under the source's path that `paths` name, with
    /// their stamps now, leaving out those whose stamp is the cached one;
    /// `None` when a path needs a full reload (the root itself, a
    /// directory, a symbolic link).
    fn changed_files(&self, paths: &BTreeSet<PathBuf>) -> Option<Vec<Changed>> {
        let root = std::path::absolute(&self.path).ok()?;
        let real = std::fs::canonicalize(&root).ok()?;
        let mut files = BTreeSet::new();
        for p in paths {
            let Ok(rel) = p.strip_prefix(&root) else {
                // Reported under the resolved path (an ancestor is a
                // symbolic link): read everything.
                if real != root && p.starts_with(&real) {
                    return None;
                }
                // Elsewhere in the parent directory: not ours, unless it
                // is the root or one of its ancestors.
                if root.starts_with(p) {
                    return None;
                }
                continue;
            };
            if rel.as_os_str().is_empty() {
                return None;
            }
            // Hidden files and directories are never read.
            if rel
                .components()
                .any(|c| c.as_os_str().to_string_lossy().starts_with('.'))
            {
                continue;
            }
            files.insert(self.path.join(rel));
        }
        let mut out = Vec::with_capacity(files.len());
        for f in files {
            match std::fs::symlink_metadata(&f) {
                Ok(m) if m.file_type().is_symlink() || m.is_dir() => return None,
                Ok(m) if m.is_file() => {
                    if !is_manifest(&f) {
                        continue;
                    }
                    let stamp = Stamp::from_meta(&m);
                    if self.files.get(&f).is_some_and(|c| c.stamp == stamp) {
                        continue;
                    }
                    out.push((f, Some(stamp)));
                }
                Ok(_) => continue,
                Err(_) => {
                    if self.files.contains_key(&f) {
                        out.push((f, None));
                    } else if self.files.keys().any(|k| k.starts_with(&f)) {
                        // A directory that was removed.
                        return None;
                    }
                }
            }
        }
        Some(out)
    }

    /// Read the changed files and apply them; `None` (nothing applied)
    /// when a full reload is needed.
    fn read_changed(&mut self, files: Vec<Changed>) -> Option<Reload> {
        // Read everything first: nothing changes unless all of it is usable.
        let mut read: Vec<(PathBuf, Option<Stamp>, Vec<Read>)> = Vec::with_capacity(files.len());
        let mut new_keys: HashSet<(Kind, ObjectKey)> = HashSet::new();
        let rewritten: HashSet<&Path> = files.iter().map(|(f, _)| f.as_path()).collect();
        for (file, stamp) in &files {
            let mut objects = Vec::new();
            if stamp.is_some() {
                let mut warned = Vec::new();
                let entries = &self.entries;
                let old = |kind: Kind, key: &ObjectKey| {
                    entries
                        .get(&(kind, key.clone()))
                        .and_then(|e| e.json.as_deref().cloned())
                };
                let processed = process_file(file, &old, self.fields, &mut warned).ok()?;
                if !warned.is_empty() {
                    return None;
                }
                for p in processed {
                    match p.outcome {
                        Outcome::Valid {
                            kind,
                            key,
                            object,
                            json,
                        } => {
                            // A duplicate, here or with an unchanged file.
                            let elsewhere = self
                                .entries
                                .get(&(kind, key.clone()))
                                .is_some_and(|e| !rewritten.contains(e.file.as_path()));
                            if elsewhere || !new_keys.insert((kind, key.clone())) {
                                return None;
                            }
                            objects.push(Read {
                                kind,
                                key,
                                object: *object,
                                json,
                                line: p.line,
                                position: p.position,
                            });
                        }
                        Outcome::Invalid { .. } => return None,
                        Outcome::Skipped => {}
                    }
                }
            }
            read.push((file.clone(), *stamp, objects));
        }
        let mut changed = false;
        for (file, stamp, objects) in read {
            let old = self.files.remove(&file);
            let mut items = Vec::with_capacity(objects.len());
            let mut kept: HashSet<(Kind, ObjectKey)> = HashSet::new();
            for r in objects {
                items.push(CachedItem::Valid {
                    kind: r.kind,
                    key: r.key.clone(),
                    line: r.line,
                    position: r.position,
                });
                let (entry, object) =
                    self.account(r.kind, &r.key, r.object, r.json, &file, r.line, r.position);
                if let Some(o) = object {
                    self.snapshot.insert(o);
                    changed = true;
                }
                self.entries.insert((r.kind, r.key.clone()), entry);
                kept.insert((r.kind, r.key));
            }
            // Objects the file no longer holds (and whose key no other
            // changed file took over) are forgotten.
            for item in old.iter().flat_map(|c| &c.items) {
                if let CachedItem::Valid { kind, key, .. } = item {
                    let k = (*kind, key.clone());
                    if !kept.contains(&k)
                        && !new_keys.contains(&k)
                        && self.entries.get(&k).is_some_and(|e| e.file == file)
                    {
                        self.entries.remove(&k);
                        self.snapshot.remove(*kind, key);
                        changed = true;
                    }
                }
            }
            match stamp {
                // A stamp taken after the read must match (as in a full
                // reload); else the next reload is a full one.
                Some(s) if Stamp::of(&file) == Some(s) => {
                    self.files.insert(
                        file,
                        CachedFile {
                            stamp: s,
                            items,
                            warnings: Vec::new(),
                        },
                    );
                }
                Some(_) => self.incremental = false,
                None => {}
            }
        }
        Some(Reload {
            snapshot: self.snapshot.clone(),
            errors: Vec::new(),
            warnings: Vec::new(),
            changed,
        })
    }
}
