//! SQLite backend (rusqlite, bundled SQLite).
//!
//! SQLite allows one writer at a time, so one thread owns the write connection and commits
//! whatever writes are queued in a single transaction: concurrent webhooks share one commit
//! instead of queueing for a lock one by one. Each write runs inside its own savepoint, so a
//! failing write never takes its neighbours down, and every caller hears back only after the
//! commit, so an answered write survives the process's crash (`kill -9` included). With
//! `synchronous=NORMAL`, which SPEC §5 sets, the WAL reaches the disk at checkpoints: an OS
//! crash or a power loss can take the last commits. Reads use a small pool of their own
//! connections (WAL lets them run beside the writer). Every rusqlite call runs off the async
//! reactor.

use std::ffi::CStr;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::Duration;

use include_dir::{Dir, include_dir};
use rusqlite::{Connection, ErrorCode, OpenFlags, params};
use tokio::sync::oneshot;

use super::checkpoints::Checkpointer;
use super::migrate::{self, Migration};
use super::wal_writes;
use super::{
    Assignment, COUNT_BY_GROUP, GroupCount, ImageOutcome, Received, StoreError, StoreResult, UpdateStore,
    sort_tags,
};
use crate::listing::{ListedUpdate, Listing, StoredText};
use crate::model::{DiunEvent, HistoryEntry, HostReport, StoredObject, Tag, UpdateEntry, json_object};
use crate::time::{ReceiptClock, Timestamp};

static MIGRATIONS: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/migrations/sqlite");

/// Writes committed together at most; bounds the time any one caller waits behind others.
const MAX_BATCH: usize = 512;
const MAX_IDLE_READERS: usize = 4;
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// Prepared statements kept per connection: every statement this module runs fits.
const STATEMENT_CACHE: usize = 64;
/// How much of the database file a reader maps into memory (address space, not memory: only
/// pages read are resident, and the kernel may drop them as any file cache).
const READER_MMAP: i64 = 1 << 30;
pub struct SqliteStore {
    path: Arc<PathBuf>,
    readers: Arc<Mutex<Vec<Connection>>>,
    jobs: mpsc::Sender<Message>,
    writer: Mutex<Option<JoinHandle<()>>>,
    /// Stamps each batch's reports on the writer (see [`Batch`]).
    receipts: Arc<ReceiptClock>,
}

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> Self {
        match err.sqlite_error_code() {
            Some(
                ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::DiskFull
                | ErrorCode::ReadOnly
                | ErrorCode::CannotOpen
                | ErrorCode::SystemIoFailure
                | ErrorCode::PermissionDenied
                | ErrorCode::OutOfMemory,
            ) => StoreError::Unavailable(err.to_string()),
            _ => StoreError::Internal(err.to_string()),
        }
    }
}

impl SqliteStore {
    /// Opens (creating it and its folder if needed) and migrates the database at `path`.
    pub async fn open(path: PathBuf) -> Result<Self, String> {
        Self::open_with(path, migrations()?).await
    }

    /// Like [`Self::open`], with another set of migrations (tests of upgrades).
    pub async fn open_with(path: PathBuf, migrations: Vec<Migration>) -> Result<Self, String> {
        tokio::task::spawn_blocking(move || Self::open_blocking(path, &migrations))
            .await
            .map_err(|err| format!("opening task failed: {err}"))?
    }

    fn open_blocking(path: PathBuf, migrations: &[Migration]) -> Result<Self, String> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(|err| format!("cannot create folder {}: {err}", parent.display()))?;
        }
        wal_writes::register()?;
        let mut conn = open_connection_with(&path, Some(wal_writes::NAME)).map_err(|err| err.to_string())?;
        // A file this user may not write is opened read-only without a word: the service would
        // then start, answer /healthz, and fail every webhook.
        if conn.is_readonly(rusqlite::MAIN_DB).map_err(|err| err.to_string())? {
            return Err("the file is read-only for this user: the service must be able to write it".into());
        }
        run_migrations(&mut conn, migrations)?;
        let latest =
            latest_report(&conn).map_err(|err| format!("cannot read the latest report's time: {err}"))?;
        let receipts = Arc::new(ReceiptClock::after(latest));
        let checkpointer = Checkpointer::start(&path, &mut conn)?;
        let (jobs, queue) = mpsc::channel();
        let stamps = Arc::clone(&receipts);
        let writer = std::thread::Builder::new()
            .name("sqlite-writer".into())
            .spawn(move || write_loop(conn, queue, checkpointer, &stamps))
            .map_err(|err| format!("cannot start the writer thread: {err}"))?;
        Ok(Self {
            path: Arc::new(path),
            readers: Arc::new(Mutex::new(Vec::new())),
            jobs,
            writer: Mutex::new(Some(writer)),
            receipts,
        })
    }

    /// Commits what is queued, stops the writer and closes every connection.
    pub async fn close(&self) {
        let _ = self.jobs.send(Message::Shutdown);
        let writer = self.writer.lock().unwrap_or_else(PoisonError::into_inner).take();
        self.readers.lock().unwrap_or_else(PoisonError::into_inner).clear();
        if let Some(writer) = writer {
            let _ = tokio::task::spawn_blocking(move || writer.join()).await;
        }
    }

    /// Other processes have nothing to hear: one process serves a SQLite file.
    pub fn share(&self, _change: &crate::changes::Change) {}

    async fn read<T: Send + 'static>(
        &self,
        op: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let readers = Arc::clone(&self.readers);
        let path = Arc::clone(&self.path);
        tokio::task::spawn_blocking(move || {
            let idle = readers.lock().unwrap_or_else(PoisonError::into_inner).pop();
            let conn = match idle {
                Some(conn) => conn,
                None => open_reader(&path)?,
            };
            let result = op(&conn);
            let mut idle = readers.lock().unwrap_or_else(PoisonError::into_inner);
            if idle.len() < MAX_IDLE_READERS {
                idle.push(conn);
            }
            result
        })
        .await
        .map_err(|err| StoreError::Internal(format!("read task failed: {err}")))?
    }

    /// Queues `op` for the writer. It may run twice (see [`commit_batch`]), so it must not
    /// consume what it captured.
    async fn write<T: Send + 'static>(
        &self,
        op: impl Fn(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        self.write_in_batch(move |conn, _| op(conn)).await
    }

    /// [`Self::write`], for a write that needs what its batch shares.
    async fn write_in_batch<T: Send + 'static>(
        &self,
        op: impl Fn(&Connection, &Batch) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let (job, answer) = WriteJob::new(op);
        self.jobs
            .send(Message::Write(job))
            .map_err(|_| StoreError::Unavailable("the database is closed".into()))?;
        // The writer drops what is still queued when it stops (shutdown): not stored, as when
        // the queue is closed already.
        let done = answer.await.map_err(|_| StoreError::Unavailable("the database writer stopped".into()))?;
        (*done).answer()
    }
}

pub(super) fn open_connection(path: &Path) -> rusqlite::Result<Connection> {
    open_connection_with(path, None)
}

/// A connection for reads. It maps the database file: SQLite empties a connection's page cache
/// whenever another one committed, so a listing after any webhook read every page of `updates`
/// again with a `pread` each, about an eighth of its time (24 ms against 21 ms for 5,000
/// images, BENCHMARKS.md section 23). Mapped, those pages are read where the kernel keeps them.
/// The price of a mapping: a disk error while a reader touches a mapped page ends the process
/// (SIGBUS) where a `pread` would have failed one request. The writer and the checkpointer,
/// which own every write, do not map the file.
fn open_reader(path: &Path) -> rusqlite::Result<Connection> {
    let conn = open_connection(path)?;
    conn.pragma_update(None, "mmap_size", READER_MMAP)?;
    Ok(conn)
}

/// `vfs`: the writer's is [`wal_writes`]; readers and the checkpointer never write the WAL.
fn open_connection_with(path: &Path, vfs: Option<&CStr>) -> rusqlite::Result<Connection> {
    let conn = match vfs {
        Some(vfs) => Connection::open_with_flags_and_vfs(path, OpenFlags::default(), vfs)?,
        None => Connection::open(path)?,
    };
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    conn.busy_timeout(BUSY_TIMEOUT)?;
    // SQLite answers a switch it cannot make with the mode it stays in, not an error. Without
    // WAL a listing would hold webhooks' commits back, and the writer's batching and
    // checkpoints would not work as designed.
    let mode = conn.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CANTOPEN),
            Some(format!(
                "SQLite cannot keep this database in WAL mode (it stays in {mode} mode), which the \
                 service needs: put it on a local file system"
            )),
        ));
    }
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    Ok(conn)
}

/// The SQLite migrations embedded in the binary.
pub fn migrations() -> Result<Vec<Migration>, String> {
    migrate::from_dir(&MIGRATIONS)
}

/// Applies the pending migrations, each in its own transaction, recorded in `schema_migrations`.
///
/// Foreign keys are off meanwhile, as SQLite's procedure for schema changes asks: with them on,
/// a migration that rebuilds `updates` the usual SQLite way (create, copy, drop, rename) would
/// have its DROP delete every tag assignment through the cascade. Each migration is checked
/// with `foreign_key_check` before it commits instead: it may not leave more rows pointing
/// nowhere than there were (a row deleted by hand with foreign keys off, as the `sqlite3` shell
/// has them, is not the migration's doing). The pragma does nothing inside a transaction, hence
/// here, around them all.
pub fn run_migrations(conn: &mut Connection, migrations: &[Migration]) -> Result<(), String> {
    let switch = |conn: &Connection, on: &str| {
        conn.pragma_update(None, "foreign_keys", on)
            .map_err(|err| format!("cannot set foreign_keys = {on} for the migrations: {err}"))
    };
    switch(conn, "OFF")?;
    let migrated = apply_pending(conn, migrations);
    // The migration's own error first: it says what went wrong.
    let restored = switch(conn, "ON");
    migrated.and(restored)
}

fn dangling_references(conn: &Connection) -> rusqlite::Result<i64> {
    conn.query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |row| row.get(0))
}

fn apply_pending(conn: &mut Connection, migrations: &[Migration]) -> Result<(), String> {
    let fail = |what: &str, err: rusqlite::Error| format!("{what}: {err}");
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    INTEGER PRIMARY KEY,
             name       TEXT NOT NULL,
             applied_at TEXT NOT NULL
         ) STRICT",
    )
    .map_err(|err| fail("cannot create schema_migrations", err))?;
    // Refuse a database from a newer release before touching it.
    let applied = applied_versions(conn).map_err(|err| fail("cannot read schema_migrations", err))?;
    // An up-to-date database takes no write lock at start-up.
    for migration in migrate::pending(migrations, &applied)? {
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(|err| fail("cannot start a migration", err))?;
        // Read again inside the write lock: another process may have migrated meanwhile.
        let applied = applied_versions(&tx).map_err(|err| fail("cannot read schema_migrations", err))?;
        if applied.contains(&migration.version) {
            continue;
        }
        let label = format!("migration {:04}_{}", migration.version, migration.name);
        let dangling_before = dangling_references(&tx).map_err(|err| fail(&label, err))?;
        tx.execute_batch(&migration.sql).map_err(|err| fail(&label, err))?;
        let dangling = dangling_references(&tx).map_err(|err| fail(&label, err))?;
        if dangling > dangling_before {
            return Err(format!(
                "{label} would leave {} more reference(s) to rows that are gone",
                dangling - dangling_before
            ));
        }
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            params![migration.version, migration.name, Timestamp::now().to_string()],
        )
        .map_err(|err| fail(&label, err))?;
        tx.commit().map_err(|err| fail(&label, err))?;
        log::info!("applied {label}");
    }
    Ok(())
}

fn applied_versions(conn: &Connection) -> rusqlite::Result<Vec<i64>> {
    let mut stmt = conn.prepare("SELECT version FROM schema_migrations ORDER BY version")?;
    stmt.query_map([], |row| row.get(0))?.collect()
}

enum Message {
    Write(Box<dyn PendingWrite>),
    Shutdown,
}

/// What the writes committed together share.
struct Batch {
    /// The time of the reports it stores (as stored, in text). Taken by the writer, after the
    /// batch before it committed: reports are stamped in the order they are committed, so a
    /// listing that showed a report showed every report stamped no later. Stamped by the
    /// webhook's task, a report could be queued after a later-stamped one, be committed after
    /// a listing that showed that one, and be covered by "Dismiss all" up to it, unseen.
    received_at: String,
}

/// A queued write: run inside the batch's transaction, answered after the commit.
trait PendingWrite: Send {
    /// Runs the write; its error (a copy: the write keeps its own for the answer) if it failed
    /// and its savepoint must be rolled back.
    fn run(&mut self, conn: &Connection, batch: &Batch) -> StoreResult<()>;
    /// Answers the caller with the write's own result, or the commit's error.
    fn finish(self: Box<Self>, commit: StoreResult<()>);
}

/// A write, and its answer once it has run. The job itself goes back to the caller, so that
/// it and what it captured (the webhook's strings) are freed on the thread that allocated
/// them: freed on the writer, each of a dozen allocations per webhook took the lock of
/// another thread's malloc arena and contended with that thread.
struct WriteJob<T, F> {
    op: F,
    result: Option<StoreResult<T>>,
    /// Taken when the job is sent back.
    reply: Option<oneshot::Sender<Box<WriteJob<T, F>>>>,
}

impl<T, F> WriteJob<T, F> {
    fn new(op: F) -> (Box<Self>, oneshot::Receiver<Box<Self>>) {
        let (reply, answer) = oneshot::channel();
        (Box::new(WriteJob { op, result: None, reply: Some(reply) }), answer)
    }

    /// The write's own result, or the commit's error that `finish` put in its place.
    fn answer(self) -> StoreResult<T> {
        self.result.unwrap_or_else(|| Err(StoreError::Internal("write never ran".into())))
    }
}

impl<T: Send, F: Fn(&Connection, &Batch) -> StoreResult<T> + Send> PendingWrite for WriteJob<T, F> {
    fn run(&mut self, conn: &Connection, batch: &Batch) -> StoreResult<()> {
        let result = (self.op)(conn, batch);
        let outcome = match &result {
            Ok(_) => Ok(()),
            Err(err) => Err(err.clone()),
        };
        self.result = Some(result);
        outcome
    }

    fn finish(mut self: Box<Self>, commit: StoreResult<()>) {
        if let Err(err) = commit {
            self.result = Some(Err(err));
        }
        // The caller may have gone away (client disconnected); the write stands regardless.
        if let Some(reply) = self.reply.take() {
            let _ = reply.send(self);
        }
    }
}

fn write_loop(
    conn: Connection,
    queue: mpsc::Receiver<Message>,
    checkpointer: Checkpointer,
    receipts: &ReceiptClock,
) {
    let mut open = true;
    while open {
        let mut batch = match queue.recv() {
            Ok(Message::Write(job)) => vec![job],
            Ok(Message::Shutdown) | Err(_) => break,
        };
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(Message::Write(job)) => batch.push(job),
                Ok(Message::Shutdown) => {
                    open = false;
                    break;
                }
                Err(_) => break,
            }
        }
        let shared = Batch { received_at: receipts.stamp().to_string() };
        let commit = commit_batch(&conn, &mut batch, &shared);
        if let Err(err) = &commit {
            log::error!("SQLite write failed, {} write(s) answered with an error: {err}", batch.len());
        }
        for job in batch {
            job.finish(commit.clone());
        }
        // After the answers: a checkpoint here delays the next batch, not this one.
        checkpointer.after_commit(&conn);
    }
    // The writer's connection closes last, so SQLite's final checkpoint empties the WAL.
    checkpointer.stop();
    if let Err((_, err)) = conn.close() {
        log::error!("closing the SQLite database failed: {err}");
    }
}

fn commit_batch(conn: &Connection, batch: &mut [Box<dyn PendingWrite>], shared: &Batch) -> StoreResult<()> {
    // First without savepoints: a savepoint copies every page a write touches into its journal,
    // which cost the writer more than the writes themselves. Should any write fail, the batch is
    // rolled back and replayed with a savepoint each, so that the failed write alone is undone.
    match run_batch(conn, batch, shared, Isolation::Shared) {
        Ok(()) => Ok(()),
        Err(BatchFailure::Write) => {
            run_batch(conn, batch, shared, Isolation::PerWrite).map_err(BatchFailure::into_error)
        }
        Err(BatchFailure::Database(err)) => Err(err),
    }
}

/// How the writes of a batch are kept apart inside its transaction.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Isolation {
    /// No savepoints: any failed write fails the whole attempt.
    Shared,
    /// A savepoint per write, rolled back when the write fails.
    PerWrite,
}

enum BatchFailure {
    /// A write failed in a transaction without savepoints; nothing was committed.
    Write,
    /// The transaction itself failed; nothing was committed.
    Database(StoreError),
}

impl BatchFailure {
    fn into_error(self) -> StoreError {
        match self {
            // With a savepoint per write, a failed write never fails the batch.
            BatchFailure::Write => StoreError::Internal("a write failed outside its savepoint".into()),
            BatchFailure::Database(err) => err,
        }
    }
}

impl From<rusqlite::Error> for BatchFailure {
    fn from(err: rusqlite::Error) -> Self {
        BatchFailure::Database(err.into())
    }
}

/// Runs every write of `batch` in one transaction and commits it; rolls back on failure.
fn run_batch(
    conn: &Connection,
    batch: &mut [Box<dyn PendingWrite>],
    shared: &Batch,
    isolation: Isolation,
) -> Result<(), BatchFailure> {
    // Prepared once per connection: parsing these again for every write is measurable.
    let run = |sql: &str| conn.prepare_cached(sql)?.execute([]).map(drop);
    if !conn.is_autocommit() {
        // An earlier batch's rollback failed (logged then): tried again, or this batch fails
        // with the reason.
        conn.execute_batch("ROLLBACK")?;
        super::wal_writes::discard_uncommitted(conn);
    }
    run("BEGIN IMMEDIATE")?;
    let outcome = batch.iter_mut().try_for_each(|job| -> Result<(), BatchFailure> {
        if isolation == Isolation::Shared {
            return job.run(conn, shared).map_err(|_| BatchFailure::Write);
        }
        run("SAVEPOINT write")?;
        if let Err(err) = job.run(conn, shared) {
            // A disk error, a full disk or running out of memory can end the whole
            // transaction, not just the statement: SQLite has rolled it back, no savepoint is
            // left to return to, and the batch fails with the write's own error (not with "no
            // such savepoint", a 500 that hid the disk's trouble from the log).
            if conn.is_autocommit() {
                return Err(BatchFailure::Database(err));
            }
            run("ROLLBACK TO write")?;
        }
        run("RELEASE write")?;
        Ok(())
    });
    let outcome = outcome.and_then(|()| Ok(run("COMMIT")?));
    if outcome.is_err() && !conn.is_autocommit() {
        // Left open, the transaction would fail every later batch at its BEGIN ("within a
        // transaction"), and the log would say that instead of this.
        if let Err(err) = conn.execute_batch("ROLLBACK") {
            log::error!("SQLite could not roll back a failed batch: {err}");
        }
    }
    if outcome.is_err() && conn.is_autocommit() {
        super::wal_writes::discard_uncommitted(conn);
    }
    outcome
}

const SELECT_UPDATES: &str = "
    SELECT u.image, u.diun_version, u.hostname, u.status, u.provider, u.hub_link, u.mime_type,
           u.digest, u.created, u.platform, u.metadata, u.extra, u.received_at, u.acknowledged_at,
           t.id, t.name
    FROM updates u
    LEFT JOIN tag_assignments a ON a.image = u.image
    LEFT JOIN tags t ON t.id = a.tag_id
    ORDER BY u.image";

fn update_from_row(row: &rusqlite::Row<'_>) -> StoreResult<UpdateEntry> {
    listed_from_row(row)?.to_entry().map_err(StoreError::Internal)
}

/// A row of [`SELECT_UPDATES`], borrowed.
fn listed_from_row<'r>(row: &'r rusqlite::Row<'_>) -> StoreResult<ListedUpdate<'r>> {
    let text = |column| text_column(row, column);
    let optional = |column| optional_text_column(row, column);
    let tag_id: Option<i64> = row.get(14)?;
    Ok(ListedUpdate {
        image: text(0)?,
        diun_version: text(1)?,
        hostname: text(2)?,
        status: text(3)?,
        provider: text(4)?,
        hub_link: text(5)?,
        mime_type: text(6)?,
        digest: text(7)?,
        created: optional(8)?,
        platform: text(9)?,
        metadata: optional(10)?.map(StoredText::serde),
        extra: optional(11)?.map(StoredText::serde),
        received_at: stored_timestamp(text(12)?)?,
        acknowledged_at: optional(13)?.map(stored_timestamp).transpose()?,
        tag: tag_id.zip(optional(15)?),
    })
}

fn text_column<'r>(row: &'r rusqlite::Row<'_>, column: usize) -> StoreResult<&'r str> {
    row.get_ref(column)?.as_str().map_err(|err| StoreError::Internal(format!("column {column}: {err}")))
}

fn optional_text_column<'r>(row: &'r rusqlite::Row<'_>, column: usize) -> StoreResult<Option<&'r str>> {
    row.get_ref(column)?
        .as_str_or_null()
        .map_err(|err| StoreError::Internal(format!("column {column}: {err}")))
}

fn stored_timestamp(text: &str) -> StoreResult<Timestamp> {
    Timestamp::parse_rfc3339(text)
        .ok_or_else(|| StoreError::Internal(format!("stored timestamp {text:?} is not RFC 3339")))
}

/// The newest stamp stored, if any: a report's receipt or an acknowledgement, both stamped by
/// the receipt clock (which may have run ahead of this machine's). Every report is an event
/// too, and the latest of each image is never pruned (it is pending, or its image's
/// acknowledgement covered it): `events_by_time` finds it. An acknowledgement newer than every
/// report is on its image's `updates` row, read whole (one row per image).
fn latest_report(conn: &Connection) -> StoreResult<Option<Timestamp>> {
    let latest: Option<String> = conn.query_row(super::LATEST_STAMP, [], |row| row.get(0))?;
    latest.as_deref().map(stored_timestamp).transpose()
}

fn tag_exists(conn: &Connection, tag_id: i64) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT 1 FROM tags WHERE id = ?1")?.exists([tag_id])
}

fn image_known(conn: &Connection, image: &str) -> rusqlite::Result<bool> {
    conn.prepare_cached("SELECT 1 FROM updates WHERE image = ?1")?.exists([image])
}

/// A page of an image's history, newest first, below the id `?2` when given. The bound is one
/// comparison, not `?2 IS NULL OR id < ?2`: with the OR, SQLite walked the image's events from
/// the newest to reach a deep page, each page of a long history costing more than the last.
const HISTORY_PAGE: &str =
    "SELECT id, hostname, status, digest, created, metadata, received_at, acknowledged_at
    FROM events
    WHERE image = ?1 AND id < COALESCE(?2, 9223372036854775807)
    ORDER BY id DESC
    LIMIT ?3";

impl UpdateStore for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }
    fn receipt_time(&self) -> Timestamp {
        self.receipts.stamp()
    }

    /// A read of the file, then a turn of the writer (a transaction that writes nothing):
    /// webhooks need the writer, and a writer that had stopped, or that another process kept
    /// from the lock, failed every one while the check, a bare `SELECT 1` on a reader, said ok.
    async fn ping(&self) -> StoreResult<()> {
        self.read(|conn| Ok(conn.query_row("SELECT count(*) FROM schema_migrations", [], |_| Ok(()))?))
            .await?;
        self.write(|_| Ok(())).await
    }

    async fn upsert_event(&self, event: DiunEvent, received: Received) -> StoreResult<()> {
        // Everything that can be made before the write is made here, on the caller's thread:
        // the one writer thread is what every webhook waits for.
        let metadata = event.metadata_json();
        let extra = event.extra_json();
        let given = match received {
            Received::Now => None,
            Received::At(at) => {
                self.receipts.witness(at);
                Some(at.to_string())
            }
        };
        self.write_in_batch(move |conn, batch| {
            let received_at = given.as_deref().unwrap_or(&batch.received_at);
            conn.prepare_cached(
                "INSERT INTO updates (image, diun_version, hostname, status, provider, hub_link,
                     mime_type, digest, created, platform, metadata, extra, received_at, acknowledged_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, NULL)
                 ON CONFLICT (image) DO UPDATE SET
                     diun_version = excluded.diun_version, hostname = excluded.hostname,
                     status = excluded.status, provider = excluded.provider,
                     hub_link = excluded.hub_link, mime_type = excluded.mime_type,
                     digest = excluded.digest, created = excluded.created,
                     platform = excluded.platform, metadata = excluded.metadata,
                     extra = excluded.extra, received_at = excluded.received_at,
                     acknowledged_at = NULL",
            )?
            .execute(params![
                event.image,
                event.diun_version,
                event.hostname,
                event.status,
                event.provider,
                event.hub_link,
                event.mime_type,
                event.digest,
                event.created,
                event.platform,
                metadata,
                extra,
                received_at,
            ])?;
            conn.prepare_cached(
                "INSERT INTO events (image, hostname, status, digest, created, metadata, received_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?
            .execute(params![
                event.image,
                event.hostname,
                event.status,
                event.digest,
                event.created,
                metadata,
                received_at,
            ])?;
            Ok(())
        })
        .await
    }

    async fn list_updates(&self) -> StoreResult<Vec<UpdateEntry>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(SELECT_UPDATES)?;
            let rows = stmt.query_and_then([], update_from_row)?;
            rows.collect()
        })
        .await
    }

    async fn write_listing(&self, mut listing: Listing) -> StoreResult<Vec<u8>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(SELECT_UPDATES)?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                listing.push(&listed_from_row(row)?)?;
            }
            Ok(listing.finish()?)
        })
        .await
    }

    async fn count_by_group(&self) -> StoreResult<Vec<GroupCount>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(COUNT_BY_GROUP)?;
            let counts = stmt.query_map([], |row| {
                Ok(GroupCount {
                    tag_id: row.get(0)?,
                    total: row.get::<_, i64>(1)?.unsigned_abs(),
                    pending: row.get::<_, i64>(2)?.unsigned_abs(),
                })
            })?;
            Ok(counts.collect::<rusqlite::Result<_>>()?)
        })
        .await
    }

    async fn acknowledge(
        &self,
        image: String,
        at: Timestamp,
        seen: Option<Timestamp>,
    ) -> StoreResult<ImageOutcome> {
        let at = at.to_string();
        let seen = seen.map(|seen| seen.to_string());
        self.write(move |conn| {
            let changed = conn
                .prepare_cached(
                    "UPDATE updates SET acknowledged_at = COALESCE(acknowledged_at, ?2)
                     WHERE image = ?1 AND (?3 IS NULL OR received_at = ?3)",
                )?
                .execute(params![image, at, seen])?;
            if changed == 0 {
                return Ok(ImageOutcome::untouched(image_known(conn, &image)?));
            }
            conn.prepare_cached(
                "UPDATE events SET acknowledged_at = ?2 WHERE image = ?1 AND acknowledged_at IS NULL",
            )?
            .execute(params![image, at])?;
            Ok(ImageOutcome::Done)
        })
        .await
    }

    async fn remove_update(&self, image: String, seen: Option<Timestamp>) -> StoreResult<ImageOutcome> {
        let seen = seen.map(|seen| seen.to_string());
        self.write(move |conn| {
            // Its group assignment goes with it (ON DELETE CASCADE).
            let removed = conn
                .prepare_cached("DELETE FROM updates WHERE image = ?1 AND (?2 IS NULL OR received_at = ?2)")?
                .execute(params![image, seen])?;
            if removed == 0 {
                return Ok(ImageOutcome::untouched(image_known(conn, &image)?));
            }
            conn.prepare_cached("DELETE FROM events WHERE image = ?1")?.execute([&image])?;
            Ok(ImageOutcome::Done)
        })
        .await
    }

    async fn acknowledge_all(&self, at: Timestamp, shown_until: Option<Timestamp>) -> StoreResult<u64> {
        let at = at.to_string();
        // Timestamps are stored in one fixed-width format, so text order is time order.
        let until = shown_until.map(|until| until.to_string());
        self.write(move |conn| {
            // Events first: the pending `updates` rows lead to the pending events.
            conn.prepare_cached(
                "UPDATE events SET acknowledged_at = ?1
                 WHERE acknowledged_at IS NULL
                   AND image IN (SELECT image FROM updates WHERE acknowledged_at IS NULL
                                   AND (?2 IS NULL OR received_at <= ?2))",
            )?
            .execute(params![at, until])?;
            let changed = conn
                .prepare_cached(
                    "UPDATE updates SET acknowledged_at = ?1
                     WHERE acknowledged_at IS NULL AND (?2 IS NULL OR received_at <= ?2)",
                )?
                .execute(params![at, until])?;
            Ok(changed as u64)
        })
        .await
    }

    async fn acknowledge_by_tag(
        &self,
        tag_id: i64,
        at: Timestamp,
        shown_until: Option<Timestamp>,
    ) -> StoreResult<Option<u64>> {
        let at = at.to_string();
        let until = shown_until.map(|until| until.to_string());
        self.write(move |conn| {
            if !tag_exists(conn, tag_id)? {
                return Ok(None);
            }
            // Events first, as in `acknowledge_all`.
            conn.prepare_cached(
                "UPDATE events SET acknowledged_at = ?2
                 WHERE acknowledged_at IS NULL
                   AND image IN (SELECT image FROM updates
                                 WHERE acknowledged_at IS NULL AND (?3 IS NULL OR received_at <= ?3)
                                   AND image IN (SELECT image FROM tag_assignments WHERE tag_id = ?1))",
            )?
            .execute(params![tag_id, at, until])?;
            let changed = conn
                .prepare_cached(
                    "UPDATE updates SET acknowledged_at = ?2
                     WHERE acknowledged_at IS NULL AND (?3 IS NULL OR received_at <= ?3)
                       AND image IN (SELECT image FROM tag_assignments WHERE tag_id = ?1)",
                )?
                .execute(params![tag_id, at, until])?;
            Ok(Some(changed as u64))
        })
        .await
    }

    async fn list_tags(&self) -> StoreResult<Vec<Tag>> {
        let mut tags = self
            .read(|conn| {
                let mut stmt = conn.prepare_cached("SELECT id, name FROM tags")?;
                let tags = stmt
                    .query_map([], |row| Ok(Tag { id: row.get(0)?, name: row.get(1)? }))?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                Ok(tags)
            })
            .await?;
        sort_tags(&mut tags);
        Ok(tags)
    }

    async fn create_tag(&self, name: String) -> StoreResult<Tag> {
        self.write(move |conn| {
            let inserted = conn
                .prepare_cached("INSERT INTO tags (name) VALUES (?1) RETURNING id")?
                .query_row([&name], |row| row.get(0));
            match inserted {
                Ok(id) => Ok(Tag { id, name: name.clone() }),
                Err(err) if err.sqlite_error_code() == Some(ErrorCode::ConstraintViolation) => {
                    Err(StoreError::DuplicateTag)
                }
                Err(err) => Err(err.into()),
            }
        })
        .await
    }

    async fn delete_tag(&self, tag_id: i64) -> StoreResult<bool> {
        self.write(move |conn| {
            Ok(conn.prepare_cached("DELETE FROM tags WHERE id = ?1")?.execute([tag_id])? > 0)
        })
        .await
    }

    async fn assign_tag(&self, image: String, tag_id: i64) -> StoreResult<Assignment> {
        self.write(move |conn| {
            if !tag_exists(conn, tag_id)? {
                return Ok(Assignment::UnknownTag);
            }
            if !image_known(conn, &image)? {
                return Ok(Assignment::UnknownImage);
            }
            conn.prepare_cached(
                "INSERT INTO tag_assignments (image, tag_id) VALUES (?1, ?2)
                 ON CONFLICT (image) DO UPDATE SET tag_id = excluded.tag_id",
            )?
            .execute(params![image, tag_id])?;
            Ok(Assignment::Assigned)
        })
        .await
    }

    async fn unassign_tag(&self, image: String) -> StoreResult<()> {
        self.write(move |conn| {
            conn.prepare_cached("DELETE FROM tag_assignments WHERE image = ?1")?.execute([&image])?;
            Ok(())
        })
        .await
    }

    async fn history(
        &self,
        image: String,
        before: Option<i64>,
        limit: u32,
    ) -> StoreResult<Option<Vec<HistoryEntry>>> {
        self.read(move |conn| {
            let mut stmt = conn.prepare_cached(HISTORY_PAGE)?;
            let entries = stmt
                .query_and_then(params![image, before, limit], |row| -> StoreResult<HistoryEntry> {
                    Ok(HistoryEntry {
                        id: row.get(0)?,
                        hostname: row.get(1)?,
                        status: row.get(2)?,
                        digest: row.get(3)?,
                        created: row.get(4)?,
                        metadata: json_object(optional_text_column(row, 5)?).map_err(StoreError::Internal)?,
                        received_at: stored_timestamp(text_column(row, 6)?)?,
                        acknowledged_at: optional_text_column(row, 7)?.map(stored_timestamp).transpose()?,
                    })
                })?
                .collect::<StoreResult<Vec<_>>>()?;
            if entries.is_empty() {
                return Ok(image_known(conn, &image)?.then_some(entries));
            }
            Ok(Some(entries))
        })
        .await
    }

    async fn reporting_hosts(&self) -> StoreResult<Vec<HostReport>> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT e.image, e.hostname, e.received_at, e.metadata
                 FROM events e
                 JOIN (SELECT MAX(p.id) AS id
                       -- CROSS JOIN keeps this order: from the images to their events.
                       FROM updates u CROSS JOIN events p ON p.image = u.image
                         -- Only the events after the image's newest one that does not count:
                         -- an acknowledgement covers all the image's pending events at once,
                         -- and the writer numbers events in order, so those that count come
                         -- last. Found walking back from the newest, this bound spares reading
                         -- every event of a long history (for 133,000 events of 5,000 images,
                         -- the whole answer took 130-155 ms, and 77-86 with it).
                         AND p.id > COALESCE((SELECT q.id FROM events q
                                              WHERE q.image = u.image
                                                AND q.acknowledged_at IS NOT u.acknowledged_at
                                              ORDER BY q.id DESC LIMIT 1), -1)
                       -- Pending, both NULL; acknowledged, the events its acknowledgement
                       -- covered carry its time.
                       WHERE p.acknowledged_at IS u.acknowledged_at
                       GROUP BY p.image, p.hostname) latest
                   ON latest.id = e.id
                 ORDER BY e.image, e.hostname",
            )?;
            let hosts = stmt
                .query_and_then([], |row| -> StoreResult<HostReport> {
                    Ok(HostReport {
                        image: row.get(0)?,
                        hostname: row.get(1)?,
                        last_seen: stored_timestamp(text_column(row, 2)?)?,
                        // Stored as serde_json wrote it (`DiunEvent::metadata_json`).
                        metadata: optional_text_column(row, 3)?
                            .map(|text| StoredObject::new(text.to_owned()))
                            .transpose()
                            .map_err(StoreError::Internal)?,
                    })
                })?
                .collect::<StoreResult<Vec<_>>>()?;
            Ok(hosts)
        })
        .await
    }

    async fn prune_history(&self, older_than: Timestamp, limit: u32) -> StoreResult<u64> {
        let cutoff = older_than.to_string();
        self.write(move |conn| {
            Ok(conn
                .prepare_cached(
                    // Acknowledged after it was received, an event acknowledged before the
                    // cutoff was received before it too: that condition lets the index on
                    // `received_at` find the candidates. The reports an image's acknowledgement
                    // covered stay while it is the image's latest (see `UpdateStore::prune_history`).
                    "DELETE FROM events WHERE id IN (SELECT e.id FROM events e
                     WHERE e.received_at < ?1 AND e.acknowledged_at < ?1
                       AND NOT EXISTS (SELECT 1 FROM updates u
                                       WHERE u.image = e.image AND u.acknowledged_at = e.acknowledged_at)
                     LIMIT ?2)",
                )?
                .execute(params![cutoff, limit])? as u64)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::scratch::Scratch;

    /// SPEC §5's settings, on every kind of connection the store opens.
    #[test]
    fn every_connection_runs_in_wal_mode_with_normal_sync_and_foreign_keys() {
        let scratch = Scratch::new("pragmas");
        let path = scratch.path().join("db.sqlite");
        super::super::wal_writes::register().unwrap();
        let writer = open_connection_with(&path, Some(super::super::wal_writes::NAME)).unwrap();
        for conn in [writer, open_reader(&path).unwrap(), open_connection(&path).unwrap()] {
            use rusqlite::types::Value::{Integer, Text};
            let pragma = |name: &str| {
                conn.pragma_query_value(None, name, |row| row.get::<_, rusqlite::types::Value>(0)).unwrap()
            };
            assert_eq!(pragma("journal_mode"), Text("wal".into()));
            assert_eq!(pragma("synchronous"), Integer(1), "NORMAL");
            assert_eq!(pragma("foreign_keys"), Integer(1));
        }
    }

    /// A page of history starts at its cursor in the index, however deep in the history.
    #[test]
    fn a_history_page_seeks_its_cursor_in_the_index() {
        let scratch = Scratch::new("history-plan");
        let mut conn = open_connection(&scratch.path().join("db.sqlite")).unwrap();
        run_migrations(&mut conn, &migrations().unwrap()).unwrap();
        let plan: Vec<String> = conn
            .prepare(&format!("EXPLAIN QUERY PLAN {HISTORY_PAGE}"))
            .unwrap()
            .query_map(params!["a:1", 42, 50], |row| row.get(3))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(plan, ["SEARCH events USING INDEX events_by_image (image=? AND id<?)"]);
    }

    /// A database SQLite cannot switch to WAL (an in-memory one here; a file system without the
    /// shared memory WAL needs) is refused, not run in another journal mode.
    #[test]
    fn a_database_that_cannot_run_in_wal_mode_is_refused() {
        let refused = open_connection(Path::new(":memory:")).err().map(|err| err.to_string());
        assert!(refused.as_deref().is_some_and(|err| err.contains("stays in memory mode")), "{refused:?}");
    }

    /// A job's answer, once the batch is over.
    type Answer<T> = Box<dyn FnOnce() -> StoreResult<T>>;

    fn job<T: Send + 'static>(
        op: impl Fn(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> (Box<dyn PendingWrite>, Answer<T>) {
        let (job, done) = WriteJob::new(move |conn: &Connection, _: &Batch| op(conn));
        (job, Box::new(move || (*done.blocking_recv().expect("the job comes back")).answer()))
    }

    fn shared() -> Batch {
        Batch { received_at: Timestamp::now().to_string() }
    }

    fn answer_of<T>(answer: Answer<T>) -> StoreResult<T> {
        answer()
    }

    fn insert(conn: &Connection, x: i64) -> StoreResult<()> {
        conn.execute("INSERT INTO t (x) VALUES (?1)", [x])?;
        Ok(())
    }

    #[test]
    fn a_failed_write_is_undone_alone_and_its_neighbours_commit() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER UNIQUE)").unwrap();
        let (first, first_answer) = job(|conn| insert(conn, 1));
        // Writes 2, then fails: the 2 must not survive.
        let (failing, failing_answer) = job(|conn| {
            insert(conn, 2)?;
            insert(conn, 1)
        });
        let (last, last_answer) = job(|conn| insert(conn, 3));
        let mut batch = vec![first, failing, last];
        assert_eq!(commit_batch(&conn, &mut batch, &shared()), Ok(()));
        for job in batch {
            job.finish(Ok(()));
        }
        let kept: Vec<i64> = conn
            .prepare("SELECT x FROM t ORDER BY x")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(kept, [1, 3]);
        assert_eq!(answer_of(first_answer), Ok(()));
        assert!(matches!(answer_of(failing_answer), Err(StoreError::Internal(_))));
        assert_eq!(answer_of(last_answer), Ok(()));
        assert!(conn.is_autocommit(), "the transaction is over");
    }

    /// SQLITE_FULL (like an I/O error) in a plain INSERT rolls back the whole transaction, not
    /// only the statement: the batch fails with the disk's error (a 503), nothing of it stays.
    #[test]
    fn a_write_that_ends_the_transaction_fails_the_batch_with_its_own_error() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER UNIQUE); CREATE TABLE big (b BLOB)").unwrap();
        let pages: i64 = conn.query_row("PRAGMA page_count", [], |row| row.get(0)).unwrap();
        conn.pragma_update(None, "max_page_count", pages + 2).unwrap();
        let (first, first_answer) = job(|conn| insert(conn, 1));
        let (too_big, too_big_answer) = job(|conn| {
            conn.execute("INSERT INTO big (b) VALUES (zeroblob(1000000))", [])?;
            Ok(())
        });
        let mut batch = vec![first, too_big];
        let commit = commit_batch(&conn, &mut batch, &shared());
        assert!(matches!(&commit, Err(StoreError::Unavailable(why)) if why.contains("full")), "{commit:?}");
        for job in batch {
            job.finish(commit.clone());
        }
        assert!(conn.is_autocommit(), "the transaction is over");
        let count: i64 = conn.query_row("SELECT count(*) FROM t", [], |row| row.get(0)).unwrap();
        assert_eq!(count, 0);
        assert_eq!(answer_of(first_answer), commit);
        assert_eq!(answer_of(too_big_answer), commit);
    }

    #[test]
    fn a_batch_without_failures_commits_every_write() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE t (x INTEGER UNIQUE)").unwrap();
        let (jobs, answers): (Vec<_>, Vec<_>) = (0..5).map(|x| job(move |conn| insert(conn, x))).unzip();
        let mut batch = jobs;
        assert_eq!(commit_batch(&conn, &mut batch, &shared()), Ok(()));
        for job in batch {
            job.finish(Ok(()));
        }
        let count: i64 = conn.query_row("SELECT count(*) FROM t", [], |row| row.get(0)).unwrap();
        assert_eq!(count, 5);
        for answer in answers {
            assert_eq!(answer_of(answer), Ok(()));
        }
    }

    #[tokio::test]
    async fn reads_go_through_a_mapped_file() {
        let scratch = Scratch::new("mapped-reads");
        let store = SqliteStore::open(scratch.path().join("diun.db")).await.unwrap();
        let mapped: i64 =
            store.read(|conn| Ok(conn.query_row("PRAGMA mmap_size", [], |row| row.get(0))?)).await.unwrap();
        assert_eq!(mapped, READER_MMAP);
        store.close().await;
    }

    /// A report is stamped when the writer takes it, not when it was queued: one queued behind a
    /// batch is stamped after that batch, so that a listing taken between the two commits has
    /// shown every report stamped up to then. Stamped when queued, it could be older than a
    /// report it was committed after, and a dismissal up to that one covered it unseen.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_report_is_stamped_as_the_writer_takes_it() {
        let scratch = Scratch::new("stamped-by-writer");
        let store = Arc::new(SqliteStore::open(scratch.path().join("diun.db")).await.unwrap());
        let (running, started) = std::sync::mpsc::channel::<()>();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let (running, released) = (Mutex::new(running), Mutex::new(released));
        let holding = tokio::spawn({
            let store = Arc::clone(&store);
            async move {
                store
                    .write(move |_| {
                        let _ = running.lock().unwrap().send(());
                        let _ = released.lock().unwrap().recv();
                        Ok(())
                    })
                    .await
            }
        });
        tokio::task::spawn_blocking(move || started.recv()).await.unwrap().unwrap();
        let queued = tokio::spawn({
            let store = Arc::clone(&store);
            async move {
                let event = DiunEvent::from_json(br#"{"image": "a:1"}"#).map_err(StoreError::Internal)?;
                store.upsert_event(event, Received::Now).await
            }
        });
        // Time for the report to reach the queue: stamped there, it would be older than this.
        tokio::time::sleep(Duration::from_millis(20)).await;
        let let_go = Timestamp::now();
        release.send(()).unwrap();
        holding.await.unwrap().unwrap();
        queued.await.unwrap().unwrap();
        let listed = store.list_updates().await.unwrap();
        assert!(
            listed[0].received_at >= let_go,
            "stamped {} before the writer took it at {let_go}",
            listed[0].received_at
        );
        store.close().await;
    }
}
