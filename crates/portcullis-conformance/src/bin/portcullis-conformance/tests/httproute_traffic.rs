//! HTTPRoute traffic-behaviour tests: timeouts, retries, mirrors, named rules,
//! backend protocols (h2c, WebSocket) and listener isolation.

use std::time::{Duration, Instant};

use anyhow::{anyhow, bail};
use futures_util::{SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::INFRA;
use crate::helpers::*;
use crate::http::{
    ExpectedResponse, await_convergence, case, compare_round_trip, expect_response,
    expect_responses, make_request,
};
use crate::roundtrip::{H2C_PRIOR_KNOWLEDGE, capture_round_trip};
use crate::status::{GatewayRef, Nn, cond, nn};
use crate::suite::{BoxFut, Ctx};

const V1: &str = "infra-backend-v1";
const V2: &str = "infra-backend-v2";
const V3: &str = "infra-backend-v3";

async fn routes_on(ctx: &Ctx, gw: &Nn, routes: &[Nn], resolved: bool) -> anyhow::Result<String> {
    let addr =
        gateway_and_http_routes_must_be_accepted(ctx, &GatewayRef::new(gw.clone()), routes).await?;
    if resolved {
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
    }
    Ok(addr)
}

async fn same_namespace(ctx: &Ctx, route: &str, resolved: bool) -> anyhow::Result<String> {
    routes_on(
        ctx,
        &nn(INFRA, "same-namespace"),
        &[nn(INFRA, route)],
        resolved,
    )
    .await
}

test_fn!(httproute_timeout_request, |ctx| {
    let addr = same_namespace(ctx, "request-timeout", true).await?;
    expect_responses(
        ctx,
        &addr,
        &[
            case("", "/request-timeout").code(200).ns(INFRA),
            case("", "/request-timeout?delay=1s").code(504).ns(INFRA),
            case("", "/disable-request-timeout?delay=1s")
                .code(200)
                .ns(INFRA),
        ],
    )
    .await
});

test_fn!(httproute_timeout_backend_request, |ctx| {
    let addr = same_namespace(ctx, "backend-request-timeout", true).await?;
    expect_responses(
        ctx,
        &addr,
        &[
            case("", "/backend-timeout").code(200).ns(INFRA),
            case("", "/backend-timeout?delay=1s").code(504).ns(INFRA),
            case("", "/disable-backend-timeout?delay=1s")
                .code(200)
                .ns(INFRA),
        ],
    )
    .await
});

fn uuid() -> String {
    let a: u128 = rand::random();
    let h = format!("{a:032x}");
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

test_fn!(httproute_retry, |ctx| {
    let addr = same_namespace(ctx, "retries", true).await?;
    let cases: &[(&str, &str, &str, u16, &str)] = &[
        (
            "/retry/code-500-attempts-3",
            "500",
            "2",
            200,
            "succeeds after 2 retries when retry is configured for status code 500 and max attempts is 3",
        ),
        (
            "/retry/code-500-attempts-3",
            "500",
            "4",
            500,
            "fails when required retries on 500 exceed max attempts",
        ),
        (
            "/retry/code-500-attempts-3",
            "503",
            "2",
            503,
            "does not retry on 503 when retry is only configured for status code 500",
        ),
        (
            "/retry/code-all-attempts-2",
            "500",
            "1",
            200,
            "succeeds after 1 retry on 500 when retry is configured for all status code and max attempts is 2",
        ),
        (
            "/retry/code-all-attempts-2",
            "500",
            "3",
            500,
            "fails when required retries on 500 exceed max attempts",
        ),
        (
            "/retry/code-all-attempts-2",
            "502",
            "1",
            200,
            "succeeds after 1 retry on 502 when retry is configured for all status code and max attempts is 2",
        ),
        (
            "/retry/code-all-attempts-2",
            "502",
            "3",
            502,
            "fails when required retries on 502 exceed max attempts",
        ),
        (
            "/retry/code-all-attempts-2",
            "503",
            "1",
            200,
            "succeeds after 1 retry on 503 when retry is configured for all status code and max attempts is 2",
        ),
        (
            "/retry/code-all-attempts-2",
            "503",
            "3",
            503,
            "fails when required retries on 503 exceed max attempts",
        ),
        (
            "/retry/code-all-attempts-2",
            "504",
            "1",
            200,
            "succeeds after 1 retry on 504 when retry is configured for all status code and max attempts is 2",
        ),
        (
            "/retry/code-all-attempts-2",
            "504",
            "3",
            504,
            "fails when required retries on 504 exceed max attempts",
        ),
    ];
    let ctx: &Ctx = ctx;
    for (i, (path, code, after, want, name)) in cases.iter().enumerate() {
        let addr = &addr;
        await_convergence(ctx.consecutive_successes, ctx.timeout, |_| async move {
            let query = format!("responseCode={code}&succeedAfter={after}&uuid={}", uuid());
            let mut expected = case("", &format!("{path}?{query}"))
                .code(*want)
                .to(V3, INFRA);
            let req = make_request(ctx, &mut expected, addr, "HTTP", "http")
                .map_err(|e| e.to_string())?;
            let (creq, cres) = capture_round_trip(&req)
                .await
                .map_err(|e| format!("request failed: {e:#}"))?;
            compare_round_trip(&req, &creq, &cres, &expected)
        })
        .await
        .map_err(|e| anyhow!("{i} request to '{path}' {name}: {e:#}"))?;
    }
    Ok(())
});

/// upstream ExpectMirroredRequest: each mirror backend logs the request path
/// (with its unique request id) within the request timeout.
async fn expect_mirrored(ctx: &Ctx, mirrors: &[(&str, &str)], path: &str) -> anyhow::Result<()> {
    let needle = format!("Echoing back request made to {path} to client");
    for (ns, backend) in mirrors {
        let deadline = Instant::now() + ctx.request_timeout;
        loop {
            let found = ctx
                .cluster
                .logs(ns, &format!("{backend}-"))
                .iter()
                .flatten()
                .any(|l| l.contains(&needle));
            if found {
                break;
            }
            if Instant::now() > deadline {
                bail!("couldn't find mirrored request in \"{ns}/{backend}\" logs");
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    Ok(())
}

fn with_request_id(mut c: ExpectedResponse) -> ExpectedResponse {
    let id = uuid();
    let add = |p: &str| {
        let sep = if p.contains('?') { '&' } else { '?' };
        format!("{p}{sep}gateway-api-conformance-request-id={id}")
    };
    c.request.path = add(&c.request.path);
    if let Some(er) = c.expected_request.as_mut() {
        er.request.path = if er.request.path.is_empty() {
            c.request.path.clone()
        } else {
            add(&er.request.path)
        };
    }
    c
}

fn modified(c: ExpectedResponse, path: &str) -> ExpectedResponse {
    c.header("X-Header-Remove", "remove-val")
        .header("X-Header-Add-Append", "append-val-1")
        .expect_req("", path)
        .expect_header("X-Header-Add", "header-val-1")
        .expect_header("X-Header-Add-Append", "append-val-1,header-val-2")
        .expect_header("X-Header-Set", "set-overwrites-values")
        .expect_absent(&["X-Header-Remove"])
}

async fn mirror_cases(
    ctx: &Ctx,
    addr: &str,
    cases: Vec<ExpectedResponse>,
    mirrors: &[(&str, &str)],
) -> anyhow::Result<()> {
    for (i, c) in cases.into_iter().enumerate() {
        let c = with_request_id(c);
        let path = c.request.path.clone();
        expect_response(ctx, addr, &c)
            .await
            .map_err(|e| anyhow!("{}: {e:#}", c.case_name(i)))?;
        expect_mirrored(ctx, mirrors, &path)
            .await
            .map_err(|e| anyhow!("{}: {e:#}", c.case_name(i)))?;
    }
    Ok(())
}

test_fn!(httproute_request_mirror, |ctx| {
    let addr = same_namespace(ctx, "request-mirror", false).await?;
    mirror_cases(
        ctx,
        &addr,
        vec![
            case("", "/mirror").expect_req("", "/mirror").to(V1, INFRA),
            modified(
                case("", "/mirror-and-modify-headers"),
                "/mirror-and-modify-headers",
            )
            .to(V1, INFRA),
        ],
        &[(INFRA, V2)],
    )
    .await
});

test_fn!(httproute_request_multiple_mirrors, |ctx| {
    let addr = same_namespace(ctx, "request-multiple-mirrors", false).await?;
    mirror_cases(
        ctx,
        &addr,
        vec![
            case("", "/multi-mirror")
                .expect_req("", "/multi-mirror")
                .to(V1, INFRA),
            modified(
                case("", "/multi-mirror-and-modify-request-headers"),
                "/multi-mirror-and-modify-request-headers",
            )
            .to(V1, INFRA),
        ],
        &[(INFRA, V2), (INFRA, V3)],
    )
    .await
});

test_fn!(httproute_named_rule, |ctx| {
    let addr = same_namespace(ctx, "http-named-rules", true).await?;
    expect_responses(
        ctx,
        &addr,
        &[
            case("", "/named").code(200).ns(INFRA),
            case("", "/unnamed").code(200).ns(INFRA),
        ],
    )
    .await
});

test_fn!(httproute_backend_protocol_h2c, |ctx| {
    let addr = same_namespace(ctx, "backend-protocol-h2c", false).await?;
    expect_response(
        ctx,
        &addr,
        &case("", "/")
            .protocol(H2C_PRIOR_KNOWLEDGE)
            .code(200)
            .to(V1, INFRA),
    )
    .await
});

async fn websocket_round_trip(addr: &str, origin: &str) -> Result<(), String> {
    let mut request = format!("ws://{addr}/ws")
        .into_client_request()
        .map_err(|e| e.to_string())?;
    request.headers_mut().insert(
        "origin",
        origin.parse().map_err(|_| "bad origin".to_string())?,
    );
    let connect = tokio_tungstenite::connect_async(request);
    let (mut ws, _) = tokio::time::timeout(Duration::from_secs(10), connect)
        .await
        .map_err(|_| "dial timeout".to_string())?
        .map_err(|e| format!("failed to dial: {e}"))?;
    let text = "Websocket Support!";
    ws.send(Message::Text(text.into()))
        .await
        .map_err(|e| format!("failed to send text frame: {e}"))?;
    let reply = tokio::time::timeout(Duration::from_secs(10), ws.next()).await;
    match reply {
        Ok(Some(Ok(Message::Text(t)))) if t.as_str() == text => {}
        other => return Err(format!("unexpected reply - want: {text} got: {other:?}")),
    }
    let binary = vec![1u8, 2, 3, 4, 5, 6, 7];
    ws.send(Message::Binary(binary.clone().into()))
        .await
        .map_err(|e| format!("failed to send binary frame: {e}"))?;
    let reply = tokio::time::timeout(Duration::from_secs(10), ws.next()).await;
    match reply {
        Ok(Some(Ok(Message::Binary(b)))) if b.as_ref() == binary.as_slice() => {}
        other => {
            return Err(format!(
                "unexpected reply - want: {binary:?} got: {other:?}"
            ));
        }
    }
    let _ = ws.close(None).await;
    Ok(())
}

test_fn!(httproute_backend_protocol_websocket, |ctx| {
    let addr = same_namespace(ctx, "backend-protocol-ws", false).await?;
    let origin =
        "ws://gateway/HTTPRouteBackendProtocolWebSocket/websocket_connection_should_reach_backend";
    await_convergence(ctx.consecutive_successes, ctx.timeout, |_| {
        websocket_round_trip(&addr, origin)
    })
    .await
    .map_err(|e| anyhow!("websocket connection should reach backend: {e:#}"))
});

test_fn!(gateway_http_listener_isolation, |ctx| {
    namespaces_must_be_ready(ctx, &[INFRA]).await?;
    let cases = vec![
        case("bar.com", "/empty-hostname").to(V1, INFRA),
        case("bar.com", "/wildcard-example-com").code(404),
        case("bar.com", "/wildcard-foo-example-com").code(404),
        case("bar.com", "/abc-foo-example-com").code(404),
        case("bar.example.com", "/empty-hostname").code(404),
        case("bar.example.com", "/wildcard-example-com").to(V1, INFRA),
        case("bar.example.com", "/wildcard-foo-example-com").code(404),
        case("bar.example.com", "/abc-foo-example-com").code(404),
        case("bar.foo.example.com", "/empty-hostname").code(404),
        case("bar.foo.example.com", "/wildcard-example-com").code(404),
        case("bar.foo.example.com", "/wildcard-foo-example-com").to(V1, INFRA),
        case("bar.foo.example.com", "/abc-foo-example-com").code(404),
        case("abc.foo.example.com", "/empty-hostname").code(404),
        case("abc.foo.example.com", "/wildcard-example-com").code(404),
        case("abc.foo.example.com", "/wildcard-foo-example-com")
            .code(404)
            .ns(INFRA),
        case("abc.foo.example.com", "/abc-foo-example-com").to(V1, INFRA),
    ];
    for (gw, suffix) in [
        ("http-listener-isolation", ""),
        (
            "http-listener-isolation-with-hostname-intersection",
            "-with-hostname-intersection",
        ),
    ] {
        let routes: Vec<Nn> = [
            "attaches-to-empty-hostname",
            "attaches-to-wildcard-example-com",
            "attaches-to-wildcard-foo-example-com",
            "attaches-to-abc-foo-example-com",
        ]
        .iter()
        .map(|r| nn(INFRA, &format!("{r}{suffix}")))
        .collect();
        let addr = routes_on(ctx, &nn(INFRA, gw), &routes, true).await?;
        expect_responses(ctx, &addr, &cases)
            .await
            .map_err(|e| anyhow!("Gateway {gw}: {e:#}"))?;
    }
    Ok(())
});

/// upstream HTTPRouteRequestPercentageMirror: 500 requests per check (10 at a
/// time); the mirror backend must log a share within 3 binomial standard
/// deviations of the configured percentage; up to 5 checks.
async fn percentage_case(
    ctx: &Ctx,
    addr: &str,
    c: ExpectedResponse,
    percent: f64,
) -> anyhow::Result<()> {
    expect_response(ctx, addr, &c).await?;
    const TOTAL: usize = 500;
    let mut last = String::new();
    for _ in 0..5 {
        let c = with_request_id(c.clone());
        let mut sent = 0;
        while sent < TOTAL {
            let mut batch = tokio::task::JoinSet::new();
            for _ in 0..10.min(TOTAL - sent) {
                let mut exp = c.clone();
                let req = make_request(ctx, &mut exp, addr, "HTTP", "http")?;
                batch.spawn(async move {
                    let (creq, cres) = capture_round_trip(&req)
                        .await
                        .map_err(|e| format!("{e:#}"))?;
                    compare_round_trip(&req, &creq, &cres, &exp)
                });
            }
            sent += batch.len();
            while let Some(r) = batch.join_next().await {
                r?.map_err(|e| anyhow!("request failed: {e}"))?;
            }
        }
        // Give the mirrors a moment to log the last requests.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let needle = format!("Echoing back request made to {} to client", c.request.path);
        let count = ctx
            .cluster
            .logs(INFRA, &format!("{V2}-"))
            .iter()
            .flatten()
            .filter(|l| l.contains(&needle))
            .count() as f64;
        let p = percent / 100.0;
        let expected = TOTAL as f64 * p;
        let margin = 3.0 * (TOTAL as f64 * p * (1.0 - p)).sqrt();
        if (expected - margin..=expected + margin).contains(&count) {
            return Ok(());
        }
        last = format!(
            "pod {V2} did not meet the mirroring percentage within tolerance. Expected between {} and {}, but got {count}",
            expected - margin,
            expected + margin
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    bail!("percentage based mirror distribution tests failed: {last}")
}

test_fn!(httproute_request_percentage_mirror, |ctx| {
    let addr = same_namespace(ctx, "request-percentage-mirror", true).await?;
    let cases = [
        (
            case("", "/percent-mirror")
                .expect_req("", "/percent-mirror")
                .to(V1, INFRA),
            20.0,
        ),
        (
            case("", "/percent-mirror-fraction")
                .expect_req("", "/percent-mirror-fraction")
                .to(V1, INFRA),
            50.0,
        ),
        (
            modified(
                case("", "/percent-mirror-and-modify-headers"),
                "/percent-mirror-and-modify-headers",
            )
            .to(V1, INFRA),
            35.0,
        ),
    ];
    for (i, (c, percent)) in cases.into_iter().enumerate() {
        let name = c.case_name(i);
        percentage_case(ctx, &addr, c, percent)
            .await
            .map_err(|e| anyhow!("{name}: {e:#}"))?;
    }
    Ok(())
});
