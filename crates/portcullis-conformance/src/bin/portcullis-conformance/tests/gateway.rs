//! Gateway and GatewayClass status tests (upstream tests/gateway*.go).

use anyhow::ensure;
use serde_json::json;

use super::INFRA;
use crate::helpers::*;
use crate::status::{ExpListener, cond, listener, nn};
use crate::suite::{BoxFut, Ctx};

test_fn!(gateway_class_observed_generation_bump, |ctx| {
    let name = "gatewayclass-observed-generation-bump";
    gwc_must_have_accepted(ctx, name, "").await?;
    gateway_class_must_have_latest_conditions(ctx, name).await?;
    let (original, updated) = patch_and_wait_generation(ctx, "GatewayClass", &nn("", name), |d| {
        d["spec"]["description"] = json!("new");
    })
    .await?;
    gwc_must_have_accepted(ctx, name, "").await?;
    gateway_class_must_have_latest_conditions(ctx, name).await?;
    ensure!(
        original != updated,
        "generation should change after an update"
    );
    Ok(())
});

test_fn!(gateway_invalid_route_kind, |ctx| {
    gateway_status_must_have_listeners(
        ctx,
        &nn(INFRA, "gateway-only-invalid-route-kind"),
        vec![listener(
            "http",
            &[],
            vec![cond("ResolvedRefs", "False", "InvalidRouteKinds")],
            0,
        )],
    )
    .await?;
    gateway_status_must_have_listeners(
        ctx,
        &nn(INFRA, "gateway-supported-and-invalid-route-kind"),
        vec![listener(
            "http",
            &["HTTPRoute"],
            vec![cond("ResolvedRefs", "False", "InvalidRouteKinds")],
            0,
        )],
    )
    .await
});

test_fn!(gateway_invalid_tls_configuration, |ctx| {
    let expected = vec![listener(
        "https",
        &["HTTPRoute"],
        vec![cond("ResolvedRefs", "False", "InvalidCertificateRef")],
        0,
    )];
    for gw in [
        "gateway-certificate-nonexistent-secret",
        "gateway-certificate-unsupported-group",
        "gateway-certificate-unsupported-kind",
        "gateway-certificate-malformed-secret",
    ] {
        gateway_status_must_have_listeners(ctx, &nn(INFRA, gw), expected.clone()).await?;
    }
    Ok(())
});

test_fn!(gateway_listener_unsupported_protocol, |ctx| {
    let gw = nn(INFRA, "gateway-only-unsupported-protocols");
    gateway_must_have_latest_conditions(ctx, &gw).await?;
    gateway_must_have_condition(ctx, &gw, cond("Accepted", "False", "ListenersNotValid")).await?;
    gateway_status_must_have_listeners(
        ctx,
        &gw,
        vec![listener(
            "invalid",
            &[],
            vec![cond("Accepted", "False", "UnsupportedProtocol")],
            0,
        )],
    )
    .await?;
    let gw = nn(INFRA, "gateway-supported-and-unsupported-protocols");
    gateway_must_have_latest_conditions(ctx, &gw).await?;
    gateway_must_have_condition(ctx, &gw, cond("Accepted", "True", "ListenersNotValid")).await?;
    gateway_status_must_have_listeners(
        ctx,
        &gw,
        vec![
            listener(
                "http",
                &["HTTPRoute"],
                vec![cond("Accepted", "True", "Accepted")],
                0,
            ),
            listener(
                "invalid",
                &[],
                vec![cond("Accepted", "False", "UnsupportedProtocol")],
                0,
            ),
        ],
    )
    .await
});

fn accepted_resolved(name: &str, attached: i64) -> ExpListener {
    listener(
        name,
        &["HTTPRoute"],
        vec![
            cond("Accepted", "True", ""),
            cond("ResolvedRefs", "True", ""),
        ],
        attached,
    )
}

test_fn!(gateway_modify_listeners, |ctx| {
    // Add a listener.
    let gw = nn(INFRA, "gateway-add-listener");
    namespaces_must_be_ready(ctx, &[INFRA]).await?;
    gateway_must_have_latest_conditions(ctx, &gw).await?;
    let (original, updated) = patch_and_wait_generation(ctx, "Gateway", &gw, |d| {
        if let Some(l) = d["spec"]["listeners"].as_array_mut() {
            l.push(json!({
                "name": "http",
                "port": 80,
                "protocol": "HTTP",
                "hostname": "data.test.com",
                "allowedRoutes": {"namespaces": {"from": "All"}},
            }));
        }
    })
    .await?;
    namespaces_must_be_ready(ctx, &[INFRA]).await?;
    gateway_status_must_have_listeners(
        ctx,
        &gw,
        vec![accepted_resolved("https", 1), accepted_resolved("http", 1)],
    )
    .await?;
    gateway_must_have_latest_conditions(ctx, &gw).await?;
    ensure!(
        original != updated,
        "generation should change after an update"
    );

    // Remove a listener.
    let gw = nn(INFRA, "gateway-remove-listener");
    namespaces_must_be_ready(ctx, &[INFRA]).await?;
    gateway_must_have_latest_conditions(ctx, &gw).await?;
    let spec = ctx
        .spec_of("Gateway", &gw)
        .ok_or_else(|| anyhow::anyhow!("no manifest for {gw}"))?;
    ensure!(
        crate::status::arr(&spec, "/spec/listeners").len() == 2,
        "the gateway must have 2 listeners"
    );
    let (original, updated) = patch_and_wait_generation(ctx, "Gateway", &gw, |d| {
        if let Some(l) = d["spec"]["listeners"].as_array_mut() {
            l.retain(|l| l["name"] == "http");
        }
    })
    .await?;
    namespaces_must_be_ready(ctx, &[INFRA]).await?;
    gateway_status_must_have_listeners(ctx, &gw, vec![accepted_resolved("http", 1)]).await?;
    gateway_must_have_latest_conditions(ctx, &gw).await?;
    ensure!(
        original != updated,
        "generation should change after an update"
    );
    Ok(())
});

test_fn!(gateway_observed_generation_bump, |ctx| {
    let gw = nn(INFRA, "gateway-observed-generation-bump");
    namespaces_must_be_ready(ctx, &[INFRA]).await?;
    gateway_must_have_latest_conditions(ctx, &gw).await?;
    let (original, updated) = patch_and_wait_generation(ctx, "Gateway", &gw, |d| {
        if let Some(l) = d["spec"]["listeners"].as_array_mut() {
            l.push(json!({
                "name": "alternate",
                "hostname": "foo.com",
                "port": 80,
                "protocol": "HTTP",
                "allowedRoutes": {"namespaces": {"from": "All"}},
            }));
        }
    })
    .await?;
    namespaces_must_be_ready(ctx, &[INFRA]).await?;
    gateway_must_have_latest_conditions(ctx, &gw).await?;
    ensure!(
        original != updated,
        "generation should change after an update"
    );
    Ok(())
});

fn ref_not_permitted() -> Vec<ExpListener> {
    vec![listener(
        "https",
        &["HTTPRoute"],
        vec![cond("ResolvedRefs", "False", "RefNotPermitted")],
        0,
    )]
}

fn programmed_resolved() -> Vec<ExpListener> {
    vec![listener(
        "https",
        &["HTTPRoute"],
        vec![
            cond("Programmed", "True", "Programmed"),
            cond("ResolvedRefs", "True", ""),
        ],
        0,
    )]
}

test_fn!(gateway_secret_invalid_reference_grant, |ctx| {
    gateway_status_must_have_listeners(
        ctx,
        &nn(INFRA, "gateway-secret-invalid-reference-grant"),
        ref_not_permitted(),
    )
    .await
});

test_fn!(gateway_secret_missing_reference_grant, |ctx| {
    gateway_status_must_have_listeners(
        ctx,
        &nn(INFRA, "gateway-secret-missing-reference-grant"),
        ref_not_permitted(),
    )
    .await
});

test_fn!(gateway_secret_reference_grant_all_in_namespace, |ctx| {
    gateway_status_must_have_listeners(
        ctx,
        &nn(INFRA, "gateway-secret-reference-grant-all-in-namespace"),
        programmed_resolved(),
    )
    .await
});

test_fn!(gateway_secret_reference_grant_specific, |ctx| {
    gateway_status_must_have_listeners(
        ctx,
        &nn(INFRA, "gateway-secret-reference-grant-specific"),
        programmed_resolved(),
    )
    .await
});

test_fn!(gateway_with_attached_routes, |ctx| {
    gateway_status_must_have_listeners(
        ctx,
        &nn(INFRA, "gateway-with-one-attached-route"),
        vec![accepted_resolved("http", 1)],
    )
    .await?;
    let gw = nn(INFRA, "gateway-with-two-attached-routes");
    gateway_status_must_have_listeners(ctx, &gw, vec![accepted_resolved("http", 2)]).await?;
    route_must_have_condition(
        ctx,
        "HTTPRoute",
        &nn(INFRA, "http-route-not-accepted"),
        &gw,
        cond("Accepted", "False", "NoMatchingListenerHostname"),
    )
    .await?;
    let gw = nn(
        INFRA,
        "unresolved-gateway-with-one-attached-unresolved-route",
    );
    gateway_status_must_have_listeners(
        ctx,
        &gw,
        vec![listener(
            "tls",
            &["HTTPRoute"],
            vec![
                cond("Programmed", "False", ""),
                cond("ResolvedRefs", "False", ""),
            ],
            1,
        )],
    )
    .await?;
    route_must_have_condition(
        ctx,
        "HTTPRoute",
        &nn(INFRA, "http-route-4"),
        &gw,
        cond("ResolvedRefs", "False", ""),
    )
    .await
});

test_fn!(gateway_with_attached_routes_with_port_8080, |ctx| {
    gateway_status_must_have_listeners(
        ctx,
        &nn(INFRA, "gateway-with-two-listeners-and-one-attached-route"),
        vec![
            accepted_resolved("http-unattached", 0),
            accepted_resolved("http", 1),
        ],
    )
    .await
});

test_fn!(gateway_invalid_parameters_ref, |ctx| {
    let gw = nn(INFRA, "gateway-invalid-parameters-ref");
    gateway_must_have_latest_conditions(ctx, &gw).await?;
    gateway_must_have_condition(ctx, &gw, cond("Accepted", "False", "InvalidParameters")).await
});

test_fn!(gateway_optional_address_value, |ctx| {
    namespaces_must_be_ready(ctx, &[INFRA]).await?;
    let gw = nn(INFRA, "gateway-without-address-value");
    gateway_must_have_latest_conditions(ctx, &gw).await?;
    wait_for_gateway_address(
        ctx,
        &crate::status::GatewayRef::with_listeners(gw, &["http"]),
    )
    .await?;
    Ok(())
});
