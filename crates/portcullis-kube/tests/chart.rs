//! The Helm chart and the plain manifests rendered from it.
//!
//! The chart is rendered here by a small Go-template interpreter (`gotmpl/`,
//! the subset the chart uses; anything else fails), so `deploy/manifests/portcullis.yaml`
//! is generated and checked without Helm (rewrite it with `UPDATE_MANIFESTS=1`).
//! The real Helm (`$HELM`, else `helm` on PATH; `scripts/test` builds
//! helm.sh/helm/v4 from testenv/helm and sets `HELM`) then lints the chart
//! (`--strict`), renders it with several sets of values and must agree with
//! this renderer object for object, and refuses values the schema refuses.
//! Without Helm these checks are skipped, except under `CI=true`, where
//! that is a failure. The RBAC rules of every rendering are checked against
//! `portcullis_kube::rbac::rules` both ways.

mod gotmpl;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use portcullis_kube::rbac::{API_CALLS, Rule, rules};
use portcullis_kube::scope::Scope;
use portcullis_store::Kind;
use serde_json::{Value, json};

const RELEASE: &str = "portcullis";
const NAMESPACE: &str = "portcullis-system";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn chart() -> PathBuf {
    root().join("deploy/helm/portcullis")
}

fn yaml_file(p: &Path) -> Value {
    serde_saphyr::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

/// `over` merged into `base` (maps key by key, anything else replaced), as Helm merges values.
fn merge(base: &mut Value, over: &Value) {
    match (base, over) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (b, o) => *b = o.clone(),
    }
}

/// One rendering: release, namespace, values over the chart's defaults.
struct Install {
    release: &'static str,
    namespace: &'static str,
    values: Value,
}

impl Install {
    fn default_install() -> Install {
        Install {
            release: RELEASE,
            namespace: NAMESPACE,
            values: json!({}),
        }
    }

    fn values(&self) -> Value {
        let mut v = yaml_file(&chart().join("values.yaml"));
        merge(&mut v, &self.values);
        v
    }

    fn scope(&self) -> Scope {
        let v = self.values();
        let list = |k: &str| -> Vec<String> {
            v[k].as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_str().unwrap().to_string())
                .collect()
        };
        Scope::new(&list("watchNamespaces"), &list("secretNamespaces")).unwrap()
    }
}

fn templates() -> (gotmpl::Templates, Vec<String>) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(chart().join("templates"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    let sources: Vec<(String, String)> = files
        .iter()
        .map(|f| {
            (
                f.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read_to_string(f).unwrap(),
            )
        })
        .collect();
    let names = sources
        .iter()
        .map(|(n, _)| n.clone())
        .filter(|n| !n.starts_with('_'))
        .collect();
    (gotmpl::Templates::parse(&sources).unwrap(), names)
}

/// `.` of the chart's templates.
fn dot(i: &Install) -> Value {
    let meta = yaml_file(&chart().join("Chart.yaml"));
    json!({
        "Values": i.values(),
        "Release": {"Name": i.release, "Namespace": i.namespace, "Service": "Helm"},
        "Chart": {"Name": meta["name"], "Version": meta["version"], "AppVersion": meta["appVersion"]},
    })
}

/// Render a template file (NOTES.txt, say) with the test renderer.
fn render_one(name: &str, i: &Install) -> Result<String, gotmpl::TmplError> {
    templates().0.render(name, &dot(i))
}

/// The chart's objects as `helm template --include-crds` prints them.
fn render(i: &Install) -> Result<String, gotmpl::TmplError> {
    let (t, names) = templates();
    let dot = dot(i);
    let mut out = String::new();
    let mut crds: Vec<PathBuf> = std::fs::read_dir(chart().join("crds"))
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
    for name in names.iter().filter(|n| *n != "NOTES.txt") {
        let body = t.render(name, &dot)?;
        if body.trim().is_empty() {
            continue;
        }
        out.push_str(&format!("---\n# Source: portcullis/templates/{name}\n"));
        out.push_str(body.trim_end());
        out.push('\n');
    }
    Ok(out)
}

fn render_chart() -> String {
    // As `helm template --include-crds`: the chart's CRDs first, so that
    // `kubectl apply -f` of this one file installs everything the controller
    // watches (its /readyz names any kind it cannot watch).
    let header = "# Rendered from deploy/helm/portcullis with its default values\n# (release \"portcullis\", namespace \"portcullis-system\"). Do not edit:\n# UPDATE_MANIFESTS=1 cargo test -p portcullis-kube --test chart\n";
    format!("{header}{}", render(&Install::default_install()).unwrap())
}

type Objects = BTreeMap<(String, String, String), Value>;

/// Parse multi-document YAML into objects keyed by (kind, namespace, name).
fn docs(yaml: &str) -> Objects {
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

fn scalar(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        Value::Bool(b) => b.to_string(),
        other => panic!("not a scalar: {other}"),
    }
}

fn key(kind: &str, ns: &str, name: &str) -> (String, String, String) {
    (kind.into(), ns.into(), name.into())
}

/// The renderings the Helm comparison and the RBAC check cover.
fn installs() -> Vec<Install> {
    vec![
        Install::default_install(),
        // Namespaced install, Secrets in one of the two namespaces.
        Install {
            release: RELEASE,
            namespace: NAMESPACE,
            values: json!({"watchNamespaces": ["team-a", "team-b"], "secretNamespaces": ["team-b"]}),
        },
        // Every namespace, Secrets in one.
        Install {
            release: RELEASE,
            namespace: NAMESPACE,
            values: json!({"secretNamespaces": ["certs"]}),
        },
        // A second release with every optional part on.
        Install {
            release: "edge",
            namespace: "edge-system",
            values: everything(),
        },
    ]
}

fn everything() -> Value {
    json!({
        "replicas": 1,
        "controllerName": "portcullis.dev/edge",
        "gatewayClass": {"name": "edge"},
        "ingressClass": {"name": "edge", "default": true},
        "watchNamespaces": ["edge-apps"],
        "imagePullSecrets": [{"name": "regcred"}],
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "edge", "effect": "NoSchedule"}],
        "affinity": {"podAntiAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 100, "podAffinityTerm": {"topologyKey": "kubernetes.io/hostname", "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "portcullis-controller"}}}}]}},
        "topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone", "whenUnsatisfiable": "ScheduleAnyway", "labelSelector": {"matchLabels": {"app.kubernetes.io/name": "portcullis-controller"}}}],
        "priorityClassName": "system-cluster-critical",
        "podAnnotations": {"example.com/team": "edge"},
        "podLabels": {"team": "edge"},
        "dashboard": {"enabled": true},
        "networkPolicy": {
            "enabled": true,
            "metricsFrom": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}],
            "apiServer": {"ports": [6443], "cidrs": ["10.0.0.1/32"]},
            "extraEgress": [{"to": [{"ipBlock": {"cidr": "10.1.0.0/16"}}]}]
        },
        "metrics": {"podMonitor": {"enabled": true, "labels": {"release": "prom"}}, "serviceMonitor": {"enabled": true}}
    })
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
    let dep = &d[&key("Deployment", NAMESPACE, "portcullis-controller")];
    assert_eq!(dep["spec"]["replicas"], 2);
    let pod = &dep["spec"]["template"]["spec"];
    assert_eq!(
        pod["containers"][0]["resources"]["limits"]["memory"],
        "512Mi"
    );
    assert_eq!(pod["securityContext"]["runAsUser"], 65532);
    let args: Vec<&str> = pod["containers"][0]["args"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    // The names the controller's defaults assume, for the default release.
    for a in [
        "--stream-url=https://portcullis-controller.portcullis-system.svc:9977",
        "--lease-name=portcullis-controller",
        "--ca-secret=portcullis-stream-ca",
        "--controller-name=portcullis.dev/gateway-controller",
    ] {
        assert!(args.contains(&a), "{a} in {args:?}");
    }
    assert!(!args.iter().any(|a| a.contains("namespaces")), "{args:?}");
    let class = &d[&key("GatewayClass", "", "portcullis")];
    assert_eq!(
        class["spec"]["controllerName"],
        portcullis_translate::CONTROLLER_NAME
    );
    let ingress_class = &d[&key("IngressClass", "", "portcullis")];
    assert_eq!(
        ingress_class["spec"]["controller"],
        portcullis_source::ingress::INGRESS_CONTROLLER
    );
    // The ServiceAccount the bindings name exists.
    assert!(d.contains_key(&key("ServiceAccount", NAMESPACE, "portcullis-controller")));
    // Standard labels on every object the templates make.
    for ((kind, _, name), o) in &d {
        if kind == "CustomResourceDefinition" {
            continue;
        }
        let l = &o["metadata"]["labels"];
        assert_eq!(l["app.kubernetes.io/instance"], RELEASE, "{kind} {name}");
        assert_eq!(l["app.kubernetes.io/managed-by"], "Helm", "{kind} {name}");
        assert_eq!(l["app.kubernetes.io/version"], "0.1.0", "{kind} {name}");
        assert_eq!(l["helm.sh/chart"], "portcullis-0.1.0", "{kind} {name}");
        assert_eq!(l["app.kubernetes.io/name"], "portcullis-controller");
    }
}

fn objects(i: &Install) -> Objects {
    docs(&render(i).unwrap_or_else(|e| panic!("{}: {e}", i.release)))
}

#[test]
fn optional_parts_render_as_configured() {
    let d = objects(&Install {
        release: "edge",
        namespace: "edge-system",
        values: everything(),
    });
    let c = "edge-portcullis-controller";
    let dep = &d[&key("Deployment", "edge-system", c)];
    let pod = &dep["spec"]["template"]["spec"];
    assert_eq!(pod["nodeSelector"]["kubernetes.io/os"], "linux");
    assert_eq!(pod["tolerations"][0]["key"], "dedicated");
    assert_eq!(pod["topologySpreadConstraints"][0]["maxSkew"], 1);
    assert_eq!(pod["imagePullSecrets"][0]["name"], "regcred");
    assert_eq!(pod["priorityClassName"], "system-cluster-critical");
    assert!(pod["affinity"]["podAntiAffinity"].is_object());
    let meta = &dep["spec"]["template"]["metadata"];
    assert_eq!(meta["labels"]["team"], "edge");
    assert_eq!(meta["annotations"]["example.com/team"], "edge");
    assert_eq!(meta["annotations"]["prometheus.io/port"], "9901");
    let args = pod["containers"][0]["args"].to_string();
    for a in [
        "--watch-namespaces=edge-apps",
        "--controller-name=portcullis.dev/edge",
        "--stream-url=https://edge-portcullis-controller.edge-system.svc:9977",
        "--lease-name=edge-portcullis-controller",
        "--ca-secret=edge-portcullis-stream-ca",
        "--dashboard=127.0.0.1:9903",
    ] {
        assert!(args.contains(a), "{a} in {args}");
    }
    // One replica: no PodDisruptionBudget to block drains.
    assert!(!d.keys().any(|k| k.0 == "PodDisruptionBudget"));
    let np = &d[&key("NetworkPolicy", "edge-system", c)];
    assert_eq!(np["spec"]["ingress"][0]["ports"][0]["port"], 9977);
    assert_eq!(
        np["spec"]["ingress"][0]["from"][0]["podSelector"]["matchLabels"]["app.kubernetes.io/name"],
        "portcullis-proxy"
    );
    assert_eq!(np["spec"]["ingress"][1]["ports"][0]["port"], 9901);
    assert!(np["spec"]["ingress"][1]["from"][0]["namespaceSelector"].is_object());
    assert_eq!(np["spec"]["egress"][0]["ports"][0]["port"], 6443);
    assert_eq!(
        np["spec"]["egress"][0]["to"][0]["ipBlock"]["cidr"],
        "10.0.0.1/32"
    );
    assert_eq!(
        np["spec"]["egress"][3]["to"][0]["ipBlock"]["cidr"],
        "10.1.0.0/16"
    );
    let sm = &d[&key("ServiceMonitor", "edge-system", c)];
    assert_eq!(sm["spec"]["endpoints"][0]["port"], "admin");
    let svc = &d[&key("Service", "edge-system", c)];
    assert!(
        svc["spec"]["ports"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "admin")
    );
    assert_eq!(
        d[&key("PodMonitor", "edge-system", "edge-portcullis")]["metadata"]["labels"]["release"],
        "prom"
    );
    assert_eq!(
        d[&key("GatewayClass", "", "edge")]["spec"]["controllerName"],
        "portcullis.dev/edge"
    );
    // Two replicas (the default) get a PodDisruptionBudget that lets one go.
    let d = objects(&Install::default_install());
    let pdb = &d[&key("PodDisruptionBudget", NAMESPACE, "portcullis-controller")];
    assert_eq!(pdb["spec"]["minAvailable"], 1);
}

/// Two releases (different names, GatewayClass and controllerName) share no
/// object but the CRDs: every cluster-scoped name but the two classes' (user-facing, values) carries the release.
#[test]
fn two_releases_coexist() {
    let a = objects(&Install::default_install());
    let b = objects(&Install {
        release: "edge",
        namespace: NAMESPACE,
        values: everything(),
    });
    let shared: Vec<_> = a
        .keys()
        .filter(|k| b.contains_key(*k) && k.0 != "CustomResourceDefinition")
        .collect();
    assert!(shared.is_empty(), "{shared:?}");
    for (kind, ns, name) in b.keys() {
        if ns.is_empty()
            && !["CustomResourceDefinition", "GatewayClass", "IngressClass"]
                .contains(&kind.as_str())
        {
            assert!(name.starts_with("edge-"), "{kind} {name}");
        }
    }
}

#[test]
fn notes_say_what_to_do_next() {
    let n = render_one("NOTES.txt", &Install::default_install()).unwrap();
    assert!(n.contains("https://github.com/kubernetes-sigs/gateway-api/releases/download/v1.6.1/standard-install.yaml"), "{n}");
    assert!(n.contains("kubectl get gatewayclass portcullis"), "{n}");
    assert!(n.contains("every Secret of the cluster"), "{n}");
    let n = render_one(
        "NOTES.txt",
        &Install {
            release: RELEASE,
            namespace: NAMESPACE,
            values: json!({"watchNamespaces": ["a", "b"]}),
        },
    )
    .unwrap();
    assert!(n.contains("only in\na, b"), "{n}");
    assert!(!n.contains("every Secret of the cluster"), "{n}");
}

/// A Secret namespace outside the watched ones is refused, as the controller would.
#[test]
fn secret_namespaces_must_be_watched() {
    let e = render(&Install {
        release: RELEASE,
        namespace: NAMESPACE,
        values: json!({"watchNamespaces": ["a"], "secretNamespaces": ["b"]}),
    })
    .unwrap_err();
    assert!(
        e.0.contains("secretNamespaces: b is not in watchNamespaces"),
        "{e}"
    );
}

/// Every key of values.yaml is in the schema and the other way round, at
/// every level the schema closes with `additionalProperties: false`.
#[test]
fn schema_describes_every_value() {
    let schema: Value =
        serde_json::from_str(&std::fs::read_to_string(chart().join("values.schema.json")).unwrap())
            .unwrap();
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-07/schema#");
    fn walk(path: &str, schema: &Value, values: &Value) {
        if schema["additionalProperties"] != Value::Bool(false) {
            return;
        }
        let props = schema["properties"].as_object().unwrap();
        let vals = values
            .as_object()
            .unwrap_or_else(|| panic!("{path} is not a map"));
        let a: BTreeSet<&String> = props.keys().collect();
        let b: BTreeSet<&String> = vals.keys().collect();
        assert_eq!(a, b, "schema and values.yaml differ at {path}");
        for (k, v) in vals {
            walk(&format!("{path}.{k}"), &props[k], v);
        }
    }
    walk("", &schema, &yaml_file(&chart().join("values.yaml")));
}

type Grant = (Option<String>, String, String, String);

/// The (namespace, group, resource, verb) the rendered RBAC grants the controller.
fn grants(d: &Objects, sa: (&str, &str)) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    for ((kind, ns, name), v) in d {
        let (binding, role_ns) = match kind.as_str() {
            "ClusterRole" => ("ClusterRoleBinding", None),
            "Role" => ("RoleBinding", Some(ns.clone())),
            _ => continue,
        };
        // Bound to the controller's ServiceAccount, under the same name.
        let b = &d[&(binding.to_string(), ns.clone(), name.clone())];
        assert_eq!(b["roleRef"]["name"], name.as_str());
        assert_eq!(b["roleRef"]["kind"], kind.as_str());
        assert_eq!(b["subjects"][0]["name"], sa.0);
        assert_eq!(b["subjects"][0]["namespace"], sa.1);
        for rule in v["rules"].as_array().unwrap() {
            for g in rule["apiGroups"].as_array().unwrap() {
                for r in rule["resources"].as_array().unwrap() {
                    for verb in rule["verbs"].as_array().unwrap() {
                        assert!(
                            ![g, r, verb].iter().any(|x| x.as_str() == Some("*")),
                            "no wildcards"
                        );
                        out.insert((role_ns.clone(), scalar(g), scalar(r), scalar(verb)));
                    }
                }
            }
        }
    }
    out
}

#[test]
fn rbac_grants_exactly_the_calls_the_code_makes() {
    // The manifests on disk, then every rendering.
    let on_disk =
        docs(&std::fs::read_to_string(root().join("deploy/manifests/portcullis.yaml")).unwrap());
    let mut cases = vec![(on_disk, Install::default_install())];
    for i in installs() {
        cases.push((objects(&i), i));
    }
    for (d, i) in cases {
        let sa = format!(
            "{}-controller",
            if i.release.contains("portcullis") {
                i.release.to_string()
            } else {
                format!("{}-portcullis", i.release)
            }
        );
        let granted = grants(&d, (&sa, i.namespace));
        let used: BTreeSet<Grant> = rules(&i.scope(), i.namespace)
            .into_iter()
            .map(|(ns, g, r, v): Rule| (ns, g.into(), r.into(), v.into()))
            .collect();
        let missing: Vec<_> = used.difference(&granted).collect();
        let extra: Vec<_> = granted.difference(&used).collect();
        assert!(
            missing.is_empty(),
            "{}: the chart does not grant {missing:?}",
            i.values
        );
        assert!(
            extra.is_empty(),
            "{}: the chart grants calls the code never makes: {extra:?}",
            i.values
        );
    }
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
}

/// The real Helm: `$HELM`, else `helm` on PATH. `None` (the checks skipped)
/// only outside CI.
fn helm() -> Option<PathBuf> {
    let found = std::env::var_os("HELM")
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .or_else(|| {
            Command::new("helm")
                .arg("version")
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|_| PathBuf::from("helm"))
        });
    if found.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "CI=true and no helm: set HELM (scripts/test builds it with testenv/build.sh helm)"
        );
        eprintln!("helm not found ($HELM, PATH): checked by the test renderer only");
    }
    found
}

fn helm_run(helm: &Path, args: &[&str]) -> std::process::Output {
    Command::new(helm)
        .args(args)
        .current_dir(root())
        .output()
        .expect("helm runs")
}

fn helm_template(helm: &Path, i: &Install, dir: &Path) -> std::process::Output {
    let f = dir.join(format!("{}-values.json", i.release));
    std::fs::write(&f, i.values.to_string()).unwrap();
    helm_run(
        helm,
        &[
            "template",
            i.release,
            "deploy/helm/portcullis",
            "--namespace",
            i.namespace,
            "--include-crds",
            "-f",
            f.to_str().unwrap(),
        ],
    )
}

#[test]
fn helm_lints_and_renders_what_the_test_renderer_renders() {
    let Some(helm) = helm() else { return };
    let out = helm_run(&helm, &["lint", "--strict", "deploy/helm/portcullis"]);
    assert!(
        out.status.success(),
        "helm lint --strict:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let dir = tempfile::tempdir().unwrap();
    for i in installs() {
        let out = helm_template(&helm, &i, dir.path());
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let by_helm = docs(&String::from_utf8_lossy(&out.stdout));
        let ours = objects(&i);
        assert_eq!(
            by_helm.keys().collect::<Vec<_>>(),
            ours.keys().collect::<Vec<_>>(),
            "{}",
            i.values
        );
        pretty_assertions::assert_eq!(by_helm, ours, "{}", i.values);
    }
    // The schema refuses a typo and a bad value; the template refuses a Secret
    // namespace that is not watched.
    for (values, why) in [
        (
            json!({"replica": 3}),
            "additional properties 'replica' not allowed",
        ),
        (
            json!({"networkPolicy": {"enable": true}}),
            "additional properties 'enable' not allowed",
        ),
        (json!({"watchNamespaces": ["Team_A"]}), "watchNamespaces"),
        (json!({"replicas": "two"}), "replicas"),
        (
            json!({"watchNamespaces": ["a"], "secretNamespaces": ["b"]}),
            "secretNamespaces: b is not in watchNamespaces",
        ),
    ] {
        let i = Install {
            release: RELEASE,
            namespace: NAMESPACE,
            values,
        };
        let out = helm_template(&helm, &i, dir.path());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{} was accepted", i.values);
        assert!(err.contains(why), "{}: {err}", i.values);
    }
}
