//! BackendTrafficPolicy (`portcullis.dev/v1alpha1`) through the same source path
//! as the Gateway API kinds: defaults, schema and CEL rules from its CRD, and
//! unimplemented Envoy Gateway fields rejected with file:line, object and field.

mod common;

use common::{expect_errors, load, only};
use portcullis_store::Kind;

const HEAD: &str = "apiVersion: portcullis.dev/v1alpha1\nkind: BackendTrafficPolicy\nmetadata:\n  name: btp\nspec:\n  targetRefs:\n  - {group: gateway.networking.k8s.io, kind: HTTPRoute, name: web}\n";

fn policy(rest: &str) -> String {
    format!("{HEAD}{rest}")
}

#[test]
fn a_valid_policy_loads_with_defaults() {
    let (loaded, errors, warnings) = load(
        "test.yaml",
        &policy(
            "  rateLimit:\n    local:\n      rules:\n      - clientSelectors:\n        - headers: [{name: x-user, type: Distinct}]\n          sourceCIDR: {value: 10.0.0.0/8}\n          path: {value: /api}\n        limit: {requests: 10, unit: Minute}\n",
        ),
    );
    assert!(errors.is_empty(), "{errors:?}");
    assert!(warnings.is_empty(), "{warnings:?}");
    let v = only(&loaded, Kind::BackendTrafficPolicy);
    let rule = &v["spec"]["rateLimit"]["local"]["rules"][0];
    assert_eq!(rule["shared"], false);
    assert_eq!(rule["shadowMode"], false);
    let sel = &rule["clientSelectors"][0];
    assert_eq!(sel["sourceCIDR"]["type"], "Exact");
    assert_eq!(sel["path"]["type"], "PathPrefix");
    assert_eq!(sel["headers"][0]["invert"], false);
}

#[test]
fn connection_limits_default_as_in_envoy_gateway() {
    let (loaded, errors, _) = load(
        "test.yaml",
        &policy(
            "  circuitBreaker: {}\n  timeout:\n    tcp: {connectTimeout: 2s}\n    http: {connectionIdleTimeout: 1h, maxConnectionDuration: 10m}\n",
        ),
    );
    assert!(errors.is_empty(), "{errors:?}");
    let v = only(&loaded, Kind::BackendTrafficPolicy);
    let cb = &v["spec"]["circuitBreaker"];
    assert_eq!(cb["maxConnections"], 1024);
    assert_eq!(cb["maxPendingRequests"], 1024);
    assert_eq!(cb["maxParallelRequests"], 1024);
    assert!(
        cb["maxRequestsPerConnection"].is_null(),
        "unlimited by default"
    );
    assert_eq!(v["spec"]["timeout"]["tcp"]["connectTimeout"], "2s");
}

#[test]
fn unimplemented_fields_are_rejected_not_ignored() {
    expect_errors(
        &policy(
            "  circuitBreaker:\n    perEndpoint: {maxConnections: 10}\n  proxyProtocol:\n    version: V2\n",
        ),
        &[
            "test.yaml:9: BackendTrafficPolicy default/btp: spec.circuitBreaker.perEndpoint: unknown field: not supported by Portcullis (the schema lists every implemented field)",
            "test.yaml:10: BackendTrafficPolicy default/btp: spec.proxyProtocol: unknown field: not supported by Portcullis (the schema lists every implemented field)",
        ],
    );
    expect_errors(
        &policy(
            "  rateLimit:\n    type: Global\n    global:\n      rules:\n      - limit: {requests: 1, unit: Second}\n        cost: {response: {from: Number, number: 1}}\n",
        ),
        &[
            "test.yaml:9: BackendTrafficPolicy default/btp: spec.rateLimit.type: unknown field: not supported by Portcullis (the schema lists every implemented field)",
            "test.yaml:13: BackendTrafficPolicy default/btp: spec.rateLimit.global.rules[0].cost.response: unknown field: not supported by Portcullis (the schema lists every implemented field)",
        ],
    );
}

#[test]
fn cel_rules_of_the_crd_apply() {
    expect_errors(
        &policy("  loadBalancer:\n    type: Random\n    slowStart: {window: 10s}\n"),
        &[
            "test.yaml:8: BackendTrafficPolicy default/btp: spec.loadBalancer: slowStart is only supported for RoundRobin and LeastRequest load balancers",
        ],
    );
    expect_errors(
        &policy(
            "  loadBalancer:\n    type: ConsistentHash\n    consistentHash: {type: SourceIP}\n    zoneAware: {preferLocal: {}}\n",
        ),
        &[
            "test.yaml:8: BackendTrafficPolicy default/btp: spec.loadBalancer: zoneAware is not supported with ConsistentHash",
        ],
    );
    expect_errors(
        &policy(
            "  rateLimit:\n    local:\n      rules:\n      - clientSelectors:\n        - headers: [{name: x-user, type: Distinct, value: a}]\n        limit: {requests: 1, unit: Second}\n",
        ),
        &[
            "test.yaml:12: BackendTrafficPolicy default/btp: spec.rateLimit.local.rules[0].clientSelectors[0].headers[0]: value is required, except with type Distinct, which takes neither value nor invert",
        ],
    );
    expect_errors(
        &policy(
            "  rateLimit:\n    local:\n      rules:\n      - clientSelectors:\n        - sourceCIDR: {value: 10.0.0.300/8}\n        limit: {requests: 1, unit: Second}\n",
        ),
        &[
            "test.yaml:12: BackendTrafficPolicy default/btp: spec.rateLimit.local.rules[0].clientSelectors[0].sourceCIDR: value must be a CIDR such as 10.0.0.0/8 or 2001:db8::/32",
        ],
    );
    expect_errors(
        &policy(
            "  rateLimit:\n    local:\n      rules:\n      - clientSelectors: [{}]\n        limit: {requests: 1, unit: Week}\n",
        ),
        &[
            "test.yaml:11: BackendTrafficPolicy default/btp: spec.rateLimit.local.rules[0].clientSelectors[0]: at least one of headers, methods, path or sourceCIDR must be specified",
            "test.yaml:12: BackendTrafficPolicy default/btp: spec.rateLimit.local.rules[0].limit.unit: unsupported value \"Week\": supported values: \"Second\", \"Minute\", \"Hour\", \"Day\", \"Month\", \"Year\"",
        ],
    );
}
