//! Data-plane worker threads: one single-threaded tokio runtime per thread.
//!
//! With [`crate::Options::workers`] > 0, every HTTP(S) port binds one
//! `SO_REUSEPORT` socket per worker and runs one accept loop on each
//! worker's runtime; a connection (and the tasks it spawns: upstream
//! connections, tunnels, mirrors) then lives on one thread, with no
//! work-stealing scheduler, no cross-thread wake-ups and no contention.
//! The kernel spreads new connections across the sockets. The controller
//! (file reloads, translation) runs elsewhere, so a reload never stalls a
//! worker.
//!
//! With 0 workers everything runs on the caller's runtime (tests, embedding).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// The running worker threads; dropping this stops them (their runtimes and
/// every task on them are dropped).
#[derive(Debug, Default)]
pub struct Workers {
    handles: Vec<Handle>,
    _stop: Vec<oneshot::Sender<()>>,
}

impl Workers {
    /// Start `n` worker threads (none for 0).
    pub fn start(n: usize) -> io::Result<Self> {
        let mut w = Workers::default();
        for i in 0..n {
            let (stop_tx, stop_rx) = oneshot::channel::<()>();
            let (handle_tx, handle_rx) = std::sync::mpsc::channel();
            std::thread::Builder::new()
                .name(format!("portcullis-worker-{i}"))
                .spawn(move || {
                    let rt = match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt,
                        Err(e) => {
                            let _ = handle_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = handle_tx.send(Ok(rt.handle().clone()));
                    rt.block_on(async {
                        let _ = stop_rx.await;
                    });
                    rt.shutdown_timeout(Duration::from_millis(100));
                })?;
            let handle = handle_rx
                .recv()
                .map_err(|_| io::Error::other("worker thread exited"))??;
            w.handles.push(handle);
            w._stop.push(stop_tx);
        }
        Ok(w)
    }

    /// The workers' runtime handles (empty: use the caller's runtime).
    pub fn handles(&self) -> &[Handle] {
        &self.handles
    }
}

/// Bind `n` listening sockets on `addr`, non-blocking, with a deep accept
/// backlog; with `SO_REUSEPORT` when `n` > 1 (so, as with nginx `reuseport`,
/// another process of the same user could then bind the port too; with one
/// socket the port is exclusive, as a plain bind). With `retry`, the address was released by a
/// port stopped in the same apply: `AddrInUse` is retried for a short while.
pub(crate) async fn bind_reuseport(
    addr: SocketAddr,
    n: usize,
    retry: bool,
) -> io::Result<Vec<std::net::TcpListener>> {
    let mut tries = if retry { 20 } else { 0 };
    loop {
        match bind_all(addr, n) {
            Err(e) if e.kind() == io::ErrorKind::AddrInUse && tries > 0 => {
                tries -= 1;
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            r => return r,
        }
    }
}

fn bind_all(addr: SocketAddr, n: usize) -> io::Result<Vec<std::net::TcpListener>> {
    use socket2::{Domain, Protocol, Socket, Type};
    let mut out = Vec::with_capacity(n);
    // Every socket binds the address the first one got (`addr` may have port 0).
    let mut at = addr;
    for _ in 0..n.max(1) {
        let s = Socket::new(Domain::for_address(at), Type::STREAM, Some(Protocol::TCP))?;
        s.set_reuse_address(true)?;
        if n > 1 {
            s.set_reuse_port(true)?;
        }
        s.set_nonblocking(true)?;
        s.bind(&at.into())?;
        s.listen(4096)?;
        let l: std::net::TcpListener = s.into();
        at = l.local_addr()?;
        out.push(l);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reuseport_sockets_share_the_address_and_others_are_refused() {
        let socks = bind_reuseport("127.0.0.1:0".parse().unwrap(), 3, false)
            .await
            .unwrap();
        assert_eq!(socks.len(), 3);
        let addr = socks[0].local_addr().unwrap();
        assert!(socks.iter().all(|s| s.local_addr().unwrap() == addr));
        drop(socks);
        let plain = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let taken = plain.local_addr().unwrap();
        let e = bind_reuseport(taken, 1, false).await.unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::AddrInUse);
    }

    #[test]
    fn workers_run_tasks_on_their_own_threads_and_stop_when_dropped() {
        let w = Workers::start(2).unwrap();
        let names: Vec<String> = w
            .handles()
            .iter()
            .map(|h| {
                let (tx, rx) = std::sync::mpsc::channel();
                h.spawn(async move {
                    let _ = tx.send(std::thread::current().name().unwrap_or("").to_string());
                });
                rx.recv_timeout(Duration::from_secs(5)).unwrap()
            })
            .collect();
        assert_eq!(names, ["portcullis-worker-0", "portcullis-worker-1"]);
        // A task still pending on a worker is dropped when the workers are.
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        w.handles()[0].spawn(async move {
            let _tx = tx;
            std::future::pending::<()>().await
        });
        drop(w);
        assert_eq!(
            rx.recv_timeout(Duration::from_secs(5)),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected)
        );
    }
}
