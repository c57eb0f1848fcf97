//! Sharing changes between dashboard replicas on one PostgreSQL database (LISTEN/NOTIFY), so a
//! webhook received by one replica reaches the dashboards served by every other one at once.
//!
//! One dedicated connection per replica both sends this replica's changes (`pg_notify`) and
//! listens for the others'. It reconnects by itself; after a reconnect the dashboards are told
//! to reload, since changes may have been missed meanwhile.

use std::time::Duration;

use futures_util::future::poll_fn;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;
use tokio_postgres::{AsyncMessage, Config, NoTls};

use crate::changes::{Change, ChangeFeed, ChangeKind};

const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// Changes sent in one statement at most.
const MAX_BATCH: usize = 256;

#[derive(Serialize, Deserialize)]
struct Notice {
    origin: String,
    kind: ChangeKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    image: Option<String>,
}

/// The channel of the replicas that share a schema: replicas of another schema (or tests
/// running side by side on one server) do not hear each other.
pub fn channel_for(schema: &str) -> String {
    let hash = schema
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("diun_changes_{hash:016x}")
}

/// Starts the relay; changes sent on the returned sender go to the other replicas, and theirs
/// are published on `feed`. The task ends when the sender is dropped.
pub fn start(config: Config, channel: String, feed: ChangeFeed) -> mpsc::UnboundedSender<Change> {
    let (outgoing, queue) = mpsc::unbounded_channel();
    let origin = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
    );
    tokio::spawn(relay(config, channel, origin, feed, queue));
    outgoing
}

async fn relay(
    config: Config,
    channel: String,
    origin: String,
    feed: ChangeFeed,
    mut queue: mpsc::UnboundedReceiver<Change>,
) {
    let mut retry = RETRY_MIN;
    let mut listened_before = false;
    loop {
        let lost = match session(&config, &channel, &origin, &feed, &mut queue, listened_before).await {
            Ok(()) => return,
            Err(lost) => lost,
        };
        if lost.after_listening {
            // A session that worked starts the back-off over: one outage a week must not
            // leave every later reconnect waiting the longest delay.
            retry = RETRY_MIN;
            listened_before = true;
        }
        log::warn!("replica change sharing interrupted ({}); retrying in {} s", lost.why, retry.as_secs());
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(RETRY_MAX);
    }
}

/// Why a session ended, and whether it had got as far as listening.
struct Lost {
    why: String,
    after_listening: bool,
}

/// One connection's life. `Ok` when this replica is shutting down.
async fn session(
    config: &Config,
    channel: &str,
    origin: &str,
    feed: &ChangeFeed,
    queue: &mut mpsc::UnboundedReceiver<Change>,
    reconnected: bool,
) -> Result<(), Lost> {
    let lost_early = |err: tokio_postgres::Error| Lost { why: err.to_string(), after_listening: false };
    let (client, mut connection) = config.connect(NoTls).await.map_err(lost_early)?;
    let (heard, mut notices) = mpsc::unbounded_channel::<String>();
    let reader = tokio::spawn(async move {
        while let Some(message) = poll_fn(|cx| connection.poll_message(cx)).await {
            match message {
                Ok(AsyncMessage::Notification(notification)) => {
                    let _ = heard.send(notification.payload().to_string());
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
    });
    let listening = async {
        client.batch_execute(&format!("LISTEN {channel}")).await?;
        client.prepare("SELECT pg_notify($1, payload) FROM unnest($2::text[]) AS payload").await
    };
    let notify = match listening.await {
        Ok(notify) => notify,
        Err(err) => {
            reader.abort();
            return Err(lost_early(err));
        }
    };
    let outcome = async {
        if reconnected {
            log::info!("replica change sharing restored");
            // Both ways, notices may have been lost meanwhile: dashboards here and on the other
            // replicas reload.
            feed.publish(Change::of_many(ChangeKind::Update));
            let reload = vec![payload(origin, Change::of_many(ChangeKind::Update))?];
            client.execute(&notify, &[&channel, &reload]).await.map_err(|err| err.to_string())?;
        }
        loop {
            tokio::select! {
                change = queue.recv() => {
                    let Some(change) = change else { return Ok(()) };
                    // Whatever queued up meanwhile goes out in the same statement: under a burst of
                    // webhooks one round trip and one transaction carry them all.
                    let mut payloads = vec![payload(origin, change)?];
                    while payloads.len() < MAX_BATCH
                        && let Ok(change) = queue.try_recv()
                    {
                        payloads.push(payload(origin, change)?);
                    }
                    client.execute(&notify, &[&channel, &payloads]).await.map_err(|err| err.to_string())?;
                }
                notice = notices.recv() => {
                    let Some(payload) = notice else { return Err("connection closed".to_string()) };
                    match serde_json::from_str::<Notice>(&payload) {
                        Ok(notice) if notice.origin != origin => {
                            feed.publish(Change { kind: notice.kind, image: notice.image });
                        }
                        Ok(_) => {}
                        Err(err) => log::debug!("ignoring a malformed change notice: {err}"),
                    }
                }
            }
        }
    }
    .await;
    reader.abort();
    outcome.map_err(|why| Lost { why, after_listening: true })
}

fn payload(origin: &str, change: Change) -> Result<String, String> {
    let notice = Notice { origin: origin.to_string(), kind: change.kind, image: change.image };
    serde_json::to_string(&notice).map_err(|err| err.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channels_are_identifiers_that_differ_per_schema() {
        let public = channel_for("public");
        assert_eq!(public, channel_for("public"));
        assert_ne!(public, channel_for("t_1"));
        assert!(public.len() < 63 && public.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    }
}
