//! Translation of 10,000 HTTPRoutes (plain `harness = false` bench).
//!
//! Run with `cargo bench -p portcullis-translate`. The manifests are generated
//! into a temporary directory and loaded with `portcullis_source::load_path`
//! (defaults and validation as in `portcullis run`); then `translate` is timed
//! for 10 and 10,000 routes, with 10k hostnames and with 10k path rules on one
//! hostname.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use portcullis_store::Snapshot;
use portcullis_translate::{Input, Options, translate};

const BASE: &str = r#"apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: portcullis}
spec: {controllerName: portcullis.dev/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: gw, namespace: default}
spec:
  gatewayClassName: portcullis
  addresses: [{type: IPAddress, value: 127.0.0.1}]
  listeners: [{name: http, port: 8080, protocol: HTTP}]
---
apiVersion: v1
kind: Service
metadata: {name: backend, namespace: default}
spec: {ports: [{name: http, port: 80, targetPort: 9000}]}
---
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: backend, namespace: default, labels: {kubernetes.io/service-name: backend}}
addressType: IPv4
ports: [{name: http, port: 9000}]
endpoints: [{addresses: [127.0.0.1], conditions: {ready: true}}]
"#;

fn manifests(n: usize, one_host: bool) -> String {
    let mut s = String::from(BASE);
    for i in 0..n {
        let (host, path) = if one_host {
            ("one.example".to_string(), format!("/svc{i}"))
        } else {
            (format!("r{i}.example"), "/".to_string())
        };
        write!(
            s,
            "---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\n\
             metadata: {{name: r{i}, namespace: default}}\n\
             spec:\n  parentRefs: [{{name: gw}}]\n  hostnames: [{host}]\n  rules:\n    \
             - matches: [{{path: {{type: PathPrefix, value: {path}}}}}]\n      \
             backendRefs: [{{name: backend, port: 80}}]\n"
        )
        .unwrap();
    }
    s
}

fn snapshot(n: usize, one_host: bool) -> Snapshot {
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "portcullis-translate-bench-{}-{n}-{one_host}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("all.yaml");
    std::fs::write(&file, manifests(n, one_host)).unwrap();
    let loaded = portcullis_source::load_path(&file);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(loaded.errors.is_empty(), "{:?}", &loaded.errors[..1]);
    let mut snap = Snapshot::default();
    for o in loaded.objects {
        snap.insert(o.object);
    }
    snap
}

fn time(snap: &Snapshot, iters: u32) -> Duration {
    let options = Options::default();
    let input = Input {
        snapshot: snap,
        options: &options,
        previous_addresses: Default::default(),
        bind_errors: Default::default(),
    };
    let out = translate(&input);
    let rules: usize = out
        .config
        .ports
        .iter()
        .flat_map(|p| &p.listeners)
        .map(|l| l.http_routes.len())
        .sum();
    assert!(rules > 0, "routes must attach");
    let start = Instant::now();
    for _ in 0..iters {
        std::hint::black_box(translate(std::hint::black_box(&input)));
    }
    start.elapsed() / iters
}

fn main() {
    println!(
        "{:<26} {:>12} {:>12}",
        "translate()", "10 routes", "10k routes"
    );
    for (name, one_host) in [("10k hostnames", false), ("10k paths, one hostname", true)] {
        let small = time(&snapshot(10, one_host), 200);
        let large = time(&snapshot(10_000, one_host), 5);
        println!("{name:<26} {small:>10.2?} {large:>10.2?}");
    }
}
