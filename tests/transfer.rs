//! `diun-dashboard migrate`: a SQLite deployment moved to PostgreSQL answers exactly as before.
#![cfg(all(feature = "sqlite", feature = "postgres"))]

mod support;

use std::time::Duration;

use diun_dashboard::config::Database;
use diun_dashboard::model::DiunEvent;
use diun_dashboard::store::postgres::PostgresStore;
use diun_dashboard::store::sqlite::SqliteStore;
use diun_dashboard::store::{Received, UpdateStore};
use diun_dashboard::time::Timestamp;
use serde_json::{Value, json};
use support::process::{Service, run};
use support::{TempDir, TestDb, backend_pid, docker_event, until_blocked};

const LIMIT: Duration = Duration::from_secs(60);

/// Everything the API can show of a store.
async fn api_view<S: UpdateStore>(store: &S) -> Value {
    let updates = store.list_updates().await.unwrap();
    let mut history = serde_json::Map::new();
    for update in &updates {
        let events = store.history(update.event.image.clone(), None, 500).await.unwrap();
        history.insert(update.event.image.clone(), serde_json::to_value(events).unwrap());
    }
    let hosts: Vec<Value> = store
        .reporting_hosts()
        .await
        .unwrap()
        .into_iter()
        .map(|h| json!([h.image, serde_json::to_value(&h).unwrap()]))
        .collect();
    json!({
        "updates": serde_json::to_value(&updates).unwrap(),
        "tags": serde_json::to_value(store.list_tags().await.unwrap()).unwrap(),
        "history": history,
        "hosts": hosts,
    })
}

async fn seed(store: &SqliteStore) {
    let t0 = Timestamp::now().unix_micros() - 86_400_000_000;
    for (i, (image, host)) in
        [("nginx:1", "nas"), ("nginx:1", "pi"), ("redis:7", "nas"), ("app:2", "pi"), ("nginx:1", "nas")]
            .into_iter()
            .enumerate()
    {
        let mut event = docker_event(image);
        event["hostname"] = json!(host);
        event["digest"] = json!(format!("sha256:{i}"));
        if i == 3 {
            event["metadata"] = Value::Null;
            event["created"] = Value::Null;
            event["extra_field"] = json!({ "nested": [1, 2.5, "x"] });
        }
        let event = DiunEvent::from_json(event.to_string().as_bytes()).unwrap();
        store
            .upsert_event(event, Received::At(Timestamp::from_unix_micros(t0 + i as i64 * 1_000_123)))
            .await
            .unwrap();
    }
    let prod = store.create_tag("prod".into()).await.unwrap();
    let gone = store.create_tag("gone".into()).await.unwrap();
    store.create_tag("Ärger".into()).await.unwrap();
    store.assign_tag("nginx:1".into(), prod.id).await.unwrap();
    store.assign_tag("redis:7".into(), gone.id).await.unwrap();
    store.delete_tag(gone.id).await.unwrap();
    // The highest id SQLite handed out belongs to a deleted tag: PostgreSQL must not reuse it.
    let last = store.create_tag("last".into()).await.unwrap();
    store.delete_tag(last.id).await.unwrap();
    store.acknowledge("redis:7".into(), Timestamp::from_unix_micros(t0 + 10_000_000), None).await.unwrap();
}

/// A SQLite database to move and an empty PostgreSQL schema to move it to.
struct Move {
    db: TestDb,
    url: String,
    dir: TempDir,
    path: std::path::PathBuf,
    sqlite: SqliteStore,
}

impl Move {
    async fn prepare() -> Option<Self> {
        let db = TestDb::postgres().await?;
        let Database::Postgres { url } = db.database() else { unreachable!() };
        let url = url.expose().to_string();
        let dir = TempDir::new();
        let path = dir.0.join("diun.db");
        let sqlite = SqliteStore::open(path.clone()).await.unwrap();
        Some(Self { db, url, dir, path, sqlite })
    }
}

/// Seeds the SQLite file, closes it and moves it to PostgreSQL: `--from`'s argument, and what
/// PostgreSQL answers then.
async fn seeded_and_moved(sqlite: SqliteStore, path: &std::path::Path, url: &str) -> (String, Value) {
    seed(&sqlite).await;
    sqlite.close().await;
    let from = path.display().to_string();
    let (code, stdout, stderr) = run(&["migrate", "--from", &from, "--to", url], &[], LIMIT).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let postgres = PostgresStore::open(url).await.unwrap();
    (from, api_view(&postgres).await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sqlite_deployment_moves_to_postgres_with_identical_api_output() {
    let Some(Move { db, url, dir: _dir, path, sqlite }) = Move::prepare().await else { return };
    seed(&sqlite).await;
    let before = api_view(&sqlite).await;
    sqlite.close().await;

    let from = path.display().to_string();
    let (code, stdout, stderr) = run(&["migrate", "--from", &from, "--to", &url], &[], LIMIT).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(
        stdout.contains("copied 3 update(s), 2 tag(s), 1 tag assignment(s) and 5 history event(s)"),
        "{stdout}"
    );
    // The move writes the copy of each metadata that the listing reads (migration 0005)
    // itself, before any dashboard's start would fill it in.
    let uncopied = support::query_sql(
        &url,
        "SELECT count(*) FROM updates WHERE metadata IS NOT NULL
           AND (metadata_json_received_at IS DISTINCT FROM received_at OR metadata_json::jsonb IS DISTINCT FROM metadata)",
    )
    .await;
    assert_eq!(uncopied[0].get::<_, i64>(0), 0, "rows moved without their metadata's copy");

    let postgres = PostgresStore::open(&url).await.unwrap();
    assert_eq!(api_view(&postgres).await, before, "PostgreSQL answers as SQLite did");
    // New rows continue after the copied ids.
    let next = postgres.create_tag("new".into()).await.unwrap();
    assert_eq!(next.id, 5, "the ids SQLite handed out, deleted tags' included, are not reused");
    drop(postgres);

    let (code, _, stderr) = run(&["migrate", "--from", &from, "--to", &url], &[], LIMIT).await;
    assert_eq!(code, Some(1), "a non-empty target is refused: {stderr}");
    assert!(stderr.contains("--force"), "{stderr}");
    let (code, stdout, stderr) =
        run(&["migrate", "--from", &from, "--to", &url, "--force"], &[], LIMIT).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let postgres = PostgresStore::open(&url).await.unwrap();
    assert_eq!(api_view(&postgres).await, before, "--force replaces the target with the source");
    drop(postgres);

    let (code, _, stderr) = run(&["migrate", "--from", "/nonexistent.db", "--to", &url], &[], LIMIT).await;
    assert_eq!(code, Some(1), "{stderr}");
    db.drop_schema().await;
}

/// A file that is not a dashboard's database (empty, or another program's) is refused with
/// `--force` too: it is neither changed nor copied over the target as an empty dashboard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_that_is_not_a_dashboard_database_changes_nothing() {
    let Some(Move { db, url, dir, path, sqlite }) = Move::prepare().await else { return };
    let (_, before) = seeded_and_moved(sqlite, &path, &url).await;
    let postgres = PostgresStore::open(&url).await.unwrap();

    let empty = dir.0.join("empty.db");
    std::fs::write(&empty, b"").unwrap();
    let other = dir.0.join("other.db");
    rusqlite::Connection::open(&other).unwrap().execute_batch("CREATE TABLE notes (body TEXT)").unwrap();
    let other_schema = || -> Vec<String> {
        let conn = rusqlite::Connection::open(&other).unwrap();
        let mut names = conn.prepare("SELECT name FROM sqlite_master ORDER BY name").unwrap();
        names.query_map([], |row| row.get(0)).unwrap().map(Result::unwrap).collect()
    };
    for source in [&empty, &other] {
        let from = source.display().to_string();
        let (code, _, stderr) = run(&["migrate", "--from", &from, "--to", &url, "--force"], &[], LIMIT).await;
        assert_eq!(code, Some(1), "{stderr}");
        assert!(stderr.contains("not a diun-dashboard database"), "{stderr}");
    }
    assert_eq!(std::fs::metadata(&empty).unwrap().len(), 0, "the empty file stays empty");
    assert_eq!(other_schema(), ["notes"], "the other program's database is left as it was");
    assert_eq!(api_view(&postgres).await, before, "the target keeps its rows");
    let (code, _, _) = run(&["migrate", "--to", &url], &[], LIMIT).await;
    assert_eq!(code, Some(2), "usage error");
    db.drop_schema().await;
}

/// `migrate` reads its copy back before it commits: a copy that differs from the source (here a
/// trigger on the target rewrites tag names) is rolled back, the target keeps what it held, and
/// the source file is left as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_that_differs_from_the_source_is_not_committed() {
    let Some(Move { db, url, dir: _dir, path, sqlite }) = Move::prepare().await else { return };
    let (from, before) = seeded_and_moved(sqlite, &path, &url).await;
    assert!(!before["tags"].as_array().unwrap().is_empty(), "the seed has tags: {before}");

    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(
            "CREATE FUNCTION mangle() RETURNS trigger LANGUAGE plpgsql AS
                 $$ BEGIN NEW.name := NEW.name || '!'; RETURN NEW; END $$;
             CREATE TRIGGER mangle BEFORE INSERT ON tags FOR EACH ROW EXECUTE FUNCTION mangle();",
        )
        .await
        .unwrap();
    let source_before = std::fs::read(&path).unwrap();
    let (code, stdout, stderr) =
        run(&["migrate", "--from", &from, "--to", &url, "--force"], &[], LIMIT).await;
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("the copy differs from the source; nothing was written"), "{stderr}");
    assert_eq!(std::fs::read(&path).unwrap(), source_before, "the source file changed");
    client.batch_execute("DROP TRIGGER mangle ON tags").await.unwrap();
    let postgres = PostgresStore::open(&url).await.unwrap();
    assert_eq!(api_view(&postgres).await, before, "the target keeps what it held");
    drop(postgres);
    db.drop_schema().await;
}

/// The source seeded and closed, the target migrated (empty), and two sessions of the test's own
/// on the target: one to act as a running dashboard, one to watch.
async fn seeded_source_and_sessions_on_the_target(
    sqlite: SqliteStore,
    url: &str,
) -> [tokio_postgres::Client; 2] {
    seed(&sqlite).await;
    sqlite.close().await;
    drop(PostgresStore::open(url).await.unwrap());
    let mut sessions = Vec::new();
    for _ in 0..2 {
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        sessions.push(client);
    }
    sessions.try_into().unwrap_or_else(|_| unreachable!("two sessions"))
}

/// A row a running dashboard commits while `migrate` starts is not wiped without `--force`:
/// the target is locked before its rows are counted, so the count waits for that commit and
/// sees the row. (Counted first, the target looked empty and the TRUNCATE after the commit
/// deleted the row.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_committed_while_migrate_starts_is_not_wiped() {
    let Some(Move { db, url, dir: _dir, path, sqlite }) = Move::prepare().await else { return };
    let [writer, observer] = seeded_source_and_sessions_on_the_target(sqlite, &url).await;
    writer.batch_execute("BEGIN; INSERT INTO tags (name) VALUES ('live')").await.unwrap();

    let from = path.display().to_string();
    let target = url.clone();
    let migrating =
        tokio::spawn(async move { run(&["migrate", "--from", &from, "--to", &target], &[], LIMIT).await });
    until_blocked(&observer, backend_pid(&writer).await, 1).await;
    writer.batch_execute("COMMIT").await.unwrap();

    let (code, _, stderr) = migrating.await.unwrap();
    assert_eq!(code, Some(1), "the target holds a row now: {stderr}");
    assert!(stderr.contains("--force"), "{stderr}");
    let live = observer.query("SELECT name FROM tags", &[]).await.unwrap();
    assert_eq!(live.iter().map(|row| row.get::<_, String>(0)).collect::<Vec<_>>(), ["live"]);
    db.drop_schema().await;
}

/// A stop asked while `migrate` runs (here while it waits for a running dashboard's lock) ends
/// it with one clear line, and the target is as it was. `migrate` had no signal handlers: on a
/// container's PID 1 (`docker compose run migrate`) SIGTERM and SIGINT were ignored, and the
/// copy stopped only when killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_during_migrate_ends_it_and_leaves_the_target_as_it_was() {
    let Some(Move { db, url, dir: _dir, path, sqlite }) = Move::prepare().await else { return };
    let [writer, observer] = seeded_source_and_sessions_on_the_target(sqlite, &url).await;
    writer.batch_execute("BEGIN; LOCK TABLE tags IN ACCESS SHARE MODE").await.unwrap();

    let from = path.display().to_string();
    let mut migrating = Service::spawn_with_args(&["migrate", "--from", &from, "--to", &url], &[]);
    until_blocked(&observer, backend_pid(&writer).await, 1).await;
    migrating.signal("TERM");
    assert_eq!(migrating.wait(LIMIT).await, Some(1), "{}", migrating.log());
    assert!(migrating.log().contains("stopped before the copy finished"), "{}", migrating.log());

    writer.batch_execute("COMMIT").await.unwrap();
    // Queued behind the abandoned copy's lock: counted once its backend has gone.
    let held: i64 = observer
        .query_one("SELECT (SELECT count(*) FROM updates) + (SELECT count(*) FROM tags)", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(held, 0, "the stopped copy was committed");
    db.drop_schema().await;
}

/// A running dashboard's transaction that holds one of the tables `migrate` locks and then waits
/// for another it locked first (an acknowledgement: `updates`, then `events`) makes a deadlock
/// the server breaks by failing `migrate`'s lock. `migrate` takes it again and completes; it
/// failed with "deadlock detected" before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deadlock_with_a_running_dashboard_does_not_fail_the_move() {
    let Some(Move { db, url, dir: _dir, path, sqlite }) = Move::prepare().await else { return };
    let [dashboard, observer] = seeded_source_and_sessions_on_the_target(sqlite, &url).await;
    // The server looks for the cycle from `migrate`'s side first, which waited first; this
    // session would wait longer before looking.
    dashboard
        .batch_execute(
            "SET deadlock_timeout = '20s'; BEGIN; UPDATE updates SET acknowledged_at = now() WHERE false",
        )
        .await
        .unwrap();
    let dashboard_pid = backend_pid(&dashboard).await;

    let from = path.display().to_string();
    let target = url.clone();
    let migrating = tokio::spawn(async move {
        run(&["migrate", "--from", &from, "--to", &target, "--force"], &[], LIMIT).await
    });
    // `migrate` holds tag_assignments and events, and waits for updates.
    until_blocked(&observer, dashboard_pid, 1).await;
    // The dashboard now waits for events: the cycle, which the server breaks on `migrate`'s side.
    dashboard.batch_execute("SELECT count(*) FROM events").await.unwrap();
    dashboard.batch_execute("COMMIT").await.unwrap();

    let (code, stdout, stderr) = migrating.await.unwrap();
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stderr.contains("locking the target again"), "the deadlock did not happen: {stderr}");
    db.drop_schema().await;
}

/// Numbers jsonb keeps otherwise (a negative zero, a whole float of 1e16 or more), stored by an
/// older release (intake now stores them as jsonb gives them back): the copy still counts as
/// equal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn numbers_stored_by_an_older_release_do_not_stop_the_move() {
    let Some(Move { db, url, dir: _dir, path, sqlite }) = Move::prepare().await else { return };
    let event = DiunEvent::from_json(docker_event("zero:1").to_string().as_bytes()).unwrap();
    sqlite.upsert_event(event, Received::Now).await.unwrap();
    sqlite.close().await;
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch(
        r#"UPDATE updates SET metadata = '{"w":1e16,"x":-0.0}', extra = '{"y":[-0.0]}';
           UPDATE events SET metadata = '{"w":1e16,"x":-0.0}';"#,
    )
    .unwrap();
    drop(conn);

    let from = path.display().to_string();
    let (code, stdout, stderr) = run(&["migrate", "--from", &from, "--to", &url], &[], LIMIT).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let postgres = PostgresStore::open(&url).await.unwrap();
    let listed = serde_json::to_value(postgres.list_updates().await.unwrap()).unwrap();
    assert_eq!(listed[0]["event"]["metadata"].to_string(), r#"{"w":10000000000000000,"x":0.0}"#);
    assert_eq!(listed[0]["event"]["y"].to_string(), "[0.0]");
    drop(postgres);
    db.drop_schema().await;
}

/// History pruned in SQLite up to its newest event: after the move, a new event's id still comes
/// after every id SQLite handed out (the `before` cursors of the history pages rely on ids never
/// coming back).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_ids_continue_after_the_pruned_ones() {
    let Some(Move { db, url, dir: _dir, path, sqlite }) = Move::prepare().await else { return };
    for host in ["nas", "pi", "vps"] {
        sqlite.upsert_event(support::event_from_host("a:1", host), Received::Now).await.unwrap();
    }
    sqlite.close().await;
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("DELETE FROM events WHERE id > 1").unwrap();
    drop(conn);

    let from = path.display().to_string();
    let (code, stdout, stderr) = run(&["migrate", "--from", &from, "--to", &url], &[], LIMIT).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let postgres = PostgresStore::open(&url).await.unwrap();
    postgres.upsert_event(support::event_from_host("a:1", "nas"), Received::Now).await.unwrap();
    let history = postgres.history("a:1".into(), None, 10).await.unwrap().unwrap();
    let ids: Vec<i64> = history.iter().map(|event| event.id).collect();
    assert_eq!(ids, [4, 1], "ids 2 and 3 were handed out by SQLite");
    drop(postgres);
    db.drop_schema().await;
}

/// A tag assignment left pointing at a tag or an image that is gone (the sqlite3 shell has
/// foreign keys off) is left out, and said: SQLite's dashboard shows that image untagged, and
/// PostgreSQL's foreign keys would fail the whole move on it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn assignments_pointing_nowhere_are_left_out_and_the_rest_moves() {
    let Some(Move { db, url, dir: _dir, path, sqlite }) = Move::prepare().await else { return };
    seed(&sqlite).await;
    sqlite.close().await;
    let by_hand = rusqlite::Connection::open(&path).unwrap();
    by_hand.pragma_update(None, "foreign_keys", "OFF").unwrap();
    by_hand.execute("INSERT INTO tag_assignments (image, tag_id) VALUES ('gone:1', 1)", []).unwrap();
    by_hand.execute("INSERT INTO tag_assignments (image, tag_id) VALUES ('app:2', 4242)", []).unwrap();
    drop(by_hand);
    let sqlite = SqliteStore::open(path.clone()).await.unwrap();
    let before = api_view(&sqlite).await;
    sqlite.close().await;

    let from = path.display().to_string();
    let (code, stdout, stderr) = run(&["migrate", "--from", &from, "--to", &url], &[], LIMIT).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("1 tag assignment(s) and 5 history event(s)"), "{stdout}");
    assert!(
        stdout.contains("2 tag assignment(s) pointing at a tag or an image that is gone were left out"),
        "{stdout}"
    );
    let postgres = PostgresStore::open(&url).await.unwrap();
    assert_eq!(api_view(&postgres).await, before, "PostgreSQL answers as SQLite did");
    drop(postgres);
    db.drop_schema().await;
}

/// A target that holds another application's tables (`--to` mistyped) is refused before
/// anything is written to it: no dashboard table appears beside them, `--force` or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_that_is_another_applications_database_is_left_unchanged() {
    let Some(Move { db, url, dir: _dir, path, sqlite }) = Move::prepare().await else { return };
    seed(&sqlite).await;
    sqlite.close().await;
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    client.batch_execute("CREATE TABLE invoices (id BIGINT PRIMARY KEY)").await.unwrap();
    let tables = async || -> Vec<String> {
        client
            .query(
                "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema() ORDER BY 1",
                &[],
            )
            .await
            .unwrap()
            .iter()
            .map(|row| row.get(0))
            .collect()
    };
    let from = path.display().to_string();
    for force in [false, true] {
        let mut args = vec!["migrate", "--from", &from, "--to", &url];
        if force {
            args.push("--force");
        }
        let (code, stdout, stderr) = run(&args, &[], LIMIT).await;
        assert_eq!(code, Some(1), "{stdout}{stderr}");
        assert!(stderr.contains("not a diun-dashboard database (its schema holds invoices)"), "{stderr}");
        assert_eq!(tables().await, ["invoices"], "the other application's database was written to");
    }
    client.batch_execute("DROP TABLE invoices").await.unwrap();
    let (code, stdout, stderr) = run(&["migrate", "--from", &from, "--to", &url], &[], LIMIT).await;
    assert_eq!(code, Some(0), "an empty one takes the copy: {stdout}{stderr}");
    db.drop_schema().await;
}
