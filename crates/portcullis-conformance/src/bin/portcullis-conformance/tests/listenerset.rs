//! ListenerSet tests (upstream tests/listenerset-*.go).

use super::INFRA;
use crate::helpers::*;
use crate::http::{case, expect_response, expect_responses};
use crate::status::{Cond, ExpParent, GatewayRef, cond, listener, nn};
use crate::suite::{BoxFut, Ctx};

fn accepted_listener() -> Vec<Cond> {
    vec![
        cond("ResolvedRefs", "True", ""),
        cond("Accepted", "True", ""),
        cond("Programmed", "True", ""),
    ]
}

async fn gateway_accepted(ctx: &Ctx, gw: &str) -> anyhow::Result<crate::status::Nn> {
    namespaces_must_be_ready(ctx, &[INFRA]).await?;
    let gw = nn(INFRA, gw);
    gateway_must_have_condition(ctx, &gw, cond("Accepted", "True", "")).await?;
    Ok(gw)
}

async fn ls_state(
    ctx: &Ctx,
    ns: &str,
    name: &str,
    status: &str,
    accepted: &str,
    programmed: &str,
) -> anyhow::Result<()> {
    let ls = nn(ns, name);
    listenerset_must_have_condition(ctx, &ls, cond("Accepted", status, accepted)).await?;
    listenerset_must_have_condition(ctx, &ls, cond("Programmed", status, programmed)).await
}

async fn not_allowed(ctx: &Ctx, ns: &str, name: &str) -> anyhow::Result<()> {
    ls_state(ctx, ns, name, "False", "NotAllowed", "NotAllowed").await
}

test_fn!(listenerset_allowed_namespace_none, |ctx| {
    let gw = gateway_accepted(ctx, "gateway-does-not-allow-listenerset").await?;
    gateway_must_have_attached_listeners(ctx, &gw, 0).await?;
    not_allowed(ctx, INFRA, "listenerset-not-allowed").await
});

test_fn!(listenerset_default_not_allowed, |ctx| {
    let gw = gateway_accepted(ctx, "gateway-default-does-not-allow-listenerset").await?;
    gateway_must_have_attached_listeners(ctx, &gw, 0).await?;
    not_allowed(ctx, INFRA, "listenerset-default-not-allowed").await
});

async fn allowed_and_not(
    ctx: &Ctx,
    gw: &str,
    (ns, name, listener): (&str, &str, &str),
    (dns, dname): (&str, &str),
) -> anyhow::Result<()> {
    let gw = gateway_accepted(ctx, gw).await?;
    gateway_must_have_attached_listeners(ctx, &gw, 1).await?;
    ls_state(ctx, ns, name, "True", "Accepted", "Programmed").await?;
    listenerset_listeners_must_have_conditions(
        ctx,
        &nn(ns, name),
        &accepted_listener(),
        &[listener],
    )
    .await?;
    not_allowed(ctx, dns, dname).await
}

test_fn!(listenerset_allowed_namespace_same, |ctx| {
    allowed_and_not(
        ctx,
        "gateway-allows-listenerset-in-same-namespace",
        (
            INFRA,
            "listenerset-in-same-namespace",
            "listenerset-in-same-namespace-listener",
        ),
        (
            "gateway-api-listenerset-not-allowed-ns",
            "listenerset-in-different-namespace",
        ),
    )
    .await
});

test_fn!(listenerset_allowed_namespace_selector, |ctx| {
    allowed_and_not(
        ctx,
        "gateway-allows-listenerset-in-selected-namespace",
        (
            "gateway-api-listenerset-selector-allowed-ns",
            "listenerset-in-selected-namespace",
            "listenerset-in-selected-namespace-listener",
        ),
        (
            "gateway-api-listenerset-selector-not-allowed-ns",
            "listenerset-not-in-selected-namespace",
        ),
    )
    .await
});

/// The shared shape of the hostname and protocol conflict tests.
async fn conflict(ctx: &Ctx, kind: &str) -> anyhow::Result<()> {
    let reason = if kind == "hostname" {
        "HostnameConflict"
    } else {
        "ProtocolConflict"
    };
    let conflicted = vec![
        cond("Accepted", "False", reason),
        cond("Programmed", "False", reason),
        cond("Conflicted", "True", reason),
    ];
    let gw = gateway_accepted(ctx, &format!("gateway-with-listenerset-{kind}-conflict")).await?;
    let with_gw = format!("{kind}-conflict-with-gateway-listener");
    let with_ls = format!("{kind}-conflict-with-listener-set-listener");
    gateway_listeners_must_have_conditions(ctx, &gw, &accepted_listener(), &["gateway-listener"])
        .await?;
    gateway_listeners_must_have_conditions(ctx, &gw, &accepted_listener(), &[&with_gw]).await?;
    gateway_must_have_attached_listeners(ctx, &gw, 2).await?;

    let ls1 = format!("listenerset-with-{kind}-conflict-with-gateway-1");
    listenerset_must_have_condition(ctx, &nn(INFRA, &ls1), cond("Accepted", "True", "")).await?;
    listenerset_must_have_condition(
        ctx,
        &nn(INFRA, &ls1),
        cond("Programmed", "True", "Programmed"),
    )
    .await?;
    listenerset_listeners_must_have_conditions(
        ctx,
        &nn(INFRA, &ls1),
        &accepted_listener(),
        &["listener-set-1-listener"],
    )
    .await?;
    listenerset_listeners_must_have_conditions(ctx, &nn(INFRA, &ls1), &conflicted, &[&with_gw])
        .await?;
    listenerset_listeners_must_have_conditions(
        ctx,
        &nn(INFRA, &ls1),
        &accepted_listener(),
        &[&with_ls],
    )
    .await?;

    let ls2 = format!("listenerset-with-{kind}-conflict-with-gateway-2");
    ls_state(
        ctx,
        INFRA,
        &ls2,
        "False",
        "ListenersNotValid",
        "ListenersNotValid",
    )
    .await?;
    listenerset_listeners_must_have_conditions(ctx, &nn(INFRA, &ls2), &conflicted, &[&with_gw])
        .await?;

    let ls3 = format!("listenerset-with-{kind}-conflict-with-listener-set-1");
    listenerset_must_have_condition(ctx, &nn(INFRA, &ls3), cond("Accepted", "True", "")).await?;
    listenerset_must_have_condition(
        ctx,
        &nn(INFRA, &ls3),
        cond("Programmed", "True", "Programmed"),
    )
    .await?;
    listenerset_listeners_must_have_conditions(
        ctx,
        &nn(INFRA, &ls3),
        &accepted_listener(),
        &["listener-set-2-listener"],
    )
    .await?;
    listenerset_listeners_must_have_conditions(ctx, &nn(INFRA, &ls3), &conflicted, &[&with_ls])
        .await?;

    let ls4 = format!("listenerset-with-{kind}-conflict-with-listener-set-2");
    ls_state(
        ctx,
        INFRA,
        &ls4,
        "False",
        "ListenersNotValid",
        "ListenersNotValid",
    )
    .await?;
    listenerset_listeners_must_have_conditions(ctx, &nn(INFRA, &ls4), &conflicted, &[&with_ls])
        .await
}

test_fn!(listenerset_hostname_conflict, |ctx| {
    conflict(ctx, "hostname").await
});

test_fn!(listenerset_protocol_conflict, |ctx| {
    conflict(ctx, "protocol").await
});

test_fn!(listenerset_reference_grant, |ctx| {
    gateway_accepted(ctx, "gateway-with-listener-sets-test-reference-grant").await?;
    let ls = nn(INFRA, "listenerset-with-reference-grant");
    listenerset_must_have_condition(ctx, &ls, cond("Accepted", "True", "")).await?;
    listenerset_must_have_condition(ctx, &ls, cond("Programmed", "True", "")).await?;
    listenerset_listeners_must_have_conditions(
        ctx,
        &ls,
        &[cond("ResolvedRefs", "True", "")],
        &["listenerset-with-reference-grant-listener"],
    )
    .await?;
    let ns = "gateway-api-listener-sets-test-reference-grant-ns";
    ls_state(
        ctx,
        ns,
        "listenerset-without-reference-grant",
        "False",
        "ListenersNotValid",
        "ListenersNotValid",
    )
    .await?;
    listenerset_listeners_must_have_conditions(
        ctx,
        &nn(ns, "listenerset-without-reference-grant"),
        &[cond("ResolvedRefs", "False", "RefNotPermitted")],
        &["listenerset-without-reference-grant-listener"],
    )
    .await
});

test_fn!(listenerset_allowed_routes_supported_kinds, |ctx| {
    gateway_accepted(ctx, "gateway-with-listener-sets-test-supported-route-kinds").await?;
    listenerset_listeners_must_have_conditions(
        ctx,
        &nn(INFRA, "listenerset-test-allowed-routes-supported-kinds"),
        &[cond("ResolvedRefs", "False", "InvalidRouteKinds")],
        &["listener-set-listener-allowed-routes-tls-only"],
    )
    .await
});

test_fn!(listenerset_gateway_parent_section_name_not_found, |ctx| {
    namespaces_must_be_ready(ctx, &[INFRA]).await?;
    let gw = nn(INFRA, "gateway-section-name");
    let addr = wait_for_gateway_address(
        ctx,
        &GatewayRef::with_listeners(gw.clone(), &["gw-listener"]),
    )
    .await?;
    gateway_must_have_condition(ctx, &gw, cond("Accepted", "True", "")).await?;
    gateway_must_have_attached_listeners(ctx, &gw, 1).await?;
    routes_and_listenerset_must_be_accepted(
        ctx,
        "HTTPRoute",
        &nn(INFRA, "listenerset-section-name"),
        &[nn(INFRA, "route-via-listenerset")],
    )
    .await?;
    route_must_have_condition(
        ctx,
        "HTTPRoute",
        &nn(INFRA, "route-via-gateway"),
        &gw,
        cond("Accepted", "False", "NoMatchingParent"),
    )
    .await?;
    expect_response(
        ctx,
        &addr,
        &case("ls-section-name.com", "/goodsection").to("infra-backend-v1", INFRA),
    )
    .await?;
    expect_response(ctx, &addr, &case("gw-section.com", "/badsection").code(404)).await
});

fn ls_parent(ctx: &Ctx, kind: &str, name: &str) -> ExpParent {
    ExpParent {
        group: Some(crate::status::GROUP.into()),
        kind: Some(kind.into()),
        name: name.into(),
        namespace: Some(INFRA.into()),
        section_name: None,
        controller_name: ctx.controller_name.clone(),
        conditions: vec![cond("Accepted", "True", "")],
    }
}

test_fn!(listenerset_route_status_scoped_to_parentref, |ctx| {
    let gw = gateway_accepted(ctx, "gateway-parentref").await?;
    gateway_must_have_attached_listeners(ctx, &gw, 1).await?;
    let ls = nn(INFRA, "listenerset-parentref");
    listenerset_status_must_have_listeners(
        ctx,
        &ls,
        vec![listener(
            "listenerset-parentref-listener",
            &["HTTPRoute"],
            accepted_listener(),
            1,
        )],
    )
    .await?;
    let gw_only = nn(INFRA, "route-parentref-gwonly");
    route_must_have_condition(
        ctx,
        "HTTPRoute",
        &gw_only,
        &gw,
        cond("Accepted", "True", ""),
    )
    .await?;
    route_must_have_parents(
        ctx,
        "HTTPRoute",
        &gw_only,
        vec![ls_parent(ctx, "Gateway", "gateway-parentref")],
        true,
    )
    .await?;
    let ls_only = nn(INFRA, "route-parentref-lsonly");
    routes_and_listenerset_must_be_accepted(ctx, "HTTPRoute", &ls, std::slice::from_ref(&ls_only))
        .await?;
    route_must_have_parents(
        ctx,
        "HTTPRoute",
        &ls_only,
        vec![ls_parent(ctx, "ListenerSet", "listenerset-parentref")],
        true,
    )
    .await
});

test_fn!(listenerset_dual_parentref_independence, |ctx| {
    namespaces_must_be_ready(ctx, &[INFRA]).await?;
    let gw = nn(INFRA, "gateway-dual-parentref");
    let addr = wait_for_gateway_address(
        ctx,
        &GatewayRef::with_listeners(gw.clone(), &["gw-dual-parentref-listener"]),
    )
    .await?;
    gateway_must_have_condition(ctx, &gw, cond("Accepted", "True", "")).await?;
    gateway_must_have_attached_listeners(ctx, &gw, 1).await?;
    let ls = nn(INFRA, "ls-dual-parentref");
    listenerset_status_must_have_listeners(
        ctx,
        &ls,
        vec![listener(
            "ls-dual-parentref-listener",
            &["HTTPRoute"],
            accepted_listener(),
            2,
        )],
    )
    .await?;
    let both = nn(INFRA, "route-dual-parentref-both");
    route_must_have_condition(ctx, "HTTPRoute", &both, &gw, cond("Accepted", "True", "")).await?;
    route_must_have_condition(ctx, "HTTPRoute", &both, &ls, cond("Accepted", "True", "")).await?;
    expect_response(
        ctx,
        &addr,
        &case("gw-dual.com", "/dualboth").to("infra-backend-v1", INFRA),
    )
    .await?;
    expect_response(
        ctx,
        &addr,
        &case("ls-dual.com", "/dualboth").to("infra-backend-v1", INFRA),
    )
    .await?;
    let one = nn(INFRA, "route-dual-parentref-one");
    route_must_have_condition(
        ctx,
        "HTTPRoute",
        &one,
        &gw,
        cond("Accepted", "False", "NoMatchingParent"),
    )
    .await?;
    route_must_have_condition(ctx, "HTTPRoute", &one, &ls, cond("Accepted", "True", "")).await?;
    routes_and_listenerset_must_be_accepted(ctx, "HTTPRoute", &ls, std::slice::from_ref(&one))
        .await?;
    expect_response(
        ctx,
        &addr,
        &case("ls-dual.com", "/dualone").to("infra-backend-v2", INFRA),
    )
    .await?;
    expect_response(ctx, &addr, &case("gw-dual.com", "/dualone").code(404)).await
});

const V1: &str = "infra-backend-v1";
const V2: &str = "infra-backend-v2";
const V3: &str = "infra-backend-v3";

test_fn!(listenerset_allowed_routes_namespaces, |ctx| {
    namespaces_must_be_ready(ctx, &[INFRA]).await?;
    let gw = nn(INFRA, "gateway-with-listener-sets-test-allowed-routes");
    let addr = wait_for_gateway_address(
        ctx,
        &GatewayRef::with_listeners(gw.clone(), &["gateway-listener"]),
    )
    .await?;
    gateway_must_have_condition(ctx, &gw, cond("Accepted", "True", "")).await?;
    gateway_must_have_attached_listeners(ctx, &gw, 2).await?;

    let ls = nn(INFRA, "listenerset-test-allowed-routes-namespaces");
    let routes = [
        nn(INFRA, "route-in-same-namespace"),
        nn(
            "gateway-api-routes-allowed-ns",
            "route-in-selected-namespace",
        ),
        nn(
            "gateway-api-routes-not-allowed-ns",
            "route-not-in-selected-namespace",
        ),
    ];
    routes_and_listenerset_must_be_accepted(ctx, "HTTPRoute", &ls, &routes).await?;
    listenerset_status_must_have_listeners(
        ctx,
        &ls,
        vec![
            listener(
                "listener-set-listener-allowed-routes-all",
                &["HTTPRoute"],
                accepted_listener(),
                3,
            ),
            listener(
                "listener-set-listener-allowed-routes-same",
                &["HTTPRoute"],
                accepted_listener(),
                1,
            ),
            listener(
                "listener-set-listener-allowed-routes-selector",
                &["HTTPRoute"],
                accepted_listener(),
                1,
            ),
        ],
    )
    .await?;
    let all = "listener-set-listener-allowed-routes-all.com";
    let same = "listener-set-listener-allowed-routes-same.com";
    let selector = "listener-set-listener-allowed-routes-selector.com";
    expect_responses(
        ctx,
        &addr,
        &[
            case(all, "/route-in-same-namespace").to(V1, INFRA),
            case(all, "/route-in-selected-namespace").to(V2, INFRA),
            case(all, "/route-not-in-selected-namespace").to(V3, INFRA),
            case(same, "/route-in-same-namespace").to(V1, INFRA),
            case(same, "/route-in-selected-namespace").code(404),
            case(same, "/route-not-in-selected-namespace").code(404),
            case(selector, "/route-in-same-namespace").code(404),
            case(selector, "/route-in-selected-namespace").to(V2, INFRA),
            case(selector, "/route-not-in-selected-namespace").code(404),
        ],
    )
    .await?;

    let ls_ns = "gateway-api-ls-cross-ns";
    let ls = nn(ls_ns, "listenerset-test-allowed-routes-cross-ns");
    routes_and_listenerset_must_be_accepted(
        ctx,
        "HTTPRoute",
        &ls,
        &[nn(ls_ns, "route-in-listenerset-namespace")],
    )
    .await?;
    route_must_have_condition(
        ctx,
        "HTTPRoute",
        &nn(INFRA, "route-in-gateway-namespace"),
        &ls,
        cond("Accepted", "False", "NotAllowedByListeners"),
    )
    .await?;
    listenerset_status_must_have_listeners(
        ctx,
        &ls,
        vec![listener(
            "listener-set-listener-allowed-routes-cross-ns-same",
            &["HTTPRoute"],
            accepted_listener(),
            1,
        )],
    )
    .await?;
    let host = "listener-set-listener-allowed-routes-cross-ns-same.com";
    expect_responses(
        ctx,
        &addr,
        &[
            case(host, "/route-in-listenerset-namespace").to(V1, INFRA),
            case(host, "/route-in-gateway-namespace").code(404),
        ],
    )
    .await
});

test_fn!(listenerset_http_routing, |ctx| {
    namespaces_must_be_ready(ctx, &[INFRA]).await?;
    let gw = nn(INFRA, "gateway-with-listener-sets-http-routing");
    let gw_routes = [
        nn(INFRA, "attaches-to-all-listeners"),
        nn(INFRA, "gateway-route"),
        nn(INFRA, "gateway-section-route"),
    ];
    let addr = gateway_and_http_routes_must_be_accepted(
        ctx,
        &GatewayRef::with_listeners(gw.clone(), &["gateway-listener"]),
        &gw_routes,
    )
    .await?;
    gateway_must_have_attached_listeners(ctx, &gw, 2).await?;
    let ls1 = nn(INFRA, "listener-set-http-routing-1");
    routes_and_listenerset_must_be_accepted(
        ctx,
        "HTTPRoute",
        &ls1,
        &[
            nn(INFRA, "attaches-to-all-listeners"),
            nn(INFRA, "listener-set-http-routing-1-route"),
            nn(INFRA, "listener-set-http-routing-1-section-route"),
        ],
    )
    .await?;
    listenerset_status_must_have_listeners(
        ctx,
        &ls1,
        vec![
            listener(
                "listener-set-http-routing-1-listener-1",
                &["HTTPRoute"],
                accepted_listener(),
                3,
            ),
            listener(
                "listener-set-http-routing-1-listener-2",
                &["HTTPRoute"],
                accepted_listener(),
                2,
            ),
        ],
    )
    .await?;
    let ls2 = nn(INFRA, "listener-set-http-routing-2");
    routes_and_listenerset_must_be_accepted(
        ctx,
        "HTTPRoute",
        &ls2,
        &[
            nn(INFRA, "attaches-to-all-listeners"),
            nn(INFRA, "listener-set-http-routing-2-route"),
        ],
    )
    .await?;
    listenerset_status_must_have_listeners(
        ctx,
        &ls2,
        vec![
            listener(
                "listener-set-http-routing-2-listener-1",
                &["HTTPRoute"],
                accepted_listener(),
                2,
            ),
            listener(
                "listener-set-http-routing-2-listener-2",
                &["HTTPRoute"],
                accepted_listener(),
                2,
            ),
        ],
    )
    .await?;
    expect_responses(
        ctx,
        &addr,
        &[
            case("gateway-listener-1.com", "/route").to(V1, INFRA),
            case("gateway-listener-2.com", "/route").to(V1, INFRA),
            case("listener-set-http-routing-1-listener-1.com", "/route").to(V1, INFRA),
            case("listener-set-http-routing-1-listener-2.com", "/route").to(V1, INFRA),
            case("listener-set-http-routing-2-listener-1.com", "/route").to(V1, INFRA),
            case("listener-set-http-routing-2-listener-2.com", "/route").to(V1, INFRA),
            case("gateway-listener-1.com", "/gateway-route").to(V2, INFRA),
            case("gateway-listener-2.com", "/gateway-route").to(V2, INFRA),
            case(
                "listener-set-http-routing-1-listener-1.com",
                "/gateway-route",
            )
            .code(404),
            case(
                "listener-set-http-routing-1-listener-2.com",
                "/gateway-route",
            )
            .code(404),
            case(
                "listener-set-http-routing-2-listener-1.com",
                "/gateway-route",
            )
            .code(404),
            case(
                "listener-set-http-routing-2-listener-2.com",
                "/gateway-route",
            )
            .code(404),
            case("gateway-listener-1.com", "/gateway-section-route").to(V3, INFRA),
            case("gateway-listener-2.com", "/gateway-section-route").code(404),
            case(
                "listener-set-http-routing-1-listener-1.com",
                "/gateway-section-route",
            )
            .code(404),
            case(
                "listener-set-http-routing-1-listener-2.com",
                "/gateway-section-route",
            )
            .code(404),
            case(
                "listener-set-http-routing-2-listener-1.com",
                "/gateway-section-route",
            )
            .code(404),
            case(
                "listener-set-http-routing-2-listener-2.com",
                "/gateway-section-route",
            )
            .code(404),
            case(
                "gateway-listener-1.com",
                "/listener-set-http-routing-1-route",
            )
            .code(404),
            case(
                "gateway-listener-2.com",
                "/listener-set-http-routing-1-route",
            )
            .code(404),
            case(
                "listener-set-http-routing-1-listener-1.com",
                "/listener-set-http-routing-1-route",
            )
            .to(V2, INFRA),
            case(
                "listener-set-http-routing-1-listener-2.com",
                "/listener-set-http-routing-1-route",
            )
            .to(V2, INFRA),
            case(
                "listener-set-http-routing-2-listener-1.com",
                "/listener-set-http-routing-1-route",
            )
            .code(404),
            case(
                "listener-set-http-routing-2-listener-2.com",
                "/listener-set-http-routing-1-route",
            )
            .code(404),
            case(
                "gateway-listener-1.com",
                "/listener-set-http-routing-1-section-route",
            )
            .code(404),
            case(
                "gateway-listener-2.com",
                "/listener-set-http-routing-1-section-route",
            )
            .code(404),
            case(
                "listener-set-http-routing-1-listener-1.com",
                "/listener-set-http-routing-1-section-route",
            )
            .to(V3, INFRA),
            case(
                "listener-set-http-routing-1-listener-2.com",
                "/listener-set-http-routing-1-section-route",
            )
            .code(404),
            case(
                "listener-set-http-routing-2-listener-1.com",
                "/listener-set-http-routing-1-section-route",
            )
            .code(404),
            case(
                "listener-set-http-routing-2-listener-2.com",
                "/listener-set-http-routing-1-section-route",
            )
            .code(404),
            case(
                "gateway-listener-1.com",
                "/listener-set-http-routing-2-route",
            )
            .code(404),
            case(
                "gateway-listener-2.com",
                "/listener-set-http-routing-2-route",
            )
            .code(404),
            case(
                "listener-set-http-routing-1-listener-1.com",
                "/listener-set-http-routing-2-route",
            )
            .code(404),
            case(
                "listener-set-http-routing-1-listener-2.com",
                "/listener-set-http-routing-2-route",
            )
            .code(404),
            case(
                "listener-set-http-routing-2-listener-1.com",
                "/listener-set-http-routing-2-route",
            )
            .to(V2, INFRA),
            case(
                "listener-set-http-routing-2-listener-2.com",
                "/listener-set-http-routing-2-route",
            )
            .to(V2, INFRA),
        ],
    )
    .await
});
