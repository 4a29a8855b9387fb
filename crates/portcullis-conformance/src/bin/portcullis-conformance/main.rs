//! `portcullis-conformance`: runs the upstream Gateway API v1.6.1 conformance
//! scenarios against Portcullis in standalone (file) mode.
//!
//! It writes the upstream base manifests (Deployments replaced by local
//! `portcullis-echo` processes and EndpointSlices), the certificates the
//! upstream suite generates and a GatewayClass into a temporary config
//! directory, starts `portcullis run` on it, and then, test by test, writes the
//! test's manifests, checks statuses (`/status`) and traffic with upstream's
//! expectations, and removes the manifests again.

mod certs;
mod cluster;
mod gotls;
mod grpc;
mod helpers;
mod http;
mod manifests;
mod portcullis;
mod roundtrip;
mod status;
mod suite;
mod tcp;
mod tests;
mod weights;

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use clap::Parser;
use serde_json::{Value, json};

use crate::cluster::Cluster;
use crate::manifests::Applier;
use crate::portcullis::Portcullis;
use crate::suite::{Ctx, Profile, TestDef};

/// Gateway API conformance runner for Portcullis (standalone mode).
#[derive(Debug, Parser)]
#[command(name = "portcullis-conformance", version)]
struct Args {
    /// Comma-separated profiles: gateway-http,gateway-grpc,gateway-tls,gateway-tcp,gateway-udp.
    #[arg(
        long,
        default_value = "gateway-http,gateway-grpc,gateway-tls,gateway-tcp,gateway-udp"
    )]
    profile: String,
    /// Run only the test with this ShortName.
    #[arg(long)]
    run_test: Option<String>,
    /// The portcullis binary.
    #[arg(
        long,
        env = "PORTCULLIS_BIN",
        default_value = "target/debug/portcullis"
    )]
    portcullis: PathBuf,
    /// The portcullis-echo binary (default: next to this binary).
    #[arg(long)]
    echo: Option<PathBuf>,
    /// The upstream Gateway API v1.6.1 conformance manifests (a directory holding
    /// `conformance/`); the default is the vendored copy, relative to the repository root.
    #[arg(long, default_value = "third_party/gateway-api/v1.6.1")]
    upstream_dir: PathBuf,
    /// GatewayClass name the manifests are rewritten to.
    #[arg(long, default_value = "portcullis")]
    gateway_class: String,
    /// controllerName of that GatewayClass.
    #[arg(long, default_value = "portcullis.dev/gateway-controller")]
    controller_name: String,
    /// Run tests whose features the GatewayClass does not claim in status.supportedFeatures.
    #[arg(long)]
    all_features: bool,
    /// Address pool for Gateways.
    #[arg(long, default_value = "127.0.10.0/24")]
    address_pool: String,
    /// Loopback pool for echo pods.
    #[arg(long, default_value = "127.0.20.0/22")]
    backend_pool: String,
    /// Admin address for portcullis (default: a free port on 127.0.0.1).
    #[arg(long)]
    admin: Option<SocketAddr>,
    /// Eventual-consistency timeout per wait, in seconds.
    #[arg(long, default_value_t = 20)]
    timeout: u64,
    /// Upper bound on one test, in seconds.
    #[arg(long, default_value_t = 180)]
    test_timeout: u64,
    /// Skip tests upstream marks provisional.
    #[arg(long)]
    skip_provisional: bool,
    /// Keep the temporary config directory.
    #[arg(long)]
    keep_dir: bool,
    /// Print more (pod stderr, notes).
    #[arg(long, short)]
    verbose: bool,
}

fn parse_pool(s: &str) -> Result<(Ipv4Addr, u8)> {
    let (ip, len) = s.split_once('/').context("pool must be CIDR")?;
    Ok((ip.parse()?, len.parse()?))
}

fn free_port() -> Result<SocketAddr> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    runtime.block_on(async move {
        tokio::select! {
            r = run(args) => match r {
                Ok(true) => ExitCode::SUCCESS,
                Ok(false) => ExitCode::from(1),
                Err(e) => {
                    eprintln!("error: {e:#}");
                    ExitCode::from(2)
                }
            },
            _ = tokio::signal::ctrl_c() => {
                eprintln!("interrupted");
                ExitCode::from(130)
            }
        }
    })
}

fn selected_profiles(spec: &str) -> Result<Vec<&'static Profile>> {
    spec.split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| suite::profile(s).with_context(|| format!("unknown profile {s}")))
        .collect()
}

fn gateway_class_doc(name: &str, controller: &str) -> Value {
    json!({
        "apiVersion": "gateway.networking.k8s.io/v1",
        "kind": "GatewayClass",
        "metadata": {"name": name},
        "spec": {"controllerName": controller},
    })
}

async fn run(args: Args) -> Result<bool> {
    let profiles = selected_profiles(&args.profile)?;
    let all_tests = tests::registry();
    if let Some(name) = &args.run_test
        && !all_tests.iter().any(|t| t.name == name)
    {
        bail!("no test named {name}");
    }
    let selected: Vec<&TestDef> = all_tests
        .iter()
        .filter(|t| profiles.iter().any(|p| suite::in_profile(t, p)))
        .filter(|t| args.run_test.as_deref().is_none_or(|n| n == t.name))
        .collect();
    if selected.is_empty() {
        bail!("no test selected");
    }

    let upstream = args.upstream_dir.clone();
    let base_path = upstream.join("conformance/base/manifests.yaml");
    if !base_path.exists() {
        bail!("{} not found (use --upstream-dir)", base_path.display());
    }
    if !args.portcullis.exists() {
        bail!(
            "portcullis binary {} not found (build it or pass --portcullis)",
            args.portcullis.display()
        );
    }
    let echo_bin = match &args.echo {
        Some(p) => p.clone(),
        None => std::env::current_exe()?
            .parent()
            .context("exe without directory")?
            .join("portcullis-echo"),
    };
    let tmp = tempfile::Builder::new()
        .prefix("portcullis-conformance-")
        .tempdir()?;
    let config_dir = tmp.path().join("config");
    let pods_dir = tmp.path().join("pods");
    std::fs::create_dir_all(&config_dir)?;

    let applier = Applier {
        gateway_class: args.gateway_class.clone(),
        controller_name: args.controller_name.clone(),
        usable_addresses: Vec::new(),
        unusable_addresses: Vec::new(),
    };
    let cluster = Cluster::new(
        echo_bin,
        pods_dir,
        parse_pool(&args.backend_pool)?,
        args.verbose,
    );
    let certs = certs::generate()?;
    let admin = match args.admin {
        Some(a) => a,
        None => free_port()?,
    };
    let mut ctx = Ctx::new(
        admin,
        Duration::from_secs(args.timeout),
        config_dir.clone(),
        upstream.clone(),
        applier,
        cluster,
        certs,
    );

    // Base: GatewayClass, certificates, base manifests with pods and endpoints.
    let mut base = vec![gateway_class_doc(
        &args.gateway_class,
        &args.controller_name,
    )];
    base.extend(ctx.certs.docs.iter().cloned());
    let mut manifests_docs = manifests::load_yaml_file(&base_path)?;
    ctx.applier.prepare(&mut manifests_docs);
    base.extend(manifests_docs);
    let base = ctx.cluster.apply(base, "base").await?;
    manifests::write_docs(&config_dir.join("base/manifests.yaml"), &base)?;
    ctx.base_docs = base;

    let log_path = tmp.path().join("portcullis.log");
    let mut gateway = Portcullis::start(
        &args.portcullis,
        &config_dir,
        &args.address_pool,
        admin,
        log_path,
    )
    .await?;
    let outcome = run_tests(&mut ctx, &mut gateway, &selected, &args).await;
    gateway.stop().await;
    ctx.cluster.shutdown().await;
    if args.keep_dir {
        let kept = tmp.keep();
        eprintln!("kept {}", kept.display());
    }
    outcome
}

async fn run_tests(
    ctx: &mut Ctx,
    gateway: &mut Portcullis,
    selected: &[&TestDef],
    args: &Args,
) -> Result<bool> {
    gateway.wait_ready(Duration::from_secs(30)).await?;
    helpers::gwc_must_have_accepted(ctx, &args.gateway_class, "True")
        .await
        .with_context(|| format!("portcullis log: {}", gateway.log_path.display()))?;
    helpers::namespaces_must_be_ready(
        ctx,
        &[
            "gateway-conformance-infra",
            "gateway-conformance-app-backend",
            "gateway-conformance-web-backend",
        ],
    )
    .await?;
    let mut supported =
        supported_features(ctx, &args.gateway_class, &selected_profile_cores(args)?).await?;
    if args.all_features {
        supported.extend(
            selected
                .iter()
                .flat_map(|t| t.features.iter().map(|f| f.to_string())),
        );
    }
    ctx.supported = supported.clone();
    if args.verbose {
        eprintln!("supported features: {supported:?}");
    }

    let (mut passed, mut failed, mut skipped) = (0, 0, 0);
    for (i, test) in selected.iter().enumerate() {
        if let Some(reason) =
            suite::skip_reason(test, &supported, args.all_features, args.skip_provisional)
        {
            println!("SKIP {}: {reason}", test.name);
            skipped += 1;
            continue;
        }
        let Some(run) = test.run else { continue };
        ctx.begin(test.name);
        let result = tokio::time::timeout(Duration::from_secs(args.test_timeout), async {
            for m in test.manifests {
                ctx.apply(m).await?;
            }
            run(ctx).await
        })
        .await
        .unwrap_or_else(|_| {
            Err(anyhow::anyhow!(
                "test timed out after {}s",
                args.test_timeout
            ))
        });
        let cleanup = ctx.cleanup().await;
        let alive = gateway.alive();
        match (result, cleanup) {
            // A test during which portcullis exited did not pass, whatever it saw.
            (Ok(()), Ok(())) if !alive => {
                println!("FAIL {}: portcullis exited during the test", test.name);
                failed += 1;
            }
            (Ok(()), Ok(())) => {
                println!("PASS {}", test.name);
                passed += 1;
            }
            (Err(e), _) => {
                println!("FAIL {}: {}", test.name, one_line(&format!("{e:#}")));
                failed += 1;
            }
            (Ok(()), Err(e)) => {
                println!(
                    "FAIL {}: cleanup: {}",
                    test.name,
                    one_line(&format!("{e:#}"))
                );
                failed += 1;
            }
        }
        if !alive {
            println!("portcullis exited; log: {}", gateway.log_path.display());
            let rest = not_run(&selected[i + 1..], &supported, args);
            for line in &rest.lines {
                println!("{line}");
            }
            failed += rest.failed;
            skipped += rest.skipped;
            break;
        }
    }
    println!("{passed} passed, {failed} failed, {skipped} skipped");
    Ok(failed == 0)
}

/// What the tests left when portcullis exited count as.
#[derive(Debug, Default, PartialEq, Eq)]
struct NotRun {
    failed: usize,
    skipped: usize,
    /// One `FAIL`/`SKIP` line per test.
    lines: Vec<String>,
}

/// Every test that would have run counts as a failure (so the exit code is
/// 1); tests that would have been skipped stay skipped.
fn not_run(rest: &[&TestDef], supported: &BTreeSet<String>, args: &Args) -> NotRun {
    let mut out = NotRun::default();
    for test in rest {
        if let Some(reason) =
            suite::skip_reason(test, supported, args.all_features, args.skip_provisional)
        {
            out.lines.push(format!("SKIP {}: {reason}", test.name));
            out.skipped += 1;
        } else if test.run.is_some() {
            out.lines
                .push(format!("FAIL {}: not run: portcullis exited", test.name));
            out.failed += 1;
        }
    }
    out
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn selected_profile_cores(args: &Args) -> Result<BTreeSet<String>> {
    Ok(selected_profiles(&args.profile)?
        .iter()
        .flat_map(|p| p.core.iter().map(|f| f.to_string()))
        .collect())
}

/// GatewayClass status.supportedFeatures plus the core features of the selected
/// profiles (using a profile implicitly enables its core features upstream).
async fn supported_features(
    ctx: &Ctx,
    class: &str,
    cores: &BTreeSet<String>,
) -> Result<BTreeSet<String>> {
    let objects = portcullis::status(ctx.admin).await?;
    let gwc = objects
        .iter()
        .find(|o| {
            o.get("kind").and_then(Value::as_str) == Some("GatewayClass")
                && o.pointer("/metadata/name").and_then(Value::as_str) == Some(class)
        })
        .with_context(|| format!("GatewayClass {class} not in /status"))?;
    let mut set: BTreeSet<String> = status::arr(gwc, "/status/supportedFeatures")
        .iter()
        .filter_map(|f| {
            f.get("name")
                .and_then(Value::as_str)
                .or_else(|| f.as_str())
                .map(str::to_string)
        })
        .collect();
    set.extend(cores.iter().cloned());
    Ok(set)
}

#[cfg(test)]
mod main_tests {
    use super::*;

    #[test]
    fn tests_left_when_portcullis_exits_count_as_failures() {
        let all = tests::registry();
        let args = Args::parse_from(["portcullis-conformance"]);
        let runnable: Vec<&TestDef> = all
            .iter()
            .filter(|t| t.run.is_some() && t.needs_cluster.is_none() && !t.provisional)
            .take(3)
            .collect();
        let cluster_only = all
            .iter()
            .find(|t| t.needs_cluster.is_some())
            .expect("a test that needs a cluster");
        let mut rest = runnable.clone();
        rest.push(cluster_only);
        let supported: BTreeSet<String> = rest
            .iter()
            .flat_map(|t| t.features.iter().map(|f| f.to_string()))
            .collect();
        let n = not_run(&rest, &supported, &args);
        assert_eq!((n.failed, n.skipped), (3, 1), "{:#?}", n.lines);
        assert_eq!(
            n.lines[0],
            format!("FAIL {}: not run: portcullis exited", runnable[0].name)
        );
        assert!(n.lines[3].starts_with(&format!("SKIP {}", cluster_only.name)));
    }
}
