//! Golden tests: `tests/golden/<case>.in.yaml` → `tests/golden/<case>.out.yaml`
//! (the IR plus every status), one case per spec rule and per bug.
//!
//! Inputs go through the real file source (so CRD defaults apply as in
//! production); `# bind-error: ADDR:PORT message` lines in an input stand for
//! sockets the data plane could not bind; `# reserved-port: PORT why` lines
//! reserve a port as Kubernetes mode does. Set `UPDATE_GOLDEN=1` to rewrite the outputs, then review the diff.

use std::path::{Path, PathBuf};

use portcullis_store::Snapshot;
use serde_json::{Value, json};

fn translate_file(path: &Path) -> Value {
    let loaded = portcullis_source::load_path(path);
    assert!(
        loaded.errors.is_empty(),
        "{}: input must be valid: {:#?}",
        path.display(),
        loaded
            .errors
            .iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
    );
    let mut snapshot = Snapshot::default();
    for o in loaded.objects {
        let mut obj = o.object;
        let meta = obj.meta_mut();
        meta.generation.get_or_insert(1);
        snapshot.insert(obj);
    }
    // `# bind-error: ADDR:PORT message` lines give the data plane's bind
    // errors, as `portcullis run` feeds them back.
    let text = std::fs::read_to_string(path).unwrap();
    let bind_errors = text
        .lines()
        .filter_map(|l| l.strip_prefix("# bind-error: "))
        .map(|l| {
            let (addr, msg) = l.split_once(' ').expect("# bind-error: ADDR:PORT message");
            (addr.parse().expect("a socket address"), msg.to_string())
        })
        .collect();
    // `# reserved-port: PORT why` lines reserve ports, as Kubernetes mode
    // reserves the provisioned proxy's admin port.
    let reserved_ports = text
        .lines()
        .filter_map(|l| l.strip_prefix("# reserved-port: "))
        .map(|l| {
            let (port, why) = l.split_once(' ').expect("# reserved-port: PORT why");
            (port.parse().expect("a port"), why.to_string())
        })
        .collect();
    let options = portcullis_translate::Options {
        address_pool: Some("10.1.0.0/29".parse().unwrap()),
        reserved_ports,
        ..Default::default()
    };
    let input = portcullis_translate::Input {
        snapshot: &snapshot,
        options: &options,
        previous_addresses: Default::default(),
        bind_errors,
    };
    let out = portcullis_translate::translate(&input);
    let statuses: Vec<Value> = out
        .statuses
        .iter()
        .map(|(r, s)| json!({"kind": r.kind.as_str(), "name": r.key.to_string(), "status": s}))
        .collect();
    json!({ "statuses": statuses, "config": out.config })
}

fn cases() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".in.yaml"))
        .collect();
    v.sort();
    v
}

#[test]
fn golden() {
    let update = std::env::var_os("UPDATE_GOLDEN").is_some();
    let mut failures = vec![];
    let all = cases();
    assert!(all.len() >= 10, "expected the golden cases to be present");
    for input in all {
        let out_path = PathBuf::from(input.to_string_lossy().replace(".in.yaml", ".out.yaml"));
        let got = serde_saphyr::to_string(&translate_file(&input)).unwrap();
        if update {
            std::fs::write(&out_path, &got).unwrap();
            continue;
        }
        let want = std::fs::read_to_string(&out_path).unwrap_or_default();
        if want != got {
            failures.push(format!(
                "{}:\n{}",
                out_path.display(),
                pretty_assertions::StrComparison::new(&want, &got)
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "golden mismatches (UPDATE_GOLDEN=1 to accept):\n{}",
        failures.join("\n")
    );
}
