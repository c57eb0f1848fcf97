//! Sharing changes between dashboard replicas on one PostgreSQL database (LISTEN/NOTIFY), so a
//! webhook received by one replica reaches the dashboards served by every other one at once.
//!
//! One dedicated connection per replica both sends this replica's changes (`pg_notify`) and
//! listens for the others'. It reconnects by itself; after a reconnect the dashboards are told
//! to reload, since changes may have been missed meanwhile.
//!
//! Each notice also carries the sender's latest receipt stamp, which the listeners' clocks then
//! follow. Replicas stamp reports with their own clocks, and a dismissal is bounded by the
//! newest report a page showed: a report stamped by a replica whose clock runs behind that
//! page's replica would otherwise fall under the bound unseen, for as long as the clocks differ.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use futures_util::future::poll_fn;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot, watch};
use tokio_postgres::{AsyncMessage, Config, NoTls};

use crate::changes::{Change, ChangeFeed, ChangeKind};
use crate::time::{ReceiptClock, Timestamp};

const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);
/// Changes sent in one statement at most.
const MAX_BATCH: usize = 256;
/// How long changes gather before they are sent. Each send is a transaction and a WAL flush
/// on the server, which under a burst of webhooks came every few changes (a third of the
/// server's commits during an ingest run); the other replicas' dashboards hear a few
/// milliseconds later instead.
const GATHER: Duration = Duration::from_millis(5);
/// A notice's payload, at most, in bytes: PostgreSQL refuses one of 8000 or more.
const MAX_PAYLOAD: usize = 7000;
/// How long the server may take to take a notice. A connection that went half-open (the
/// server's host gone, packets dropped) would otherwise hold the relay, and the notices it
/// should hear, for as long as TCP retransmits: about a quarter of an hour.
const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// How long start-up waits for the first LISTEN, after the database opened: the connection's
/// own timeout (3 s unless the URL sets one). A first LISTEN that takes longer has the
/// dashboards reload once it is done.
const FIRST_LISTEN_WAIT: Duration = Duration::from_secs(3);
/// How long shutdown waits for the changes still queued to be sent.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

/// What one replica tells the others. Changes of one kind to several images travel as one
/// notice (`images`): a burst of webhooks then costs the server and every listener one
/// notification per few dozen images, not one per image. A replica of an earlier release
/// reads such a notice as a change to many images (no `image`) and has its dashboards reload.
#[derive(Serialize, Deserialize)]
struct Notice {
    origin: String,
    kind: ChangeKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    image: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    images: Vec<String>,
    /// The sender's latest receipt stamp when it sent this, in microseconds since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    stamped: Option<i64>,
}

impl Notice {
    /// The changes this notice stands for, in the order they were made.
    fn into_changes(self) -> impl Iterator<Item = Change> {
        let kind = self.kind;
        let single = self.images.is_empty().then_some(Change { kind, image: self.image });
        single.into_iter().chain(self.images.into_iter().map(move |image| Change::of_image(kind, image)))
    }
}

/// The channel of the replicas that share a schema: replicas of another schema (or tests
/// running side by side on one server) do not hear each other.
pub fn channel_for(schema: &str) -> String {
    let hash = schema
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3));
    format!("diun_changes_{hash:016x}")
}

/// This replica's end of the sharing: [`Relay::send`] queues a change for the other replicas,
/// and theirs are published on the feed given to [`start`].
pub struct Relay {
    outgoing: mpsc::UnboundedSender<Change>,
    closing: watch::Sender<bool>,
    task: Mutex<Option<tokio::task::JoinHandle<()>>>,
    /// Told once the first attempt listens; dropped by the relay when that attempt fails.
    first_listen: Mutex<Option<oneshot::Receiver<()>>>,
}

impl Relay {
    /// Waits, [`FIRST_LISTEN_WAIT`] at most, for the first LISTEN; start-up calls it before
    /// serving. A service that answered before it would show the other replicas' changes of
    /// that moment only at the dashboards' next safety poll. A first attempt that fails ends the
    /// wait at once: the relay retries, and has the dashboards reload once it listens.
    pub async fn listening(&self) {
        let first_listen = self.first_listen.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(first_listen) = first_listen
            && tokio::time::timeout(FIRST_LISTEN_WAIT, first_listen).await.is_err()
        {
            log::warn!(
                "replica change sharing is not listening yet after {FIRST_LISTEN_WAIT:?}; serving anyway"
            );
        }
    }

    pub fn send(&self, change: Change) {
        let _ = self.outgoing.send(change);
    }

    /// Sends what is still queued, for [`CLOSE_WAIT`] at most: a webhook answered during
    /// shutdown reaches the other replicas' dashboards too, not only their next poll.
    pub async fn close(&self) {
        self.closing.send_replace(true);
        let task = self.task.lock().unwrap_or_else(PoisonError::into_inner).take();
        if let Some(task) = task
            && tokio::time::timeout(CLOSE_WAIT, task).await.is_err()
        {
            log::warn!(
                "changes not sent to the other replicas within {CLOSE_WAIT:?} of shutdown were dropped"
            );
        }
    }
}

/// Starts the relay; [`Relay::listening`] waits for its first LISTEN. `receipts` is this
/// replica's clock for reports: its latest stamp goes out with every notice, and the other
/// replicas' come into it.
pub fn start(config: Config, channel: String, feed: ChangeFeed, receipts: Arc<ReceiptClock>) -> Relay {
    let (outgoing, queue) = mpsc::unbounded_channel();
    let (closing, closed) = watch::channel(false);
    let origin = format!(
        "{}-{}",
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos())
    );
    let (listening, first_listen) = oneshot::channel();
    let ends = Ends { origin, feed, receipts };
    let task = tokio::spawn(relay(config, channel, ends, queue, closed, listening));
    Relay { outgoing, closing, task: Mutex::new(Some(task)), first_listen: Mutex::new(Some(first_listen)) }
}

/// What the relay speaks for and to: this replica (`origin`), its dashboards' feed and its
/// receipt clock.
struct Ends {
    origin: String,
    feed: ChangeFeed,
    receipts: Arc<ReceiptClock>,
}

async fn relay(
    config: Config,
    channel: String,
    ends: Ends,
    mut queue: mpsc::UnboundedReceiver<Change>,
    mut closed: watch::Receiver<bool>,
    listening: oneshot::Sender<()>,
) {
    // Only the first attempt tells start-up; every later one follows a failed attempt.
    let mut start_up = Some(listening);
    let mut retry = RETRY_MIN;
    loop {
        let attempt = session(&config, &channel, &ends, &mut queue, &mut closed, start_up.take());
        let lost = match attempt.await {
            Ok(()) => return,
            Err(lost) => lost,
        };
        if *closed.borrow() {
            report_dropped(&mut queue);
            return;
        }
        if worked(&lost) {
            retry = RETRY_MIN;
        }
        log::warn!("replica change sharing interrupted ({}); retrying in {} s", lost.why, retry.as_secs());
        tokio::select! {
            () = tokio::time::sleep(retry) => {}
            () = closing(&mut closed) => {
                report_dropped(&mut queue);
                return;
            }
        }
        retry = (retry * 2).min(RETRY_MAX);
    }
}

/// Whether a session worked, and so starts the back-off over: one outage a week must not leave
/// every later reconnect waiting the longest delay. Listening is not enough: a session that
/// listens and then fails at once, every time (a full notification queue, a server too loaded
/// to take a notice in time), reconnected every second, and each time had every dashboard here
/// reload. It must have listened for the longest delay.
fn worked(lost: &Lost) -> bool {
    lost.listened.is_some_and(|listened| listened >= RETRY_MAX)
}

/// At shutdown without a session to the server: the changes still queued cannot be sent.
fn report_dropped(queue: &mut mpsc::UnboundedReceiver<Change>) {
    let mut dropped = 0;
    while queue.try_recv().is_ok() {
        dropped += 1;
    }
    if dropped > 0 {
        log::warn!("{dropped} change(s) not sent to the other replicas: no connection at shutdown");
    }
}

/// Ends once this replica shuts down (or its [`Relay`] is gone).
async fn closing(closed: &mut watch::Receiver<bool>) {
    let _ = closed.wait_for(|closed| *closed).await;
}

/// Why a session ended, and whether it had got as far as listening.
struct Lost {
    why: String,
    /// How long it listened; `None` if it never got that far.
    listened: Option<Duration>,
}

/// One connection's life. `Ok` when this replica is shutting down.
async fn session(
    config: &Config,
    channel: &str,
    ends: &Ends,
    queue: &mut mpsc::UnboundedReceiver<Change>,
    closed: &mut watch::Receiver<bool>,
    start_up: Option<oneshot::Sender<()>>,
) -> Result<(), Lost> {
    // After any failed attempt, the first attempt's included: the service already answers
    // while the relay retries, and the notices of that time are lost, both ways. (A first
    // attempt that fails drops `start_up`, and start-up waits no longer.)
    let notices_missed = start_up.is_none();
    let Ends { origin, feed, receipts } = ends;
    let lost_early = |err: tokio_postgres::Error| Lost { why: err.to_string(), listened: None };
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
    let listening_since = tokio::time::Instant::now();
    let send = |changes: Vec<Change>| async {
        let payloads = payloads(origin, receipts.latest(), changes)?;
        match tokio::time::timeout(SEND_TIMEOUT, client.execute(&notify, &[&channel, &payloads])).await {
            Ok(sent) => sent.map(drop).map_err(|err| err.to_string()),
            Err(_) => Err(format!("the server took no notice within {SEND_TIMEOUT:?}")),
        }
    };
    // Start-up that stopped waiting (FIRST_LISTEN_WAIT, `Relay::listening`) may have answered
    // reads meanwhile.
    if let Some(start_up) = start_up
        && start_up.send(()).is_err()
    {
        feed.publish(Change::of_many(ChangeKind::Update));
    }
    let outcome = async {
        if notices_missed {
            log::info!("replica change sharing restored");
            // Both ways, notices may have been lost meanwhile: dashboards here and on the other
            // replicas reload.
            feed.publish(Change::of_many(ChangeKind::Update));
            send(vec![Change::of_many(ChangeKind::Update)]).await?;
        }
        loop {
            tokio::select! {
                change = queue.recv() => {
                    let Some(change) = change else { return Ok(()) };
                    send(gathered(change, queue).await).await?;
                }
                notice = notices.recv() => {
                    let Some(payload) = notice else { return Err("connection closed".to_string()) };
                    match serde_json::from_str::<Notice>(&payload) {
                        Ok(notice) if notice.origin != *origin => {
                            if let Some(stamped) = notice.stamped {
                                receipts.witness_another_replica(Timestamp::from_unix_micros(stamped));
                            }
                            notice.into_changes().for_each(|change| feed.publish(change));
                        }
                        Ok(_) => {}
                        // A later release's notice, say: what changed is unknown, so the
                        // dashboards here reload rather than miss it.
                        Err(err) => {
                            log::debug!("a change notice this release cannot read ({err}): dashboards reload");
                            feed.publish(Change::of_many(ChangeKind::Update));
                        }
                    }
                }
                () = closing(closed) => {
                    let mut last = Vec::new();
                    while let Ok(change) = queue.try_recv() {
                        last.push(change);
                    }
                    for changes in last.chunks(MAX_BATCH) {
                        send(changes.to_vec()).await?;
                    }
                    return Ok(());
                }
            }
        }
    }
    .await;
    reader.abort();
    outcome.map_err(|why| Lost { why, listened: Some(listening_since.elapsed()) })
}

/// `first` and what queues up behind it within [`GATHER`], in order, [`MAX_BATCH`] at most: under
/// a burst of webhooks one round trip and one transaction carry them all.
async fn gathered(first: Change, queue: &mut mpsc::UnboundedReceiver<Change>) -> Vec<Change> {
    tokio::time::sleep(GATHER).await;
    let mut changes = vec![first];
    while changes.len() < MAX_BATCH
        && let Ok(change) = queue.try_recv()
    {
        changes.push(change);
    }
    changes
}

/// The notices for `changes`, in order: a run of changes of one kind to single images shares
/// one notice while its payload stays within [`MAX_PAYLOAD`]. An image whose name alone would
/// not fit goes as a change to many images: the other replicas' dashboards reload. Each
/// carries `stamped`, this replica's latest receipt stamp.
fn payloads(origin: &str, stamped: Option<Timestamp>, changes: Vec<Change>) -> Result<Vec<String>, String> {
    let stamped = stamped.map(Timestamp::unix_micros);
    // A notice's size without its images: the origin, the kind, the stamp and the keys.
    let bare_size = json_string_len(origin) + 48 + 32;
    let mut notices: Vec<Notice> = Vec::new();
    let mut last_size = 0;
    for Change { kind, image } in changes {
        let size = image.as_deref().map_or(MAX_PAYLOAD, |image| json_string_len(image) + 1);
        match image {
            Some(image) if bare_size + size <= MAX_PAYLOAD => match notices.last_mut() {
                Some(run)
                    if !run.images.is_empty() && run.kind == kind && last_size + size <= MAX_PAYLOAD =>
                {
                    run.images.push(image);
                    last_size += size;
                }
                _ => {
                    notices.push(Notice {
                        origin: origin.to_string(),
                        kind,
                        image: None,
                        images: vec![image],
                        stamped,
                    });
                    last_size = bare_size + size;
                }
            },
            // A change to many images right after another of its kind says nothing more: a
            // database outage queues one per failed write (see `Shared::announce`).
            _ => match notices.last() {
                Some(last) if last.kind == kind && last.image.is_none() && last.images.is_empty() => {}
                _ => notices.push(Notice {
                    origin: origin.to_string(),
                    kind,
                    image: None,
                    images: Vec::new(),
                    stamped,
                }),
            },
        }
    }
    // A notice of one image names it as `image`, which replicas of the earlier release read too.
    for notice in &mut notices {
        if notice.images.len() == 1 {
            notice.image = notice.images.pop();
        }
    }
    notices.iter().map(|notice| serde_json::to_string(notice).map_err(|err| err.to_string())).collect()
}

/// The notice of a change outside any replica (`migrate --force` replacing what they serve):
/// every replica's dashboards reload, and its clock follows `stamped`, the newest report now
/// stored.
pub fn everything_changed(stamped: Option<Timestamp>) -> Result<String, String> {
    payloads("migrate", stamped, vec![Change::of_many(ChangeKind::Update)])?
        .pop()
        .ok_or_else(|| "no notice for a change to many images".to_string())
}

/// The length of `text` as a JSON string, quotes included, escaped the way serde_json does.
fn json_string_len(text: &str) -> usize {
    let escaped: usize = text
        .bytes()
        .map(|byte| match byte {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum();
    escaped + 2
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_session_that_lasted_starts_the_back_off_over() {
        let lost = |listened| Lost { why: String::new(), listened };
        assert!(worked(&lost(Some(RETRY_MAX))));
        assert!(!worked(&lost(Some(RETRY_MAX - Duration::from_millis(1)))), "listened, then failed at once");
        assert!(!worked(&lost(None)), "never listened");
    }

    /// On tokio's paused clock: time moves only when every task waits, so the instants are exact.
    #[tokio::test(start_paused = true)]
    async fn changes_gather_for_a_few_milliseconds_and_go_in_order() {
        let (changes, mut queue) = mpsc::unbounded_channel();
        let image = |i: usize| Change::of_image(ChangeKind::Update, format!("registry.example/app{i}:1"));
        let started = tokio::time::Instant::now();
        let sender = tokio::spawn(async move {
            for i in 1..=3 {
                tokio::time::sleep(GATHER / 5).await; // whole milliseconds: the timers' grain
                changes.send(image(i)).unwrap();
            }
            tokio::time::sleep(GATHER).await;
            changes.send(image(4)).unwrap();
            for i in 5..5 + MAX_BATCH + 10 {
                changes.send(image(i)).unwrap();
            }
        });
        let first = gathered(image(0), &mut queue).await;
        assert_eq!(started.elapsed(), GATHER, "sent after the gathering time, not before nor later");
        assert_eq!(first, (0..=3).map(image).collect::<Vec<_>>(), "what came within it, in order");
        sender.await.unwrap();
        let next = queue.recv().await.unwrap();
        let second = gathered(next, &mut queue).await;
        assert_eq!(second, (4..4 + MAX_BATCH).map(image).collect::<Vec<_>>(), "at most MAX_BATCH");
        let rest = gathered(queue.recv().await.unwrap(), &mut queue).await;
        assert_eq!(rest, (4 + MAX_BATCH..5 + MAX_BATCH + 10).map(image).collect::<Vec<_>>());
    }

    /// What the other replicas hear of `changes`, each notice read as they read it; every one
    /// carries the sender's latest stamp (the longest one written, for the size limit).
    fn heard(changes: Vec<Change>) -> (Vec<String>, Vec<Change>) {
        let latest = Timestamp::from_unix_micros(i64::MIN);
        let payloads = payloads("me", Some(latest), changes).unwrap();
        let heard = payloads
            .iter()
            .flat_map(|payload| {
                let notice = serde_json::from_str::<Notice>(payload).unwrap();
                assert_eq!(notice.stamped, Some(latest.unix_micros()), "{payload}");
                notice.into_changes()
            })
            .collect();
        (payloads, heard)
    }

    #[test]
    fn runs_of_one_kind_share_a_notice_and_arrive_in_order() {
        let changes = vec![
            Change::of_image(ChangeKind::Update, "a:1"),
            Change::of_image(ChangeKind::Update, "b:1"),
            Change::of_image(ChangeKind::Acknowledge, "a:1"),
            Change::of_many(ChangeKind::Tag),
            Change::of_image(ChangeKind::Update, "c:1"),
            Change::of_many(ChangeKind::Update),
        ];
        let (payloads, heard) = heard(changes.clone());
        assert_eq!(heard, changes);
        assert_eq!(payloads.len(), 5, "{payloads:?}");
    }

    #[test]
    fn changes_to_many_images_in_a_row_go_as_one_notice() {
        let many = Change::of_many(ChangeKind::Update);
        let changes = vec![
            many.clone(),
            many.clone(),
            many.clone(),
            Change::of_image(ChangeKind::Update, "a:1"),
            many.clone(),
        ];
        let (payloads, heard) = heard(changes);
        assert_eq!(heard, [many.clone(), Change::of_image(ChangeKind::Update, "a:1"), many]);
        assert_eq!(payloads.len(), 3, "{payloads:?}");
    }

    #[test]
    fn notices_stay_under_postgresql_payload_limit_whatever_the_names() {
        // Quotes, backslashes and control characters grow when escaped; names near the
        // longest accepted; enough of them for many notices.
        let changes: Vec<Change> = (0..600)
            .map(|i| {
                let name = format!("reg/\"q\"\\\n\u{1}é-{i}:").repeat(1 + i % 40);
                Change::of_image(ChangeKind::Update, &name[..name.len().min(crate::model::MAX_IMAGE_LEN)])
            })
            .collect();
        let (payloads, heard) = heard(changes.clone());
        assert_eq!(heard, changes);
        assert!(payloads.len() > 10, "{} notices", payloads.len());
        for payload in &payloads {
            assert!(payload.len() <= MAX_PAYLOAD, "{} bytes", payload.len());
        }
    }

    #[test]
    fn a_name_too_long_for_a_notice_makes_the_others_reload() {
        let long = "\u{1}".repeat(2000);
        let (payloads, heard) = heard(vec![Change::of_image(ChangeKind::Update, long)]);
        assert_eq!(heard, vec![Change::of_many(ChangeKind::Update)]);
        assert!(payloads[0].len() <= MAX_PAYLOAD);
    }

    #[test]
    fn replicas_of_the_earlier_release_understand_and_are_understood() {
        /// The notice as the release before grouped notices wrote and read it.
        #[derive(Serialize, Deserialize)]
        struct EarlierNotice {
            origin: String,
            kind: ChangeKind,
            #[serde(default, skip_serializing_if = "Option::is_none")]
            image: Option<String>,
        }
        // A lone change reaches them as precisely as before.
        let alone = &payloads("new", Some(Timestamp::now()), vec![Change::of_image(ChangeKind::Tag, "a:1")])
            .unwrap()[0];
        let read: EarlierNotice = serde_json::from_str(alone).unwrap();
        assert_eq!((read.kind, read.image.as_deref()), (ChangeKind::Tag, Some("a:1")));
        let earlier =
            EarlierNotice { origin: "old".into(), kind: ChangeKind::Update, image: Some("a:1".into()) };
        let notice: Notice = serde_json::from_str(&serde_json::to_string(&earlier).unwrap()).unwrap();
        assert_eq!(
            notice.into_changes().collect::<Vec<_>>(),
            vec![Change::of_image(ChangeKind::Update, "a:1")]
        );
        // A grouped notice reads as a change to many images there: its dashboards reload.
        let changes = vec![
            Change::of_image(ChangeKind::Acknowledge, "a:1"),
            Change::of_image(ChangeKind::Acknowledge, "b:1"),
        ];
        let payload = &payloads("new", None, changes).unwrap()[0];
        let read: EarlierNotice = serde_json::from_str(payload).unwrap();
        assert_eq!((read.kind, read.image), (ChangeKind::Acknowledge, None));
    }

    #[test]
    fn channels_are_identifiers_that_differ_per_schema() {
        let public = channel_for("public");
        assert_eq!(public, channel_for("public"));
        assert_ne!(public, channel_for("t_1"));
        assert!(public.len() < 63 && public.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
    }
}
