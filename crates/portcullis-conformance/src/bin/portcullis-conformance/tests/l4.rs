//! TLSRoute, TCPRoute and UDPRoute tests that need no TCP/UDP echo backend:
//! statuses, and TLS connections that must be rejected.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use super::{INFRA, WEB};
use crate::helpers::*;
use crate::status::{ExpListener, GatewayRef, Nn, cond, listener, nn};
use crate::suite::{BoxFut, Ctx};

/// upstream GatewayAndTLSRoutesMustBeAccepted: the address and the hostnames of
/// the last route.
pub async fn gateway_and_tls_routes_accepted(
    ctx: &Ctx,
    gw: &GatewayRef,
    routes: &[Nn],
) -> anyhow::Result<(String, Vec<String>)> {
    let addr = wait_for_gateway_address(ctx, gw).await?;
    let mut hostnames = Vec::new();
    for route in routes {
        let namespace_required = route.namespace != gw.nn.namespace;
        let parents = gw
            .listener_names
            .iter()
            .map(|l| {
                let mut p = crate::status::ExpParent::gateway(
                    ctx,
                    &gw.nn,
                    l.as_deref(),
                    vec![cond("Accepted", "True", "Accepted")],
                );
                p.section_name = l.clone();
                p
            })
            .collect();
        route_must_have_parents(ctx, "TLSRoute", route, parents, namespace_required).await?;
        let spec = ctx
            .spec_of("TLSRoute", route)
            .context("TLSRoute manifest")?;
        hostnames = crate::status::arr(&spec, "/spec/hostnames")
            .iter()
            .filter_map(|h| h.as_str().map(str::to_string))
            .collect();
    }
    Ok((addr, hostnames))
}

#[derive(Debug)]
struct AcceptAny;

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn verify_tls13_signature(
        &self,
        _: &[u8],
        _: &CertificateDer<'_>,
        _: &rustls::DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Ok(HandshakeSignatureValid::assertion())
    }
    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        rustls::crypto::aws_lc_rs::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// upstream tls.MakeTLSConnectionAndExpectEventuallyConnectionRejection: the
/// TLS handshake must end in EOF or a connection reset.
pub async fn expect_tls_rejection(ctx: &Ctx, addr: &str, server_name: &str) -> anyhow::Result<()> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny))
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let deadline = tokio::time::Instant::now() + ctx.timeout;
    let mut last: String;
    loop {
        match tokio::net::TcpStream::connect(addr).await {
            Err(e) => last = format!("client could not connect: {e}"),
            Ok(tcp) => {
                let name = ServerName::try_from(server_name.to_string())?;
                match tokio::time::timeout(Duration::from_secs(10), connector.connect(name, tcp))
                    .await
                {
                    Ok(Err(e))
                        if matches!(
                            e.kind(),
                            std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
                        ) =>
                    {
                        return Ok(());
                    }
                    Ok(Err(e)) => last = format!("client could not connect: {e}"),
                    Ok(Ok(_)) => last = "client could connect".into(),
                    Err(_) => last = "handshake timed out".into(),
                }
            }
        }
        if tokio::time::Instant::now() > deadline {
            bail!("TLS connection to {addr} ({server_name}) was not rejected: {last}");
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

async fn tls_invalid_backend(ctx: &Ctx, route: &str, gw: &str, reason: &str) -> anyhow::Result<()> {
    let route = nn(INFRA, route);
    let gw = nn(INFRA, gw);
    namespaces_must_be_ready(ctx, &[INFRA]).await?;
    let (addr, hostnames) = gateway_and_tls_routes_accepted(
        ctx,
        &GatewayRef::new(gw.clone()),
        std::slice::from_ref(&route),
    )
    .await?;
    route_must_have_condition(
        ctx,
        "TLSRoute",
        &route,
        &gw,
        cond("ResolvedRefs", "False", reason),
    )
    .await?;
    let host = hostnames.first().context("TLSRoute without hostnames")?;
    expect_tls_rejection(ctx, &addr, host).await
}

test_fn!(tlsroute_invalid_backendref_nonexistent, |ctx| {
    tls_invalid_backend(
        ctx,
        "invalid-backend-ref-nonexistent",
        "gateway-tlsroute-invalid-backend-ref-nonexistent",
        "BackendNotFound",
    )
    .await
});

test_fn!(tlsroute_invalid_backendref_unknown_kind, |ctx| {
    tls_invalid_backend(
        ctx,
        "invalid-backend-ref-unknown-kind",
        "gateway-tlsroute-invalid-backend-ref-unknown-kind",
        "InvalidKind",
    )
    .await
});

test_fn!(tlsroute_invalid_no_matching_listener_hostname, |ctx| {
    namespaces_must_be_ready(ctx, &[INFRA]).await?;
    let accepted = cond("Accepted", "False", "NoMatchingListenerHostname");
    let (r1, r2) = (
        nn(INFRA, "tlsroute-hostname-mismatch-1"),
        nn(INFRA, "tlsroute-hostname-mismatch-2"),
    );
    let (exact, wildcard) = (
        nn(INFRA, "gateway-tls-exact-hostname"),
        nn(INFRA, "gateway-tls-wildcard-hostname"),
    );
    route_must_have_condition(ctx, "TLSRoute", &r1, &exact, accepted.clone()).await?;
    route_must_have_condition(ctx, "TLSRoute", &r2, &wildcard, accepted).await?;
    route_must_have_no_accepted_parents(ctx, "TLSRoute", &r1).await?;
    route_must_have_no_accepted_parents(ctx, "TLSRoute", &r2).await?;
    gateway_must_have_zero_routes(ctx, &exact).await?;
    gateway_must_have_zero_routes(ctx, &wildcard).await
});

test_fn!(tlsroute_invalid_no_matching_listener, |ctx| {
    namespaces_must_be_ready(ctx, &[INFRA]).await?;
    let http_route = nn(INFRA, "tlsroute-not-allowed-protocol-http");
    let https_route = nn(INFRA, "tlsroute-not-allowed-protocol-https");
    let section_route = nn(INFRA, "tlsroute-no-matching-section-name");
    let passthrough = nn(INFRA, "gateway-tlsroute-tls-passthrough-only");
    let http_gw = nn(INFRA, "gateway-tlsroute-http-only");
    let https_gw = nn(INFRA, "gateway-tlsroute-https-only");
    let not_allowed = cond("Accepted", "False", "NotAllowedByListeners");
    route_must_have_condition(ctx, "TLSRoute", &http_route, &http_gw, not_allowed.clone()).await?;
    route_must_have_condition(ctx, "TLSRoute", &https_route, &https_gw, not_allowed).await?;
    route_must_have_condition(
        ctx,
        "TLSRoute",
        &section_route,
        &passthrough,
        cond("Accepted", "False", "NoMatchingParent"),
    )
    .await?;
    for r in [&http_route, &https_route, &section_route] {
        route_must_have_no_accepted_parents(ctx, "TLSRoute", r).await?;
    }
    gateway_must_have_zero_routes(ctx, &http_gw).await?;
    gateway_must_have_zero_routes(ctx, &https_gw).await
});

test_fn!(tlsroute_invalid_reference_grant, |ctx| {
    let route = nn(INFRA, "gateway-conformance-infra-test");
    let gw = nn(INFRA, "gateway-tlsroute-referencegrant");
    gateway_and_tls_routes_accepted(
        ctx,
        &GatewayRef::new(gw.clone()),
        std::slice::from_ref(&route),
    )
    .await?;
    route_must_have_condition(
        ctx,
        "TLSRoute",
        &route,
        &gw,
        cond("ResolvedRefs", "False", "RefNotPermitted"),
    )
    .await
});

test_fn!(tlsroute_listener_passthrough_supported_kinds, |ctx| {
    gateway_status_must_have_listeners(
        ctx,
        &nn(INFRA, "gateway-tlsroute-passthrough-supported-kind"),
        vec![listener(
            "tls-passthrough",
            &["TLSRoute"],
            vec![cond("ResolvedRefs", "False", "InvalidRouteKinds")],
            0,
        )],
    )
    .await
});

fn no_kinds(name: &str, c: Vec<crate::status::Cond>) -> ExpListener {
    ExpListener {
        name: name.into(),
        supported_kinds: Vec::new(),
        conditions: c,
        attached_routes: 0,
    }
}

test_fn!(tlsroute_listener_terminate_not_supported, |ctx| {
    if ctx.supported.contains("TLSRouteModeTerminate") {
        return Ok(());
    }
    gateway_status_must_have_listeners(
        ctx,
        &nn(INFRA, "gateway-tlsroute-terminate-unsupported"),
        vec![no_kinds(
            "tls-terminate",
            vec![cond("Accepted", "False", "UnsupportedValue")],
        )],
    )
    .await
});

test_fn!(tlsroute_listener_terminate_supported_kinds, |ctx| {
    gateway_status_must_have_listeners(
        ctx,
        &nn(INFRA, "gateway-tlsroute-terminate-supported"),
        vec![listener(
            "tls-terminate",
            &["TLSRoute"],
            vec![cond("Accepted", "True", "Accepted")],
            0,
        )],
    )
    .await
});

test_fn!(tlsroute_listener_mixed_termination_not_supported, |ctx| {
    if ctx.supported.contains("TLSRouteModeMixed") {
        return Ok(());
    }
    gateway_status_must_have_listeners(
        ctx,
        &nn(INFRA, "gateway-tlsroute-mixed-termination-not-supported"),
        vec![
            no_kinds(
                "tls-terminate",
                vec![cond("Accepted", "False", "ProtocolConflict")],
            ),
            no_kinds(
                "tls-passthrough",
                vec![cond("Accepted", "False", "ProtocolConflict")],
            ),
        ],
    )
    .await
});

test_fn!(tcproute_invalid_backendref_nonexistent, |ctx| {
    namespaces_must_be_ready(ctx, &[INFRA]).await?;
    route_must_have_condition(
        ctx,
        "TCPRoute",
        &nn(INFRA, "tcp-route-invalid-backend-ref-nonexistent"),
        &nn(INFRA, "tcp-gateway-invalid-backend"),
        cond("ResolvedRefs", "False", "BackendNotFound"),
    )
    .await
});

test_fn!(tcproute_invalid_cross_namespace_backend_ref, |ctx| {
    namespaces_must_be_ready(ctx, &[INFRA, WEB]).await?;
    let route = nn(INFRA, "tcp-invalid-cross-namespace-backend-ref");
    let gw = nn(INFRA, "tcp-invalid-cross-namespace-backend-ref-gateway");
    gateway_and_routes_must_be_accepted(
        ctx,
        "TCPRoute",
        &GatewayRef::with_listeners(gw.clone(), &["tcp"]),
        true,
        std::slice::from_ref(&route),
    )
    .await?;
    route_must_have_condition(
        ctx,
        "TCPRoute",
        &route,
        &gw,
        cond("ResolvedRefs", "False", "RefNotPermitted"),
    )
    .await
});

test_fn!(tcproute_invalid_non_tcp_listener, |ctx| {
    namespaces_must_be_ready(ctx, &[INFRA]).await?;
    let gw = nn(INFRA, "tcp-mixed-protocol-gateway");
    route_must_have_condition(
        ctx,
        "TCPRoute",
        &nn(INFRA, "tcp-route"),
        &gw,
        cond("Accepted", "False", "NotAllowedByListeners"),
    )
    .await?;
    gateway_must_have_zero_routes(ctx, &gw).await
});

test_fn!(udproute_invalid_backendref_nonexistent, |ctx| {
    namespaces_must_be_ready(ctx, &[INFRA]).await?;
    route_must_have_condition(
        ctx,
        "UDPRoute",
        &nn(INFRA, "udp-route-invalid-backend-ref-nonexistent"),
        &nn(INFRA, "udp-gateway-invalid-backend"),
        cond("ResolvedRefs", "False", "BackendNotFound"),
    )
    .await
});

test_fn!(udproute_invalid_cross_namespace_backend_ref, |ctx| {
    namespaces_must_be_ready(ctx, &[INFRA]).await?;
    let route = nn(INFRA, "udp-route-invalid-cross-namespace-backend-ref");
    let gw = nn(INFRA, "udp-gateway-invalid-cross-namespace-backend-ref");
    gateway_and_routes_must_be_accepted(
        ctx,
        "UDPRoute",
        &GatewayRef::new(gw.clone()),
        true,
        std::slice::from_ref(&route),
    )
    .await?;
    route_must_have_condition(
        ctx,
        "UDPRoute",
        &route,
        &gw,
        cond("ResolvedRefs", "False", "RefNotPermitted"),
    )
    .await
});

test_fn!(udproute_not_allowed_by_listeners, |ctx| {
    if !ctx.supported.contains("TLSRoute") {
        return Ok(());
    }
    let gw = nn(INFRA, "udproute-tls-only-gateway");
    namespaces_must_be_ready(ctx, &[INFRA]).await?;
    route_must_have_condition(
        ctx,
        "UDPRoute",
        &nn(INFRA, "udproute-not-allowed-by-listeners"),
        &gw,
        cond("Accepted", "False", "NotAllowedByListeners"),
    )
    .await?;
    gateway_must_have_zero_routes(ctx, &gw).await
});
