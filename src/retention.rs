//! Deletes webhook history acknowledged more than `HISTORY_DAYS` ago, in the background: never
//! on a request's path, and never racing with shutdown (the task is simply dropped).

use std::sync::Arc;
use std::time::Duration;

use crate::store::{Store, UpdateStore};
use crate::time::Timestamp;

const EVERY: Duration = Duration::from_secs(60 * 60);
const MICROS_PER_DAY: i64 = 86_400 * 1_000_000;
/// Events deleted per statement: a backlog (history just enabled, a long downtime) goes in
/// slices, so that no statement holds SQLite's writer or outlives a PostgreSQL operation's
/// timeout.
const SLICE: u32 = 2000;

/// Prunes once shortly after start, then hourly, for as long as the returned task lives.
pub fn spawn(store: Arc<Store>, days: u32) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(30)).await;
        let mut ticks = tokio::time::interval(EVERY);
        loop {
            ticks.tick().await;
            prune(&store, days, Timestamp::now()).await;
        }
    })
}

/// One pass: deletes the history acknowledged more than `days` before `now`.
pub async fn prune(store: &Store, days: u32, now: Timestamp) -> u64 {
    // Saturating, and never before 1970: a large HISTORY_DAYS keeps everything, instead of
    // overflowing into a cutoff after `now` that would delete everything.
    let age = i64::from(days).saturating_mul(MICROS_PER_DAY);
    let cutoff = Timestamp::from_unix_micros(now.unix_micros().saturating_sub(age).max(0));
    let mut pruned = 0;
    let outcome = loop {
        match store.prune_history(cutoff, SLICE).await {
            Ok(deleted) => {
                pruned += deleted;
                if deleted < u64::from(SLICE) {
                    break Ok(());
                }
            }
            Err(err) => break Err(err),
        }
    };
    if pruned > 0 {
        log::info!("history: deleted {pruned} event(s) acknowledged more than {days} days ago");
    }
    if let Err(err) = outcome {
        // Counted with the requests' failures: a prune failing every hour can be alerted on.
        crate::http::count_database_error();
        log::warn!("history: pruning failed, will try again: {err}");
    }
    pruned
}
