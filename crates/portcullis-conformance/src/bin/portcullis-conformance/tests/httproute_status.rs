//! HTTPRoute status-only tests (invalid references, parent refs, generations).

use anyhow::ensure;
use serde_json::json;

use super::{INFRA, WEB};
use crate::helpers::*;
use crate::status::{cond, nn};
use crate::suite::{BoxFut, Ctx};

test_fn!(httproute_invalid_cross_namespace_parent_ref, |ctx| {
    let gw = nn(INFRA, "same-namespace");
    let route = nn(WEB, "invalid-cross-namespace-parent-ref");
    route_must_have_condition(
        ctx,
        "HTTPRoute",
        &route,
        &gw,
        cond("ResolvedRefs", "True", "ResolvedRefs"),
    )
    .await?;
    route_must_have_condition(
        ctx,
        "HTTPRoute",
        &route,
        &gw,
        cond("Accepted", "False", "NotAllowedByListeners"),
    )
    .await?;
    route_must_have_no_accepted_parents(ctx, "HTTPRoute", &route).await?;
    gateway_must_have_zero_routes(ctx, &gw).await
});

test_fn!(
    httproute_invalid_parentref_not_matching_section_name,
    |ctx| {
        let route = nn(INFRA, "httproute-listener-not-matching-section-name");
        let gw = nn(INFRA, "same-namespace");
        route_must_have_condition(
            ctx,
            "HTTPRoute",
            &route,
            &gw,
            cond("Accepted", "False", "NoMatchingParent"),
        )
        .await?;
        route_must_have_no_accepted_parents(ctx, "HTTPRoute", &route).await?;
        gateway_must_have_zero_routes(ctx, &gw).await
    }
);

test_fn!(httproute_observed_generation_bump, |ctx| {
    let route = nn(INFRA, "observed-generation-bump");
    let gw = nn(INFRA, "same-namespace");
    namespaces_must_be_ready(ctx, &[INFRA]).await?;
    route_must_have_latest_conditions(ctx, "HTTPRoute", &route).await?;
    let (original, updated) = patch_and_wait_generation(ctx, "HTTPRoute", &route, |d| {
        d["spec"]["rules"][0]["backendRefs"][0]["name"] = json!("infra-backend-v2");
    })
    .await?;
    route_must_have_condition(ctx, "HTTPRoute", &route, &gw, cond("Accepted", "True", "")).await?;
    route_must_have_condition(
        ctx,
        "HTTPRoute",
        &route,
        &gw,
        cond("ResolvedRefs", "True", "ResolvedRefs"),
    )
    .await?;
    route_must_have_latest_conditions(ctx, "HTTPRoute", &route).await?;
    ensure!(
        original != updated,
        "generation should change after an update"
    );
    Ok(())
});

test_fn!(httproute_disallowed_kind, |ctx| {
    namespaces_must_be_ready(ctx, &[INFRA]).await?;
    let route = nn(INFRA, "disallowed-kind");
    let gw = nn(INFRA, "tlsroutes-only");
    route_must_have_condition(
        ctx,
        "HTTPRoute",
        &route,
        &gw,
        cond("ResolvedRefs", "True", "ResolvedRefs"),
    )
    .await?;
    route_must_have_condition(
        ctx,
        "HTTPRoute",
        &route,
        &gw,
        cond("Accepted", "False", "NotAllowedByListeners"),
    )
    .await?;
    route_must_have_no_accepted_parents(ctx, "HTTPRoute", &route).await?;
    gateway_must_have_zero_routes(ctx, &gw).await
});
