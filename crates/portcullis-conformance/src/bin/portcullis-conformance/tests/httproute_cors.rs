//! HTTPRouteCORS (upstream tests/httproute-cors.go): the 17 upstream cases,
//! one builder chain per case, in upstream order.

use super::INFRA;
use crate::helpers::*;
use crate::http::{case, expect_responses};
use crate::status::{GatewayRef, cond, nn};
use crate::suite::{BoxFut, Ctx};

test_fn!(httproute_cors, |ctx| {
    let gw = nn(INFRA, "same-namespace");
    let routes = [
        nn(INFRA, "cors-multiple-origins-methods-headers"),
        nn(INFRA, "cors-wildcard-methods"),
        nn(INFRA, "cors-wildcard-origin"),
        nn(INFRA, "cors-wildcard-methods-headers"),
    ];
    let addr =
        gateway_and_http_routes_must_be_accepted(ctx, &GatewayRef::new(gw.clone()), &routes[..2])
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
    expect_responses(
        ctx,
        &addr,
        &[
            case("", "/cors-1").method("OPTIONS").header("Origin", "https://www.foo.com").header("access-control-request-method", "GET").header("access-control-request-headers", "x-header-1, x-header-2").expect_req("", "").expect_method("OPTIONS").codes(&[200, 204]).resp_one_of("access-control-allow-origin", &["https://www.foo.com"]).resp_one_of("access-control-allow-methods", &["GET, OPTIONS", "OPTIONS, GET"]).resp_one_of("access-control-allow-headers", &["x-header-1, x-header-2", "x-header-2, x-header-1"]).resp_one_of("access-control-expose-headers", &["x-header-3, x-header-4", "x-header-4, x-header-3"]).resp_one_of("access-control-max-age", &["3600"]).resp_one_of("access-control-allow-credentials", &["true"]).ignore_whitespace().named("CORS preflight request from an exact matching origin should be allowed"),
            case("", "/cors-1").method("OPTIONS").header("Origin", "https://www.bar.com").header("access-control-request-method", "GET").header("access-control-request-headers", "x-header-1, x-header-2").expect_req("", "").expect_method("OPTIONS").codes(&[200, 204]).resp_one_of("access-control-allow-origin", &["https://www.bar.com"]).resp_one_of("access-control-allow-methods", &["GET, OPTIONS", "OPTIONS, GET"]).resp_one_of("access-control-allow-headers", &["x-header-1, x-header-2", "x-header-2, x-header-1"]).resp_one_of("access-control-expose-headers", &["x-header-3, x-header-4", "x-header-4, x-header-3"]).resp_one_of("access-control-max-age", &["3600"]).resp_one_of("access-control-allow-credentials", &["true"]).ignore_whitespace().named("CORS preflight request from a wildcard matching origin should be allowed"),
            case("", "/cors-1").method("OPTIONS").header("Origin", "https://xpto.www.bar.com").header("access-control-request-method", "GET").header("access-control-request-headers", "x-header-1, x-header-2").expect_req("", "").expect_method("OPTIONS").codes(&[200, 204]).resp_one_of("access-control-allow-origin", &["https://xpto.www.bar.com"]).resp_one_of("access-control-allow-methods", &["GET, OPTIONS", "OPTIONS, GET"]).resp_one_of("access-control-allow-headers", &["x-header-1, x-header-2", "x-header-2, x-header-1"]).resp_one_of("access-control-expose-headers", &["x-header-3, x-header-4", "x-header-4, x-header-3"]).resp_one_of("access-control-max-age", &["3600"]).resp_one_of("access-control-allow-credentials", &["true"]).ignore_whitespace().named("CORS preflight request from a wildcard matching any number of periods left to '*' should be allowed"),
            case("", "/cors-1").method("OPTIONS").header("Origin", "https://foobar.com").header("access-control-request-method", "GET").expect_req("", "").expect_method("OPTIONS").codes(&[200, 204, 403]).resp_absent(&["access-control-allow-origin"]).named("CORS preflight request from a non-matching origin should not be allowed"),
            case("", "/cors-1").method("GET").header("Origin", "https://www.foo.com").header("access-control-request-method", "GET").header("access-control-request-headers", "x-header-1, x-header-2").ns(INFRA).codes(&[200]).resp_header("access-control-allow-origin", "https://www.foo.com").named("Simple request from an exact matching origin should be allowed"),
            case("", "/cors-1").method("GET").header("Origin", "https://www.bar.com").header("access-control-request-method", "GET").header("access-control-request-headers", "x-header-1, x-header-2").ns(INFRA).codes(&[200]).resp_header("access-control-allow-origin", "https://www.bar.com").named("Simple request from a wildcard matching origin should be allowed"),
            case("", "/cors-1").method("GET").header("Origin", "https://foobar.com").header("access-control-request-method", "GET").ns(INFRA).resp_absent(&["access-control-allow-origin"]).named("Simple request from a non-matching origin should not be allowed"),
            case("", "/cors-2").method("OPTIONS").header("Origin", "https://www.foo.com").header("access-control-request-method", "POST").expect_req("", "").expect_method("OPTIONS").codes(&[200, 204]).resp_header("access-control-allow-origin", "https://www.foo.com").resp_one_of("access-control-allow-methods", &["POST", "*"]).resp_absent(&["access-control-allow-credentials"]).named("CORS preflight request with POST method should be allowed by allowMethods with wildcard"),
            case("", "/cors-2").method("OPTIONS").header("Origin", "https://www.foo.com").header("access-control-request-method", "POST").expect_req("", "").expect_method("OPTIONS").codes(&[200, 204]).resp_absent(&["Access-Control-Allow-Credentials"]).named("CORS preflight request should not receive access-control-allow-credentials header without access-control-allow-credentials set to true"),
            case("", "/cors-wildcard-origin").method("OPTIONS").header("Origin", "https://foobar.com").header("access-control-request-method", "PUT").expect_req("", "").expect_method("OPTIONS").codes(&[200, 204]).resp_one_of("access-control-allow-origin", &["https://foobar.com", "*"]).resp_one_of("access-control-allow-methods", &["PUT"]).resp_absent(&["Access-Control-Allow-Credentials"]).named("CORS preflight request from a wildcard origin should return header with '*' or with the requested Origin"),
            case("", "/cors-wildcard-origin").method("OPTIONS").header("Origin", "https://foobar.com:12345").header("access-control-request-method", "PUT").expect_req("", "").expect_method("OPTIONS").codes(&[200, 204]).resp_one_of("access-control-allow-origin", &["https://foobar.com:12345", "*"]).resp_one_of("access-control-allow-methods", &["PUT"]).resp_absent(&["Access-Control-Allow-Credentials"]).named("CORS preflight request from a wildcard origin containing a port should return header with '*' or with the requested Origin"),
            case("", "/cors-wildcard-origin").method("PUT").header("Origin", "https://foobar.com:12345").ns(INFRA).codes(&[200]).resp_one_of("access-control-allow-origin", &["https://foobar.com:12345", "*"]).named("Request from a wildcard origin containing a port should return header with '*' or with the requested Origin"),
            case("", "/cors-wildcard-origin").method("PUT").header("Origin", "https://foobar.com").ns(INFRA).codes(&[200]).resp_one_of("access-control-allow-origin", &["https://foobar.com", "*"]).resp_absent(&["Access-Control-Allow-Credentials"]).named("Simple request from a wildcard origin should return header with '*' or with the requested Origin"),
            case("", "/cors-wildcard-methods-headers").method("OPTIONS").header("Origin", "https://other.foo.com").header("access-control-request-method", "PUT").header("access-control-request-headers", "x-header-1, x-header-2").expect_req("", "").expect_method("OPTIONS").codes(&[200, 204]).resp_one_of("access-control-allow-origin", &["https://other.foo.com"]).resp_one_of("access-control-allow-methods", &["PUT"]).resp_one_of("access-control-allow-headers", &["x-header-1, x-header-2", "x-header-2, x-header-1"]).resp_one_of("access-control-allow-credentials", &["true"]).ignore_whitespace().named("CORS preflight request requesting specific method and headers should be allowed and always echo the origin with allowCredentials set to true"),
            case("", "/cors-wildcard-methods-headers-unauth").method("OPTIONS").header("Origin", "https://other.foo.com").header("access-control-request-method", "PUT").header("access-control-request-headers", "x-header-1, x-header-2").expect_req("", "").expect_method("OPTIONS").codes(&[200, 204]).resp_one_of("access-control-allow-origin", &["https://other.foo.com", "*"]).resp_one_of("access-control-allow-methods", &["PUT", "*"]).resp_one_of("access-control-allow-headers", &["x-header-1, x-header-2", "x-header-2, x-header-1", "*"]).resp_absent(&["access-control-allow-credentials"]).ignore_whitespace().named("CORS preflight request requesting specific method and headers should hide access-control-allow-credentials headers with allowCredentials set to false"),
            case("", "/cors-wildcard-methods-headers").method("GET").header("Origin", "https://other.foo.com").ns(INFRA).codes(&[200]).resp_one_of("access-control-allow-origin", &["https://other.foo.com"]).resp_one_of("access-control-allow-credentials", &["true"]).named("CORS request should receive access-control-allow-credentials header with allowCredentials set to true"),
            case("", "/cors-wildcard-methods-headers-unauth").method("GET").header("Origin", "https://other.foo.com").ns(INFRA).codes(&[200]).resp_one_of("access-control-allow-origin", &["https://other.foo.com", "*"]).resp_absent(&["access-control-allow-credentials"]).named("CORS request should not receive access-control-allow-credentials header without allowCredentials set to true"),

        ],
    )
    .await
});
