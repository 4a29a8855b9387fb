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

fn accepted() -> crate::status::Cond {
    cond("Accepted", "True", "Accepted")
}

fn resolved() -> crate::status::Cond {
    cond("ResolvedRefs", "True", "ResolvedRefs")
}

test_fn!(backendtlspolicy, |ctx| {
    // Re-encrypt from the HTTPS listener.
    let https_gw = nn(INFRA, "same-namespace-with-https-listener");
    let route = nn(INFRA, "backendtlspolicy-reencrypt");
    namespaces_must_be_ready(ctx, &[INFRA]).await?;
    let ip = gateway_and_routes_must_be_accepted(
        ctx,
        "HTTPRoute",
        &GatewayRef::new(https_gw.clone()),
        false,
        std::slice::from_ref(&route),
    )
    .await?;
    route_must_have_condition(ctx, "HTTPRoute", &route, &https_gw, resolved()).await?;
    let valid = nn(INFRA, "normative-test");
    backend_tls_policy_must_have_condition(ctx, &valid, &https_gw, accepted()).await?;
    backend_tls_policy_must_have_condition(ctx, &valid, &https_gw, resolved()).await?;
    let server = ctx.cert_pem(&format!("{INFRA}/tls-validity-checks-certificate"))?;
    let c = case("https-listener.org", "/backendtlspolicy")
        .sni("https-listener.org")
        .expect_req("", "/backendtlspolicy")
        .expect_sni("abc.example.com")
        .codes(&[200])
        .ns(INFRA);
    crate::http::expect_tls_response(ctx, &ip, &server, None, "https-listener.org", &c)
        .await
        .map_err(|e| anyhow::anyhow!("Re-encrypt HTTPS request sent to Service with valid BackendTLSPolicy should succeed: {e:#}"))?;

    let gw = nn(INFRA, "same-namespace");
    let route = nn(INFRA, "backendtlspolicy");
    let ip = gateway_and_routes_must_be_accepted(
        ctx,
        "HTTPRoute",
        &GatewayRef::new(gw.clone()),
        false,
        std::slice::from_ref(&route),
    )
    .await?;
    route_must_have_condition(ctx, "HTTPRoute", &route, &gw, resolved()).await?;
    backend_tls_policy_must_have_condition(ctx, &valid, &gw, accepted()).await?;
    backend_tls_policy_must_have_condition(ctx, &valid, &gw, resolved()).await?;
    expect_response(
        ctx,
        &ip,
        &case("abc.example.com", "/backendtlspolicy")
            .sni("abc.example.com")
            .codes(&[200])
            .ns(INFRA),
    )
    .await?;
    for (policy, host, path) in [
        (
            "host-mismatch",
            "abc.example.org",
            "/backendtlspolicy-host-mismatch",
        ),
        (
            "cert-mismatch",
            "abc.example.com",
            "/backendtlspolicy-cert-mismatch",
        ),
    ] {
        let p = nn(INFRA, policy);
        backend_tls_policy_must_have_condition(ctx, &p, &gw, accepted()).await?;
        backend_tls_policy_must_have_condition(ctx, &p, &gw, resolved()).await?;
        crate::http::expect_failure(ctx, &ip, &case(host, path).sni("abc.example.com").ns(INFRA))
            .await?;
    }

    // A CA ConfigMap's content changes are reconciled.
    let policy = nn(INFRA, "reconcile-test");
    backend_tls_policy_must_have_condition(ctx, &policy, &gw, accepted()).await?;
    backend_tls_policy_must_have_condition(ctx, &policy, &gw, resolved()).await?;
    let ca = ctx.cert_pem(&format!("{INFRA}/tls-checks-ca-certificate"))?;
    let cm_name = "tls-checks-ca-certificate-reconcile-test";
    let original_refs = ctx
        .spec_of("BackendTLSPolicy", &policy)
        .and_then(|d| d.pointer("/spec/validation/caCertificateRefs").cloned())
        .unwrap_or(json!([]));
    ctx.patch("BackendTLSPolicy", &policy, |d| {
        d["spec"]["validation"]["caCertificateRefs"] =
            json!([{"group": "", "kind": "ConfigMap", "name": cm_name}]);
    })?;
    let invalid_accepted = cond("Accepted", "False", "NoValidCACertificate");
    let invalid_resolved = cond("ResolvedRefs", "False", "InvalidCACertificateRef");
    backend_tls_policy_must_have_condition(ctx, &policy, &gw, invalid_accepted.clone()).await?;
    backend_tls_policy_must_have_condition(ctx, &policy, &gw, invalid_resolved.clone()).await?;
    let cm = nn(INFRA, cm_name);
    ctx.apply_docs(
        "reconcile-configmap.yaml",
        vec![json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": cm_name, "namespace": INFRA},
            "data": {"ca.crt": ca},
        })],
    )
    .await?;
    backend_tls_policy_must_have_condition(ctx, &policy, &gw, accepted()).await?;
    backend_tls_policy_must_have_condition(ctx, &policy, &gw, resolved()).await?;
    ctx.patch("ConfigMap", &cm, |d| d["data"]["ca.crt"] = json!(""))?;
    backend_tls_policy_must_have_condition(ctx, &policy, &gw, invalid_accepted).await?;
    backend_tls_policy_must_have_condition(ctx, &policy, &gw, invalid_resolved).await?;
    ctx.patch("ConfigMap", &cm, |d| d["data"]["ca.crt"] = json!(ca))?;
    backend_tls_policy_must_have_condition(ctx, &policy, &gw, accepted()).await?;
    backend_tls_policy_must_have_condition(ctx, &policy, &gw, resolved()).await?;
    ctx.patch("BackendTLSPolicy", &policy, |d| {
        d["spec"]["validation"]["caCertificateRefs"] = original_refs
    })?;
    Ok(())
});

test_fn!(gateway_invalid_tls_backend_configuration, |ctx| {
    for (gw, reason) in [
        (
            "gateway-client-certificate-nonexistent-secret",
            "InvalidClientCertificateRef",
        ),
        (
            "gateway-client-certificate-unsupported-group",
            "InvalidClientCertificateRef",
        ),
        (
            "gateway-client-certificate-unsupported-kind",
            "InvalidClientCertificateRef",
        ),
        (
            "gateway-client-certificate-malformed-secret",
            "InvalidClientCertificateRef",
        ),
        (
            "gateway-client-certificate-missing-reference-grant",
            "RefNotPermitted",
        ),
    ] {
        let gw = nn(INFRA, gw);
        gateway_must_have_latest_conditions(ctx, &gw).await?;
        gateway_must_have_condition(ctx, &gw, cond("ResolvedRefs", "False", reason)).await?;
        gateway_must_have_condition(ctx, &gw, cond("Accepted", "True", "Accepted")).await?;
    }
    Ok(())
});

test_fn!(gateway_tls_backend_client_certificate, |ctx| {
    let route = nn(INFRA, "gateway-tls-backend-client-certificate");
    let gw = nn(INFRA, "gateway-tls-backend-client-certificate");
    let policy = nn(INFRA, "gateway-tls-backend-client-certificate-test");
    namespaces_must_be_ready(ctx, &[INFRA]).await?;
    let ip = gateway_and_routes_must_be_accepted(
        ctx,
        "HTTPRoute",
        &GatewayRef::new(gw.clone()),
        false,
        std::slice::from_ref(&route),
    )
    .await?;
    route_must_have_condition(ctx, "HTTPRoute", &route, &gw, resolved()).await?;
    backend_tls_policy_must_have_condition(ctx, &policy, &gw, accepted()).await?;
    gateway_must_have_condition(ctx, &gw, cond("ResolvedRefs", "True", "ResolvedRefs")).await?;
    let client_cert = ctx.cert_pem(&format!("{INFRA}/tls-checks-client-certificate"))?;
    let c = case("abc.example.com", "/")
        .sni("abc.example.com")
        .expect_client_cert(&client_cert)
        .codes(&[200])
        .ns(INFRA);
    expect_response(ctx, &ip, &c).await
});

async fn tls_route(ctx: &Ctx, route: &str) -> anyhow::Result<(crate::status::Nn, String)> {
    let gw = nn(INFRA, "same-namespace");
    let route = nn(INFRA, route);
    namespaces_must_be_ready(ctx, &[INFRA]).await?;
    let ip = gateway_and_routes_must_be_accepted(
        ctx,
        "HTTPRoute",
        &GatewayRef::new(gw.clone()),
        false,
        std::slice::from_ref(&route),
    )
    .await?;
    route_must_have_condition(ctx, "HTTPRoute", &route, &gw, resolved()).await?;
    Ok((gw, ip))
}

test_fn!(backendtlspolicy_conflict_resolution, |ctx| {
    let (gw, ip) = tls_route(ctx, "backendtlspolicy-conflict-resolution").await?;
    let conflicted = cond("Accepted", "False", "Conflicted");
    for suffix in ["without-section-name", "with-section-name"] {
        backend_tls_policy_must_have_condition(
            ctx,
            &nn(INFRA, &format!("conflicted-{suffix}-1")),
            &gw,
            accepted(),
        )
        .await?;
        backend_tls_policy_must_have_condition(
            ctx,
            &nn(INFRA, &format!("conflicted-{suffix}-2")),
            &gw,
            conflicted.clone(),
        )
        .await?;
        let c = case(
            "abc.example.com",
            &format!("/backendtlspolicy-conflicted-{suffix}"),
        )
        .sni("other.example.com")
        .code(200)
        .ns(INFRA);
        expect_response(ctx, &ip, &c).await?;
    }
    for (policy, sni) in [
        ("not-conflicted-with-section-name", "other.example.com"),
        ("not-conflicted-without-section-name", "abc.example.com"),
    ] {
        backend_tls_policy_must_have_condition(ctx, &nn(INFRA, policy), &gw, accepted()).await?;
        let c = case("abc.example.com", &format!("/backendtlspolicy-{policy}"))
            .sni(sni)
            .code(200)
            .ns(INFRA);
        expect_response(ctx, &ip, &c).await?;
    }
    Ok(())
});

test_fn!(backendtlspolicy_san_validation, |ctx| {
    let (gw, ip) = tls_route(ctx, "backendtlspolicy-san-test").await?;
    let host = "abc.example.com";
    for (policy, ok) in [
        ("san-dns", true),
        ("san-dns-mismatch", false),
        ("san-uri", true),
        ("san-uri-mismatch", false),
        ("multiple-sans", true),
        ("multiple-mismatch-sans", false),
    ] {
        backend_tls_policy_must_have_condition(ctx, &nn(INFRA, policy), &gw, accepted()).await?;
        let c = case(host, &format!("/backendtlspolicy-{policy}"))
            .sni(host)
            .ns(INFRA);
        if ok {
            expect_response(ctx, &ip, &c.codes(&[200])).await?;
        } else {
            crate::http::expect_failure(ctx, &ip, &c).await?;
        }
    }
    Ok(())
});
