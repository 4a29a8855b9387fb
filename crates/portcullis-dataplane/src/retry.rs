//! Retries (GEP-1731) and per-attempt timeouts.
//!
//! An attempt is retried when it fails to connect (unless a
//! BackendTrafficPolicy leaves `connect-failure` out), when the connection
//! fails once made (BackendTrafficPolicy `reset`), or when the response
//! status is one of the policy's codes, up to `attempts` retries, waiting
//! `backoff` between them (exponential with jitter up to `max_backoff` when
//! set). Each retry needs a permit of the backend's retry budget
//! (`EndpointSet::try_retry`); without one the last answer stands. Retries
//! only happen when the request body can be replayed (empty or buffered);
//! the whole loop runs inside the request timeout.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::time::Sleep;

use http::StatusCode;
use portcullis_ir::Retry;

use crate::error::ProxyError;

/// A compiled retry policy.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    codes: Box<[u16]>,
    attempts: u32,
    backoff: Duration,
    max_backoff: Option<Duration>,
    on_reset: bool,
    on_connect_failure: bool,
}

impl RetryPolicy {
    /// Compile.
    pub fn new(r: &Retry) -> Self {
        RetryPolicy {
            codes: r.codes.clone().into(),
            attempts: r.attempts,
            backoff: Duration::from_millis(r.backoff_ms.unwrap_or(0)),
            max_backoff: r.max_backoff_ms.map(Duration::from_millis),
            on_reset: r.on_reset,
            on_connect_failure: r.on_connect_failure,
        }
    }

    /// The wait before retry `n` (1-based): constant, or exponential from
    /// `backoff` with full jitter up to `max_backoff`.
    fn wait(&self, n: u32) -> Duration {
        match self.max_backoff {
            None => self.backoff,
            Some(max) => {
                let cap = self
                    .backoff
                    .saturating_mul(1u32 << (n.saturating_sub(1)).min(16))
                    .min(max);
                let ms = u64::try_from(cap.as_millis()).unwrap_or(u64::MAX).max(1);
                Duration::from_millis(rand::Rng::random_range(&mut rand::rng(), ms / 2..=ms))
            }
        }
    }
}

impl RetryPolicy {
    /// Retries after the first attempt.
    pub fn max_retries(&self) -> u32 {
        self.attempts
    }
}

/// Why one attempt failed.
#[derive(Debug)]
pub enum AttemptError {
    /// Could not connect: retryable.
    Connect(String),
    /// Failed after connecting.
    Other(String),
    /// The per-attempt (`backendRequest`) timeout elapsed: retryable, and
    /// answered 504 when it is the last attempt.
    Timeout,
    /// The streamed request body went past the maximum body size: 413.
    TooLarge,
    /// The circuit breaker refused the attempt (`maxParallelRequests`): 503.
    Overflow,
}

/// Run attempts until one succeeds or the policy gives up.
pub async fn run<T, F, Fut, G>(
    policy: Option<&RetryPolicy>,
    replayable: bool,
    per_try: Option<Duration>,
    mut attempt: F,
    status: impl Fn(&T) -> StatusCode,
    mut may_retry: impl FnMut() -> Option<G>,
) -> Result<T, ProxyError>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, AttemptError>>,
{
    let mut _permit: Option<G> = None;
    let max_retries = match policy {
        Some(p) if replayable => p.attempts,
        _ => 0,
    };
    let mut n = 0;
    loop {
        // Boxed: the upstream exchange is the deepest future of a request;
        // keeping it out of line keeps every enclosing future (moved when a
        // request is spawned or boxed) small.
        let fut = Box::pin(attempt(n));
        let res = MaybeTimeout::new(per_try, fut)
            .await
            .unwrap_or(Err(AttemptError::Timeout));
        let retryable = match &res {
            Ok(r) => policy.is_some_and(|p| p.codes.contains(&status(r).as_u16())),
            Err(AttemptError::Connect(_)) => policy.is_none_or(|p| p.on_connect_failure),
            Err(AttemptError::Timeout) => policy.is_some(),
            Err(AttemptError::Other(_)) => policy.is_some_and(|p| p.on_reset),
            Err(AttemptError::TooLarge | AttemptError::Overflow) => false,
        };
        // The budget's permit for the next retry; none: the answer stands.
        let permit = (retryable && n < max_retries)
            .then(&mut may_retry)
            .flatten();
        if permit.is_none() {
            if retryable && n < max_retries {
                tracing::debug!("retry budget exhausted: not retried");
            }
            return res.map_err(|e| match e {
                AttemptError::Connect(m) | AttemptError::Other(m) => ProxyError::Upstream(m),
                AttemptError::Timeout => ProxyError::Timeout,
                AttemptError::TooLarge => ProxyError::PayloadTooLarge,
                AttemptError::Overflow => ProxyError::Overflow,
            });
        }
        _permit = permit;
        n += 1;
        if let Some(p) = policy {
            let wait = p.wait(n);
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
        }
    }
}

pin_project_lite::pin_project! {
    /// A future with an optional time limit: `None` when the limit passed
    /// first. One future either way, so an enclosing `async fn` keeps one
    /// copy of `F`'s state (a `match` with `timeout(t, f).await` in one arm
    /// and `f.await` in the other keeps two).
    pub struct MaybeTimeout<F> {
        #[pin]
        fut: F,
        sleep: Option<Pin<Box<Sleep>>>,
    }
}

impl<F: Future> MaybeTimeout<F> {
    /// Limit `fut` to `limit`, if any.
    pub fn new(limit: Option<Duration>, fut: F) -> Self {
        MaybeTimeout {
            fut,
            sleep: limit.map(|t| Box::pin(tokio::time::sleep(t))),
        }
    }
}

impl<F: Future> Future for MaybeTimeout<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(v) = this.fut.poll(cx) {
            return Poll::Ready(Some(v));
        }
        match this.sleep.as_mut().map(|s| s.as_mut().poll(cx)) {
            Some(Poll::Ready(())) => Poll::Ready(None),
            _ => Poll::Pending,
        }
    }
}
