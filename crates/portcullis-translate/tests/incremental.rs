//! The incremental path equals a full recompute after random edit sequences
//! (bounded, deterministic seeds): files rewritten and reported to
//! `FileSource::reload_changes`, translated by one long-lived `Reconciler`
//! (memo, shared per-route IR rules), must give exactly what a fresh
//! `translate` gives for the same snapshot, and the snapshot must be what a
//! full reload of the same files gives.
//!
//! The edits cover what invalidates reuse: routes added, changed, removed,
//! moved between listeners with different hostnames (the shared rules are
//! per hostname set), Services and EndpointSlices (everything built is
//! dropped), Gateway listeners, and policies that rewrite rules after
//! attachment (SecurityPolicy, BackendTrafficPolicy, BackendTLSPolicy:
//! copy-on-write of shared rules).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use portcullis_source::{Changes, FileSource};
use portcullis_translate::{Input, Options, Reconciler, translate};

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

const META: &str = "uid: u-{n}, creationTimestamp: \"2026-01-01T00:00:{s}Z\"";

fn meta(name: &str, ns: &str, sec: u64) -> String {
    let m = META
        .replace("{n}", name)
        .replace("{s}", &format!("{:02}", sec % 60));
    format!("{{name: {name}, namespace: {ns}, {m}}}")
}

fn class() -> String {
    "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: pc, uid: u-pc, creationTimestamp: \"2026-01-01T00:00:00Z\"}\nspec: {controllerName: portcullis.dev/gateway-controller}\n".into()
}

fn gateway(variant: u64) -> String {
    let host = match variant % 3 {
        0 => "",
        1 => ", hostname: \"*.example\"",
        _ => ", hostname: a.example",
    };
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {}\nspec:\n  gatewayClassName: pc\n  listeners:\n  - {{name: http, port: 8080, protocol: HTTP, allowedRoutes: {{namespaces: {{from: All}}}}}}\n  - {{name: wild, port: 8080, protocol: HTTP{host}, allowedRoutes: {{namespaces: {{from: Same}}}}}}\n",
        meta("gw", "default", 0)
    )
}

fn service(name: &str, port: u64) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {}\nspec: {{ports: [{{name: http, port: 80, targetPort: {port}}}]}}\n---\n\
         apiVersion: discovery.k8s.io/v1\nkind: EndpointSlice\nmetadata: {{name: {name}, namespace: default, uid: u-es-{name}, creationTimestamp: \"2026-01-01T00:00:00Z\", labels: {{kubernetes.io/service-name: {name}}}}}\n\
         addressType: IPv4\nports: [{{name: http, port: {port}}}]\nendpoints: [{{addresses: [10.0.0.{port_last}]}}]\n",
        meta(name, "default", 0),
        port_last = port % 250 + 1
    )
}

fn route(rng: &mut Rng, name: &str) -> String {
    let hosts = match rng.below(4) {
        0 => String::new(),
        1 => "\n  hostnames: [a.example]".into(),
        2 => "\n  hostnames: [\"*.example\", b.example]".into(),
        _ => "\n  hostnames: [c.other]".into(),
    };
    let section = match rng.below(3) {
        0 => "",
        1 => ", sectionName: http",
        _ => ", sectionName: wild",
    };
    let backend = ["a", "b", "missing"][rng.below(3) as usize];
    let filters = if rng.below(3) == 0 {
        "\n    filters: [{type: RequestHeaderModifier, requestHeaderModifier: {set: [{name: x-a, value: b}]}}]"
    } else {
        ""
    };
    let second = if rng.below(2) == 0 {
        "\n  - matches: [{path: {type: Exact, value: /exact}}, {headers: [{name: x-h, value: v}]}]\n    backendRefs: [{name: b, port: 80}]"
    } else {
        ""
    };
    format!(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {}\nspec:\n  parentRefs: [{{name: gw{section}}}]{hosts}\n  rules:\n  - matches: [{{path: {{type: PathPrefix, value: /p{}}}}}]{filters}\n    backendRefs: [{{name: {backend}, port: 80, weight: {}}}]{second}\n",
        meta(name, "default", rng.below(5)),
        rng.below(5),
        1 + rng.below(3)
    )
}

fn policy(rng: &mut Rng) -> String {
    let route = format!("r{}", rng.below(6));
    match rng.below(3) {
        0 => format!(
            "apiVersion: portcullis.dev/v1alpha1\nkind: SecurityPolicy\nmetadata: {}\nspec:\n  targetRef: {{group: gateway.networking.k8s.io, kind: HTTPRoute, name: {route}}}\n  authorization:\n    defaultAction: Deny\n",
            meta("sp", "default", 1)
        ),
        1 => format!(
            "apiVersion: portcullis.dev/v1alpha1\nkind: BackendTrafficPolicy\nmetadata: {}\nspec:\n  targetRefs: [{{group: gateway.networking.k8s.io, kind: Gateway, name: gw}}]\n  rateLimit:\n    local:\n      rules:\n        - limit: {{requests: {}, unit: Second}}\n",
            meta("btp", "default", 1),
            10 + rng.below(3)
        ),
        _ => format!(
            "apiVersion: gateway.networking.k8s.io/v1\nkind: BackendTLSPolicy\nmetadata: {}\nspec:\n  targetRefs: [{{group: \"\", kind: Service, name: {}}}]\n  validation: {{hostname: a.example.com, wellKnownCACertificates: System}}\n",
            meta("tls", "default", 1),
            ["a", "b"][rng.below(2) as usize]
        ),
    }
}

fn write(path: &Path, text: &str) -> PathBuf {
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name().unwrap().to_string_lossy()
    ));
    std::fs::write(&tmp, text).unwrap();
    std::fs::rename(&tmp, path).unwrap();
    path.to_path_buf()
}

fn edit(rng: &mut Rng, dir: &Path) -> PathBuf {
    match rng.below(10) {
        0..=4 => {
            let name = format!("r{}", rng.below(6));
            let text = route(rng, &name);
            write(&dir.join(format!("{name}.yaml")), &text)
        }
        5 => {
            let f = dir.join(format!("r{}.yaml", rng.below(6)));
            let _ = std::fs::remove_file(&f);
            f
        }
        6 => {
            let name = ["a", "b"][rng.below(2) as usize];
            write(
                &dir.join(format!("svc-{name}.yaml")),
                &service(name, 8000 + rng.below(3)),
            )
        }
        7 => write(&dir.join("gw.yaml"), &gateway(rng.below(3))),
        8 => write(&dir.join("policy.yaml"), &policy(rng)),
        _ => {
            let f = dir.join("policy.yaml");
            let _ = std::fs::remove_file(&f);
            f
        }
    }
}

#[test]
fn memoised_translation_of_incremental_reloads_equals_fresh_translation() {
    let options = Options::default();
    let mut reused = 0usize;
    for seed in 1..=3u64 {
        let dir = tempfile::tempdir().unwrap();
        let root = std::path::absolute(dir.path()).unwrap();
        let mut rng = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
        write(&root.join("class.yaml"), &class());
        write(&root.join("gw.yaml"), &gateway(0));
        write(&root.join("svc-a.yaml"), &service("a", 8000));
        write(&root.join("svc-b.yaml"), &service("b", 8001));
        for i in 0..6 {
            let text = route(&mut rng, &format!("r{i}"));
            write(&root.join(format!("r{i}.yaml")), &text);
        }
        let mut source = FileSource::new(&root);
        let mut full = FileSource::new(&root);
        let mut reconciler = Reconciler::new();
        let mut previous: Option<portcullis_ir::Config> = None;
        for step in 0..30 {
            let reload = if step == 0 {
                full.reload();
                source.reload()
            } else {
                let reported: BTreeSet<PathBuf> = (0..1 + rng.below(2))
                    .map(|_| edit(&mut rng, &root))
                    .collect();
                let r = source.reload_changes(&Changes::Paths(reported));
                let f = full.reload();
                assert_eq!(
                    format!("{:?}", r.snapshot),
                    format!("{:?}", f.snapshot),
                    "seed {seed}, step {step}: incremental reload differs from a full one"
                );
                r
            };
            let out = reconciler.translate(&reload.snapshot, &options, &Default::default());
            let input = Input {
                snapshot: &reload.snapshot,
                options: &options,
                previous_addresses: Default::default(),
                bind_errors: Default::default(),
            };
            let fresh = translate(&input);
            assert_eq!(
                out, fresh,
                "seed {seed}, step {step}: memo changed the output"
            );
            // Rules of unchanged routes are shared with the previous version.
            if let Some(prev) = &previous {
                let old: Vec<_> = prev
                    .ports
                    .iter()
                    .flat_map(|p| &p.listeners)
                    .flat_map(|l| &l.http_routes)
                    .collect();
                reused += out
                    .config
                    .ports
                    .iter()
                    .flat_map(|p| &p.listeners)
                    .flat_map(|l| &l.http_routes)
                    .filter(|r| old.iter().any(|o| std::sync::Arc::ptr_eq(o, r)))
                    .count();
            }
            previous = Some(out.config);
        }
    }
    assert!(reused > 0, "no rule was ever shared between versions");
}
