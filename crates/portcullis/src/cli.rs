//! Command-line interface.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use portcullis_source::FieldValidation;

use crate::{controller, report};

/// Portcullis: a Kubernetes Gateway API gateway.
#[derive(Parser, Debug)]
#[command(name = "portcullis", version, about)]
pub struct Cli {
    /// Log filter (tracing EnvFilter syntax); RUST_LOG overrides it.
    #[arg(long, global = true, default_value = "info")]
    pub log_level: String,
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Serve the Gateway API objects in YAML/JSON files (standalone mode),
    /// and the Ingresses of Portcullis' IngressClasses.
    Run(RunArgs),
    /// Check files as they would be served: schema and CEL errors, then the
    /// full translation; every problem that leaves configuration unserved is
    /// printed as file:line, and the exit code is 1 when there is any.
    Validate {
        /// A file or a directory (recursive).
        #[arg(long, short)]
        config: PathBuf,
        /// Output format.
        #[arg(long, short, value_enum, default_value_t = ValidateFormat::Text)]
        output: ValidateFormat,
        /// Unknown fields and kinds: Strict (an error), Warn or Ignore (dropped).
        #[arg(long, default_value_t = FieldValidation::Strict)]
        field_validation: FieldValidation,
        /// Where Ingresses are served, as for `run`.
        #[command(flatten)]
        ingress: crate::ingress::IngressArgs,
    },
    /// Print every Gateway API object with the status a cluster would show.
    Status {
        /// A file or a directory (recursive).
        #[arg(long, short)]
        config: PathBuf,
        /// Output format.
        #[arg(long, short, value_enum, default_value_t = Format::Table)]
        output: Format,
        /// Address pool, as for `run`.
        #[arg(long)]
        address_pool: Option<ipnet::IpNet>,
        /// Unknown fields and kinds: Strict (an error), Warn or Ignore (dropped).
        #[arg(long, default_value_t = FieldValidation::Strict)]
        field_validation: FieldValidation,
        /// Where Ingresses are served, as for `run`.
        #[command(flatten)]
        ingress: crate::ingress::IngressArgs,
    },
    /// What the gateway would do with one request: the socket, the listener
    /// (and why), the winning route rule and the rules that lost (and why),
    /// policies, filters, backends and the answer; offline, on the same
    /// translation and route matching as `run`.
    Explain(ExplainArgs),
    /// Convert other gateways' configuration to Gateway API resources and
    /// Portcullis policies, with a report of what differs.
    #[command(subcommand)]
    Import(crate::import::ImportCommand),
    /// Kubernetes mode: watch the cluster, write statuses, provision and feed one proxy per Gateway.
    Controller(portcullis_kube::ControllerArgs),
    /// Kubernetes mode: serve one Gateway with the configuration streamed by the controller.
    Proxy(portcullis_proxy::ProxyArgs),
}

/// Output formats of `status`.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum Format {
    /// YAML list.
    Yaml,
    /// JSON array of `{apiVersion, kind, metadata, status}`.
    Json,
    /// One line per object.
    Table,
}

/// Output formats of `validate` and `explain`.
#[derive(Clone, Copy, Debug, ValueEnum, PartialEq, Eq)]
pub enum ValidateFormat {
    /// One line per problem, grouped by file, and a summary.
    Text,
    /// `{valid, objects, problems: [...]}` for machines.
    Json,
}

/// Options of `explain`.
#[derive(clap::Args, Debug, Clone)]
pub struct ExplainArgs {
    /// A file or a directory (recursive) of YAML/JSON manifests.
    #[arg(
        long,
        short,
        required_unless_present = "admin",
        conflicts_with = "admin"
    )]
    pub config: Option<PathBuf>,
    /// Ask a running gateway instead: the admin address of `portcullis run`
    /// or the `--dashboard` address of `portcullis controller`, e.g.
    /// `http://127.0.0.1:9903` (its `/explain`, on what it serves).
    #[arg(long)]
    pub admin: Option<String>,
    /// A file holding the bearer token of that admin address.
    #[arg(long, requires = "admin")]
    pub admin_token_file: Option<PathBuf>,
    /// Only sockets serving a listener of this Gateway (`namespace/name`).
    #[arg(long)]
    pub gateway: Option<String>,
    /// The request: `'METHOD URL'` or `URL` (GET), e.g. `'GET https://shop.example.com/cart?x=1'`.
    pub request: String,
    /// A request header, `'name: value'` (repeatable); `Host` overrides the
    /// URL's authority for routing (the URL's host stays the TLS SNI).
    #[arg(long = "header", short = 'H')]
    pub headers: Vec<String>,
    /// Output format.
    #[arg(long, short, value_enum, default_value_t = ValidateFormat::Text)]
    pub output: ValidateFormat,
    /// Address pool, as for `run`.
    #[arg(long)]
    pub address_pool: Option<ipnet::IpNet>,
    /// Bind address, as for `run`.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: IpAddr,
    /// Unknown fields and kinds: Strict (an error), Warn or Ignore (dropped).
    #[arg(long, default_value_t = FieldValidation::Strict)]
    pub field_validation: FieldValidation,
    /// Where Ingresses are served, as for `run`.
    #[command(flatten)]
    pub ingress: crate::ingress::IngressArgs,
}

/// Options of `run`.
#[derive(clap::Args, Debug, Clone)]
pub struct RunArgs {
    /// A file or a directory (recursive) of YAML/JSON manifests; watched for changes.
    #[arg(long, short)]
    pub config: PathBuf,
    /// Give each Gateway without `spec.addresses` its own address from this pool.
    #[arg(long)]
    pub address_pool: Option<ipnet::IpNet>,
    /// Address used when a Gateway has no address and there is no pool.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind_address: IpAddr,
    /// Admin API address (`/healthz`, `/readyz`, `/status`, `/config`, `/metrics`,
    /// `/explain`, the dashboard `/ui`). Anything but a loopback address needs
    /// `--admin-token-file`.
    #[arg(long, default_value = "127.0.0.1:9901")]
    pub admin: SocketAddr,
    /// A file holding a bearer token that every admin document requires
    /// (`Authorization: Bearer <token>`; the dashboard takes it from
    /// `/ui#token=<token>` or asks); required when `--admin` is not a
    /// loopback address.
    #[arg(long)]
    pub admin_token_file: Option<PathBuf>,
    /// Also serve `/metrics` (Prometheus, OpenMetrics text) on this address.
    #[arg(long)]
    pub metrics: Option<SocketAddr>,
    /// Access log.
    #[command(flatten)]
    pub access_log: portcullis_kube::args::AccessLogArgs,
    /// Traces.
    #[command(flatten)]
    pub trace: portcullis_kube::args::TraceArgs,
    /// Unknown fields and kinds: Strict (the object is invalid and its last
    /// good version keeps serving), Warn or Ignore (dropped).
    #[arg(long, default_value_t = FieldValidation::Strict)]
    pub field_validation: FieldValidation,
    /// Data-plane limits and timeouts.
    #[command(flatten)]
    pub limits: portcullis_dataplane::cli::DataplaneArgs,
    /// Where Ingresses of Portcullis' IngressClasses are served.
    #[command(flatten)]
    pub ingress: crate::ingress::IngressArgs,
}

/// Run a command.
pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Run(args) => {
            // The controller (file reloads, translation) and the admin API run
            // here; the data plane runs on its own worker threads.
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(controller::run(args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Validate {
            config,
            output,
            field_validation,
            ingress,
        } => crate::validate::run(&config, output, field_validation, &ingress.options()?),
        Command::Status {
            config,
            output,
            address_pool,
            field_validation,
            ingress,
        } => report::status(
            &config,
            output,
            address_pool,
            field_validation,
            &ingress.options()?,
        ),
        Command::Explain(args) => crate::explain::run(&args),
        Command::Import(cmd) => crate::import::run(&cmd),
        Command::Controller(args) => {
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(crate::kube_dashboard::run(args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Proxy(args) => {
            // As for `run`: the data plane runs on its own worker threads
            // (`--workers`); the config stream and health endpoints here.
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(portcullis_proxy::run_proxy(args))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
