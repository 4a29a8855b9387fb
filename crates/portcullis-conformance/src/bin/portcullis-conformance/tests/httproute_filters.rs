//! HTTPRoute filter tests: response headers, redirects, rewrites.

use anyhow::{anyhow, bail};

use super::INFRA;
use crate::helpers::*;
use crate::http::{
    ExpectedResponse, case, expect_response, expect_responses, expect_tls_response, make_request,
};
use crate::roundtrip::capture_round_trip;
use crate::status::{GatewayRef, cond, nn};
use crate::suite::{BoxFut, Ctx};

const V1: &str = "infra-backend-v1";
const V2: &str = "infra-backend-v2";

async fn route_on(ctx: &Ctx, gw: &str, route: &str) -> anyhow::Result<String> {
    let gw = nn(INFRA, gw);
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

async fn same_namespace(ctx: &Ctx, route: &str) -> anyhow::Result<String> {
    route_on(ctx, "same-namespace", route).await
}

test_fn!(httproute_response_header_modifier, |ctx| {
    let addr = same_namespace(ctx, "response-header-modifier").await?;
    expect_responses(
        ctx,
        &addr,
        &[
            case("", "/set")
                .backend_sets("Some-Other-Header", "val")
                .resp_header("Some-Other-Header", "val")
                .resp_header("X-Header-Set", "set-overwrites-values")
                .to(V1, INFRA),
            case("", "/set")
                .backend_sets("Some-Other-Header", "val")
                .backend_sets("X-Header-Set", "some-other-value")
                .resp_header("Some-Other-Header", "val")
                .resp_header("X-Header-Set", "set-overwrites-values")
                .to(V1, INFRA),
            case("", "/add")
                .backend_sets("Some-Other-Header", "val")
                .resp_header("Some-Other-Header", "val")
                .resp_header("X-Header-Add", "add-appends-values")
                .to(V1, INFRA),
            case("", "/add")
                .backend_sets("Some-Other-Header", "val")
                .backend_sets("X-Header-Add", "some-other-value")
                .resp_header("Some-Other-Header", "val")
                .resp_header("X-Header-Add", "some-other-value,add-appends-values")
                .to(V1, INFRA),
            case("", "/remove")
                .backend_sets("X-Header-Remove", "val")
                .resp_absent(&["X-Header-Remove"])
                .to(V1, INFRA),
            case("", "/multiple")
                .backend_sets("X-Header-Set-2", "set-val-2")
                .backend_sets("X-Header-Add-2", "add-val-2")
                .backend_sets("X-Header-Remove-2", "remove-val-2")
                .backend_sets("Another-Header", "another-header-val")
                .backend_sets("X-Header-Remove-1", "val")
                .resp_header("X-Header-Set-1", "header-set-1")
                .resp_header("X-Header-Set-2", "header-set-2")
                .resp_header("X-Header-Add-1", "header-add-1")
                .resp_header("X-Header-Add-2", "add-val-2,header-add-2")
                .resp_header("X-Header-Add-3", "header-add-3")
                .resp_header("Another-Header", "another-header-val")
                .resp_absent(&["X-Header-Remove-1", "X-Header-Remove-2"])
                .to(V1, INFRA),
            case("", "/case-insensitivity")
                .backend_sets("x-header-set", "original-val-set")
                .backend_sets("x-header-add", "original-val-add")
                .backend_sets("x-header-remove", "original-val-remove")
                .backend_sets("Another-Header", "another-header-val")
                .resp_header("X-Header-Set", "header-set")
                .resp_header("X-Header-Add", "original-val-add,header-add")
                .resp_header("X-Lowercase-Add", "lowercase-add")
                .resp_header("X-Mixedcase-Add-1", "mixedcase-add-1")
                .resp_header("X-Mixedcase-Add-2", "mixedcase-add-2")
                .resp_header("X-Uppercase-Add", "uppercase-add")
                .resp_header("Another-Header", "another-header-val")
                .resp_absent(&["x-header-remove", "X-Header-Remove"])
                .to(V1, INFRA),
            case("", "/response-and-request-header-modifiers")
                .header("X-Header-Remove", "remove-val")
                .header("X-Header-Add-Append", "append-val-1")
                .header("X-Header-Echo", "echo")
                .backend_sets("X-Header-Set-2", "set-val-2")
                .backend_sets("X-Header-Add-2", "add-val-2")
                .backend_sets("X-Header-Remove-2", "remove-val-2")
                .backend_sets("Another-Header", "another-header-val")
                .backend_sets("X-Header-Remove-1", "remove-val-1")
                .backend_sets("X-Header-Echo", "echo")
                .expect_req("", "/response-and-request-header-modifiers")
                .expect_header("X-Header-Add", "header-val-1")
                .expect_header("X-Header-Set", "set-overwrites-values")
                .expect_header("X-Header-Add-Append", "append-val-1,header-val-2")
                .expect_header("X-Header-Echo", "echo")
                .expect_absent(&["X-Header-Remove"])
                .resp_header("X-Header-Set-1", "header-set-1")
                .resp_header("X-Header-Set-2", "header-set-2")
                .resp_header("X-Header-Add-1", "header-add-1")
                .resp_header("X-Header-Add-2", "add-val-2,header-add-2")
                .resp_header("Another-Header", "another-header-val")
                .resp_header("X-Header-Echo", "echo")
                .resp_absent(&["X-Header-Remove-1", "X-Header-Remove-2"])
                .to(V1, INFRA),
        ],
    )
    .await
});

fn redirect(path: &str, code: u16) -> ExpectedResponse {
    case("", path).unfollow().code(code).ns(INFRA)
}

test_fn!(httproute_redirect_port, |ctx| {
    let addr = same_namespace(ctx, "redirect-port").await?;
    expect_responses(
        ctx,
        &addr,
        &[
            redirect("/port", 302).redirect("", "", "8083", ""),
            redirect("/port-and-host", 302).redirect("", "example.org", "8083", ""),
            redirect("/port-and-status", 301).redirect("", "", "8083", ""),
            redirect("/port-and-host-and-status", 302).redirect("", "example.org", "8083", ""),
        ],
    )
    .await
});

test_fn!(httproute_redirect_scheme, |ctx| {
    let addr = same_namespace(ctx, "redirect-scheme").await?;
    expect_responses(
        ctx,
        &addr,
        &[
            redirect("/scheme", 302).redirect("https", "", "", ""),
            redirect("/scheme-and-host", 302).redirect("https", "example.org", "", ""),
            redirect("/scheme-and-status", 301).redirect("https", "", "", ""),
            redirect("/scheme-and-host-and-status", 302).redirect("https", "example.org", "", ""),
        ],
    )
    .await
});

test_fn!(httproute_redirect_path, |ctx| {
    let addr = same_namespace(ctx, "redirect-path").await?;
    expect_responses(
        ctx,
        &addr,
        &[
            redirect("/original-prefix/lemon", 302).redirect(
                "",
                "",
                "",
                "/replacement-prefix/lemon",
            ),
            redirect("/full/path/original", 302).redirect("", "", "", "/full-path-replacement"),
            redirect("/path-and-host", 302).redirect("", "example.org", "", "/replacement-prefix"),
            redirect("/path-and-status", 301).redirect("", "", "", "/replacement-prefix"),
            redirect("/full-path-and-host", 302).redirect(
                "",
                "example.org",
                "",
                "/replacement-full",
            ),
            redirect("/full-path-and-status", 301).redirect("", "", "", "/replacement-full"),
        ],
    )
    .await
});

test_fn!(httproute_303_redirect, |ctx| {
    let addr = same_namespace(ctx, "303-redirect").await?;
    expect_response(
        ctx,
        &addr,
        &redirect("/see-other", 303)
            .method("POST")
            .redirect("", "", "", "/see-other"),
    )
    .await
});

test_fn!(httproute_307_redirect, |ctx| {
    let addr = same_namespace(ctx, "307-redirect").await?;
    expect_response(
        ctx,
        &addr,
        &redirect("/temporary", 307).redirect("", "", "", "/temporary"),
    )
    .await
});

test_fn!(httproute_308_redirect, |ctx| {
    let addr = same_namespace(ctx, "308-redirect").await?;
    expect_response(
        ctx,
        &addr,
        &redirect("/permanent", 308).redirect("", "", "", "/permanent"),
    )
    .await
});

test_fn!(httproute_redirect_port_and_scheme, |ctx| {
    let addr80 = route_on(ctx, "same-namespace", "http-route-for-listener-on-port-80").await?;
    let addr8080 = route_on(
        ctx,
        "same-namespace-with-http-listener-on-8080",
        "http-route-for-listener-on-port-8080",
    )
    .await?;
    let addr443 = route_on(
        ctx,
        "same-namespace-with-https-listener",
        "http-route-for-listener-on-port-443",
    )
    .await?;
    let r = |path: &str, scheme: &str, port: &str| {
        redirect(path, 302).redirect(scheme, "example.org", port, "")
    };
    expect_responses(
        ctx,
        &addr80,
        &[
            r("/scheme-nil-and-port-nil", "http", ""),
            r("/scheme-nil-and-port-80", "http", ""),
            r("/scheme-nil-and-port-8080", "http", "8080"),
            r("/scheme-https-and-port-nil", "https", ""),
            r("/scheme-https-and-port-443", "https", ""),
            r("/scheme-https-and-port-8443", "https", "8443"),
        ],
    )
    .await
    .map_err(|e| anyhow!("http-listener-on-80/{e:#}"))?;
    expect_responses(
        ctx,
        &addr8080,
        &[
            r("/scheme-nil-and-port-nil", "http", "8080"),
            r("/scheme-nil-and-port-80", "http", ""),
            r("/scheme-https-and-port-nil", "https", ""),
        ],
    )
    .await
    .map_err(|e| anyhow!("http-listener-on-8080/{e:#}"))?;
    let cert = ctx.cert_pem(&format!("{INFRA}/tls-validity-checks-certificate"))?;
    let mut cases = Vec::new();
    for (path, scheme, port) in [
        ("/scheme-nil-and-port-nil", "https", ""),
        ("/scheme-nil-and-port-443", "https", ""),
        ("/scheme-nil-and-port-8443", "https", "8443"),
        ("/scheme-http-and-port-nil", "http", ""),
        ("/scheme-http-and-port-80", "http", ""),
        ("/scheme-http-and-port-8080", "http", "8080"),
    ] {
        let mut c = r(path, scheme, port);
        c.request.host = "example.org".into();
        cases.push(c);
    }
    for (i, c) in cases.iter().enumerate() {
        expect_tls_response(ctx, &addr443, &cert, None, "example.org", c)
            .await
            .map_err(|e| anyhow!("https-listener-on-443/{}: {e:#}", c.case_name(i)))?;
    }
    Ok(())
});

test_fn!(httproute_rewrite_host, |ctx| {
    let addr = same_namespace(ctx, "rewrite-host").await?;
    expect_responses(
        ctx,
        &addr,
        &[
            case("rewrite.example", "/one")
                .expect_req("one.example.org", "/one")
                .to(V1, INFRA),
            case("rewrite.example", "/two")
                .expect_req("example.org", "/two")
                .to(V2, INFRA),
            case("rewrite.example", "/rewrite-host-and-modify-headers")
                .header("X-Header-Remove", "remove-val")
                .header("X-Header-Add-Append", "append-val-1")
                .expect_req("test.example.org", "/rewrite-host-and-modify-headers")
                .expect_header("X-Header-Add", "header-val-1")
                .expect_header("X-Header-Add-Append", "append-val-1,header-val-2")
                .expect_header("X-Header-Set", "set-overwrites-values")
                .expect_absent(&["X-Header-Remove"])
                .to(V2, INFRA),
        ],
    )
    .await
});

test_fn!(httproute_rewrite_path, |ctx| {
    let addr = same_namespace(ctx, "rewrite-path").await?;
    let modify = |c: ExpectedResponse, expected_path: &str| {
        c.header("X-Header-Remove", "remove-val")
            .header("X-Header-Add-Append", "append-val-1")
            .header("X-Header-Set", "set-val")
            .expect_req("", expected_path)
            .expect_header("X-Header-Add", "header-val-1")
            .expect_header("X-Header-Add-Append", "append-val-1,header-val-2")
            .expect_header("X-Header-Set", "set-overwrites-values")
            .expect_absent(&["X-Header-Remove"])
            .to(V1, INFRA)
    };
    expect_responses(
        ctx,
        &addr,
        &[
            case("", "/prefix/one/two")
                .expect_req("", "/one/two")
                .to(V1, INFRA),
            case("", "/strip-prefix/three")
                .expect_req("", "/three")
                .to(V1, INFRA),
            case("", "/strip-prefix").expect_req("", "/").to(V1, INFRA),
            case("", "/full/one/two")
                .expect_req("", "/one")
                .to(V1, INFRA),
            modify(
                case("", "/full/rewrite-path-and-modify-headers/test"),
                "/test",
            ),
            modify(
                case("", "/prefix/rewrite-path-and-modify-headers/one"),
                "/prefix/one",
            ),
        ],
    )
    .await
});

test_fn!(httproute_request_header_modifier_backend_weights, |ctx| {
    let addr = same_namespace(ctx, "request-header-modifier-backend-weights").await?;
    let expected = case("", "/").code(200).ns(INFRA);
    let mut e = expected.clone();
    let req = make_request(ctx, &mut e, &addr, "HTTP", "http")?;
    expect_response(ctx, &addr, &expected).await?;
    for _ in 0..100 {
        let (creq, _) = capture_round_trip(&req)
            .await
            .map_err(|e| anyhow!("failed to roundtrip request: {e:#}"))?;
        let backends = creq.headers.get("Backend").cloned().unwrap_or_default();
        if backends.len() != 1 {
            bail!(
                "expected a single 'Backend' header to have been set, got {}",
                backends.len()
            );
        }
        if !creq.pod.starts_with(&backends[0]) {
            bail!(
                "expected the backendRef to have set the correct headers and sent the request to the correct pod, got {:?}, want {:?}",
                creq.pod,
                backends[0]
            );
        }
    }
    Ok(())
});
