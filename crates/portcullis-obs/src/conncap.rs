//! [`ConnCap`]: a cap on open connections, shared by the data plane's ports
//! and the control endpoints' server ([`crate::control`]). An accept loop
//! takes a permit before it accepts; at the cap it stops accepting, so new
//! connections wait in the kernel's backlog, and counts the event.

use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::accept::CapLog;

/// The cap on open client connections of one port.
#[derive(Debug)]
pub struct ConnCap {
    what: &'static str,
    max: usize,
    sem: Arc<Semaphore>,
    open: Arc<AtomicUsize>,
    reached: AtomicU64,
    log: Mutex<CapLog>,
}

/// One admitted connection: holds its place under the cap until dropped.
#[derive(Debug)]
pub struct Admitted {
    _permit: OwnedSemaphorePermit,
    open: Arc<AtomicUsize>,
}

impl Drop for Admitted {
    fn drop(&mut self) {
        self.open.fetch_sub(1, Ordering::Relaxed);
    }
}

impl ConnCap {
    /// A cap of `max` connections (at least 1); `what` names it in the log.
    pub fn new(what: &'static str, max: usize) -> Self {
        let max = max.clamp(1, Semaphore::MAX_PERMITS);
        ConnCap {
            what,
            max,
            sem: Arc::new(Semaphore::new(max)),
            open: Arc::default(),
            reached: AtomicU64::new(0),
            log: Mutex::new(CapLog::default()),
        }
    }

    /// A permit for one more connection, waiting while the port is at its
    /// cap (each such wait is counted and logged, rate-limited).
    pub async fn acquire(&self) -> OwnedSemaphorePermit {
        if let Ok(p) = self.sem.clone().try_acquire_owned() {
            return p;
        }
        self.reached.fetch_add(1, Ordering::Relaxed);
        if let Ok(mut log) = self.log.lock() {
            log.reached(self.what, self.max);
        }
        self.sem
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed")
    }

    /// A connection was accepted with `permit`: it counts as open until
    /// the returned guard is dropped.
    pub fn admit(&self, permit: OwnedSemaphorePermit) -> Admitted {
        self.open.fetch_add(1, Ordering::Relaxed);
        Admitted {
            _permit: permit,
            open: self.open.clone(),
        }
    }

    /// Connections open now (a permit an accept loop holds while it waits
    /// for the next connection is not one).
    pub fn open(&self) -> usize {
        self.open.load(Ordering::Relaxed)
    }

    /// How many times accepting paused because the cap was reached.
    pub fn reached(&self) -> u64 {
        self.reached.load(Ordering::Relaxed)
    }
}
