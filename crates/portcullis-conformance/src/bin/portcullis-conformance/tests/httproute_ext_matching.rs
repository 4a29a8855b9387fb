//! Extended HTTPRoute matching tests: query parameters, methods, ports.

use super::INFRA;
use crate::helpers::*;
use crate::http::{case, expect_response, expect_responses};
use crate::status::{GatewayRef, Nn, cond, nn};
use crate::suite::{BoxFut, Ctx};

const V1: &str = "infra-backend-v1";
const V2: &str = "infra-backend-v2";
const V3: &str = "infra-backend-v3";

async fn same_namespace(ctx: &Ctx, route: &str) -> anyhow::Result<String> {
    let gw = nn(INFRA, "same-namespace");
    let route = nn(INFRA, route);
    let addr = gateway_and_http_routes_must_be_accepted(
        ctx,
        &GatewayRef::new(gw.clone()),
        std::slice::from_ref(&route),
    )
    .await?;
    route_must_have_condition(
        ctx,
        "HTTPRoute",
        &route,
        &gw,
        cond("ResolvedRefs", "True", "ResolvedRefs"),
    )
    .await?;
    Ok(addr)
}

test_fn!(httproute_query_param_matching, |ctx| {
    let addr = same_namespace(ctx, "query-param-matching").await?;
    expect_responses(
        ctx,
        &addr,
        &[
            case("", "/?animal=whale").to(V1, INFRA),
            case("", "/?animal=dolphin").to(V2, INFRA),
            case("", "/?animal=dolphin&color=blue").to(V3, INFRA),
            case("", "/?ANIMAL=Whale").to(V3, INFRA),
            case("", "/?animal=whale&otherparam=irrelevant").to(V1, INFRA),
            case("", "/?animal=dolphin&color=yellow").to(V2, INFRA),
            case("", "/?color=blue").code(404),
            case("", "/?animal=dog").code(404),
            case("", "/?animal=whaledolphin").code(404),
            case("", "/").code(404),
            case("", "/path1?animal=whale").to(V1, INFRA),
            case("", "/?animal=whale")
                .header("version", "one")
                .to(V2, INFRA),
            case("", "/path2?animal=whale")
                .header("version", "two")
                .to(V3, INFRA),
            case("", "/path3?animal=shark").to(V1, INFRA),
            case("", "/path4?animal=kraken")
                .header("version", "three")
                .to(V1, INFRA),
            case("", "/?animal=shark").code(404),
            case("", "/path4?animal=kraken").code(404),
            case("", "/path5?animal=hydra").to(V1, INFRA),
            case("", "/?animal=hydra")
                .header("version", "four")
                .to(V3, INFRA),
        ],
    )
    .await
});

test_fn!(httproute_method_matching, |ctx| {
    let addr = same_namespace(ctx, "method-matching").await?;
    expect_responses(
        ctx,
        &addr,
        &[
            case("", "/").method("POST").to(V1, INFRA),
            case("", "/").method("GET").to(V2, INFRA),
            case("", "/").method("HEAD").code(404),
            case("", "/path1").method("GET").to(V1, INFRA),
            case("", "/")
                .method("PUT")
                .header("version", "one")
                .to(V2, INFRA),
            case("", "/path2")
                .method("POST")
                .header("version", "two")
                .to(V3, INFRA),
            case("", "/path3").method("PATCH").to(V1, INFRA),
            case("", "/path4")
                .method("DELETE")
                .header("version", "three")
                .to(V1, INFRA),
            case("", "/").method("PUT").code(404),
            case("", "/path4").method("DELETE").code(404),
            case("", "/path5").method("PATCH").to(V1, INFRA),
            case("", "/")
                .method("PATCH")
                .header("version", "four")
                .to(V2, INFRA),
        ],
    )
    .await
});

test_fn!(httproute_listener_port_matching, |ctx| {
    namespaces_must_be_ready(ctx, &[INFRA]).await?;
    let gw = nn(INFRA, "httproute-listener-port-matching");
    let mut addrs = Vec::new();
    for (listener, route) in [
        ("listener-1", "backend-v1"),
        ("listener-2", "backend-v2"),
        ("listener-4", "backend-v3"),
    ] {
        let r = nn(INFRA, route);
        let addr = gateway_and_http_routes_must_be_accepted(
            ctx,
            &GatewayRef::with_listeners(gw.clone(), &[listener]),
            std::slice::from_ref(&r),
        )
        .await?;
        route_must_have_condition(
            ctx,
            "HTTPRoute",
            &r,
            &gw,
            cond("ResolvedRefs", "True", "ResolvedRefs"),
        )
        .await?;
        addrs.push(addr);
    }
    for c in [
        case("foo.com", "/").to(V1, INFRA),
        case("foo.com:8080", "/").to(V2, INFRA),
        case("bar.com:8080", "/").to(V2, INFRA),
        case("foo.com:8090", "/").to(V3, INFRA),
        case("bar.com:8090", "/").code(404),
    ] {
        let addr = match c.request.host.split_once(':').map(|(_, p)| p) {
            Some("8080") => &addrs[1],
            Some("8090") => &addrs[2],
            _ => &addrs[0],
        };
        expect_response(ctx, addr, &c).await?;
    }
    Ok(())
});

async fn not_matching_parent(
    ctx: &Ctx,
    route: &Nn,
    gw: &Nn,
    check_resolved: bool,
) -> anyhow::Result<()> {
    if check_resolved {
        route_must_have_condition(
            ctx,
            "HTTPRoute",
            route,
            gw,
            cond("ResolvedRefs", "True", "ResolvedRefs"),
        )
        .await?;
    }
    route_must_have_condition(
        ctx,
        "HTTPRoute",
        route,
        gw,
        cond("Accepted", "False", "NoMatchingParent"),
    )
    .await?;
    route_must_have_no_accepted_parents(ctx, "HTTPRoute", route).await?;
    gateway_must_have_zero_routes(ctx, gw).await
}

test_fn!(
    httproute_invalid_parentref_not_matching_listener_port,
    |ctx| {
        not_matching_parent(
            ctx,
            &nn(INFRA, "httproute-listener-not-matching-route-port"),
            &nn(INFRA, "same-namespace"),
            true,
        )
        .await
    }
);

test_fn!(
    httproute_invalid_parentref_section_name_not_matching_port,
    |ctx| {
        not_matching_parent(
            ctx,
            &nn(INFRA, "httproute-listener-section-name-not-matching-port"),
            &nn(
                INFRA,
                "gateway-with-one-not-matching-port-and-section-name-route",
            ),
            false,
        )
        .await
    }
);
