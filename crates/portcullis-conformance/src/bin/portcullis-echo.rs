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
    let grpc = std::env::var("GRPC_ECHO_SERVER").is_ok_and(|v| !v.is_empty());
    runtime.block_on(async move {
        if grpc {
            echo::grpc::run(config).await
        } else {
            echo::run(config).await
        }
    })?;
    Ok(())
}
