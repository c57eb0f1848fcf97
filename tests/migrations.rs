//! Upgrades keep data: a database written by an earlier schema migrates forward intact, a
//! second start is a no-op, and a database from a newer release is refused.

mod support;

use diun_dashboard::model::DiunEvent;
use diun_dashboard::store::UpdateStore;
use diun_dashboard::store::migrate::{self, Migration};
use diun_dashboard::time::Timestamp;
use include_dir::{Dir, include_dir};
use support::docker_event;

/// A stand-in for a future release's migration. Not idempotent on purpose: applying it twice
/// would fail, so a second start proves it is not re-applied.
fn fake_0002() -> Migration {
    Migration {
        version: 2,
        name: "fake_notes".into(),
        sql: "CREATE TABLE notes (image TEXT PRIMARY KEY, note TEXT NOT NULL);
              ALTER TABLE updates ADD COLUMN note TEXT NOT NULL DEFAULT 'none';"
            .into(),
    }
}

fn with_fake(current: &Dir<'_>) -> Vec<Migration> {
    let mut migrations = migrate::from_dir(current).unwrap();
    migrations.push(fake_0002());
    migrations
}

async fn seed<S: UpdateStore>(store: &S) {
    for image in ["docker.io/library/nginx:1.27", "ghcr.io/org/app:2.1"] {
        let event = DiunEvent::from_json(docker_event(image).to_string().as_bytes()).unwrap();
        store.upsert_event(event, Timestamp::now()).await.unwrap();
    }
    let tag = store.create_tag("prod".into()).await.unwrap();
    store.assign_tag("ghcr.io/org/app:2.1".into(), tag.id).await.unwrap();
    store.acknowledge("docker.io/library/nginx:1.27".into(), Timestamp::now()).await.unwrap();
}

#[cfg(feature = "sqlite")]
mod sqlite {
    use super::*;
    use diun_dashboard::store::sqlite::SqliteStore;

    static MIGRATIONS: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/migrations/sqlite");

    #[tokio::test]
    async fn an_older_database_migrates_forward_with_its_data() {
        let dir = support::TempDir::new();
        let path = dir.0.join("old.db");
        let old =
            SqliteStore::open_with(path.clone(), migrate::from_dir(&MIGRATIONS).unwrap()).await.unwrap();
        seed(&old).await;
        let before = (old.list_updates().await.unwrap(), old.list_tags().await.unwrap());
        old.close().await;

        let upgraded = SqliteStore::open_with(path.clone(), with_fake(&MIGRATIONS)).await.unwrap();
        assert_eq!((upgraded.list_updates().await.unwrap(), upgraded.list_tags().await.unwrap()), before);
        upgraded.close().await;

        let again = SqliteStore::open_with(path.clone(), with_fake(&MIGRATIONS)).await;
        assert!(again.is_ok(), "a second start re-applied a migration: {:?}", again.err());
        again.unwrap().close().await;

        let conn = rusqlite::Connection::open(&path).unwrap();
        let versions: Vec<(i64, String)> = conn
            .prepare("SELECT version, name FROM schema_migrations ORDER BY version")
            .unwrap()
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let expected_last = (2, "fake_notes".to_string());
        assert_eq!(versions.last(), Some(&expected_last));
        let note: String = conn.query_row("SELECT note FROM updates LIMIT 1", [], |row| row.get(0)).unwrap();
        assert_eq!(note, "none");
    }

    #[tokio::test]
    async fn a_database_from_a_newer_release_is_refused() {
        let dir = support::TempDir::new();
        let path = dir.0.join("new.db");
        SqliteStore::open_with(path.clone(), with_fake(&MIGRATIONS)).await.unwrap().close().await;
        let older = SqliteStore::open_with(path, migrate::from_dir(&MIGRATIONS).unwrap()).await;
        let err = older.err().expect("an older binary must refuse the newer schema");
        assert!(err.contains("newer"), "{err}");
    }
}

#[cfg(feature = "postgres")]
mod postgres {
    use super::*;
    use diun_dashboard::config::Database;
    use diun_dashboard::store::postgres::PostgresStore;
    use support::TestDb;

    static MIGRATIONS: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/migrations/postgres");

    fn url(db: &TestDb) -> String {
        match db.database() {
            Database::Postgres { url } => url.expose().to_string(),
            Database::Sqlite { .. } => unreachable!("a PostgreSQL test database"),
        }
    }

    #[tokio::test]
    async fn an_older_database_migrates_forward_with_its_data() {
        let Some(db) = TestDb::postgres().await else { return };
        let url = url(&db);
        let old = PostgresStore::open_with(&url, migrate::from_dir(&MIGRATIONS).unwrap()).await.unwrap();
        seed(&old).await;
        let before = (old.list_updates().await.unwrap(), old.list_tags().await.unwrap());
        drop(old);

        let upgraded = PostgresStore::open_with(&url, with_fake(&MIGRATIONS)).await.unwrap();
        assert_eq!((upgraded.list_updates().await.unwrap(), upgraded.list_tags().await.unwrap()), before);
        drop(upgraded);
        let again = PostgresStore::open_with(&url, with_fake(&MIGRATIONS)).await;
        assert!(again.is_ok(), "a second start re-applied a migration: {:?}", again.err());
        drop(again);

        let older = PostgresStore::open_with(&url, migrate::from_dir(&MIGRATIONS).unwrap()).await;
        let err = older.err().expect("an older binary must refuse the newer schema");
        assert!(err.contains("newer"), "{err}");
        db.drop_schema().await;
    }
}
