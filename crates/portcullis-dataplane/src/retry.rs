//! Retries (GEP-1731) and per-attempt timeouts.
//!
//! An attempt is retried when it fails to connect or the response status is
//! one of the policy's codes, up to `attempts` retries, waiting `backoff`
//! between them. Retries only happen when the request body can be replayed
//! (empty or buffered); the whole loop runs inside the request timeout.

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
}

impl RetryPolicy {
    /// Compile.
    pub fn new(r: &Retry) -> Self {
        RetryPolicy {
            codes: r.codes.clone().into(),
            attempts: r.attempts,
            backoff: Duration::from_millis(r.backoff_ms.unwrap_or(0)),
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
}

/// Run attempts until one succeeds or the policy gives up.
pub async fn run<T, F, Fut>(
    policy: Option<&RetryPolicy>,
    replayable: bool,
    per_try: Option<Duration>,
    mut attempt: F,
    status: impl Fn(&T) -> StatusCode,
) -> Result<T, ProxyError>
where
    F: FnMut(u32) -> Fut,
    Fut: Future<Output = Result<T, AttemptError>>,
{
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
            Err(AttemptError::Connect(_)) => true,
            Err(AttemptError::Timeout) => policy.is_some(),
            Err(AttemptError::Other(_) | AttemptError::TooLarge) => false,
        };
        if !retryable || n >= max_retries {
            return res.map_err(|e| match e {
                AttemptError::Connect(m) | AttemptError::Other(m) => ProxyError::Upstream(m),
                AttemptError::Timeout => ProxyError::Timeout,
                AttemptError::TooLarge => ProxyError::PayloadTooLarge,
            });
        }
        n += 1;
        if let Some(p) = policy
            && !p.backoff.is_zero()
        {
            tokio::time::sleep(p.backoff).await;
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
