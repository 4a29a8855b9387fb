//! What provisioned proxies have applied, read back by the leading
//! controller so that a Gateway's `Programmed` condition tells the truth
//! (issue "Kubernetes mode, production-ready", item 4).
//!
//! Each proxy serves its [`ProxyState`] as JSON at `/state` on its admin
//! port (next to `/readyz`; nothing secret: the Gateway, the config version
//! and generation applied, and the sockets it could not bind). The leader
//! polls the **ready** endpoints of every provisioned Gateway's Service (from
//! the EndpointSlices the controller watches anyway) with [`Poller`]: every
//! second while a Gateway has no ready replica serving its current
//! generation, every ten seconds once all are settled, and at once when the
//! set of endpoints changes. A change in what the proxies report triggers a
//! translation pass, which
//!
//! - feeds the reported bind errors into translation as standalone mode
//!   feeds its own (the listener on that port gets `Accepted=False` and
//!   `Programmed=False`, reason `PortUnavailable`), and
//! - sets the Gateway's `Programmed` from [`Observed`]: `True` only when at
//!   least one ready replica serves the Gateway's current generation,
//!   otherwise `False` with reason `Pending` saying what is awaited
//!   (`provision::adjust_statuses`).
//!
//! A proxy of an older release without `/state` (404) counts as serving
//! what it was sent once ready, as before this existed, so an upgrade does
//! not flip Gateways to `Pending`.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use portcullis_store::{ObjectKey, Snapshot};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

/// The path proxies serve their state at.
pub const STATE_PATH: &str = "/state";

/// Largest `/state` document read.
const MAX_STATE: usize = 256 << 10;

/// What one proxy has applied (served at [`STATE_PATH`]).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyState {
    /// `namespace/name` of the Gateway it serves.
    pub gateway: String,
    /// The stream version of the configuration applied (0: none yet).
    pub version: u64,
    /// The Gateway's `metadata.generation` that configuration was computed from (0: unknown).
    pub generation: i64,
    /// Listener ports it could not bind, with the OS error.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub bind_errors: BTreeMap<u16, String>,
    /// Shutting down (SIGTERM received): not ready, still serving for a while.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub draining: bool,
}

impl ProxyState {
    /// The `/state` document.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("plain data serialises")
    }
}

/// What polling one ready endpoint found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Probe {
    /// The proxy's state.
    State(ProxyState),
    /// A proxy without `/state` (an older release): taken as serving what it was sent.
    Legacy,
    /// No answer (connection refused, timeout, bad document).
    Unreachable(String),
}

/// The ready proxy endpoints of one Gateway and what each reported.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GatewayProxies {
    /// The Gateway's `metadata.generation` the endpoints were listed for.
    pub generation: i64,
    /// One entry per ready endpoint address.
    pub probes: BTreeMap<IpAddr, Probe>,
}

impl GatewayProxies {
    /// Ready replicas serving generation `generation` or later.
    pub fn serving(&self, generation: i64) -> usize {
        self.probes
            .values()
            .filter(|p| match p {
                Probe::State(s) => s.version > 0 && s.generation >= generation,
                Probe::Legacy => true,
                Probe::Unreachable(_) => false,
            })
            .count()
    }

    /// The bind errors reported by replicas serving `generation` or later, by port.
    pub fn bind_errors(&self, generation: i64) -> BTreeMap<u16, String> {
        let mut out = BTreeMap::new();
        for p in self.probes.values() {
            if let Probe::State(s) = p
                && s.generation >= generation
            {
                for (port, e) in &s.bind_errors {
                    out.entry(*port).or_insert_with(|| e.clone());
                }
            }
        }
        out
    }

    fn settled(&self) -> bool {
        !self.probes.is_empty() && self.serving(self.generation) == self.probes.len()
    }
}

/// Every provisioned Gateway's proxies, as last polled.
pub type Observed = BTreeMap<ObjectKey, GatewayProxies>;

/// What to poll: each provisioned Gateway's current generation and ready endpoint addresses.
pub type Targets = BTreeMap<ObjectKey, (i64, Vec<IpAddr>)>;

/// The ready endpoint addresses of Service `ns/service` (EndpointSlices
/// labelled `kubernetes.io/service-name`; an endpoint without a `ready`
/// condition counts as ready, as the API defines).
pub fn ready_endpoints(snapshot: &Snapshot, ns: &str, service: &str) -> Vec<IpAddr> {
    let mut out: Vec<IpAddr> = snapshot
        .endpoint_slices
        .iter()
        .filter(|(k, s)| {
            k.namespace == ns
                && s.metadata
                    .labels
                    .as_ref()
                    .and_then(|l| l.get("kubernetes.io/service-name"))
                    .is_some_and(|n| n == service)
        })
        .flat_map(|(_, s)| s.endpoints.iter())
        .filter(|e| e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true))
        .flat_map(|e| e.addresses.iter())
        .filter_map(|a| a.parse().ok())
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Polls proxies' [`STATE_PATH`] in the background; dropping it stops polling.
pub struct Poller {
    targets: watch::Sender<Targets>,
    observed: watch::Receiver<Observed>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Poller {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Poller {
    /// Start polling the proxies' admin `port`.
    pub fn start(port: u16) -> Poller {
        let (targets, targets_rx) = watch::channel(Targets::new());
        let (observed_tx, observed) = watch::channel(Observed::new());
        let task = tokio::spawn(poll_loop(port, targets_rx, observed_tx));
        Poller {
            targets,
            observed,
            task,
        }
    }

    /// Replace what is polled (a no-op when unchanged).
    pub fn set_targets(&self, targets: Targets) {
        self.targets.send_if_modified(|t| {
            if *t == targets {
                false
            } else {
                *t = targets;
                true
            }
        });
    }

    /// What was observed; changes only when a proxy's report changes.
    pub fn subscribe(&self) -> watch::Receiver<Observed> {
        self.observed.clone()
    }
}

async fn poll_loop(
    port: u16,
    mut targets: watch::Receiver<Targets>,
    observed: watch::Sender<Observed>,
) {
    loop {
        let current = targets.borrow_and_update().clone();
        let mut next = Observed::new();
        let polls = current.iter().flat_map(|(gw, (generation, ips))| {
            ips.iter().map(move |ip| async move {
                let probe = probe(SocketAddr::new(*ip, port)).await;
                (gw.clone(), *generation, *ip, probe)
            })
        });
        for (gw, generation, ip, probe) in futures_util::future::join_all(polls).await {
            let entry = next.entry(gw).or_default();
            entry.generation = generation;
            entry.probes.insert(ip, probe);
        }
        for (gw, (generation, _)) in &current {
            next.entry(gw.clone()).or_default().generation = *generation;
        }
        let settled = next.values().all(GatewayProxies::settled);
        observed.send_if_modified(|o| {
            if *o == next {
                false
            } else {
                *o = next;
                true
            }
        });
        let wait = if settled {
            Duration::from_secs(10)
        } else {
            Duration::from_secs(1)
        };
        tokio::select! {
            r = targets.changed() => if r.is_err() { return },
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// GET `/state` from one proxy (1 s to connect, 2 s in all).
async fn probe(addr: SocketAddr) -> Probe {
    match tokio::time::timeout(Duration::from_secs(2), fetch(addr)).await {
        Ok(Ok(Some(body))) => match serde_json::from_slice::<ProxyState>(&body) {
            Ok(s) => Probe::State(s),
            Err(e) => Probe::Unreachable(format!("{addr}{STATE_PATH}: {e}")),
        },
        Ok(Ok(None)) => Probe::Legacy,
        Ok(Err(e)) => Probe::Unreachable(format!("{addr}{STATE_PATH}: {e}")),
        Err(_) => Probe::Unreachable(format!("{addr}{STATE_PATH}: timed out")),
    }
}

/// The body of a 200, `None` for a 404.
async fn fetch(addr: SocketAddr) -> Result<Option<Bytes>, String> {
    let tcp = tokio::time::timeout(Duration::from_secs(1), tokio::net::TcpStream::connect(addr))
        .await
        .map_err(|_| "connect timed out".to_string())?
        .map_err(|e| e.to_string())?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| e.to_string())?;
    let conn = tokio::spawn(conn);
    let req = http::Request::get(STATE_PATH)
        .header(http::header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let resp = send.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status();
    let body = http_body_util::Limited::new(resp.into_body(), MAX_STATE)
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    conn.abort();
    match status.as_u16() {
        200 => Ok(Some(body)),
        404 => Ok(None),
        s => Err(format!("answered {s}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(generation: i64, bind: &[(u16, &str)]) -> Probe {
        Probe::State(ProxyState {
            gateway: "ns/gw".into(),
            version: 3,
            generation,
            bind_errors: bind.iter().map(|(p, e)| (*p, e.to_string())).collect(),
            draining: false,
        })
    }

    #[test]
    fn serving_counts_replicas_at_the_current_generation() {
        let ip = |n: u8| IpAddr::from([10, 0, 0, n]);
        let g = GatewayProxies {
            generation: 2,
            probes: BTreeMap::from([
                (ip(1), state(2, &[(80, "in use")])),
                (ip(2), state(1, &[(443, "denied")])),
                (ip(3), Probe::Unreachable("refused".into())),
                (ip(4), Probe::Legacy),
            ]),
        };
        assert_eq!(g.serving(2), 2);
        assert_eq!(g.serving(1), 3);
        // Only replicas at the generation asked for count for bind errors.
        assert_eq!(
            g.bind_errors(2),
            BTreeMap::from([(80, "in use".to_string())])
        );
        assert!(!g.settled());
        assert!(!GatewayProxies::default().settled());
    }

    #[test]
    fn the_state_document_round_trips_and_omits_what_is_empty() {
        let s = ProxyState {
            gateway: "ns/gw".into(),
            version: 1,
            generation: 4,
            ..Default::default()
        };
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(text, r#"{"gateway":"ns/gw","version":1,"generation":4}"#);
        assert_eq!(serde_json::from_str::<ProxyState>(&text).unwrap(), s);
    }
}
