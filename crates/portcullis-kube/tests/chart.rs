//! The Helm chart and the plain manifests rendered from it.
//!
//! Helm cannot be installed from this project's package registries, so the
//! test renders the chart itself, with the subset of Go templates the chart
//! uses (`.Values.*`, `.Release.Name/Namespace`, `toYaml … | nindent N`,
//! `{{-` trimming): anything else fails the test. It checks that
//! `deploy/manifests/portcullis.yaml` is that rendering (rewrite it with
//! `UPDATE_MANIFESTS=1`), and, when `helm` is on PATH, that `helm template`
//! renders the same objects. Then it checks the RBAC rules grant exactly the
//! (group, resource, verb) list in `portcullis_kube::rbac::API_CALLS`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use portcullis_kube::rbac::API_CALLS;
use portcullis_store::Kind;
use serde_json::Value;

const RELEASE: &str = "portcullis";
const NAMESPACE: &str = "portcullis-system";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn lookup<'a>(values: &'a Value, path: &str) -> &'a Value {
    path.split('.').fold(values, |v, k| {
        v.get(k).unwrap_or_else(|| panic!("no value {path}"))
    })
}

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("not a scalar: {other}"),
    }
}

/// Helm's truthiness: absent, null, false, 0, "" and empty collections are false.
fn truthy(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) | Some(Value::Bool(false)) => false,
        Some(Value::String(s)) => !s.is_empty(),
        Some(Value::Array(a)) => !a.is_empty(),
        Some(Value::Object(o)) => !o.is_empty(),
        Some(Value::Number(n)) => n.as_f64() != Some(0.0),
        Some(_) => true,
    }
}

fn lookup_opt<'a>(values: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.').try_fold(values, |v, k| v.get(k))
}

/// Render one template with the supported subset (`.Values` and `.Release`
/// scalars, `toYaml … | nindent N`, `if`/`with .Values…` … `end`).
fn render(template: &str, values: &Value) -> String {
    let mut out = String::new();
    let mut rest = template;
    // Open `if`/`with` blocks: whether each is taken, and `with`'s dot.
    let mut blocks: Vec<(bool, Option<Value>)> = vec![];
    while let Some(start) = rest.find("{{") {
        let (before, after) = rest.split_at(start);
        let end = after.find("}}").expect("unclosed {{");
        let mut expr = &after[2..end];
        rest = &after[end + 2..];
        let active = blocks.iter().all(|b| b.0);
        if active {
            out.push_str(before);
        }
        if let Some(e) = expr.strip_prefix('-') {
            if active {
                let trimmed = out.trim_end().len();
                out.truncate(trimmed);
            }
            expr = e;
        }
        let expr = expr.trim().trim_end_matches('-').trim();
        if let Some(path) = expr
            .strip_prefix("if .Values.")
            .or_else(|| expr.strip_prefix("with .Values."))
        {
            let v = lookup_opt(values, path);
            blocks.push((truthy(v), v.cloned()));
            continue;
        }
        if expr == "end" {
            blocks.pop().expect("end without if/with");
            continue;
        }
        if !active {
            continue;
        }
        if expr == "toYaml . | nindent 4" || expr.starts_with("toYaml . |") {
            let n: usize = expr
                .rsplit_once("nindent")
                .expect("toYaml needs | nindent N")
                .1
                .trim()
                .parse()
                .unwrap();
            let dot = blocks
                .iter()
                .rev()
                .find_map(|b| b.1.as_ref())
                .expect("toYaml . outside with");
            let yaml = serde_saphyr::to_string(dot).unwrap();
            for line in yaml.lines() {
                out.push('\n');
                out.push_str(&" ".repeat(n));
                out.push_str(line);
            }
        } else if let Some(arg) = expr.strip_prefix("toYaml ") {
            let (path, indent) = arg
                .split_once("| nindent")
                .expect("toYaml needs | nindent N");
            let n: usize = indent.trim().parse().unwrap();
            let v = lookup(
                values,
                path.trim().strip_prefix(".Values.").expect(".Values path"),
            );
            let yaml = serde_saphyr::to_string(v).unwrap();
            for line in yaml.lines() {
                out.push('\n');
                out.push_str(&" ".repeat(n));
                out.push_str(line);
            }
        } else if expr == ".Release.Name" {
            out.push_str(RELEASE);
        } else if expr == ".Release.Namespace" {
            out.push_str(NAMESPACE);
        } else if let Some(path) = expr.strip_prefix(".Values.") {
            out.push_str(&scalar(lookup(values, path)));
        } else {
            panic!("template construct not supported by the test renderer: {{{{{expr}}}}}");
        }
    }
    assert!(blocks.is_empty(), "unclosed if/with");
    out.push_str(rest);
    out
}

fn render_chart() -> String {
    let chart = root().join("deploy/helm/portcullis");
    let values: Value =
        serde_saphyr::from_str(&std::fs::read_to_string(chart.join("values.yaml")).unwrap())
            .unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(chart.join("templates"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let mut out = String::from(
        "# Rendered from deploy/helm/portcullis with its default values\n# (release \"portcullis\", namespace \"portcullis-system\"). Do not edit:\n# UPDATE_MANIFESTS=1 cargo test -p portcullis-kube --test chart\n",
    );
    // As `helm template --include-crds`: the chart's CRDs first, so that
    // `kubectl apply -f` of this one file installs everything the controller
    // watches (its /readyz names any kind it cannot watch).
    let mut crds: Vec<PathBuf> = std::fs::read_dir(chart.join("crds"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    crds.sort();
    for f in crds {
        let name = f.file_name().unwrap().to_string_lossy();
        out.push_str(&format!("---\n# Source: portcullis/crds/{name}\n"));
        let body = std::fs::read_to_string(&f).unwrap();
        out.push_str(body.trim_start_matches("---\n").trim_end());
        out.push('\n');
    }
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy();
        out.push_str(&format!("---\n# Source: portcullis/templates/{name}\n"));
        out.push_str(render(&std::fs::read_to_string(&f).unwrap(), &values).trim_end());
        out.push('\n');
    }
    out
}

/// Parse multi-document YAML into objects keyed by (kind, namespace, name).
fn docs(yaml: &str) -> BTreeMap<(String, String, String), Value> {
    let mut out = BTreeMap::new();
    for doc in yaml.split("\n---") {
        let body: String = doc
            .lines()
            .filter(|l| !l.trim_start().starts_with('#') && l.trim() != "---")
            .collect::<Vec<_>>()
            .join("\n");
        if body.trim().is_empty() {
            continue;
        }
        let v: Value = serde_saphyr::from_str(&body).unwrap_or_else(|e| panic!("{e}\n{body}"));
        let key = (
            scalar(&v["kind"]),
            v["metadata"]["namespace"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            scalar(&v["metadata"]["name"]),
        );
        assert!(out.insert(key.clone(), v).is_none(), "duplicate {key:?}");
    }
    out
}

#[test]
fn manifests_are_the_chart_rendered() {
    let rendered = render_chart();
    let path = root().join("deploy/manifests/portcullis.yaml");
    if std::env::var_os("UPDATE_MANIFESTS").is_some() {
        std::fs::write(&path, &rendered).unwrap();
    }
    let on_disk = std::fs::read_to_string(&path).unwrap();
    assert_eq!(
        docs(&rendered),
        docs(&on_disk),
        "deploy/manifests/portcullis.yaml is stale: UPDATE_MANIFESTS=1"
    );
    let d = docs(&on_disk);
    let kinds: BTreeSet<&str> = d.keys().map(|(k, _, _)| k.as_str()).collect();
    let want: BTreeSet<&str> = [
        "ClusterRole",
        "ClusterRoleBinding",
        "CustomResourceDefinition",
        "Deployment",
        "GatewayClass",
        "IngressClass",
        "PodDisruptionBudget",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
    ]
    .into();
    assert_eq!(kinds, want);
    let dep = &d[&(
        "Deployment".into(),
        NAMESPACE.into(),
        "portcullis-controller".into(),
    )];
    assert_eq!(dep["spec"]["replicas"], 2);
    assert_eq!(
        dep["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"],
        "512Mi"
    );
    let class = &d[&("GatewayClass".into(), String::new(), "portcullis".into())];
    assert_eq!(
        class["spec"]["controllerName"],
        portcullis_translate::CONTROLLER_NAME
    );
    let ingress_class = &d[&("IngressClass".into(), String::new(), "portcullis".into())];
    assert_eq!(
        ingress_class["spec"]["controller"],
        portcullis_source::ingress::INGRESS_CONTROLLER
    );
    // The ServiceAccount the bindings name exists.
    assert!(d.contains_key(&(
        "ServiceAccount".into(),
        NAMESPACE.into(),
        "portcullis-controller".into()
    )));
}

#[test]
fn helm_template_agrees_when_helm_is_available() {
    let Ok(out) = std::process::Command::new("helm")
        .args([
            "template",
            RELEASE,
            "deploy/helm/portcullis",
            "--namespace",
            NAMESPACE,
        ])
        .current_dir(root())
        .output()
    else {
        eprintln!("helm not installed: the chart is checked by the test renderer only");
        return;
    };
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        docs(&String::from_utf8_lossy(&out.stdout)),
        docs(&render_chart())
    );
}

type Grant = (String, String, String, bool);

fn grants(d: &BTreeMap<(String, String, String), Value>) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for ((kind, ns, _), v) in d {
        let namespaced = match kind.as_str() {
            "ClusterRole" => false,
            "Role" => {
                assert_eq!(ns, NAMESPACE);
                true
            }
            _ => continue,
        };
        for rule in v["rules"].as_array().unwrap() {
            for g in rule["apiGroups"].as_array().unwrap() {
                for r in rule["resources"].as_array().unwrap() {
                    for verb in rule["verbs"].as_array().unwrap() {
                        assert!(
                            ![g, r, verb].iter().any(|x| x.as_str() == Some("*")),
                            "no wildcards"
                        );
                        out.insert((scalar(g), scalar(r), scalar(verb), namespaced));
                    }
                }
            }
        }
    }
    out
}

#[test]
fn rbac_grants_exactly_the_calls_the_code_makes() {
    let d =
        docs(&std::fs::read_to_string(root().join("deploy/manifests/portcullis.yaml")).unwrap());
    let granted = grants(&d);
    let used: BTreeSet<Grant> = API_CALLS
        .iter()
        .map(|c| {
            (
                c.group.to_string(),
                c.resource.to_string(),
                c.verb.to_string(),
                c.namespaced,
            )
        })
        .collect();
    let missing: Vec<_> = used.difference(&granted).collect();
    let extra: Vec<_> = granted.difference(&used).collect();
    assert!(missing.is_empty(), "the chart does not grant {missing:?}");
    assert!(
        extra.is_empty(),
        "the chart grants calls the code never makes: {extra:?}"
    );
}

#[test]
fn api_calls_cover_every_kind_watched_and_every_status_written() {
    let has = |group: &str, resource: &str, verb: &str| {
        API_CALLS
            .iter()
            .any(|c| c.group == group && c.resource == resource && c.verb == verb)
    };
    for kind in Kind::ALL {
        // Ingress and IngressClass are served in standalone mode only so far.
        if matches!(kind, Kind::Ingress | Kind::IngressClass) {
            continue;
        }
        let plural = match kind {
            Kind::BackendTLSPolicy => "backendtlspolicies".to_string(),
            Kind::SecurityPolicy => "securitypolicies".to_string(),
            Kind::BackendTrafficPolicy => "backendtrafficpolicies".to_string(),
            Kind::ClientTrafficPolicy => "clienttrafficpolicies".to_string(),
            Kind::GatewayClass => "gatewayclasses".to_string(),
            k => format!("{}s", k.as_str().to_ascii_lowercase()),
        };
        assert!(
            has(kind.group(), &plural, "list") && has(kind.group(), &plural, "watch"),
            "{kind} is watched"
        );
        if portcullis_kube::status::merge::list_keys(kind).is_some()
            || matches!(kind, Kind::GatewayClass | Kind::Gateway | Kind::ListenerSet)
        {
            let ar = portcullis_kube::status::writer::api_resource(kind);
            assert_eq!(ar.plural, plural);
            assert!(
                has(kind.group(), &format!("{plural}/status"), "patch"),
                "{kind} status is written"
            );
            assert!(
                has(kind.group(), &plural, "get"),
                "{kind} is re-read after a conflict"
            );
        }
    }
    assert!(Path::new(&root().join("deploy/helm/portcullis/Chart.yaml")).exists());
}
