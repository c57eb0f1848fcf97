//! The one storage contract the HTTP layer sees, and the choice of backend.
//!
//! Each backend lives in its own module behind its Cargo feature; `cfg` appears only on the
//! `mod` lines, the enum variants and the match arms below.

#[cfg(not(any(feature = "sqlite", feature = "postgres")))]
compile_error!(
    "diun-dashboard needs a database backend: build with the default features, \
     `--features sqlite` or `--features postgres`"
);

#[cfg(feature = "sqlite")]
mod checkpoints;
pub mod migrate;
#[cfg(feature = "postgres")]
pub mod postgres;
#[cfg(feature = "postgres")]
pub mod replicas;
#[cfg(all(test, feature = "sqlite"))]
mod scratch;
#[cfg(feature = "postgres")]
mod shared_batches;
#[cfg(feature = "sqlite")]
pub mod sqlite;
mod to_the_end;
#[cfg(feature = "sqlite")]
mod wal_writes;

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use crate::changes::{Change, ChangeFeed, ChangeKind};
use crate::config::Database;
use crate::listing::Listing;
use crate::model::{DiunEvent, HistoryEntry, HostReport, Tag, UpdateEntry};
use crate::time::Timestamp;

/// What an acknowledgement or a removal of one image found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ImageOutcome {
    /// Done (or so already, for an acknowledgement).
    Done,
    /// No update for this image (never reported, or removed).
    UnknownImage,
    /// A report newer than the one the user was shown: nothing done.
    ReportedSince,
}

impl ImageOutcome {
    /// Why a write of one image touched no row: the image unknown, or reported since.
    fn untouched(known: bool) -> Self {
        if known { Self::ReportedSince } else { Self::UnknownImage }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// A tag with this name exists already.
    DuplicateTag,
    /// The database cannot be reached, is busy or refuses writes (503: worth retrying).
    Unavailable(String),
    /// Anything else that should not happen (500).
    Internal(String),
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::DuplicateTag => f.write_str("a tag with this name already exists"),
            StoreError::Unavailable(why) => write!(f, "database unavailable: {why}"),
            StoreError::Internal(why) => write!(f, "database error: {why}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<std::io::Error> for StoreError {
    /// Writing a response body in memory: only running out of memory gets here.
    fn from(err: std::io::Error) -> Self {
        StoreError::Internal(format!("cannot write the listing: {err}"))
    }
}

pub type StoreResult<T> = Result<T, StoreError>;

/// How many images one group holds (`tag_id` `None`: the untagged ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupCount {
    pub tag_id: Option<i64>,
    pub total: u64,
    pub pending: u64,
}

/// The newest stamp the receipt clock gave that the database keeps: the newest report's, or
/// an acknowledgement after it (on its image's `updates` row; one made before a later report
/// is older than that report). A clock started after it stamps nothing before or at it, even
/// when it stamped ahead of this machine's clock before a restart.
const LATEST_STAMP: &str = "SELECT max(latest) FROM
    (SELECT max(received_at) AS latest FROM events
     UNION ALL SELECT max(acknowledged_at) FROM updates) stamps";

/// Counts the images of each group, the same way on every backend (`COUNT` over acknowledged
/// timestamps skips the NULLs of pending updates).
const COUNT_BY_GROUP: &str = "
    SELECT a.tag_id, COUNT(*), COUNT(*) - COUNT(u.acknowledged_at)
    FROM updates u LEFT JOIN tag_assignments a ON a.image = u.image
    GROUP BY a.tag_id";

/// What `assign_tag` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Assignment {
    Assigned,
    UnknownImage,
    UnknownTag,
}

/// When a webhook's report was received.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Received {
    /// As the store stamps it ([`crate::time::ReceiptClock`]): later than every report stored
    /// before it, and on SQLite in the order the reports are committed, so that a dismissal
    /// bounded by the newest report a page showed never covers one that page could not show.
    Now,
    /// At a time of its own (tests, copies): kept as given.
    At(Timestamp),
}

/// The operations the API needs. Timestamps come from the caller so that every backend stores
/// exactly the same instant for the same request, except a report's ([`Received`]).
pub trait UpdateStore: Send + Sync {
    /// `"sqlite"` or `"postgres"`, as `/healthz` reports it.
    fn backend(&self) -> &'static str;
    /// A time later than every report this store has stamped or stored, as a report received
    /// now would have at the earliest: what a refused webhook and an acknowledgement are
    /// stamped with, so that the dashboard can tell them from the reports that came before and
    /// after them, whatever the system clock (or another replica's) did.
    fn receipt_time(&self) -> Timestamp;
    fn ping(&self) -> impl Future<Output = StoreResult<()>> + Send;
    /// Inserts or overwrites the event for its image, marks it pending again, keeps its tag.
    fn upsert_event(
        &self,
        event: DiunEvent,
        received: Received,
    ) -> impl Future<Output = StoreResult<()>> + Send;
    /// Every tracked image, ordered by image name (bytewise).
    fn list_updates(&self) -> impl Future<Output = StoreResult<Vec<UpdateEntry>>> + Send;
    /// The same images as [`Self::list_updates`], in the same order, written into `listing`
    /// straight from the rows, and the finished body: what `GET /api/updates` answers.
    fn write_listing(&self, listing: Listing) -> impl Future<Output = StoreResult<Vec<u8>>> + Send;
    /// Tracked and pending images per group, one row per group that holds any: what
    /// `/metrics` and `/api/summary` need, without reading the images themselves.
    fn count_by_group(&self) -> impl Future<Output = StoreResult<Vec<GroupCount>>> + Send;
    /// Acknowledges the image's update, keeping the first acknowledgement time. With `seen`
    /// (the `received_at` the user was shown), only if that is still its latest report.
    fn acknowledge(
        &self,
        image: String,
        at: Timestamp,
        seen: Option<Timestamp>,
    ) -> impl Future<Output = StoreResult<ImageOutcome>> + Send;
    /// The number of updates that were pending. With `shown_until` (the newest `received_at`
    /// the user was shown), only updates whose latest report is no newer: one that arrived
    /// since stays pending.
    fn acknowledge_all(
        &self,
        at: Timestamp,
        shown_until: Option<Timestamp>,
    ) -> impl Future<Output = StoreResult<u64>> + Send;
    /// `None` when the tag is unknown. `shown_until` as for [`Self::acknowledge_all`].
    fn acknowledge_by_tag(
        &self,
        tag_id: i64,
        at: Timestamp,
        shown_until: Option<Timestamp>,
    ) -> impl Future<Output = StoreResult<Option<u64>>> + Send;
    /// Forgets the image: its update, its group assignment and its history (a container that
    /// is gone, whose card would otherwise stay for good). DIUN's next report of it starts
    /// afresh. With `seen` as for [`Self::acknowledge`]: a report the user was not shown keeps
    /// everything.
    fn remove_update(
        &self,
        image: String,
        seen: Option<Timestamp>,
    ) -> impl Future<Output = StoreResult<ImageOutcome>> + Send;
    /// Ordered by name, case-insensitively, identically on every backend.
    fn list_tags(&self) -> impl Future<Output = StoreResult<Vec<Tag>>> + Send;
    fn create_tag(&self, name: String) -> impl Future<Output = StoreResult<Tag>> + Send;
    /// `false` when the tag is unknown. Its assignments go with it.
    fn delete_tag(&self, tag_id: i64) -> impl Future<Output = StoreResult<bool>> + Send;
    /// One tag per image: assigning replaces.
    fn assign_tag(&self, image: String, tag_id: i64) -> impl Future<Output = StoreResult<Assignment>> + Send;
    fn unassign_tag(&self, image: String) -> impl Future<Output = StoreResult<()>> + Send;
    /// The image's accepted webhooks, newest first, at most `limit`, only those with an id
    /// below `before` when given. `None` when the image is unknown.
    fn history(
        &self,
        image: String,
        before: Option<i64>,
        limit: u32,
    ) -> impl Future<Output = StoreResult<Option<Vec<HistoryEntry>>>> + Send;
    /// For every image, each host's latest report since the image last became pending (for an
    /// acknowledged image: the reports its acknowledgement covered), ordered by image and host
    /// (bytewise).
    fn reporting_hosts(&self) -> impl Future<Output = StoreResult<Vec<HostReport>>> + Send;
    /// Deletes at most `limit` events acknowledged before `older_than`; returns how many went.
    /// History ages from its acknowledgement: an update left pending for longer than the
    /// retention keeps its reports for the full time after it is acknowledged, to be looked
    /// at. Pending events stay, however old: they are the hosts an update's card lists (every
    /// host that reported it since it last became pending), not history yet. So do the reports
    /// an acknowledged image's acknowledgement covered, for as long as it is the image's latest:
    /// they are the hosts its card lists then (an image pinned for a year keeps its hosts).
    fn prune_history(
        &self,
        older_than: Timestamp,
        limit: u32,
    ) -> impl Future<Output = StoreResult<u64>> + Send;
}

/// Sorts tags the way the API promises, independent of any database collation.
pub fn sort_tags(tags: &mut [Tag]) {
    tags.sort_by_cached_key(|tag| (tag.name.to_lowercase(), tag.name.clone(), tag.id));
}

/// Forwards a call to the backend in use.
macro_rules! dispatch {
    ($shared:expr, $store:ident => $call:expr) => {
        match &$shared.backend {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite($store) => $call,
            #[cfg(feature = "postgres")]
            Backend::Postgres($store) => $call,
        }
    };
}

/// The store the server runs on: the backend in use, and the feed its writes are announced on.
/// Shared with the writes it finishes after their caller went away (see `to_the_end`).
pub struct Store(Arc<Shared>);

struct Shared {
    backend: Backend,
    changes: ChangeFeed,
}

/// One variant per compiled-in backend.
enum Backend {
    #[cfg(feature = "sqlite")]
    Sqlite(sqlite::SqliteStore),
    /// Boxed: its pool and configuration are much larger than the SQLite handles.
    #[cfg(feature = "postgres")]
    Postgres(Box<postgres::PostgresStore>),
}

impl Store {
    /// Opens the configured database and brings its schema up to date.
    pub async fn open(database: &Database) -> Result<Self, String> {
        let changes = ChangeFeed::default();
        let backend =
            match database {
                #[cfg(feature = "sqlite")]
                Database::Sqlite { path } => sqlite::SqliteStore::open(path.clone())
                    .await
                    .map(Backend::Sqlite)
                    .map_err(|err| format!("cannot open SQLite database at {}: {err}", path.display()))?,
                #[cfg(feature = "postgres")]
                Database::Postgres { url } => postgres::PostgresStore::open(url.expose())
                    .await
                    .map(|store| Backend::Postgres(Box::new(store.share_changes(changes.clone()))))
                    .map_err(|err| format!("cannot use PostgreSQL database: {err}"))?,
                #[allow(unreachable_patterns)]
                other => return Err(missing_feature_message(other)),
            };
        Ok(Self(Arc::new(Shared { backend, changes })))
    }

    /// Every successful write is announced here.
    pub fn changes(&self) -> &ChangeFeed {
        &self.0.changes
    }

    /// Waits, a few seconds at most, until changes made by other replicas are heard: call it
    /// before serving (PostgreSQL; nothing to wait for on SQLite).
    pub async fn listening_to_other_replicas(&self) {
        match &self.0.backend {
            #[cfg(feature = "postgres")]
            Backend::Postgres(store) => store.change_sharing_listens().await,
            #[allow(unreachable_patterns)]
            _ => {}
        }
    }

    /// Finishes queued writes and closes the database cleanly.
    pub async fn close(&self) {
        dispatch!(self.0, store => store.close().await)
    }

    /// Runs `write`, a write and its announcement, to its end even if the caller's future is
    /// dropped meanwhile.
    fn to_the_end<T, W>(&self, write: impl FnOnce(Arc<Shared>) -> W) -> to_the_end::ToTheEnd<W>
    where
        W: Future<Output = T> + Send + 'static,
        T: Send + 'static,
    {
        to_the_end::to_the_end(write(Arc::clone(&self.0)))
    }
}

impl Shared {
    /// Announces `change` once `written` has succeeded, and a reload when its outcome is
    /// unknown: a write that failed as unavailable may have committed all the same (the
    /// connection lost after its COMMIT left, a wait for the COMMIT cancelled). Without that,
    /// every dashboard would show the old state until its next safety poll.
    fn announce<T>(
        &self,
        written: StoreResult<T>,
        change: impl FnOnce(&T) -> Option<Change>,
    ) -> StoreResult<T> {
        let announced = match &written {
            Ok(value) => change(value),
            Err(StoreError::Unavailable(_)) => Some(Change::of_many(ChangeKind::Update)),
            Err(_) => None,
        };
        if let Some(change) = announced {
            dispatch!(self, store => store.share(&change));
            self.changes.publish(change);
        }
        written
    }
}

fn missing_feature_message(database: &Database) -> String {
    let hint = match database {
        Database::Sqlite { .. } => "set DATABASE_URL to a PostgreSQL URL, or use a build with SQLite",
        Database::Postgres { .. } => "unset DATABASE_URL to use SQLite, or use a build with PostgreSQL",
    };
    format!(
        "this binary was built without the `{feature}` Cargo feature, which the configuration asks for \
         (rebuild with `--features {feature}`); {hint}",
        feature = database.feature()
    )
}

impl UpdateStore for Store {
    fn backend(&self) -> &'static str {
        dispatch!(self.0, s => s.backend())
    }
    fn receipt_time(&self) -> Timestamp {
        dispatch!(self.0, s => s.receipt_time())
    }
    async fn ping(&self) -> StoreResult<()> {
        dispatch!(self.0, s => s.ping().await)
    }
    async fn upsert_event(&self, event: DiunEvent, received: Received) -> StoreResult<()> {
        let change = Change::of_image(ChangeKind::Update, event.image.clone());
        self.to_the_end(|store| async move {
            let written = dispatch!(store, s => s.upsert_event(event, received).await);
            store.announce(written, |()| Some(change))
        })
        .await
    }
    async fn list_updates(&self) -> StoreResult<Vec<UpdateEntry>> {
        dispatch!(self.0, s => s.list_updates().await)
    }
    async fn write_listing(&self, listing: Listing) -> StoreResult<Vec<u8>> {
        dispatch!(self.0, s => s.write_listing(listing).await)
    }
    async fn count_by_group(&self) -> StoreResult<Vec<GroupCount>> {
        dispatch!(self.0, s => s.count_by_group().await)
    }
    async fn acknowledge(
        &self,
        image: String,
        at: Timestamp,
        seen: Option<Timestamp>,
    ) -> StoreResult<ImageOutcome> {
        let change = Change::of_image(ChangeKind::Acknowledge, image.clone());
        self.to_the_end(|store| async move {
            let written = dispatch!(store, s => s.acknowledge(image, at, seen).await);
            store.announce(written, |outcome| (*outcome == ImageOutcome::Done).then_some(change))
        })
        .await
    }
    async fn acknowledge_all(&self, at: Timestamp, shown_until: Option<Timestamp>) -> StoreResult<u64> {
        self.to_the_end(|store| async move {
            let written = dispatch!(store, s => s.acknowledge_all(at, shown_until).await);
            store.announce(written, |count| (*count > 0).then(|| Change::of_many(ChangeKind::Acknowledge)))
        })
        .await
    }
    async fn acknowledge_by_tag(
        &self,
        tag_id: i64,
        at: Timestamp,
        shown_until: Option<Timestamp>,
    ) -> StoreResult<Option<u64>> {
        self.to_the_end(|store| async move {
            let written = dispatch!(store, s => s.acknowledge_by_tag(tag_id, at, shown_until).await);
            store.announce(written, |count| {
                count.is_some_and(|n| n > 0).then(|| Change::of_many(ChangeKind::Acknowledge))
            })
        })
        .await
    }
    async fn remove_update(&self, image: String, seen: Option<Timestamp>) -> StoreResult<ImageOutcome> {
        let change = Change::of_image(ChangeKind::Remove, image.clone());
        self.to_the_end(|store| async move {
            let written = dispatch!(store, s => s.remove_update(image, seen).await);
            store.announce(written, |outcome| (*outcome == ImageOutcome::Done).then_some(change))
        })
        .await
    }
    async fn list_tags(&self) -> StoreResult<Vec<Tag>> {
        dispatch!(self.0, s => s.list_tags().await)
    }
    async fn create_tag(&self, name: String) -> StoreResult<Tag> {
        self.to_the_end(|store| async move {
            let written = dispatch!(store, s => s.create_tag(name).await);
            store.announce(written, |_| Some(Change::of_many(ChangeKind::Tag)))
        })
        .await
    }
    async fn delete_tag(&self, tag_id: i64) -> StoreResult<bool> {
        self.to_the_end(|store| async move {
            let written = dispatch!(store, s => s.delete_tag(tag_id).await);
            store.announce(written, |found| found.then(|| Change::of_many(ChangeKind::Tag)))
        })
        .await
    }
    async fn assign_tag(&self, image: String, tag_id: i64) -> StoreResult<Assignment> {
        let change = Change::of_image(ChangeKind::Tag, image.clone());
        self.to_the_end(|store| async move {
            let written = dispatch!(store, s => s.assign_tag(image, tag_id).await);
            store.announce(written, |outcome| (*outcome == Assignment::Assigned).then_some(change))
        })
        .await
    }
    async fn unassign_tag(&self, image: String) -> StoreResult<()> {
        let change = Change::of_image(ChangeKind::Tag, image.clone());
        self.to_the_end(|store| async move {
            let written = dispatch!(store, s => s.unassign_tag(image).await);
            store.announce(written, |()| Some(change))
        })
        .await
    }
    async fn history(
        &self,
        image: String,
        before: Option<i64>,
        limit: u32,
    ) -> StoreResult<Option<Vec<HistoryEntry>>> {
        dispatch!(self.0, s => s.history(image, before, limit).await)
    }
    async fn reporting_hosts(&self) -> StoreResult<Vec<HostReport>> {
        dispatch!(self.0, s => s.reporting_hosts().await)
    }
    async fn prune_history(&self, older_than: Timestamp, limit: u32) -> StoreResult<u64> {
        dispatch!(self.0, s => s.prune_history(older_than, limit).await)
    }
}

#[cfg(all(test, feature = "sqlite"))]
mod tests {
    use super::*;
    use crate::changes::Numbered;
    use crate::store::scratch::Scratch;

    /// Only a write's failure as unavailable leaves its outcome unknown; other failures were
    /// not written, and announce nothing.
    #[tokio::test]
    async fn a_write_of_unknown_outcome_makes_the_dashboards_reload() {
        let scratch = Scratch::new("announce");
        let store = Store::open(&Database::Sqlite { path: scratch.path().join("diun.db") }).await.unwrap();
        let mut heard = store.changes().subscribe();
        let never = |_: &()| -> Option<Change> { panic!("a failed write has no value to announce") };

        let _ = store.0.announce(Err(StoreError::Internal("refused".into())), never);
        let _ = store.0.announce(Err(StoreError::DuplicateTag), never);
        assert!(heard.try_recv().is_err(), "a write known to have failed announced something");

        let _ = store.0.announce(Err(StoreError::Unavailable("connection lost".into())), never);
        assert_eq!(
            heard.try_recv().unwrap(),
            Numbered { seq: 1, change: Change::of_many(ChangeKind::Update) }
        );

        let image = Change::of_image(ChangeKind::Acknowledge, "nginx:1");
        let _ = store.0.announce(Ok(()), |()| Some(image.clone()));
        assert_eq!(heard.try_recv().unwrap(), Numbered { seq: 2, change: image });
        store.close().await;
    }
}
