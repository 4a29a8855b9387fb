//! SecurityPolicy (`portcullis.dev/v1alpha1`) through the same source path as the
//! Gateway API kinds: defaults, structural schema and CEL rules from its CRD, and
//! unknown (unimplemented) fields rejected with file:line, object and field.

mod common;

use common::{expect_errors, load, only};
use portcullis_store::Kind;

const HEAD: &str = "apiVersion: portcullis.dev/v1alpha1\nkind: SecurityPolicy\nmetadata:\n  name: sp\nspec:\n  targetRefs:\n  - {group: gateway.networking.k8s.io, kind: HTTPRoute, name: web}\n";

fn policy(rest: &str) -> String {
    format!("{HEAD}{rest}")
}

#[test]
fn a_valid_policy_loads_with_defaults() {
    let (loaded, errors, warnings) = load(
        "test.yaml",
        &policy(
            "  jwt:\n    providers:\n    - name: a\n      remoteJWKS: {uri: \"https://idp.example/jwks\"}\n  extAuth:\n    http:\n      backendRefs: [{name: authz, port: 9000}]\n  authorization:\n    rules:\n    - action: Allow\n      principal: {clientCIDRs: [10.0.0.0/8]}\n",
        ),
    );
    assert!(errors.is_empty(), "{errors:?}");
    assert!(warnings.is_empty(), "{warnings:?}");
    let v = only(&loaded, Kind::SecurityPolicy);
    assert_eq!(
        v["spec"]["jwt"]["providers"][0]["remoteJWKS"]["cacheDuration"],
        "300s"
    );
    assert_eq!(v["spec"]["extAuth"]["failOpen"], false);
    assert_eq!(
        v["spec"]["extAuth"]["http"]["backendRefs"][0]["kind"],
        "Service"
    );
}

#[test]
fn oidc_and_grpc_ext_auth_load_with_defaults_and_rules() {
    let (loaded, errors, warnings) = load(
        "test.yaml",
        &policy(
            "  oidc:\n    provider: {issuer: \"https://idp.example\"}\n    clientID: c\n    clientSecret: {name: s}\n    denyRedirect:\n      headers: [{name: x-requested-with, value: XMLHttpRequest}]\n  extAuth:\n    grpc:\n      backendRef: {name: authz, port: 9000}\n    bodyToExtAuth: {maxRequestBytes: 8192}\n",
        ),
    );
    assert!(errors.is_empty(), "{errors:?}");
    assert!(warnings.is_empty(), "{warnings:?}");
    let v = only(&loaded, Kind::SecurityPolicy);
    assert_eq!(v["spec"]["oidc"]["clientSecret"]["kind"], "Secret");
    assert_eq!(
        v["spec"]["oidc"]["denyRedirect"]["headers"][0]["type"],
        "Exact"
    );
    assert_eq!(v["spec"]["extAuth"]["failOpen"], false);
    assert_eq!(
        v["spec"]["extAuth"]["bodyToExtAuth"]["maxRequestBytes"],
        8192
    );
    expect_errors(
        &policy(
            "  extAuth:\n    grpc:\n      backendRef: {name: a, port: 1}\n    http:\n      backendRef: {name: a, port: 1}\n",
        ),
        &[
            "test.yaml:8: SecurityPolicy default/sp: spec.extAuth: exactly one of http or grpc must be set",
        ],
    );
    expect_errors(
        &policy(
            "  oidc:\n    provider: {issuer: \"idp.example\"}\n    clientID: c\n    clientSecret: {name: s}\n",
        ),
        &[
            "test.yaml:9: SecurityPolicy default/sp: spec.oidc.provider: issuer must be an http(s) URL",
        ],
    );
}

#[test]
fn unimplemented_fields_are_rejected_not_ignored() {
    expect_errors(
        &policy(
            "  oidc:\n    provider: {issuer: \"https://idp.example\"}\n    clientID: c\n    clientSecret: {name: s}\n    cookieNames: {accessToken: at}\n",
        ),
        &[
            "test.yaml:12: SecurityPolicy default/sp: spec.oidc.cookieNames: unknown field: not supported by Portcullis (the schema lists every implemented field)",
        ],
    );
    expect_errors(
        &policy(
            "  extAuth:\n    grpc:\n      backendRefs: [{name: authz, port: 9000}]\n    recomputeRoute: true\n",
        ),
        &[
            "test.yaml:11: SecurityPolicy default/sp: spec.extAuth.recomputeRoute: unknown field: not supported by Portcullis (the schema lists every implemented field)",
        ],
    );
    expect_errors(
        &policy(
            "  jwt:\n    providers:\n    - name: a\n      localJWKS: {inline: \"{}\"}\n      recomputeRoute: true\n",
        ),
        &[
            "test.yaml:12: SecurityPolicy default/sp: spec.jwt.providers[0].recomputeRoute: unknown field: not supported by Portcullis (the schema lists every implemented field)",
        ],
    );
}

#[test]
fn cel_rules_of_the_crd_apply() {
    expect_errors(
        &policy("  jwt:\n    providers:\n    - name: a\n"),
        &[
            "test.yaml:10: SecurityPolicy default/sp: spec.jwt.providers[0]: exactly one of remoteJWKS or localJWKS must be set",
        ],
    );
    expect_errors(
        &policy(
            "  authorization:\n    rules:\n    - action: Allow\n      principal: {clientCIDRs: [10.0.0.300/8]}\n",
        ),
        &[
            "test.yaml:8: SecurityPolicy default/sp: spec.authorization: clientCIDRs must be CIDRs such as 10.0.0.0/8 or 2001:db8::/32",
        ],
    );
    expect_errors(
        "apiVersion: portcullis.dev/v1alpha1\nkind: SecurityPolicy\nmetadata:\n  name: sp\nspec:\n  targetRefs:\n  - {group: gateway.networking.k8s.io, kind: Service, name: web}\n",
        &[
            "test.yaml:7: SecurityPolicy default/sp: spec.targetRefs[0]: targetRef must be a Gateway, HTTPRoute or GRPCRoute of group gateway.networking.k8s.io",
        ],
    );
}
