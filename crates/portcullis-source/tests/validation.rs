//! Structural and CEL validation, metadata checks, and precise error locations.

mod common;

use common::{expect_errors, load, load_with, only};
use portcullis_source::FieldValidation;
use portcullis_store::Kind;

const ROUTE_HEAD: &str =
    "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: foo\nspec:\n";
const GW_HEAD: &str = "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata:\n  name: gw\nspec:\n  gatewayClassName: portcullis\n";

fn route(spec: &str) -> String {
    format!("{ROUTE_HEAD}{spec}")
}

fn gateway(spec: &str) -> String {
    format!("{GW_HEAD}{spec}")
}

#[test]
fn cel_path_must_start_with_slash() {
    // Line 9 is the `path:` key the rule hangs from.
    expect_errors(
        &route(
            "  rules:\n  - matches:\n    - path:\n        type: PathPrefix\n        value: foo\n",
        ),
        &[
            "test.yaml:8: HTTPRoute default/foo: spec.rules[0].matches[0].path: value must be an absolute path and start with '/' when type one of ['Exact', 'PathPrefix']",
        ],
    );
}

#[test]
fn structural_type_enum_and_bounds() {
    expect_errors(
        &gateway(
            "  listeners:\n  - name: http\n    port: \"80\"\n    protocol: HTTP\n  - name: big\n    port: 70000\n    protocol: HTTP\n",
        ),
        &[
            "test.yaml:9: Gateway default/gw: spec.listeners[0].port: must be of type integer, got string \"80\"",
            "test.yaml:12: Gateway default/gw: spec.listeners[1].port: must be less than or equal to 65535, is 70000",
        ],
    );
    expect_errors(
        &route("  rules:\n  - matches:\n    - path:\n        type: Prefix\n        value: /\n"),
        &[
            "test.yaml:9: HTTPRoute default/foo: spec.rules[0].matches[0].path.type: unsupported value \"Prefix\": supported values: \"Exact\", \"PathPrefix\", \"RegularExpression\"",
        ],
    );
}

#[test]
fn required_min_items_and_min_length() {
    expect_errors(
        &format!("{ROUTE_HEAD}  parentRefs:\n  - sectionName: http\n"),
        &["test.yaml:7: HTTPRoute default/foo: spec.parentRefs[0].name: required value is missing"],
    );
    expect_errors(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n  gatewayClassName: \"\"\n  listeners: []\n",
        &[
            "test.yaml:5: Gateway default/gw: spec.gatewayClassName: must not be empty",
            "test.yaml:6: Gateway default/gw: spec.listeners: must have at least 1 item, has 0",
        ],
    );
    expect_errors(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gw}\n",
        &["test.yaml:1: Gateway default/gw: spec: required value is missing"],
    );
}

#[test]
fn pattern_and_max_length() {
    let long = "a".repeat(254);
    expect_errors(
        &route(&format!("  hostnames:\n  - Foo_Bar.com\n  - {long}\n")),
        &[
            "test.yaml:7: HTTPRoute default/foo: spec.hostnames[0]: invalid value \"Foo_Bar.com\": must match the regular expression '^(\\*\\.)?[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$'",
            "test.yaml:8: HTTPRoute default/foo: spec.hostnames[1]: must be at most 253 characters long, is 254",
        ],
    );
}

#[test]
fn list_map_keys_must_be_unique() {
    expect_errors(
        &gateway(
            "  listeners:\n  - name: http\n    port: 80\n    protocol: HTTP\n  - name: http\n    port: 81\n    protocol: HTTP\n",
        ),
        &[
            "test.yaml:11: Gateway default/gw: spec.listeners[1]: duplicate entry: an earlier item has the same name \"http\"",
        ],
    );
}

#[test]
fn max_items_and_max_properties() {
    let mut listeners = String::from("  listeners:\n");
    for i in 0..65 {
        listeners.push_str(&format!(
            "  - name: l{i}\n    port: {}\n    protocol: HTTP\n",
            1000 + i
        ));
    }
    expect_errors(
        &gateway(&listeners),
        &["test.yaml:7: Gateway default/gw: spec.listeners: must have at most 64 items, has 65"],
    );
    let mut labels = String::from("  infrastructure:\n    labels:\n");
    for i in 0..9 {
        labels.push_str(&format!("      l{i}: v\n"));
    }
    expect_errors(
        &gateway(&format!(
            "{labels}  listeners:\n  - name: http\n    port: 80\n    protocol: HTTP\n"
        )),
        &[
            "test.yaml:8: Gateway default/gw: spec.infrastructure.labels: must have at most 8 entries, has 9",
        ],
    );
}

#[test]
fn one_of_and_ip_formats() {
    let (_, errors, _) = load(
        "test.yaml",
        &gateway(
            "  addresses:\n  - value: not-an-ip\n  - type: Hostname\n    value: example.com\n  listeners:\n  - name: http\n    port: 80\n    protocol: HTTP\n",
        ),
    );
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].starts_with("test.yaml:8: Gateway default/gw: spec.addresses[0]: must satisfy exactly one of: (value: must satisfy at least one of: \"not-an-ip\" is not a valid IPv4 address or \"not-an-ip\" is not a valid IPv6 address)"),
        "{errors:?}"
    );
}

#[test]
fn additional_properties_values_are_validated() {
    expect_errors(
        &gateway(
            "  infrastructure:\n    labels:\n      app: 12\n  listeners:\n  - name: http\n    port: 80\n    protocol: HTTP\n",
        ),
        &[
            "test.yaml:9: Gateway default/gw: spec.infrastructure.labels[app]: must be of type string, got integer 12",
        ],
    );
}

/// A route with two unknown fields (a typo of `rules`, and an extra key).
fn route_with_unknown_fields() -> String {
    route(
        "  hostnames: [a.example.com]\n  rulez: []\n  parentRefs:\n  - name: gw\n    colour: blue\n",
    )
}

#[test]
fn unknown_fields_make_the_object_invalid_by_default() {
    // kubectl's default field validation (Strict): the object is rejected,
    // with the file, line, object and field of each unknown field.
    let (loaded, errors, warnings) = load("test.yaml", &route_with_unknown_fields());
    assert_eq!(
        errors,
        [
            "test.yaml:7: HTTPRoute default/foo: spec.rulez: unknown field (did you mean \"rules\"?)",
            "test.yaml:10: HTTPRoute default/foo: spec.parentRefs[0].colour: unknown field",
        ]
    );
    assert!(warnings.is_empty(), "{warnings:?}");
    assert!(loaded.objects.is_empty());
}

#[test]
fn unknown_fields_are_dropped_with_a_warning_or_silently_on_request() {
    let (loaded, errors, warnings) = load_with(
        "test.yaml",
        &route_with_unknown_fields(),
        FieldValidation::Warn,
    );
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        warnings,
        [
            "test.yaml:7: HTTPRoute default/foo: spec.rulez: unknown field, ignored (did you mean \"rules\"?)",
            "test.yaml:10: HTTPRoute default/foo: spec.parentRefs[0].colour: unknown field, ignored",
        ]
    );
    assert_eq!(loaded.objects.len(), 1);
    let json = only(&loaded, Kind::HTTPRoute);
    assert!(json["spec"].get("rulez").is_none(), "{json}");
    assert!(
        json["spec"]["parentRefs"][0].get("colour").is_none(),
        "{json}"
    );

    let (loaded, errors, warnings) = load_with(
        "test.yaml",
        &route_with_unknown_fields(),
        FieldValidation::Ignore,
    );
    assert!(
        errors.is_empty() && warnings.is_empty(),
        "{errors:?} {warnings:?}"
    );
    assert_eq!(loaded.objects.len(), 1);
}

#[test]
fn a_typo_in_a_backend_ref_is_an_error_not_a_route_without_backends() {
    let (loaded, errors, _) = load(
        "typo.yaml",
        &route(
            "  parentRefs: [{name: gw}]\n  rules:\n  - backendRefz:\n    - {name: web, port: 80}\n",
        ),
    );
    assert_eq!(
        errors,
        [
            "typo.yaml:8: HTTPRoute default/foo: spec.rules[0].backendRefz: unknown field (did you mean \"backendRefs\"?)"
        ]
    );
    assert!(loaded.objects.is_empty());
}

#[test]
fn unknown_metadata_and_core_fields_are_errors_known_ones_are_not() {
    // metadata: annotations, labels, finalizers, ownerReferences are known;
    // server-set fields (resourceVersion, managedFields...) are dropped; a
    // status in the file is ignored, as the API server does on writes.
    let (loaded, errors, _) = load(
        "ok.yaml",
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: r\n  annotations: {a: b}\n  labels: {c: d}\n  finalizers: [x/y]\n  resourceVersion: \"7\"\n  generation: 3\n  managedFields: []\nspec: {}\nstatus:\n  parents: []\n---\napiVersion: v1\nkind: Service\nmetadata: {name: s, annotations: {a: b}}\nspec:\n  ports: [{port: 80}]\nstatus: {loadBalancer: {}}\n",
    );
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(loaded.objects.len(), 2);

    let (loaded, errors, _) = load(
        "bad.yaml",
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: r\n  annotation: {a: b}\nspec: {}\n---\napiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec:\n  prots: [{port: 80}]\n  ports:\n  - port: 80\n    nodePrt: 3\n",
    );
    assert_eq!(
        errors,
        [
            "bad.yaml:5: HTTPRoute default/r: metadata.annotation: unknown field (did you mean \"annotations\"?)",
            "bad.yaml:12: Service default/s: spec.prots: unknown field",
            "bad.yaml:15: Service default/s: spec.ports[0].nodePrt: unknown field",
        ]
    );
    assert!(loaded.objects.is_empty());
}

#[test]
fn cel_rules_with_their_messages() {
    // Filter consistency, on the filter item.
    expect_errors(
        &route("  rules:\n  - filters:\n    - type: RequestHeaderModifier\n"),
        &[
            "test.yaml:8: HTTPRoute default/foo: spec.rules[0].filters[0]: filter.requestHeaderModifier must be specified for RequestHeaderModifier filter.type",
        ],
    );
    // A rule on a list: filter repeated.
    expect_errors(
        &route(
            "  rules:\n  - filters:\n    - type: RequestHeaderModifier\n      requestHeaderModifier: {set: [{name: a, value: b}]}\n    - type: RequestHeaderModifier\n      requestHeaderModifier: {add: [{name: a, value: b}]}\n",
        ),
        &[
            "test.yaml:7: HTTPRoute default/foo: spec.rules[0].filters: RequestHeaderModifier filter cannot be repeated",
        ],
    );
    // Redirect together with backendRefs, on the rule.
    expect_errors(
        &route(
            "  rules:\n  - backendRefs:\n    - name: svc\n      port: 80\n    filters:\n    - type: RequestRedirect\n      requestRedirect: {scheme: https}\n",
        ),
        &[
            "test.yaml:7: HTTPRoute default/foo: spec.rules[0]: RequestRedirect filter must not be used together with backendRefs",
        ],
    );
    // isIP, from the Kubernetes CEL library.
    expect_errors(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: TLSRoute\nmetadata: {name: t}\nspec:\n  hostnames:\n  - 10.0.0.1\n  rules:\n  - backendRefs:\n    - name: s\n      port: 443\n",
        &["test.yaml:5: TLSRoute default/t: spec.hostnames: Hostnames cannot contain an IP"],
    );
    // duration(), from the Kubernetes CEL library.
    expect_errors(
        &route("  rules:\n  - timeouts:\n      request: 1s\n      backendRequest: 2s\n"),
        &[
            "test.yaml:7: HTTPRoute default/foo: spec.rules[0].timeouts: backendRequest timeout cannot be longer than request timeout",
        ],
    );
    // Port required for a Service backend.
    expect_errors(
        &route("  rules:\n  - backendRefs:\n    - name: svc\n"),
        &[
            "test.yaml:8: HTTPRoute default/foo: spec.rules[0].backendRefs[0]: Must have port for Service reference",
        ],
    );
    // The escaped `namespace` property (`__namespace__` in the rule).
    expect_errors(
        &route("  parentRefs:\n  - name: gw\n    namespace: a\n  - name: gw\n    namespace: a\n"),
        &[
            "test.yaml:6: HTTPRoute default/foo: spec.parentRefs: sectionName or port must be unique when parentRefs includes 2 or more references to the same parent",
        ],
    );
    // Different namespaces make different parents: only right if `namespace`
    // reaches the rule as `__namespace__`.
    expect_errors(
        &route("  parentRefs:\n  - name: gw\n    namespace: a\n  - name: gw\n    namespace: b\n"),
        &[],
    );
}

#[test]
fn cel_rules_on_gateways() {
    expect_errors(
        &gateway(
            "  listeners:\n  - name: https\n    port: 443\n    protocol: HTTPS\n    tls:\n      mode: Terminate\n",
        ),
        &[
            "test.yaml:11: Gateway default/gw: spec.listeners[0].tls: certificateRefs or options must be specified when mode is Terminate (the rule reads field \"options\", which is not set)",
        ],
    );
    expect_errors(
        &gateway(
            "  listeners:\n  - name: tcp\n    port: 9000\n    protocol: TCP\n    hostname: a.example.com\n",
        ),
        &[
            "test.yaml:7: Gateway default/gw: spec.listeners: hostname must not be specified for protocols ['TCP', 'UDP']",
        ],
    );
}

#[test]
fn metadata_is_checked() {
    expect_errors(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  namespace: x\nspec: {}\n",
        &["test.yaml:3: HTTPRoute: metadata.name: required value is missing"],
    );
    expect_errors(
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: Foo\n  namespace: a.b\nspec: {}\n",
        &[
            "test.yaml:4: HTTPRoute a.b/Foo: metadata.name: \"Foo\" is not a valid DNS-1123 subdomain: lower case alphanumeric characters, '-' or '.', starting and ending with an alphanumeric character",
            "test.yaml:5: HTTPRoute a.b/Foo: metadata.namespace: \"a.b\" is not a valid DNS-1123 label: lower case alphanumeric characters or '-', starting and ending with an alphanumeric character",
        ],
    );
    expect_errors(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: 1svc\n  labels:\n    app: -bad\nspec:\n  ports: [{port: 80}]\n",
        &[
            "test.yaml:4: Service default/1svc: metadata.name: \"1svc\" is not a valid DNS-1035 label: lower case alphanumeric characters or '-', starting with a letter and ending with an alphanumeric character",
            "test.yaml:6: Service default/1svc: metadata.labels[app]: \"-bad\" is not a valid label value: at most 63 alphanumeric characters, '-', '_' or '.', starting and ending with an alphanumeric character",
        ],
    );
}

#[test]
fn builtin_kinds_are_checked() {
    expect_errors(
        "apiVersion: v1\nkind: Service\nmetadata: {name: svc}\nspec:\n  ports:\n  - port: 0\n",
        &[
            "test.yaml:6: Service default/svc: spec.ports[0].port: must be a port number between 1 and 65535, is 0",
        ],
    );
    let (_, errors, _) = load(
        "test.yaml",
        "apiVersion: v1\nkind: Secret\nmetadata: {name: s}\ndata:\n  key: \"%%%\"\n",
    );
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with("test.yaml:5: Secret default/s: data[key]: must be base64-encoded"),
        "{errors:?}"
    );
    // Type errors come from decoding into the typed object.
    expect_errors(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\ndata:\n  a:\n    nested: map\n",
        &[
            "test.yaml:5: ConfigMap default/c: data.a: cannot decode: invalid type: map, expected a string",
        ],
    );
}

#[test]
fn kinds_and_versions() {
    let (loaded, errors, warnings) = load(
        "mixed.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: ns}\n---\napiVersion: gateway.networking.x-k8s.io/v1alpha1\nkind: XBackendTrafficPolicy\nmetadata: {name: p}\n---\napiVersion: gateway.networking.k8s.io/v1alpha2\nkind: HTTPRoute\nmetadata: {name: r}\n---\nkind: Service\nmetadata: {name: r}\n---\napiVersion: gateway.networking.k8s.io/v1alpha2\nkind: TCPRoute\nmetadata: {name: t}\nspec:\n  rules:\n  - backendRefs:\n    - name: s\n      port: 9000\n",
    );
    assert!(warnings.is_empty(), "{warnings:?}");
    let others = "Portcullis reads the Gateway API kinds (gateway.networking.k8s.io), v1 Service, EndpointSlice, Secret, ConfigMap and Namespace, and networking.k8s.io/v1 Ingress and IngressClass; remove this object from the configuration (or skip unknown kinds with field validation Warn)";
    assert_eq!(
        errors,
        [
            format!("mixed.yaml:2: Deployment ns/web: kind: no matches for kind \"Deployment\" in version \"apps/v1\": {others}"),
            format!("mixed.yaml:6: XBackendTrafficPolicy p: kind: no matches for kind \"XBackendTrafficPolicy\" in version \"gateway.networking.x-k8s.io/v1alpha1\": {others}"),
            "mixed.yaml:9: HTTPRoute default/r: apiVersion: no matches for kind \"HTTPRoute\" in version \"gateway.networking.k8s.io/v1alpha2\": served versions of gateway.networking.k8s.io: v1, v1beta1".to_string(),
            "mixed.yaml:13: apiVersion: required value is missing".to_string(),
        ]
    );
    assert_eq!(loaded.objects.len(), 1);
    assert_eq!(loaded.objects[0].line, 16);
}

#[test]
fn unknown_kinds_are_skipped_with_a_warning_on_request() {
    let (loaded, errors, warnings) = load_with(
        "mixed.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: web, namespace: ns}\n---\napiVersion: gateway.networking.x-k8s.io/v1alpha1\nkind: XBackendTrafficPolicy\nmetadata: {name: p}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: n}\n",
        FieldValidation::Warn,
    );
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(
        warnings,
        [
            "mixed.yaml:1: skipping unsupported kind apps/v1 Deployment ns/web",
            "mixed.yaml:5: skipping unsupported kind gateway.networking.x-k8s.io/v1alpha1 XBackendTrafficPolicy p",
        ]
    );
    assert_eq!(loaded.objects.len(), 1);
}

#[test]
fn syntax_errors_name_the_line() {
    let (_, errors, _) = load(
        "bad.yaml",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: [a\n",
    );
    assert_eq!(errors.len(), 1);
    assert_eq!(
        errors,
        ["bad.yaml:4: invalid YAML: unclosed bracket '[' (column 9)"]
    );
    let (_, errors, _) = load("dup.yaml", "a: 1\na: 2\n");
    assert_eq!(
        errors,
        ["dup.yaml:2: invalid YAML: duplicate mapping key: a (column 1)"]
    );
    let (_, errors, _) = load(
        "bad.json",
        "{\n  \"apiVersion\": \"v1\",\n  \"kind\": \"Namespace\",\n}\n",
    );
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].starts_with("bad.json:4: invalid JSON: trailing comma"),
        "{errors:?}"
    );
}

#[test]
fn json_files_have_field_lines() {
    let (loaded, errors, _) = load(
        "route.json",
        "{\n  \"apiVersion\": \"gateway.networking.k8s.io/v1\",\n  \"kind\": \"HTTPRoute\",\n  \"metadata\": {\"name\": \"j\"},\n  \"spec\": {\n    \"parentRefs\": [\n      {\"name\": \"gw\",\n       \"port\": 0}\n    ]\n  }\n}\n",
    );
    assert_eq!(
        errors,
        [
            "route.json:8: HTTPRoute default/j: spec.parentRefs[0].port: must be greater than or equal to 1, is 0"
        ]
    );
    assert!(loaded.objects.is_empty());
}

#[test]
fn duplicates_name_both_places() {
    let dir = tempfile::tempdir().unwrap();
    let ns = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team\n";
    std::fs::write(dir.path().join("a.yaml"), ns).unwrap();
    std::fs::create_dir(dir.path().join("sub")).unwrap();
    std::fs::write(dir.path().join("sub/b.yml"), format!("# comment\n{ns}")).unwrap();
    std::fs::write(dir.path().join("ignored.txt"), "not: yaml: at all: [").unwrap();
    std::fs::write(dir.path().join(".hidden.yaml"), "not: yaml: at all: [").unwrap();
    let loaded = portcullis_source::load_path(dir.path());
    let errors: Vec<String> = loaded
        .errors
        .iter()
        .map(|e| common::relative(dir.path(), &e.to_string()))
        .collect();
    assert_eq!(
        errors,
        [
            "sub/b.yml:2: Namespace team: duplicate object: already defined at a.yaml:1; this one is ignored"
        ]
    );
    assert_eq!(loaded.objects.len(), 1);
    assert_eq!(loaded.objects[0].file, dir.path().join("a.yaml"));
}

#[test]
fn missing_path_is_an_error() {
    let loaded = portcullis_source::load_path(std::path::Path::new("/nonexistent/portcullis"));
    assert_eq!(loaded.errors.len(), 1);
    assert!(
        loaded.errors[0]
            .to_string()
            .starts_with("/nonexistent/portcullis: cannot read: "),
        "{}",
        loaded.errors[0]
    );
}

#[test]
fn list_type_set_values_must_be_unique() {
    expect_errors(
        &route(
            "  rules:\n  - filters:\n    - type: CORS\n      cors:\n        allowHeaders: [x-a, x-b, x-a]\n",
        ),
        &[
            "test.yaml:10: HTTPRoute default/foo: spec.rules[0].filters[0].cors.allowHeaders[2]: duplicate value \"x-a\"",
        ],
    );
}

/// Peak resident set size of this process, in KiB (Linux `VmHWM`).
fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[test]
fn alias_bomb_fails_before_it_allocates() {
    // "Billion laughs": 9 levels of 9 aliases each expand to 9^9 strings
    // from a few hundred bytes. Before the alias limits, a 567-byte bomb
    // took RSS to ~300 MB.
    let mut text = String::from(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bomb}\ndata:\n  a0: &a0 \"lol\"\n",
    );
    for i in 1..=9 {
        let prev = format!("*a{}", i - 1);
        let list = vec![prev; 9].join(", ");
        text.push_str(&format!("  a{i}: &a{i} [{list}]\n"));
    }
    assert!(text.len() < 700, "{}", text.len());
    let before = peak_rss_kib();
    let (_, errors, _) = load("bomb.yaml", &text);
    let grown_mib = (peak_rss_kib() - before) / 1024;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].contains("bomb.yaml"), "{errors:?}");
    assert!(
        grown_mib < 32,
        "an alias bomb grew the peak RSS by {grown_mib} MiB"
    );
}
