//! Shared by the integration tests: a server per test on `127.0.0.1:0` over a fresh database
//! of either backend, and a small HTTP/1.1 client that can also send raw bytes.
#![allow(dead_code)]

pub mod http;
pub mod process;
pub mod webdriver;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use diun_dashboard::config::{Database, Secret};
use diun_dashboard::http::AppState;
use diun_dashboard::store::Store;
use serde_json::{Value, json};
use tokio::sync::oneshot;

pub use http::Response;

/// A gzip body decoded. `GzDecoder` checks the CRC and the length in the trailer: a stream
/// closed early or joined wrongly fails or decodes to less.
pub fn gunzip(body: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut unzipped = Vec::new();
    std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(body), &mut unzipped)?;
    Ok(unzipped)
}

/// A unique name for scratch files and schemas of this process.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    format!("{prefix}_{}_{}_{nanos}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}

/// A scratch folder, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new() -> Self {
        Self::new_in(&std::env::temp_dir())
    }

    pub fn new_in(base: &Path) -> Self {
        let path = base.join(unique("diun-test"));
        std::fs::create_dir_all(&path).expect("create temp dir");
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Whether the tests run under CI, where nothing may be skipped: CI=1 and CI=woodpecker mean CI
/// as much as CI=true does; only CI=false (or 0) does not.
pub fn in_ci() -> bool {
    std::env::var("CI").is_ok_and(|ci| !ci.is_empty() && ci != "false" && ci != "0")
}

/// Says that a test (or a part of it) did not run, and why: on stderr itself, past the test
/// harness's capture of `eprintln!`, so that a passing run shows it too. Under CI nothing may be
/// skipped: there it fails the test instead.
pub fn skip(why: &str) {
    assert!(!in_ci(), "{why}, under CI=true, where nothing may be skipped (run `cargo xtask test`)");
    let _ = writeln!(std::io::stderr(), "skipped: {why}");
}

/// The PostgreSQL server given to the tests, if any. Without one the PostgreSQL variants are
/// skipped with a message, except under `CI=true`, where a skip is a failure.
pub fn postgres_url() -> Option<String> {
    let url = std::env::var("TEST_DATABASE_URL").ok().filter(|url| !url.is_empty());
    if url.is_none() {
        skip(
            "TEST_DATABASE_URL is not set, so the PostgreSQL variant did not run (cargo xtask test sets it)",
        );
    }
    url
}

/// A fresh database of one backend. PostgreSQL gets a schema of its own per test, through the
/// connection's search_path, so tests run in parallel on one server.
pub enum TestDb {
    Sqlite {
        dir: TempDir,
    },
    #[cfg(feature = "postgres")]
    Postgres {
        base_url: String,
        schema: String,
    },
}

impl TestDb {
    pub fn sqlite() -> Self {
        TestDb::Sqlite { dir: TempDir::new() }
    }

    /// SQLite when compiled in, else PostgreSQL: for tests about HTTP, not storage.
    pub async fn any() -> Option<Self> {
        #[cfg(feature = "sqlite")]
        return Some(Self::sqlite());
        #[cfg(not(feature = "sqlite"))]
        return Self::postgres().await;
    }

    #[cfg(feature = "postgres")]
    pub async fn postgres() -> Option<Self> {
        let base_url = postgres_url()?;
        let schema = unique("t");
        run_sql(&base_url, &format!("CREATE SCHEMA {schema}")).await;
        Some(TestDb::Postgres { base_url, schema })
    }

    pub fn database(&self) -> Database {
        match self {
            TestDb::Sqlite { dir } => Database::Sqlite { path: dir.0.join("diun.db") },
            #[cfg(feature = "postgres")]
            TestDb::Postgres { base_url, schema } => {
                let separator = if base_url.contains('?') { '&' } else { '?' };
                // Named after the schema too, so that a test can find the app's server processes.
                let url = format!(
                    "{base_url}{separator}options=-c%20search_path%3D{schema}&application_name={schema}"
                );
                Database::Postgres { url: Secret::new(url) }
            }
        }
    }

    /// The schema of a PostgreSQL database, which its connections are named after.
    #[cfg(feature = "postgres")]
    pub fn schema(&self) -> Option<&str> {
        match self {
            TestDb::Postgres { schema, .. } => Some(schema),
            TestDb::Sqlite { .. } => None,
        }
    }

    /// The URL or path a child process needs in its environment.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        match self.database() {
            Database::Sqlite { path } => vec![("DB_PATH", path.display().to_string())],
            Database::Postgres { url } => vec![("DATABASE_URL", url.expose().to_string())],
        }
    }

    /// The rows of `sql` run in this database (PostgreSQL: in the test's schema).
    #[cfg(feature = "postgres")]
    pub async fn query(&self, sql: &str) -> Vec<tokio_postgres::Row> {
        let Database::Postgres { url } = self.database() else {
            panic!("SQL is run here on PostgreSQL only");
        };
        query_sql(url.expose(), sql).await
    }

    /// The rows of `table` in this database, read apart from the service.
    pub async fn count_rows(&self, table: &str) -> i64 {
        let sql = format!("SELECT count(*) FROM {table}");
        let database = self.database();
        match &database {
            #[cfg(feature = "sqlite")]
            Database::Sqlite { path } => rusqlite::Connection::open(path)
                .and_then(|conn| conn.query_row(&sql, [], |row| row.get(0)))
                .unwrap_or_else(|err| panic!("{sql}: {err}")),
            #[cfg(feature = "postgres")]
            Database::Postgres { .. } => self.query(&sql).await[0].get(0),
            #[allow(unreachable_patterns)]
            _ => panic!("{sql}: this build has no driver for {database:?}"),
        }
    }

    pub async fn drop_schema(&self) {
        #[cfg(feature = "postgres")]
        if let TestDb::Postgres { base_url, schema } = self {
            run_sql(base_url, &format!("DROP SCHEMA IF EXISTS {schema} CASCADE")).await;
        }
    }
}

/// The address of the server `url` names (over TCP: a proxy forwards there).
#[cfg(feature = "postgres")]
pub async fn server_addr(url: &str) -> std::net::SocketAddr {
    let config: tokio_postgres::Config = url.parse().unwrap();
    let host = match config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(host)) => host.clone(),
        None => "localhost".into(),
        #[allow(unreachable_patterns)]
        Some(other) => {
            panic!("a proxy forwards over TCP, and {other:?} is a socket: give a host name in the URL")
        }
    };
    let port = config.get_ports().first().copied().unwrap_or(5432);
    // IPv4 first: `localhost` resolves to ::1 first, where a server may not listen (the app
    // itself tries each address).
    let found: Vec<std::net::SocketAddr> =
        tokio::net::lookup_host((host.as_str(), port)).await.map(Iterator::collect).unwrap_or_default();
    found
        .iter()
        .find(|addr| addr.is_ipv4())
        .or(found.first())
        .copied()
        .unwrap_or_else(|| panic!("cannot resolve {host}:{port}"))
}

/// `url` through a proxy listening on 127.0.0.1:`proxy_port` (see [`server_addr`]): its host and
/// port replaced, whatever they were (a host name, no port).
#[cfg(feature = "postgres")]
pub fn through_proxy(url: &str, proxy_port: u16) -> String {
    let (scheme, rest) = url.split_once("://").expect("a postgres:// URL (not key=value settings) to proxy");
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let user = authority.rsplit_once('@').map_or(String::new(), |(user, _)| format!("{user}@"));
    format!("{scheme}://{user}127.0.0.1:{proxy_port}{tail}")
}

#[cfg(feature = "postgres")]
pub async fn run_sql(url: &str, sql: &str) {
    with_client(url, |client| async move {
        client.batch_execute(sql).await.unwrap_or_else(|err| panic!("{sql}: {err}"));
    })
    .await;
}

/// The rows of one query, on a connection of its own that is closed afterwards.
#[cfg(feature = "postgres")]
pub async fn query_sql(url: &str, sql: &str) -> Vec<tokio_postgres::Row> {
    with_client(url, |client| async move {
        client.query(sql, &[]).await.unwrap_or_else(|err| panic!("{sql}: {err}"))
    })
    .await
}

/// Waits until `count` server processes wait on `holder`: on a lock it holds, or queued behind
/// a process that does (a second waiter for a row waits on the first).
#[cfg(feature = "postgres")]
pub async fn until_blocked(observer: &tokio_postgres::Client, holder: i32, count: i64) {
    const WAITING: &str = "
        WITH direct AS (SELECT pid FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid)))
        SELECT count(*) FROM pg_stat_activity
        WHERE pg_blocking_pids(pid) && (ARRAY(SELECT pid FROM direct) || $1)";
    for _ in 0..500 {
        let row = observer.query_one(WAITING, &[&holder]).await.unwrap();
        if row.get::<_, i64>(0) >= count {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("{count} statement(s) never waited on the test's locks");
}

/// A connection of the test's own, its driver running in the background. Named apart from the
/// app's, which tests find by name.
#[cfg(feature = "postgres")]
pub async fn connect(url: &str) -> tokio_postgres::Client {
    let separator = if url.contains('?') { '&' } else { '?' };
    let url = format!("{url}{separator}application_name=test_client");
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await.expect("connect");
    tokio::spawn(connection);
    client
}

/// A connection of the test's own to a PostgreSQL app's schema.
#[cfg(feature = "postgres")]
pub async fn connect_to(app: &TestApp) -> tokio_postgres::Client {
    let Database::Postgres { url } = app.db.database() else { unreachable!("a PostgreSQL app") };
    connect(url.expose()).await
}

/// A connection of the test's own that holds `image`'s `updates` row (FOR UPDATE) until it
/// commits: the service's statements on that row queue behind it.
#[cfg(feature = "postgres")]
pub async fn hold_row(app: &TestApp, image: &str) -> tokio_postgres::Client {
    let holder = connect_to(app).await;
    let lock = format!("BEGIN; SELECT 1 FROM updates WHERE image = '{image}' FOR UPDATE");
    holder.batch_execute(&lock).await.unwrap();
    holder
}

/// The app's server processes named `application_name`.
#[cfg(feature = "postgres")]
pub struct PoolUse {
    /// Waiting on a lock: a test's, or queued behind another process that does.
    pub blocked: i64,
    /// Pooled and idle: the replicas' relay (LISTEN, then pg_notify) is the app's too, but not
    /// pooled.
    pub idle: i64,
    /// All of them, the relay included.
    pub all: i64,
}

#[cfg(feature = "postgres")]
pub async fn pool_use(observer: &tokio_postgres::Client, application_name: &str) -> PoolUse {
    const POOL_USE: &str = "
        SELECT count(*) FILTER (WHERE wait_event_type = 'Lock'),
               count(*) FILTER (WHERE state = 'idle' AND query NOT LIKE 'LISTEN%'
                                      AND query NOT LIKE '%pg_notify(%'),
               count(*)
        FROM pg_stat_activity WHERE application_name = $1";
    let counts = observer.query_one(POOL_USE, &[&application_name]).await.unwrap();
    PoolUse { blocked: counts.get(0), idle: counts.get(1), all: counts.get(2) }
}

#[cfg(feature = "postgres")]
pub async fn backend_pid(client: &tokio_postgres::Client) -> i32 {
    client.query_one("SELECT pg_backend_pid()", &[]).await.unwrap().get(0)
}

#[cfg(feature = "postgres")]
async fn with_client<T, F: std::future::Future<Output = T>>(
    url: &str,
    op: impl FnOnce(tokio_postgres::Client) -> F,
) -> T {
    let (client, connection) =
        tokio_postgres::connect(url, tokio_postgres::NoTls).await.expect("connect to TEST_DATABASE_URL");
    let driver = tokio::spawn(connection);
    // `op` owns the client, so the connection ends when it is done and the driver returns.
    let result = op(client).await;
    let _ = driver.await;
    result
}

/// A running server, in this process, on a random port.
pub struct TestApp {
    pub addr: std::net::SocketAddr,
    pub store: Arc<Store>,
    pub db: TestDb,
    stop: Option<oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl TestApp {
    pub async fn start(db: TestDb, webhook_secret: Option<&str>) -> Self {
        let database = db.database();
        Self::start_with(database, db, webhook_secret).await
    }

    /// Serves `database`; `db` is only cleaned up at the end (they differ when a test puts
    /// something between the service and its database).
    pub async fn start_with(database: Database, db: TestDb, webhook_secret: Option<&str>) -> Self {
        let secret = webhook_secret.map(Secret::new);
        Self::start_configured(database, db, move |store| AppState::new(store, secret)).await
    }

    /// Serves `database` with the state `configure` builds around the opened store.
    pub async fn start_configured(
        database: Database,
        db: TestDb,
        configure: impl FnOnce(Arc<Store>) -> AppState,
    ) -> Self {
        let store = Arc::new(Store::open(&database).await.expect("open store"));
        store.listening_to_other_replicas().await;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let state = configure(Arc::clone(&store));
        let (stop, stopped) = oneshot::channel::<()>();
        let server = tokio::spawn(diun_dashboard::serve(listener, state, async {
            let _ = stopped.await;
        }));
        Self { addr, store, db, stop: Some(stop), server: Some(server) }
    }

    pub async fn sqlite() -> Self {
        Self::start(TestDb::sqlite(), None).await
    }

    #[cfg(feature = "postgres")]
    pub async fn postgres() -> Option<Self> {
        Some(Self::start(TestDb::postgres().await?, None).await)
    }

    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            let _ = server.await;
        }
        self.store.close().await;
        self.db.drop_schema().await;
    }

    pub fn request(&self, method: &str, path: &str) -> http::Request {
        http::Request::new(self.addr, method, path)
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request("GET", path).send().await
    }

    /// POST /webhook the way DIUN does it: no Content-Type.
    pub async fn webhook(&self, event: &Value) -> Response {
        self.request("POST", "/webhook").body(event.to_string()).send().await
    }

    /// An `/api` call with a JSON body, as the dashboard sends it.
    pub async fn api(&self, method: &str, path: &str, body: &Value) -> Response {
        self.request(method, path).json(body).send().await
    }

    pub async fn updates(&self) -> Value {
        let response = self.get("/api/updates").await;
        assert_eq!(response.status, 200, "{}", response.text());
        response.json()
    }

    pub async fn create_tag(&self, name: &str) -> i64 {
        let response = self.api("POST", "/api/tags", &json!({ "name": name })).await;
        assert_eq!(response.status, 201, "{}", response.text());
        response.json()["id"].as_i64().expect("tag id")
    }
}

/// [`docker_event`] from `host`, parsed as the webhook parses it, for calls on the store.
pub fn event_from_host(image: &str, host: &str) -> diun_dashboard::model::DiunEvent {
    let mut event = docker_event(image);
    event["hostname"] = json!(host);
    diun_dashboard::model::DiunEvent::from_json(event.to_string().as_bytes()).expect("a valid event")
}

/// A DIUN event as `docker` provider sends it.
pub fn docker_event(image: &str) -> Value {
    json!({
        "diun_version": "4.28.0",
        "hostname": "nas",
        "status": "new",
        "provider": "docker",
        "image": image,
        "hub_link": "https://hub.docker.com/_/nginx",
        "mime_type": "application/vnd.docker.distribution.manifest.list.v2+json",
        "digest": "sha256:0f5e9b5a2b5d4f8e6c1a3b7d9e2f4a6c8b0d1e3f5a7c9b2d4e6f8a0c1b3d5e7f",
        "created": "2024-05-14T18:21:39.584547123Z",
        "platform": "linux/amd64",
        "metadata": {
            "ctn_command": "nginx -g 'daemon off;'",
            "ctn_createdat": "2024-05-01 10:00:00 +0000 UTC",
            "ctn_id": "4a5b6c7d8e9f",
            "ctn_names": "web",
            "ctn_size": "0B",
            "ctn_state": "running",
            "ctn_status": "Up 2 days"
        }
    })
}

/// Replaces the values that legitimately differ between runs (ids, timestamps) by markers.
pub fn mask(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(key, value)| {
                    let masked = match (key.as_str(), value) {
                        ("received_at" | "acknowledged_at" | "last_seen", Value::String(_)) => {
                            json!("<time>")
                        }
                        ("id" | "tag_id" | "next_before", Value::Number(_)) => json!("<id>"),
                        _ => mask(value),
                    };
                    (key.clone(), masked)
                })
                .collect(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(mask).collect()),
        other => other.clone(),
    }
}

/// Runs each named `async fn(&TestApp)` once per compiled backend: on SQLite always, on
/// PostgreSQL when a test database is given.
#[macro_export]
macro_rules! on_every_backend {
    ($($test:ident),* $(,)?) => {
        #[cfg(feature = "sqlite")]
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let app = $crate::support::TestApp::sqlite().await;
                    super::$test(&app).await;
                    app.stop().await;
                }
            )*
        }
        #[cfg(feature = "postgres")]
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $test() {
                    let Some(app) = $crate::support::TestApp::postgres().await else { return };
                    super::$test(&app).await;
                    app.stop().await;
                }
            )*
        }
    };
}

/// The keys of a JSON object, in the order the text has them.
pub fn top_level_keys(body: &[u8]) -> Vec<String> {
    struct Keys(Vec<String>);
    impl<'de> serde::Deserialize<'de> for Keys {
        fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            struct Visitor;
            impl<'de> serde::de::Visitor<'de> for Visitor {
                type Value = Keys;
                fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                    f.write_str("an object")
                }
                fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Keys, A::Error> {
                    let mut keys = Vec::new();
                    while let Some((key, serde::de::IgnoredAny)) = map.next_entry::<String, _>()? {
                        keys.push(key);
                    }
                    Ok(Keys(keys))
                }
            }
            deserializer.deserialize_map(Visitor)
        }
    }
    serde_json::from_slice::<Keys>(body).unwrap().0
}
