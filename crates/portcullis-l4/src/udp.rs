//! UDPRoute: sessions keyed by client address, one upstream socket each.
//!
//! The first datagram from a client address opens a session: the port's
//! oldest route picks a weighted backend and an endpoint, and a socket
//! connected to it is opened. Later datagrams from that address go to the same
//! endpoint; replies go back to the client from the port's own socket. A
//! session ends after `udp_idle_timeout` without a datagram either way; the
//! table holds at most `udp_max_sessions`, evicting the least recently active.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use portcullis_ir::Port;
use tokio::net::UdpSocket;
use tokio::task::{AbortHandle, JoinSet};
use tokio::time::Instant;

use crate::L4Port;
use crate::select;
use crate::splice::Activity;
use portcullis_obs::metrics::L4Stats;

/// Largest UDP payload.
const MAX_DATAGRAM: usize = 65_535;

struct Session {
    upstream: Arc<UdpSocket>,
    activity: Arc<Activity>,
    stats: Arc<L4Stats>,
    id: u64,
    task: AbortHandle,
}

#[derive(Default)]
struct Sessions {
    map: HashMap<SocketAddr, Session>,
    next_id: u64,
}

impl Sessions {
    /// Makes room for one more session, evicting the least recently active.
    fn make_room(&mut self, max: usize) {
        while self.map.len() >= max.max(1) {
            let Some(oldest) = self
                .map
                .iter()
                .min_by_key(|(_, s)| s.activity.last())
                .map(|(a, _)| *a)
            else {
                return;
            };
            if let Some(s) = self.map.remove(&oldest) {
                tracing::debug!(client = %oldest, "UDP session evicted (table full)");
                s.task.abort();
            }
        }
    }

    fn remove_if(&mut self, client: SocketAddr, id: u64) {
        if self.map.get(&client).is_some_and(|s| s.id == id) {
            self.map.remove(&client);
        }
    }
}

/// [`L4Port::serve_udp`] with default options.
pub async fn serve_udp<D>(socket: UdpSocket, port: Arc<ArcSwap<Port>>, drain: D) -> io::Result<()>
where
    D: Future<Output = Instant> + Send,
{
    L4Port::from_shared(port).serve_udp(socket, drain).await
}

impl L4Port {
    /// Serves UDP on `socket` until `drain` resolves (with the force-close
    /// deadline): then no session is opened any more, existing sessions keep
    /// forwarding until they go idle or the deadline passes.
    pub async fn serve_udp<D>(&self, socket: UdpSocket, drain: D) -> io::Result<()>
    where
        D: Future<Output = Instant> + Send,
    {
        let socket = Arc::new(socket);
        let sessions = Arc::new(Mutex::new(Sessions::default()));
        let mut tasks = JoinSet::new();
        let mut buf = vec![0u8; MAX_DATAGRAM];
        let mut deadline: Option<Instant> = None;
        tokio::pin!(drain);
        loop {
            tokio::select! {
                d = &mut drain, if deadline.is_none() => {
                    deadline = Some(d);
                    if tasks.is_empty() { break; }
                }
                () = sleep_until_opt(deadline) => break,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {
                    if deadline.is_some() && tasks.is_empty() { break; }
                }
                received = socket.recv_from(&mut buf) => match received {
                    Ok((n, client)) => {
                        self.datagram(&socket, &sessions, &mut tasks, client, &buf[..n], deadline.is_none()).await;
                    }
                    Err(e) => {
                        // e.g. ICMP errors surfacing on some platforms: keep serving,
                        // without spinning if the error persists.
                        tracing::debug!(error = %e, "UDP receive failed");
                        tokio::time::sleep(Duration::from_millis(10)).await;
                    }
                },
            }
        }
        tasks.shutdown().await;
        Ok(())
    }

    async fn datagram(
        &self,
        socket: &Arc<UdpSocket>,
        sessions: &Arc<Mutex<Sessions>>,
        tasks: &mut JoinSet<()>,
        client: SocketAddr,
        data: &[u8],
        accept_new: bool,
    ) {
        let existing = lock(sessions)
            .map
            .get(&client)
            .map(|s| (s.upstream.clone(), s.activity.clone(), s.stats.clone()));
        let (upstream, activity, stats) = match existing {
            Some(s) => s,
            None if !accept_new => return,
            None => match self.open_session(socket, sessions, tasks, client).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!(%client, error = %e, "UDP datagram dropped");
                    return;
                }
            },
        };
        activity.touch();
        stats.bytes(data.len() as u64, 0);
        if let Err(e) = upstream.send(data).await {
            tracing::debug!(%client, error = %e, "UDP send to backend failed");
        }
    }

    async fn open_session(
        &self,
        socket: &Arc<UdpSocket>,
        sessions: &Arc<Mutex<Sessions>>,
        tasks: &mut JoinSet<()>,
        client: SocketAddr,
    ) -> Result<
        (Arc<UdpSocket>, Arc<Activity>, Arc<L4Stats>),
        Box<dyn std::error::Error + Send + Sync>,
    > {
        let port = self.shared().load_full();
        let route = select::oldest_route(&port).ok_or("no UDPRoute on the port")?;
        let target = select::upstreams(route, &mut rand::rng())?[0];
        let local: SocketAddr = if target.is_ipv4() {
            (Ipv4Addr::UNSPECIFIED, 0).into()
        } else {
            (Ipv6Addr::UNSPECIFIED, 0).into()
        };
        let upstream = UdpSocket::bind(local).await?;
        upstream.connect(target).await?;
        let upstream = Arc::new(upstream);
        let activity = Arc::new(Activity::new());
        let listener = port
            .listeners
            .iter()
            .find(|l| l.l4_routes.iter().any(|r| std::ptr::eq(r, route)))
            .map_or("", |l| l.name.as_str());
        let stats = Arc::new(crate::port::route_stats(listener, route, "udp"));
        let mut table = lock(sessions);
        table.make_room(self.options().udp_max_sessions);
        table.next_id += 1;
        let id = table.next_id;
        let task = tasks.spawn(relay(
            upstream.clone(),
            socket.clone(),
            client,
            activity.clone(),
            self.options().udp_idle_timeout,
            sessions.clone(),
            id,
            stats.clone(),
        ));
        table.map.insert(
            client,
            Session {
                upstream: upstream.clone(),
                activity: activity.clone(),
                stats: stats.clone(),
                id,
                task,
            },
        );
        tracing::debug!(%client, backend = %target, "UDP session opened");
        Ok((upstream, activity, stats))
    }
}

fn lock(sessions: &Mutex<Sessions>) -> std::sync::MutexGuard<'_, Sessions> {
    sessions.lock().unwrap_or_else(|e| e.into_inner())
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Backend → client for one session, until it has been idle for `idle`.
#[allow(clippy::too_many_arguments)]
async fn relay(
    upstream: Arc<UdpSocket>,
    socket: Arc<UdpSocket>,
    client: SocketAddr,
    activity: Arc<Activity>,
    idle: Duration,
    sessions: Arc<Mutex<Sessions>>,
    id: u64,
    stats: Arc<L4Stats>,
) {
    let _active = stats.open();
    let mut buf = vec![0u8; MAX_DATAGRAM];
    loop {
        tokio::select! {
            r = upstream.recv(&mut buf) => match r {
                Ok(n) => {
                    activity.touch();
                    stats.bytes(0, n as u64);
                    if let Err(e) = socket.send_to(&buf[..n], client).await {
                        tracing::debug!(%client, error = %e, "UDP send to client failed");
                    }
                }
                // ICMP port unreachable from the backend shows up here; the session stays.
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {}
                Err(e) => {
                    tracing::debug!(%client, error = %e, "UDP receive from backend failed");
                    break;
                }
            },
            () = activity.idle(idle) => break,
        }
    }
    lock(&sessions).remove_if(client, id);
    tracing::debug!(%client, "UDP session closed");
}
