//! Bounds on what a client or a backend can make the proxy wait for.
//!
//! - [`ConnCap`]: the per-port cap on open client connections
//!   ([`crate::Options::max_connections_per_port`]). An accept loop takes a
//!   permit before it accepts; at the cap it stops accepting, so new
//!   connections wait in the kernel's backlog, and counts the event.
//! - [`TimedBody`]: a request body that fails with [`BodyTimeout`] when the
//!   client sends nothing for [`crate::Options::body_idle_timeout`] while the
//!   proxy waits for it, or when the whole body took longer than
//!   [`crate::Options::body_timeout`]. The request is then answered 408 (if
//!   nothing was sent yet) and, on HTTP/1, the connection is closed (hyper
//!   does not reuse a connection whose request body was not read to its end).
//! - [`HeaderTimeout`]: the wait for an upstream response head
//!   ([`crate::Options::upstream_header_timeout`]), counted from the moment
//!   the request body was sent in full, so an upload is bounded by the body
//!   timeouts and not by this one, and a gRPC stream whose request body is
//!   still open is not cut.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
pub use portcullis_obs::conncap::{Admitted, ConnCap};
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

use crate::body::BoxError;

/// A request body timed out (see [`TimedBody`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("request body timeout")]
pub struct BodyTimeout;

/// What the handler learns from a [`TimedBody`] after handing it on.
#[derive(Debug, Default)]
pub struct BodyWatch {
    timed_out: AtomicBool,
    ended: AtomicBool,
    ended_notify: Notify,
}

impl BodyWatch {
    /// Whether the body failed with [`BodyTimeout`].
    pub fn timed_out(&self) -> bool {
        self.timed_out.load(Ordering::Acquire)
    }

    /// Whether the body was read to its end (or had none).
    pub fn ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    fn end(&self) {
        if !self.ended.swap(true, Ordering::AcqRel) {
            self.ended_notify.notify_waiters();
        }
    }

    /// Resolves once the body was read to its end.
    pub async fn wait_ended(&self) {
        loop {
            let n = self.ended_notify.notified();
            tokio::pin!(n);
            n.as_mut().enable();
            if self.ended() {
                return;
            }
            n.await;
        }
    }
}

/// The limits of a [`TimedBody`]; `None` for no limit.
#[derive(Debug, Clone, Copy, Default)]
pub struct BodyLimits {
    /// Longest wait for the next frame.
    pub idle: Option<Duration>,
    /// Longest time for the whole body.
    pub total: Option<Duration>,
}

pin_project_lite::pin_project! {
    /// A request body with an idle timeout and a total deadline, which
    /// reports through a [`BodyWatch`] when it ended or timed out.
    pub struct TimedBody<B> {
        #[pin]
        inner: B,
        idle: Option<Duration>,
        deadline: Option<Instant>,
        // Armed at the first `Pending` after a frame: time spent while the
        // proxy is not asking for the body (upstream backpressure) is not
        // the client's.
        sleep: Option<Pin<Box<Sleep>>>,
        waiting: bool,
        watch: Arc<BodyWatch>,
        done: bool,
    }
}

impl<B: Body> TimedBody<B> {
    /// Wrap `inner`; the limits count from now.
    pub fn new(inner: B, limits: BodyLimits) -> (Self, Arc<BodyWatch>) {
        let watch = Arc::new(BodyWatch::default());
        if inner.is_end_stream() {
            watch.end();
        }
        let body = TimedBody {
            inner,
            idle: limits.idle,
            deadline: limits.total.map(|t| Instant::now() + t),
            sleep: None,
            waiting: false,
            watch: watch.clone(),
            done: false,
        };
        (body, watch)
    }
}

impl<B> Body for TimedBody<B>
where
    B: Body<Data = Bytes>,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.project();
        if *this.done {
            return Poll::Ready(None);
        }
        match this.inner.poll_frame(cx) {
            Poll::Ready(Some(Ok(f))) => {
                *this.waiting = false;
                Poll::Ready(Some(Ok(f)))
            }
            Poll::Ready(Some(Err(e))) => {
                *this.done = true;
                Poll::Ready(Some(Err(e.into())))
            }
            Poll::Ready(None) => {
                *this.done = true;
                this.watch.end();
                Poll::Ready(None)
            }
            Poll::Pending => {
                if !*this.waiting {
                    *this.waiting = true;
                    let now = Instant::now();
                    let at = match (*this.idle, *this.deadline) {
                        (Some(i), Some(d)) => Some((now + i).min(d)),
                        (Some(i), None) => Some(now + i),
                        (None, d) => d,
                    };
                    match (at, this.sleep.as_mut()) {
                        (None, _) => {}
                        (Some(at), Some(s)) => s.as_mut().reset(at),
                        (Some(at), None) => {
                            *this.sleep = Some(Box::pin(tokio::time::sleep_until(at)))
                        }
                    }
                }
                match this.sleep.as_mut().map(|s| s.as_mut().poll(cx)) {
                    Some(Poll::Ready(())) => {
                        *this.done = true;
                        this.watch.timed_out.store(true, Ordering::Release);
                        Poll::Ready(Some(Err(Box::new(BodyTimeout))))
                    }
                    _ => Poll::Pending,
                }
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        let end = self.done || self.inner.is_end_stream();
        if end && !self.watch.timed_out() {
            self.watch.end();
        }
        end
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

pin_project_lite::pin_project! {
    /// An upstream attempt bounded by the response-header timeout, which
    /// starts once the request body has ended. `None` when it elapsed.
    pub struct HeaderTimeout<F> {
        #[pin]
        fut: F,
        limit: Option<Duration>,
        watch: Option<Arc<BodyWatch>>,
        started: Option<Pin<Box<dyn Future<Output = ()> + Send>>>,
    }
}

impl<F: Future> HeaderTimeout<F> {
    /// Bound `fut` by `limit` from the end of the body `watch` follows
    /// (from now when there is no watch).
    pub fn new(fut: F, limit: Option<Duration>, watch: Option<Arc<BodyWatch>>) -> Self {
        HeaderTimeout {
            fut,
            limit,
            watch,
            started: None,
        }
    }
}

impl<F: Future> Future for HeaderTimeout<F> {
    type Output = Option<F::Output>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(v) = this.fut.poll(cx) {
            return Poll::Ready(Some(v));
        }
        let Some(limit) = *this.limit else {
            return Poll::Pending;
        };
        let timer = this.started.get_or_insert_with(|| {
            let watch = this.watch.clone();
            Box::pin(async move {
                if let Some(w) = watch {
                    w.wait_ended().await;
                }
                tokio::time::sleep(limit).await;
            })
        });
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::{BodyExt, StreamBody};

    type Chunks = tokio::sync::mpsc::Receiver<Result<Frame<Bytes>, BoxError>>;

    fn channel_body() -> (
        tokio::sync::mpsc::Sender<Result<Frame<Bytes>, BoxError>>,
        StreamBody<ReceiverStream>,
    ) {
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        (tx, StreamBody::new(ReceiverStream(rx)))
    }

    struct ReceiverStream(Chunks);
    impl futures_util::Stream for ReceiverStream {
        type Item = Result<Frame<Bytes>, BoxError>;
        fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
            self.0.poll_recv(cx)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_body_fails_after_the_idle_timeout_and_says_so() {
        let (tx, inner) = channel_body();
        let limits = BodyLimits {
            idle: Some(Duration::from_secs(2)),
            total: Some(Duration::from_secs(60)),
        };
        let (mut body, watch) = TimedBody::new(inner, limits);
        // Frames one second apart keep it alive for longer than the idle timeout.
        for _ in 0..5 {
            tx.send(Ok(Frame::data(Bytes::from_static(b"x"))))
                .await
                .unwrap();
            assert!(body.frame().await.unwrap().is_ok());
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        let start = Instant::now();
        let e = body.frame().await.unwrap().unwrap_err();
        assert!(e.is::<BodyTimeout>());
        assert_eq!(start.elapsed(), Duration::from_secs(2));
        assert!(watch.timed_out());
        assert!(!watch.ended());
        drop(tx);
    }

    #[tokio::test(start_paused = true)]
    async fn a_trickling_body_fails_at_the_total_deadline() {
        let (tx, inner) = channel_body();
        let limits = BodyLimits {
            idle: Some(Duration::from_secs(2)),
            total: Some(Duration::from_secs(10)),
        };
        let (mut body, watch) = TimedBody::new(inner, limits);
        let start = Instant::now();
        let feeder = tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                if tx
                    .send(Ok(Frame::data(Bytes::from_static(b"x"))))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        });
        let e = loop {
            match body.frame().await.unwrap() {
                Ok(_) => {}
                Err(e) => break e,
            }
        };
        assert!(e.is::<BodyTimeout>());
        assert_eq!(start.elapsed(), Duration::from_secs(10));
        assert!(watch.timed_out());
        drop(body);
        feeder.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn the_header_timeout_starts_when_the_body_ends() {
        let (tx, inner) = channel_body();
        let (mut body, watch) = TimedBody::new(inner, BodyLimits::default());
        let wait = HeaderTimeout::new(
            std::future::pending::<()>(),
            Some(Duration::from_secs(3)),
            Some(watch.clone()),
        );
        let start = Instant::now();
        let reader = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(5)).await;
            tx.send(Ok(Frame::data(Bytes::from_static(b"x"))))
                .await
                .unwrap();
            drop(tx);
            while let Some(f) = body.frame().await {
                f.unwrap();
            }
        });
        assert!(wait.await.is_none());
        assert_eq!(start.elapsed(), Duration::from_secs(8));
        assert!(watch.ended() && !watch.timed_out());
        reader.await.unwrap();
    }

    #[tokio::test]
    async fn the_cap_pauses_at_max_and_counts() {
        let cap = Arc::new(ConnCap::new("test", 2));
        let a = cap.admit(cap.acquire().await);
        let _b = cap.admit(cap.acquire().await);
        assert_eq!(cap.open(), 2);
        let c = cap.clone();
        let third = tokio::spawn(async move { c.acquire().await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!third.is_finished());
        assert_eq!(cap.reached(), 1);
        drop(a);
        let c = tokio::time::timeout(Duration::from_secs(5), third)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(cap.open(), 1, "a permit is not a connection");
        let _c = cap.admit(c);
        assert_eq!(cap.open(), 2);
    }
}
