//! `diun-dashboard migrate --from <sqlite file> --to <postgres url>`: moves a SQLite
//! deployment to PostgreSQL. Everything (updates, tags, assignments, history) is copied in one
//! transaction and compared with the source before it commits, so the target ends up either
//! complete and identical or untouched.

use std::path::Path;
use std::time::SystemTime;

use rusqlite::{Connection, OpenFlags};
use tokio_postgres::{NoTls, Transaction};

use crate::store::{postgres, replicas, sqlite};
use crate::time::Timestamp;

/// Times the target's lock is taken when the server fails it to break a deadlock.
const LOCK_ATTEMPTS: u32 = 5;

/// How many rows of each table were copied.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Copied {
    pub updates: usize,
    pub tags: usize,
    pub assignments: usize,
    pub events: usize,
    /// Assignments left out: pointing at a tag or an image that is gone (see [`read_sqlite`]).
    pub dangling_assignments: usize,
}

/// The highest id SQLite's AUTOINCREMENT has handed out per table (`sqlite_sequence`), deleted
/// rows' included: PostgreSQL's identities continue after them, so that a deleted tag's id is
/// never handed out again, on either side of the move.
#[derive(Debug, Clone, Copy)]
struct HighestIds {
    tags: i64,
    events: i64,
}

/// The source tables, read in one read transaction.
#[derive(Debug, Default, PartialEq)]
struct Snapshot {
    updates: Vec<UpdateRow>,
    tags: Vec<(i64, String)>,
    assignments: Vec<(String, i64)>,
    events: Vec<EventRow>,
}

#[derive(Debug, PartialEq)]
struct UpdateRow {
    text: [String; 9],
    created: Option<String>,
    metadata: Option<String>,
    extra: Option<String>,
    received_at: Timestamp,
    acknowledged_at: Option<Timestamp>,
}

#[derive(Debug, PartialEq)]
struct EventRow {
    id: i64,
    text: [String; 4],
    created: Option<String>,
    metadata: Option<String>,
    received_at: Timestamp,
    acknowledged_at: Option<Timestamp>,
}

/// A server that has not answered by then is not going to.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

const UPDATE_TEXT_COLUMNS: &str =
    "image, diun_version, hostname, status, provider, hub_link, mime_type, digest, platform";

pub async fn migrate(from: &Path, to: &str, force: bool) -> Result<Copied, String> {
    if !from.is_file() {
        return Err(format!("{} is not a file", from.display()));
    }
    // Both schemas are brought up to date first, on the connections the copy uses, so both
    // have the same tables.
    let path = from.to_path_buf();
    let sqlite_migrations = sqlite::migrations()?;
    let (source, highest, dangling_assignments) = tokio::task::spawn_blocking(move || {
        let mut conn = Connection::open_with_flags(&path, OpenFlags::SQLITE_OPEN_READ_WRITE)
            .map_err(|err| err.to_string())?;
        check_is_a_dashboard_database(&conn)?;
        sqlite::run_migrations(&mut conn, &sqlite_migrations)?;
        read_sqlite(&mut conn).map_err(|err| err.to_string())
    })
    .await
    .map_err(|err| format!("reading task failed: {err}"))?
    .map_err(|err| format!("cannot read {}: {err}", from.display()))?;

    // As the service connects: the primary of several hosts (a standby fails the copy at its
    // lock), a dead peer noticed within a minute.
    let config = postgres::client_config(to, "the --to URL")?;
    let connecting = tokio::time::timeout(CONNECT_TIMEOUT, config.connect(NoTls));
    let (mut client, connection) = connecting
        .await
        .map_err(|_| "timed out connecting to PostgreSQL".to_string())?
        .map_err(|err| format!("cannot connect to PostgreSQL: {err}"))?;
    let driver = tokio::spawn(connection);
    postgres::check_encoding(&client).await?;
    check_target_is_empty_or_a_dashboard(&client).await?;
    postgres::run_migrations(&mut client, &postgres::migrations()?).await?;
    // Locked before they are counted: a running dashboard's commit then either counts or waits
    // until the copy is done, and is never emptied away by the TRUNCATE below unasked. A
    // dashboard's transactions take these tables in different orders (an acknowledgement
    // `updates` then `events`, a listing `updates` then `tag_assignments`, a group's dismissal
    // `tags` then `updates`), so no order of ours avoids them all: when the server breaks a
    // deadlock by failing this lock, it is taken again, and nothing was done meanwhile.
    let mut attempt = 1;
    let tx = loop {
        let tx = client.transaction().await.map_err(pg("begin"))?;
        match tx
            .batch_execute("LOCK TABLE tag_assignments, events, updates, tags IN ACCESS EXCLUSIVE MODE")
            .await
        {
            Ok(()) => break tx,
            Err(err)
                if attempt < LOCK_ATTEMPTS
                    && err.code() == Some(&tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED) =>
            {
                log::warn!(
                    "locking the target again: a running dashboard's transaction and this one waited for each other"
                );
                attempt += 1;
            }
            Err(err) => return Err(pg("lock the target")(err)),
        }
    };
    let existing: i64 = tx
        .query_one(
            "SELECT (SELECT count(*) FROM updates) + (SELECT count(*) FROM tags) + (SELECT count(*) FROM events)",
            &[],
        )
        .await
        .map_err(pg("count target rows"))?
        .get(0);
    if existing > 0 && !force {
        return Err(format!(
            "the PostgreSQL database already holds {existing} row(s); use --force to replace them"
        ));
    }
    tx.batch_execute("TRUNCATE tag_assignments, events, updates, tags RESTART IDENTITY")
        .await
        .map_err(pg("empty the target"))?;
    write_postgres(&tx, &source, highest).await?;
    let copied = read_postgres(&tx).await?;
    if copied != source {
        return Err("the copy differs from the source; nothing was written".into());
    }
    tell_the_replicas(&tx, &source).await?;
    tx.commit().await.map_err(pg("commit"))?;
    drop(client);
    let _ = driver.await;
    Ok(Copied {
        updates: source.updates.len(),
        tags: source.tags.len(),
        assignments: source.assignments.len(),
        events: source.events.len(),
        dangling_assignments,
    })
}

/// The source is migrated in place, as this release's dashboard would on start; but only a
/// dashboard's database. Any other file (`--from` mistyped, another program's database, an
/// empty file a volume mount created) would get this schema written into it, and then be
/// copied as an empty dashboard, over the target's rows with `--force`.
fn check_is_a_dashboard_database(conn: &Connection) -> Result<(), String> {
    let tables: i64 = conn
        .query_row(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name IN ('schema_migrations', 'updates')",
            [],
            |row| row.get(0),
        )
        .map_err(|err| err.to_string())?;
    if tables == 2 {
        Ok(())
    } else {
        Err("not a diun-dashboard database (it has no schema_migrations and updates tables); left unchanged"
            .into())
    }
}

/// Dashboards already serving the target (`--force`) would show what it held until their next
/// safety poll, and their clocks would stamp new reports by their own time, which may come
/// before the copied reports' (a SQLite host whose clock ran ahead): "dismiss all up to what I
/// saw" would then cover a new report unseen. They hear of the copy as of any other replica's
/// change, when it commits (a notice sent in a transaction is delivered at its commit).
async fn tell_the_replicas(tx: &Transaction<'_>, source: &Snapshot) -> Result<(), String> {
    let schema: String = tx
        .query_one("SELECT current_schema()::text", &[])
        .await
        .and_then(|row| row.try_get(0))
        .map_err(pg("read the target's schema"))?;
    let newest = source
        .updates
        .iter()
        .map(|update| update.received_at)
        .chain(source.events.iter().map(|event| event.received_at))
        .max();
    let notice = replicas::everything_changed(newest)?;
    tx.execute("SELECT pg_notify($1, $2)", &[&replicas::channel_for(&schema), &notice])
        .await
        .map(drop)
        .map_err(pg("tell the dashboards serving the target"))
}

/// The target's schema is written before the copy's transaction (the migrations take their own),
/// so a mistyped `--to` naming another application's database would get this schema's tables
/// even when the copy is then refused. Refused first instead, unless its schema holds nothing of
/// its own: no table at all, or a dashboard's (`schema_migrations` and `updates`), or the
/// `schema_migrations` alone that a first start stopped before its first migration leaves.
async fn check_target_is_empty_or_a_dashboard(client: &tokio_postgres::Client) -> Result<(), String> {
    let tables: Vec<String> = client
        .query(
            "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
             WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
               -- An extension's own (pg_stat_statements' views, PostGIS's spatial_ref_sys) are
               -- in an empty managed database too.
               AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = c.oid AND d.deptype = 'e')
             ORDER BY c.relname COLLATE \"C\"",
            &[],
        )
        .await
        .map_err(pg("list the target's tables"))?
        .iter()
        .map(|row| row.try_get(0))
        .collect::<Result<_, _>>()
        .map_err(pg("list the target's tables"))?;
    let has = |name: &str| tables.iter().any(|table| table == name);
    if tables.is_empty() || (has("schema_migrations") && (has("updates") || tables.len() == 1)) {
        return Ok(());
    }
    let named = tables.iter().take(5).map(String::as_str).collect::<Vec<_>>().join(", ");
    let more = if tables.len() > 5 { ", …" } else { "" };
    Err(format!(
        "the PostgreSQL database is not a diun-dashboard database (its schema holds {named}{more}); \
         left unchanged: give --to an empty database"
    ))
}

fn pg(what: &'static str) -> impl Fn(tokio_postgres::Error) -> String {
    move |err| match err.as_db_error() {
        Some(db) => format!("cannot {what}: {}", db.message()),
        None => format!("cannot {what}: {err}"),
    }
}

fn parse_time(text: &str) -> rusqlite::Result<Timestamp> {
    Timestamp::parse_rfc3339(text).ok_or_else(|| {
        rusqlite::Error::InvalidColumnType(0, format!("timestamp {text:?}"), rusqlite::types::Type::Text)
    })
}

/// The source's rows, its highest ids, and how many tag assignments point at a tag or an image
/// that is gone. Those are left out: a file edited in the sqlite3 shell (foreign keys off there)
/// can hold them, SQLite's dashboard shows those images untagged, and PostgreSQL's foreign keys
/// would fail the whole copy on them.
fn read_sqlite(conn: &mut Connection) -> rusqlite::Result<(Snapshot, HighestIds, usize)> {
    let tx = conn.transaction()?;
    let mut snapshot = Snapshot::default();
    {
        let mut stmt = tx.prepare(&format!(
            "SELECT {UPDATE_TEXT_COLUMNS}, created, metadata, extra, received_at, acknowledged_at
             FROM updates ORDER BY image"
        ))?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let columns = (0..9).map(|i| row.get(i)).collect::<rusqlite::Result<Vec<String>>>()?;
            let text: [String; 9] = columns.try_into().unwrap_or_default();
            snapshot.updates.push(UpdateRow {
                text,
                created: row.get(9)?,
                metadata: row.get(10)?,
                extra: row.get(11)?,
                received_at: parse_time(&row.get::<_, String>(12)?)?,
                acknowledged_at: row.get::<_, Option<String>>(13)?.as_deref().map(parse_time).transpose()?,
            });
        }
        let mut stmt = tx.prepare("SELECT id, name FROM tags ORDER BY id")?;
        snapshot.tags =
            stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?.collect::<Result<_, _>>()?;
        let mut stmt = tx.prepare(
            "SELECT image, tag_id FROM tag_assignments
             WHERE image IN (SELECT image FROM updates) AND tag_id IN (SELECT id FROM tags)
             ORDER BY image",
        )?;
        snapshot.assignments =
            stmt.query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?.collect::<Result<_, _>>()?;
        let mut stmt = tx.prepare(
            "SELECT id, image, hostname, status, digest, created, metadata, received_at, acknowledged_at
             FROM events ORDER BY id",
        )?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            snapshot.events.push(EventRow {
                id: row.get(0)?,
                text: [row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?],
                created: row.get(5)?,
                metadata: row.get(6)?,
                received_at: parse_time(&row.get::<_, String>(7)?)?,
                acknowledged_at: row.get::<_, Option<String>>(8)?.as_deref().map(parse_time).transpose()?,
            });
        }
    }
    let highest = |table: &str| -> rusqlite::Result<i64> {
        tx.query_row("SELECT COALESCE(max(seq), 0) FROM sqlite_sequence WHERE name = ?1", [table], |row| {
            row.get(0)
        })
    };
    let highest = HighestIds { tags: highest("tags")?, events: highest("events")? };
    let all_assignments: i64 = tx.query_row("SELECT count(*) FROM tag_assignments", [], |row| row.get(0))?;
    // Said in the summary the command prints.
    let dangling = usize::try_from(all_assignments).unwrap_or(0).saturating_sub(snapshot.assignments.len());
    normalize_json(&mut snapshot);
    Ok((snapshot, highest, dangling))
}

/// JSON columns compared as values, not text: PostgreSQL's jsonb spaces and orders keys its way,
/// and keeps numbers its way (which databases written before intake did the same may hold).
fn normalize_json(snapshot: &mut Snapshot) {
    let canonical = |text: &mut Option<String>| {
        if let Some(mut value) =
            text.as_deref().and_then(|t| serde_json::from_str::<serde_json::Value>(t).ok())
        {
            if let serde_json::Value::Object(map) = &mut value {
                crate::model::map_numbers_as_jsonb_keeps_them(map);
            }
            *text = Some(value.to_string());
        }
    };
    for update in &mut snapshot.updates {
        canonical(&mut update.metadata);
        canonical(&mut update.extra);
    }
    for event in &mut snapshot.events {
        canonical(&mut event.metadata);
    }
}

async fn write_postgres(tx: &Transaction<'_>, source: &Snapshot, highest: HighestIds) -> Result<(), String> {
    let insert_tag =
        tx.prepare("INSERT INTO tags (id, name) VALUES ($1, $2)").await.map_err(pg("prepare"))?;
    for (id, name) in &source.tags {
        tx.execute(&insert_tag, &[id, name]).await.map_err(pg("copy tags"))?;
    }
    let insert_update = tx
        .prepare(&format!(
            "INSERT INTO updates ({UPDATE_TEXT_COLUMNS}, created, metadata, extra, received_at, acknowledged_at,
                 metadata_json, metadata_json_received_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11::text::jsonb, $12::text::jsonb, $13, $14,
                 $11::text, $13)"
        ))
        .await
        .map_err(pg("prepare"))?;
    for u in &source.updates {
        let received: SystemTime = u.received_at.to_system_time();
        let acknowledged: Option<SystemTime> = u.acknowledged_at.map(Timestamp::to_system_time);
        let [a, b, c, d, e, f, g, h, i] = &u.text;
        tx.execute(
            &insert_update,
            &[a, b, c, d, e, f, g, h, i, &u.created, &u.metadata, &u.extra, &received, &acknowledged],
        )
        .await
        .map_err(pg("copy updates"))?;
    }
    let insert_assignment = tx
        .prepare("INSERT INTO tag_assignments (image, tag_id) VALUES ($1, $2)")
        .await
        .map_err(pg("prepare"))?;
    for (image, tag_id) in &source.assignments {
        tx.execute(&insert_assignment, &[image, tag_id]).await.map_err(pg("copy tag assignments"))?;
    }
    let insert_event = tx
        .prepare(
            "INSERT INTO events (id, image, hostname, status, digest, created, metadata, received_at, acknowledged_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7::text::jsonb, $8, $9)",
        )
        .await
        .map_err(pg("prepare"))?;
    for e in &source.events {
        let received: SystemTime = e.received_at.to_system_time();
        let acknowledged: Option<SystemTime> = e.acknowledged_at.map(Timestamp::to_system_time);
        let [image, hostname, status, digest] = &e.text;
        tx.execute(
            &insert_event,
            &[&e.id, image, hostname, status, digest, &e.created, &e.metadata, &received, &acknowledged],
        )
        .await
        .map_err(pg("copy history"))?;
    }
    // New rows continue after every id SQLite handed out, deleted rows' included.
    tx.execute(
        "SELECT setval(pg_get_serial_sequence('tags', 'id'),
                       GREATEST(COALESCE((SELECT max(id) FROM tags), 0), $1) + 1, false),
                setval(pg_get_serial_sequence('events', 'id'),
                       GREATEST(COALESCE((SELECT max(id) FROM events), 0), $2) + 1, false)",
        &[&highest.tags, &highest.events],
    )
    .await
    .map(drop)
    .map_err(pg("move the id sequences"))
}

async fn read_postgres(tx: &Transaction<'_>) -> Result<Snapshot, String> {
    let mut snapshot = Snapshot::default();
    let time = |t: SystemTime| Timestamp::from_system_time(t);
    for row in tx
        .query(
            &format!(
                "SELECT {UPDATE_TEXT_COLUMNS}, created, metadata::text, extra::text, received_at, acknowledged_at
                 FROM updates ORDER BY image COLLATE \"C\""
            ),
            &[],
        )
        .await
        .map_err(pg("read back updates"))?
    {
        snapshot.updates.push(UpdateRow {
            text: std::array::from_fn(|i| row.get(i)),
            created: row.get(9),
            metadata: row.get(10),
            extra: row.get(11),
            received_at: time(row.get(12)),
            acknowledged_at: row.get::<_, Option<SystemTime>>(13).map(time),
        });
    }
    snapshot.tags = tx
        .query("SELECT id, name FROM tags ORDER BY id", &[])
        .await
        .map_err(pg("read back tags"))?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    snapshot.assignments = tx
        .query("SELECT image, tag_id FROM tag_assignments ORDER BY image COLLATE \"C\"", &[])
        .await
        .map_err(pg("read back tag assignments"))?
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    for row in tx
        .query(
            "SELECT id, image, hostname, status, digest, created, metadata::text, received_at, acknowledged_at
             FROM events ORDER BY id",
            &[],
        )
        .await
        .map_err(pg("read back history"))?
    {
        snapshot.events.push(EventRow {
            id: row.get(0),
            text: [row.get(1), row.get(2), row.get(3), row.get(4)],
            created: row.get(5),
            metadata: row.get(6),
            received_at: time(row.get(7)),
            acknowledged_at: row.get::<_, Option<SystemTime>>(8).map(time),
        });
    }
    normalize_json(&mut snapshot);
    Ok(snapshot)
}
