//! `portcullis controller`: reflectors → one debounced translate loop →
//! config streams (every replica), statuses and provisioning (the leader).

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use kube::Client;
use portcullis_ir::Config;
use portcullis_store::status::{Status, Statuses};
use portcullis_store::{Kind, ObjectKey, ObjectRef, Snapshot};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};

use crate::args::ControllerArgs;
use crate::discovery::Served;
use crate::leader::{Elector, LeaseOptions};
use crate::provision::{self, Settings, apply::Provisioner};
use crate::reflect::{Cache, RefCache};
use crate::status::merge;
use crate::status::writer::{Pending, StatusWriter, WriterOptions};
use crate::stream::auth::{CachingReviewer, ReviewLimits};
use crate::stream::server::Proxies;
use crate::stream::{KubeTokenReviewer, Published, StreamServer, TokenReviewer, filter, pki};
use crate::{KubeModeError, health, kinds};

/// Run the controller in the cluster (in-cluster config, else kubeconfig) until SIGINT/SIGTERM.
pub async fn run_controller(args: ControllerArgs) -> Result<(), KubeModeError> {
    run_controller_with(args, |_| {}).await
}

/// [`run_controller`], handing `started` the running controller (the
/// binary serves its dashboard and `/explain` from [`Controller::view`],
/// with the traffic of [`Controller::proxies`]).
pub async fn run_controller_with(
    args: ControllerArgs,
    started: impl FnOnce(&Controller),
) -> Result<(), KubeModeError> {
    let client = Client::try_default()
        .await
        .map_err(|e| KubeModeError::ClientConfig(e.to_string()))?;
    let reviewer = Arc::new(KubeTokenReviewer::new(client.clone()));
    let controller = Controller::start(client, args, reviewer).await?;
    started(&controller);
    shutdown_signal().await;
    tracing::info!("shutting down");
    controller.shutdown().await
}

/// What the last translation pass saw and produced, for read-only views
/// (the dashboard, `/explain`): replaced as a whole after every pass.
#[derive(Clone, Debug)]
pub struct View {
    /// The cluster's objects translated (referenced Secrets included: render
    /// documents from it with key material redacted).
    pub snapshot: Arc<Snapshot>,
    /// Every object's status, as translation computed it.
    pub statuses: Arc<Statuses>,
    /// The whole IR: every Gateway's listeners, each Gateway on its own
    /// internal address (see [`crate::stream::filter`]).
    pub config: Arc<Config>,
    /// Which Gateway each internal address in `config` belongs to.
    pub gateways: Arc<BTreeMap<IpAddr, ObjectKey>>,
}

/// A running controller.
pub struct Controller {
    stream_addr: SocketAddr,
    admin_addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<Result<(), KubeModeError>>,
    stats: watch::Receiver<Stats>,
    view: watch::Receiver<Option<Arc<View>>>,
    proxies: Proxies,
}

/// Counters for logs and tests.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Stats {
    /// Translation passes done.
    pub passes: u64,
    /// Whether this replica leads.
    pub leader: bool,
    /// Status writes queued plus in flight.
    pub status_backlog: usize,
}

impl Controller {
    /// Bind the health and stream endpoints, start watching, and run the loop in the background.
    pub async fn start(
        client: Client,
        args: ControllerArgs,
        reviewer: Arc<dyn TokenReviewer>,
    ) -> Result<Controller, KubeModeError> {
        // Refuse bad namespace lists before binding anything.
        args.scope()
            .map_err(|e| KubeModeError::InvalidArgument(e.to_string()))?;
        let (ready_tx, ready_rx) = watch::channel(false);
        let (note_tx, note_rx) = watch::channel(String::new());
        let (admin_addr, admin_task) = health::serve(
            args.admin,
            ready_rx,
            note_rx,
            watch::channel(String::new()).1,
        )
        .await?;
        let listener = TcpListener::bind(args.stream_listen)
            .await
            .map_err(|e| KubeModeError::io(format!("cannot bind {}", args.stream_listen), e))?;
        let (published_tx, published_rx) = watch::channel(Arc::new(Published::default()));
        let cell = Arc::new(pki::CertCell::default());
        let tls = pki::server_config(cell.clone())
            .map_err(|e| KubeModeError::InvalidArgument(e.to_string()))?;
        let reviewer = Arc::new(CachingReviewer::new(reviewer, ReviewLimits::default()));
        let mut server = StreamServer::start(listener, published_rx, reviewer, tls);
        let stream_addr = server.local_addr();
        let proxies = server.proxies();
        let (bundle_tx, bundle_rx) = watch::channel(String::new());
        let pki_task = tokio::spawn(pki::maintain(
            client.clone(),
            (args.lease_namespace.clone(), args.ca_secret.clone()),
            pki::server_names(&args.stream_url, &args.stream_tls_san),
            cell,
            bundle_tx,
            Duration::from_secs(60),
        ));
        let (stop, stop_rx) = oneshot::channel();
        let (stats_tx, stats) = watch::channel(Stats::default());
        let (view_tx, view) = watch::channel(None);
        let task = tokio::spawn(async move {
            let r = main_loop(
                client,
                args,
                (published_tx, view_tx),
                bundle_rx,
                (ready_tx, note_tx),
                stats_tx,
                stop_rx,
            )
            .await;
            pki_task.abort();
            server.stop();
            admin_task.abort();
            r
        });
        Ok(Controller {
            stream_addr,
            admin_addr,
            stop,
            task,
            stats,
            view,
            proxies,
        })
    }

    /// The proxies streaming a configuration now.
    pub fn proxies(&self) -> Proxies {
        self.proxies.clone()
    }

    /// The last translation pass's [`View`] (`None` before the first, and
    /// always without `--dashboard`: the view is kept only for it).
    pub fn view(&self) -> watch::Receiver<Option<Arc<View>>> {
        self.view.clone()
    }

    /// Address of the config stream.
    pub fn stream_addr(&self) -> SocketAddr {
        self.stream_addr
    }

    /// Address of `/healthz` and `/readyz`.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin_addr
    }

    /// Loop counters.
    pub fn stats(&self) -> watch::Receiver<Stats> {
        self.stats.clone()
    }

    /// Stop: release the Lease, stop watching, close the streams.
    pub async fn shutdown(self) -> Result<(), KubeModeError> {
        let _ = self.stop.send(());
        self.task.await.unwrap_or(Ok(()))
    }
}

async fn main_loop(
    client: Client,
    args: ControllerArgs,
    (published, view): (
        watch::Sender<Arc<Published>>,
        watch::Sender<Option<Arc<View>>>,
    ),
    mut bundle: watch::Receiver<String>,
    (ready, note): (watch::Sender<bool>, watch::Sender<String>),
    stats: watch::Sender<Stats>,
    mut stop: oneshot::Receiver<()>,
) -> Result<(), KubeModeError> {
    let served = tokio::select! {
        s = discover(&client) => s,
        _ = &mut stop => return Ok(()),
    };
    note.send_replace(served.readiness_note());
    let scope = args
        .scope()
        .map_err(|e| KubeModeError::InvalidArgument(e.to_string()))?;
    let cache = Cache::start(&client, &scope, &served);
    tokio::select! {
        r = cache.wait_synced(Duration::from_secs(300)) => r?,
        _ = &mut stop => return Ok(()),
    }
    tracing::info!("caches synced");
    let identity = args
        .identity
        .clone()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| format!("portcullis-{:016x}", rand::random::<u64>()));
    let elector = Elector::start(
        client.clone(),
        LeaseOptions {
            namespace: args.lease_namespace.clone(),
            name: args.lease_name.clone(),
            identity,
            lease_duration: Duration::from_secs(args.lease_duration.max(1)),
            retry: Duration::from_secs(args.lease_retry.max(1)),
        },
    );
    let writer = StatusWriter::start(
        client.clone(),
        WriterOptions {
            qps: args.status_qps,
            burst: args.status_burst,
            concurrency: args.status_concurrency,
            controller_name: args.controller_name.clone(),
            served: served.clone(),
        },
        elector.subscribe(),
    );
    let owned = provision::drift::Owned::start(&client, &scope.watch_lists());
    let pool = filter::INTERNAL_POOL.parse().expect("valid pool");
    let mut lp = Loop {
        client: client.clone(),
        cache: cache.clone(),
        options: portcullis_translate::Options {
            controller_name: args.controller_name.clone(),
            address_pool: Some(pool),
            provisioning: !args.no_provisioning,
            reserved_ports: if args.no_provisioning {
                BTreeMap::new()
            } else {
                provision::reserved_ports()
            },
            ..Default::default()
        },
        settings: Settings {
            image: args.proxy_image.clone(),
            stream_url: args.stream_url.clone(),
            log_level: args.proxy_log_level.clone(),
            enabled: !args.no_provisioning,
            ca_bundle: bundle.borrow_and_update().clone(),
        },
        refcache: RefCache::default(),
        provisioner: Provisioner::new(client.clone()),
        owned: owned.clone(),
        reconciler: Default::default(),
        published,
        // Kept (one more snapshot in memory) only for the dashboard.
        view: args.dashboard.is_some().then_some(view),
        writer,
        passes: 0,
        // The controller's namespace, unless it is not watched: then the first watched one.
        ingress_namespace: match scope.watched() {
            Some(w) if !w.contains(&args.lease_namespace) => w.first().cloned().unwrap_or_default(),
            _ => args.lease_namespace.clone(),
        },
        derived: Snapshot::default(),
        ingress_events: Default::default(),
        poller: crate::proxystate::Poller::start(args.proxy_metrics_port),
        observed: Default::default(),
    };
    let mut proxy_reports = lp.poller.subscribe();
    let mut changes = cache.subscribe();
    let mut owned_changes = owned.subscribe();
    let mut leader = elector.subscribe();
    let mut was_leader = false;
    let mut resync = tokio::time::interval(Duration::from_secs(300));
    resync.tick().await;
    let mut passes = 0;
    let mut retry = Duration::from_millis(500);
    let mut backlog = lp.writer.backlog();
    loop {
        let is_leader = *leader.borrow_and_update();
        portcullis_obs::metrics()
            .control
            .leader
            .set(i64::from(is_leader));
        if is_leader && !was_leader {
            lp.provisioner.reset();
        }
        was_leader = is_leader;
        changes.borrow_and_update();
        lp.settings.ca_bundle = bundle.borrow_and_update().clone();
        lp.observed = proxy_reports.borrow_and_update().clone();
        let complete = lp.pass(is_leader).await;
        passes += 1;
        // A failed read is retried promptly (0.5 s, doubling to 10 s), not at the next resync.
        let retry_in = if complete {
            retry = Duration::from_millis(500);
            None
        } else {
            let r = retry;
            retry = (retry * 2).min(Duration::from_secs(10));
            Some(r)
        };
        let retry_at = tokio::time::Instant::now() + retry_in.unwrap_or_default();
        ready.send_replace(true);
        stats.send_replace(Stats {
            passes,
            leader: is_leader,
            status_backlog: *backlog.borrow_and_update(),
        });
        // Wait for a reason to translate again, keeping the backlog count current meanwhile.
        let again = loop {
            tokio::select! {
                _ = &mut stop => break false,
                r = changes.changed() => {
                    if r.is_err() { break false }
                    tokio::time::sleep(Duration::from_millis(args.debounce_ms)).await;
                    break true;
                }
                r = leader.changed() => break r.is_ok(),
                r = bundle.changed() => break r.is_ok(),
                r = proxy_reports.changed() => {
                    if r.is_err() { break false }
                    tokio::time::sleep(Duration::from_millis(args.debounce_ms)).await;
                    break true;
                }
                r = owned_changes.changed(), if was_leader => {
                    if r.is_err() { break false }
                    tokio::time::sleep(Duration::from_millis(args.debounce_ms)).await;
                    break true;
                }
                _ = tokio::time::sleep_until(retry_at), if retry_in.is_some() => break true,
                _ = resync.tick() => {
                    // The safety net under drift detection: apply everything again now and then.
                    lp.provisioner.reset();
                    break true;
                }
                r = backlog.changed(), if backlog.has_changed().is_ok() => {
                    if r.is_ok() {
                        stats.send_modify(|s| s.status_backlog = *backlog.borrow_and_update());
                    }
                }
            }
        };
        if !again {
            break;
        }
    }
    ready.send_replace(false);
    elector.release().await;
    portcullis_obs::metrics().control.leader.set(0);
    owned.stop();
    cache.stop();
    Ok(())
}

struct Loop {
    client: Client,
    cache: Arc<Cache>,
    options: portcullis_translate::Options,
    settings: Settings,
    refcache: RefCache,
    provisioner: Provisioner,
    owned: Arc<provision::drift::Owned>,
    /// Translation state kept across passes (memo, pool addresses): the
    /// same step as `portcullis run`'s.
    reconciler: portcullis_translate::Reconciler,
    published: watch::Sender<Arc<Published>>,
    view: Option<watch::Sender<Option<Arc<View>>>>,
    writer: StatusWriter,
    /// Translation passes (`portcullis_config_applied_generation`).
    passes: i64,
    /// Namespace of the Gateways derived from Ingresses (and of their proxies).
    ingress_namespace: String,
    /// The last pass's snapshot with derived objects (empty without Ingresses).
    derived: Snapshot,
    /// Warning events on Ingresses for what is not honoured.
    ingress_events: crate::ingress::Events,
    /// Reads back what provisioned proxies applied (leader only).
    poller: crate::proxystate::Poller,
    /// What they reported, as of this pass.
    observed: crate::proxystate::Observed,
}

impl Loop {
    /// One translation; `false` when a referenced Secret or ConfigMap could not be read.
    async fn pass(&mut self, leader: bool) -> bool {
        let started = std::time::Instant::now();
        let (mut snapshot, metas) = self.cache.view();
        let wanted = kinds::referenced(&snapshot);
        let complete = self
            .refcache
            .fill(&self.client, &wanted, &metas, &mut snapshot)
            .await;
        // Ingresses (ingress.rs): the objects serving Portcullis' Ingresses join the snapshot.
        let (snapshot, served_ingresses) = if snapshot.ingresses.is_empty() {
            (snapshot, BTreeMap::new())
        } else {
            let d = crate::ingress::derive(&snapshot, &self.ingress_namespace, &self.derived);
            (d.snapshot, d.ingresses)
        };
        self.derived = if served_ingresses.is_empty() {
            Snapshot::default()
        } else {
            snapshot.clone()
        };
        let translating = std::time::Instant::now();
        let (statuses, plans, config) = self.translate(&snapshot);
        self.passes += 1;
        portcullis_obs::metrics()
            .control
            .reload(true, self.passes, translating.elapsed());
        crate::metrics::record_objects(&statuses);
        self.publish(&snapshot, &statuses, &config);
        let (snapshot, statuses) = (Arc::new(snapshot), Arc::new(statuses));
        if let Some(view) = &self.view {
            view.send_replace(Some(Arc::new(View {
                snapshot: snapshot.clone(),
                statuses: statuses.clone(),
                config: Arc::new(config),
                gateways: Arc::new(
                    self.reconciler
                        .addresses()
                        .iter()
                        .map(|(k, ip)| (*ip, k.clone()))
                        .collect(),
                ),
            })));
        }
        if !leader {
            self.poller.set_targets(Default::default());
            return complete;
        }
        // Proxies need the config stream's CA: provision once it is known (its arrival triggers a pass).
        let plans = if self.settings.ca_bundle.is_empty() {
            vec![]
        } else {
            plans
        };
        let owned = self.owned.clone();
        let live = |k: &provision::drift::Key| -> Option<provision::drift::Live> {
            let key = ObjectKey::new(&k.1, &k.2);
            let rv = |rv: Option<&String>| {
                rv.map(|rv| provision::drift::Live {
                    resource_version: rv.clone(),
                    generation: 0,
                })
            };
            match k.0.as_str() {
                "Service" => rv(snapshot
                    .services
                    .get(&key)
                    .and_then(|s| s.metadata.resource_version.as_ref())),
                "ConfigMap" => rv(metas.get(&ObjectRef {
                    kind: Kind::ConfigMap,
                    key,
                })),
                _ => owned.get(k),
            }
        };
        for p in &plans {
            if let Ok(objects) = &p.objects {
                self.provisioner.apply(objects, &live).await;
            }
        }
        // Read back what their ready proxies applied (`Programmed`, bind errors).
        self.poller.set_targets(
            plans
                .iter()
                .filter(|p| p.objects.is_ok())
                .filter_map(|p| {
                    let gw = snapshot.gateways.get(&p.gateway)?;
                    let service = provision::service_account(gw);
                    Some((
                        p.gateway.clone(),
                        (
                            gw.metadata.generation.unwrap_or(0),
                            crate::proxystate::ready_endpoints(
                                &snapshot,
                                &p.gateway.namespace,
                                &service,
                            ),
                        ),
                    ))
                })
                .collect(),
        );
        let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let mut writes = status_writes(&snapshot, &statuses, &self.options.controller_name, &now);
        writes.extend(crate::ingress::status_writes(
            &snapshot,
            &served_ingresses,
            &statuses,
        ));
        self.ingress_events
            .record(&self.client, &snapshot, &served_ingresses, &statuses)
            .await;
        tracing::debug!(
            writes = writes.len(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "translated"
        );
        self.writer.submit(writes);
        complete
    }

    /// Translate, then post-process Gateway statuses for provisioning.
    fn translate(&mut self, snapshot: &Snapshot) -> (Statuses, Vec<provision::Plan>, Config) {
        // The proxies bind their ports remotely and report what failed
        // (`proxystate`): fed in as standalone mode feeds its own, on each
        // Gateway's internal address.
        let mut bind_errors = BTreeMap::new();
        for (key, proxies) in &self.observed {
            let (Some(ip), Some(gw)) = (
                self.reconciler.addresses().get(key),
                snapshot.gateways.get(key),
            ) else {
                continue;
            };
            for (port, e) in proxies.bind_errors(gw.metadata.generation.unwrap_or(0)) {
                bind_errors.insert(SocketAddr::new(*ip, port), e);
            }
        }
        let mut out = self
            .reconciler
            .translate(snapshot, &self.options, &bind_errors);
        let plans = if self.settings.enabled {
            provision::plan(snapshot, &out.statuses, &self.settings)
        } else {
            vec![]
        };
        provision::adjust_statuses(
            &mut out.statuses,
            &plans,
            snapshot,
            &self.settings,
            &self.observed,
        );
        (out.statuses, plans, out.config)
    }

    /// Publish each accepted Gateway's config to its proxies (reusing unchanged
    /// Arcs). A Gateway of ours that is not accepted any more (a bad
    /// parametersRef, say) keeps its last accepted config: its proxies keep
    /// serving while its status says what is wrong.
    fn publish(&mut self, snapshot: &Snapshot, statuses: &Statuses, config: &Config) {
        let previous = self.published.borrow().clone();
        let mut next = Published {
            version: previous.version,
            ..Default::default()
        };
        for (key, cfg) in filter::split(config, self.reconciler.addresses()) {
            let accepted = matches!(statuses.get(&ObjectRef { kind: Kind::Gateway, key: key.clone() }), Some(Status::Gateway(s)) if s.conditions.iter().any(|c| c.type_ == "Accepted" && c.is_true()));
            let Some(gw) = snapshot.gateways.get(&key) else {
                continue;
            };
            if !accepted {
                continue;
            }
            next.generations
                .insert(key.clone(), gw.metadata.generation.unwrap_or(0));
            let cfg = match previous.gateways.get(&key) {
                Some(old) if **old == cfg => old.clone(),
                _ => Arc::new(cfg),
            };
            next.identities.insert(
                key.clone(),
                format!(
                    "system:serviceaccount:{}:{}",
                    key.namespace,
                    provision::service_account(gw)
                ),
            );
            next.gateways.insert(key, cfg);
        }
        for (key, old) in &previous.gateways {
            if next.gateways.contains_key(key) || !snapshot.gateways.contains_key(key) {
                continue;
            }
            tracing::debug!(gateway = %key, "Gateway not accepted: its proxies keep the last accepted configuration");
            next.gateways.insert(key.clone(), old.clone());
            if let Some(id) = previous.identities.get(key) {
                next.identities.insert(key.clone(), id.clone());
            }
            if let Some(g) = previous.generations.get(key) {
                next.generations.insert(key.clone(), *g);
            }
        }
        let same = next.identities == previous.identities
            && next.generations == previous.generations
            && next.gateways.len() == previous.gateways.len()
            && next
                .gateways
                .iter()
                .all(|(k, v)| previous.gateways.get(k).is_some_and(|p| Arc::ptr_eq(p, v)));
        if !same {
            next.version += 1;
            self.published.send_replace(Arc::new(next));
        }
    }
}

/// Which Gateway API kinds the API server serves, and at which version
/// (retried with backoff until the API server answers).
async fn discover(client: &Client) -> Served {
    let mut delay = Duration::from_millis(200);
    loop {
        match Served::discover(client).await {
            Ok(served) => {
                tracing::info!(kinds = %served.describe(), "Gateway API kinds served");
                let skipped = served.skipped();
                if !skipped.is_empty() {
                    let names: Vec<&str> = skipped.iter().map(|k| k.as_str()).collect();
                    tracing::warn!(
                        "not watching {}: the API server does not serve them (CRD not installed, or no served version); restart the controller after installing them",
                        names.join(", ")
                    );
                }
                return served;
            }
            Err(e) => {
                tracing::warn!("API discovery failed, retrying in {delay:?}: {e}");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(10));
            }
        }
    }
}

/// Every status write needed to bring the cluster in line with `statuses`.
pub fn status_writes(
    snapshot: &Snapshot,
    statuses: &Statuses,
    controller: &str,
    now: &str,
) -> Vec<Pending> {
    let mut out = vec![];
    macro_rules! each {
        ($($f:ident $k:ident),*) => {$(
            for (key, o) in &snapshot.$f {
                // Objects derived from Ingresses are not in the API.
                if crate::ingress::is_derived(&o.metadata) {
                    continue;
                }
                let oref = ObjectRef { kind: Kind::$k, key: key.clone() };
                let translated = statuses.get(&oref);
                if translated.is_none() && merge::list_keys(Kind::$k).is_none() {
                    continue;
                }
                let current = o.status.as_ref().map(|s| serde_json::to_value(s).unwrap_or_default());
                if let Some(status) = merge::desired(Kind::$k, current.as_ref(), translated, controller, now) {
                    out.push(Pending {
                        oref,
                        resource_version: o.metadata.resource_version.clone().unwrap_or_default(),
                        generation: o.metadata.generation.unwrap_or(0),
                        translated: translated.cloned(),
                        status,
                    });
                }
            }
        )*};
    }
    each!(
        gateway_classes GatewayClass,
        gateways Gateway,
        listener_sets ListenerSet,
        http_routes HTTPRoute,
        grpc_routes GRPCRoute,
        tls_routes TLSRoute,
        tcp_routes TCPRoute,
        udp_routes UDPRoute,
        backend_tls_policies BackendTLSPolicy,
        security_policies SecurityPolicy,
        backend_traffic_policies BackendTrafficPolicy,
        client_traffic_policies ClientTrafficPolicy
    );
    out
}

/// Resolves on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            let _ = ctrl_c.await;
            return;
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}
