//! `GET /api/stream`: every change is announced to open dashboards at once.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{TestApp, docker_event};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// An open event stream, read as raw text.
struct EventStream {
    stream: TcpStream,
    seen: String,
}

impl EventStream {
    async fn open(app: &TestApp) -> Self {
        Self::open_at(app.addr).await
    }

    async fn open_at(addr: std::net::SocketAddr) -> Self {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(b"GET /api/stream HTTP/1.1\r\nHost: x\r\nAccept: text/event-stream\r\n\r\n")
            .await
            .unwrap();
        let mut events = Self { stream, seen: String::new() };
        let head = events.expect("event:hello").await;
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        assert!(head.to_ascii_lowercase().contains("content-type: text/event-stream"), "{head}");
        // nginx would otherwise hold events back in its buffer.
        assert!(head.to_ascii_lowercase().contains("x-accel-buffering: no"), "{head}");
        events
    }

    /// Reads until `needle` has arrived (a generous timeout catches a stream that stays silent)
    /// and returns everything up to it.
    async fn expect(&mut self, needle: &str) -> String {
        self.expect_within(needle, Duration::from_secs(10)).await
    }

    async fn expect_within(&mut self, needle: &str, limit: Duration) -> String {
        let wait = async {
            let mut buffer = [0u8; 4096];
            while !self.seen.contains(needle) {
                let read = self.stream.read(&mut buffer).await.expect("read the stream");
                assert!(read > 0, "the stream ended before {needle:?}; got {:?}", self.seen);
                self.seen.push_str(&String::from_utf8_lossy(&buffer[..read]));
            }
        };
        tokio::time::timeout(limit, wait)
            .await
            .unwrap_or_else(|_| panic!("no {needle:?} on the stream; got {:?}", self.seen));
        // Later expectations look only at what comes next.
        let end = self.seen.find(needle).map_or(0, |at| at + needle.len());
        self.seen.drain(..end).collect()
    }
}

async fn every_change_is_announced_on_the_stream(app: &TestApp) {
    let mut events = EventStream::open(app).await;
    assert_eq!(app.webhook(&docker_event("nginx:1")).await.status, 200);
    events.expect(r#"data:{"kind":"update","image":"nginx:1","seq":1}"#).await;
    assert_eq!(app.request("PATCH", "/api/updates/nginx%3A1").send().await.status, 204);
    events.expect(r#"data:{"kind":"acknowledge","image":"nginx:1","seq":2}"#).await;
    let tag = app.create_tag("prod").await;
    events.expect(r#"data:{"kind":"tag","seq":3}"#).await;
    app.api("PUT", "/api/tag-assignments", &json!({ "image": "nginx:1", "tag_id": tag })).await;
    events.expect(r#"data:{"kind":"tag","image":"nginx:1","seq":4}"#).await;
    app.webhook(&docker_event("redis:7")).await;
    app.api("POST", "/api/updates/acknowledge-all", &json!({})).await;
    events.expect(r#"data:{"kind":"update","image":"redis:7","seq":5}"#).await;
    events.expect(r#"data:{"kind":"acknowledge","seq":6}"#).await;
    assert_eq!(app.request("DELETE", "/api/updates/nginx%3A1").send().await.status, 204);
    events.expect(r#"data:{"kind":"remove","image":"nginx:1","seq":7}"#).await;
}

/// The reads a dashboard refreshes from say how far the stream's numbering had come when they
/// began (`X-Change-Seq: <epoch>/<n>`, the epoch `hello` named), so a page can tell which
/// notices they already include.
async fn reads_say_which_changes_they_include(app: &TestApp) {
    let mut events = EventStream::open(app).await;
    let hello = events.expect("\n\n").await;
    let epoch = hello
        .split(r#"data:{"epoch":""#)
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("hello names no epoch: {hello:?}"))
        .to_string();
    let marks = async || {
        let mut marks = Vec::new();
        for path in ["/api/updates", "/api/tags", "/api/hosts"] {
            let response = app.request("GET", path).send().await;
            assert_eq!(response.status, 200, "{path}");
            marks.push(response.header("x-change-seq").map(str::to_string));
        }
        marks
    };
    assert_eq!(marks().await, vec![Some(format!("{epoch}/0")); 3]);
    app.webhook(&docker_event("nginx:1")).await;
    app.create_tag("prod").await;
    events.expect(r#""seq":2}"#).await;
    assert_eq!(marks().await, vec![Some(format!("{epoch}/2")); 3]);
}

async fn failed_writes_announce_nothing(app: &TestApp) {
    let mut events = EventStream::open(app).await;
    assert_eq!(app.request("PATCH", "/api/updates/nope%3A1").send().await.status, 404);
    assert_eq!(app.webhook(&json!({ "image": "" })).await.status, 400);
    assert_eq!(
        app.api("POST", "/api/updates/acknowledge-all", &json!({})).await.json(),
        json!({ "count": 0 })
    );
    app.webhook(&docker_event("marker:1")).await;
    let before_marker = events.expect(r#""image":"marker:1""#).await;
    assert!(!before_marker.contains("nope"), "{before_marker}");
    assert!(!before_marker.contains("acknowledge"), "{before_marker}");
    assert_eq!(before_marker.matches("event:change").count(), 1, "{before_marker}");
}

on_every_backend!(
    every_change_is_announced_on_the_stream,
    failed_writes_announce_nothing,
    reads_say_which_changes_they_include
);

/// A quiet stream sends a `ping` event after the interval `hello` names, again and again: a
/// page that hears nothing for longer knows its connection died without a word. (A comment, as
/// it was, keeps proxies from closing the stream but never reaches the page's script.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_stream_pings_at_the_interval_hello_names() {
    let Some(db) = support::TestDb::any().await else { return };
    let app = TestApp::start(db, None).await;
    let mut events = EventStream::open(&app).await;
    let hello = events.expect("\n\n").await;
    let ping_ms: u64 = hello
        .split(r#""ping_ms":"#)
        .nth(1)
        .and_then(|rest| rest.split('}').next())
        .and_then(|ms| ms.parse().ok())
        .unwrap_or_else(|| panic!("hello names no ping interval: {hello:?}"));
    let limit = Duration::from_millis(ping_ms) + Duration::from_secs(5);
    for _ in 0..2 {
        let quiet = events.expect_within("event:ping\ndata:{}\n\n", limit).await;
        assert!(!quiet.contains("event:change"), "{quiet:?}");
    }
}

/// A dashboard that cannot keep up (a phone on a slow link, a tab the browser throttles) is
/// told to reload everything (`resync`, with how many changes it missed) rather than shown a
/// stream with changes silently missing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_falls_behind_is_told_to_resync() {
    use diun_dashboard::changes::{Change, ChangeKind};
    let Some(db) = support::TestDb::any().await else { return };
    let app = TestApp::start(db, None).await;
    let mut events = EventStream::open(&app).await;
    events.expect("\n\n").await;
    // Far more than the stream's buffer and the socket's, published while nothing reads.
    for _ in 0..200_000 {
        app.store.changes().publish(Change::of_many(ChangeKind::Tag));
    }
    events.expect("event:resync\ndata:").await;
    let missed = events.expect("\n\n").await;
    let missed: u64 = missed.trim().parse().unwrap_or_else(|_| panic!("resync names no count: {missed:?}"));
    assert!(missed > 0 && missed < 200_000, "{missed}");
    // And it goes on with what comes next.
    app.store.changes().publish(Change::of_image(ChangeKind::Update, "after:1"));
    events.expect(r#"data:{"kind":"update","image":"after:1","seq":200001}"#).await;
    app.stop().await;
}

/// An open stream must not hold up a graceful shutdown.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_streams_end_when_the_server_stops() {
    let Some(db) = support::TestDb::any().await else { return };
    let app = TestApp::start(db, None).await;
    let mut events = EventStream::open(&app).await;
    tokio::time::timeout(Duration::from_secs(5), app.stop()).await.expect("shutdown waited for the stream");
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(5), events.stream.read_to_end(&mut rest)).await;
    assert!(ended.is_ok(), "the stream stayed open after shutdown");
}

/// Two replicas on one PostgreSQL database: a webhook received by one reaches a dashboard
/// watching the other (LISTEN/NOTIFY), and a replica does not hear its own changes twice.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_on_one_replica_reaches_the_streams_of_another() {
    let Some(db) = support::TestDb::postgres().await else { return };
    let database = db.database();
    // Replica A's connections carry a name of their own: other tests run relays on the same
    // server, and the cut below must hit A's and no other.
    let relay_name = support::unique("relay");
    let diun_dashboard::config::Database::Postgres { url } = &database else { unreachable!() };
    let named = diun_dashboard::config::Database::Postgres {
        url: diun_dashboard::config::Secret::new(format!("{}&application_name={relay_name}", url.expose())),
    };
    let replica_a = TestApp::start_with(named, db, None).await;
    // B reaches the server through a proxy that holds each new connection back: its sharing
    // would listen well after B answers, were start-up not waiting for it.
    let slow = slow_connections::through(&database, Duration::from_millis(400)).await;
    let replica_b = TestApp::start_with(slow, support::TestDb::sqlite(), None).await;
    let mut on_b = EventStream::open(&replica_b).await;
    let mut on_a = EventStream::open(&replica_a).await;

    // A replica answers once its sharing listens: the very first webhook is heard (sent before
    // B listened, it was lost until the dashboards' next safety poll).
    assert_eq!(replica_a.webhook(&docker_event("shared:1")).await.status, 200);
    let reached =
        tokio::time::timeout(Duration::from_secs(5), on_b.expect(r#""kind":"update","image":"shared:1""#))
            .await;
    assert!(reached.is_ok(), "the first webhook on replica A never reached replica B's stream");

    assert_eq!(replica_b.request("PATCH", "/api/updates/shared%3A1").send().await.status, 204);
    on_a.expect(r#"data:{"kind":"acknowledge","image":"shared:1","seq":"#).await;
    // A marker sent after everything else: what came before it on B has arrived.
    replica_a.webhook(&docker_event("marker:1")).await;
    let on_b_before_marker = on_b.expect(r#""image":"marker:1""#).await;
    assert_eq!(
        on_b_before_marker.matches(r#""kind":"acknowledge""#).count(),
        1,
        "B must not hear its own acknowledgement twice: {on_b_before_marker}"
    );

    // A's relay connection is cut (the one that sent the marker, last): it comes back by
    // itself and tells the other replicas to reload, since notices may have been lost, and
    // changes flow again. B's own relay is untouched, so the reload on B can only come from A.
    let support::TestDb::Postgres { base_url, .. } = &replica_a.db else { unreachable!() };
    support::run_sql(
        base_url,
        &format!(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE application_name = '{relay_name}' AND query LIKE '%pg_notify%'"
        ),
    )
    .await;
    on_b.expect(r#"data:{"kind":"update","seq":"#).await;
    let mut restored = false;
    for _ in 0..50 {
        assert_eq!(replica_a.webhook(&docker_event("after-cut:1")).await.status, 200);
        let wait = tokio::time::timeout(Duration::from_millis(200), on_b.expect(r#""image":"after-cut:1""#));
        if wait.await.is_ok() {
            restored = true;
            break;
        }
    }
    assert!(restored, "sharing between the replicas did not come back after the cut");

    // A notice this release cannot read (a later release's, say) makes the dashboards reload
    // rather than miss whatever it told.
    let support::TestDb::Postgres { base_url, schema } = &replica_a.db else { unreachable!() };
    let channel = diun_dashboard::store::replicas::channel_for(schema);
    support::run_sql(base_url, &format!("SELECT pg_notify('{channel}', '{{\"from\":\"the future\"}}')"))
        .await;
    on_b.expect(r#"data:{"kind":"update","seq":"#).await;
    replica_b.stop().await;
    replica_a.stop().await;
}

/// Event streams open at once are bounded, so that streams opened by the thousand cannot use up
/// the descriptors DIUN's webhooks need; a dashboard refused one is told to poll, and one that
/// went away makes room. (A service of its own: the streams' descriptors are its, not the test's.)
#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_streams_are_bounded_and_a_closed_one_makes_room() {
    use diun_dashboard::http::MAX_STREAMS;
    let dir = support::TempDir::new();
    let service =
        support::process::Service::start(&[("DB_PATH", dir.0.join("diun.db").display().to_string())]).await;
    let mut open = Vec::with_capacity(MAX_STREAMS);
    for _ in 0..MAX_STREAMS {
        open.push(EventStream::open_at(service.addr).await);
    }
    // An answer that ends: a stream opened instead would not.
    let refused = tokio::time::timeout(Duration::from_secs(10), service.request("GET", "/api/stream").send())
        .await
        .expect("one stream more than the bound is refused");
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert!(refused.error().contains("polls instead"), "{}", refused.text());
    let webhook = service.request("POST", "/webhook").body(docker_event("still:1").to_string()).send().await;
    assert_eq!(webhook.status, 200, "webhooks go on: {}", webhook.text());

    // The service learns that a client went away when it next writes to it: a change.
    drop(open.pop());
    let mut reopened = None;
    for n in 0..100 {
        let image = format!("nudge{n}:1");
        service.request("POST", "/webhook").body(docker_event(&image).to_string()).send().await;
        let mut stream = TcpStream::connect(service.addr).await.unwrap();
        stream.write_all(b"GET /api/stream HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
        let mut status_line = [0u8; 12];
        stream.read_exact(&mut status_line).await.unwrap();
        if &status_line == b"HTTP/1.1 200" {
            reopened = Some(stream);
            break;
        }
    }
    assert!(reopened.is_some(), "no stream opened again after one closed");
    drop(open);
}

/// Replicas stamp reports with their own clocks. Once a replica has heard of another's report,
/// its own reports are stamped after it, even when its clock runs behind: a page showing the
/// other's report must not, dismissing everything up to it, dismiss a later one it never saw.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_stamps_its_reports_after_those_another_replica_told_of() {
    use diun_dashboard::store::{Received, UpdateStore};
    use diun_dashboard::time::Timestamp;
    let Some(db) = support::TestDb::postgres().await else { return };
    let database = db.database();
    let replica_a = TestApp::start_with(db.database(), db, None).await;
    let replica_b = TestApp::start_with(database, support::TestDb::sqlite(), None).await;
    let mut on_b = EventStream::open(&replica_b).await;
    // A report as a replica whose clock is an hour ahead stamps it.
    let ahead = Timestamp::from_unix_micros(Timestamp::now().unix_micros() + 3_600_000_000);
    let event = support::event_from_host("ahead:1", "nas");
    replica_a.store.upsert_event(event, Received::At(ahead)).await.expect("stored");
    on_b.expect(r#""kind":"update","image":"ahead:1""#).await;

    assert_eq!(replica_b.webhook(&docker_event("later:1")).await.status, 200);
    let updates = replica_b.updates().await;
    let stamped = |image: &str| updates[image]["received_at"].as_str().unwrap_or_default().to_owned();
    assert_eq!(stamped("ahead:1"), ahead.to_string());
    // One fixed-width format: the text orders as the times do.
    assert_eq!(stamped("later:1").len(), stamped("ahead:1").len());
    assert!(
        stamped("later:1") > stamped("ahead:1"),
        "{} is not after {}",
        stamped("later:1"),
        stamped("ahead:1")
    );
    replica_b.stop().await;
    replica_a.stop().await;
}

/// `migrate --force` into a database that replicas serve tells them, as a replica would: their
/// dashboards reload the copied data at once, and their clocks follow its newest report (here
/// an hour ahead, from a host whose clock ran ahead), so a report they stamp next comes after it.
#[cfg(all(feature = "sqlite", feature = "postgres"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_move_onto_a_served_database_reaches_its_replicas() {
    use diun_dashboard::store::sqlite::SqliteStore;
    use diun_dashboard::store::{Received, UpdateStore};
    use diun_dashboard::time::Timestamp;
    let Some(db) = support::TestDb::postgres().await else { return };
    let diun_dashboard::config::Database::Postgres { url } = db.database() else { unreachable!() };
    let replica = TestApp::start_with(db.database(), db, None).await;
    assert_eq!(replica.webhook(&docker_event("before:1")).await.status, 200);
    let mut on_replica = EventStream::open(&replica).await;

    let dir = support::TempDir::new();
    let path = dir.0.join("moved.db");
    let source = SqliteStore::open(path.clone()).await.expect("the source");
    let ahead = Timestamp::from_unix_micros(Timestamp::now().unix_micros() + 3_600_000_000);
    source
        .upsert_event(support::event_from_host("ahead:1", "nas"), Received::At(ahead))
        .await
        .expect("stored");
    source.close().await;
    let from = path.display().to_string();
    let (code, stdout, stderr) = support::process::run(
        &["migrate", "--from", &from, "--to", url.expose(), "--force"],
        &[],
        Duration::from_secs(60),
    )
    .await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    on_replica.expect(r#"data:{"kind":"update","seq":"#).await;

    assert_eq!(replica.webhook(&docker_event("later:1")).await.status, 200);
    let updates = replica.updates().await;
    assert!(updates.get("before:1").is_none(), "the copy replaced the target: {updates}");
    let stamped = |image: &str| updates[image]["received_at"].as_str().unwrap_or_default().to_owned();
    assert_eq!(stamped("ahead:1"), ahead.to_string());
    assert!(
        stamped("later:1") > stamped("ahead:1"),
        "{} is not after {}",
        stamped("later:1"),
        stamped("ahead:1")
    );
    replica.stop().await;
}

/// A webhook answered just before a replica is stopped (a rolling deploy) still reaches the
/// other replicas' dashboards: shutdown sends the relay's queue before the process exits.
#[cfg(feature = "postgres")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_change_answered_just_before_shutdown_reaches_the_other_replicas() {
    use support::process::Service;
    let Some(db) = support::TestDb::postgres().await else { return };
    let database = db.database();
    let replica_a = Service::start(&db.env()).await;
    let replica_b = TestApp::start_with(database, support::TestDb::sqlite(), None).await;
    let mut on_b = EventStream::open(&replica_b).await;
    let webhook =
        |image: &str| replica_a.request("POST", "/webhook").body(docker_event(image).to_string()).send();
    let mut reached = false;
    for _ in 0..50 {
        assert_eq!(webhook("warm:1").await.status, 200);
        let wait = tokio::time::timeout(Duration::from_millis(200), on_b.expect(r#""image":"warm:1""#));
        if wait.await.is_ok() {
            reached = true;
            break;
        }
    }
    assert!(reached, "the replicas never started sharing");

    assert_eq!(webhook("last:1").await.status, 200);
    replica_a.signal("TERM");
    on_b.expect(r#""kind":"update","image":"last:1""#).await;
    replica_b.stop().await;
    db.drop_schema().await;
}

/// hyper drops a request's future when its client goes away. A write dropped after it was
/// handed to the database still commits, and must still be announced.
#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_whose_caller_went_away_is_still_announced() {
    use diun_dashboard::changes::{Change, ChangeKind};
    use diun_dashboard::store::{Received, Store, UpdateStore};
    use futures_util::FutureExt;

    let dir = support::TempDir::new();
    let database = diun_dashboard::config::Database::Sqlite { path: dir.0.join("diun.db") };
    let store = Store::open(&database).await.expect("open the store");
    let mut changes = store.changes().subscribe();
    let event = diun_dashboard::model::DiunEvent::from_json(docker_event("left:1").to_string().as_bytes())
        .expect("a valid event");
    // Another connection holds the write lock, so the write cannot commit before it is
    // dropped however the threads are scheduled; the store's busy timeout waits it out.
    let blocker = rusqlite::Connection::open(dir.0.join("diun.db")).expect("a second connection");
    blocker.execute_batch("BEGIN IMMEDIATE").expect("take the write lock");
    // Polled once, which queues the write, then dropped.
    let polled = store.upsert_event(event, Received::Now).now_or_never();
    assert!(polled.is_none(), "the write was still waiting for its commit when it was dropped");
    blocker.execute_batch("ROLLBACK").expect("let the write lock go");
    let announced = tokio::time::timeout(Duration::from_secs(10), changes.recv())
        .await
        .expect("the change was announced")
        .expect("the feed is open");
    assert_eq!(announced.change, Change::of_image(ChangeKind::Update, "left:1"));
    let updates = store.list_updates().await.expect("list");
    assert_eq!(updates.iter().map(|entry| entry.event.image.as_str()).collect::<Vec<_>>(), ["left:1"]);
    store.close().await;
}

/// A TCP proxy to the test's PostgreSQL server that holds each new connection back a while.
#[cfg(feature = "postgres")]
mod slow_connections {
    use std::time::Duration;

    use diun_dashboard::config::{Database, Secret};
    use tokio::net::{TcpListener, TcpStream};

    /// `database`, reached through the proxy.
    pub async fn through(database: &Database, delay: Duration) -> Database {
        let Database::Postgres { url } = database else { panic!("PostgreSQL only") };
        let server = crate::support::server_addr(url.expose()).await;
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut client, _)) = listener.accept().await {
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    if let Ok(mut server) = TcpStream::connect(server).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
        Database::Postgres { url: Secret::new(crate::support::through_proxy(url.expose(), proxy.port())) }
    }
}
