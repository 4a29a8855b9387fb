//! Frontend client-certificate validation tests (upstream
//! tests/gateway-with-*clientcertificate-validation*.go).

use anyhow::{anyhow, bail};

use super::INFRA;
use crate::helpers::*;
use crate::http::{case, expect_tls_response, make_request};
use crate::roundtrip::capture_round_trip;
use crate::status::{GatewayRef, cond, nn};
use crate::suite::{BoxFut, Ctx};

test_fn!(
    gateway_invalid_frontend_client_certificate_validation,
    |ctx| {
        let gw = nn(INFRA, "gateway-with-invalid-client-cert-validation");
        let invalid = |reason: &str| {
            vec![
                cond("ResolvedRefs", "False", reason),
                cond("Accepted", "False", "NoValidCACertificate"),
                cond("Programmed", "False", ""),
            ]
        };
        let cases = [
            (
                "https",
                vec![
                    cond("ResolvedRefs", "True", ""),
                    cond("Accepted", "True", ""),
                    cond("Programmed", "True", ""),
                ],
            ),
            ("https-unresolved", invalid("InvalidCACertificateRef")),
            ("https-invalid-kind", invalid("InvalidCACertificateKind")),
            ("https-grant-missing", invalid("RefNotPermitted")),
        ];
        for (listener, conditions) in cases {
            gateway_listeners_must_have_conditions(ctx, &gw, &conditions, &[listener]).await?;
        }
        Ok(())
    }
);

fn key_pair(ctx: &Ctx, name: &str) -> anyhow::Result<(String, String)> {
    let key = format!("{INFRA}/{name}");
    let cert = ctx.cert_pem(&key)?;
    let private = ctx
        .certs
        .keys
        .get(&key)
        .cloned()
        .ok_or_else(|| anyhow!("no key for {key}"))?;
    Ok((cert, private))
}

/// upstream tls.MakeTLSRequestAndExpectFailureResponse: one request that must fail.
async fn expect_tls_failure(
    ctx: &Ctx,
    addr: &str,
    server_cert: &str,
    client: Option<(String, String)>,
    server_name: &str,
    host: &str,
) -> anyhow::Result<()> {
    let mut exp = case(host, "/").ns(INFRA);
    let mut req = make_request(ctx, &mut exp, addr, crate::roundtrip::HTTPS, "https")?;
    req.server_name = server_name.into();
    req.server_certificate = Some(server_cert.into());
    req.client_cert = client;
    if capture_round_trip(&req).await.is_ok() {
        bail!("request to {addr} ({server_name}) with the wrong client certificate should fail");
    }
    Ok(())
}

test_fn!(gateway_frontend_client_certificate_validation, |ctx| {
    let gw = nn(INFRA, "client-validation-default");
    let routes = [
        nn(INFRA, "client-certificate-validation-https-test"),
        nn(
            INFRA,
            "client-certificate-validation-https-test-no-hostname",
        ),
    ];
    let ip = gateway_and_routes_must_be_accepted(
        ctx,
        "HTTPRoute",
        &GatewayRef::new(gw.clone()),
        false,
        &routes,
    )
    .await?;
    for r in &routes {
        route_must_have_condition(
            ctx,
            "HTTPRoute",
            r,
            &gw,
            cond("ResolvedRefs", "True", "ResolvedRefs"),
        )
        .await?;
    }
    let server = ctx.cert_pem(&format!("{INFRA}/tls-validity-checks-certificate"))?;
    let default_client = key_pair(ctx, "tls-validity-checks-client-certificate")?;
    let per_port_client = key_pair(ctx, "tls-validity-checks-per-port-client-certificate")?;
    let default_addr = join_host_port(&ip, 443);
    let ok = case("example.org", "/")
        .code(200)
        .to("infra-backend-v1", INFRA);
    expect_tls_response(
        ctx,
        &default_addr,
        &server,
        Some(default_client.clone()),
        "example.org",
        &ok,
    )
    .await
    .map_err(|e| anyhow!("Validate default configuration: {e:#}"))?;
    expect_tls_failure(
        ctx,
        &default_addr,
        &server,
        Some(per_port_client.clone()),
        "example.org",
        "example.org",
    )
    .await?;
    let per_port_addr = join_host_port(&ip, 8443);
    let ok = case("second-example.org", "/")
        .code(200)
        .to("infra-backend-v2", INFRA);
    expect_tls_response(
        ctx,
        &per_port_addr,
        &server,
        Some(per_port_client),
        "second-example.org",
        &ok,
    )
    .await
    .map_err(|e| anyhow!("Validate per port configuration: {e:#}"))?;
    expect_tls_failure(
        ctx,
        &per_port_addr,
        &server,
        Some(default_client),
        "second-example.org",
        "second-example.org",
    )
    .await
});

test_fn!(
    gateway_frontend_client_certificate_validation_insecure_fallback,
    |ctx| {
        let gw = nn(INFRA, "client-validation-insecure-fallback");
        let routes = [
            nn(INFRA, "client-cert-validation-insecure-fallback-test"),
            nn(
                INFRA,
                "client-cert-validation-insecure-fallback-test-no-hostname",
            ),
        ];
        let ip = gateway_and_routes_must_be_accepted(
            ctx,
            "HTTPRoute",
            &GatewayRef::new(gw.clone()),
            false,
            &routes,
        )
        .await?;
        for r in &routes {
            route_must_have_condition(
                ctx,
                "HTTPRoute",
                r,
                &gw,
                cond("ResolvedRefs", "True", "ResolvedRefs"),
            )
            .await?;
        }
        gateway_must_have_condition(
            ctx,
            &gw,
            cond(
                "InsecureFrontendValidationMode",
                "True",
                "ConfigurationChanged",
            ),
        )
        .await?;
        let server = ctx.cert_pem(&format!("{INFRA}/tls-validity-checks-certificate"))?;
        let default_client = key_pair(ctx, "tls-validity-checks-client-certificate")?;
        let per_port_client = key_pair(ctx, "tls-validity-checks-per-port-client-certificate")?;
        for (port, host, backend, clients) in [
            (
                443,
                "example.org",
                "infra-backend-v1",
                [
                    Some(default_client.clone()),
                    Some(per_port_client.clone()),
                    None,
                ],
            ),
            (
                8443,
                "second-example.org",
                "infra-backend-v2",
                [Some(per_port_client), Some(default_client), None],
            ),
        ] {
            let addr = join_host_port(&ip, port);
            let ok = case(host, "/").code(200).to(backend, INFRA);
            for (i, client) in clients.into_iter().enumerate() {
                expect_tls_response(ctx, &addr, &server, client, host, &ok)
                    .await
                    .map_err(|e| anyhow!("port {port}, client certificate case {i}: {e:#}"))?;
            }
        }
        Ok(())
    }
);

test_fn!(
    gateway_frontend_invalid_default_client_certificate_validation,
    |ctx| {
        let gw = nn(INFRA, "invalid-default-client-validation-config");
        let addr = wait_for_gateway_address(ctx, &GatewayRef::new(gw.clone())).await?;
        let ip = addr
            .rsplit_once(':')
            .map(|(h, _)| h.to_string())
            .unwrap_or(addr);
        gateway_listeners_must_have_conditions(
            ctx,
            &gw,
            &[
                cond("ResolvedRefs", "True", ""),
                cond("Accepted", "True", ""),
                cond("Programmed", "True", ""),
            ],
            &["http"],
        )
        .await?;
        let ok = case("example.org", "/")
            .code(200)
            .to("infra-backend-v1", INFRA);
        crate::http::expect_response(ctx, &join_host_port(&ip, 80), &ok).await?;
        gateway_listeners_must_have_conditions(
            ctx,
            &gw,
            &[
                cond("ResolvedRefs", "False", "InvalidCACertificateRef"),
                cond("Accepted", "False", "NoValidCACertificate"),
                cond("Programmed", "False", ""),
            ],
            &["https"],
        )
        .await?;
        let server = ctx.cert_pem(&format!("{INFRA}/tls-validity-checks-certificate"))?;
        expect_tls_failure(
            ctx,
            &join_host_port(&ip, 443),
            &server,
            None,
            "example.org",
            "example.org",
        )
        .await
    }
);
