//! BackendTLSPolicy status tests (upstream tests/backendtlspolicy-*.go).

use anyhow::ensure;
use serde_json::json;

use super::INFRA;
use crate::helpers::*;
use crate::http::{case, expect_response};
use crate::status::{GatewayRef, cond, nn};
use crate::suite::{BoxFut, Ctx};

async fn invalid_policy(
    ctx: &Ctx,
    route: &str,
    policies: &[&str],
    resolved_reason: &str,
) -> anyhow::Result<()> {
    let gw = nn(INFRA, "same-namespace");
    namespaces_must_be_ready(ctx, &[INFRA]).await?;
    let addr = gateway_and_routes_must_be_accepted(
        ctx,
        "HTTPRoute",
        &GatewayRef::new(gw.clone()),
        false,
        &[nn(INFRA, route)],
    )
    .await?;
    for p in policies {
        let policy = nn(INFRA, p);
        backend_tls_policy_must_have_condition(
            ctx,
            &policy,
            &gw,
            cond("Accepted", "False", "NoValidCACertificate"),
        )
        .await?;
        backend_tls_policy_must_have_condition(
            ctx,
            &policy,
            &gw,
            cond("ResolvedRefs", "False", resolved_reason),
        )
        .await?;
        let c = case("abc.example.com", &format!("/backendtlspolicy-{p}"))
            .codes(&[500, 502, 503])
            .ns(INFRA);
        expect_response(ctx, &addr, &c).await?;
    }
    Ok(())
}

test_fn!(backendtlspolicy_invalid_kind, |ctx| {
    invalid_policy(
        ctx,
        "backendtlspolicy-invalid-kind-test",
        &["invalid-kind"],
        "InvalidKind",
    )
    .await
});

test_fn!(backendtlspolicy_invalid_ca_certificate_ref, |ctx| {
    invalid_policy(
        ctx,
        "backendtlspolicy-invalid-ca-certificate-ref",
        &[
            "nonexistent-ca-certificate-ref",
            "malformed-ca-certificate-ref",
        ],
        "InvalidCACertificateRef",
    )
    .await
});

test_fn!(backendtlspolicy_observed_generation_bump, |ctx| {
    let policy = nn(INFRA, "observed-generation-bump");
    let gw = nn(INFRA, "same-namespace");
    namespaces_must_be_ready(ctx, &[INFRA]).await?;
    backend_tls_policy_must_have_latest_conditions(ctx, &policy).await?;
    let (original, updated) = patch_and_wait_generation(ctx, "BackendTLSPolicy", &policy, |d| {
        d["spec"]["validation"]["hostname"] = json!("foo.example.com");
    })
    .await?;
    backend_tls_policy_must_have_condition(ctx, &policy, &gw, cond("Accepted", "True", "")).await?;
    backend_tls_policy_must_have_latest_conditions(ctx, &policy).await?;
    ensure!(
        original != updated,
        "generation should change after an update"
    );
    Ok(())
});
