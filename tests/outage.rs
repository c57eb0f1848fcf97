//! PostgreSQL going away while the service runs: requests answer 503 quickly instead of
//! hanging, nothing half-written appears, and the service recovers by itself.
//! The "database" the service sees is a TCP proxy in front of the test server, so the test
//! can cut and restore the connection without touching the shared server.
#![cfg(feature = "postgres")]

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use diun_dashboard::config::{Database, Secret};

use support::{TestApp, TestDb, docker_event};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinSet;

/// A TCP proxy that can be cut (listener closed, every connection dropped) and restored, or
/// capped: past the cap it answers new connections as PostgreSQL at its `max_connections`
/// does, or closes them unanswered (`as_down`) as a server on its way down may.
struct Proxy {
    listen: SocketAddr,
    upstream: SocketAddr,
    tasks: Arc<Mutex<JoinSet<()>>>,
    open: Arc<AtomicUsize>,
    cap: Arc<AtomicUsize>,
    as_down: Arc<AtomicBool>,
    refused: Arc<AtomicUsize>,
}

impl Proxy {
    async fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let proxy = Self {
            listen: listener.local_addr().unwrap(),
            upstream,
            tasks: Arc::default(),
            open: Arc::default(),
            cap: Arc::new(AtomicUsize::new(usize::MAX)),
            as_down: Arc::default(),
            refused: Arc::default(),
        };
        proxy.serve(listener).await;
        proxy
    }

    async fn serve(&self, listener: TcpListener) {
        let upstream = self.upstream;
        let tasks = Arc::clone(&self.tasks);
        let (open, cap, refused) = (Arc::clone(&self.open), Arc::clone(&self.cap), Arc::clone(&self.refused));
        let as_down = Arc::clone(&self.as_down);
        let accept = async move {
            let connections = Arc::new(Mutex::new(JoinSet::new()));
            loop {
                let Ok((mut client, _)) = listener.accept().await else { break };
                if open.load(Ordering::SeqCst) >= cap.load(Ordering::SeqCst) {
                    if !as_down.load(Ordering::SeqCst) {
                        refuse(client, upstream).await;
                    }
                    refused.fetch_add(1, Ordering::SeqCst);
                    continue;
                }
                open.fetch_add(1, Ordering::SeqCst);
                let open = Arc::clone(&open);
                connections.lock().await.spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                    open.fetch_sub(1, Ordering::SeqCst);
                });
            }
        };
        self.tasks.lock().await.spawn(accept);
        drop(tasks);
    }

    /// Closes the listener and every open connection.
    async fn cut(&self) {
        self.tasks.lock().await.shutdown().await;
    }

    /// Closes new connections unanswered from now on, while those open stay.
    fn drop_more(&self) {
        self.as_down.store(true, Ordering::SeqCst);
        self.refuse_more();
    }

    /// Refuses new connections from now on, while those open stay.
    fn refuse_more(&self) {
        self.cap.store(self.open.load(Ordering::SeqCst), Ordering::SeqCst);
    }

    /// Takes new connections again.
    fn accept_more(&self) {
        self.as_down.store(false, Ordering::SeqCst);
        self.cap.store(usize::MAX, Ordering::SeqCst);
    }

    async fn restore(&self) {
        let listener = TcpListener::bind(self.listen).await.expect("rebind the proxy port");
        self.serve(listener).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_database_answers_503_quickly_and_the_service_recovers_by_itself() {
    let Some((app, proxy)) = behind_a_proxy("lost").await else { return };

    assert_eq!(app.webhook(&docker_event("before:1")).await.status, 200);
    proxy.cut().await;

    // Without a database every answer is a 503, and none hangs (a hung request would run
    // into this generous timeout; the service's own bound is a few seconds).
    for attempt in 0..3 {
        let health = answer(app.get("/healthz")).await;
        assert_eq!(health.status, 503, "attempt {attempt}: {}", health.text());
        let said = health.json()["error"].as_str().unwrap_or_default().to_owned();
        assert!(said.starts_with("database unavailable"), "the reason is worth telling: {said}");
        // The driver's text (a refused password, the server's view of our address) stays in the
        // log: this route needs no login.
        for driver_text in ["error connecting", "os error", "Connection refused"] {
            assert!(!said.contains(driver_text), "{said}");
        }
        let write = answer(app.webhook(&docker_event("during:1"))).await;
        assert_eq!(write.status, 503, "{}", write.text());
        assert!(write.error().contains("database"), "{}", write.text());
        let read = answer(app.get("/api/updates")).await;
        assert_eq!(read.status, 503);
    }

    proxy.restore().await;
    let mut recovered = false;
    for _ in 0..100 {
        if app.get("/healthz").await.status == 200 {
            recovered = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(recovered, "the service did not recover after the database came back");
    assert_eq!(app.webhook(&docker_event("after:1")).await.status, 200);
    let updates = app.updates().await;
    assert_eq!(updates.as_object().unwrap().keys().collect::<Vec<_>>(), ["after:1", "before:1"]);
    assert_eq!(updates["before:1"]["event"], docker_event("before:1"));
    app.stop().await;
}

/// Answers a connection as PostgreSQL at its connection limit: the startup packet read, then
/// `FATAL 53300`.
async fn refuse(mut client: TcpStream, upstream: SocketAddr) {
    const SSL_REQUEST: [u8; 4] = 80877103u32.to_be_bytes();
    const CANCEL_REQUEST: [u8; 4] = 80877102u32.to_be_bytes();
    loop {
        let Ok(length) = client.read_u32().await else { return };
        let mut body = vec![0; (length as usize).saturating_sub(4)];
        if client.read_exact(&mut body).await.is_err() {
            return;
        }
        // A full server still takes cancel requests: they pass.
        if body.starts_with(&CANCEL_REQUEST) {
            if let Ok(mut server) = TcpStream::connect(upstream).await {
                let _ = server.write_all(&[&length.to_be_bytes()[..], &body].concat()).await;
            }
            return;
        }
        if body != SSL_REQUEST {
            break;
        }
        if client.write_all(b"N").await.is_err() {
            return;
        }
    }
    let mut fields = Vec::new();
    for (kind, value) in
        [(b'S', "FATAL"), (b'V', "FATAL"), (b'C', "53300"), (b'M', "sorry, too many clients already")]
    {
        fields.push(kind);
        fields.extend_from_slice(value.as_bytes());
        fields.push(0);
    }
    fields.push(0);
    let mut message = vec![b'E'];
    message.extend_from_slice(&(fields.len() as u32 + 4).to_be_bytes());
    message.extend_from_slice(&fields);
    let _ = client.write_all(&message).await;
}

/// The app on a fresh schema, its database reached through a [`Proxy`], its connections
/// named `application_name`.
async fn behind_a_proxy(application_name: &str) -> Option<(TestApp, Proxy)> {
    let db = TestDb::postgres().await?;
    let Database::Postgres { url } = db.database() else { unreachable!() };
    let proxy = Proxy::start(support::server_addr(url.expose()).await).await;
    let proxied = support::through_proxy(url.expose(), proxy.listen.port());
    let named = format!("{proxied}&application_name={application_name}");
    let app = TestApp::start_with(Database::Postgres { url: Secret::new(named) }, db, None).await;
    Some((app, proxy))
}

/// The app behind a [`Proxy`] after a webhook for `x:1`, with two connections of the test's
/// own: one to watch the server, one holding `x:1`'s row.
struct XHeld {
    app: TestApp,
    proxy: Proxy,
    /// The app's `application_name`.
    name: String,
    observer: tokio_postgres::Client,
    holder: tokio_postgres::Client,
}

async fn x_held(prefix: &str) -> Option<XHeld> {
    let name = support::unique(prefix);
    let (app, proxy) = behind_a_proxy(&name).await?;
    assert_eq!(app.webhook(&docker_event("x:1")).await.status, 200);
    let (observer, holder) = (support::connect_to(&app).await, support::hold_row(&app, "x:1").await);
    Some(XHeld { app, proxy, name, observer, holder })
}

/// Every spawned request answered, with `status`.
async fn all_answered(requests: Vec<tokio::task::JoinHandle<support::Response>>, status: u16) {
    for request in requests {
        let response = answer(async { request.await.unwrap() }).await;
        assert_eq!(response.status, status, "{}", response.text());
    }
}

/// A server that takes no more connections (its `max_connections`, a role's limit) while every
/// pooled one is busy: requests wait for one of those to come back instead of failing. A
/// refused attempt to grow the pool does not mean the database is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_wait_for_the_pool_when_the_server_takes_no_more_connections() {
    requests_wait_for_the_pool_while_new_connections_fail("full", Proxy::refuse_more).await;
}

/// An attempt to grow the pool that fails otherwise (a slow server's connect timeout, a
/// network error) while every pooled connection is busy: the requests waiting, webhooks among
/// them, wait for those connections rather than hear that the database is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_wait_for_the_pool_when_a_new_connection_fails_and_ours_are_busy() {
    requests_wait_for_the_pool_while_new_connections_fail("busy", Proxy::drop_more).await;
}

async fn requests_wait_for_the_pool_while_new_connections_fail(prefix: &str, refuse: fn(&Proxy)) {
    let Some(XHeld { app, proxy, name, observer, holder }) = x_held(prefix).await else { return };

    // More acknowledgements than the pool has connections (five idle, one more at most, after
    // one webhook): those that get one wait on the holder's row lock, the others for the pool,
    // which cannot grow. Each waiting one starts an attempt to connect or waits behind one
    // pending, which is refused after it started waiting; background refills are refused too,
    // and only once every pooled connection waits on the lock are none of them idle.
    refuse(&proxy);
    let acknowledgements: Vec<_> =
        (0..8).map(|_| tokio::spawn(app.request("PATCH", "/api/updates/x%3A1").send())).collect();
    let mut waiting = false;
    for _ in 0..500 {
        let used = support::pool_use(&observer, &name).await;
        if used.blocked > 0 && used.idle == 0 && proxy.refused.load(Ordering::SeqCst) >= 2 {
            waiting = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(waiting, "the acknowledgements never filled the pool");
    holder.batch_execute("COMMIT").await.unwrap();
    all_answered(acknowledgements, 204).await;
    app.stop().await;
}

/// With the server taking no more connections, acknowledgements of `x:1` (whose row the
/// caller holds) started one by one until a single pooled connection is left idle, and every
/// connection the proxy let through has its server process (none still starting that could
/// join the idle ones later).
async fn all_but_one_connection_waiting(
    app: &TestApp,
    proxy: &Proxy,
    observer: &tokio_postgres::Client,
    application_name: &str,
) -> Vec<tokio::task::JoinHandle<support::Response>> {
    proxy.refuse_more();
    let mut acknowledgements = Vec::new();
    let mut left = support::pool_use(observer, application_name).await;
    for _ in 0..500 {
        if left.idle <= 1 {
            if left.all == proxy.open.load(Ordering::SeqCst) as i64 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
            left = support::pool_use(observer, application_name).await;
            continue;
        }
        let waiting = left.blocked;
        acknowledgements.push(tokio::spawn(app.request("PATCH", "/api/updates/x%3A1").send()));
        for _ in 0..500 {
            tokio::time::sleep(Duration::from_millis(10)).await;
            left = support::pool_use(observer, application_name).await;
            if left.blocked > waiting {
                break;
            }
        }
        assert!(left.blocked > waiting, "an acknowledgement never waited on the lock");
    }
    assert_eq!(left.idle, 1, "one pooled connection is left idle");
    assert_eq!(left.all, proxy.open.load(Ordering::SeqCst) as i64, "no connection is still starting");
    acknowledgements
}

/// With the server at its connection limit and one pooled connection left, a listing reads on
/// that one: waiting for two more while holding it would wait for requests that wait in turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_reads_on_one_connection_when_no_more_are_free() {
    let Some(XHeld { app, proxy, name, observer, holder }) = x_held("last").await else { return };
    assert_eq!(app.webhook(&docker_event("y:1")).await.status, 200);
    let acknowledgements = all_but_one_connection_waiting(&app, &proxy, &observer, &name).await;

    let listing = answer(app.get("/api/updates")).await;
    assert_eq!(listing.status, 200, "{}", listing.text());
    let listed = listing.json();
    assert_eq!(listed.as_object().unwrap().keys().collect::<Vec<_>>(), ["x:1", "y:1"]);
    holder.batch_execute("COMMIT").await.unwrap();
    all_answered(acknowledgements, 204).await;
    app.stop().await;
}

/// A listing on one connection given up while one of its pipelined queries still runs: the
/// connection is not handed out again behind that query, though the others had finished.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listing_given_up_on_one_connection_leaves_it_out_of_the_pool() {
    let Some(XHeld { app, proxy, name, observer, holder }) = x_held("given_up").await else { return };
    let tags_holder = support::connect_to(&app).await;
    let acknowledgements = all_but_one_connection_waiting(&app, &proxy, &observer, &name).await;
    // A first listing on that connection prepares the three queries there: unprepared, the
    // assignments' query would wait for the lock while being prepared, and the halves behind it.
    assert_eq!(app.get("/api/updates").await.status, 200);

    // The images are read; the assignments wait for the `tags` lock past the listing's time.
    tags_holder.batch_execute("BEGIN; LOCK TABLE tags IN ACCESS EXCLUSIVE MODE").await.unwrap();
    let listing = answer(app.get("/api/updates")).await;
    assert_eq!(listing.status, 503, "{}", listing.text());

    // The one pooled connection, handed out again, would hold the next request behind the
    // abandoned query until the `tags` lock went.
    // A refill refused just before (the server was full, and none of the pool's connections
    // left) can still fail the first attempts at once; a hang behind the abandoned query would
    // instead run out the request's time.
    proxy.accept_more();
    let history = get_while(&app, "/api/updates/x%3A1/history", |history| {
        history.text().contains("takes no more connections")
    })
    .await;
    assert_eq!(history.status, 200, "{}", history.text());
    tags_holder.batch_execute("COMMIT").await.unwrap();
    holder.batch_execute("COMMIT").await.unwrap();
    // Started before the listing, they waited on the row lock past their own time.
    all_answered(acknowledgements, 503).await;
    app.stop().await;
}

/// A server at its connection limit with none of its connections the service's: nothing will
/// come back to the pool, so requests hear it at once instead of waiting out the checkout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_server_with_none_of_our_connections_is_answered_at_once() {
    let name = support::unique("none_ours");
    let Some((app, proxy)) = behind_a_proxy(&name).await else { return };
    assert_eq!(app.webhook(&docker_event("x:1")).await.status, 200);
    let observer = support::connect_to(&app).await;
    proxy.cap.store(0, Ordering::SeqCst);
    let ours = format!("FROM pg_stat_activity WHERE application_name = '{name}'");
    // Until none is left, a while running: a connection the pool opened just before the cap
    // shows its name only once its start-up is through, and escaped a single sweep.
    let mut quiet = 0;
    while quiet < 3 {
        let ended = observer.query(&format!("SELECT pg_terminate_backend(pid) {ours}"), &[]).await.unwrap();
        quiet = if ended.is_empty() { quiet + 1 } else { 0 };
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }

    // The first requests may still be handed a connection whose end the service has not read.
    let health = get_while(&app, "/healthz", |health| {
        health.status == 503 && !health.error().contains("takes no more connections")
    })
    .await;
    assert_eq!(health.status, 503, "{}", health.text());
    assert!(health.error().contains("takes no more connections"), "{}", health.text());
    app.stop().await;
}

/// `GET path`, asked again (ten times at most) while `retry` holds for the answer: the first
/// answers may come from a moment the test has moved past.
async fn get_while(
    app: &TestApp,
    path: &str,
    retry: impl Fn(&support::Response) -> bool,
) -> support::Response {
    let mut response = answer(app.get(path)).await;
    for _ in 0..10 {
        if !retry(&response) {
            break;
        }
        response = answer(app.get(path)).await;
    }
    response
}

async fn answer(response: impl std::future::Future<Output = support::Response>) -> support::Response {
    tokio::time::timeout(Duration::from_secs(15), response).await.expect("the request hung")
}

/// The server closing every connection (a restart, a failover, an idle-connection killer):
/// once the service has read that they were closed (at once, in practice), the pooled
/// connections are not handed out again, so no webhook after that is refused. DIUN sends each
/// notification once. (A request already on a connection when it closes still fails.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_the_server_closed_are_not_handed_out() {
    let Some(db) = TestDb::postgres().await else { return };
    let Database::Postgres { url } = db.database() else { unreachable!() };
    let name = support::unique("closed");
    let named = format!("{}&application_name={name}", url.expose());
    let app = TestApp::start_with(Database::Postgres { url: Secret::new(named) }, db, None).await;

    // Many requests at once, so that the pool holds several connections.
    let reads = (0..25).map(|_| app.get("/api/updates"));
    for read in futures_util::future::join_all(reads).await {
        assert_eq!(read.status, 200);
    }
    assert_eq!(app.webhook(&docker_event("before:1")).await.status, 200);

    let ours = format!("FROM pg_stat_activity WHERE application_name = '{name}'");
    let terminated =
        support::query_sql(url.expose(), &format!("SELECT pid, pg_terminate_backend(pid) {ours}")).await;
    assert!(terminated.len() > 1, "the pool held more than one connection");
    // The terminated processes by pid: the replica relay reconnects after a second under the
    // same application name, so counting by name could wait for a process that is not gone.
    let pids: Vec<String> = terminated.iter().map(|row| row.get::<_, i32>(0).to_string()).collect();
    let still_there = format!("SELECT count(*) FROM pg_stat_activity WHERE pid IN ({})", pids.join(", "));
    let mut gone = false;
    for _ in 0..100 {
        let left: i64 = support::query_sql(url.expose(), &still_there).await[0].get(0);
        if left == 0 {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(gone, "the terminated server processes did not exit");
    // Time for the service to read that its connections were closed (far more than needed).
    tokio::time::sleep(Duration::from_millis(300)).await;

    for n in 0..30 {
        let image = format!("after-{n}:1");
        let stored = app.webhook(&docker_event(&image)).await;
        assert_eq!(stored.status, 200, "webhook {n} after the restart: {}", stored.text());
    }
    assert_eq!(app.get("/api/updates").await.status, 200);
    assert_eq!(app.updates().await.as_object().unwrap().len(), 31);
    app.stop().await;
}
