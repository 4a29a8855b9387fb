//! ClientTrafficPolicy (`portcullis.dev/v1alpha1`) through the same source path
//! as the Gateway API kinds: defaults, schema and CEL rules from its CRD, and
//! unimplemented Envoy Gateway fields rejected with file:line, object and field.

mod common;

use common::{expect_errors, load, only};
use portcullis_store::Kind;

const HEAD: &str = "apiVersion: portcullis.dev/v1alpha1\nkind: ClientTrafficPolicy\nmetadata:\n  name: ctp\nspec:\n  targetRefs:\n  - {group: gateway.networking.k8s.io, kind: Gateway, name: gw, sectionName: http}\n";

fn policy(rest: &str) -> String {
    format!("{HEAD}{rest}")
}

#[test]
fn a_valid_policy_loads_with_defaults() {
    let (loaded, errors, warnings) = load(
        "test.yaml",
        &policy(
            "  clientIPDetection:\n    customHeader: {name: X-Client}\n  timeout:\n    http: {requestReceivedTimeout: 10s}\n  connection:\n    connectionLimit: {value: 100}\n    bufferLimit: 32Ki\n  headers: {requestID: Generate}\n  http1: {enableTrailers: false}\n  http2: {maxConcurrentStreams: 10}\n  tls: {minVersion: \"1.3\", alpnProtocols: [http/1.1]}\n",
        ),
    );
    assert!(errors.is_empty(), "{errors:?}");
    assert!(warnings.is_empty(), "{warnings:?}");
    let v = only(&loaded, Kind::ClientTrafficPolicy);
    assert_eq!(v["spec"]["enableProxyProtocol"], false);
    assert_eq!(v["spec"]["http1"]["enableTrailers"], false);
    assert_eq!(
        v["spec"]["clientIPDetection"]["customHeader"]["failClosed"],
        false
    );
}

#[test]
fn unimplemented_fields_are_rejected_not_ignored() {
    expect_errors(
        &policy(
            "  tcpKeepalive: {probes: 3}\n  headers:\n    enableEnvoyHeaders: true\n  http1:\n    http10: {useDefaultHost: true}\n",
        ),
        &[
            "test.yaml:8: ClientTrafficPolicy default/ctp: spec.tcpKeepalive: unknown field: not supported by Portcullis (the schema lists every implemented field)",
            "test.yaml:10: ClientTrafficPolicy default/ctp: spec.headers.enableEnvoyHeaders: unknown field: not supported by Portcullis (the schema lists every implemented field)",
            "test.yaml:12: ClientTrafficPolicy default/ctp: spec.http1.http10: unknown field: not supported by Portcullis (the schema lists every implemented field)",
        ],
    );
}

#[test]
fn cel_rules_of_the_crd_apply() {
    expect_errors(
        &policy(
            "  clientIPDetection:\n    xForwardedFor: {numTrustedHops: 1, trustedCIDRs: [10.0.0.0/8]}\n",
        ),
        &[
            "test.yaml:9: ClientTrafficPolicy default/ctp: spec.clientIPDetection.xForwardedFor: only one of numTrustedHops or trustedCIDRs must be set",
        ],
    );
    expect_errors(
        &policy("  clientIPDetection:\n    xForwardedFor: {trustedCIDRs: [10.0.0.300/8]}\n"),
        &[
            "test.yaml:9: ClientTrafficPolicy default/ctp: spec.clientIPDetection.xForwardedFor: trustedCIDRs must be CIDRs such as 10.0.0.0/8 or 2001:db8::/32",
        ],
    );
    expect_errors(
        &policy("  headers: {preserveXRequestID: true, requestID: Generate}\n"),
        &[
            "test.yaml:8: ClientTrafficPolicy default/ctp: spec.headers: preserveXRequestID and requestID cannot both be set.",
        ],
    );
    expect_errors(
        "apiVersion: portcullis.dev/v1alpha1\nkind: ClientTrafficPolicy\nmetadata:\n  name: ctp\nspec:\n  targetRefs:\n  - {group: gateway.networking.k8s.io, kind: HTTPRoute, name: r}\n",
        &[
            "test.yaml:7: ClientTrafficPolicy default/ctp: spec.targetRefs[0]: targetRef must be a Gateway of group gateway.networking.k8s.io",
        ],
    );
}
