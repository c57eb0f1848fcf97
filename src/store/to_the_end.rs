//! Store writes that run to their end even when their caller's future is dropped.
//!
//! hyper drops a request's future when its client goes away. A write already handed to the
//! database is committed regardless, but the announcement that tells open dashboards about it
//! (`Store::announce`) comes after the write in the same future: dropped there, the change was
//! stored and never announced, and dashboards missed it until their next poll. Wrapped in
//! [`ToTheEnd`], the rest of a dropped write goes on in a task of its own.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

/// `write`, finished in a task of its own if this future is dropped before it is.
pub fn to_the_end<F>(write: F) -> ToTheEnd<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    ToTheEnd(Some(Box::pin(write)))
}

pub struct ToTheEnd<F>(Option<Pin<Box<F>>>)
where
    F: Future + Send + 'static,
    F::Output: Send + 'static;

impl<F> Future for ToTheEnd<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let Some(write) = self.0.as_mut() else {
            // Polled again after it finished: futures need not answer that, and nobody does.
            return Poll::Pending;
        };
        let Poll::Ready(output) = write.as_mut().poll(cx) else { return Poll::Pending };
        self.0 = None;
        Poll::Ready(output)
    }
}

impl<F> Drop for ToTheEnd<F>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    fn drop(&mut self) {
        let Some(rest) = self.0.take() else { return };
        // Outside a runtime (it is shutting down) there is nothing left to finish it on.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                rest.await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_write_dropped_halfway_still_finishes() {
        let (go_on, wait) = tokio::sync::oneshot::channel::<()>();
        let (finished_tx, finished) = tokio::sync::oneshot::channel::<()>();
        let write = to_the_end(async move {
            let _ = wait.await;
            let _ = finished_tx.send(());
        });
        // Started, then dropped while it waits, as hyper drops a request whose client left.
        let started = tokio::time::timeout(std::time::Duration::from_millis(10), write).await;
        assert!(started.is_err(), "the write was still waiting");
        go_on.send(()).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(30), finished)
            .await
            .expect("the rest of the write ran")
            .expect("the write finished");
    }

    #[tokio::test]
    async fn a_write_that_finishes_answers_as_it_would() {
        assert_eq!(to_the_end(async { 7 }).await, 7);
    }
}
