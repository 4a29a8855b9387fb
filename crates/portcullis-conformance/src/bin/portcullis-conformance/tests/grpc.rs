//! GRPCRoute tests (upstream tests/grpcroute-*.go).

use std::collections::BTreeMap;

use anyhow::bail;

use super::INFRA;
use crate::grpc::{OK, UNIMPLEMENTED, compare, expect_rpc, expect_rpcs, rpc, send_rpc};
use crate::helpers::*;
use crate::status::{GatewayRef, nn};
use crate::suite::{BoxFut, Ctx};

const V1: &str = "grpc-infra-backend-v1";
const V2: &str = "grpc-infra-backend-v2";
const V3: &str = "grpc-infra-backend-v3";

async fn same_namespace(ctx: &Ctx, route: &str) -> anyhow::Result<String> {
    gateway_and_routes_must_be_accepted(
        ctx,
        "GRPCRoute",
        &GatewayRef::new(nn(INFRA, "same-namespace")),
        true,
        &[nn(INFRA, route)],
    )
    .await
}

test_fn!(grpc_exact_method_matching, |ctx| {
    let addr = same_namespace(ctx, "exact-matching").await?;
    expect_rpcs(
        ctx,
        &addr,
        &[
            rpc("Echo").to(V1, INFRA),
            rpc("EchoTwo").to(V2, INFRA),
            rpc("EchoThree").code(UNIMPLEMENTED),
        ],
    )
    .await
});

test_fn!(grpcroute_header_matching, |ctx| {
    let addr = same_namespace(ctx, "grpc-header-matching").await?;
    let e = || rpc("Echo");
    expect_rpcs(
        ctx,
        &addr,
        &[
            e().meta("Version", "one").to(V1, INFRA),
            e().meta("Version", "two").to(V2, INFRA),
            e().meta("Version", "two")
                .meta("Color", "orange")
                .to(V1, INFRA),
            e().meta("Version", "two")
                .meta("Color", "blue")
                .to(V2, INFRA),
            e().meta("Color", "orange").code(UNIMPLEMENTED),
            e().meta("Some-Other-Header", "one").code(UNIMPLEMENTED),
            e().meta("Color", "blue").to(V1, INFRA),
            e().meta("Color", "green").to(V1, INFRA),
            e().meta("Color", "red").to(V2, INFRA),
            e().meta("Color", "yellow").to(V2, INFRA),
            e().meta("Color", "purple").code(UNIMPLEMENTED),
        ],
    )
    .await
});

test_fn!(grpcroute_listener_hostname_matching, |ctx| {
    namespaces_must_be_ready(ctx, &[INFRA]).await?;
    let gw = nn(INFRA, "grpcroute-listener-hostname-matching");
    for (listeners, route) in [
        (&["listener-1"][..], "backend-v1"),
        (&["listener-2"][..], "backend-v2"),
    ] {
        gateway_and_routes_must_be_accepted(
            ctx,
            "GRPCRoute",
            &GatewayRef::with_listeners(gw.clone(), listeners),
            true,
            &[nn(INFRA, route)],
        )
        .await?;
    }
    let addr = gateway_and_routes_must_be_accepted(
        ctx,
        "GRPCRoute",
        &GatewayRef::with_listeners(gw, &["listener-3", "listener-4"]),
        true,
        &[nn(INFRA, "backend-v3")],
    )
    .await?;
    let e = |a: &str| rpc("Echo").authority(a);
    expect_rpcs(
        ctx,
        &addr,
        &[
            e("bar.com").to(V1, INFRA),
            e("foo.bar.com").to(V2, INFRA),
            e("baz.bar.com").to(V3, INFRA),
            e("boo.bar.com").to(V3, INFRA),
            e("multiple.prefixes.bar.com").to(V3, INFRA),
            e("multiple.prefixes.foo.com").to(V3, INFRA),
            e("foo.com").code(UNIMPLEMENTED),
            e("no.matching.host").code(UNIMPLEMENTED),
        ],
    )
    .await
});

test_fn!(grpcroute_named_rule, |ctx| {
    let addr = same_namespace(ctx, "grpc-named-rules").await?;
    expect_rpcs(
        ctx,
        &addr,
        &[rpc("Echo").to(V1, INFRA), rpc("EchoTwo").to(V2, INFRA)],
    )
    .await
});

test_fn!(grpcroute_weight, |ctx| {
    let addr = same_namespace(ctx, "weighted-backends").await?;
    let expected = rpc("Echo").code(OK).to("", INFRA);
    expect_rpc(ctx, &addr, &expected).await?;
    let weights = [(V1, 0.7), (V2, 0.3), (V3, 0.0)];
    let mut last = String::new();
    'attempts: for _ in 0..10 {
        let mut seen: BTreeMap<String, f64> = BTreeMap::new();
        for _ in 0..50 {
            let mut batch = tokio::task::JoinSet::new();
            for _ in 0..10 {
                let mut e = expected.clone();
                if rand::random::<bool>() {
                    e = e.meta("X-Jitter", &(rand::random::<u32>() % 10000).to_string());
                }
                let addr = addr.clone();
                let timeout = ctx.timeout;
                batch.spawn(async move {
                    let r = send_rpc(&addr, &e, timeout).await;
                    compare(&e, &r).map(|_| {
                        r.assertions
                            .map(|a| a.context[3].clone())
                            .unwrap_or_default()
                    })
                });
            }
            while let Some(r) = batch.join_next().await {
                match r? {
                    Ok(pod) => *seen.entry(crate::weights::backend_of(&pod)).or_default() += 1.0,
                    Err(e) => {
                        last = e;
                        continue 'attempts;
                    }
                }
            }
        }
        match crate::weights::check_distribution(&seen, &weights, 500) {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
    }
    bail!("weighted distribution tests failed: {last}")
});
