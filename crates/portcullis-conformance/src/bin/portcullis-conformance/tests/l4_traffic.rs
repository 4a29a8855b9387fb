//! TLSRoute passthrough and TCPRoute traffic tests against the TCP and TLS
//! echo backends.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::json;

use super::{INFRA, WEB};
use crate::helpers::*;
use crate::http::{case, expect_tls_response};
use crate::status::{ExpParent, GatewayRef, Nn, cond, listener, nn};
use crate::suite::{BoxFut, Ctx};
use crate::tcp::{TcpExpected, echo_send_once, expect_tcp_response};
use crate::tests::l4::{expect_tls_rejection, gateway_and_tls_routes_accepted};

fn tcp_expected(backend: &str, ns: &str) -> TcpExpected {
    TcpExpected {
        backend: backend.into(),
        namespace: ns.into(),
        ..Default::default()
    }
}

test_fn!(tlsroute_simple_same_namespace, |ctx| {
    let route = nn(INFRA, "gateway-conformance-infra-test");
    let gw = nn(INFRA, "gateway-tlsroute");
    namespaces_must_be_ready(ctx, &[INFRA]).await?;
    let (addr, hostnames) =
        gateway_and_tls_routes_accepted(ctx, &GatewayRef::new(gw), std::slice::from_ref(&route))
            .await?;
    if hostnames.len() != 1 {
        bail!(
            "unexpected error in test configuration, found {} hostnames",
            hostnames.len()
        );
    }
    let ca = ctx.cert_pem(&format!("{INFRA}/tls-checks-ca-certificate"))?;
    let host = &hostnames[0];
    expect_tcp_response(
        ctx,
        &addr,
        Some((&ca, host)),
        &TcpExpected {
            backend_is_tls: true,
            backend: "tcp-backend".into(),
            namespace: INFRA.into(),
            hostname: host.clone(),
        },
    )
    .await
    .context("Simple TLS request matching TLSRoute should reach infra-backend")
});

test_fn!(tlsroute_hostname_intersection, |ctx| {
    namespaces_must_be_ready(ctx, &[INFRA]).await?;
    let cert = ctx.cert_pem(&format!("{INFRA}/tls-checks-certificate"))?;
    let groups: &[(&str, &[&str], bool, &str)] = &[
        (
            "gw-tlsroute-exact-hostname-x-1",
            &["tlsroute-more-specific-wc-hostname-x-1"],
            false,
            "non.matching.com",
        ),
        (
            "gw-tlsroute-more-specific-wc-hostname-x-2",
            &[
                "tlsroute-exact-hostname-x-2",
                "tlsroute-less-specific-wc-hostname-x-2",
            ],
            true,
            "non.matching.com",
        ),
        (
            "gw-tlsroute-less-specific-wc-hostname-x-3",
            &[
                "tlsroute-exact-hostname-x-3",
                "tlsroute-more-specific-wc-hostname-x-3",
            ],
            true,
            "non.matching.com",
        ),
        (
            "gw-tlsroute-empty-hostname-x-4",
            &[
                "tlsroute-exact-hostname-x-4",
                "tlsroute-less-specific-wc-hostname-x-4",
            ],
            true,
            "non.matching.org",
        ),
    ];
    for (gw, routes, second, rejected) in groups {
        let gw = nn(INFRA, gw);
        let routes: Vec<Nn> = routes.iter().map(|r| nn(INFRA, r)).collect();
        let (addr, _) =
            gateway_and_tls_routes_accepted(ctx, &GatewayRef::new(gw.clone()), &routes).await?;
        for r in &routes {
            route_must_have_condition(
                ctx,
                "TLSRoute",
                r,
                &gw,
                cond("ResolvedRefs", "True", "ResolvedRefs"),
            )
            .await?;
        }
        let c = case("abc.example.com", "/").to("tls-backend", INFRA);
        expect_tls_response(ctx, &addr, &cert, None, "abc.example.com", &c)
            .await
            .with_context(|| format!("Gateway {gw}: abc.example.com should reach tls-backend"))?;
        if *second {
            let c = case("other.example.com", "/").to("tls-backend-2", INFRA);
            expect_tls_response(ctx, &addr, &cert, None, "other.example.com", &c)
                .await
                .with_context(|| {
                    format!("Gateway {gw}: other.example.com should reach tls-backend-2")
                })?;
        }
        expect_tls_rejection(ctx, &addr, rejected)
            .await
            .with_context(|| format!("Gateway {gw}"))?;
    }
    Ok(())
});

fn accepted_parent(ctx: &Ctx, gw: &Nn) -> ExpParent {
    ExpParent::gateway(ctx, gw, None, vec![cond("Accepted", "True", "Accepted")])
}

test_fn!(tcproute_multiple_routes_attachment, |ctx| {
    let gw = nn(INFRA, "tcp-multi-route-attach-gateway");
    let older = nn(INFRA, "tcproute-attach-older");
    let newer = nn(INFRA, "tcproute-attach-newer");
    namespaces_must_be_ready(ctx, &[INFRA]).await?;
    let addr = gateway_and_routes_must_be_accepted(
        ctx,
        "TCPRoute",
        &GatewayRef::with_listeners(gw.clone(), &["tcp"]),
        true,
        std::slice::from_ref(&older),
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    ctx.apply_docs(
        "newer-route.yaml",
        vec![json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "TCPRoute",
            "metadata": {"name": newer.name, "namespace": newer.namespace},
            "spec": {
                "parentRefs": [{"name": gw.name, "sectionName": "tcp"}],
                "rules": [{"backendRefs": [{"name": "tcp-attach-backend-2", "port": 3000}]}],
            },
        })],
    )
    .await?;
    let accepted = cond("Accepted", "True", "Accepted");
    route_must_have_condition(ctx, "TCPRoute", &older, &gw, accepted.clone()).await?;
    route_must_have_condition(ctx, "TCPRoute", &newer, &gw, accepted).await?;
    gateway_status_must_have_listeners(
        ctx,
        &gw,
        vec![listener(
            "tcp",
            &["TCPRoute"],
            vec![cond("Accepted", "True", "Accepted")],
            2,
        )],
    )
    .await?;
    expect_tcp_response(
        ctx,
        &addr,
        None,
        &tcp_expected("tcp-attach-backend-1", INFRA),
    )
    .await?;
    for i in 0..100 {
        let pod = echo_send_once(&addr, Duration::from_secs(5))
            .await
            .with_context(|| format!("TCP echo request {}/100 failed", i + 1))?;
        if pod.starts_with("tcp-attach-backend-2-") {
            bail!(
                "request {}/100 reached newer route backend {pod:?}; only the oldest route should be attached",
                i + 1
            );
        }
        if !pod.starts_with("tcp-attach-backend-1-") {
            bail!("request {}/100 reached unexpected backend {pod:?}", i + 1);
        }
    }
    Ok(())
});

test_fn!(tcproute_parentref_attach_all, |ctx| {
    let gw = nn(INFRA, "tcp-attach-all-gateway");
    let route = nn(INFRA, "tcp-route-attach-all");
    namespaces_must_be_ready(ctx, &[INFRA]).await?;
    route_must_have_parents(
        ctx,
        "TCPRoute",
        &route,
        vec![accepted_parent(ctx, &gw)],
        false,
    )
    .await?;
    for l in ["one", "two", "three", "four"] {
        let addr =
            wait_for_gateway_address(ctx, &GatewayRef::with_listeners(gw.clone(), &[l])).await?;
        expect_tcp_response(
            ctx,
            &addr,
            None,
            &tcp_expected("tcp-echo-attach-all", INFRA),
        )
        .await
        .with_context(|| format!("listener {l}"))?;
    }
    Ok(())
});

test_fn!(tcproute_parentref_port_and_section_name, |ctx| {
    let gw = nn(INFRA, "tcp-multi-listener-gateway");
    namespaces_must_be_ready(ctx, &[INFRA]).await?;
    for (route, l, backend) in [
        ("tcp-route-by-port", "one", "tcp-echo-one"),
        ("tcp-route-by-section", "two", "tcp-echo-two"),
        ("tcp-route-by-section-and-port", "three", "tcp-echo-three"),
    ] {
        route_must_have_parents(
            ctx,
            "TCPRoute",
            &nn(INFRA, route),
            vec![accepted_parent(ctx, &gw)],
            false,
        )
        .await?;
        let addr =
            wait_for_gateway_address(ctx, &GatewayRef::with_listeners(gw.clone(), &[l])).await?;
        expect_tcp_response(ctx, &addr, None, &tcp_expected(backend, INFRA))
            .await
            .with_context(|| format!("TCPRoute {route}"))?;
    }
    Ok(())
});

test_fn!(tcproute_reference_grant, |ctx| {
    let route = nn(INFRA, "tcp-reference-grant");
    let gw = nn(INFRA, "tcp-reference-grant-gateway");
    namespaces_must_be_ready(ctx, &[INFRA, WEB]).await?;
    let addr = gateway_and_routes_must_be_accepted(
        ctx,
        "TCPRoute",
        &GatewayRef::with_listeners(gw.clone(), &["tcp"]),
        true,
        std::slice::from_ref(&route),
    )
    .await?;
    expect_tcp_response(
        ctx,
        &addr,
        None,
        &tcp_expected("tcp-reference-grant-backend", WEB),
    )
    .await?;
    ctx.delete("ReferenceGrant", &nn(WEB, "tcp-reference-grant"))?;
    route_must_have_condition(
        ctx,
        "TCPRoute",
        &route,
        &gw,
        cond("ResolvedRefs", "False", "RefNotPermitted"),
    )
    .await
});

test_fn!(tcproute_weighted_routing, |ctx| {
    let gw = nn(INFRA, "tcp-weighted-gateway");
    let route = nn(INFRA, "tcp-weighted-route");
    namespaces_must_be_ready(ctx, &[INFRA]).await?;
    let addr = gateway_and_routes_must_be_accepted(
        ctx,
        "TCPRoute",
        &GatewayRef::with_listeners(gw, &["tcp"]),
        true,
        std::slice::from_ref(&route),
    )
    .await?;
    let expected = [
        ("tcp-backend-v1", 0.7),
        ("tcp-backend-v2", 0.3),
        ("tcp-backend-v3", 0.0),
    ];
    let mut last = String::new();
    for _ in 0..10 {
        match tcp_distribution(&addr, &expected).await {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
    }
    bail!("TCP weighted distribution did not converge within tolerance: {last}")
});

async fn tcp_distribution(addr: &str, expected: &[(&str, f64)]) -> Result<(), String> {
    const TOTAL: usize = 500;
    let mut seen: BTreeMap<String, f64> = BTreeMap::new();
    let mut sent = 0;
    while sent < TOTAL {
        let mut batch = tokio::task::JoinSet::new();
        for _ in 0..10.min(TOTAL - sent) {
            let addr = addr.to_string();
            batch.spawn(async move { echo_send_once(&addr, Duration::from_secs(10)).await });
        }
        sent += batch.len();
        while let Some(r) = batch.join_next().await {
            let pod = r
                .map_err(|e| e.to_string())?
                .map_err(|e| format!("{e:#}"))?;
            let backend = crate::weights::backend_of(&pod);
            if !expected.iter().any(|(b, _)| *b == backend) {
                return Err(format!("request was handled by an unexpected pod {pod:?}"));
            }
            *seen.entry(backend).or_default() += 1.0;
        }
    }
    crate::weights::check_distribution(&seen, expected, TOTAL)
}

fn terminated() -> TcpExpected {
    TcpExpected {
        backend_is_tls: false,
        backend: "tcp-backend".into(),
        namespace: INFRA.into(),
        hostname: String::new(),
    }
}

test_fn!(tlsroute_terminate_simple_same_namespace, |ctx| {
    let route = nn(INFRA, "tlsroute-terminated-test");
    let gw = nn(INFRA, "gateway-tlsroute-terminate");
    namespaces_must_be_ready(ctx, &[INFRA]).await?;
    let (addr, hostnames) =
        gateway_and_tls_routes_accepted(ctx, &GatewayRef::new(gw), std::slice::from_ref(&route))
            .await?;
    if hostnames.len() != 1 {
        bail!(
            "unexpected error in test configuration, found {} hostnames",
            hostnames.len()
        );
    }
    let ca = ctx.cert_pem(&format!("{INFRA}/tls-checks-ca-certificate"))?;
    expect_tcp_response(ctx, &addr, Some((&ca, &hostnames[0])), &terminated())
        .await
        .context("Simple TLS request matching terminated TLSRoute should reach tcp-backend with plain text")
});

test_fn!(tlsroute_mixed_termination_same_namespace, |ctx| {
    let terminate = nn(INFRA, "gateway-conformance-mixed-terminateroute");
    let passthrough = nn(INFRA, "gateway-conformance-mixed-passthroughroute");
    let gw = nn(INFRA, "gateway-tlsroute-mixed-termination");
    namespaces_must_be_ready(ctx, &[INFRA]).await?;
    let (addr, pass_hosts) = gateway_and_tls_routes_accepted(
        ctx,
        &GatewayRef::new(gw.clone()),
        std::slice::from_ref(&passthrough),
    )
    .await?;
    let ok = |name: &str| {
        listener(
            name,
            &["TLSRoute"],
            vec![cond("Accepted", "True", "Accepted")],
            1,
        )
    };
    gateway_status_must_have_listeners(ctx, &gw, vec![ok("tls-terminate"), ok("tls-passthrough")])
        .await?;
    if pass_hosts.len() != 1 {
        bail!(
            "unexpected error in test configuration, found {} passthrough hostnames",
            pass_hosts.len()
        );
    }
    let (_, term_hosts) = gateway_and_tls_routes_accepted(
        ctx,
        &GatewayRef::new(gw),
        std::slice::from_ref(&terminate),
    )
    .await?;
    if term_hosts.len() != 1 {
        bail!(
            "unexpected error in test configuration, found {} terminate hostnames",
            term_hosts.len()
        );
    }
    let ca = ctx.cert_pem(&format!("{INFRA}/tls-checks-ca-certificate"))?;
    expect_tcp_response(ctx, &addr, Some((&ca, &term_hosts[0])), &terminated())
        .await
        .context(
            "Simple TLS request matching terminated TLSRoute should reach tcp-backend unencrypted",
        )?;
    expect_tcp_response(
        ctx,
        &addr,
        Some((&ca, &pass_hosts[0])),
        &TcpExpected {
            backend_is_tls: true,
            backend: "tcp-backend".into(),
            namespace: INFRA.into(),
            hostname: pass_hosts[0].clone(),
        },
    )
    .await
    .context("Simple TLS request matching TLSRoute Passthrough should reach infra-backend")
});
