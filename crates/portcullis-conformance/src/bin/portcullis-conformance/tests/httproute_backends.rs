//! HTTPRoute backend tests: references, grants, invalid backends, service
//! types, weights, HTTPS listener, request header modifier.

use std::collections::BTreeMap;

use anyhow::{anyhow, bail};
use serde_json::json;

use super::{APP, INFRA, WEB};
use crate::helpers::*;
use crate::http::{
    case, compare_round_trip, expect_response, expect_responses, expect_tls_response, make_request,
};
use crate::roundtrip::capture_round_trip;
use crate::status::{GatewayRef, Nn, cond, nn};
use crate::suite::{BoxFut, Ctx};

const V1: &str = "infra-backend-v1";
const V2: &str = "infra-backend-v2";
const V3: &str = "infra-backend-v3";

async fn accepted(ctx: &Ctx, gw: &Nn, route: &Nn) -> anyhow::Result<String> {
    gateway_and_http_routes_must_be_accepted(
        ctx,
        &GatewayRef::new(gw.clone()),
        std::slice::from_ref(route),
    )
    .await
}

async fn resolved(ctx: &Ctx, gw: &Nn, route: &Nn) -> anyhow::Result<()> {
    route_must_have_condition(
        ctx,
        "HTTPRoute",
        route,
        gw,
        cond("ResolvedRefs", "True", "ResolvedRefs"),
    )
    .await
}

test_fn!(httproute_reference_grant, |ctx| {
    let gw = nn(INFRA, "same-namespace");
    let route = nn(INFRA, "reference-grant");
    let addr = accepted(ctx, &gw, &route).await?;
    resolved(ctx, &gw, &route).await?;
    expect_response(
        ctx,
        &addr,
        &case("", "/").method("GET").code(200).to("web-backend", WEB),
    )
    .await?;
    ctx.delete("ReferenceGrant", &nn(WEB, "reference-grant"))?;
    expect_response(ctx, &addr, &case("", "/").method("GET").code(500)).await
});

async fn invalid_backend(
    ctx: &mut Ctx,
    route: &str,
    reason: &str,
    path: &str,
) -> anyhow::Result<()> {
    let gw = nn(INFRA, "same-namespace");
    let route = nn(INFRA, route);
    let addr = accepted(ctx, &gw, &route).await?;
    route_must_have_condition(
        ctx,
        "HTTPRoute",
        &route,
        &gw,
        cond("ResolvedRefs", "False", reason),
    )
    .await?;
    expect_response(ctx, &addr, &case("", path).method("GET").code(500)).await
}

test_fn!(httproute_invalid_backendref_unknown_kind, |ctx| {
    invalid_backend(
        ctx,
        "invalid-backend-ref-unknown-kind",
        "InvalidKind",
        "/v2",
    )
    .await
});

test_fn!(httproute_invalid_cross_namespace_backend_ref, |ctx| {
    invalid_backend(
        ctx,
        "invalid-cross-namespace-backend-ref",
        "RefNotPermitted",
        "/",
    )
    .await
});

test_fn!(httproute_invalid_nonexistent_backendref, |ctx| {
    invalid_backend(
        ctx,
        "invalid-nonexistent-backend-ref",
        "BackendNotFound",
        "/",
    )
    .await
});

test_fn!(httproute_invalid_reference_grant, |ctx| {
    let gw = nn(INFRA, "same-namespace");
    let route = nn(INFRA, "reference-grant");
    let addr = accepted(ctx, &gw, &route).await?;
    route_must_have_condition(
        ctx,
        "HTTPRoute",
        &route,
        &gw,
        cond("ResolvedRefs", "False", "RefNotPermitted"),
    )
    .await?;
    expect_response(
        ctx,
        &addr,
        &case("", "/").method("GET").code(500).to("web-backend", WEB),
    )
    .await
});

test_fn!(httproute_no_backend_refs, |ctx| {
    let gw = nn(INFRA, "same-namespace");
    let route = nn(INFRA, "omitted-backendrefs");
    let addr = accepted(ctx, &gw, &route).await?;
    resolved(ctx, &gw, &route).await?;
    expect_responses(
        ctx,
        &addr,
        &[
            case("", "/forward").to(V1, INFRA),
            case("", "/omitted-no-forward").code(500),
            case("", "/empty-no-forward").code(500),
        ],
    )
    .await
});

test_fn!(
    httproute_partially_invalid_via_invalid_reference_grant,
    |ctx| {
        let gw = nn(INFRA, "same-namespace");
        let route = nn(INFRA, "invalid-reference-grant");
        let addr = accepted(ctx, &gw, &route).await?;
        route_must_have_condition(
            ctx,
            "HTTPRoute",
            &route,
            &gw,
            cond("ResolvedRefs", "False", "RefNotPermitted"),
        )
        .await?;
        expect_response(ctx, &addr, &case("", "/v2").method("GET").code(500)).await?;
        expect_response(
            ctx,
            &addr,
            &case("", "/")
                .method("GET")
                .code(200)
                .to("app-backend-v1", APP),
        )
        .await
    }
);

test_fn!(httproute_redirect_host_and_status, |ctx| {
    let gw = nn(INFRA, "same-namespace");
    let route = nn(INFRA, "redirect-host-and-status");
    let addr = accepted(ctx, &gw, &route).await?;
    resolved(ctx, &gw, &route).await?;
    expect_responses(
        ctx,
        &addr,
        &[
            case("", "/hostname-redirect")
                .unfollow()
                .code(302)
                .redirect("", "example.org", "", "")
                .ns(INFRA),
            case("", "/host-and-status")
                .unfollow()
                .code(301)
                .redirect("", "example.org", "", "")
                .ns(INFRA),
        ],
    )
    .await
});

test_fn!(httproute_service_types, |ctx| {
    let gw = nn(INFRA, "same-namespace");
    let route = nn(INFRA, "service-types");
    let addr = accepted(ctx, &gw, &route).await?;
    resolved(ctx, &gw, &route).await?;
    // What the upstream test does with the API: fill the manual IPv4
    // EndpointSlices with the infra-backend-v1 pods.
    let pods = ctx.cluster.pod_endpoints(INFRA, V1);
    if pods.is_empty() {
        bail!("expected 'infra-backend-v1' to have running pods");
    }
    let endpoints: Vec<serde_json::Value> = pods
        .iter()
        .map(|(name, ip)| {
            json!({
                "addresses": [ip.to_string()],
                "conditions": {"ready": true, "serving": true, "terminating": false},
                "targetRef": {"kind": "Pod", "name": name, "namespace": INFRA},
            })
        })
        .collect();
    for prefix in ["manual-endpointslices", "headless-manual-endpointslices"] {
        ctx.patch("EndpointSlice", &nn(INFRA, &format!("{prefix}-ip4")), |d| {
            d["endpoints"] = json!(endpoints.clone());
        })?;
    }
    for (i, path) in [
        "manual-endpointslices",
        "headless-manual-endpointslices",
        "headless",
    ]
    .iter()
    .enumerate()
    {
        let c = case("", &format!("/{path}")).code(200).to(V1, INFRA);
        expect_response(ctx, &addr, &c)
            .await
            .map_err(|e| anyhow!("{}: {e:#}", c.case_name(i)))?;
    }
    Ok(())
});

use crate::weights::backend_of as backend_name;

/// upstream weight.TestWeightedDistribution: 500 requests, 10 at a time,
/// checked by [`crate::weights::check_distribution`].
pub async fn weighted_distribution(
    ctx: &Ctx,
    addr: &str,
    base: &crate::http::ExpectedResponse,
    expected: &[(&str, f64)],
) -> Result<(), String> {
    const TOTAL: usize = 500;
    const CONCURRENT: usize = 10;
    let mut seen: BTreeMap<String, f64> = BTreeMap::new();
    let mut sent = 0;
    while sent < TOTAL {
        let mut batch = tokio::task::JoinSet::new();
        for _ in 0..CONCURRENT.min(TOTAL - sent) {
            let mut exp = base.clone();
            if rand::random::<bool>() {
                exp.request.headers = vec![(
                    "X-Jitter".into(),
                    (rand::random::<u32>() % 10000).to_string(),
                )];
            }
            let req =
                make_request(ctx, &mut exp, addr, "HTTP", "http").map_err(|e| e.to_string())?;
            let mut check = base.clone();
            let _ = make_request(ctx, &mut check, addr, "HTTP", "http");
            batch.spawn(async move {
                let (creq, cres) = capture_round_trip(&req)
                    .await
                    .map_err(|e| format!("failed to roundtrip request: {e:#}"))?;
                compare_round_trip(&req, &creq, &cres, &check)
                    .map_err(|e| format!("response expectation failed for request: {e}"))?;
                Ok::<String, String>(creq.pod)
            });
        }
        sent += batch.len();
        while let Some(r) = batch.join_next().await {
            let pod = r.map_err(|e| e.to_string())??;
            let backend = backend_name(&pod);
            if !expected.iter().any(|(b, _)| *b == backend) {
                return Err(format!(
                    "request was handled by an unexpected pod {pod:?} (extracted backend: {backend:?})"
                ));
            }
            *seen.entry(backend).or_default() += 1.0;
        }
    }
    crate::weights::check_distribution(&seen, expected, TOTAL)
}

/// Runs the weighted-distribution check up to upstream's MaxTestRetries (10) times.
pub async fn expect_weights(
    ctx: &Ctx,
    addr: &str,
    base: &crate::http::ExpectedResponse,
    expected: &[(&str, f64)],
) -> anyhow::Result<()> {
    let mut last = String::new();
    for _ in 0..10 {
        match weighted_distribution(ctx, addr, base, expected).await {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
    }
    bail!("weighted distribution tests failed: {last}")
}

test_fn!(httproute_weight, |ctx| {
    let gw = nn(INFRA, "same-namespace");
    let route = nn(INFRA, "weighted-backends");
    let addr = accepted(ctx, &gw, &route).await?;
    resolved(ctx, &gw, &route).await?;
    let expected = case("", "/").codes(&[200]).ns(INFRA);
    expect_response(ctx, &addr, &expected).await?;
    expect_weights(ctx, &addr, &expected, &[(V1, 0.7), (V2, 0.3), (V3, 0.0)]).await
});

test_fn!(httproute_https_listener, |ctx| {
    let gw = nn(INFRA, "same-namespace-with-https-listener");
    let routes = [
        nn(INFRA, "httproute-https-test"),
        nn(INFRA, "httproute-https-test-no-hostname"),
    ];
    let addr = gateway_and_http_routes_must_be_accepted(ctx, &GatewayRef::new(gw.clone()), &routes)
        .await?;
    for r in &routes {
        resolved(ctx, &gw, r).await?;
    }
    let cert = ctx.cert_pem(&format!("{INFRA}/tls-validity-checks-certificate"))?;
    for (i, (host, code, backend)) in [
        ("example.org", 200, V1),
        ("unknown-example.org", 404, ""),
        ("second-example.org", 200, V2),
    ]
    .into_iter()
    .enumerate()
    {
        let c = case(host, "/").code(code).to(backend, INFRA);
        expect_tls_response(ctx, &addr, &cert, None, host, &c)
            .await
            .map_err(|e| anyhow!("{}: {e:#}", c.case_name(i)))?;
    }
    Ok(())
});

test_fn!(httproute_request_header_modifier, |ctx| {
    let gw = nn(INFRA, "same-namespace");
    let route = nn(INFRA, "request-header-modifier");
    let addr = accepted(ctx, &gw, &route).await?;
    resolved(ctx, &gw, &route).await?;
    expect_responses(
        ctx,
        &addr,
        &[
            case("", "/set")
                .header("Some-Other-Header", "val")
                .expect_req("", "/set")
                .expect_header("Some-Other-Header", "val")
                .expect_header("X-Header-Set", "set-overwrites-values")
                .to(V1, INFRA),
            case("", "/set")
                .header("Some-Other-Header", "val")
                .header("X-Header-Set", "some-other-value")
                .expect_req("", "/set")
                .expect_header("Some-Other-Header", "val")
                .expect_header("X-Header-Set", "set-overwrites-values")
                .to(V1, INFRA),
            case("", "/add")
                .header("Some-Other-Header", "val")
                .expect_req("", "/add")
                .expect_header("Some-Other-Header", "val")
                .expect_header("X-Header-Add", "add-appends-values")
                .to(V1, INFRA),
            case("", "/add")
                .header("Some-Other-Header", "val")
                .header("X-Header-Add", "some-other-value")
                .expect_req("", "/add")
                .expect_header("Some-Other-Header", "val")
                .expect_header("X-Header-Add", "some-other-value,add-appends-values")
                .to(V1, INFRA),
            case("", "/remove")
                .header("X-Header-Remove", "val")
                .expect_req("", "/remove")
                .expect_absent(&["X-Header-Remove"])
                .to(V1, INFRA),
            case("", "/multiple")
                .header("X-Header-Set-2", "set-val-2")
                .header("X-Header-Add-2", "add-val-2")
                .header("X-Header-Remove-2", "remove-val-2")
                .header("Another-Header", "another-header-val")
                .expect_req("", "/multiple")
                .expect_header("X-Header-Set-1", "header-set-1")
                .expect_header("X-Header-Set-2", "header-set-2")
                .expect_header("X-Header-Add-1", "header-add-1")
                .expect_header("X-Header-Add-2", "add-val-2,header-add-2")
                .expect_header("X-Header-Add-3", "header-add-3")
                .expect_header("Another-Header", "another-header-val")
                .expect_absent(&["X-Header-Remove-1", "X-Header-Remove-2"])
                .to(V1, INFRA),
            case("", "/case-insensitivity")
                .header("x-header-set", "original-val-set")
                .header("x-header-add", "original-val-add")
                .header("x-header-remove", "original-val-remove")
                .header("Another-Header", "another-header-val")
                .expect_req("", "/case-insensitivity")
                .expect_header("X-Header-Set", "header-set")
                .expect_header("X-Header-Add", "original-val-add,header-add")
                .expect_header("Another-Header", "another-header-val")
                .expect_absent(&["x-header-remove", "X-Header-Remove"])
                .to(V1, INFRA),
        ],
    )
    .await
});

test_fn!(
    httproute_https_listener_detect_misdirected_requests,
    |ctx| {
        let gw = nn(INFRA, "same-namespace-with-https-listener");
        let routes: Vec<Nn> = (1..=4)
            .map(|i| {
                nn(
                    INFRA,
                    &format!("https-listener-detect-misdirected-requests-test-{i}"),
                )
            })
            .collect();
        let addr =
            gateway_and_http_routes_must_be_accepted(ctx, &GatewayRef::new(gw.clone()), &routes)
                .await?;
        for r in &routes {
            resolved(ctx, &gw, r).await?;
        }
        let cert = ctx.cert_pem(&format!("{INFRA}/tls-validity-checks-certificate"))?;
        let cases: &[(&str, &str, u16, &str)] = &[
            ("example.org", "example.org", 200, V1),
            ("example.org", "second-example.org", 421, ""),
            ("example.org", "unknown-example.org", 404, ""),
            ("second-example.org", "second-example.org", 200, V2),
            ("second-example.org", "example.org", 421, ""),
            ("second-example.org", "unknown-example.org", 421, ""),
            (
                "third-example.wildcard.org",
                "third-example.wildcard.org",
                200,
                V3,
            ),
            (
                "third-example.wildcard.org",
                "fith-example.wildcard.org",
                200,
                V3,
            ),
            (
                "third-example.wildcard.org",
                "fourth-example.wildcard.org",
                421,
                "",
            ),
            ("third-example.wildcard.org", "second-example.org", 421, ""),
            ("third-example.wildcard.org", "unknown-example.org", 421, ""),
            (
                "fourth-example.wildcard.org",
                "fourth-example.wildcard.org",
                200,
                V1,
            ),
            (
                "fourth-example.wildcard.org",
                "fith-example.wildcard.org",
                421,
                "",
            ),
            ("unknown-example.org", "example.org", 200, V1),
            ("unknown-example.org", "unknown-example.org", 404, ""),
        ];
        for (i, (server_name, host, code, backend)) in cases.iter().enumerate() {
            let c = case(host, "/detect-misdirected-requests")
                .protocol(crate::roundtrip::H2)
                .code(*code)
                .to(backend, INFRA);
            expect_tls_response(ctx, &addr, &cert, None, server_name, &c)
                .await
                .map_err(|e| anyhow!("{} (SNI {server_name}): {e:#}", c.case_name(i)))?;
        }
        Ok(())
    }
);
