//! What an accept loop does when `accept` fails: back off and log, rate-limited.
//!
//! `accept` fails for two kinds of reasons. A connection that was reset or
//! aborted before it was accepted (`ECONNABORTED`, `ECONNRESET`) concerns
//! that connection only: the loop goes on at once. Anything else, chiefly
//! running out of file descriptors (`EMFILE`, `ENFILE`) or kernel memory
//! (`ENOBUFS`, `ENOMEM`), does not go away by retrying at once: the
//! listening socket stays readable, so a loop that retries spins a core
//! and floods the log. [`AcceptBackoff`] makes the loop wait, 10 ms after
//! the first such error, doubling up to 1 s while errors continue, back to
//! nothing after a successful accept; and it logs at most one warning per
//! [`LOG_EVERY`], with the number of errors since the last one.

use std::io;
use std::time::{Duration, Instant};

/// The first wait after a resource error.
pub const MIN_BACKOFF: Duration = Duration::from_millis(10);
/// The longest wait between attempts while errors continue.
pub const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// At most one warning per this long.
pub const LOG_EVERY: Duration = Duration::from_secs(5);

/// Backoff and log state of one accept loop.
#[derive(Debug)]
pub struct AcceptBackoff {
    what: &'static str,
    delay: Duration,
    last_log: Option<Instant>,
    unlogged: u64,
    total: u64,
}

impl AcceptBackoff {
    /// State for an accept loop; `what` names it in the log (e.g. `"admin API"`).
    pub fn new(what: &'static str) -> Self {
        AcceptBackoff {
            what,
            delay: Duration::ZERO,
            last_log: None,
            unlogged: 0,
            total: 0,
        }
    }

    /// A connection was accepted: the next error starts from the shortest wait.
    pub fn accepted(&mut self) {
        self.delay = Duration::ZERO;
    }

    /// Errors seen so far (transient ones included).
    pub fn errors(&self) -> u64 {
        self.total
    }

    /// Record an accept error; returns how long to wait before the next
    /// attempt (zero for errors that concern one connection only). Logs a
    /// warning at most once per [`LOG_EVERY`].
    pub fn failed(&mut self, e: &io::Error) -> Duration {
        self.failed_at(e, Instant::now())
    }

    fn failed_at(&mut self, e: &io::Error, now: Instant) -> Duration {
        self.total += 1;
        if is_transient(e) {
            tracing::debug!(what = self.what, error = %e, "accept: connection gone before it was accepted");
            return Duration::ZERO;
        }
        self.unlogged += 1;
        if self
            .last_log
            .is_none_or(|t| now.duration_since(t) >= LOG_EVERY)
        {
            tracing::warn!(
                what = self.what,
                error = %e,
                errors = self.unlogged,
                "accept failed (out of file descriptors? see ulimit -n); backing off"
            );
            self.last_log = Some(now);
            self.unlogged = 0;
        }
        self.delay = (self.delay * 2).clamp(MIN_BACKOFF, MAX_BACKOFF);
        self.delay
    }
}

/// Rate-limited warnings for a connection cap: each time the cap is
/// reached is counted, one warning per [`LOG_EVERY`] at most.
#[derive(Debug, Default)]
pub struct CapLog {
    last_log: Option<Instant>,
    unlogged: u64,
    total: u64,
}

impl CapLog {
    /// The cap `max` of `what` was reached (accepting pauses).
    pub fn reached(&mut self, what: &'static str, max: usize) {
        self.total += 1;
        self.unlogged += 1;
        let now = Instant::now();
        if self
            .last_log
            .is_none_or(|t| now.duration_since(t) >= LOG_EVERY)
        {
            tracing::warn!(
                what,
                max,
                times = self.unlogged,
                "connection cap reached; new connections wait in the accept backlog"
            );
            self.last_log = Some(now);
            self.unlogged = 0;
        }
    }

    /// Times the cap was reached.
    pub fn total(&self) -> u64 {
        self.total
    }
}

/// Errors about one connection (the next accept may well succeed).
fn is_transient(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::Interrupted
            | io::ErrorKind::WouldBlock
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emfile() -> io::Error {
        // EMFILE on Linux and the BSDs.
        io::Error::from_raw_os_error(24)
    }

    #[test]
    fn resource_errors_back_off_exponentially_up_to_the_cap_and_reset_on_success() {
        let mut b = AcceptBackoff::new("test");
        let t0 = Instant::now();
        let waits: Vec<Duration> = (0..10).map(|_| b.failed_at(&emfile(), t0)).collect();
        assert_eq!(waits[0], MIN_BACKOFF);
        assert_eq!(waits[1], MIN_BACKOFF * 2);
        assert!(waits.windows(2).all(|w| w[1] >= w[0]));
        assert_eq!(*waits.last().unwrap(), MAX_BACKOFF);
        // Ten errors in a row wait several seconds in all instead of spinning.
        let total: Duration = waits.iter().sum();
        assert!(total >= Duration::from_secs(3), "{total:?}");
        b.accepted();
        assert_eq!(b.failed_at(&emfile(), t0), MIN_BACKOFF);
        assert_eq!(b.errors(), 11);
    }

    #[test]
    fn per_connection_errors_do_not_wait() {
        let mut b = AcceptBackoff::new("test");
        let aborted = io::Error::from(io::ErrorKind::ConnectionAborted);
        assert_eq!(b.failed(&aborted), Duration::ZERO);
        assert_eq!(b.failed(&emfile()), MIN_BACKOFF);
    }

    #[test]
    fn warnings_are_rate_limited() {
        let mut b = AcceptBackoff::new("test");
        let t0 = Instant::now();
        b.failed_at(&emfile(), t0);
        assert_eq!(b.last_log, Some(t0));
        for i in 1..100 {
            b.failed_at(&emfile(), t0 + Duration::from_millis(i * 10));
        }
        // One warning so far; the 99 errors since are counted for the next one.
        assert_eq!(b.last_log, Some(t0));
        assert_eq!(b.unlogged, 99);
        let later = t0 + LOG_EVERY;
        b.failed_at(&emfile(), later);
        assert_eq!(b.last_log, Some(later));
        assert_eq!(b.unlogged, 0);
    }
}
