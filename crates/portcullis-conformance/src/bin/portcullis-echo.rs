//! `portcullis-echo`: the conformance echo backend (see `portcullis_conformance::echo`).

use std::net::IpAddr;

use anyhow::Context;
use clap::Parser;
use portcullis_conformance::echo::{self, EchoConfig};

/// Echo backend compatible with the upstream Gateway API `echo-basic` image.
/// Ports, pod context and TLS material come from the same environment variables
/// as upstream; flags override them.
#[derive(Debug, Parser)]
#[command(name = "portcullis-echo", version)]
struct Args {
    /// Address to bind every listener to.
    #[arg(long, default_value = "127.0.0.1")]
    bind: IpAddr,
    /// Pod name reported in responses (overrides POD_NAME).
    #[arg(long)]
    pod_name: Option<String>,
    /// Namespace reported in responses (overrides NAMESPACE).
    #[arg(long)]
    namespace: Option<String>,
    /// Plain HTTP port (overrides HTTP_PORT, default 3000).
    #[arg(long)]
    http_port: Option<u16>,
    /// h2c port (overrides H2C_PORT, default 3001).
    #[arg(long)]
    h2c_port: Option<u16>,
    /// HTTPS port (overrides HTTPS_PORT, default 8443).
    #[arg(long)]
    https_port: Option<u16>,
    /// Run a minimal DNS responder on this UDP port instead (stand-in for coredns).
    #[arg(long)]
    dns_port: Option<u16>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let mut config = EchoConfig::from_env(args.bind, |name| std::env::var(name).ok())?;
    if let Some(pod) = args.pod_name {
        config.context.pod = pod;
    }
    if let Some(ns) = args.namespace {
        config.context.namespace = ns;
    }
    if let Some(p) = args.http_port {
        config.http_port = p;
    }
    if let Some(p) = args.h2c_port {
        config.h2c_port = p;
    }
    if let Some(p) = args.https_port {
        config.https_port = p;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("building tokio runtime")?;
    let flag = |name: &str| std::env::var(name).is_ok_and(|v| !v.is_empty());
    if let Some(port) = args.dns_port {
        runtime.block_on(echo::udp::run_dns(std::net::SocketAddr::new(
            config.bind,
            port,
        )))?;
        return Ok(());
    }
    if flag("UDP_ECHO_SERVER") {
        let port: u16 = match std::env::var("UDP_PORT").ok().filter(|v| !v.is_empty()) {
            Some(v) => v.parse().with_context(|| format!("UDP_PORT={v}"))?,
            None => 8080,
        };
        runtime.block_on(echo::udp::run_echo(
            std::net::SocketAddr::new(config.bind, port),
            config.context,
        ))?;
        return Ok(());
    }
    if flag("TCP_ECHO_SERVER") {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let port = |name: &str, default: u16| -> anyhow::Result<u16> {
            Ok(match var(name) {
                Some(v) => v
                    .parse()
                    .with_context(|| format!("non-integer value in {name}: {v}"))?,
                None => default,
            })
        };
        let key = var("TLS_SERVER_PRIV_KEY").or_else(|| var("TLS_SERVER_PRIVKEY"));
        let tcp = echo::tcp::TcpEchoConfig {
            bind: config.bind,
            tcp_port: port("TCP_PORT", 3000)?,
            tls_port: port("TLS_PORT", 8443)?,
            context: config.context,
            tls: var("TLS_SERVER_CERT")
                .zip(key)
                .map(|(c, k)| (c.into(), k.into())),
        };
        runtime.block_on(echo::tcp::run(tcp))?;
        return Ok(());
    }
    let grpc = flag("GRPC_ECHO_SERVER");
    runtime.block_on(async move {
        if grpc {
            echo::grpc::run(config).await
        } else {
            echo::run(config).await
        }
    })?;
    Ok(())
}
