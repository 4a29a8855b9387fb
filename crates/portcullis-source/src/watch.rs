//! Watching a file or a directory for changes, debounced.
//!
//! Editors save by writing a temporary file and renaming it over the old one,
//! and Kubernetes ConfigMap volumes swap a `..data` symbolic link to a new
//! directory atomically; in both cases the inode that was watched goes away.
//! So besides the path itself (recursively for a directory), the parent
//! directory of the path is watched, and the directory the path finally
//! resolves to; after every burst of events the set of watched directories
//! is computed again, following the new symbolic links.

use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak, mpsc as std_mpsc};
use std::time::{Duration, Instant};

use notify::event::{AccessKind, AccessMode, EventKind, ModifyKind, RenameMode};
use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use tokio::sync::mpsc;

/// How long a burst of events must be quiet before it is reported.
const QUIET: Duration = Duration::from_millis(30);
/// How long a burst must be quiet when its last event completed a write
/// (a file closed after writing, or renamed into place): such a burst is
/// most likely over, so it is reported almost at once, while the events
/// of a burst still arriving (a tree being copied) keep being coalesced.
const SETTLE: Duration = Duration::from_millis(2);
/// The longest a busy burst is held back.
const MAX_DELAY: Duration = Duration::from_millis(500);

/// Why a watch could not start.
#[derive(Debug, thiserror::Error)]
pub enum SourceWatchError {
    /// Neither the path nor its parent directory exists.
    #[error("cannot watch {0}: neither it nor its parent directory exists")]
    NotFound(PathBuf),
    /// The file notification backend failed.
    #[error("cannot watch {path}: {source}")]
    Notify {
        /// The path.
        path: PathBuf,
        /// The backend's error.
        source: notify::Error,
    },
}

struct Inner {
    watcher: RecommendedWatcher,
    watched: HashMap<PathBuf, RecursiveMode>,
}

/// A running watch: yields `()` once per debounced burst of changes.
///
/// It dereferences to its [`mpsc::Receiver`]; the watch stops when it is dropped.
#[derive(Debug)]
pub struct Watch {
    rx: mpsc::Receiver<()>,
    _inner: Arc<Mutex<Inner>>,
    changes: Arc<Mutex<Changes>>,
}

/// What changed since [`Watch::take_changes`] was last called, as the
/// file notifications told.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Changes {
    /// Nothing was reported.
    #[default]
    Nothing,
    /// These paths (absolute; files or directories, created, written,
    /// renamed or removed).
    Paths(BTreeSet<PathBuf>),
    /// Anything may have changed (an event without paths, a rescan, a
    /// watched directory or symbolic link that moved): read everything.
    Everything,
}

impl Changes {
    fn add(&mut self, event: &notify::Event) {
        if matches!(self, Changes::Everything) {
            return;
        }
        if event.paths.is_empty() || event.need_rescan() {
            *self = Changes::Everything;
            return;
        }
        match self {
            Changes::Paths(p) => p.extend(event.paths.iter().cloned()),
            _ => *self = Changes::Paths(event.paths.iter().cloned().collect()),
        }
    }
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Inner")
            .field("watched", &self.watched)
            .finish()
    }
}

impl Watch {
    /// Wait for the next burst of changes; `None` if the watch stopped.
    pub async fn changed(&mut self) -> Option<()> {
        self.rx.recv().await
    }

    /// The paths reported since the last call (what a reload after
    /// [`Watch::changed`] needs to read again; see
    /// [`crate::FileSource::reload_changes`]).
    pub fn take_changes(&self) -> Changes {
        std::mem::take(&mut *self.changes.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl std::ops::Deref for Watch {
    type Target = mpsc::Receiver<()>;
    fn deref(&self) -> &Self::Target {
        &self.rx
    }
}

impl std::ops::DerefMut for Watch {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.rx
    }
}

/// Watch `path` (a file or a directory) for changes.
pub fn watch(path: &Path) -> Result<Watch, SourceWatchError> {
    let root = absolute(path);
    let (raw_tx, raw_rx) = std_mpsc::channel::<notify::Event>();
    let watcher = notify::recommended_watcher(move |res: notify::Result<notify::Event>| {
        if let Ok(event) = res {
            let _ = raw_tx.send(event);
        }
    })
    .map_err(|source| SourceWatchError::Notify {
        path: root.clone(),
        source,
    })?;
    let inner = Arc::new(Mutex::new(Inner {
        watcher,
        watched: HashMap::new(),
    }));
    {
        let mut guard = inner.lock().unwrap_or_else(|e| e.into_inner());
        let wanted = targets(&root);
        if wanted.is_empty() {
            return Err(SourceWatchError::NotFound(root));
        }
        let _ = update(&mut guard, wanted);
        if guard.watched.is_empty() {
            let source = notify::Error::generic("no directory could be watched");
            return Err(SourceWatchError::Notify { path: root, source });
        }
    }
    let (tx, rx) = mpsc::channel(1);
    let weak = Arc::downgrade(&inner);
    let changes = Arc::new(Mutex::new(Changes::Nothing));
    let acc = changes.clone();
    std::thread::Builder::new()
        .name("portcullis-watch".into())
        .spawn(move || debounce(root, raw_rx, tx, weak, acc))
        .map_err(|e| SourceWatchError::Notify {
            path: path.to_path_buf(),
            source: notify::Error::io(e),
        })?;
    Ok(Watch {
        rx,
        _inner: inner,
        changes,
    })
}

fn absolute(path: &Path) -> PathBuf {
    std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf())
}

/// The directories to watch for `root`, as things are now.
fn targets(root: &Path) -> Vec<(PathBuf, RecursiveMode)> {
    let mut out = Vec::new();
    if let Some(parent) = root.parent().filter(|p| p.is_dir()) {
        out.push((parent.to_path_buf(), RecursiveMode::NonRecursive));
    }
    match std::fs::metadata(root) {
        Ok(m) if m.is_dir() => {
            out.push((root.to_path_buf(), RecursiveMode::Recursive));
            if let Ok(real) = std::fs::canonicalize(root)
                && real != root
            {
                out.push((real, RecursiveMode::Recursive));
            }
        }
        Ok(_) => {
            if let Some(real_parent) = std::fs::canonicalize(root)
                .ok()
                .and_then(|r| r.parent().map(Path::to_path_buf))
                && Some(real_parent.as_path()) != root.parent()
            {
                out.push((real_parent, RecursiveMode::NonRecursive));
            }
        }
        Err(_) => {}
    }
    out
}

/// Watch exactly `wanted`; whether that changed what was watched.
fn update(inner: &mut Inner, wanted: Vec<(PathBuf, RecursiveMode)>) -> bool {
    let before = inner.watched.clone();
    let stale: Vec<PathBuf> = inner
        .watched
        .iter()
        .filter(|(p, m)| !wanted.contains(&((*p).clone(), **m)))
        .map(|(p, _)| p.clone())
        .collect();
    for p in stale {
        let _ = inner.watcher.unwatch(&p);
        inner.watched.remove(&p);
    }
    for (p, mode) in wanted {
        if inner.watched.contains_key(&p) {
            continue;
        }
        match inner.watcher.watch(&p, mode) {
            Ok(()) => {
                inner.watched.insert(p, mode);
            }
            Err(e) => tracing::debug!(path = %p.display(), "cannot watch: {e}"),
        }
    }
    inner.watched != before
}

/// Whether an event can change what is read under `root`.
fn relevant(event: &notify::Event, root: &Path) -> bool {
    match event.kind {
        EventKind::Access(AccessKind::Close(AccessMode::Write)) => {}
        EventKind::Access(_) => return false,
        _ => {}
    }
    let real = std::fs::canonicalize(root).ok();
    // For a file, the directory it finally resolves into when that is not its
    // own directory (a ConfigMap volume's `..2024_...`): all of it counts.
    let root_dir = root.parent().and_then(|p| std::fs::canonicalize(p).ok());
    let real_dir = real
        .as_deref()
        .filter(|r| !r.is_dir())
        .and_then(Path::parent)
        .filter(|d| Some(*d) != root_dir.as_deref());
    let name = root.file_name();
    event.paths.iter().any(|p| {
        p.starts_with(root)
            || real.as_ref().is_some_and(|r| p.starts_with(r))
            || real_dir.is_some_and(|d| p.starts_with(d))
            // In the parent: the path itself, or the links of a ConfigMap volume.
            || (p.parent() == root.parent()
                && (p.file_name() == name
                    || p.file_name().is_some_and(|n| n.to_string_lossy().starts_with(".."))))
    })
}

/// Whether an event completes a write: a file closed after writing, or
/// renamed into place.
fn completes_write(event: &notify::Event) -> bool {
    matches!(
        event.kind,
        EventKind::Access(AccessKind::Close(AccessMode::Write))
            | EventKind::Modify(ModifyKind::Name(RenameMode::To | RenameMode::Both))
    )
}

fn debounce(
    root: PathBuf,
    raw: std_mpsc::Receiver<notify::Event>,
    tx: mpsc::Sender<()>,
    inner: Weak<Mutex<Inner>>,
    changes: Arc<Mutex<Changes>>,
) {
    let note = |e: &notify::Event| {
        changes.lock().unwrap_or_else(|e| e.into_inner()).add(e);
    };
    loop {
        // Wait for the first relevant event of a burst.
        let first = match raw.recv() {
            Ok(e) => e,
            Err(_) => return,
        };
        if tx.is_closed() {
            return;
        }
        if !relevant(&first, &root) {
            continue;
        }
        note(&first);
        let start = Instant::now();
        let mut quiet = if completes_write(&first) {
            SETTLE
        } else {
            QUIET
        };
        loop {
            let left = MAX_DELAY.saturating_sub(start.elapsed());
            if left.is_zero() {
                break;
            }
            match raw.recv_timeout(quiet.min(left)) {
                Ok(e) => {
                    quiet = if completes_write(&e) { SETTLE } else { QUIET };
                    note(&e);
                    continue;
                }
                Err(std_mpsc::RecvTimeoutError::Timeout) => break,
                Err(std_mpsc::RecvTimeoutError::Disconnected) => return,
            }
        }
        // Follow renamed directories and swapped symbolic links.
        match inner.upgrade() {
            Some(inner) => {
                let mut guard = inner.lock().unwrap_or_else(|e| e.into_inner());
                if update(&mut guard, targets(&root)) {
                    // A directory or link moved: paths may be stale.
                    *changes.lock().unwrap_or_else(|e| e.into_inner()) = Changes::Everything;
                }
            }
            None => return,
        }
        match tx.try_send(()) {
            Ok(()) | Err(mpsc::error::TrySendError::Full(())) => {}
            Err(mpsc::error::TrySendError::Closed(())) => return,
        }
    }
}
