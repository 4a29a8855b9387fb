//! Graceful drain as a type.
//!
//! A [`Drain`] is held by whoever owns a set of tasks (a port, the whole data
//! plane); every task holds a [`DrainWatch`]. [`Drain::start`] tells every
//! watch to stop taking new work and gives them a deadline after which they
//! force-close; [`Drain::closed`] resolves once every watch is dropped, i.e.
//! every task has finished.

use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

/// The owning side of a drain.
#[derive(Debug)]
pub struct Drain {
    tx: watch::Sender<Option<Instant>>,
}

/// The watching side: a cheap clone per task.
#[derive(Clone, Debug)]
pub struct DrainWatch {
    rx: watch::Receiver<Option<Instant>>,
}

impl Default for Drain {
    fn default() -> Self {
        Self::new()
    }
}

impl Drain {
    /// A drain that has not started.
    pub fn new() -> Self {
        Drain {
            tx: watch::Sender::new(None),
        }
    }

    /// A new watch for a task.
    pub fn watch(&self) -> DrainWatch {
        DrainWatch {
            rx: self.tx.subscribe(),
        }
    }

    /// Start draining: watches are signalled, with a force-close deadline
    /// `grace` from now. Starting twice keeps the first deadline.
    pub fn start(&self, grace: Duration) {
        let deadline = Instant::now() + grace;
        self.tx.send_if_modified(|d| {
            if d.is_none() {
                *d = Some(deadline);
                true
            } else {
                false
            }
        });
    }

    /// Whether draining has started.
    pub fn is_draining(&self) -> bool {
        self.tx.borrow().is_some()
    }

    /// Resolves when every watch has been dropped.
    pub async fn closed(&self) {
        self.tx.closed().await
    }

    /// Number of live watches.
    pub fn watchers(&self) -> usize {
        self.tx.receiver_count()
    }
}

impl DrainWatch {
    /// Resolves when draining starts, with the force-close deadline. If the
    /// [`Drain`] was dropped without starting, resolves at once with now.
    pub async fn signaled(&mut self) -> Instant {
        match self.rx.wait_for(Option::is_some).await {
            Ok(d) => d.unwrap_or_else(Instant::now),
            Err(_) => Instant::now(),
        }
    }

    /// The deadline if draining has started.
    pub fn deadline(&self) -> Option<Instant> {
        *self.rx.borrow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn signals_and_waits_for_watchers() {
        let drain = Drain::new();
        let mut w = drain.watch();
        assert_eq!(drain.watchers(), 1);
        let task = tokio::spawn(async move {
            let d = w.signaled().await;
            drop(w);
            d
        });
        drain.start(Duration::from_secs(5));
        let deadline = task.await.unwrap();
        assert!(deadline > Instant::now());
        tokio::time::timeout(Duration::from_secs(1), drain.closed())
            .await
            .unwrap();
        assert!(drain.is_draining());
    }
}
