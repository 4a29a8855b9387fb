//! `portcullis import ingress`: Ingress YAML → Gateway API resources and
//! Portcullis policies (`portcullis-import`), and the annotation report.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;

/// Options of `import ingress`.
#[derive(clap::Args, Debug, Clone)]
pub struct IngressArgs {
    /// Files or directories (recursive: `.yaml`, `.yml`, `.json`) holding
    /// Ingresses, IngressClasses, and the Services and Secrets they use.
    #[arg(long = "filename", short = 'f', num_args = 1.., required_unless_present = "from_cluster")]
    pub files: Vec<PathBuf>,
    /// Read the Ingresses (and the IngressClasses, Services and referenced
    /// Secrets the conversion needs) from the cluster of the current
    /// kubeconfig (`KUBECONFIG`, else `~/.kube/config`) instead of files.
    #[arg(long, conflicts_with = "files")]
    pub from_cluster: bool,
    /// With `--from-cluster`: the namespace whose Ingresses are read (default: all).
    #[arg(long)]
    pub namespace: Option<String>,
    /// `-` (the default) writes one YAML stream to stdout and the report to
    /// stderr; a directory gets one file per kind and `import-report.txt`.
    #[arg(long, short, default_value = "-")]
    pub output: String,
    /// `gatewayClassName` of the Gateways made.
    #[arg(long, default_value = "portcullis")]
    pub gateway_class: String,
    /// Namespace of objects that do not say.
    #[arg(long, default_value = "default")]
    pub namespace_default: String,
    /// Namespace of the Gateways (default: `--namespace-default`).
    #[arg(long)]
    pub gateway_namespace: Option<String>,
    /// Port of the HTTP listeners.
    #[arg(long, default_value_t = 80)]
    pub http_port: u16,
    /// Port of the HTTPS (and TLS passthrough) listeners.
    #[arg(long, default_value_t = 443)]
    pub https_port: u16,
}

/// What to import.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum ImportCommand {
    /// networking.k8s.io/v1 Ingresses (with ingress-nginx annotations).
    Ingress(IngressArgs),
}

/// Every input file under `p`, sorted.
fn files_under(p: &Path, out: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    if p.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(p)
            .with_context(|| format!("reading {}", p.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for e in entries {
            let ext = e.extension().and_then(|x| x.to_str()).unwrap_or_default();
            if e.is_dir() || matches!(ext, "yaml" | "yml" | "json") {
                files_under(&e, out)?;
            }
        }
    } else {
        out.push(p.to_path_buf());
    }
    Ok(())
}

/// Run `import`.
pub fn run(cmd: &ImportCommand) -> anyhow::Result<ExitCode> {
    let ImportCommand::Ingress(args) = cmd;
    let mut paths = vec![];
    for f in &args.files {
        files_under(f, &mut paths)?;
    }
    if args.namespace.is_some() && !args.from_cluster {
        anyhow::bail!("--namespace reads one namespace of the cluster: it needs --from-cluster");
    }
    let mut sources = vec![];
    if args.from_cluster {
        sources.push(from_cluster(args.namespace.as_deref())?);
    }
    for p in paths {
        let text =
            std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
        sources.push(portcullis_import::Source {
            name: p.display().to_string(),
            text,
        });
    }
    let options = portcullis_import::Options {
        gateway_class: args.gateway_class.clone(),
        default_namespace: args.namespace_default.clone(),
        gateway_namespace: args.gateway_namespace.clone(),
        http_port: args.http_port,
        https_port: args.https_port,
    };
    let conversion = portcullis_import::convert(&sources, &options)?;
    let report = conversion.report.text();
    if args.output == "-" {
        print!("{}", conversion.yaml());
        eprint!("{report}");
    } else {
        let dir = Path::new(&args.output);
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        for (name, text) in conversion.files() {
            std::fs::write(dir.join(&name), text).with_context(|| format!("writing {name}"))?;
        }
        std::fs::write(dir.join("import-report.txt"), &report)?;
        eprintln!(
            "{}: {} objects written; report in {}",
            dir.display(),
            conversion.objects.len(),
            dir.join("import-report.txt").display()
        );
        eprint!(
            "{}",
            report
                .lines()
                .last()
                .map(|l| format!("{l}\n"))
                .unwrap_or_default()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The cluster's Ingresses and what their conversion reads, as one input.
fn from_cluster(namespace: Option<&str>) -> anyhow::Result<portcullis_import::Source> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting a runtime")?;
    Ok(rt.block_on(portcullis_kube::ingress::cluster_source_default(namespace))?)
}
