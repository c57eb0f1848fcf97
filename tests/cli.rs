//! The binary itself: arguments, start-up and its messages, exit codes, signals, durability.

mod support;

use std::time::Duration;

#[cfg(feature = "sqlite")]
use support::TempDir;
use support::process::{Service, free_port, run};
use support::{TestDb, docker_event};

const LIMIT: Duration = Duration::from_secs(20);

/// Starts the binary with `env` and expects SPEC §3's failed start: exit 1, one error line
/// that says `expected`.
async fn fails_to_start(env: &[(&str, String)], expected: &str) {
    let (code, _, stderr) = run(&[], env, LIMIT).await;
    assert_eq!(code, Some(1), "{env:?}: {stderr}");
    assert!(stderr.contains(expected), "{env:?}: {stderr}");
    assert_eq!(stderr.lines().filter(|l| l.contains("ERROR")).count(), 1, "{stderr}");
}

/// Starts the service on `db` once and stops it: the database is migrated afterwards.
#[cfg(feature = "postgres")]
async fn start_and_stop(db: &TestDb) {
    let mut service = Service::start(&db.env()).await;
    service.signal("TERM");
    assert_eq!(service.wait(LIMIT).await, Some(0), "{}", service.log());
}

#[tokio::test]
async fn version_and_help_are_printed() {
    let (code, stdout, _) = run(&["--version"], &[], LIMIT).await;
    assert_eq!(code, Some(0));
    assert_eq!(stdout.trim(), format!("diun-dashboard {}", env!("CARGO_PKG_VERSION")));
    let (code, stdout, _) = run(&["--help"], &[], LIMIT).await;
    assert_eq!(code, Some(0));
    for word in ["healthcheck", "DATABASE_URL", "DB_PATH", "WEBHOOK_SECRET", "PORT"] {
        assert!(stdout.contains(word), "help lacks {word}: {stdout}");
    }
    let (code, _, stderr) = run(&["--frobnicate"], &[], LIMIT).await;
    assert_eq!(code, Some(2));
    assert!(stderr.contains("unknown"), "{stderr}");
}

#[tokio::test]
async fn bad_configuration_exits_non_zero_with_one_clear_line() {
    for (env, expected) in [
        (vec![("PORT", "eighty".to_string())], "PORT"),
        (vec![("BIND", "not-an-ip".to_string())], "BIND"),
        (vec![("DATABASE_URL", "mysql://root@localhost/x".to_string())], "PostgreSQL URL"),
        (vec![("DB_PATH", ":memory:".to_string())], "DB_PATH must be a plain file path"),
    ] {
        fails_to_start(&env, expected).await;
    }
}

#[tokio::test]
async fn a_failed_start_is_printed_even_with_the_log_turned_off() {
    for rust_log in ["off", "diun_dashboard=off"] {
        let env = [("RUST_LOG", rust_log.to_string()), ("PORT", "0".to_string())];
        let (code, _, stderr) = run(&[], &env, LIMIT).await;
        assert_eq!(code, Some(1), "{rust_log}: {stderr}");
        assert_eq!(stderr.trim(), "error: PORT must be a number from 1 to 65535, not \"0\"", "{rust_log}");
    }
}

/// Without a webhook secret (unset or empty) anyone who reaches `/webhook` can post: the log
/// says so at start-up, and does not when a secret is set.
#[cfg(feature = "sqlite")]
#[tokio::test]
async fn an_open_webhook_is_warned_about_at_start_up() {
    const WARNING: &str = "WEBHOOK_SECRET is not set: anyone who can reach /webhook can post updates";
    for (secret, warned) in [(None, true), (Some(""), true), (Some("s3cret"), false)] {
        let dir = TempDir::new();
        let mut env = vec![("DB_PATH", dir.0.join("diun.db").display().to_string())];
        env.extend(secret.map(|secret| ("WEBHOOK_SECRET", secret.to_string())));
        let mut service = Service::start(&env).await;
        service.signal("TERM");
        assert_eq!(service.wait(LIMIT).await, Some(0), "{}", service.log());
        // Read once the last line is in: a warning comes before it.
        service.wait_for_log("shutting down").await;
        let log = service.log();
        assert_eq!(log.contains(WARNING), warned, "{secret:?}: {log}");
        assert!(log.contains("Listening on"), "{log}");
    }
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sqlite_start_up_logs_the_path_creates_its_folder_and_stops_cleanly_on_sigterm() {
    let dir = TempDir::new();
    let path = dir.0.join("nested/deeper/diun.db");
    // An empty RUST_LOG (a compose file passing it through unset) counts as unset: `info`.
    let env = [("DB_PATH", path.display().to_string()), ("RUST_LOG", String::new())];
    let mut service = Service::start(&env).await;
    assert!(path.exists(), "the parent folder is created");
    let log = service.log();
    assert!(log.contains(&format!("Using SQLite database at {}", path.display())), "{log}");
    assert!(log.contains(&format!("Listening on http://{}", service.addr)), "{log}");
    assert!(!log.contains("PostgreSQL"), "{log}");

    let port = service.addr.port().to_string();
    let (code, stdout, stderr) =
        run(&["healthcheck"], &[("PORT", port.clone()), ("BIND", "127.0.0.1".into())], LIMIT).await;
    assert_eq!(code, Some(0), "{stdout}{stderr}");

    service.signal("TERM");
    assert_eq!(service.wait(LIMIT).await, Some(0), "{}", service.log());
    let (code, _, stderr) = run(&["healthcheck"], &[("PORT", port)], LIMIT).await;
    assert_eq!(code, Some(1), "nothing listens any more: {stderr}");
    // Closed cleanly: the writer's connection went last and emptied the WAL into the file.
    let wal = std::fs::metadata(path.with_extension("db-wal")).map_or(0, |meta| meta.len());
    assert_eq!(wal, 0, "the WAL was left with {wal} bytes");
    let conn = rusqlite::Connection::open(&path).unwrap();
    let integrity: String = conn.query_row("PRAGMA integrity_check", [], |row| row.get(0)).unwrap();
    assert_eq!(integrity, "ok");
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn sigint_also_stops_cleanly() {
    let dir = TempDir::new();
    let mut service = Service::start(&[("DB_PATH", dir.0.join("d.db").display().to_string())]).await;
    service.signal("INT");
    assert_eq!(service.wait(LIMIT).await, Some(0), "{}", service.log());
}

/// Started with a low soft limit on open files under a higher hard one (systemd's 1024 under
/// 524288, say), the service raises its own to the hard limit: every client is a descriptor.
#[cfg(all(feature = "sqlite", target_os = "linux"))]
#[tokio::test]
async fn the_open_file_limit_is_raised_to_the_hard_one() {
    const LOW: libc::rlim_t = 64;
    let dir = TempDir::new();
    let env = [("DB_PATH", dir.0.join("d.db").display().to_string())];
    let mut service = Service::spawn_adjusted(&[], &env, |command| {
        // SAFETY: only async-signal-safe calls between fork and exec.
        unsafe {
            command.pre_exec(|| {
                let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
                if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                limit.rlim_cur = LOW;
                if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    });
    service.wait_healthy().await;
    let pid = service.child.id().expect("running");
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).expect("its limits");
    let open_files = limits.lines().find(|line| line.starts_with("Max open files")).expect("the line");
    let numbers: Vec<&str> = open_files.split_whitespace().skip(3).take(2).collect();
    let [soft, hard] = numbers[..] else { panic!("{open_files}") };
    assert!(hard == "unlimited" || hard.parse::<libc::rlim_t>().unwrap() > LOW, "{open_files}");
    assert_ne!(soft, LOW.to_string(), "the soft limit stayed where it started: {open_files}");
    if hard != "unlimited" {
        assert_eq!(soft, hard, "{open_files}");
    }
    service.signal("TERM");
    assert_eq!(service.wait(LIMIT).await, Some(0), "{}", service.log());
}

/// A request still being sent when SIGTERM arrives is answered before the process exits.
#[cfg(feature = "sqlite")]
#[tokio::test]
async fn in_flight_requests_finish_after_sigterm() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let dir = TempDir::new();
    let db = dir.0.join("d.db");
    let mut service = Service::start(&[("DB_PATH", db.display().to_string())]).await;
    let body = docker_event("slow/client:1").to_string();
    let mut stream = tokio::net::TcpStream::connect(service.addr).await.unwrap();
    let head = format!(
        "POST /webhook HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    stream.write_all(&body.as_bytes()[..10]).await.unwrap();
    // Connections are accepted in order: once this is answered, the slow one is in flight.
    assert_eq!(service.request("GET", "/healthz").send().await.status, 200);
    service.signal("TERM");
    service.wait_for_log("stopping: finishing the requests in flight").await;
    stream.write_all(&body.as_bytes()[10..]).await.unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert_eq!(service.wait(LIMIT).await, Some(0), "{}", service.log());

    let service = Service::start(&[("DB_PATH", db.display().to_string())]).await;
    let updates = service.request("GET", "/api/updates").send().await.json();
    assert!(updates.get("slow/client:1").is_some(), "{updates}");
}

/// Every webhook answered 200 is there after a kill -9 and a restart.
async fn answered_webhooks_survive_kill_9(db: &TestDb) {
    let env = db.env();
    let mut service = Service::start(&env).await;
    let mut acknowledged = Vec::new();
    let sends: Vec<_> = (0..200)
        .map(|i| {
            let request = service
                .request("POST", "/webhook")
                .body(docker_event(&format!("reg.example/app{i}:1")).to_string());
            async move { (i, request.send().await.status) }
        })
        .collect();
    for (i, status) in futures_util::future::join_all(sends).await {
        if status == 200 {
            acknowledged.push(format!("reg.example/app{i}:1"));
        }
    }
    assert_eq!(acknowledged.len(), 200);
    service.signal("KILL");
    service.wait(LIMIT).await;

    let restarted = Service::start(&env).await;
    let updates = restarted.request("GET", "/api/updates").send().await.json();
    for image in &acknowledged {
        assert!(updates.get(image).is_some(), "{image} was answered 200 but is gone");
    }
    db.drop_schema().await;
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn answered_webhooks_survive_kill_9_on_sqlite() {
    answered_webhooks_survive_kill_9(&TestDb::sqlite()).await;
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn answered_webhooks_survive_kill_9_on_postgres() {
    if let Some(db) = TestDb::postgres().await {
        answered_webhooks_survive_kill_9(&db).await;
    }
}

/// A start on a database migrated before logs only its own lines: no "already exists,
/// skipping" notice from the server at every start.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn a_restart_on_postgres_logs_no_server_notices() {
    let Some(db) = TestDb::postgres().await else { return };
    // With a password in the URL (the test server trusts, so it is never asked for): a start
    // that works does not print it either.
    let env: Vec<_> = db
        .env()
        .into_iter()
        .map(|(key, url)| (key, url.replacen("://postgres@", "://postgres:s3cret-pw@", 1)))
        .collect();
    assert!(env[0].1.contains("s3cret-pw"), "the test's URL has no user to give a password: {env:?}");
    for start in ["first", "second"] {
        let mut service = Service::start(&env).await;
        service.signal("TERM");
        assert_eq!(service.wait(LIMIT).await, Some(0), "{}", service.log());
        let log = service.log();
        assert!(log.contains("Using PostgreSQL database"), "{log}");
        assert!(log.contains(&format!("Listening on http://{}", service.addr)), "{log}");
        assert!(!log.contains("NOTICE"), "{start} start: {log}");
        assert!(!log.contains("s3cret-pw"), "{start} start printed the password: {log}");
    }
    db.drop_schema().await;
}

/// `migrate` reads DATABASE_URL as the service does (a blank value is unset, not a URL to fail
/// on), and an argument that may be a URL with a password is not echoed back in its error (a
/// forgotten `--to` printed the password to the log).
#[tokio::test]
async fn migrate_reads_its_arguments_as_the_service_does_and_echoes_no_url() {
    let blank = [("DATABASE_URL", "   ".to_string())];
    let (code, _, stderr) = run(&["migrate", "--from", "/nonexistent/diun.db"], &blank, LIMIT).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("migrate needs --from <sqlite file> and --to <postgres url>"), "{stderr}");

    let url = "postgres://diun:not-for-the-log@db.example/diun";
    let (code, _, stderr) = run(&["migrate", "--from", "/nonexistent/diun.db", url], &[], LIMIT).await;
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("unknown option"), "{stderr}");
    assert!(!stderr.contains("not-for-the-log"), "the password was printed: {stderr}");
}

/// A replica that starts while another holds the migration lock says that it waits for it, and
/// starts once the lock is free, however long the other's migration takes: here longer than
/// the 5 s start-up limit that once cancelled the wait (and would cancel a long migration of
/// its own at every start), and under a lock_timeout and a statement_timeout the DBA set.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn a_start_behind_another_replicas_migration_waits_for_it() {
    let Some(db) = TestDb::postgres().await else { return };
    let diun_dashboard::config::Database::Postgres { url } = db.database() else { unreachable!() };
    let (holder, connection) = tokio_postgres::connect(url.expose(), tokio_postgres::NoTls).await.unwrap();
    tokio::spawn(connection);
    let lock = diun_dashboard::store::postgres::MIGRATION_LOCK;
    holder.execute("SELECT pg_advisory_lock($1)", &[&lock]).await.unwrap();
    // A lock_timeout or statement_timeout the DBA set for the role or the database does not
    // cut the wait short.
    let with_lock_timeout = url.expose().replacen(
        "options=",
        "options=-c%20lock_timeout%3D200%20-c%20statement_timeout%3D1000%20",
        1,
    );
    assert_ne!(with_lock_timeout, url.expose(), "the test URL sets its schema through options");
    let mut service = Service::spawn(&[("DATABASE_URL", with_lock_timeout)]);
    service.wait_for_log("holds the migration lock of this database; waiting for it").await;
    tokio::time::sleep(std::time::Duration::from_secs(6)).await;
    holder.execute("SELECT pg_advisory_unlock($1)", &[&lock]).await.unwrap();
    service.wait_healthy().await;
    service.signal("TERM");
    assert_eq!(service.wait(LIMIT).await, Some(0), "{}", service.log());
    db.drop_schema().await;
}

/// A stop asked while the start waits (here for another replica's migration) ends it at once,
/// cleanly. The signal handlers were installed only once serving: the signal killed the
/// process (and was lost on Docker's PID 1, which then stopped only when killed).
#[cfg(feature = "postgres")]
#[tokio::test]
async fn a_stop_during_the_start_ends_it_cleanly() {
    let Some(db) = TestDb::postgres().await else { return };
    let diun_dashboard::config::Database::Postgres { url } = db.database() else { unreachable!() };
    let holder = support::connect(url.expose()).await;
    let lock = diun_dashboard::store::postgres::MIGRATION_LOCK;
    holder.execute("SELECT pg_advisory_lock($1)", &[&lock]).await.unwrap();
    let mut service = Service::spawn(&[("DATABASE_URL", url.expose().to_string())]);
    service.wait_for_log("holds the migration lock of this database; waiting for it").await;
    service.signal("TERM");
    assert_eq!(service.wait(LIMIT).await, Some(0), "{}", service.log());
    service.wait_for_log("stopped before the service started").await;
    holder.execute("SELECT pg_advisory_unlock($1)", &[&lock]).await.unwrap();
    db.drop_schema().await;
}

/// A database that takes no writes (a standby, or read-only by default) is refused at start-up
/// with one clear line, rather than answering /healthz while every webhook fails.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn a_read_only_postgres_is_a_clear_start_up_error() {
    let Some(db) = TestDb::postgres().await else { return };
    // Migrated before: nothing at start-up would need a write.
    start_and_stop(&db).await;
    let diun_dashboard::config::Database::Postgres { url } = db.database() else { unreachable!() };
    // The test URL sets the schema through `options`; read-only is added to the same value.
    let read_only =
        url.expose().replacen("options=", "options=-c%20default_transaction_read_only%3Don%20", 1);
    assert_ne!(read_only, url.expose(), "the test URL has no options to extend");
    fails_to_start(
        &[("DATABASE_URL", read_only), ("PORT", free_port().to_string())],
        "does not allow writes",
    )
    .await;
    db.drop_schema().await;
}

/// A database whose encoding cannot hold every character (LATIN1 here) is refused at start-up
/// with one clear line, rather than failing the first webhook that names a character it lacks.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn a_postgres_database_that_is_not_utf8_is_a_clear_start_up_error() {
    let Some(base) = support::postgres_url() else { return };
    let client = support::connect(&base).await;
    // What a failed run of this test left (its DROP comes after its assertions), by a prefix no
    // one else's database would have: the server may be a user's, shared with others.
    for row in client
        .query("SELECT datname FROM pg_database WHERE datname LIKE 'diun\\_test\\_latin1\\_%'", &[])
        .await
        .unwrap()
    {
        let _ = client.batch_execute(&format!("DROP DATABASE IF EXISTS {}", row.get::<_, String>(0))).await;
    }
    let name = support::unique("diun_test_latin1");
    let create =
        format!("CREATE DATABASE {name} ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0");
    if let Err(err) = client.batch_execute(&create).await {
        support::skip(&format!("cannot create a LATIN1 database to start on ({err})"));
        return;
    }
    let url = with_database(&base, &name);
    fails_to_start(&[("DATABASE_URL", url.clone()), ("PORT", free_port().to_string())], "encoding is LATIN1")
        .await;

    // `migrate` refuses it too, before writing anything into it.
    #[cfg(feature = "sqlite")]
    {
        let dir = TempDir::new();
        let source = dir.0.join("diun.db");
        let mut service = Service::start(&[("DB_PATH", source.display().to_string())]).await;
        service.signal("TERM");
        assert_eq!(service.wait(LIMIT).await, Some(0), "{}", service.log());
        let (code, _, stderr) =
            run(&["migrate", "--from", &source.display().to_string(), "--to", &url], &[], LIMIT).await;
        assert_eq!(code, Some(1), "{stderr}");
        assert!(stderr.contains("encoding is LATIN1"), "{stderr}");
        let latin1 = support::connect(&url).await;
        let tables = latin1.query("SELECT 1 FROM pg_tables WHERE schemaname = 'public'", &[]).await.unwrap();
        assert!(tables.is_empty(), "migrate wrote {} table(s) into the LATIN1 database", tables.len());
    }
    // The test's own connections to it close in the background: the server may still count one.
    let drop_it = format!("DROP DATABASE {name}");
    for attempt in 1.. {
        match client.batch_execute(&drop_it).await {
            Ok(()) => break,
            Err(_) if attempt < 50 => tokio::time::sleep(Duration::from_millis(100)).await,
            Err(err) => panic!("{drop_it}: {err}"),
        }
    }
}

/// `url` with its database (the path) replaced by `name`; its parameters stay.
#[cfg(feature = "postgres")]
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(base, query)| (base, Some(query)));
    let host_at = base.find("://").expect("TEST_DATABASE_URL is a URL") + 3;
    let host_end = base[host_at..].find('/').map_or(base.len(), |at| host_at + at);
    let query = query.map(|query| format!("?{query}")).unwrap_or_default();
    format!("{}/{name}{query}", &base[..host_end])
}

/// A server that takes the connection and never answers (a firewall's tarpit, a hung host) is
/// a start-up error within seconds too, not a hang.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn a_postgres_that_never_answers_is_a_clear_start_up_error() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let held = tokio::spawn(async move {
        let mut connections = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            connections.push(socket);
        }
    });
    let url = format!("postgres://diun@127.0.0.1:{port}/diun");
    // `run` fails the test past LIMIT.
    fails_to_start(&[("DATABASE_URL", url), ("PORT", free_port().to_string())], "timed out connecting").await;
    held.abort();
}

/// A database migrated by a newer release is refused at start-up with one clear line.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn a_postgres_schema_from_a_newer_release_is_a_clear_start_up_error() {
    let Some(db) = TestDb::postgres().await else { return };
    start_and_stop(&db).await;
    db.query("INSERT INTO schema_migrations (version, name) VALUES (9999, 'from_the_future')").await;
    let mut env = db.env();
    env.push(("PORT", free_port().to_string()));
    fails_to_start(&env, "newer diun-dashboard").await;
    db.drop_schema().await;
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn a_file_that_is_not_a_database_is_a_clear_start_up_error() {
    let dir = TempDir::new();
    let path = dir.0.join("garbage.db");
    std::fs::write(&path, vec![b'x'; 8192]).unwrap();
    let (code, _, stderr) =
        run(&[], &[("DB_PATH", path.display().to_string()), ("PORT", free_port().to_string())], LIMIT).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("cannot open SQLite database"), "{stderr}");
}

#[cfg(feature = "postgres")]
#[tokio::test]
async fn unreachable_postgres_fails_fast_without_printing_the_password() {
    let url = format!("postgres://diun:hunter2@127.0.0.1:{}/diun", free_port());
    // `run` fails the test past LIMIT, which only a retry loop or a pool timeout would reach.
    let (code, _, stderr) =
        run(&[], &[("DATABASE_URL", url), ("PORT", free_port().to_string())], LIMIT).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("Using PostgreSQL database"), "{stderr}");
    assert!(stderr.contains("cannot connect"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "the password leaked: {stderr}");
}

/// A server that goes through PostgreSQL's start-up, says it takes writes, and then answers
/// nothing (a stuck proxy, a server out of memory) fails the start within seconds and says so:
/// the service does not wait for ever before it listens.
#[cfg(feature = "postgres")]
#[tokio::test]
async fn a_postgres_server_that_stops_answering_fails_the_start() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    fn message(out: &mut Vec<u8>, tag: u8, body: &[u8]) {
        out.push(tag);
        out.extend_from_slice(&(body.len() as i32 + 4).to_be_bytes());
        out.extend_from_slice(body);
    }
    async fn skip(socket: &mut tokio::net::TcpStream, length: i32) {
        let mut body = vec![0; length as usize - 4];
        socket.read_exact(&mut body).await.unwrap();
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        let startup = socket.read_i32().await.unwrap();
        skip(&mut socket, startup).await;
        let mut reply = Vec::new();
        message(&mut reply, b'R', &0i32.to_be_bytes()); // authenticated
        message(&mut reply, b'K', &[0, 0, 0, 1, 0, 0, 0, 2]); // the key for cancels
        message(&mut reply, b'Z', b"I"); // ready
        socket.write_all(&reply).await.unwrap();

        // The driver's `SHOW transaction_read_only`, for target_session_attrs=read-write.
        assert_eq!(socket.read_u8().await.unwrap(), b'Q');
        let query = socket.read_i32().await.unwrap();
        skip(&mut socket, query).await;
        let mut column = b"transaction_read_only\0".to_vec();
        column.extend_from_slice(&0i32.to_be_bytes()); // no table
        column.extend_from_slice(&0i16.to_be_bytes());
        column.extend_from_slice(&25i32.to_be_bytes()); // text
        column.extend_from_slice(&(-1i16).to_be_bytes());
        column.extend_from_slice(&(-1i32).to_be_bytes());
        column.extend_from_slice(&0i16.to_be_bytes());
        let mut reply = Vec::new();
        message(&mut reply, b'T', &[&1i16.to_be_bytes()[..], &column].concat());
        message(&mut reply, b'D', &[&1i16.to_be_bytes()[..], &3i32.to_be_bytes(), b"off"].concat());
        message(&mut reply, b'C', b"SHOW\0");
        message(&mut reply, b'Z', b"I");
        socket.write_all(&reply).await.unwrap();

        // Whatever comes next goes unanswered, the connection open, until the service leaves.
        let mut unanswered = Vec::new();
        let _ = socket.read_to_end(&mut unanswered).await;
        unanswered
    });
    let url = format!("postgres://diun:secret@127.0.0.1:{port}/diun");
    let (code, _, stderr) =
        run(&[], &[("DATABASE_URL", url), ("PORT", free_port().to_string())], LIMIT).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("the server accepted the connection but did not answer"), "{stderr}");
    let unanswered = server.await.unwrap();
    assert_eq!(unanswered.first(), Some(&b'Q'), "the service sent no query after the start-up");
}

#[cfg(not(feature = "postgres"))]
#[tokio::test]
async fn a_sqlite_only_build_names_the_missing_postgres_feature() {
    let env = [("DATABASE_URL", "postgres://u:p@127.0.0.1/x".to_string()), ("PORT", free_port().to_string())];
    let (code, _, stderr) = run(&[], &env, LIMIT).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("`postgres` Cargo feature"), "{stderr}");
    assert!(!stderr.contains("Using PostgreSQL"), "it says it uses what it lacks: {stderr}");
}

#[cfg(not(feature = "sqlite"))]
#[tokio::test]
async fn a_postgres_only_build_names_the_missing_sqlite_feature() {
    let (code, _, stderr) = run(&[], &[("PORT", free_port().to_string())], LIMIT).await;
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("`sqlite` Cargo feature"), "{stderr}");
    assert!(!stderr.contains("Using SQLite"), "it says it uses what it lacks: {stderr}");
}

#[cfg(feature = "sqlite")]
#[tokio::test]
async fn the_healthcheck_reports_an_unhealthy_or_absent_service() {
    let (code, _, stderr) = run(&["healthcheck"], &[("PORT", free_port().to_string())], LIMIT).await;
    assert_eq!(code, Some(1));
    assert!(stderr.contains("unhealthy"), "{stderr}");

    // A service that answers, but 503 (its database is down): unhealthy too, and why.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let answering = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        // The whole head: closing with part of it unread would reset the connection.
        let mut request = Vec::new();
        while !request.ends_with(b"\r\n\r\n") {
            let mut chunk = [0; 1024];
            let read = socket.read(&mut chunk).await.unwrap();
            assert!(read > 0, "the healthcheck closed before its request was complete");
            request.extend_from_slice(&chunk[..read]);
        }
        let body = r#"{"error":"the database is down"}"#;
        let answer = format!(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        socket.write_all(answer.as_bytes()).await.unwrap();
        String::from_utf8_lossy(&request).into_owned()
    });
    let env = [("PORT", port.to_string()), ("BIND", "127.0.0.1".to_string())];
    let (code, stdout, stderr) = run(&["healthcheck"], &env, LIMIT).await;
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("unhealthy") && stderr.contains("503"), "{stderr}");
    assert!(stderr.contains("the database is down"), "{stderr}");
    let request = answering.await.unwrap();
    assert!(request.starts_with("GET /healthz HTTP/1.1"), "{request}");

    // One that answers a byte a second, forever (a hung proxy in between, say): the check ends
    // within its own deadline and says so, before Docker's timeout would kill it unexplained.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let trickling = tokio::spawn(async move {
        let (mut socket, _) = listener.accept().await.unwrap();
        for byte in b"HTTP/1.1 200 OK\r\n".iter().cycle() {
            if socket.write_all(&[*byte]).await.is_err() {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_secs(1)).await;
        }
    });
    let env = [("PORT", port.to_string()), ("BIND", "127.0.0.1".to_string())];
    let (code, stdout, stderr) = run(&["healthcheck"], &env, LIMIT).await;
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("no answer in time"), "{stderr}");
    trickling.abort();

    // And one that answers nothing at all: the socket's own timeout says the same.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let silent = tokio::spawn(async move {
        let (socket, _) = listener.accept().await.unwrap();
        std::future::pending::<()>().await;
        drop(socket);
    });
    let env = [("PORT", port.to_string()), ("BIND", "127.0.0.1".to_string())];
    let (code, stdout, stderr) = run(&["healthcheck"], &env, LIMIT).await;
    assert_eq!(code, Some(1), "{stdout}{stderr}");
    assert!(stderr.contains("no answer in time"), "{stderr}");
    silent.abort();
}
