//! When PostgreSQL's upserts start, and which go together.
//!
//! Webhooks that arrive together are committed together: one statement and one commit (one WAL
//! flush) for a batch, instead of one each, which is what bounds ingest on a server that flushes
//! its WAL on every commit. A lone webhook goes out at once, alone; while batches run, the next
//! starts once [`MIN_SHARED_BATCH`] webhooks wait, once none runs, or after
//! [`MAX_SHARED_WAIT`]. Several batches run at once; nothing here is a lock. What a batch does
//! is the caller's: this module only decides when it starts and what it holds, which keeps
//! these rules testable without a database.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{Notify, Semaphore, mpsc};

/// Items in one batch at most.
const MAX_BATCH: usize = 256;
/// Batches running at once; what arrives while all run waits for the next batch.
const BATCHES_IN_FLIGHT: usize = 4;
/// Items that start a batch beside those in flight; fewer wait for those to finish, for
/// [`MAX_SHARED_WAIT`] at most. The server's work per webhook falls steeply with the batch's
/// size (about 100 us of its CPU each in batches of two, 70 in batches of 16, on the bench
/// machine), so under load a few large batches beat many small ones.
const MIN_SHARED_BATCH: usize = 16;
// The dispatcher adds items that arrive while it waits without looking at the cap: it stops
// at `MIN_SHARED_BATCH`, which must therefore be within the cap.
const _: () = assert!(MIN_SHARED_BATCH <= MAX_BATCH);
/// The longest a few items wait to share a batch: a batch held up (a row lock, a slow server)
/// must not hold up the next.
const MAX_SHARED_WAIT: Duration = Duration::from_millis(5);

/// A batch's slot, held while it runs; its end, even by a panic, wakes the items waiting to
/// start the next batch (see [`MIN_SHARED_BATCH`]).
struct RunningBatch {
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
    finished: Arc<Notify>,
}

impl Drop for RunningBatch {
    fn drop(&mut self) {
        // The slot first: a dispatcher woken on another thread before it is free would find this
        // batch still running, and wait out MAX_SHARED_WAIT for nothing.
        drop(self.slot.take());
        self.finished.notify_one();
    }
}

/// Starts the dispatcher on the current runtime: every item sent goes into exactly one batch,
/// in the order sent, and `run` gets each batch as it starts, on a task of its own. The
/// dispatcher ends when every sender is gone.
pub fn start<T, F, Fut>(run: F) -> mpsc::UnboundedSender<T>
where
    T: Send + 'static,
    F: Fn(Vec<T>) -> Fut + Send + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (items, mut queue) = mpsc::unbounded_channel::<T>();
    let slots = Arc::new(Semaphore::new(BATCHES_IN_FLIGHT));
    let finished = Arc::new(Notify::new());
    tokio::spawn(async move {
        while let Some(first) = queue.recv().await {
            let mut batch = vec![first];
            let waited_enough = tokio::time::sleep(MAX_SHARED_WAIT);
            tokio::pin!(waited_enough);
            loop {
                while batch.len() < MAX_BATCH
                    && let Ok(next) = queue.try_recv()
                {
                    batch.push(next);
                }
                let none_in_flight = slots.available_permits() == BATCHES_IN_FLIGHT;
                if none_in_flight || batch.len() >= MIN_SHARED_BATCH {
                    break;
                }
                tokio::select! {
                    next = queue.recv() => match next {
                        Some(next) => batch.push(next),
                        None => break,
                    },
                    // Checks again; a wake-up left from earlier only makes it check sooner.
                    () = finished.notified() => {}
                    () = &mut waited_enough => break,
                }
            }
            let Ok(slot) = Arc::clone(&slots).acquire_owned().await else { break };
            while batch.len() < MAX_BATCH
                && let Ok(next) = queue.try_recv()
            {
                batch.push(next);
            }
            let running = RunningBatch { slot: Some(slot), finished: finished.clone() };
            let batch = run(batch);
            tokio::spawn(async move {
                batch.await;
                drop(running);
            });
        }
    });
    items
}

/// The rules above, on tokio's paused clock: time moves only when every task waits, so the
/// instants asserted here are exact and do not depend on the machine's speed.
#[cfg(test)]
mod tests {
    use tokio::sync::oneshot;
    use tokio::time::Instant;

    use super::*;

    /// A batch as the test sees it: what it holds, when it started, and the switch that ends it.
    struct Started {
        items: Vec<u32>,
        at: Instant,
        finish: oneshot::Sender<()>,
    }

    /// A dispatcher whose batches report their start and run until the test finishes them.
    fn dispatcher() -> (mpsc::UnboundedSender<u32>, mpsc::UnboundedReceiver<Started>) {
        let (started, starts) = mpsc::unbounded_channel();
        let items = start(move |items| {
            let started = started.clone();
            async move {
                let (finish, finished) = oneshot::channel();
                let _ = started.send(Started { items, at: Instant::now(), finish });
                let _ = finished.await;
            }
        });
        (items, starts)
    }

    fn send(items: &mpsc::UnboundedSender<u32>, range: std::ops::Range<u32>) {
        for item in range {
            items.send(item).unwrap();
        }
    }

    /// The next batch to start. A batch the rules never start fails the test rather than
    /// hanging it: on the paused clock the minute passes at once once everything waits.
    async fn next<B>(starts: &mut mpsc::UnboundedReceiver<B>) -> B {
        tokio::time::timeout(Duration::from_secs(60), starts.recv())
            .await
            .expect("no batch started")
            .expect("the dispatcher ended")
    }

    /// Lets every task run as far as it can; on the paused clock, no time passes meanwhile
    /// unless everything waits on a timer.
    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_lone_item_starts_at_once() {
        let (items, mut starts) = dispatcher();
        let sent = Instant::now();
        send(&items, 0..1);
        let batch = next(&mut starts).await;
        assert_eq!(batch.items, [0]);
        assert_eq!(batch.at, sent);
    }

    #[tokio::test(start_paused = true)]
    async fn beside_a_running_batch_a_few_wait_for_the_shared_wait() {
        let (items, mut starts) = dispatcher();
        send(&items, 0..1);
        let running = next(&mut starts).await;
        let sent = Instant::now();
        send(&items, 1..4);
        let batch = next(&mut starts).await;
        assert_eq!(batch.items, [1, 2, 3]);
        assert_eq!(batch.at - sent, MAX_SHARED_WAIT);
        drop(running);
    }

    #[tokio::test(start_paused = true)]
    async fn enough_to_share_start_beside_a_running_batch_at_once() {
        let (items, mut starts) = dispatcher();
        send(&items, 0..1);
        let _running = next(&mut starts).await;
        let sent = Instant::now();
        send(&items, 1..1 + MIN_SHARED_BATCH as u32);
        let batch = next(&mut starts).await;
        assert_eq!(batch.items, (1..1 + MIN_SHARED_BATCH as u32).collect::<Vec<_>>());
        assert_eq!(batch.at, sent);
    }

    #[tokio::test(start_paused = true)]
    async fn the_waiting_start_when_the_running_batch_ends() {
        let (items, mut starts) = dispatcher();
        send(&items, 0..1);
        let running = next(&mut starts).await;
        send(&items, 1..3);
        settle().await;
        let sent = Instant::now();
        running.finish.send(()).unwrap();
        let batch = next(&mut starts).await;
        assert_eq!(batch.items, [1, 2]);
        assert_eq!(batch.at, sent, "they waited although nothing ran");
    }

    #[tokio::test(start_paused = true)]
    async fn no_more_batches_run_at_once_than_there_are_slots() {
        let (items, mut starts) = dispatcher();
        send(&items, 0..1);
        let mut running = vec![next(&mut starts).await];
        let mut sent = 1;
        for _ in 1..BATCHES_IN_FLIGHT {
            send(&items, sent..sent + MIN_SHARED_BATCH as u32);
            sent += MIN_SHARED_BATCH as u32;
            running.push(next(&mut starts).await);
        }
        send(&items, sent..sent + MIN_SHARED_BATCH as u32);
        tokio::time::sleep(MAX_SHARED_WAIT * 10).await;
        assert!(starts.try_recv().is_err(), "a batch started while every slot was taken");
        let freed = Instant::now();
        running.remove(0).finish.send(()).unwrap();
        let batch = next(&mut starts).await;
        assert_eq!(batch.items, (sent..sent + MIN_SHARED_BATCH as u32).collect::<Vec<_>>());
        assert_eq!(batch.at, freed);
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_holds_no_more_than_the_cap() {
        let (items, mut starts) = dispatcher();
        send(&items, 0..1);
        let _running = next(&mut starts).await;
        let many = MAX_BATCH as u32 + 44;
        send(&items, 1..1 + many);
        let first = next(&mut starts).await;
        let second = next(&mut starts).await;
        assert_eq!(first.items, (1..1 + MAX_BATCH as u32).collect::<Vec<_>>());
        assert_eq!(second.items, (1 + MAX_BATCH as u32..1 + many).collect::<Vec<_>>());
    }

    #[tokio::test(start_paused = true)]
    async fn a_batch_that_panics_frees_its_slot() {
        let (started, mut starts) = mpsc::unbounded_channel();
        let items = start(move |items: Vec<u32>| {
            let started = started.clone();
            async move {
                let _ = started.send((items.clone(), Instant::now()));
                assert!(items.len() > 1, "a lone item's batch fails");
            }
        });
        items.send(0).unwrap();
        assert_eq!(next(&mut starts).await.0, [0]);
        settle().await;
        let sent = Instant::now();
        send(&items, 1..3);
        let (batch, at) = next(&mut starts).await;
        assert_eq!(batch, [1, 2]);
        assert_eq!(at, sent, "the failed batch still held its slot");
    }
}
