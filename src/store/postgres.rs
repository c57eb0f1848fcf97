//! PostgreSQL backend: tokio-postgres through a bb8 pool.
//!
//! PostgreSQL handles concurrent writers itself, so there is no lock here; several dashboard
//! replicas may share one database. Every operation is bounded in time, so an unreachable
//! database turns into a quick 503 rather than a hung request, and broken connections are
//! replaced by the pool, so the service recovers by itself when the database comes back.

use std::collections::HashMap;
use std::future::Future;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};

use bb8::{ErrorSink, Pool, PooledConnection, RunError};
use bb8_postgres::PostgresConnectionManager;
use include_dir::{Dir, include_dir};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{
    CancelToken, Client, IsolationLevel, NoTls, Row, SimpleQueryMessage, Statement, Transaction,
};

use super::migrate::{self, Migration};
use super::shared_batches;
use super::{
    Assignment, COUNT_BY_GROUP, GroupCount, ImageOutcome, Received, StoreError, StoreResult, UpdateStore,
    sort_tags,
};
use crate::listing::{FinishedPart, ListedUpdate, Listing, ListingPart, StoredText};
use crate::model::{DiunEvent, HistoryEntry, HostReport, StoredObject, Tag, UpdateEntry, json_object};
use crate::time::{ReceiptClock, Timestamp};

static MIGRATIONS: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/migrations/postgres");

/// bb8-postgres' manager, plus a signal on every failed connection attempt: bb8's `get()`
/// waits out its whole timeout when the database refuses connections, and a request should
/// hear at once that the database is down. The signal says whether the server was only full.
struct Manager {
    inner: PostgresConnectionManager<NoTls>,
    failures: Failures,
}

/// Sends, on each failed connection attempt, whether the server said it was at its connection
/// limit (`max_connections`, a role's or database's limit: SQLSTATE 53300). That server is up:
/// whoever waits gets one of the pool's connections back soon, if the pool holds any.
type Failures = tokio::sync::watch::Sender<bool>;
type FailureSignal = tokio::sync::watch::Receiver<bool>;

impl bb8::ManageConnection for Manager {
    type Connection = Conn;
    type Error = tokio_postgres::Error;

    async fn connect(&self) -> Result<Conn, tokio_postgres::Error> {
        let connected = self.inner.connect().await;
        if let Err(err) = &connected {
            self.failures.send_replace(err.code() == Some(&SqlState::TOO_MANY_CONNECTIONS));
        }
        Ok(Conn {
            client: connected?,
            statements: Statements::default(),
            cancel_sent: Arc::new(AtomicBool::new(false)),
            abandoned_cancelled: AtomicBool::new(false),
            unfinished: AtomicUsize::new(0),
        })
    }

    /// Runs on every checkout, so without a round trip: a connection the server has closed
    /// (a restart, `pg_terminate_backend`, an idle timeout) has lost its driver task by then.
    /// Handed out, it would fail its request, and DIUN does not send a webhook twice.
    async fn is_valid(&self, conn: &mut Conn) -> Result<(), tokio_postgres::Error> {
        if conn.client.is_closed() {
            // tokio-postgres has no public constructor for its "closed" error; on a closed
            // client any query returns it at once, without I/O.
            return conn.client.simple_query("").await.map(drop);
        }
        Ok(())
    }

    fn has_broken(&self, conn: &mut Conn) -> bool {
        // A cancel can reach the server after the statement it was meant for has ended, and
        // would then stop the next request's statement on this connection. An exchange left
        // unfinished (its request timed out, or its client went away) still runs on the
        // server: the next request would queue behind it, and a cancel meant for that request
        // would stop the abandoned statement instead.
        // Also after a cancel of its own: that one may have reached the server between two
        // exchanges and stopped nothing.
        if *conn.unfinished.get_mut() > 0 && !*conn.abandoned_cancelled.get_mut() {
            cancel_abandoned(&conn.client);
            // Once: asked again about this connection, the pool must not cancel again.
            *conn.abandoned_cancelled.get_mut() = true;
            conn.cancel_sent.store(true, Ordering::Relaxed);
        }
        conn.cancel_sent.load(Ordering::Relaxed) || self.inner.has_broken(&mut conn.client)
    }
}

/// Stops the statement a discarded connection left running. Waiting on a lock, the server does
/// not notice the closed socket: an abandoned write (its client already answered 503) would
/// commit once the lock went, unannounced, and hold a server process until then.
fn cancel_abandoned(client: &Client) {
    let token = client.cancel_token();
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(async move {
            if let Err(err) = token.cancel_query(NoTls).await {
                log::warn!("cannot cancel an abandoned statement: {}", describe(&err));
            }
        });
    }
}

/// A pooled connection and the statements it has prepared. Every query of this module is a
/// fixed text, prepared once per connection: tokio-postgres would otherwise prepare it again
/// for every call, a round trip of its own (and a parse and plan on the server) before the
/// query itself. The query methods shadow `Client`'s; anything else goes to the client.
pub struct Conn {
    client: Client,
    statements: Statements,
    /// A cancel request was sent for this connection: it is not handed out again. Shared with
    /// whoever may cancel what the connection runs while it is lent out (see [`LateCancel`]).
    cancel_sent: Arc<AtomicBool>,
    /// The pool has cancelled what this connection left running when it came back.
    abandoned_cancelled: AtomicBool,
    /// Exchanges with the server started and not finished (see [`finished`]); several when
    /// queries are pipelined.
    unfinished: AtomicUsize,
}

/// Runs one exchange with the server, the connection marked while it is unfinished. Dropped
/// midway (a timeout, a client gone), the exchange leaves the mark, and the pool discards the
/// connection rather than hand it out behind a statement still running.
async fn finished<T>(unfinished: &AtomicUsize, exchange: impl Future<Output = T>) -> T {
    unfinished.fetch_add(1, Ordering::Relaxed);
    let outcome = exchange.await;
    unfinished.fetch_sub(1, Ordering::Relaxed);
    outcome
}

impl std::ops::Deref for Conn {
    type Target = Client;

    fn deref(&self) -> &Client {
        &self.client
    }
}

type Params<'a> = [&'a (dyn ToSql + Sync)];

/// A connection's prepared statements, keyed by the text's address and length: every query
/// here is a `&'static str`.
#[derive(Default)]
struct Statements(Mutex<HashMap<(usize, usize), Statement>>);

impl Statements {
    /// Runs `query` with `sql` prepared (by `prepare`, the first time). A statement the server
    /// no longer accepts (a migration of a newer replica changed its tables under it) is
    /// forgotten with every other, and, `outside_a_transaction`, prepared and run again at
    /// once: the server refused it before running it, so nothing ran twice, and the request
    /// (a webhook DIUN would not send again) goes through. Inside a transaction the refusal
    /// has aborted it; the next call prepares anew.
    async fn run<T, P, Q>(
        &self,
        sql: &'static str,
        outside_a_transaction: bool,
        prepare: impl Fn(&'static str) -> P,
        query: impl Fn(Statement) -> Q,
    ) -> Result<T, tokio_postgres::Error>
    where
        P: Future<Output = Result<Statement, tokio_postgres::Error>>,
        Q: Future<Output = Result<T, tokio_postgres::Error>>,
    {
        let key = (sql.as_ptr() as usize, sql.len());
        let cached = self.0.lock().unwrap_or_else(PoisonError::into_inner).get(&key).cloned();
        let statement = match cached {
            Some(statement) => statement,
            None => self.prepared(key, prepare(sql).await?),
        };
        let result = query(statement).await;
        match &result {
            Err(err) if is_stale(err) => {
                self.0.lock().unwrap_or_else(PoisonError::into_inner).clear();
                if !outside_a_transaction {
                    return result;
                }
                log::info!("a prepared statement went stale ({}); preparing it again", describe(err));
                let statement = self.prepared(key, prepare(sql).await?);
                query(statement).await
            }
            _ => result,
        }
    }

    fn prepared(&self, key: (usize, usize), statement: Statement) -> Statement {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).insert(key, statement.clone());
        statement
    }
}

/// The server's refusal of a statement prepared before a schema change: "cached plan must not
/// change result type" (0A000, a code other refusals share; told apart by the server function
/// that raises it, which, unlike the message, is not translated), or the statement gone (26000).
fn is_stale(err: &tokio_postgres::Error) -> bool {
    err.as_db_error().is_some_and(|db| {
        (*db.code() == SqlState::FEATURE_NOT_SUPPORTED && db.routine() == Some("RevalidateCachedQuery"))
            || *db.code() == SqlState::INVALID_SQL_STATEMENT_NAME
    })
}

impl Conn {
    async fn cached<T, Q>(
        &self,
        sql: &'static str,
        query: impl Fn(Statement) -> Q,
    ) -> Result<T, tokio_postgres::Error>
    where
        Q: Future<Output = Result<T, tokio_postgres::Error>>,
    {
        finished(&self.unfinished, self.statements.run(sql, true, |sql| self.client.prepare(sql), query))
            .await
    }

    /// A round trip that needs no statement: the health check's.
    pub async fn ping(&self) -> Result<(), tokio_postgres::Error> {
        finished(&self.unfinished, self.client.simple_query("SELECT 1")).await.map(drop)
    }

    pub async fn execute(
        &self,
        sql: &'static str,
        params: &Params<'_>,
    ) -> Result<u64, tokio_postgres::Error> {
        self.cached(sql, |statement| async move { self.client.execute(&statement, params).await }).await
    }

    pub async fn query(
        &self,
        sql: &'static str,
        params: &Params<'_>,
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        self.cached(sql, |statement| async move { self.client.query(&statement, params).await }).await
    }

    pub async fn query_one(
        &self,
        sql: &'static str,
        params: &Params<'_>,
    ) -> Result<Row, tokio_postgres::Error> {
        self.cached(sql, |statement| async move { self.client.query_one(&statement, params).await }).await
    }

    pub async fn query_opt(
        &self,
        sql: &'static str,
        params: &Params<'_>,
    ) -> Result<Option<Row>, tokio_postgres::Error> {
        self.cached(sql, |statement| async move { self.client.query_opt(&statement, params).await }).await
    }

    /// A transaction whose queries use this connection's prepared statements too. Dropped
    /// without [`CachedTransaction::commit`] (an error, a timeout), it is rolled back.
    async fn transaction(&mut self) -> Result<CachedTransaction<'_>, tokio_postgres::Error> {
        let Conn { client, statements, unfinished, .. } = self;
        let tx = finished(unfinished, client.transaction()).await?;
        Ok(CachedTransaction { tx, statements, unfinished })
    }

    /// A read-only transaction that sees the database at one moment: `snapshot`'s, exported by
    /// another such transaction (which must still be open), or else its first query's.
    async fn snapshot_transaction(
        &mut self,
        snapshot: Option<&str>,
    ) -> Result<CachedTransaction<'_>, tokio_postgres::Error> {
        let Conn { client, statements, unfinished, .. } = self;
        let begin = async {
            let tx = client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()
                .await?;
            if let Some(snapshot) = snapshot {
                // A utility statement: it takes no parameters.
                tx.batch_execute(&format!("SET TRANSACTION SNAPSHOT '{}'", snapshot.replace('\'', "''")))
                    .await?;
            }
            Ok(tx)
        };
        let tx = finished(unfinished, begin).await?;
        Ok(CachedTransaction { tx, statements, unfinished })
    }
}

struct CachedTransaction<'a> {
    tx: Transaction<'a>,
    statements: &'a Statements,
    unfinished: &'a AtomicUsize,
}

impl CachedTransaction<'_> {
    /// As [`Conn::cached`], in this transaction.
    async fn cached<T, Q>(
        &self,
        sql: &'static str,
        query: impl Fn(Statement) -> Q,
    ) -> Result<T, tokio_postgres::Error>
    where
        Q: Future<Output = Result<T, tokio_postgres::Error>>,
    {
        finished(self.unfinished, self.statements.run(sql, false, |sql| self.tx.prepare(sql), query)).await
    }

    async fn execute(&self, sql: &'static str, params: &Params<'_>) -> Result<u64, tokio_postgres::Error> {
        self.cached(sql, |statement| async move { self.tx.execute(&statement, params).await }).await
    }

    async fn query(&self, sql: &'static str, params: &Params<'_>) -> Result<Vec<Row>, tokio_postgres::Error> {
        self.cached(sql, |statement| async move { self.tx.query(&statement, params).await }).await
    }

    async fn query_one(&self, sql: &'static str, params: &Params<'_>) -> Result<Row, tokio_postgres::Error> {
        self.cached(sql, |statement| async move { self.tx.query_one(&statement, params).await }).await
    }

    async fn commit(self) -> Result<(), tokio_postgres::Error> {
        finished(self.unfinished, self.tx.commit()).await
    }

    /// A read-only transaction's last step: its query, then the commit at once.
    async fn query_then_commit(
        self,
        sql: &'static str,
        params: &Params<'_>,
    ) -> Result<Vec<Row>, tokio_postgres::Error> {
        let rows = self.query(sql, params).await?;
        self.commit().await?;
        Ok(rows)
    }
}

const MAX_CONNECTIONS: u32 = 25;
const MIN_IDLE: u32 = 5;
const MAX_LIFETIME: Duration = Duration::from_secs(5 * 60);
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a request waits for a free connection before answering 503.
pub(crate) const CHECKOUT_TIMEOUT: Duration = Duration::from_secs(3);
/// Upper bound for one operation, connection checkout included.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(10);
/// Serializes migrations of replicas starting at once (an arbitrary, fixed key).
pub const MIGRATION_LOCK: i64 = 0x0D10_DA5B;

pub struct PostgresStore {
    pool: Pool<Manager>,
    connect_failures: FailureSignal,
    config: tokio_postgres::Config,
    /// The LISTEN/NOTIFY channel of the replicas sharing this schema.
    channel: String,
    /// Where this replica's changes go to reach the others, once sharing has started.
    replicas: Option<super::replicas::Relay>,
    /// Webhooks' events on their way to be committed together (see [`start_upsert_batches`]).
    upserts: mpsc::UnboundedSender<Upsert>,
    /// Stamps reports as they reach the store: later than every report stored before, also
    /// after the clock was set back, and than every report the other replicas told of (their
    /// clocks may run ahead of this one's; see [`super::replicas`]). Batches in flight together
    /// can still commit out of their stamps' order, which SQLite's one writer rules out.
    receipts: Arc<ReceiptClock>,
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(err: tokio_postgres::Error) -> Self {
        // A statement prepared before another replica's migration changed its tables, refused
        // inside a transaction (outside one it is prepared again at once, `Statements::run`):
        // it is prepared anew on the next request, which then passes. Not a fault of this one.
        if is_stale(&err) {
            return StoreError::Unavailable(format!(
                "the database's schema changed under this request (a newer replica migrated it); try again: {}",
                describe(&err)
            ));
        }
        let unavailable = match err.code() {
            // No server answer at all: connection refused, reset or closed. A code-less error
            // of the client's own (a value it cannot decode) is a fault, not an outage.
            None => {
                err.is_closed()
                    || std::error::Error::source(&err).is_some_and(|cause| cause.is::<std::io::Error>())
            }
            Some(code) => {
                // Connection trouble (08), insufficient resources (53: disk, memory, too many
                // connections), the system's own errors (58, I/O): they pass.
                ["08", "53", "58"].iter().any(|class| code.code().starts_with(class))
                    || [
                        SqlState::ADMIN_SHUTDOWN,
                        SqlState::CRASH_SHUTDOWN,
                        SqlState::CANNOT_CONNECT_NOW,
                        SqlState::QUERY_CANCELED,
                        SqlState::READ_ONLY_SQL_TRANSACTION,
                        SqlState::T_R_SERIALIZATION_FAILURE,
                        SqlState::T_R_DEADLOCK_DETECTED,
                        // A DBA's lock_timeout, idle_session_timeout and
                        // idle_in_transaction_session_timeout.
                        SqlState::LOCK_NOT_AVAILABLE,
                        SqlState::IDLE_SESSION_TIMEOUT,
                        SqlState::IDLE_IN_TRANSACTION_SESSION_TIMEOUT,
                    ]
                    .contains(code)
            }
        };
        let message = describe(&err);
        if unavailable { StoreError::Unavailable(message) } else { StoreError::Internal(message) }
    }
}

/// tokio-postgres' own Display often says only "db error"; the cause has the detail.
fn describe(err: &tokio_postgres::Error) -> String {
    match err.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => match std::error::Error::source(err) {
            Some(source) => format!("{err}: {source}"),
            None => err.to_string(),
        },
    }
}

/// Connection failures outside any request reach the log instead of vanishing.
#[derive(Debug, Clone, Copy)]
struct LogErrors;

impl ErrorSink<tokio_postgres::Error> for LogErrors {
    fn sink(&self, err: tokio_postgres::Error) {
        log::warn!("PostgreSQL connection error: {}", describe(&err));
    }

    fn boxed_clone(&self) -> Box<dyn ErrorSink<tokio_postgres::Error>> {
        Box::new(*self)
    }
}

/// The service's settings for a connection to `url` (named `named` in an error): the ones below
/// unless the URL sets them, and always the primary of several hosts. `migrate` connects with
/// them too.
pub(crate) fn client_config(url: &str, named: &str) -> Result<tokio_postgres::Config, String> {
    // The parser's messages quote no part of the URL, so no password can leak here.
    let mut config: tokio_postgres::Config =
        url.parse().map_err(|err| format!("{named} is not a valid PostgreSQL URL: {err}"))?;
    if config.get_connect_timeout().is_none() {
        config.connect_timeout(CONNECT_TIMEOUT);
    }
    if config.get_application_name().is_none() {
        config.application_name("diun-dashboard");
    }
    // A dead peer (its host gone, a partition) is noticed within a minute, not the OS's
    // default of about eleven: above all by the replicas' relay, which waits on its
    // connection for notices and would hear none meanwhile.
    config
        .keepalives_idle(Duration::from_secs(30))
        .keepalives_interval(Duration::from_secs(10))
        .keepalives_retries(3);
    // Keepalives stop while sent data waits for its acknowledgement: a server gone silently
    // (a failover by DNS, a partition) would hold a request's connection for TCP's quarter
    // of an hour of retransmissions.
    // Past the keepalives' own verdict (30 s idle, then 3 probes 10 s apart): Linux lets
    // this timeout decide for keepalive probes too, and a shorter one would close a healthy
    // idle connection on one lost probe.
    if config.get_tcp_user_timeout().is_none() {
        config.tcp_user_timeout(Duration::from_secs(75));
    }
    // Every replica writes: a standby (or a read-only default) is refused at start-up, where
    // it says so, rather than answering /healthz while every webhook fails; with several
    // hosts in the URL, the primary is the one taken.
    config.target_session_attrs(tokio_postgres::config::TargetSessionAttrs::ReadWrite);
    Ok(config)
}

impl PostgresStore {
    /// Connects, migrates, and starts the pool. Fails within seconds on a bad URL or a server
    /// that does not answer; the migrations themselves have no time limit.
    pub async fn open(url: &str) -> Result<Self, String> {
        Self::open_with(url, migrations()?).await
    }

    /// Like [`Self::open`], with another set of migrations (tests of upgrades).
    pub async fn open_with(url: &str, migrations: Vec<Migration>) -> Result<Self, String> {
        let config = client_config(url, "DATABASE_URL")?;

        let connecting = config.connect(NoTls);
        let (mut client, connection) =
            tokio::time::timeout(CONNECT_TIMEOUT + Duration::from_secs(1), connecting)
                .await
                .map_err(|_| "timed out connecting to the server".to_string())?
                .map_err(|err| format!("cannot connect: {}", describe(&err)))?;
        let driver = tokio::spawn(connection);
        // Start-up is bounded until the server answers: one that takes connections and never
        // answers fails here, within seconds. What follows is not: waiting for another
        // replica's migration, or a migration over years of history, takes what it takes. A
        // limit there would roll the migration back at every start, and the service would
        // never start again.
        tokio::time::timeout(CONNECT_TIMEOUT, check_encoding(&client))
            .await
            .map_err(|_| "the server accepted the connection but did not answer".to_string())??;
        let migrated = run_migrations(&mut client, &migrations).await;
        // The replicas' channel is named after the schema: guessing would let deployments in
        // two schemas hear each other's changes.
        let schema = client
            .query_one("SELECT current_schema()", &[])
            .await
            .and_then(|row| row.try_get::<_, Option<String>>(0))
            .map_err(|err| format!("cannot read the current schema: {}", describe(&err)));
        let latest = match &migrated {
            Ok(()) => {
                fill_metadata_json(&mut client).await;
                latest_report(&client).await
            }
            Err(_) => Ok(None),
        };
        drop(client);
        let _ = driver.await;
        migrated?;
        let receipts = Arc::new(ReceiptClock::after(latest?));
        let channel = super::replicas::channel_for(schema?.as_deref().unwrap_or("public"));

        let (failures, connect_failures) = tokio::sync::watch::channel(false);
        let pool = Pool::builder()
            .max_size(MAX_CONNECTIONS)
            .min_idle(MIN_IDLE)
            .max_lifetime(MAX_LIFETIME)
            .connection_timeout(CHECKOUT_TIMEOUT)
            // A refused connection is reported at once: waiting would only delay the 503.
            .retry_connection(false)
            // `is_valid` costs no round trip: see there.
            .test_on_check_out(true)
            .error_sink(Box::new(LogErrors))
            .build_unchecked(Manager {
                inner: PostgresConnectionManager::new(config.clone(), NoTls),
                failures,
            });
        let upserts = start_upsert_batches(pool.clone(), connect_failures.clone());
        Ok(Self { pool, connect_failures, config, channel, replicas: None, upserts, receipts })
    }

    /// Shares changes with the other replicas on this database: theirs are published on
    /// `feed`, and [`Self::share`] sends this one's.
    pub fn share_changes(mut self, feed: crate::changes::ChangeFeed) -> Self {
        self.replicas = Some(super::replicas::start(
            self.config.clone(),
            self.channel.clone(),
            feed,
            Arc::clone(&self.receipts),
        ));
        self
    }

    /// Waits for the change sharing to listen ([`super::replicas::Relay::listening`]).
    pub async fn change_sharing_listens(&self) {
        if let Some(replicas) = &self.replicas {
            replicas.listening().await;
        }
    }

    pub fn share(&self, change: &crate::changes::Change) {
        if let Some(replicas) = &self.replicas {
            replicas.send(change.clone());
        }
    }

    pub async fn close(&self) {
        if let Some(replicas) = &self.replicas {
            replicas.close().await;
        }
        // Dropping the pool closes its connections; nothing is buffered on this side.
        log::debug!("closing PostgreSQL pool: {:?}", self.pool.state());
    }

    /// Runs `op` on a pooled connection, bounded by [`OPERATION_TIMEOUT`].
    async fn with_client<T, F, Fut>(&self, op: F) -> StoreResult<T>
    where
        F: FnOnce(PooledConnection<'static, Manager>) -> Fut,
        Fut: Future<Output = StoreResult<T>>,
    {
        in_time(async { op(checkout(&self.pool, &self.connect_failures).await?).await }).await
    }

    /// Runs the write `op` on a pooled connection, within [`OPERATION_TIMEOUT`] as every
    /// operation: at its deadline it is cancelled on the server and awaited, as a webhook's
    /// upsert is (see [`LateCancel`]), and answered as it ended. Only a server that takes no
    /// cancel and does not answer leaves the outcome unknown (503 without "nothing was
    /// changed"). Dropped instead, it went on on the server, could commit after its client heard
    /// 503, and its change reached no dashboard.
    async fn writing<T, F, Fut>(&self, op: F) -> StoreResult<T>
    where
        F: FnOnce(PooledConnection<'static, Manager>) -> Fut,
        Fut: Future<Output = StoreResult<T>>,
    {
        let deadline = tokio::time::Instant::now() + OPERATION_TIMEOUT - CANCEL_GRACE;
        let late =
            || StoreError::Unavailable("the database did not answer in time; nothing was changed".into());
        let client = checkout_by(&self.pool, &self.connect_failures, deadline)
            .await
            .map_err(|failed| failed.unwrap_or_else(late))?;
        let cancel = LateCancel::of(&client);
        match cancel.await_by(deadline, op(client)).await {
            Ended::InTime(done) => done,
            Ended::AfterCancel(Err(err)) if was_cancelled(&err) => Err(late()),
            Ended::AfterCancel(done) => done,
            Ended::Unheard => Err(unheard()),
        }
    }
}

/// The server's refusal of a cancelled statement, once it is a [`StoreError`] (whose message
/// ends in the SQLSTATE, see [`describe`]).
fn was_cancelled(err: &StoreError) -> bool {
    let code = format!("({})", SqlState::QUERY_CANCELED.code());
    matches!(err, StoreError::Unavailable(why) if why.ends_with(&code))
}

/// Bounds one operation, its connections' checkouts included.
async fn in_time<T>(operation: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
    tokio::time::timeout(OPERATION_TIMEOUT, operation)
        .await
        .unwrap_or_else(|_| Err(StoreError::Unavailable("the database did not answer in time".into())))
}

/// A connection from the pool by `deadline`; `Err(None)` when there is none by then. The timer
/// hands over a connection that was free at once even past the deadline; nothing may start
/// after it, so that one is given back too.
async fn checkout_by(
    pool: &Pool<Manager>,
    connect_failures: &FailureSignal,
    deadline: tokio::time::Instant,
) -> Result<PooledConnection<'static, Manager>, Option<StoreError>> {
    match tokio::time::timeout_at(deadline, checkout(pool, connect_failures)).await {
        Ok(Err(err)) => Err(Some(err)),
        Ok(Ok(client)) if tokio::time::Instant::now() < deadline => Ok(client),
        _ => Err(None),
    }
}

/// A connection from the pool, or an answer as soon as it is clear none will come.
async fn checkout(
    pool: &Pool<Manager>,
    connect_failures: &FailureSignal,
) -> StoreResult<PooledConnection<'static, Manager>> {
    let mut failures = connect_failures.clone();
    failures.mark_unchanged();
    let got = pool.get_owned();
    tokio::pin!(got);
    loop {
        tokio::select! {
            got = &mut got => return got.map_err(|err| match err {
                RunError::TimedOut => StoreError::Unavailable("no database connection became free in time".into()),
                RunError::User(err) => StoreError::from(err),
            }),
            // A connection attempt failed while this request waited. With none of the pool's
            // connections left open, the database is down, or full with none of its
            // connections ours: nothing will come back, so this request hears it now. Connections
            // still open come back to the pool (an attempt fails under load too: a slow server's
            // connect timeout, a brief network error), and this request waits for one. Why an
            // attempt failed is logged by the pool's error sink; the driver's text (a refused
            // password, the server's view of our address) is not for the client, and /healthz
            // has no login.
            Ok(()) = failures.changed() => {
                let full = *failures.borrow_and_update();
                if pool.state().connections > 0 {
                    continue;
                }
                return Err(StoreError::Unavailable(if full {
                    "the database takes no more connections; see the server log".into()
                } else {
                    "cannot connect to the database; see the server log".into()
                }));
            }
        }
    }
}

/// One webhook's event, ready to be bound, and who waits for it to be committed.
struct Upsert {
    event: DiunEvent,
    metadata: Option<String>,
    extra: Option<String>,
    received_at: SystemTime,
    reply: oneshot::Sender<StoreResult<()>>,
}

/// Upserts go through [`shared_batches`]: webhooks that arrive together share one statement
/// and one commit, and every caller hears back after the commit that holds its event, so an
/// answered webhook is as durable as one stored alone.
fn start_upsert_batches(
    pool: Pool<Manager>,
    connect_failures: FailureSignal,
) -> mpsc::UnboundedSender<Upsert> {
    shared_batches::start(move |batch| {
        let (pool, connect_failures) = (pool.clone(), connect_failures.clone());
        async move { store_batch(&pool, &connect_failures, batch).await }
    })
}

async fn store_batch(pool: &Pool<Manager>, failures: &FailureSignal, batch: Vec<Upsert>) {
    // One deadline for the batch and the retries of its rows alone: its webhooks hear back
    // within OPERATION_TIMEOUT, whatever the retries.
    let deadline = tokio::time::Instant::now() + OPERATION_TIMEOUT - CANCEL_GRACE;
    match upsert_in_time(pool, failures, &batch, deadline).await {
        Err(NotStored { error, alone_may_pass: true }) if batch.len() > 1 => {
            log::warn!("storing {} webhook(s) one by one: {error}", batch.len());
            for upsert in batch {
                let stored = upsert_in_time(pool, failures, std::slice::from_ref(&upsert), deadline).await;
                let _ = upsert.reply.send(stored.map_err(|not_stored| not_stored.error));
            }
        }
        stored => {
            let stored = stored.map_err(|not_stored| not_stored.error);
            for upsert in batch {
                let _ = upsert.reply.send(stored.clone());
            }
        }
    }
}

/// Why a statement stored nothing, and whether its rows, each going again alone, may pass.
struct NotStored {
    error: StoreError,
    /// One row the server refuses fails the whole statement; and a statement of several rows
    /// that the server failed to break a deadlock can close the same cycle again if it goes
    /// again at once, taking its first row back before the other transaction wakes to take it.
    /// A statement of one row locks one row and waits for nothing while holding it, so it
    /// cannot be part of a cycle.
    alone_may_pass: bool,
}

impl NotStored {
    fn finally(error: StoreError) -> Self {
        NotStored { error, alone_may_pass: false }
    }
}

impl From<tokio_postgres::Error> for NotStored {
    fn from(err: tokio_postgres::Error) -> Self {
        let conflict = is_conflict(&err);
        let error = StoreError::from(err);
        let alone_may_pass = conflict || matches!(error, StoreError::Internal(_));
        NotStored { error, alone_may_pass }
    }
}

/// What a batch keeps of [`OPERATION_TIMEOUT`] to cancel a late statement and hear how it ended.
const CANCEL_GRACE: Duration = Duration::from_secs(1);

/// Upserts `rows` by `deadline`, and answers what is true where it can. Nothing starts after
/// the deadline, the wait for a connection included; a statement still running then is
/// cancelled and awaited (see [`LateCancel`]).
async fn upsert_in_time(
    pool: &Pool<Manager>,
    failures: &FailureSignal,
    rows: &[Upsert],
    deadline: tokio::time::Instant,
) -> Result<(), NotStored> {
    let late = || {
        NotStored::finally(StoreError::Unavailable(
            "the database did not answer in time; nothing was stored".into(),
        ))
    };
    let client = checkout_by(pool, failures, deadline)
        .await
        .map_err(|failed| failed.map_or_else(late, NotStored::finally))?;
    match LateCancel::of(&client).await_by(deadline, upsert_rows(&client, rows, deadline)).await {
        Ended::InTime(stored) => stored.map_err(NotStored::from),
        Ended::AfterCancel(Err(err)) if err.code() == Some(&SqlState::QUERY_CANCELED) => Err(late()),
        Ended::AfterCancel(stored) => stored.map_err(NotStored::from),
        Ended::Unheard => Err(NotStored::finally(unheard())),
    }
}

fn unheard() -> StoreError {
    StoreError::Unavailable("the database did not answer in time".into())
}

/// Cancels on the server what a lent connection still runs at its deadline.
struct LateCancel {
    token: CancelToken,
    /// The connection's mark: once a cancel is sent, it is not handed out again.
    sent: Arc<AtomicBool>,
}

/// How work given [`LateCancel::await_by`] ended.
enum Ended<T> {
    InTime(T),
    /// After a cancel was sent: cancelled (nothing done), or done if it got there first.
    AfterCancel(T),
    /// Not within [`CANCEL_GRACE`] of the cancel: a server that does not take cancels, or does
    /// not answer. The outcome is unknown; the connection is discarded and cancelled once more
    /// (see `has_broken`).
    Unheard,
}

impl LateCancel {
    fn of(conn: &Conn) -> Self {
        LateCancel { token: conn.cancel_token(), sent: Arc::clone(&conn.cancel_sent) }
    }

    /// Awaits `work`; still running at `deadline` (behind a row lock, on a slow server), it is
    /// cancelled on the server and awaited for [`CANCEL_GRACE`] more. Dropping it instead would
    /// not stop the server, which could commit it after its client heard 503.
    async fn await_by<T>(&self, deadline: tokio::time::Instant, work: impl Future<Output = T>) -> Ended<T> {
        tokio::pin!(work);
        if let Ok(done) = tokio::time::timeout_at(deadline, &mut work).await {
            return Ended::InTime(done);
        }
        self.sent.store(true, Ordering::Relaxed);
        // A cancel that reaches the server between two exchanges of the work (a statement's
        // prepare and its execution) stops nothing: a second one goes halfway through the grace.
        let halfway = deadline + CANCEL_GRACE / 2;
        self.cancel_by(halfway).await;
        if let Ok(done) = tokio::time::timeout_at(halfway, &mut work).await {
            return Ended::AfterCancel(done);
        }
        self.cancel_by(deadline + CANCEL_GRACE).await;
        match tokio::time::timeout_at(deadline + CANCEL_GRACE, work).await {
            Ok(done) => Ended::AfterCancel(done),
            Err(_) => Ended::Unheard,
        }
    }

    /// Asks the server to cancel, giving up at `by`: the cancel opens a connection of its own,
    /// which may take the connect timeout, and the client must hear back in time.
    async fn cancel_by(&self, by: tokio::time::Instant) {
        match tokio::time::timeout_at(by, self.token.cancel_query(NoTls)).await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => log::warn!("cannot cancel a late statement: {}", describe(&err)),
            Err(_) => {
                log::warn!("cannot cancel a late statement: the server did not take the cancel in time")
            }
        }
    }
}

const UPSERT_ONE: &str = "
    WITH upserted AS (
        INSERT INTO updates (image, diun_version, hostname, status, provider, hub_link,
            mime_type, digest, created, platform, metadata, extra, received_at, acknowledged_at,
            metadata_json, metadata_json_received_at)
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::text::jsonb, $12::text::jsonb, $13, NULL,
            $11::text, $13)
        ON CONFLICT (image) DO UPDATE SET
            diun_version = EXCLUDED.diun_version, hostname = EXCLUDED.hostname,
            status = EXCLUDED.status, provider = EXCLUDED.provider,
            hub_link = EXCLUDED.hub_link, mime_type = EXCLUDED.mime_type,
            digest = EXCLUDED.digest, created = EXCLUDED.created,
            platform = EXCLUDED.platform, metadata = EXCLUDED.metadata,
            extra = EXCLUDED.extra, received_at = EXCLUDED.received_at,
            acknowledged_at = NULL, metadata_json = EXCLUDED.metadata_json,
            metadata_json_received_at = EXCLUDED.metadata_json_received_at
        RETURNING image, metadata)
    INSERT INTO events (image, hostname, status, digest, created, metadata, received_at)
    SELECT image, $3, $4, $8, $9, metadata, $13 FROM upserted";

/// [`UPSERT_ONE`] for many events: an image sent twice in a batch keeps its last event (as if
/// upserted one after the other), and every event goes into the history, in arrival order.
/// The JSON is parsed once, in `input` (a CTE read twice is computed once).
///
/// The history rows are read through `upserted`, so they take their ids only once their
/// image's row is upserted and locked. A data-modifying CTE nobody reads runs after the main
/// statement: the events of two batches racing for one image then took ids in one order and
/// the `updates` row in the other, and the listed update was not the newest in the history.
const UPSERT_MANY: &str = "
    WITH input AS (
        SELECT image, diun_version, hostname, status, provider, hub_link, mime_type, digest, created,
            platform, metadata::jsonb AS metadata, metadata AS metadata_json, extra::jsonb AS extra,
            received_at, position
        FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                    $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[],
                    $13::timestamptz[])
             WITH ORDINALITY AS input (image, diun_version, hostname, status, provider, hub_link,
                 mime_type, digest, created, platform, metadata, extra, received_at, position)
    ), upserted AS (
        INSERT INTO updates (image, diun_version, hostname, status, provider, hub_link,
            mime_type, digest, created, platform, metadata, extra, received_at, acknowledged_at,
            metadata_json, metadata_json_received_at)
        SELECT DISTINCT ON (image) image, diun_version, hostname, status, provider, hub_link,
            mime_type, digest, created, platform, metadata, extra, received_at, NULL::timestamptz,
            metadata_json, received_at
        FROM input
        ORDER BY image, position DESC
        ON CONFLICT (image) DO UPDATE SET
            diun_version = EXCLUDED.diun_version, hostname = EXCLUDED.hostname,
            status = EXCLUDED.status, provider = EXCLUDED.provider,
            hub_link = EXCLUDED.hub_link, mime_type = EXCLUDED.mime_type,
            digest = EXCLUDED.digest, created = EXCLUDED.created,
            platform = EXCLUDED.platform, metadata = EXCLUDED.metadata,
            extra = EXCLUDED.extra, received_at = EXCLUDED.received_at,
            acknowledged_at = NULL, metadata_json = EXCLUDED.metadata_json,
            metadata_json_received_at = EXCLUDED.metadata_json_received_at
        RETURNING image)
    INSERT INTO events (image, hostname, status, digest, created, metadata, received_at)
    SELECT image, hostname, status, digest, created, metadata, received_at
    FROM input JOIN upserted USING (image)
    ORDER BY position";

/// Attempts at a statement of one row that the server fails for a serialization conflict with
/// another transaction (a database whose default isolation is serializable): that one then
/// goes through, and this one can after it. A statement of several rows goes again row by row
/// instead (see [`NotStored`]).
const CONFLICT_ATTEMPTS: u32 = 3;

async fn upsert_rows(
    client: &Conn,
    rows: &[Upsert],
    deadline: tokio::time::Instant,
) -> Result<(), tokio_postgres::Error> {
    let mut attempt = 1;
    loop {
        match upsert_once(client, rows).await {
            // Not after the deadline: a cancel sent meanwhile would miss a new attempt.
            Err(err)
                if rows.len() == 1
                    && attempt < CONFLICT_ATTEMPTS
                    && is_conflict(&err)
                    && tokio::time::Instant::now() < deadline =>
            {
                log::warn!("storing a webhook again: {}", describe(&err));
                attempt += 1;
            }
            stored => return stored,
        }
    }
}

fn is_conflict(err: &tokio_postgres::Error) -> bool {
    err.code().is_some_and(|code| {
        *code == SqlState::T_R_DEADLOCK_DETECTED || *code == SqlState::T_R_SERIALIZATION_FAILURE
    })
}

async fn upsert_once(client: &Conn, rows: &[Upsert]) -> Result<(), tokio_postgres::Error> {
    if let [one] = rows {
        let event = &one.event;
        client
            .execute(
                UPSERT_ONE,
                &[
                    &event.image,
                    &event.diun_version,
                    &event.hostname,
                    &event.status,
                    &event.provider,
                    &event.hub_link,
                    &event.mime_type,
                    &event.digest,
                    &event.created,
                    &event.platform,
                    &one.metadata,
                    &one.extra,
                    &one.received_at,
                ],
            )
            .await?;
        return Ok(());
    }
    let text = |field: fn(&Upsert) -> &str| rows.iter().map(field).collect::<Vec<_>>();
    let optional = |field: fn(&Upsert) -> Option<&str>| rows.iter().map(field).collect::<Vec<_>>();
    let received_at: Vec<SystemTime> = rows.iter().map(|row| row.received_at).collect();
    client
        .execute(
            UPSERT_MANY,
            &[
                &text(|row| &row.event.image),
                &text(|row| &row.event.diun_version),
                &text(|row| &row.event.hostname),
                &text(|row| &row.event.status),
                &text(|row| &row.event.provider),
                &text(|row| &row.event.hub_link),
                &text(|row| &row.event.mime_type),
                &text(|row| &row.event.digest),
                &optional(|row| row.event.created.as_deref()),
                &text(|row| &row.event.platform),
                &optional(|row| row.metadata.as_deref()),
                &optional(|row| row.extra.as_deref()),
                &received_at,
            ],
        )
        .await?;
    Ok(())
}

/// Refuses a database whose encoding cannot hold all of DIUN's text. The client speaks UTF-8;
/// a LATIN1 database (say) refuses any character it lacks, and a webhook naming a container in
/// Japanese, or with an emoji in its metadata, would fail (500) where SQLite stores it. Found at
/// start-up, the fix is one `CREATE DATABASE`; found at the first such webhook, an event is
/// lost. SQL_ASCII stores the bytes as sent, which keeps UTF-8 intact.
fn usable_encoding(encoding: Option<&str>) -> Result<(), String> {
    match encoding {
        Some("UTF8" | "SQL_ASCII") => Ok(()),
        Some(other) => Err(format!(
            "the database's encoding is {other}, which cannot hold every character DIUN may send: \
             use a database created with ENCODING 'UTF8' (CREATE DATABASE … ENCODING 'UTF8' TEMPLATE template0)"
        )),
        None => Err("the server did not say its encoding (SHOW server_encoding)".into()),
    }
}

/// The newest stamp stored, a report's or an acknowledgement's, as SQLite's `latest_report` says.
async fn latest_report(client: &Client) -> Result<Option<Timestamp>, String> {
    client
        .query_one(super::LATEST_STAMP, &[])
        .await
        .and_then(|row| row.try_get::<_, Option<SystemTime>>(0))
        .map(|latest| latest.map(Timestamp::from_system_time))
        .map_err(|err| format!("cannot read the latest report's time: {}", describe(&err)))
}

/// The server's encoding, refused unless [`usable_encoding`]: the service's start-up and
/// `migrate` alike (a copy into a LATIN1 database would fill one the service then refuses).
pub(crate) async fn check_encoding(client: &Client) -> Result<(), String> {
    let encoding = client
        .simple_query("SHOW server_encoding")
        .await
        .map_err(|err| format!("cannot query the server: {}", describe(&err)))?;
    usable_encoding(encoding.iter().find_map(|message| match message {
        SimpleQueryMessage::Row(row) => row.get(0),
        _ => None,
    }))
}

/// A migration waits 10 s at most for a table lock another session holds, and its own work has
/// no limit, whatever statement_timeout the role or the database sets.
const MIGRATION_TIMEOUTS: &str = "SET LOCAL lock_timeout = '10s'; SET LOCAL statement_timeout = 0";

/// The PostgreSQL migrations embedded in the binary.
pub fn migrations() -> Result<Vec<Migration>, String> {
    migrate::from_dir(&MIGRATIONS)
}

/// Applies the pending migrations, each in its own transaction, under an advisory lock so that
/// replicas starting together migrate once.
pub async fn run_migrations(client: &mut Client, migrations: &[Migration]) -> Result<(), String> {
    let fail = |what: &str, err: tokio_postgres::Error| format!("{what}: {}", describe(&err));
    let free: bool = client
        .query_one("SELECT pg_try_advisory_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(|err| fail("cannot take the migration lock", err))?
        .get(0);
    if !free {
        // Start-up waits for as long as the other one migrates, and says why.
        log::info!("another diun-dashboard holds the migration lock of this database; waiting for it");
        // However long the other's migration takes, even under a lock_timeout or a
        // statement_timeout the role or the database sets: in a transaction of its own that
        // lifts both (the advisory lock is the session's, and outlives the transaction).
        let not_taken = |err| fail("cannot take the migration lock", err);
        let tx = client.transaction().await.map_err(not_taken)?;
        tx.batch_execute("SET LOCAL lock_timeout = 0; SET LOCAL statement_timeout = 0")
            .await
            .map_err(not_taken)?;
        tx.execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK]).await.map_err(not_taken)?;
        tx.commit().await.map_err(not_taken)?;
    }
    client
        // Not `CREATE TABLE IF NOT EXISTS`: its "already exists, skipping" notice would be
        // logged at every start. Looked up where CREATE TABLE would put it, as that does.
        .batch_execute(
            "DO $$ BEGIN
                 IF to_regclass(quote_ident(current_schema()) || '.schema_migrations') IS NULL THEN
                     CREATE TABLE schema_migrations (
                         version    BIGINT PRIMARY KEY,
                         name       TEXT NOT NULL,
                         applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
                     );
                 END IF;
             END $$",
        )
        .await
        .map_err(|err| fail("cannot create schema_migrations", err))?;
    let applied: Vec<i64> = client
        .query("SELECT version FROM schema_migrations ORDER BY version", &[])
        .await
        .map_err(|err| fail("cannot read schema_migrations", err))?
        .iter()
        // Another tool's table of that name (a text version, say) is an error, not a panic.
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()
        .map_err(|err| fail("cannot read schema_migrations", err))?;
    for migration in migrate::pending(migrations, &applied)? {
        let label = format!("migration {:04}_{}", migration.version, migration.name);
        let tx = client.transaction().await.map_err(|err| fail(&label, err))?;
        // A table lock that another session holds (a pg_dump, a psql left in a transaction)
        // fails the migration after a while, with the reason, instead of hanging start-up in
        // silence; a waiting ALTER would also queue every other replica's query behind it. The
        // migration's own work has no limit, nor has the wait for another replica's migration
        // (the advisory lock above, outside this transaction).
        tx.batch_execute(MIGRATION_TIMEOUTS).await.map_err(|err| fail(&label, err))?;
        tx.batch_execute(&migration.sql).await.map_err(|err| fail(&label, err))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
            &[&migration.version, &migration.name],
        )
        .await
        .map_err(|err| fail(&label, err))?;
        tx.commit().await.map_err(|err| fail(&label, err))?;
        log::info!("applied {label}");
    }
    client
        .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(|err| fail("cannot release the migration lock", err))?;
    Ok(())
}

/// Rows [`fill_metadata_json`] reads and writes at a time.
const FILL_CHUNK: i64 = 1000;

/// Stores the listing's copy of `metadata` (migration 0005) for the rows that lack one beside
/// their report: all of them at the first start after the migration, and any that a replica of
/// an earlier release wrote during a rolling upgrade. Until then such rows are listed from
/// their jsonb, correctly but at the server's cost of printing it each time: a failure here
/// is logged, and start-up goes on.
async fn fill_metadata_json(client: &mut Client) {
    let mut filled = 0;
    let mut after = String::new();
    let outcome = loop {
        match fill_metadata_chunk(client, &after).await {
            Ok(Some((last, count))) => {
                filled += count;
                after = last;
            }
            Ok(None) => break Ok(()),
            Err(err) => break Err(err),
        }
    };
    if filled > 0 {
        log::info!("stored the listing's copy of the metadata of {filled} image(s)");
    }
    if let Err(err) = outcome {
        log::warn!("cannot store the listing's copy of the metadata (listed from jsonb meanwhile): {err}");
    }
}

/// One chunk of [`fill_metadata_json`], of the images after `after`: the last image read and
/// the rows written, or `None` when none was left. Rows another session holds (a webhook's
/// batch, another replica's fill, a DBA's transaction) are skipped rather than waited for:
/// nothing here can hold up start-up or deadlock with the writers, and a row skipped is
/// listed from its jsonb until the next start.
async fn fill_metadata_chunk(client: &mut Client, after: &str) -> Result<Option<(String, u64)>, String> {
    let fail = |err: tokio_postgres::Error| describe(&err);
    // Read committed whatever the database's default: a row a webhook changes after this
    // statement's snapshot is then read again as it stands, where serializable would fail
    // the chunk.
    let tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::ReadCommitted)
        .start()
        .await
        .map_err(fail)?;
    tx.batch_execute(MIGRATION_TIMEOUTS).await.map_err(fail)?;
    let rows = tx
        .query(
            "SELECT image, metadata::text, received_at FROM updates
             WHERE image > $1 AND metadata IS NOT NULL
               AND metadata_json_received_at IS DISTINCT FROM received_at
             ORDER BY image LIMIT $2
             FOR NO KEY UPDATE SKIP LOCKED",
            &[&after, &FILL_CHUNK],
        )
        .await
        .map_err(fail)?;
    let Some(last) = rows.last() else { return Ok(None) };
    let last: String = last.try_get(0).map_err(fail)?;
    let mut images = Vec::with_capacity(rows.len());
    let mut texts = Vec::with_capacity(rows.len());
    let mut stamps = Vec::with_capacity(rows.len());
    for row in &rows {
        let image: &str = row.try_get(0).map_err(fail)?;
        let jsonb: &str = row.try_get(1).map_err(fail)?;
        match serde_text(jsonb) {
            Ok(text) => texts.push(text),
            // Listed from its jsonb, which fails the same way: that row's error, not start-up's.
            Err(err) => {
                log::warn!("cannot copy the metadata of {image:?}: {err}");
                continue;
            }
        }
        images.push(image);
        stamps.push(row.try_get::<_, SystemTime>(2).map_err(fail)?);
    }
    // The rows are this transaction's until it commits: no report can have changed them.
    let written = tx
        .execute(
            "UPDATE updates u SET metadata_json = f.text, metadata_json_received_at = f.received_at
             FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS f (image, text, received_at)
             WHERE u.image = f.image",
            &[&images, &texts, &stamps],
        )
        .await
        .map_err(fail)?;
    tx.commit().await.map_err(fail)?;
    Ok(Some((last, written)))
}

/// `jsonb` text as serde_json writes the value, as SQLite stores it (see `json_text`).
fn serde_text(jsonb: &str) -> Result<String, String> {
    let mut text = Vec::with_capacity(jsonb.len());
    crate::json_text::write_as_serde(&mut text, jsonb)?;
    // Rewritten from a `&str`, with its strings kept whole.
    String::from_utf8(text).map_err(|err| err.to_string())
}

/// [`serde_text`] of an object, for an answer to copy.
fn stored_object(jsonb: &str) -> Result<StoredObject, String> {
    StoredObject::new(serde_text(jsonb)?)
}

fn update_from_row(row: &Row) -> StoreResult<UpdateEntry> {
    let tag = row.try_get::<_, Option<i64>>(15)?.zip(row.try_get(16)?);
    listed_from_row(row, tag)?.to_entry().map_err(StoreError::Internal)
}

/// The update columns of a row of [`select_updates`] or [`select_listed`], borrowed, with its
/// tag read by the caller.
fn listed_from_row<'r>(row: &'r Row, tag: Option<(i64, &'r str)>) -> StoreResult<ListedUpdate<'r>> {
    let received_at: SystemTime = row.try_get(13)?;
    let acknowledged_at: Option<SystemTime> = row.try_get(14)?;
    // One of the two metadata columns is set at most: see `listed_metadata`.
    let metadata = match row.try_get::<_, Option<&str>>(10)? {
        Some(written) => Some(StoredText::serde(written)),
        None => row.try_get::<_, Option<&str>>(11)?.map(StoredText::jsonb),
    };
    Ok(ListedUpdate {
        image: row.try_get(0)?,
        diun_version: row.try_get(1)?,
        hostname: row.try_get(2)?,
        status: row.try_get(3)?,
        provider: row.try_get(4)?,
        hub_link: row.try_get(5)?,
        mime_type: row.try_get(6)?,
        digest: row.try_get(7)?,
        created: row.try_get(8)?,
        platform: row.try_get(9)?,
        metadata,
        extra: row.try_get::<_, Option<&str>>(12)?.map(StoredText::jsonb),
        received_at: Timestamp::from_system_time(received_at),
        acknowledged_at: acknowledged_at.map(Timestamp::from_system_time),
        tag,
    })
}

/// A listed update's metadata as two columns, at most one of them set: the text the service
/// wrote with the row's report, or else (a row written without it: see migration 0005) the
/// text of the jsonb, printed by the server.
macro_rules! listed_metadata {
    () => {
        "CASE WHEN u.metadata_json_received_at = u.received_at THEN u.metadata_json END,
         CASE WHEN u.metadata_json_received_at IS DISTINCT FROM u.received_at THEN u.metadata::text END"
    };
}

/// The columns of a listed update with its tag, read by [`update_from_row`]; a macro so that
/// each query stays one `&'static str` for the statement cache.
macro_rules! select_updates {
    () => {
        concat!(
            "SELECT u.image, u.diun_version, u.hostname, u.status, u.provider, u.hub_link,
                    u.mime_type, u.digest, u.created, u.platform, ",
            listed_metadata!(),
            ", u.extra::text, u.received_at, u.acknowledged_at, t.id, t.name
         FROM updates u
         LEFT JOIN tag_assignments a ON a.image = u.image
         LEFT JOIN tags t ON t.id = a.tag_id"
        )
    };
}

/// One half of the listed images, written as the listing's members and sorted by image.
struct RenderedHalf<'r> {
    text: Vec<u8>,
    /// Each image and where its member is in `text`, in the listing's (bytewise) order.
    members: Vec<(&'r str, Range<usize>)>,
}

impl<'r> RenderedHalf<'r> {
    fn write(rows: &'r [Row], tags: &HashMap<&str, (i64, &'r str)>) -> StoreResult<Self> {
        let mut text = Vec::with_capacity(rows.len() * 1024);
        let mut members = Vec::with_capacity(rows.len());
        for row in rows {
            let listed = listed_from_row(row, None)?;
            let listed = ListedUpdate { tag: tags.get(listed.image).copied(), ..listed };
            let start = text.len();
            crate::listing::render(&mut text, &listed)?;
            members.push((listed.image, start..text.len()));
        }
        // Names are unique, so the unstable sort gives the one order.
        members.sort_unstable_by(|a, b| a.0.cmp(b.0));
        Ok(Self { text, members })
    }
}

/// Runs `here` on this thread and `there` on a thread of its own, at once.
fn side_by_side<A, B: Send>(
    here: impl FnOnce() -> A,
    there: impl FnOnce() -> B + Send,
) -> (A, StoreResult<B>) {
    std::thread::scope(|scope| {
        let there = std::thread::Builder::new().name("listing".into()).spawn_scoped(scope, there);
        let here = here();
        let there = match there {
            Ok(thread) => {
                thread.join().map_err(|_| StoreError::Internal("writing the listing failed".into()))
            }
            Err(err) => Err(StoreError::Internal(format!("cannot start a listing thread: {err}"))),
        };
        (here, there)
    })
}

/// One half's members (sorted by image), or a run of them.
type Members<'h, 'r> = (&'h RenderedHalf<'r>, &'h [(&'r str, Range<usize>)]);

/// `part` with the members of `a` and `b` merged in image order, finished.
fn merged_part(
    mut part: ListingPart,
    (a_half, mut a): Members<'_, '_>,
    (b_half, mut b): Members<'_, '_>,
) -> std::io::Result<FinishedPart> {
    loop {
        let (half, range) = match (a, b) {
            ([x, a_rest @ ..], [y, b_rest @ ..]) => {
                if x.0 < y.0 {
                    a = a_rest;
                    (a_half, &x.1)
                } else {
                    b = b_rest;
                    (b_half, &y.1)
                }
            }
            ([x, rest @ ..], []) => {
                a = rest;
                (a_half, &x.1)
            }
            ([], [y, rest @ ..]) => {
                b = rest;
                (b_half, &y.1)
            }
            ([], []) => return part.finish(),
        };
        part.push_rendered(&half.text[range.clone()]);
    }
}

/// [`select_updates`] without the tags, which `write_listing` reads apart.
macro_rules! select_listed {
    () => {
        concat!(
            "SELECT u.image, u.diun_version, u.hostname, u.status, u.provider, u.hub_link,
                    u.mime_type, u.digest, u.created, u.platform, ",
            listed_metadata!(),
            ", u.extra::text, u.received_at, u.acknowledged_at FROM updates u"
        )
    };
}
/// One half of the listing's images, by the hash of their names. Unordered: ORDER BY …
/// COLLATE "C" sorts every row on the server, past work_mem on disk for thousands of images,
/// when a bytewise sort here costs a millisecond.
const LISTED_HALF: &str = concat!(select_listed!(), " WHERE hashtext(u.image) & 1 = $1");
/// The listing's tag assignments.
const LISTED_TAGS: &str =
    "SELECT a.image, t.id, t.name FROM tag_assignments a JOIN tags t ON t.id = a.tag_id";

/// Marks the pending history of the images `acked` returned as acknowledged at `at`. A statement
/// of its own, in the acknowledgement's transaction: a statement sees only what was committed
/// when it started, and the acknowledgement's first statement may have waited for a webhook's
/// upsert of one of these images to commit. This one sees that webhook's event, and the rows the
/// first statement locked keep later upserts of these images out until the commit.
async fn acknowledge_history(tx: &CachedTransaction<'_>, acked: &[Row], at: SystemTime) -> StoreResult<()> {
    let images = acked.iter().map(|row| row.try_get(0)).collect::<Result<Vec<&str>, _>>()?;
    if !images.is_empty() {
        tx.execute(
            "UPDATE events SET acknowledged_at = $1 WHERE acknowledged_at IS NULL AND image = ANY($2)",
            &[&at, &images],
        )
        .await?;
    }
    Ok(())
}

async fn image_known(tx: &CachedTransaction<'_>, image: &str) -> StoreResult<bool> {
    Ok(!tx.query("SELECT 1 FROM updates WHERE image = $1", &[&image]).await?.is_empty())
}

async fn tag_exists(client: &Conn, tag_id: i64) -> StoreResult<bool> {
    Ok(client.query_opt("SELECT 1 FROM tags WHERE id = $1", &[&tag_id]).await?.is_some())
}

impl PostgresStore {
    /// The listing's rows: the images in two halves, read on two connections so that two
    /// server processes read and send them at once (each image is in exactly one half), and
    /// the tag assignments on a third: joined on the server, the rows of every image went into
    /// a hash table (or, with no statistics yet, through one index lookup per tagged image),
    /// which cost more than the halves' scans. The three read one snapshot, exported by the
    /// first: read at three moments, a webhook's batch could be half in the listing, or an
    /// image shown with an assignment it never had at that point. Without two more idle
    /// connections, the three queries go on the first, in its one transaction.
    async fn read_listing(&self) -> StoreResult<(Vec<Row>, Vec<Row>, Vec<Row>)> {
        // Boxed: the two ways to read, each holding its queries' futures, make a future too
        // large for a runtime thread's stack in a debug build.
        in_time(Box::pin(async {
            let checkout = || checkout(&self.pool, &self.connect_failures);
            let mut lead = checkout().await?;
            // Two more only if the pool holds them idle: a listing waiting for connections
            // while it holds one could, with the server at its connection limit or enough
            // listings at once, wait for the others until the checkout timeout. Otherwise the
            // three queries go one after another on the lead. A zero timeout polls the
            // checkouts before its deadline passes, and an idle connection is taken at once.
            let helpers = if self.pool.state().idle_connections >= 2 {
                tokio::time::timeout(Duration::ZERO, async { tokio::try_join!(checkout(), checkout()) })
                    .await
                    .ok()
                    .and_then(Result::ok)
            } else {
                None
            };
            let lead = lead.snapshot_transaction(None).await?;
            let Some((mut other, mut tagged)) = helpers else {
                // Sent together, one round trip instead of three; the server runs them in turn.
                let rows = tokio::try_join!(
                    lead.query(LISTED_HALF, &[&0]),
                    lead.query(LISTED_HALF, &[&1]),
                    lead.query(LISTED_TAGS, &[])
                )?;
                lead.commit().await?;
                return Ok(rows);
            };
            let snapshot: String = lead.query_one("SELECT pg_export_snapshot()", &[]).await?.try_get(0)?;
            // The exporting transaction stays open until both have imported its snapshot; it
            // can fail only if the lead's session ended meanwhile (killed, timed out): a
            // passing failure, as a lost connection is.
            let (other, tagged) = tokio::try_join!(
                other.snapshot_transaction(Some(&snapshot)),
                tagged.snapshot_transaction(Some(&snapshot))
            )
            .map_err(|err| {
                StoreError::Unavailable(format!("cannot share the listing's snapshot: {}", describe(&err)))
            })?;
            // Each ends as soon as it has read: a transaction idle while another still reads
            // would keep its table's lock, and a DBA's `ALTER TABLE` queued between them would
            // wait on it where the server's deadlock detector cannot see the cycle.
            Ok(tokio::try_join!(
                lead.query_then_commit(LISTED_HALF, &[&0]),
                other.query_then_commit(LISTED_HALF, &[&1]),
                tagged.query_then_commit(LISTED_TAGS, &[])
            )?)
        }))
        .await
    }
}

impl UpdateStore for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }
    fn receipt_time(&self) -> Timestamp {
        self.receipts.stamp()
    }

    async fn ping(&self) -> StoreResult<()> {
        self.with_client(|client| async move { Ok(client.ping().await?) }).await
    }

    async fn upsert_event(&self, event: DiunEvent, received: Received) -> StoreResult<()> {
        let received_at = match received {
            Received::Now => self.receipts.stamp(),
            Received::At(at) => {
                self.receipts.witness(at);
                at
            }
        };
        let (reply, answer) = oneshot::channel();
        let upsert = Upsert {
            metadata: event.metadata_json(),
            extra: event.extra_json(),
            event,
            received_at: received_at.to_system_time(),
            reply,
        };
        self.upserts.send(upsert).map_err(|_| StoreError::Unavailable("the store is closed".into()))?;
        // No clock of its own: every step of a batch is bounded (see `store_batch`), and a
        // caller that gave up first would answer 503 for an event its batch still commits,
        // stored but never announced.
        answer.await.unwrap_or_else(|_| Err(StoreError::Internal("the upsert task stopped".into())))
    }

    async fn list_updates(&self) -> StoreResult<Vec<UpdateEntry>> {
        self.with_client(|client| async move {
            // COLLATE "C": bytewise order, as on SQLite, whatever the database's collation.
            let rows =
                client.query(concat!(select_updates!(), " ORDER BY u.image COLLATE \"C\""), &[]).await?;
            rows.iter().map(update_from_row).collect()
        })
        .await
    }

    async fn write_listing(&self, listing: Listing) -> StoreResult<Vec<u8>> {
        let (first, second, tags) = self.read_listing().await?;
        tokio::task::spawn_blocking(move || {
            let tags = tags
                .iter()
                .map(|row| Ok((row.try_get(0)?, (row.try_get(1)?, row.try_get(2)?))))
                .collect::<StoreResult<HashMap<&str, (i64, &str)>>>()?;
            // The halves are written on two threads at once, then put in order: writing the
            // members is most of this side's work, and it waits for nothing but the rows.
            let (first, second) =
                side_by_side(|| RenderedHalf::write(&first, &tags), || RenderedHalf::write(&second, &tags));
            let (first, second) = (first?, second??);
            // The merged order cut in two equal parts, each merged and (for gzip) compressed on
            // a thread of its own: done on one, merging and compressing took as long as
            // writing the members on two.
            let count = first.members.len() + second.members.len();
            let front = count / 2;
            let (front_from_first, front_from_second) =
                crate::listing::merged_split(&first.members, &second.members, front, |member| member.0);
            let [front_part, back_part] = listing.into_parts([front, count - front]);
            let (front_part, back_part) = side_by_side(
                || {
                    merged_part(
                        front_part,
                        (&first, &first.members[..front_from_first]),
                        (&second, &second.members[..front_from_second]),
                    )
                },
                || {
                    merged_part(
                        back_part,
                        (&first, &first.members[front_from_first..]),
                        (&second, &second.members[front_from_second..]),
                    )
                },
            );
            Ok(crate::listing::join_parts(vec![front_part?, back_part??]))
        })
        .await
        .map_err(|err| StoreError::Internal(format!("the listing task failed: {err}")))?
    }

    async fn count_by_group(&self) -> StoreResult<Vec<GroupCount>> {
        self.with_client(|client| async move {
            let rows = client.query(COUNT_BY_GROUP, &[]).await?;
            rows.iter()
                .map(|row| {
                    Ok(GroupCount {
                        tag_id: row.try_get(0)?,
                        total: row.try_get::<_, i64>(1)?.unsigned_abs(),
                        pending: row.try_get::<_, i64>(2)?.unsigned_abs(),
                    })
                })
                .collect()
        })
        .await
    }

    async fn acknowledge(
        &self,
        image: String,
        at: Timestamp,
        seen: Option<Timestamp>,
    ) -> StoreResult<ImageOutcome> {
        let at = at.to_system_time();
        let seen = seen.map(Timestamp::to_system_time);
        self.writing(|mut conn| async move {
            let tx = conn.transaction().await?;
            let acked = tx
                .query(
                    "UPDATE updates SET acknowledged_at = COALESCE(acknowledged_at, $2)
                     WHERE image = $1 AND ($3::timestamptz IS NULL OR received_at = $3) RETURNING image",
                    &[&image, &at, &seen],
                )
                .await?;
            if acked.is_empty() {
                return Ok(ImageOutcome::untouched(image_known(&tx, &image).await?));
            }
            acknowledge_history(&tx, &acked, at).await?;
            tx.commit().await?;
            Ok(ImageOutcome::Done)
        })
        .await
    }

    async fn remove_update(&self, image: String, seen: Option<Timestamp>) -> StoreResult<ImageOutcome> {
        let seen = seen.map(Timestamp::to_system_time);
        self.writing(|mut conn| async move {
            let tx = conn.transaction().await?;
            // The `updates` row first, as every write locks an image's rows: a batch of webhooks
            // reporting it meanwhile waits, then stores it afresh, history and all. Its group
            // assignment goes with it (ON DELETE CASCADE).
            let removed = tx
                .query(
                    "DELETE FROM updates
                     WHERE image = $1 AND ($2::timestamptz IS NULL OR received_at = $2) RETURNING image",
                    &[&image, &seen],
                )
                .await?;
            if removed.is_empty() {
                return Ok(ImageOutcome::untouched(image_known(&tx, &image).await?));
            }
            tx.execute("DELETE FROM events WHERE image = $1", &[&image]).await?;
            tx.commit().await?;
            Ok(ImageOutcome::Done)
        })
        .await
    }

    async fn acknowledge_all(&self, at: Timestamp, shown_until: Option<Timestamp>) -> StoreResult<u64> {
        let at = at.to_system_time();
        let until = shown_until.map(Timestamp::to_system_time);
        self.writing(|mut conn| async move {
            let tx = conn.transaction().await?;
            // Locked in image order, the order a batch of upserts locks its rows in: in any
            // other order the two could deadlock, and the server would fail one of them.
            let acked = tx
                .query(
                    "UPDATE updates SET acknowledged_at = $1
                     WHERE image IN (SELECT image FROM updates WHERE acknowledged_at IS NULL
                                       AND ($2::timestamptz IS NULL OR received_at <= $2)
                                     ORDER BY image FOR NO KEY UPDATE)
                     RETURNING image",
                    &[&at, &until],
                )
                .await?;
            acknowledge_history(&tx, &acked, at).await?;
            tx.commit().await?;
            Ok(acked.len() as u64)
        })
        .await
    }

    async fn acknowledge_by_tag(
        &self,
        tag_id: i64,
        at: Timestamp,
        shown_until: Option<Timestamp>,
    ) -> StoreResult<Option<u64>> {
        let at = at.to_system_time();
        let until = shown_until.map(Timestamp::to_system_time);
        self.writing(|mut conn| async move {
            let tx = conn.transaction().await?;
            // The tag cannot be deleted before the commit: an answer never counts the images of
            // a tag that was gone by then.
            if tx.query("SELECT 1 FROM tags WHERE id = $1 FOR KEY SHARE", &[&tag_id]).await?.is_empty() {
                return Ok(None);
            }
            let acked = tx
                .query(
                    "UPDATE updates SET acknowledged_at = $2
                     WHERE image IN (SELECT u.image FROM updates u JOIN tag_assignments t USING (image)
                                     WHERE t.tag_id = $1 AND u.acknowledged_at IS NULL
                                       AND ($3::timestamptz IS NULL OR u.received_at <= $3)
                                     ORDER BY u.image FOR NO KEY UPDATE OF u)
                     RETURNING image",
                    &[&tag_id, &at, &until],
                )
                .await?;
            acknowledge_history(&tx, &acked, at).await?;
            tx.commit().await?;
            Ok(Some(acked.len() as u64))
        })
        .await
    }

    async fn list_tags(&self) -> StoreResult<Vec<Tag>> {
        let mut tags = self
            .with_client(|client| async move {
                let rows = client.query("SELECT id, name FROM tags", &[]).await?;
                rows.iter()
                    .map(|row| Ok(Tag { id: row.try_get(0)?, name: row.try_get(1)? }))
                    .collect::<StoreResult<Vec<_>>>()
            })
            .await?;
        sort_tags(&mut tags);
        Ok(tags)
    }

    async fn create_tag(&self, name: String) -> StoreResult<Tag> {
        self.writing(|client| async move {
            match client.query_one("INSERT INTO tags (name) VALUES ($1) RETURNING id", &[&name]).await {
                Ok(row) => Ok(Tag { id: row.try_get(0)?, name }),
                Err(err) if err.code() == Some(&SqlState::UNIQUE_VIOLATION) => Err(StoreError::DuplicateTag),
                Err(err) => Err(err.into()),
            }
        })
        .await
    }

    async fn delete_tag(&self, tag_id: i64) -> StoreResult<bool> {
        self.writing(|client| async move {
            Ok(client.execute("DELETE FROM tags WHERE id = $1", &[&tag_id]).await? > 0)
        })
        .await
    }

    async fn assign_tag(&self, image: String, tag_id: i64) -> StoreResult<Assignment> {
        self.writing(|client| async move {
            let inserted = client
                .execute(
                    "INSERT INTO tag_assignments (image, tag_id) VALUES ($1, $2)
                     ON CONFLICT (image) DO UPDATE SET tag_id = EXCLUDED.tag_id",
                    &[&image, &tag_id],
                )
                .await;
            match inserted {
                Ok(_) => Ok(Assignment::Assigned),
                // The foreign keys tell that something is missing; say which, the tag first.
                Err(err) if err.code() == Some(&SqlState::FOREIGN_KEY_VIOLATION) => {
                    if tag_exists(&client, tag_id).await? {
                        Ok(Assignment::UnknownImage)
                    } else {
                        Ok(Assignment::UnknownTag)
                    }
                }
                Err(err) => Err(err.into()),
            }
        })
        .await
    }

    async fn unassign_tag(&self, image: String) -> StoreResult<()> {
        self.writing(|client| async move {
            client.execute("DELETE FROM tag_assignments WHERE image = $1", &[&image]).await?;
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
        self.with_client(|client| async move {
            let rows = client
                .query(
                    "SELECT id, hostname, status, digest, created, metadata::text, received_at, acknowledged_at
                     FROM events
                     -- One comparison, which the index on (image, id) seeks (see SQLite's).
                     WHERE image = $1 AND id < COALESCE($2::bigint, 9223372036854775807)
                     ORDER BY id DESC
                     LIMIT $3",
                    &[&image, &before, &i64::from(limit)],
                )
                .await?;
            let mut entries = Vec::with_capacity(rows.len());
            for row in &rows {
                let metadata: Option<String> = row.try_get(5)?;
                let received_at: std::time::SystemTime = row.try_get(6)?;
                let acknowledged_at: Option<std::time::SystemTime> = row.try_get(7)?;
                entries.push(HistoryEntry {
                    id: row.try_get(0)?,
                    hostname: row.try_get(1)?,
                    status: row.try_get(2)?,
                    digest: row.try_get(3)?,
                    created: row.try_get(4)?,
                    metadata: json_object(metadata.as_deref()).map_err(StoreError::Internal)?,
                    received_at: Timestamp::from_system_time(received_at),
                    acknowledged_at: acknowledged_at.map(Timestamp::from_system_time),
                });
            }
            if entries.is_empty() {
                let known = client.query_opt("SELECT 1 FROM updates WHERE image = $1", &[&image]).await?.is_some();
                return Ok(known.then_some(entries));
            }
            Ok(Some(entries))
        })
        .await
    }

    async fn reporting_hosts(&self) -> StoreResult<Vec<HostReport>> {
        self.with_client(|client| async move {
            let rows = client
                .query(
                    "SELECT e.image, e.hostname, e.received_at, e.metadata::text
                     FROM events e
                     JOIN (SELECT max(p.id) AS id
                           FROM updates u JOIN events p ON p.image = u.image
                           -- Pending, both NULL; acknowledged, the events its acknowledgement
                           -- covered carry its time.
                           WHERE p.acknowledged_at IS NOT DISTINCT FROM u.acknowledged_at
                           GROUP BY p.image, p.hostname) latest
                       ON latest.id = e.id
                     ORDER BY e.image COLLATE \"C\", e.hostname COLLATE \"C\"",
                    &[],
                )
                .await?;
            rows.iter()
                .map(|row| {
                    let last_seen: std::time::SystemTime = row.try_get(2)?;
                    let metadata: Option<&str> = row.try_get(3)?;
                    Ok(HostReport {
                        image: row.try_get(0)?,
                        hostname: row.try_get(1)?,
                        last_seen: Timestamp::from_system_time(last_seen),
                        metadata: metadata.map(stored_object).transpose().map_err(StoreError::Internal)?,
                    })
                })
                .collect()
        })
        .await
    }

    async fn prune_history(&self, older_than: Timestamp, limit: u32) -> StoreResult<u64> {
        self.writing(|client| async move {
            Ok(client
                .execute(
                    "DELETE FROM events WHERE id IN
                         (SELECT e.id FROM events e
                          WHERE e.received_at < $1 AND e.acknowledged_at < $1
                            AND NOT EXISTS (SELECT 1 FROM updates u
                                            WHERE u.image = e.image AND u.acknowledged_at = e.acknowledged_at)
                          LIMIT $2
                          -- Every replica prunes: rows another one (or an acknowledgement) holds
                          -- are left for a later pass, not waited for (nor deadlocked on).
                          FOR UPDATE OF e SKIP LOCKED)",
                    &[&older_than.to_system_time(), &i64::from(limit)],
                )
                .await?)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::usable_encoding;

    #[test]
    fn only_encodings_that_keep_every_character_are_usable() {
        assert_eq!(usable_encoding(Some("UTF8")), Ok(()));
        assert_eq!(usable_encoding(Some("SQL_ASCII")), Ok(()));
        for other in ["LATIN1", "WIN1252", "EUC_JP"] {
            let refused = usable_encoding(Some(other));
            assert!(
                refused.as_ref().is_err_and(|why| why.contains(other) && why.contains("UTF8")),
                "{refused:?}"
            );
        }
        assert!(usable_encoding(None).is_err());
    }
}
