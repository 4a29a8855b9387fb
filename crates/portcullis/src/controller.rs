//! Standalone mode: files → snapshot (+ the objects derived from Ingresses) →
//! translate → data plane, with statuses on the admin API.
//!
//! One loop owns all state: it reloads the files on every (debounced) change,
//! translates the snapshot, applies the IR to the data plane when it changed,
//! and feeds bind errors back into translation so statuses tell the truth.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use portcullis_store::ObjectKey;
use portcullis_store::status::Statuses;

use crate::admin::{self, AdminState, AdminView};
use crate::cli::RunArgs;

/// Run the gateway until SIGINT/SIGTERM.
pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    args.access_log
        .install(portcullis_obs::accesslog::Format::Text)
        .map_err(|e| anyhow::anyhow!("access log: {e}"))?;
    args.trace.install()?;
    let state: AdminState = Default::default();
    let token = args
        .admin_token_file
        .as_deref()
        .map(admin::read_token)
        .transpose()?;
    admin::serve(args.admin, token, state.clone()).await?;
    if let Some(addr) = args.metrics {
        let (addr, _task) = portcullis_obs::server::serve(addr)
            .await
            .map_err(|e| anyhow::anyhow!("metrics: cannot bind {addr}: {e}"))?;
        tracing::info!(%addr, "metrics listening");
    }
    let options = portcullis_translate::Options {
        address_pool: args.address_pool,
        bind_address: args.bind_address,
        ..Default::default()
    };
    let dataplane = portcullis_dataplane::Dataplane::new(args.limits.options());
    let mut watch = portcullis_source::watch(&args.config)
        .map_err(|e| anyhow::anyhow!("cannot watch {}: {e}", args.config.display()))?;
    let mut source = portcullis_source::FileSource::new(args.config.clone())
        .with_field_validation(args.field_validation);
    let serve = args.ingress.options()?;
    let mut looper = Loop {
        options,
        serve,
        ingresses: Default::default(),
        dataplane: dataplane.clone(),
        state,
        previous_statuses: Default::default(),
        bind_errors: BTreeMap::new(),
        snapshot: Default::default(),
        reconciler: Default::default(),
        generation: 0,
        errors: vec![],
        problems: Default::default(),
    };
    looper.step(&mut source, None).await;
    let shutdown = shutdown_signal();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            ev = watch.changed() => {
                if ev.is_none() {
                    tracing::warn!("file watcher stopped; configuration is no longer reloaded");
                    shutdown.as_mut().await;
                    break;
                }
                let changes = watch.take_changes();
                looper.step(&mut source, Some(&changes)).await;
            }
            // Ports that could not be bound (e.g. still held by a draining
            // listener) are retried until they bind; statuses follow.
            _ = tokio::time::sleep(Duration::from_millis(250)), if !looper.bind_errors.is_empty() => {
                let started = Instant::now();
                looper.publish(started, 0).await;
            }
        }
    }
    tracing::info!("shutting down: draining connections");
    dataplane.shutdown().await;
    args.trace.shutdown().await;
    Ok(())
}

struct Loop {
    options: portcullis_translate::Options,
    /// Where Ingresses are served.
    serve: portcullis_source::ingress::ServeOptions,
    /// The Ingresses served at the last reload.
    ingresses: BTreeMap<ObjectKey, portcullis_source::ingress::ServedIngress>,
    dataplane: portcullis_dataplane::Dataplane,
    state: AdminState,
    previous_statuses: Arc<Statuses>,
    bind_errors: BTreeMap<SocketAddr, String>,
    /// The last snapshot translated (shared with the admin API).
    snapshot: Arc<portcullis_store::Snapshot>,
    /// Translation state kept across passes (memo, pool addresses).
    reconciler: portcullis_translate::Reconciler,
    /// Configurations applied since start (`portcullis_config_applied_generation`).
    generation: i64,
    /// The source's errors at the last reload (invalid objects).
    errors: Vec<portcullis_source::SourceError>,
    /// Every problem, with file:line, for the dashboard.
    problems: Arc<Vec<crate::validate::Problem>>,
}

impl Loop {
    /// Reload (`changes`: what the watcher reported; `None` the first
    /// time, which reads everything) and publish what changed.
    async fn step(
        &mut self,
        source: &mut portcullis_source::FileSource,
        changes: Option<&portcullis_source::Changes>,
    ) {
        let started = Instant::now();
        let first = changes.is_none();
        let reload = match changes {
            Some(c) => source.reload_changes(c),
            None => source.reload(),
        };
        for w in &reload.warnings {
            tracing::warn!("{w}");
        }
        for e in &reload.errors {
            tracing::error!("{e} (the last good version keeps serving)");
        }
        if !reload.changed && !first {
            // An object that became invalid keeps its last good version
            // (the snapshot is unchanged), but the dashboard shows why.
            if reload.errors != self.errors {
                self.errors = reload.errors;
                self.refresh_problems(source);
            }
            return;
        }
        self.errors = reload.errors;
        // Ingresses of Portcullis' classes become Gateway API objects here.
        let derived =
            portcullis_source::ingress::derive_owned(reload.snapshot, &self.serve, &self.snapshot);
        self.ingresses = derived.ingresses;
        self.snapshot = Arc::new(derived.snapshot);
        self.publish(started, self.errors.len()).await;
        self.refresh_problems(source);
    }

    /// Recompute the problem list (as `portcullis validate` shows it) and
    /// publish it with the current view.
    fn refresh_problems(&mut self, source: &portcullis_source::FileSource) {
        self.problems = Arc::new(crate::validate::problems(
            &self.errors,
            &self.snapshot,
            &self.previous_statuses,
            source,
            &self.options,
        ));
        if let Some(v) = self.state.load_full() {
            self.state.store(Some(Arc::new(AdminView {
                problems: self.problems.clone(),
                ..(*v).clone()
            })));
        }
    }

    /// Translate the current snapshot, apply it, publish statuses.
    async fn publish(&mut self, started: Instant, errors: usize) {
        let reload = &*self.snapshot.clone();
        let read = started.elapsed();
        let (mut translating, mut applying, mut statuses) = Default::default();
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        // Translate, apply, and translate again if the data plane's bind results changed
        // (at most twice: bind errors only depend on the ports, which do not change).
        for _ in 0..2 {
            let t = Instant::now();
            let mut out = self
                .reconciler
                .translate(reload, &self.options, &self.bind_errors);
            crate::ingress::add_statuses_of(
                &self.ingresses,
                reload,
                &out.config,
                &mut out.statuses,
                &self.serve,
            );
            let config = Arc::new(out.config);
            // The data plane compares with what it serves (an identical config is a no-op).
            translating += t.elapsed();
            let t = Instant::now();
            let report = self.dataplane.apply(config.clone()).await;
            for (addr, e) in &report.bind_errors {
                tracing::error!(%addr, "cannot bind: {e}");
            }
            for (addr, e) in &report.tls_errors {
                tracing::error!(%addr, "TLS configuration rejected (the previous one keeps serving): {e}");
            }
            for (backend, e) in &report.backend_tls_errors {
                tracing::error!(%backend, "backend TLS configuration rejected (answered as an invalid backend): {e}");
            }
            mark_tls_errors(&mut out.statuses, reload, &report.tls_errors);
            let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
            portcullis_store::status::carry_transition_times(
                &mut out.statuses,
                &self.previous_statuses,
                &now,
            );
            let rebind = report.bind_errors != self.bind_errors;
            self.bind_errors = report.bind_errors;
            applying += t.elapsed();
            let t = Instant::now();
            self.previous_statuses = Arc::new(out.statuses);
            // The admin documents are rendered on request.
            self.state.store(Some(Arc::new(AdminView {
                snapshot: self.snapshot.clone(),
                statuses: self.previous_statuses.clone(),
                config,
                problems: self.problems.clone(),
                kubernetes: false,
                proxy_metrics: None,
            })));
            statuses += t.elapsed();
            if !rebind {
                break;
            }
        }
        self.generation += 1;
        portcullis_obs::metrics().control.reload(
            errors == 0 && self.bind_errors.is_empty(),
            self.generation,
            translating,
        );
        portcullis_kube::metrics::record_objects(&self.previous_statuses);
        tracing::info!(
            objects = reload.len(),
            errors,
            elapsed_ms = ms(started.elapsed()),
            read_ms = ms(read),
            translate_ms = ms(translating),
            apply_ms = ms(applying),
            status_ms = ms(statuses),
            "configuration applied"
        );
        // What the load and translation freed goes back to the OS now.
        let t = std::time::Instant::now();
        crate::alloc::release_free_memory();
        tracing::debug!(elapsed_ms = ms(t.elapsed()), "free memory released");
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// A listener whose port's TLS configuration the data plane refused (a key
/// that does not match its certificate, a key type rustls cannot use) keeps
/// serving the certificate it had: say so on the listener, with
/// `ResolvedRefs=False/InvalidCertificateRef`, `Programmed` unchanged.
fn mark_tls_errors(
    statuses: &mut portcullis_store::status::Statuses,
    snapshot: &portcullis_store::Snapshot,
    tls_errors: &BTreeMap<SocketAddr, String>,
) {
    use portcullis_store::status::{Condition, Status};
    if tls_errors.is_empty() {
        return;
    }
    for (key, gw) in &snapshot.gateways {
        let oref = portcullis_store::ObjectRef {
            kind: portcullis_store::Kind::Gateway,
            key: key.clone(),
        };
        let Some(Status::Gateway(st)) = statuses.get_mut(&oref) else {
            continue;
        };
        let ips: Vec<std::net::IpAddr> = st
            .addresses
            .iter()
            .filter_map(|a| a.value.parse().ok())
            .collect();
        let generation = gw.metadata.generation.unwrap_or(0);
        for l in &gw.spec.listeners {
            if l.protocol != "HTTPS" && l.protocol != "TLS" {
                continue;
            }
            let Some(err) = ips
                .iter()
                .find_map(|ip| tls_errors.get(&SocketAddr::new(*ip, l.port as u16)))
            else {
                continue;
            };
            let Some(ls) = st.listeners.iter_mut().find(|s| s.name == l.name) else {
                continue;
            };
            let cond = Condition::new(
                "ResolvedRefs",
                false,
                "InvalidCertificateRef",
                format!(
                    "the data plane refused this port's TLS configuration; the previous certificate keeps serving: {err}"
                ),
                generation,
            );
            match ls.conditions.iter_mut().find(|c| c.type_ == "ResolvedRefs") {
                Some(c) => *c = cond,
                None => ls.conditions.push(cond),
            }
        }
    }
}
