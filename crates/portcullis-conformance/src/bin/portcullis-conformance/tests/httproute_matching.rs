//! HTTPRoute matching tests (paths, headers, hostnames, precedence, gateways).

use super::{INFRA, WEB};
use crate::helpers::*;
use crate::http::{case, expect_response, expect_responses};
use crate::status::{ExpParent, GatewayRef, Nn, cond, listener, nn};
use crate::suite::{BoxFut, Ctx};

const V1: &str = "infra-backend-v1";
const V2: &str = "infra-backend-v2";
const V3: &str = "infra-backend-v3";

async fn accepted_and_resolved(ctx: &Ctx, gw: &Nn, routes: &[Nn]) -> anyhow::Result<String> {
    let addr =
        gateway_and_http_routes_must_be_accepted(ctx, &GatewayRef::new(gw.clone()), routes).await?;
    for r in routes {
        route_must_have_condition(
            ctx,
            "HTTPRoute",
            r,
            gw,
            cond("ResolvedRefs", "True", "ResolvedRefs"),
        )
        .await?;
    }
    Ok(addr)
}

test_fn!(httproute_simple_same_namespace, |ctx| {
    let gw = nn(INFRA, "same-namespace");
    let addr =
        accepted_and_resolved(ctx, &gw, &[nn(INFRA, "gateway-conformance-infra-test")]).await?;
    expect_response(ctx, &addr, &case("", "/").code(200).to(V1, INFRA)).await
});

test_fn!(httproute_cross_namespace, |ctx| {
    let gw = nn(INFRA, "backend-namespaces");
    let addr = accepted_and_resolved(ctx, &gw, &[nn(WEB, "cross-namespace")]).await?;
    expect_response(ctx, &addr, &case("", "/").code(200).to("web-backend", WEB)).await
});

test_fn!(httproute_exact_path_matching, |ctx| {
    let gw = nn(INFRA, "same-namespace");
    let addr = accepted_and_resolved(ctx, &gw, &[nn(INFRA, "exact-matching")]).await?;
    expect_responses(
        ctx,
        &addr,
        &[
            case("", "/one").to(V1, INFRA),
            case("", "/two").to(V2, INFRA),
            case("", "/").code(404),
            case("", "/one/example").code(404),
            case("", "/two/").code(404),
            case("", "/Two").code(404),
        ],
    )
    .await
});

test_fn!(httproute_header_matching, |ctx| {
    let gw = nn(INFRA, "same-namespace");
    let addr = accepted_and_resolved(ctx, &gw, &[nn(INFRA, "header-matching")]).await?;
    expect_responses(
        ctx,
        &addr,
        &[
            case("", "/").header("Version", "one").to(V1, INFRA),
            case("", "/").header("Version", "two").to(V2, INFRA),
            case("", "/")
                .header("Version", "two")
                .header("Color", "orange")
                .to(V1, INFRA),
            case("", "/")
                .header("Version", "two")
                .header("Color", "blue")
                .to(V2, INFRA),
            case("", "/").header("Color", "orange").code(404),
            case("", "/").header("Some-Other-Header", "one").code(404),
            case("", "/").header("Color", "blue").to(V1, INFRA),
            case("", "/").header("Color", "green").to(V1, INFRA),
            case("", "/").header("Color", "red").to(V2, INFRA),
            case("", "/").header("Color", "yellow").to(V2, INFRA),
            case("", "/").header("Color", "purple").code(404),
        ],
    )
    .await
});

test_fn!(httproute_hostname_intersection, |ctx| {
    let gw = nn(INFRA, "httproute-hostname-intersection");
    namespaces_must_be_ready(ctx, &[INFRA]).await?;
    let routes = [
        nn(INFRA, "specific-host-matches-listener-specific-host"),
        nn(INFRA, "specific-host-matches-listener-wildcard-host"),
        nn(INFRA, "wildcard-host-matches-listener-specific-host"),
        nn(INFRA, "wildcard-host-matches-listener-wildcard-host"),
    ];
    let addr = accepted_and_resolved(ctx, &gw, &routes).await?;
    expect_responses(
        ctx,
        &addr,
        &[
            case("very.specific.com", "/s1").to(V1, INFRA),
            case("very.specific.com:1234", "/s1").to(V1, INFRA),
            case("non.matching.com", "/s1").code(404),
            case("foo.nonmatchingwildcard.io", "/s1").code(404),
            case("foo.wildcard.io", "/s1").code(404),
            case("very.specific.com", "/non-matching-prefix").code(404),
            case("foo.wildcard.io", "/s2").to(V2, INFRA),
            case("bar.wildcard.io", "/s2").to(V2, INFRA),
            case("foo.bar.wildcard.io", "/s2").to(V2, INFRA),
            case("non.matching.com", "/s2").code(404),
            case("wildcard.io", "/s2").code(404),
            case("very.specific.com", "/s2").code(404),
            case("foo.wildcard.io", "/non-matching-prefix").code(404),
            case("very.specific.com", "/s3").to(V3, INFRA),
            case("non.matching.com", "/s3").code(404),
            case("foo.specific.com", "/s3").code(404),
            case("foo.wildcard.io", "/s3").code(404),
            case("very.specific.com", "/non-matching-prefix").code(404),
            case("foo.anotherwildcard.io", "/s4").to(V1, INFRA),
            case("bar.anotherwildcard.io", "/s4").to(V1, INFRA),
            case("foo.bar.anotherwildcard.io", "/s4").to(V1, INFRA),
            case("anotherwildcard.io", "/s4").code(404),
            case("foo.wildcard.io", "/s4").code(404),
            case("very.specific.com", "/s4").code(404),
            case("foo.anotherwildcard.io", "/non-matching-prefix").code(404),
        ],
    )
    .await?;

    // Routes that do not intersect with listener hostnames.
    let addr =
        gateway_and_http_routes_must_be_accepted(ctx, &GatewayRef::new(gw.clone()), &[]).await?;
    let route = nn(INFRA, "no-intersecting-hosts");
    let mut parent = ExpParent::gateway(
        ctx,
        &gw,
        None,
        vec![cond("Accepted", "False", "NoMatchingListenerHostname")],
    );
    parent.section_name = None;
    route_must_have_parents(ctx, "HTTPRoute", &route, vec![parent], true).await?;
    expect_responses(
        ctx,
        &addr,
        &[
            case("specific.but.wrong.com", "/s5").code(404),
            case("wildcard.io", "/s5").code(404),
        ],
    )
    .await?;

    // AttachedRoutes only counts Accepted routes.
    let ok = |name: &str, attached| {
        listener(
            name,
            &["HTTPRoute"],
            vec![
                cond("Accepted", "True", ""),
                cond("ResolvedRefs", "True", ""),
            ],
            attached,
        )
    };
    gateway_status_must_have_listeners(
        ctx,
        &gw,
        vec![
            ok("listener-1", 2),
            ok("listener-2", 1),
            ok("listener-3", 1),
        ],
    )
    .await?;

    // Routes intersecting with an unspecified-hostname listener.
    let gw = nn(INFRA, "httproute-hostname-intersection-all");
    let addr = accepted_and_resolved(
        ctx,
        &gw,
        &[nn(INFRA, "httproute-hostname-intersection-all")],
    )
    .await?;
    expect_responses(
        ctx,
        &addr,
        &[
            case("first.com", "/").to(V2, INFRA),
            case("sub.first.com", "/").to(V2, INFRA),
            case("second.com", "/").to(V2, INFRA),
            case("sub.second.com", "/").to(V2, INFRA),
            case("third.com", "/").ns(INFRA).code(404),
            case("sub.third.com", "/").ns(INFRA).code(404),
        ],
    )
    .await
});

test_fn!(httproute_listener_hostname_matching, |ctx| {
    namespaces_must_be_ready(ctx, &[INFRA]).await?;
    let gw = nn(INFRA, "httproute-listener-hostname-matching");
    for (listeners, route) in [
        (&["listener-1"][..], "backend-v1"),
        (&["listener-2"][..], "backend-v2"),
    ] {
        let r = nn(INFRA, route);
        gateway_and_http_routes_must_be_accepted(
            ctx,
            &GatewayRef::with_listeners(gw.clone(), listeners),
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
    }
    let r = nn(INFRA, "backend-v3");
    let addr = gateway_and_http_routes_must_be_accepted(
        ctx,
        &GatewayRef::with_listeners(gw.clone(), &["listener-3", "listener-4"]),
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
    expect_responses(
        ctx,
        &addr,
        &[
            case("bar.com", "/").to(V1, INFRA),
            case("foo.bar.com", "/").to(V2, INFRA),
            case("baz.bar.com", "/").to(V3, INFRA),
            case("boo.bar.com", "/").to(V3, INFRA),
            case("multiple.prefixes.bar.com", "/").to(V3, INFRA),
            case("multiple.prefixes.foo.com", "/").to(V3, INFRA),
            case("foo.com", "/").code(404),
            case("no.matching.host", "/").code(404),
        ],
    )
    .await
});

test_fn!(httproute_matching, |ctx| {
    let gw = nn(INFRA, "same-namespace");
    let addr = accepted_and_resolved(ctx, &gw, &[nn(INFRA, "matching")]).await?;
    expect_responses(
        ctx,
        &addr,
        &[
            case("", "/").to(V1, INFRA),
            case("", "/example").to(V1, INFRA),
            case("", "/").header("Version", "one").to(V1, INFRA),
            case("", "/v2").to(V2, INFRA),
            case("", "/v2/example").to(V2, INFRA),
            case("", "/").header("Version", "two").to(V2, INFRA),
            case("", "/v2/").to(V2, INFRA),
            case("", "/v2example").to(V1, INFRA),
            case("", "/foo/v2/example").to(V1, INFRA),
        ],
    )
    .await
});

test_fn!(httproute_matching_across_routes, |ctx| {
    let gw = nn(INFRA, "same-namespace");
    let addr = accepted_and_resolved(
        ctx,
        &gw,
        &[nn(INFRA, "matching-part1"), nn(INFRA, "matching-part2")],
    )
    .await?;
    expect_responses(
        ctx,
        &addr,
        &[
            case("example.com", "/").to(V1, INFRA),
            case("example.com", "/example").to(V1, INFRA),
            case("example.net", "/example").to(V1, INFRA),
            case("example.com", "/example")
                .header("Version", "one")
                .to(V1, INFRA),
            case("example.com", "/v2").to(V2, INFRA),
            case("example.net", "/v2").to(V1, INFRA),
            case("example.com", "/v2/example").to(V2, INFRA),
            case("example.com", "/")
                .header("Version", "two")
                .to(V2, INFRA),
        ],
    )
    .await
});

test_fn!(httproute_path_match_order, |ctx| {
    let gw = nn(INFRA, "same-namespace");
    let addr = accepted_and_resolved(ctx, &gw, &[nn(INFRA, "path-matching-order")]).await?;
    expect_responses(
        ctx,
        &addr,
        &[
            case("", "/match/exact/one").to(V3, INFRA),
            case("", "/match/exact").to(V2, INFRA),
            case("", "/match").to(V1, INFRA),
            case("", "/match/prefix/one/any").to(V2, INFRA),
            case("", "/match/prefix/any").to(V1, INFRA),
            case("", "/match/any").to(V3, INFRA),
        ],
    )
    .await
});

test_fn!(httproute_multiple_gateways, |ctx| {
    for (gw, dedicated, backend) in [
        ("same-namespace", "same-namespace-dedicated-route", V2),
        ("all-namespaces", "all-namespaces-dedicated-route", V3),
    ] {
        let gw = nn(INFRA, gw);
        let routes = [
            nn(INFRA, "multiple-gateways-shared-route"),
            nn(INFRA, dedicated),
        ];
        let addr =
            gateway_and_http_routes_must_be_accepted(ctx, &GatewayRef::new(gw), &routes).await?;
        expect_response(ctx, &addr, &case("", "/shared").code(200).to(V1, INFRA)).await?;
        expect_response(ctx, &addr, &case("", "/").code(200).to(backend, INFRA)).await?;
    }
    Ok(())
});
