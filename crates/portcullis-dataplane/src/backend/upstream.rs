//! The upstream connection policy of one backend, from its
//! BackendTrafficPolicy: `circuitBreaker.maxConnections`,
//! `maxPendingRequests` and `maxRequestsPerConnection`, and the timeouts
//! `timeout.tcp.connectTimeout`, `timeout.http.connectionIdleTimeout` and
//! `maxConnectionDuration`. The lean HTTP/1.1 client ([`super::h1`]) applies
//! it to cleartext HTTP/1.1, [`super::hyper_pool`] to HTTP/2, TLS and
//! upgrades.
//!
//! Connections are counted with one atomic per backend, across worker
//! threads: a connection holds a [`ConnSlot`] from before it is made until
//! it is closed, pooled or not. A request that needs a new connection while
//! `maxConnections` are open waits for one to close (it is then *pending*),
//! at most the connect timeout, and only while fewer than
//! `maxPendingRequests` wait; otherwise it fails at once
//! ([`SlotError::Overflow`], answered 503 with the `UO` flag).
//!
//! Idle connections live in per-thread pools, where a request on another
//! thread cannot take them; so that they can never hold every slot while a
//! request waits, a connection goes back to a pool only while fewer than
//! `maxConnections` are open and nobody is waiting: at least one slot is
//! always held by a connection in use (which is released when its exchange
//! ends) or free.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use portcullis_ir::traffic::BackendTraffic;
use tokio::sync::Notify;

/// Why no connection slot was given.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SlotError {
    /// `maxConnections` are open and `maxPendingRequests` wait already, or
    /// no connection closed within the connect timeout.
    #[error("upstream overflow: {0}")]
    Overflow(&'static str),
}

/// The connection policy of one backend (shared by its endpoints).
#[derive(Debug)]
pub struct ConnPolicy {
    /// Time allowed to make a connection (none: the client's).
    pub connect_timeout: Option<Duration>,
    /// An idle pooled connection is closed after this (none: the client's).
    pub idle_timeout: Option<Duration>,
    /// A connection is not reused once this old.
    pub max_duration: Option<Duration>,
    /// Requests over one connection (0: unlimited).
    pub max_requests: u64,
    max_connections: usize,
    max_pending: usize,
    open: AtomicUsize,
    pending: AtomicUsize,
    freed: Notify,
    /// The connections hyper carries for this backend (HTTP/2, TLS,
    /// upgrades): [`super::hyper_pool`].
    pub(crate) hyper: super::hyper_pool::HyperPool,
}

/// One open (or being opened) upstream connection, counted against its
/// backend's `maxConnections` until dropped.
#[derive(Debug)]
pub struct ConnSlot(Arc<ConnPolicy>);

impl Drop for ConnSlot {
    fn drop(&mut self) {
        self.0.open.fetch_sub(1, Ordering::AcqRel);
        self.0.freed.notify_one();
    }
}

impl ConnSlot {
    /// The policy this slot counts against.
    pub fn policy(&self) -> &Arc<ConnPolicy> {
        &self.0
    }
}

/// Leaves the pending count when dropped.
struct Pending<'a>(&'a AtomicUsize);

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn ms(v: Option<u64>) -> Option<Duration> {
    v.map(Duration::from_millis)
}

impl ConnPolicy {
    /// The policy of a backend, or `None` when its BackendTrafficPolicy sets
    /// nothing about connections (the client's defaults then apply, without
    /// counting).
    pub fn from_ir(p: &BackendTraffic) -> Option<Arc<ConnPolicy>> {
        let cb = p.circuit_breaker.as_ref();
        let t = p.timeouts.as_ref();
        if cb.is_none() && t.is_none() {
            return None;
        }
        let size = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
        Some(Arc::new(ConnPolicy {
            connect_timeout: ms(t.and_then(|t| t.connect_ms)),
            idle_timeout: ms(t.and_then(|t| t.idle_ms)),
            max_duration: ms(t.and_then(|t| t.max_duration_ms)),
            max_requests: cb.map_or(0, |c| c.max_requests_per_connection),
            max_connections: cb.map_or(usize::MAX, |c| size(c.max_connections).max(1)),
            max_pending: cb.map_or(usize::MAX, |c| size(c.max_pending_requests)),
            open: AtomicUsize::new(0),
            pending: AtomicUsize::new(0),
            freed: Notify::new(),
            hyper: Default::default(),
        }))
    }

    /// A key naming this policy in the connection pools (connections of
    /// different policies are never mixed).
    pub fn key(self: &Arc<Self>) -> usize {
        Arc::as_ptr(self) as usize
    }

    /// Connections open now (in use or idle).
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Acquire)
    }

    fn try_open(self: &Arc<Self>) -> Option<ConnSlot> {
        let mut n = self.open.load(Ordering::Acquire);
        loop {
            if n >= self.max_connections {
                return None;
            }
            match self
                .open
                .compare_exchange_weak(n, n + 1, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) => return Some(ConnSlot(self.clone())),
                Err(now) => n = now,
            }
        }
    }

    /// A slot for a new connection: at once when fewer than
    /// `maxConnections` are open; else, as one of at most
    /// `maxPendingRequests` waiting requests, when a connection closes
    /// within `wait`.
    pub async fn slot(self: &Arc<Self>, wait: Duration) -> Result<ConnSlot, SlotError> {
        if let Some(s) = self.try_open() {
            return Ok(s);
        }
        if self.pending.fetch_add(1, Ordering::AcqRel) >= self.max_pending {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            return Err(SlotError::Overflow("maxPendingRequests reached"));
        }
        let _pending = Pending(&self.pending);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(s) = self.try_open() {
                return Ok(s);
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return Err(SlotError::Overflow(
                    "no upstream connection within the connect timeout",
                ));
            }
        }
    }

    /// Whether a connection whose exchange ended may go back to a pool:
    /// not when a request waits for a slot, and not when it would leave no
    /// slot to connections in use (see the module documentation).
    pub fn may_pool(&self) -> bool {
        self.pending.load(Ordering::Acquire) == 0 && self.open() < self.max_connections
    }

    /// Whether a request waits for a connection slot.
    pub fn has_waiters(&self) -> bool {
        self.pending.load(Ordering::Acquire) != 0
    }

    /// Whether a connection made at `born` that carried `uses` requests may
    /// carry another at `now`.
    pub fn reusable(&self, born: Instant, uses: u64, now: Instant) -> bool {
        (self.max_requests == 0 || uses < self.max_requests)
            && self.max_duration.is_none_or(|d| now < born + d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_ir::traffic::CircuitBreaker;

    fn policy(max_connections: u64, max_pending: u64) -> Arc<ConnPolicy> {
        ConnPolicy::from_ir(&BackendTraffic {
            circuit_breaker: Some(CircuitBreaker {
                max_parallel_requests: 1024,
                max_parallel_retries: 1024,
                max_connections,
                max_pending_requests: max_pending,
                max_requests_per_connection: 2,
            }),
            ..Default::default()
        })
        .unwrap()
    }

    #[tokio::test]
    async fn slots_are_bounded_waiters_are_bounded_and_a_closed_connection_wakes_one() {
        let p = policy(2, 1);
        let a = p.slot(Duration::from_secs(1)).await.unwrap();
        let _b = p.slot(Duration::from_secs(1)).await.unwrap();
        assert_eq!(p.open(), 2);
        assert!(!p.may_pool(), "the last slot is not kept idle");
        // One may wait; a second waiter is refused at once.
        let p2 = p.clone();
        let waiter = tokio::spawn(async move { p2.slot(Duration::from_secs(5)).await });
        tokio::time::timeout(Duration::from_secs(5), async {
            while p.pending.load(Ordering::Acquire) == 0 {
                tokio::task::yield_now().await;
            }
        })
        .await
        .unwrap();
        let t = Instant::now();
        assert_eq!(
            p.slot(Duration::from_secs(5)).await.unwrap_err(),
            SlotError::Overflow("maxPendingRequests reached")
        );
        assert!(t.elapsed() < Duration::from_secs(1));
        drop(a);
        let c = tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        assert_eq!(p.open(), 2);
        drop(c);
        assert_eq!(p.open(), 1);
    }

    #[tokio::test]
    async fn a_waiter_gives_up_after_its_wait() {
        let p = policy(1, 10);
        let _a = p.slot(Duration::from_secs(1)).await.unwrap();
        let t = Instant::now();
        assert!(p.slot(Duration::from_millis(100)).await.is_err());
        let e = t.elapsed();
        assert!(
            e >= Duration::from_millis(100) && e < Duration::from_secs(3),
            "{e:?}"
        );
        assert_eq!(p.pending.load(Ordering::Acquire), 0);
    }

    #[test]
    fn reuse_stops_after_max_requests_and_max_duration() {
        let mut p = ConnPolicy::from_ir(&BackendTraffic {
            timeouts: Some(portcullis_ir::traffic::ConnectionTimeouts {
                max_duration_ms: Some(1000),
                ..Default::default()
            }),
            ..Default::default()
        })
        .unwrap();
        let now = Instant::now();
        assert!(p.reusable(now, 1_000_000, now));
        assert!(!p.reusable(now, 0, now + Duration::from_secs(1)));
        Arc::get_mut(&mut p).unwrap().max_requests = 2;
        assert!(p.reusable(now, 1, now));
        assert!(!p.reusable(now, 2, now));
    }
}
