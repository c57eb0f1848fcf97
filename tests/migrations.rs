//! Upgrades keep data: a database written by release 0.1 (schema 0001, kept as fixtures)
//! opens and migrates forward with everything in it, a second start is a no-op, and a
//! database from a newer release is refused.

mod support;

use diun_dashboard::model::DiunEvent;
use diun_dashboard::store::migrate::{self, Migration};
use diun_dashboard::store::{Received, UpdateStore};
use include_dir::Dir;
use serde_json::{Value, json};

/// A stand-in for a future release's migration. Not idempotent on purpose: applying it twice
/// would fail, so a second start proves it is not re-applied.
fn fake_next(current: &[Migration]) -> Migration {
    Migration {
        version: current.last().map_or(1, |m| m.version + 1),
        name: "fake_notes".into(),
        sql: "CREATE TABLE notes (image TEXT PRIMARY KEY, note TEXT NOT NULL);
              ALTER TABLE updates ADD COLUMN note TEXT NOT NULL DEFAULT 'none';"
            .into(),
    }
}

fn with_fake_next(dir: &Dir<'_>) -> Vec<Migration> {
    let mut migrations = migrate::from_dir(dir).unwrap();
    migrations.push(fake_next(&migrations));
    migrations
}

/// What the fixtures hold, as the API shows it.
fn fixture_updates() -> Value {
    json!([
        {
            "event": {
                "diun_version": "4.28.0", "hostname": "nas", "status": "update", "provider": "docker",
                "image": "docker.io/library/nginx:1.27", "hub_link": "https://hub.docker.com/_/nginx",
                "mime_type": "application/vnd.docker.distribution.manifest.list.v2+json",
                "digest": "sha256:aaa", "created": "2024-05-14T18:21:39.584547123Z", "platform": "linux/amd64",
                "metadata": { "ctn_names": "web", "ctn_state": "running" }
            },
            "received_at": "2024-06-01T10:00:00.000000Z",
            "acknowledged": true,
            "acknowledged_at": "2024-06-02T08:30:00.000000Z",
            "tag": { "id": 1, "name": "prod" }
        },
        {
            "event": {
                "diun_version": "4.28.0", "hostname": "pi", "status": "new", "provider": "swarm",
                "image": "ghcr.io/org/app:2.1", "hub_link": "",
                "mime_type": "application/vnd.oci.image.index.v1+json",
                "digest": "sha256:bbb", "created": null, "platform": "linux/arm64", "metadata": null,
                "future": true
            },
            "received_at": "2024-06-03T12:00:00.123456Z",
            "acknowledged": false,
            "acknowledged_at": null,
            "tag": null
        }
    ])
}

/// Checks an upgraded fixture: data as it was, and each update's first history entry.
async fn assert_fixture_upgraded<S: UpdateStore>(store: &S) {
    assert_eq!(serde_json::to_value(store.list_updates().await.unwrap()).unwrap(), fixture_updates());
    assert_eq!(
        serde_json::to_value(store.list_tags().await.unwrap()).unwrap(),
        json!([{ "id": 1, "name": "prod" }])
    );
    let history = store.history("docker.io/library/nginx:1.27".into(), None, 10).await.unwrap().unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].digest, "sha256:aaa");
    assert_eq!(
        history[0].acknowledged_at.map(|t| t.to_string()).as_deref(),
        Some("2024-06-02T08:30:00.000000Z")
    );
    let hosts = store.reporting_hosts().await.unwrap();
    assert_eq!(
        hosts.iter().map(|h| (h.image.as_str(), h.hostname.as_str())).collect::<Vec<_>>(),
        [("docker.io/library/nginx:1.27", "nas"), ("ghcr.io/org/app:2.1", "pi")],
        "the acknowledged update's host too: its first history entry carries the acknowledgement"
    );
    // And it keeps working: a new event on the old data keeps the tag.
    let event =
        DiunEvent::from_json(support::docker_event("docker.io/library/nginx:1.27").to_string().as_bytes())
            .unwrap();
    store.upsert_event(event, Received::Now).await.unwrap();
    let updates = store.list_updates().await.unwrap();
    assert_eq!(updates[0].tag.as_ref().map(|t| t.name.as_str()), Some("prod"));
    assert_eq!(
        store.history("docker.io/library/nginx:1.27".into(), None, 10).await.unwrap().unwrap().len(),
        2
    );
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
    use diun_dashboard::store::sqlite::SqliteStore;

    static MIGRATIONS: Dir<'static> = include_dir::include_dir!("$CARGO_MANIFEST_DIR/migrations/sqlite");

    fn fixture_copy(dir: &support::TempDir) -> std::path::PathBuf {
        let path = dir.0.join("from-0.1.db");
        std::fs::copy(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/sqlite-0001.db"), &path).unwrap();
        path
    }

    #[tokio::test]
    async fn a_release_0_1_database_migrates_forward_with_its_data() {
        let dir = support::TempDir::new();
        let path = fixture_copy(&dir);
        let store = SqliteStore::open(path.clone()).await.unwrap();
        assert_fixture_upgraded(&store).await;
        store.close().await;

        let again = SqliteStore::open_with(path.clone(), with_fake_next(&MIGRATIONS)).await;
        assert!(again.is_ok(), "{:?}", again.err());
        again.unwrap().close().await;
        let twice = SqliteStore::open_with(path.clone(), with_fake_next(&MIGRATIONS)).await;
        assert!(twice.is_ok(), "a second start re-applied a migration: {:?}", twice.err());
        twice.unwrap().close().await;

        let conn = rusqlite::Connection::open(&path).unwrap();
        let versions: Vec<i64> = conn
            .prepare("SELECT version FROM schema_migrations ORDER BY version")
            .unwrap()
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let all = with_fake_next(&MIGRATIONS);
        assert_eq!(versions, all.iter().map(|m| m.version).collect::<Vec<_>>());
        assert_eq!(
            conn.query_row("PRAGMA integrity_check", [], |row| row.get::<_, String>(0)).unwrap(),
            "ok"
        );
    }

    /// A later migration that rebuilds a table the usual SQLite way (create, copy, drop,
    /// rename) keeps the tag assignments pointing at it; one that would leave an assignment
    /// pointing nowhere is refused, and nothing of it is kept.
    #[tokio::test]
    async fn a_migration_rebuilding_a_table_keeps_the_tag_assignments() {
        let dir = support::TempDir::new();
        let path = dir.0.join("rebuilt.db");
        let store = SqliteStore::open(path.clone()).await.unwrap();
        let event = DiunEvent::from_json(support::docker_event("nginx:1.27").to_string().as_bytes()).unwrap();
        store.upsert_event(event, Received::Now).await.unwrap();
        let tag = store.create_tag("prod".into()).await.unwrap();
        store.assign_tag("nginx:1.27".into(), tag.id).await.unwrap();
        store.close().await;
        // An assignment left pointing nowhere by hand (the sqlite3 shell has foreign keys off)
        // is not a migration's doing, and blocks none.
        let by_hand = rusqlite::Connection::open(&path).unwrap();
        by_hand.pragma_update(None, "foreign_keys", "OFF").unwrap();
        by_hand
            .execute("INSERT INTO tag_assignments (image, tag_id) VALUES ('gone:1', ?1)", [tag.id])
            .unwrap();
        drop(by_hand);
        let tag_of_nginx = |store: SqliteStore| async move {
            let updates = store.list_updates().await.unwrap();
            store.close().await;
            updates[0].tag.as_ref().map(|tag| tag.name.clone())
        };
        let next = |name: &str, sql: &str| {
            let mut migrations = migrate::from_dir(&MIGRATIONS).unwrap();
            let version = migrations.last().unwrap().version + 1;
            migrations.push(Migration { version, name: name.into(), sql: sql.into() });
            migrations
        };

        let orphaning = next("orphaning", "DELETE FROM tags");
        let refused =
            SqliteStore::open_with(path.clone(), orphaning).await.err().expect("a dangling assignment");
        assert!(refused.contains("more reference(s) to rows that are gone"), "{refused}");
        let store = SqliteStore::open(path.clone()).await.unwrap();
        assert_eq!(tag_of_nginx(store).await.as_deref(), Some("prod"), "the refused migration was kept");

        let rebuilding = next(
            "tag_colours",
            "CREATE TABLE tags_new (
                 id     INTEGER PRIMARY KEY AUTOINCREMENT,
                 name   TEXT NOT NULL UNIQUE,
                 colour TEXT NOT NULL DEFAULT 'grey'
             ) STRICT;
             INSERT INTO tags_new (id, name) SELECT id, name FROM tags;
             DROP TABLE tags;
             ALTER TABLE tags_new RENAME TO tags;",
        );
        let store = SqliteStore::open_with(path.clone(), rebuilding.clone()).await.unwrap();
        assert_eq!(tag_of_nginx(store).await.as_deref(), Some("prod"), "the rebuild dropped the assignment");

        // Foreign keys are on again after the migrations: a deleted tag takes its assignments.
        let store = SqliteStore::open_with(path.clone(), rebuilding).await.unwrap();
        assert!(store.delete_tag(tag.id).await.unwrap());
        store.close().await;
        let conn = rusqlite::Connection::open(&path).unwrap();
        let left: i64 = conn.query_row("SELECT count(*) FROM tag_assignments", [], |row| row.get(0)).unwrap();
        assert_eq!(left, 0, "the assignment outlived its tag");
    }

    #[tokio::test]
    async fn a_database_from_a_newer_release_is_refused() {
        let dir = support::TempDir::new();
        let path = dir.0.join("new.db");
        SqliteStore::open_with(path.clone(), with_fake_next(&MIGRATIONS)).await.unwrap().close().await;
        let err = SqliteStore::open(path).await.err().expect("an older binary must refuse the newer schema");
        assert!(err.contains("newer"), "{err}");
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use diun_dashboard::config::Database;
    use diun_dashboard::store::postgres::PostgresStore;
    use support::TestDb;

    static MIGRATIONS: Dir<'static> = include_dir::include_dir!("$CARGO_MANIFEST_DIR/migrations/postgres");

    #[tokio::test]
    async fn a_release_0_1_database_migrates_forward_with_its_data() {
        let Some(db) = TestDb::postgres().await else { return };
        let (TestDb::Postgres { base_url, schema }, Database::Postgres { url }) = (&db, db.database()) else {
            unreachable!("a PostgreSQL test database")
        };
        let fixture = include_str!("fixtures/postgres-0001.sql");
        support::run_sql(base_url, &format!("SET search_path TO {schema};\n{fixture}")).await;
        let url = url.expose().to_string();

        let store = PostgresStore::open(&url).await.unwrap();
        assert_fixture_upgraded(&store).await;
        drop(store);
        let again = PostgresStore::open_with(&url, with_fake_next(&MIGRATIONS)).await;
        assert!(again.is_ok(), "{:?}", again.err());
        drop(again);
        let twice = PostgresStore::open_with(&url, with_fake_next(&MIGRATIONS)).await;
        assert!(twice.is_ok(), "a second start re-applied a migration: {:?}", twice.err());
        drop(twice);
        let err =
            PostgresStore::open(&url).await.err().expect("an older binary must refuse the newer schema");
        assert!(err.contains("newer"), "{err}");
        db.drop_schema().await;
    }

    /// A PostgreSQL test database, migrated by a first start, and its URL.
    async fn migrated() -> Option<(TestDb, String)> {
        let db = TestDb::postgres().await?;
        let Database::Postgres { url } = db.database() else { unreachable!() };
        let url = url.expose().to_string();
        drop(PostgresStore::open(&url).await.unwrap());
        Some((db, url))
    }

    /// Migration 0005: the service stores the metadata's text as it wrote it beside the jsonb,
    /// stamped with the report, and the listing reads that copy; a row whose copy does not
    /// belong to its metadata (written by a replica of an earlier release during a rolling
    /// upgrade, before the migration, or edited by hand) is listed from its jsonb, and the next
    /// start stores its copy.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_row_written_without_the_metadata_copy_is_listed_from_its_jsonb_until_a_start_fills_it() {
        let Some(db) = TestDb::postgres().await else { return };
        let Database::Postgres { url } = db.database() else { unreachable!() };
        let url = url.expose().to_string();
        let app = support::TestApp::start(db, None).await;
        assert_eq!(app.webhook(&support::docker_event("nginx:1")).await.status, 200);
        let copy = async || {
            let rows = app
                .db
                .query("SELECT metadata_json, metadata_json_received_at = received_at FROM updates")
                .await;
            let [row] = &rows[..] else { panic!("one image expected, {} found", rows.len()) };
            (row.get::<_, Option<String>>(0), row.get::<_, Option<bool>>(1))
        };
        let written = serde_json::to_string(&support::docker_event("nginx:1")["metadata"]).unwrap();
        assert_eq!(copy().await, (Some(written), Some(true)), "the webhook's copy");
        // Reports of an image already stored (the upsert's update, which the trigger below
        // watches), one at a time and sent together (a batch that may hold the image twice).
        let mut event = support::docker_event("nginx:1");
        event["metadata"]["ctn_status"] = json!("Up 3 days");
        assert_eq!(app.webhook(&event).await.status, 200);
        let written = serde_json::to_string(&event["metadata"]).unwrap();
        assert_eq!(copy().await, (Some(written), Some(true)), "the next report's copy");
        let reports = (0..20).map(|n| {
            let mut event = support::docker_event("nginx:1");
            event["metadata"]["ctn_status"] = json!(format!("Up {n} days"));
            event
        });
        let sent = reports.map(|event| {
            let app = &app;
            async move { app.webhook(&event).await }
        });
        let answers = futures_util::future::join_all(sent).await;
        assert!(answers.iter().all(|answer| answer.status == 200));
        let matches = app.db.query("SELECT metadata_json::jsonb = metadata FROM updates").await;
        assert_eq!((copy().await.1, matches[0].get::<_, bool>(0)), (Some(true), true), "a batch's copy");
        let listed = async || app.get("/api/updates").await.text();

        // What the listing reads: the copy, while its stamp is the report's.
        app.db.query(r#"UPDATE updates SET metadata_json = '{"copy":"read"}'"#).await;
        let text = listed().await;
        assert!(text.contains(r#""metadata":{"copy":"read"}"#), "the copy is not what is listed: {text}");
        app.db
            .query("UPDATE updates SET metadata_json_received_at = received_at - interval '1 second'")
            .await;
        let text = listed().await;
        assert!(!text.contains("copy"), "a copy of another report is listed: {text}");

        // The metadata changed by hand, the report's time left as it was: the copy is void.
        app.db
            .query(r#"UPDATE updates SET metadata_json = '{"copy":"stale"}', metadata_json_received_at = received_at"#)
            .await;
        app.db.query(r#"UPDATE updates SET metadata = '{"zz": "1", "a": "2", "ctn_names": "edited"}'"#).await;
        let rewritten = r#""metadata":{"a":"2","ctn_names":"edited","zz":"1"}"#;
        let text = listed().await;
        assert!(text.contains(rewritten), "not listed from the jsonb: {text}");

        drop(PostgresStore::open(&url).await.unwrap());
        let filled = rewritten.trim_start_matches(r#""metadata":"#).to_string();
        assert_eq!(copy().await, (Some(filled), Some(true)), "the copy stored at start");
        assert!(listed().await.contains(rewritten));
    }

    /// The start-up fill goes through a database of any size in chunks, and skips a row another
    /// session holds instead of waiting for it (start-up goes on; the next start copies it).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_copy_is_filled_at_start_past_a_row_another_session_holds() {
        let Some((db, url)) = migrated().await else { return };
        // As written before migration 0005 (or by an earlier release): no copies.
        db.query(
            "INSERT INTO updates (image, metadata, received_at)
             SELECT 'image-' || g, jsonb_build_object('ctn_names', 'c' || g, 'ctn_id', g::text), now()
             FROM generate_series(1, 2500) g",
        )
        .await;
        let uncopied = async || {
            let sql =
                "SELECT count(*) FROM updates WHERE metadata_json_received_at IS DISTINCT FROM received_at
                          OR metadata_json::jsonb IS DISTINCT FROM metadata";
            db.query(sql).await[0].get::<_, i64>(0)
        };
        assert_eq!(uncopied().await, 2500);
        let holder = support::connect(&url).await;
        holder
            .batch_execute("BEGIN; SELECT 1 FROM updates WHERE image = 'image-1500' FOR UPDATE")
            .await
            .unwrap();

        let opening = tokio::time::timeout(std::time::Duration::from_secs(60), PostgresStore::open(&url));
        drop(opening.await.expect("start-up waited for the held row").unwrap());
        assert_eq!(uncopied().await, 1, "every row but the held one is copied");
        holder.batch_execute("ROLLBACK").await.unwrap();
        drop(PostgresStore::open(&url).await.unwrap());
        assert_eq!(uncopied().await, 0);
        db.drop_schema().await;
    }

    /// A newer replica's migration that retypes a column a query returns makes the server refuse
    /// that query's prepared statement on each connection of an older replica still running
    /// ("cached plan must not change result type"). It is prepared again at once: no request
    /// fails for it (a webhook failed so would be lost: DIUN does not send it again).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_column_retyped_under_a_running_replica_fails_no_request() {
        let Some(db) = TestDb::postgres().await else { return };
        let app = support::TestApp::start(db, None).await;
        assert_eq!(app.webhook(&support::docker_event("nginx:1")).await.status, 200);
        const HISTORY: &str = "/api/updates/nginx%3A1/history";
        // Side by side, so that several pooled connections prepare the statement.
        let prepared = futures_util::future::join_all((0..20).map(|_| app.get(HISTORY))).await;
        assert!(prepared.iter().all(|response| response.status == 200));

        app.db.query("ALTER TABLE events ALTER COLUMN hostname TYPE varchar(255)").await;
        for _ in 0..40 {
            let response = app.get(HISTORY).await;
            assert_eq!(response.status, 200, "{}", response.text());
        }
    }

    /// The same inside a transaction (the listing, an acknowledgement), where the refusal has
    /// ended the transaction and it cannot go on: the request is answered 503 ("try again"),
    /// not 500, once per connection that had prepared it, and the next ones pass.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_column_retyped_under_a_running_replica_is_a_503_inside_a_transaction() {
        let Some(db) = TestDb::postgres().await else { return };
        let app = support::TestApp::start(db, None).await;
        assert_eq!(app.webhook(&support::docker_event("nginx:1")).await.status, 200);
        let prepared = futures_util::future::join_all((0..20).map(|_| app.get("/api/updates"))).await;
        assert!(prepared.iter().all(|response| response.status == 200));

        app.db.query("ALTER TABLE updates ALTER COLUMN hostname TYPE varchar(255)").await;
        let mut statuses = Vec::new();
        for _ in 0..60 {
            let response = app.get("/api/updates").await;
            assert!(matches!(response.status, 200 | 503), "{} {}", response.status, response.text());
            statuses.push(response.status);
        }
        assert!(statuses.contains(&503), "the retype refused no statement: the test set nothing up");
        assert!(statuses.ends_with(&[200; 20]), "{statuses:?}");
    }

    /// A migration that waits for a table another session holds (a `pg_dump`, a `psql` left in
    /// a transaction) fails start-up after a while with the reason, having applied nothing,
    /// instead of hanging in silence with every other replica's query queued behind its ALTER.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_migration_blocked_by_another_sessions_lock_fails_with_the_reason() {
        let Some((db, url)) = migrated().await else { return };
        let (holder, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.unwrap();
        tokio::spawn(connection);
        holder.batch_execute("BEGIN; LOCK TABLE updates IN ACCESS SHARE MODE").await.unwrap();

        let opening = PostgresStore::open_with(&url, with_fake_next(&MIGRATIONS));
        let opened = tokio::time::timeout(std::time::Duration::from_secs(60), opening)
            .await
            .expect("start-up hung behind the lock");
        let err = opened.err().expect("a migration blocked by a lock must fail");
        assert!(err.contains("fake_notes") && err.contains("lock timeout"), "{err}");

        holder.batch_execute("ROLLBACK").await.unwrap();
        let applied = holder
            .query_one("SELECT count(*) FROM schema_migrations WHERE name = 'fake_notes'", &[])
            .await
            .unwrap()
            .get::<_, i64>(0);
        assert_eq!(applied, 0, "the failed migration was recorded");
        let later = PostgresStore::open_with(&url, with_fake_next(&MIGRATIONS)).await;
        assert!(later.is_ok(), "once the lock is gone it applies: {:?}", later.err());
        drop(later);
        db.drop_schema().await;
    }
}
