//! `FileSource::reload_changes` (read only the reported paths) gives what a
//! full `FileSource::reload` gives, after bounded sequences of random edits
//! (deterministic seeds): new, rewritten, renamed-over and removed files,
//! files with several objects, objects moving between files, duplicates,
//! invalid objects, YAML errors, hidden temporary files and subdirectories.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use portcullis_source::{Changes, FileSource, Reload};

/// xorshift64*: a small deterministic generator (no dependency).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// An HTTPRoute with a fixed uid and creationTimestamp, so two sources
/// reading the same files give equal objects.
fn route(name: &str, host: u64, weight: u64) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
         metadata: {{name: {name}, namespace: default, uid: uid-{name}, creationTimestamp: \"2026-01-01T00:00:00Z\"}}\n\
         spec:\n  parentRefs: [{{name: gw}}]\n  hostnames: [h{host}.example]\n  rules:\n  - backendRefs: [{{name: svc, port: 80, weight: {weight}}}]\n"
    )
}

fn invalid_route(name: &str) -> String {
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
         metadata: {{name: {name}, namespace: default, uid: uid-{name}, creationTimestamp: \"2026-01-01T00:00:00Z\"}}\n\
         spec:\n  parentRefs: [{{name: gw}}]\n  hostnames: [\"-not a hostname-\"]\n"
    )
}

/// Write by temporary file and rename, as editors and the bench do.
fn write(path: &Path, text: &str) -> Vec<PathBuf> {
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
    vec![tmp, path.to_path_buf()]
}

/// One random edit under `dir`; the paths a watcher would report.
fn edit(rng: &mut Rng, dir: &Path) -> Vec<PathBuf> {
    let file = |i: u64| dir.join(format!("f{i}.yaml"));
    let name = |i: u64| format!("r{i}");
    match rng.below(12) {
        // A file with one route (new or rewritten), most of the time.
        0..=4 => {
            let i = rng.below(8);
            write(
                &file(i),
                &route(&name(rng.below(10)), rng.below(3), rng.below(4)),
            )
        }
        // Two routes in one file (possibly a duplicate of another file's).
        5 => {
            let i = rng.below(8);
            let text = format!(
                "{}---\n{}",
                route(&name(rng.below(10)), 1, 1),
                route(&name(rng.below(10)), 2, 2)
            );
            write(&file(i), &text)
        }
        // Removed.
        6 | 7 => {
            let f = file(rng.below(8));
            let _ = std::fs::remove_file(&f);
            vec![f]
        }
        // An invalid object, or a file that does not parse.
        8 => write(&file(rng.below(8)), &invalid_route(&name(rng.below(10)))),
        9 => write(&file(rng.below(8)), "kind: [unterminated\n"),
        // A file in a subdirectory (created with it), or a hidden file.
        10 => {
            let sub = dir.join("sub");
            let created = !sub.exists();
            std::fs::create_dir_all(&sub).unwrap();
            let f = sub.join(format!("s{}.yaml", rng.below(2)));
            let mut paths = write(&f, &route(&name(10 + rng.below(3)), 0, 1));
            if created {
                paths.push(sub);
            }
            paths
        }
        _ => {
            let f = dir.join(".hidden.yaml");
            std::fs::write(&f, route("hidden", 0, 1)).unwrap();
            vec![f]
        }
    }
}

/// What must agree (errors compared as text: file, line, object, message).
fn view(r: &Reload) -> (String, Vec<String>, Vec<String>, bool) {
    (
        format!("{:?}", r.snapshot),
        r.errors.iter().map(ToString::to_string).collect(),
        r.warnings.clone(),
        r.changed,
    )
}

#[test]
fn reading_only_reported_paths_equals_a_full_reload_after_random_edits() {
    for seed in 1..=3u64 {
        let dir = tempfile::tempdir().unwrap();
        let root = std::path::absolute(dir.path()).unwrap();
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        for i in 0..4 {
            write(
                &root.join(format!("f{i}.yaml")),
                &route(&format!("r{i}"), i, 1),
            );
        }
        let mut partial = FileSource::new(&root);
        let mut full = FileSource::new(&root);
        assert_eq!(view(&partial.reload()), view(&full.reload()));
        for step in 0..25 {
            let mut reported = BTreeSet::new();
            // Sometimes two edits are reported together.
            for _ in 0..1 + rng.below(2) {
                reported.extend(edit(&mut rng, &root));
            }
            let a = partial.reload_changes(&Changes::Paths(reported));
            let b = full.reload();
            assert_eq!(view(&a), view(&b), "seed {seed}, step {step}");
            // Nothing reported: nothing changed.
            let a = partial.reload_changes(&Changes::Nothing);
            let b = full.reload();
            assert_eq!(view(&a), view(&b), "seed {seed}, step {step} (again)");
        }
    }
}
