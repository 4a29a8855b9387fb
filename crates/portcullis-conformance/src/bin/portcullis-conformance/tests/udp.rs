//! UDPRoute traffic tests (upstream tests/udproute-*.go and utils/udp).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use portcullis_conformance::echo::udp::UdpEchoResponse;
use serde_json::json;
use tokio::net::UdpSocket;

use super::{APP, INFRA};
use crate::helpers::*;
use crate::status::{ExpParent, GatewayRef, Nn, cond, listener, nn};
use crate::suite::{BoxFut, Ctx};

async fn send_once(addr: &str, payload: &[u8], timeout: Duration) -> anyhow::Result<Vec<u8>> {
    let socket = UdpSocket::bind("0.0.0.0:0").await?;
    socket.connect(addr).await?;
    socket.send(payload).await?;
    let mut buf = vec![0u8; 4096];
    let n = tokio::time::timeout(timeout, socket.recv(&mut buf))
        .await
        .context("reading UDP response: timeout")??;
    buf.truncate(n);
    Ok(buf)
}

async fn echo_pod(addr: &str, timeout: Duration) -> anyhow::Result<UdpEchoResponse> {
    let reply = send_once(addr, b"gateway-api-conformance-udp-weight\n", timeout).await?;
    let resp: UdpEchoResponse = serde_json::from_slice(&reply).with_context(|| {
        format!(
            "decoding UDP echo response {:?}",
            String::from_utf8_lossy(&reply)
        )
    })?;
    if resp.pod.is_empty() {
        bail!("UDP echo response missing pod name");
    }
    Ok(resp)
}

/// upstream udp.ExpectEchoResponseFromBackend (empty service/namespace: any answer).
async fn expect_echo(ctx: &Ctx, addr: &str, service: &str, namespace: &str) -> anyhow::Result<()> {
    let deadline = Instant::now() + ctx.timeout;
    let mut last = String::new();
    while Instant::now() < deadline {
        match send_once(
            addr,
            b"gateway-api-conformance-udp-echo",
            Duration::from_secs(2),
        )
        .await
        {
            Err(e) => last = format!("{e:#}"),
            Ok(reply) if service.is_empty() && namespace.is_empty() => {
                let _ = reply;
                return Ok(());
            }
            Ok(reply) => match serde_json::from_slice::<UdpEchoResponse>(&reply) {
                Err(e) => last = format!("failed to decode UDP echo response: {e}"),
                Ok(r) if !service.is_empty() && r.service != service => {
                    last = format!(
                        "UDP echo response service={:?} did not match expected {service:?} (pod {})",
                        r.service, r.pod
                    )
                }
                Ok(r) if !namespace.is_empty() && r.namespace != namespace => {
                    last = format!(
                        "UDP echo response namespace={:?} did not match expected {namespace:?}",
                        r.namespace
                    )
                }
                Ok(_) => return Ok(()),
            },
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    bail!("UDP echo probe never succeeded against {addr}: {last}")
}

async fn udp_accepted(ctx: &Ctx, gw: GatewayRef, route: &Nn) -> anyhow::Result<String> {
    gateway_and_routes_must_be_accepted(ctx, "UDPRoute", &gw, true, std::slice::from_ref(route))
        .await
}

fn dns_query(id: u16, name: &str) -> Vec<u8> {
    let mut q = id.to_be_bytes().to_vec();
    q.extend_from_slice(&[0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]);
    for label in name.trim_end_matches('.').split('.') {
        q.push(label.len() as u8);
        q.extend_from_slice(label.as_bytes());
    }
    q.extend_from_slice(&[0, 0, 1, 0, 1]);
    q
}

test_fn!(udproute_simple, |ctx| {
    let route = nn(INFRA, "udp-coredns");
    let gw = nn(INFRA, "udp-gateway");
    let addr = udp_accepted(ctx, GatewayRef::new(gw), &route).await?;
    let deadline = Instant::now() + ctx.timeout;
    let mut last = String::new();
    while Instant::now() < deadline {
        let id: u16 = rand::random();
        match send_once(
            &addr,
            &dns_query(id, "foo.bar.com."),
            Duration::from_secs(2),
        )
        .await
        {
            Ok(r) if r.len() >= 12 && r[..2] == id.to_be_bytes() && r[2] & 0x80 != 0 => {
                return Ok(());
            }
            Ok(r) => last = format!("not a DNS response to the query: {r:?}"),
            Err(e) => last = format!("failed to perform a UDP query: {e:#}"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    bail!("failed to perform DNS query on {addr}: {last}")
});

use crate::weights::backend_of;

test_fn!(udproute_multiple_routes_attachment, |ctx| {
    let gw = nn(INFRA, "udp-multi-route-attach-gateway");
    let older = nn(INFRA, "udproute-attach-older");
    let newer = nn(INFRA, "udproute-attach-newer");
    namespaces_must_be_ready(ctx, &[INFRA]).await?;
    let addr = udp_accepted(
        ctx,
        GatewayRef::with_listeners(gw.clone(), &["udp"]),
        &older,
    )
    .await?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    ctx.apply_docs(
        "newer-route.yaml",
        vec![json!({
            "apiVersion": "gateway.networking.k8s.io/v1",
            "kind": "UDPRoute",
            "metadata": {"name": newer.name, "namespace": newer.namespace},
            "spec": {
                "parentRefs": [{"name": gw.name, "sectionName": "udp"}],
                "rules": [{"backendRefs": [{"name": "udp-attach-backend-2", "port": 8080}]}],
            },
        })],
    )
    .await?;
    let accepted = cond("Accepted", "True", "Accepted");
    route_must_have_condition(ctx, "UDPRoute", &older, &gw, accepted.clone()).await?;
    route_must_have_condition(ctx, "UDPRoute", &newer, &gw, accepted).await?;
    gateway_status_must_have_listeners(
        ctx,
        &gw,
        vec![listener(
            "udp",
            &["UDPRoute"],
            vec![cond("Accepted", "True", "Accepted")],
            2,
        )],
    )
    .await?;
    for i in 0..20 {
        let deadline = Instant::now() + ctx.timeout;
        loop {
            match echo_pod(&addr, Duration::from_secs(2)).await {
                Ok(r) => {
                    let backend = backend_of(&r.pod);
                    if backend != "udp-attach-backend-1" {
                        bail!(
                            "UDP traffic reached unexpected backend {backend:?} (pod {:?}); only udp-attach-backend-1 should receive traffic",
                            r.pod
                        );
                    }
                    break;
                }
                Err(e) if Instant::now() > deadline => bail!("UDP probe {} failed: {e:#}", i + 1),
                Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
            }
        }
    }
    Ok(())
});

fn accepted_parent(ctx: &Ctx, gw: &Nn) -> ExpParent {
    ExpParent::gateway(ctx, gw, None, vec![cond("Accepted", "True", "Accepted")])
}

test_fn!(udproute_parentref_attach_all_listeners, |ctx| {
    let gw = nn(INFRA, "udp-attach-all-listeners-gateway");
    let route = nn(INFRA, "udp-route-attach-all");
    namespaces_must_be_ready(ctx, &[INFRA]).await?;
    route_must_have_parents(
        ctx,
        "UDPRoute",
        &route,
        vec![accepted_parent(ctx, &gw)],
        false,
    )
    .await?;
    let ready = || {
        vec![
            cond("Accepted", "True", ""),
            cond("ResolvedRefs", "True", ""),
        ]
    };
    gateway_status_must_have_listeners(
        ctx,
        &gw,
        ["udp-1", "udp-2", "udp-3"]
            .iter()
            .map(|l| listener(l, &["UDPRoute"], ready(), 1))
            .collect(),
    )
    .await?;
    for l in ["udp-1", "udp-2", "udp-3"] {
        let addr =
            wait_for_gateway_address(ctx, &GatewayRef::with_listeners(gw.clone(), &[l])).await?;
        expect_echo(ctx, &addr, "udp-echo-attach-all", INFRA)
            .await
            .with_context(|| format!("UDP echo via listener {l}"))?;
    }
    Ok(())
});

test_fn!(udproute_parentref_port_and_section_name, |ctx| {
    let gw = nn(INFRA, "udp-multi-listener-gateway");
    namespaces_must_be_ready(ctx, &[INFRA]).await?;
    for (route, l, backend) in [
        ("udp-route-by-port", "by-port", "udp-echo-by-port"),
        ("udp-route-by-section", "by-section", "udp-echo-by-section"),
        (
            "udp-route-by-section-and-port",
            "by-section-and-port",
            "udp-echo-by-section-and-port",
        ),
    ] {
        route_must_have_parents(
            ctx,
            "UDPRoute",
            &nn(INFRA, route),
            vec![accepted_parent(ctx, &gw)],
            false,
        )
        .await?;
        let addr =
            wait_for_gateway_address(ctx, &GatewayRef::with_listeners(gw.clone(), &[l])).await?;
        expect_echo(ctx, &addr, backend, INFRA)
            .await
            .with_context(|| format!("UDPRoute {route}"))?;
    }
    Ok(())
});

test_fn!(udproute_reference_grant, |ctx| {
    let route = nn(INFRA, "udp-route-reference-grant");
    let gw = nn(INFRA, "udp-gateway-reference-grant");
    namespaces_must_be_ready(ctx, &[INFRA]).await?;
    let addr = udp_accepted(ctx, GatewayRef::new(gw.clone()), &route).await?;
    route_must_have_condition(
        ctx,
        "UDPRoute",
        &route,
        &gw,
        cond("ResolvedRefs", "True", "ResolvedRefs"),
    )
    .await?;
    expect_echo(ctx, &addr, "", "").await?;
    ctx.delete("ReferenceGrant", &nn(APP, "udp-reference-grant"))?;
    route_must_have_condition(
        ctx,
        "UDPRoute",
        &route,
        &gw,
        cond("ResolvedRefs", "False", "RefNotPermitted"),
    )
    .await
});

test_fn!(udproute_weighted_routing, |ctx| {
    let gw = nn(INFRA, "udp-weighted-gateway");
    let route = nn(INFRA, "udp-weighted-route");
    namespaces_must_be_ready(ctx, &[INFRA]).await?;
    let addr = udp_accepted(ctx, GatewayRef::with_listeners(gw, &["udp"]), &route).await?;
    expect_echo(ctx, &addr, "", "").await?;
    let expected = [
        ("udp-backend-v1", 0.7),
        ("udp-backend-v2", 0.3),
        ("udp-backend-v3", 0.0),
    ];
    let mut last = String::new();
    'attempts: for _ in 0..10 {
        let mut seen: BTreeMap<String, f64> = BTreeMap::new();
        for _ in 0..50 {
            let mut batch = tokio::task::JoinSet::new();
            for _ in 0..10 {
                let addr = addr.clone();
                batch.spawn(async move { echo_pod(&addr, Duration::from_secs(2)).await });
            }
            while let Some(r) = batch.join_next().await {
                match r? {
                    Ok(resp) => *seen.entry(backend_of(&resp.pod)).or_default() += 1.0,
                    Err(e) => {
                        last = format!("{e:#}");
                        continue 'attempts;
                    }
                }
            }
        }
        match crate::weights::check_distribution(&seen, &expected, 500) {
            Ok(()) => return Ok(()),
            Err(e) => last = e,
        }
    }
    bail!("UDP weighted distribution did not converge within tolerance: {last}")
});
