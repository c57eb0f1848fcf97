//! PostgreSQL: what the service's transactions do to each other and to another client's. A test
//! connection holds row locks so that the service's statements queue behind it in a known
//! order; `pg_blocking_pids` tells when they wait, so no sleep decides an interleaving.
#![cfg(feature = "postgres")]

mod support;

use std::sync::Arc;
use std::time::Duration;

use diun_dashboard::config::Database;
use diun_dashboard::store::{Received, StoreResult, UpdateStore};
use diun_dashboard::time::Timestamp;
use serde_json::json;
use support::{TestApp, backend_pid, connect_to, docker_event, hold_row, until_blocked};
use tokio::task::JoinHandle;

/// Waits until the app's pool holds three idle connections (it opens them in the background
/// after start-up), so that a listing reads on three.
async fn until_three_idle(app: &TestApp, observer: &tokio_postgres::Client) {
    let name = app.db.schema().expect("a PostgreSQL app");
    for _ in 0..500 {
        if support::pool_use(observer, name).await.idle >= 3 {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("the pool never held three idle connections");
}

/// Webhooks from host "pi" for `lone`, then for the `pair` together: `lone` and the pair's first
/// image are rows the test's `holder_pid` has locked, so `lone` waits in a batch of its own and
/// the pair, sent while it runs, shares the next batch. Returns once both batches wait on the
/// test's locks.
async fn lone_then_pair(
    app: &TestApp,
    observer: &tokio_postgres::Client,
    holder_pid: i32,
    lone: &'static str,
    pair: [&'static str; 2],
) -> (JoinHandle<StoreResult<()>>, JoinHandle<(StoreResult<()>, StoreResult<()>)>) {
    let upsert = |image: &'static str| {
        let store = Arc::clone(&app.store);
        async move { store.upsert_event(support::event_from_host(image, "pi"), Received::Now).await }
    };
    let waiting = tokio::spawn(upsert(lone));
    until_blocked(observer, holder_pid, 1).await;
    let (first, second) = (upsert(pair[0]), upsert(pair[1]));
    let pair = tokio::spawn(async move { tokio::join!(first, second) });
    until_blocked(observer, holder_pid, 2).await;
    (waiting, pair)
}

/// An acknowledgement that waited for a webhook's upsert of the same image covers that
/// webhook's event too, as if the two had run one after the other: a statement sees only what
/// was committed when it started, so the history is marked by a statement of its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acknowledgement_behind_an_upsert_covers_its_event() {
    let Some(app) = TestApp::postgres().await else { return };
    app.store.upsert_event(support::event_from_host("x:1", "nas"), Received::Now).await.unwrap();
    let (holder, observer) = (hold_row(&app, "x:1").await, connect_to(&app).await);
    let holder_pid = backend_pid(&holder).await;

    let store = Arc::clone(&app.store);
    let upsert = tokio::spawn(async move {
        store.upsert_event(support::event_from_host("x:1", "pi"), Received::Now).await
    });
    until_blocked(&observer, holder_pid, 1).await;
    let store = Arc::clone(&app.store);
    let acknowledge =
        tokio::spawn(async move { store.acknowledge("x:1".into(), Timestamp::now(), None).await });
    until_blocked(&observer, holder_pid, 2).await;
    holder.batch_execute("COMMIT").await.unwrap();

    upsert.await.unwrap().expect("the webhook is stored");
    assert_eq!(
        acknowledge.await.unwrap().expect("the acknowledgement goes through"),
        diun_dashboard::store::ImageOutcome::Done
    );
    let history = app.store.history("x:1".into(), None, 10).await.unwrap().unwrap();
    let pending: Vec<&str> =
        history.iter().filter(|e| e.acknowledged_at.is_none()).map(|e| e.hostname.as_str()).collect();
    assert_eq!(pending, Vec::<&str>::new(), "events left pending under an acknowledged update");

    // The image's next webhook makes it pending again, reported by that host alone.
    app.store.upsert_event(support::event_from_host("x:1", "vps"), Received::Now).await.unwrap();
    let hosts = app.get("/api/hosts").await.json();
    let reported: Vec<&str> =
        hosts["x:1"].as_array().unwrap().iter().map(|h| h["hostname"].as_str().unwrap()).collect();
    assert_eq!(reported, ["vps"], "{hosts}");
    app.stop().await;
}

/// A removal and a webhook of one image, both waiting on its row: whichever goes first, the
/// outcome is that of the two done one after the other. Either the image is back with the
/// webhook's report alone in its history, or it is gone with every report (the next webhook
/// then starts a history of its own): never a history that kept a removed report. The server
/// hands the row to its waiters in the order they came, so both orders are queued here.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removal_and_a_webhook_of_one_image_go_one_after_the_other() {
    for removal_first in [true, false] {
        removal_and_webhook_racing(removal_first).await;
    }
}

async fn removal_and_webhook_racing(removal_first: bool) {
    let Some(app) = TestApp::postgres().await else { return };
    app.store.upsert_event(support::event_from_host("x:1", "nas"), Received::Now).await.unwrap();
    let (holder, observer) = (hold_row(&app, "x:1").await, connect_to(&app).await);
    let holder_pid = backend_pid(&holder).await;

    let store = Arc::clone(&app.store);
    let remove = async move { store.remove_update("x:1".into(), None).await };
    let store = Arc::clone(&app.store);
    let upsert =
        async move { store.upsert_event(support::event_from_host("x:1", "pi"), Received::Now).await };
    let (remove, upsert) = if removal_first {
        let remove = tokio::spawn(remove);
        until_blocked(&observer, holder_pid, 1).await;
        (remove, tokio::spawn(upsert))
    } else {
        let upsert = tokio::spawn(upsert);
        until_blocked(&observer, holder_pid, 1).await;
        (tokio::spawn(remove), upsert)
    };
    until_blocked(&observer, holder_pid, 2).await;
    holder.batch_execute("COMMIT").await.unwrap();

    upsert.await.unwrap().expect("the webhook is stored");
    assert_eq!(
        remove.await.unwrap().expect("the removal goes through"),
        diun_dashboard::store::ImageOutcome::Done
    );
    let hosts_in_history = async || -> Option<Vec<String>> {
        let history = app.store.history("x:1".into(), None, 10).await.unwrap()?;
        Some(history.into_iter().map(|e| e.hostname).collect())
    };
    match hosts_in_history().await {
        Some(hosts) => assert_eq!(hosts, ["pi"], "the removal went first (queued first: {removal_first})"),
        None => {
            app.store.upsert_event(support::event_from_host("x:1", "vps"), Received::Now).await.unwrap();
            let hosts = hosts_in_history().await;
            assert_eq!(
                hosts,
                Some(vec!["vps".to_string()]),
                "the webhook went first (queued first: {})",
                !removal_first
            );
        }
    }
    app.stop().await;
}

/// A batch of upserts that the server fails to break a deadlock goes again, row by row, and its
/// webhooks are stored: DIUN does not send them twice. Going again whole, the batch could take
/// a:1 back before the holder woke to take it, and close the same cycle again; under load that
/// failed about one run in thirty.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_chosen_to_break_a_deadlock_goes_again() {
    let Some(app) = TestApp::postgres().await else { return };
    for image in ["a:1", "b:1", "c:1"] {
        app.store.upsert_event(support::event_from_host(image, "nas"), Received::Now).await.unwrap();
    }
    let (holder, observer) = (connect_to(&app).await, connect_to(&app).await);
    let holder_pid = backend_pid(&holder).await;
    // The server fails whichever waiter checks for a deadlock first: each checks once it has
    // waited `deadlock_timeout`. The batch starts waiting first, but on a loaded machine the
    // holder's check could still come first; a longer timeout for the holder rules that out.
    // (Only a superuser may set it; without, the margin is the time between the two waits.)
    let _ = holder.batch_execute("SET deadlock_timeout = '10s'").await;
    holder
        .batch_execute("BEGIN; SELECT 1 FROM updates WHERE image IN ('b:1', 'c:1') FOR UPDATE")
        .await
        .unwrap();

    // a:1 and b:1 share a batch, which locks a:1 and then waits for b:1.
    let (waiting, pair) = lone_then_pair(&app, &observer, holder_pid, "c:1", ["a:1", "b:1"]).await;

    // Taking a:1 now closes the cycle. The batch has waited longer, so its deadlock check runs
    // first and the server fails it. The holder waits for a:1 meanwhile, which shows the batch
    // held it: with a:1 and b:1 in batches of their own there would be no cycle to break.
    let taking_a = tokio::spawn(async move {
        holder.query("SELECT 1 FROM updates WHERE image = 'a:1' FOR UPDATE", &[]).await.expect("a:1 locked");
        holder
    });
    let blocked = async {
        while observer
            .query_one("SELECT cardinality(pg_blocking_pids($1))", &[&holder_pid])
            .await
            .unwrap()
            .get::<_, i32>(0)
            == 0
        {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), blocked)
        .await
        .expect("the holder never waited for the batch's lock on a:1");
    let holder = taking_a.await.unwrap();
    holder.batch_execute("COMMIT").await.unwrap();

    waiting.await.unwrap().expect("c:1 stored");
    let (a, b) = pair.await.unwrap();
    a.expect("a:1 stored");
    b.expect("b:1 stored");
    let updates = app.updates().await;
    for image in ["a:1", "b:1", "c:1"] {
        assert_eq!(updates[image]["event"]["hostname"], json!("pi"), "{image}: {updates}");
    }
    app.stop().await;
}

/// One event the server refuses (here a DBA's trigger; in the wild, a value SQLite takes and
/// PostgreSQL does not) fails its own webhook alone: the batch it shared goes again row by
/// row, and the others are stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_the_server_refuses_fails_only_its_own_webhook() {
    let Some(app) = TestApp::postgres().await else { return };
    for image in ["a:1", "c:1"] {
        app.store.upsert_event(support::event_from_host(image, "nas"), Received::Now).await.unwrap();
    }
    let (holder, observer) = (connect_to(&app).await, connect_to(&app).await);
    observer
        .batch_execute(
            "CREATE FUNCTION refuse_z() RETURNS trigger LANGUAGE plpgsql AS
                 $$ BEGIN IF NEW.image = 'z:1' THEN RAISE EXCEPTION 'z:1 refused'; END IF; RETURN NEW; END $$;
             CREATE TRIGGER refuse_z BEFORE INSERT OR UPDATE ON updates
                 FOR EACH ROW EXECUTE FUNCTION refuse_z();",
        )
        .await
        .unwrap();
    holder
        .batch_execute("BEGIN; SELECT 1 FROM updates WHERE image IN ('a:1', 'c:1') FOR UPDATE")
        .await
        .unwrap();
    let holder_pid = backend_pid(&holder).await;

    // a:1 and z:1 share a batch, which waits for a:1 (images go in order) before it reaches z:1.
    let (waiting, pair) = lone_then_pair(&app, &observer, holder_pid, "c:1", ["a:1", "z:1"]).await;
    let shared: i64 = observer
        .query_one(
            "SELECT count(*) FROM pg_stat_activity
             WHERE $1 = ANY(pg_blocking_pids(pid)) AND query LIKE '%unnest%'",
            &[&holder_pid],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(shared, 1, "a:1 and z:1 did not wait in one statement");
    holder.batch_execute("COMMIT").await.unwrap();

    waiting.await.unwrap().expect("c:1 stored");
    let (a, z) = pair.await.unwrap();
    a.expect("a:1 stored");
    match z {
        Err(diun_dashboard::store::StoreError::Internal(why)) => {
            assert!(why.contains("z:1 refused"), "{why}")
        }
        other => panic!("z:1 should fail as the server refused it: {other:?}"),
    }
    let updates = app.updates().await;
    for image in ["a:1", "c:1"] {
        assert_eq!(updates[image]["event"]["hostname"], json!("pi"), "{image}: {updates}");
    }
    assert_eq!(updates.get("z:1"), None, "{updates}");
    app.stop().await;
}

/// A webhook whose statement cannot finish in time hears 503, and then nothing of it is stored
/// (its statement is cancelled on the server): an answer never contradicts the database. It
/// used to hear 503 while its statement, still waiting on a row lock, committed once the lock
/// went, stored and never announced. Takes about ten seconds: the service's time limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_webhook_answered_503_is_not_stored_later() {
    let Some(app) = TestApp::postgres().await else { return };
    let mut event = docker_event("late:1");
    event["digest"] = json!("sha256:before");
    assert_eq!(app.webhook(&event).await.status, 200);
    let holder = hold_row(&app, "late:1").await;

    event["digest"] = json!("sha256:after");
    let answered = app.webhook(&event).await;
    assert_eq!(answered.status, 503, "{}", answered.text());
    holder.batch_execute("COMMIT").await.unwrap();
    // A marker for the same image queues for the row behind anything still waiting for it: once
    // the marker is stored, a late statement would have committed before it.
    event["digest"] = json!("sha256:marker");
    assert_eq!(app.webhook(&event).await.status, 200);
    let history = app.store.history("late:1".into(), None, 10).await.unwrap().unwrap();
    let digests: Vec<&str> = history.iter().map(|e| e.digest.as_str()).collect();
    assert_eq!(digests, ["sha256:marker", "sha256:before"], "newest first; the 503'd event was stored");
    app.stop().await;
}

/// A write cancelled at its time limit (it waited on a row lock) answers 503, nothing of it is
/// stored, and its connection is closed, not given back to the pool: a cancel can reach the
/// server after the statement it was meant for has ended, and would then stop the next
/// request's statement on that connection. Takes about ten seconds: the service's time limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_whose_write_was_cancelled_is_not_handed_out_again() {
    let Some(app) = TestApp::postgres().await else { return };
    app.store.upsert_event(support::event_from_host("x:1", "nas"), Received::Now).await.unwrap();
    let tag = app.store.create_tag("prod".into()).await.unwrap().id;
    let (holder, observer) = (hold_row(&app, "x:1").await, connect_to(&app).await);
    let holder_pid = backend_pid(&holder).await;
    // The assignment's foreign-key check waits on the row past the service's time limit.
    let assigning =
        app.request("PUT", "/api/tag-assignments").json(&json!({ "image": "x:1", "tag_id": tag }));
    let assigning = tokio::spawn(assigning.send());
    until_blocked(&observer, holder_pid, 1).await;
    let writer: i32 = observer
        .query_one("SELECT pid FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))", &[&holder_pid])
        .await
        .unwrap()
        .get(0);
    let answered = assigning.await.unwrap();
    assert_eq!(answered.status, 503, "{}", answered.text());
    assert!(answered.error().contains("nothing was changed"), "{}", answered.text());
    // Every pooled connection in turn must answer.
    for n in 0..40 {
        let tags = app.get("/api/tags").await;
        assert_eq!(tags.status, 200, "request {n}: {}", tags.text());
    }
    let still_open = || async {
        let query = "SELECT count(*) FROM pg_stat_activity WHERE pid = $1";
        observer.query_one(query, &[&writer]).await.unwrap().get::<_, i64>(0) > 0
    };
    for _ in 0..500 {
        if !still_open().await {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(!still_open().await, "the connection that was sent a cancel went back to the pool");
    holder.batch_execute("COMMIT").await.unwrap();
    let assigned: i64 = observer.query_one("SELECT count(*) FROM tag_assignments", &[]).await.unwrap().get(0);
    assert_eq!(assigned, 0, "the write answered 503 was stored");
    app.stop().await;
}

/// A write the server finishes after its time limit's cancel is answered as it ended: done.
/// Here a DBA's trigger takes the cancel for its own; in the wild, a lock freed or a COMMIT
/// flushed just as the cancel comes. Dropped at the limit, such a write was answered 503 and
/// committed all the same, and no dashboard heard of it. Takes about ten seconds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_that_ends_after_its_cancel_is_answered_as_done() {
    let Some(app) = TestApp::postgres().await else { return };
    app.store.upsert_event(support::event_from_host("x:1", "nas"), Received::Now).await.unwrap();
    let tag = app.store.create_tag("prod".into()).await.unwrap().id;
    let observer = connect_to(&app).await;
    observer
        .batch_execute(
            "CREATE FUNCTION slow_assignment() RETURNS trigger LANGUAGE plpgsql AS
                 $$ BEGIN PERFORM pg_sleep(60); RETURN NEW;
                    EXCEPTION WHEN query_canceled THEN RETURN NEW; END $$;
             CREATE TRIGGER slow_assignment BEFORE INSERT ON tag_assignments
                 FOR EACH ROW EXECUTE FUNCTION slow_assignment();",
        )
        .await
        .unwrap();
    let answered = app.api("PUT", "/api/tag-assignments", &json!({ "image": "x:1", "tag_id": tag })).await;
    let assigned: i64 = observer.query_one("SELECT count(*) FROM tag_assignments", &[]).await.unwrap().get(0);
    // Done as a rule. On a loaded machine the statement may still run when the service's second
    // cancel (half a second after the first) comes, after the trigger: stopped then, it must say
    // so. What may never be is a 503 for a stored write (dropped at the limit, that was the rule).
    match answered.status {
        204 => assert_eq!(assigned, 1, "answered as done, and not stored"),
        503 => {
            assert!(answered.error().contains("nothing was changed"), "{}", answered.text());
            assert_eq!(assigned, 0, "answered 'nothing was changed', and stored");
        }
        other => panic!("{other}: {}", answered.text()),
    }
    app.stop().await;
}

/// A lock_timeout set by the DBA is a passing trouble, like any other wait that ran out: 503,
/// not the 500 of a fault.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dbas_lock_timeout_is_answered_503() {
    let Some(db) = support::TestDb::postgres().await else { return };
    let Database::Postgres { url } = db.database() else { unreachable!("a PostgreSQL database") };
    let url = url.expose().replacen("options=", "options=-c%20lock_timeout%3D200%20", 1);
    let database = Database::Postgres { url: diun_dashboard::config::Secret::new(url) };
    let app = TestApp::start_with(database, db, None).await;
    app.store.upsert_event(support::event_from_host("x:1", "nas"), Received::Now).await.unwrap();
    let holder = hold_row(&app, "x:1").await;
    let answered = app.request("PATCH", "/api/updates/x%3A1").send().await;
    assert_eq!(answered.status, 503, "{}", answered.text());
    assert!(answered.error().contains("55P03"), "{}", answered.text());
    holder.batch_execute("COMMIT").await.unwrap();
    app.stop().await;
}

/// Dismissing a group holds the group until it commits: a deletion of the group meanwhile waits,
/// so the answer never counts the images of a group that was already gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dismissing_a_group_holds_off_its_deletion() {
    let Some(app) = TestApp::postgres().await else { return };
    app.store.upsert_event(support::event_from_host("x:1", "nas"), Received::Now).await.unwrap();
    let tag = app.store.create_tag("prod".into()).await.unwrap().id;
    app.store.assign_tag("x:1".into(), tag).await.unwrap();
    let (holder, observer) = (hold_row(&app, "x:1").await, connect_to(&app).await);
    let holder_pid = backend_pid(&holder).await;

    let store = Arc::clone(&app.store);
    let dismiss = tokio::spawn(async move { store.acknowledge_by_tag(tag, Timestamp::now(), None).await });
    until_blocked(&observer, holder_pid, 1).await;
    let store = Arc::clone(&app.store);
    let delete = tokio::spawn(async move { store.delete_tag(tag).await });
    until_blocked(&observer, holder_pid, 2).await;
    holder.batch_execute("COMMIT").await.unwrap();

    assert_eq!(dismiss.await.unwrap().unwrap(), Some(1), "the group's one image, dismissed");
    assert!(delete.await.unwrap().unwrap(), "the group is deleted after that");
    assert_eq!(app.updates().await["x:1"]["acknowledged"], json!(true));
    app.stop().await;
}

/// A listing reads the database at one moment. Its parts are read on three connections; a
/// commit that lands between their reads shows in all of them or in none, never an image as
/// it was beside its tag as it is.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_reads_one_moment() {
    let Some(app) = TestApp::postgres().await else { return };
    assert_eq!(app.webhook(&docker_event("x:1")).await.status, 200);
    let tag = app.create_tag("prod").await;
    let assigned = app.api("PUT", "/api/tag-assignments", &json!({ "image": "x:1", "tag_id": tag })).await;
    assert_eq!(assigned.status, 204);
    let before = app.updates().await["x:1"].clone();
    assert_eq!(before["tag"], json!({ "id": tag, "name": "prod" }));

    // The holder's `tags` lock stops the listing's read of the assignments, not its reads of
    // the images; its change, committed while that read waits, moves both.
    let (holder, observer) = (connect_to(&app).await, connect_to(&app).await);
    holder
        .batch_execute(
            "BEGIN; LOCK TABLE tags IN ACCESS EXCLUSIVE MODE;
             DELETE FROM tag_assignments WHERE image = 'x:1';
             UPDATE updates SET hostname = 'moved' WHERE image = 'x:1'",
        )
        .await
        .unwrap();
    let holder_pid = backend_pid(&holder).await;
    until_three_idle(&app, &observer).await;
    let listing = tokio::spawn(app.request("GET", "/api/updates").send());
    until_blocked(&observer, holder_pid, 1).await;
    // On three connections, the waiting one has not read the images (on one, it would have,
    // and would still hold `updates`: one transaction reads all at one moment anyway).
    const HOLDS_UPDATES: &str = "
        SELECT count(*) FROM pg_locks l JOIN pg_class c ON c.oid = l.relation
        WHERE c.relname = 'updates' AND l.granted
          AND l.pid IN (SELECT pid FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid)))";
    let holds_updates: i64 = observer.query_one(HOLDS_UPDATES, &[&holder_pid]).await.unwrap().get(0);
    assert_eq!(holds_updates, 0, "the listing read its parts on three connections");
    holder.batch_execute("COMMIT").await.unwrap();

    let listing = listing.await.unwrap();
    assert_eq!(listing.status, 200, "{}", listing.text());
    assert_eq!(listing.json()["x:1"], before, "the listing shows the moment before the commit");
    let after = app.updates().await["x:1"].clone();
    assert_eq!((&after["event"]["hostname"], &after["tag"]), (&json!("moved"), &serde_json::Value::Null));
    app.stop().await;
}

/// A listing's reads end their transactions as they finish: one still waiting for a table
/// (another client's `LOCK`, a migration's `ALTER TABLE`) does not keep the tables the others
/// read locked, so that client's next lock is not stuck behind the listing, in a cycle through
/// the service that the server's deadlock detector cannot see.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_waiting_for_one_table_holds_no_other() {
    let Some(app) = TestApp::postgres().await else { return };
    assert_eq!(app.webhook(&docker_event("x:1")).await.status, 200);
    let (holder, observer) = (connect_to(&app).await, connect_to(&app).await);
    holder.batch_execute("BEGIN; LOCK TABLE tags IN ACCESS EXCLUSIVE MODE").await.unwrap();
    let holder_pid = backend_pid(&holder).await;
    // On one connection, the listing's transaction would hold `updates` while it waits, and
    // the server would break the cycle as a deadlock.
    until_three_idle(&app, &observer).await;
    let listing = tokio::spawn(app.request("GET", "/api/updates").send());
    until_blocked(&observer, holder_pid, 1).await;

    holder.batch_execute("LOCK TABLE updates IN ACCESS EXCLUSIVE MODE; COMMIT").await.unwrap();
    let listing = listing.await.unwrap();
    assert_eq!(listing.status, 200, "{}", listing.text());
    assert_eq!(listing.json()["x:1"]["event"], docker_event("x:1"));
    app.stop().await;
}
