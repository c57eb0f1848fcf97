//! Faults against the real binary: a kill -9 or a SIGTERM in the middle of sustained webhook
//! load, a full disk, a read-only folder. What was answered 200 must be there afterwards, the
//! SQLite file must stay intact, and failures must be clear JSON errors and log lines, never a
//! panic or a lost write. (A PostgreSQL outage is in tests/outage.rs.)

mod support;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use support::process::Service;
use support::{TestDb, docker_event};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Mutex;

/// Only a hang exceeds this.
const HANG: Duration = Duration::from_secs(30);
const WORKERS: usize = 12;

/// One request on its own connection. `Err` when the connection failed before a complete
/// answer arrived (refused, reset, or closed early); a complete answer gives its status.
async fn try_send(addr: SocketAddr, request: &[u8]) -> Result<u16, String> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.map_err(|err| format!("connect: {err}"))?;
        stream.write_all(request).await.map_err(|err| format!("write: {err}"))?;
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.map_err(|err| format!("read: {err}"))?;
        let text = String::from_utf8_lossy(&answer);
        let complete = text.contains("\r\n\r\n");
        let status = text.split_whitespace().nth(1).and_then(|code| code.parse().ok());
        match status {
            Some(status) if complete => Ok(status),
            _ => Err(format!("incomplete answer: {text:?}")),
        }
    };
    tokio::time::timeout(HANG, exchange).await.unwrap_or_else(|_| Err("hung".into()))
}

fn webhook_request(event: &Value) -> Vec<u8> {
    let body = event.to_string();
    format!(
        "POST /webhook HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// What the load acknowledged: every image answered 200, and per worker the highest
/// sequence number answered 200 on its own image that it keeps overwriting.
#[derive(Default)]
struct Acknowledged {
    images: Vec<String>,
    latest: Vec<Option<u64>>,
}

/// `WORKERS` clients posting webhooks back to back until `stop` is set or the service goes
/// away. Every answer is either a complete 200 or a failed connection: anything else (a 5xx,
/// half an answer) fails the test.
async fn sustained_load(addr: SocketAddr, stop: Arc<AtomicBool>, answered: Arc<AtomicUsize>) -> Acknowledged {
    let acknowledged = Arc::new(Mutex::new(Acknowledged { images: Vec::new(), latest: vec![None; WORKERS] }));
    let workers = (0..WORKERS).map(|worker| {
        let (stop, answered, acknowledged) =
            (Arc::clone(&stop), Arc::clone(&answered), Arc::clone(&acknowledged));
        tokio::spawn(async move {
            for seq in 0u64.. {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                // Alternately a new image and an overwrite of the worker's own one.
                let (image, overwrite) = if seq % 2 == 0 {
                    (format!("load/w{worker}-{seq}:1"), false)
                } else {
                    (format!("load/own-{worker}:1"), true)
                };
                let mut event = docker_event(&image);
                event["digest"] = json!(format!("sha256:{seq}"));
                match try_send(addr, &webhook_request(&event)).await {
                    Ok(200) => {
                        answered.fetch_add(1, Ordering::Relaxed);
                        let mut acknowledged = acknowledged.lock().await;
                        if overwrite {
                            acknowledged.latest[worker] = Some(seq);
                        } else {
                            acknowledged.images.push(image);
                        }
                    }
                    Ok(status) => panic!("worker {worker}: {image} answered {status}"),
                    // The service is gone (killed or stopping): this request was never acknowledged.
                    Err(_) => break,
                }
            }
        })
    });
    for worker in futures_util::future::join_all(workers).await {
        worker.expect("load worker");
    }
    Arc::try_unwrap(acknowledged).ok().expect("workers done").into_inner()
}

/// Every acknowledged image is present, and no overwritten image went back in time.
fn assert_all_present(updates: &Value, acknowledged: &Acknowledged) {
    for image in &acknowledged.images {
        assert!(updates.get(image).is_some(), "{image} was answered 200 but is gone");
    }
    for (worker, latest) in acknowledged.latest.iter().enumerate() {
        let Some(latest) = latest else { continue };
        let image = format!("load/own-{worker}:1");
        let digest = updates[&image]["event"]["digest"].as_str().unwrap_or_else(|| panic!("{image} is gone"));
        let stored: u64 = digest.trim_start_matches("sha256:").parse().unwrap();
        assert!(stored >= *latest, "{image} holds write {stored}, but write {latest} was answered 200");
    }
}

async fn wait_for(count: &AtomicUsize, at_least: usize) {
    let waiting = async {
        while count.load(Ordering::Relaxed) < at_least {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), waiting).await.expect("the load never got going");
}

#[cfg(feature = "sqlite")]
fn assert_sqlite_intact(path: &std::path::Path) {
    let conn = rusqlite::Connection::open(path).expect("open the database after the crash");
    let integrity: String = conn.query_row("PRAGMA integrity_check", [], |row| row.get(0)).unwrap();
    assert_eq!(integrity, "ok");
    let mut stmt = conn.prepare("PRAGMA foreign_key_check").unwrap();
    let orphans = stmt.query_map([], |row| row.get::<_, String>(0)).unwrap().count();
    assert_eq!(orphans, 0, "rows point at missing parents");
}

/// The service on `env`, with [`sustained_load`] running on it and already `warm` answers in.
async fn service_under_load(
    env: &[(&'static str, String)],
    warm: usize,
) -> (Service, Arc<AtomicBool>, tokio::task::JoinHandle<Acknowledged>) {
    let service = Service::start(env).await;
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let load = tokio::spawn(sustained_load(service.addr, Arc::clone(&stop), Arc::clone(&answered)));
    wait_for(&answered, warm).await;
    (service, stop, load)
}

/// Starts the service again on the same database: everything acknowledged must be there.
async fn assert_all_present_after_restart(db: &TestDb, acknowledged: &Acknowledged) {
    let restarted = Service::start(&db.env()).await;
    let updates = restarted.request("GET", "/api/updates").send().await.json();
    assert_all_present(&updates, acknowledged);
    drop(restarted);
    db.drop_schema().await;
}

/// One `#[tokio::test]` per backend for `async fn $name(&TestDb)`: SQLite always, PostgreSQL
/// when a test database is given.
macro_rules! on_each_backend {
    ($name:ident, $sqlite:ident, $postgres:ident) => {
        #[cfg(feature = "sqlite")]
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $sqlite() {
            $name(&TestDb::sqlite()).await;
        }

        #[cfg(feature = "postgres")]
        #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $postgres() {
            if let Some(db) = TestDb::postgres().await {
                $name(&db).await;
            }
        }
    };
}

/// kill -9 while a dozen clients post back to back.
async fn kill_9_during_sustained_load_loses_no_answered_webhook(db: &TestDb) {
    let (mut service, _stop, load) = service_under_load(&db.env(), 1000).await;
    service.signal("KILL");
    service.wait(HANG).await;
    let acknowledged = load.await.expect("load");
    assert!(acknowledged.images.len() >= 100, "too little load to mean anything");

    #[cfg(feature = "sqlite")]
    if let diun_dashboard::config::Database::Sqlite { path } = db.database() {
        assert_sqlite_intact(&path);
    }
    assert_all_present_after_restart(db, &acknowledged).await;
}

on_each_backend!(
    kill_9_during_sustained_load_loses_no_answered_webhook,
    kill_9_during_sustained_load_loses_no_answered_webhook_on_sqlite,
    kill_9_during_sustained_load_loses_no_answered_webhook_on_postgres
);

/// SIGTERM while clients post back to back and a few are half-way through sending their body:
/// those finish with 200, the rest get a 200 or a refused connection (never a broken answer),
/// the process exits 0 and everything answered 200 is there after a restart.
async fn sigterm_during_load_finishes_in_flight_requests_and_exits_0(db: &TestDb) {
    let (mut service, stop, load) = service_under_load(&db.env(), 100).await;

    let mut slow = Vec::new();
    for i in 0..5 {
        let request = webhook_request(&docker_event(&format!("slow/client{i}:1")));
        let mut stream = TcpStream::connect(service.addr).await.expect("connect a slow client");
        let half = request.len() / 2;
        stream.write_all(&request[..half]).await.unwrap();
        slow.push((stream, request[half..].to_vec()));
    }
    // Connections are accepted in order: once this is answered, the slow ones are in flight.
    assert_eq!(service.request("GET", "/healthz").send().await.status, 200);
    service.signal("TERM");
    service.wait_for_log("stopping: finishing the requests in flight").await;
    for (i, (mut stream, rest)) in slow.into_iter().enumerate() {
        stream.write_all(&rest).await.expect("the server still reads an in-flight request");
        let mut answer = String::new();
        tokio::time::timeout(HANG, stream.read_to_string(&mut answer)).await.expect("hung").unwrap();
        assert!(answer.starts_with("HTTP/1.1 200"), "slow client {i}: {answer}");
    }
    assert_eq!(service.wait(HANG).await, Some(0), "{}", service.log());
    stop.store(true, Ordering::Relaxed);
    let mut acknowledged = load.await.expect("load");
    acknowledged.images.extend((0..5).map(|i| format!("slow/client{i}:1")));
    assert!(!service.log().contains("panicked"), "{}", service.log());
    assert_all_present_after_restart(db, &acknowledged).await;
}

on_each_backend!(
    sigterm_during_load_finishes_in_flight_requests_and_exits_0,
    sigterm_during_load_finishes_in_flight_requests_and_exits_0_on_sqlite,
    sigterm_during_load_finishes_in_flight_requests_and_exits_0_on_postgres
);

// ---------------------------------------------------------------------------------------------
// SQLite's folder: full, read-only

/// A small tmpfs of its own, unmounted on drop. Mounting needs root (CAP_SYS_ADMIN); where it
/// is refused the test is skipped with a message, except under `CI=true`, where that fails.
#[cfg(feature = "sqlite")]
struct SmallDisk {
    path: std::path::PathBuf,
    _dir: support::TempDir,
}

#[cfg(feature = "sqlite")]
impl SmallDisk {
    fn mount(size: &str) -> Option<Self> {
        let dir = support::TempDir::new();
        let path = dir.0.join("disk");
        std::fs::create_dir_all(&path).unwrap();
        let mounted = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&path)
            .output();
        match mounted {
            Ok(output) if output.status.success() => Some(Self { path, _dir: dir }),
            other => {
                let why = match other {
                    Ok(output) => String::from_utf8_lossy(&output.stderr).trim().to_string(),
                    Err(err) => err.to_string(),
                };
                support::skip(&format!(
                    "cannot mount a small tmpfs to fill ({why}); run as root, with CAP_SYS_ADMIN in a \
                     container (docker run --privileged)"
                ));
                None
            }
        }
    }
}

#[cfg(feature = "sqlite")]
impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

/// Fills the file system holding `dir` with one file, to the last byte.
#[cfg(feature = "sqlite")]
fn fill(dir: &std::path::Path) -> std::path::PathBuf {
    use std::io::Write;
    let path = dir.join("filler");
    let mut file = std::fs::File::create(&path).expect("create the filler");
    let block = vec![0xa5u8; 64 * 1024];
    let mut size = block.len();
    // Large writes first, then ever smaller ones for the last free bytes.
    while size > 0 {
        match file.write(&block[..size]) {
            Ok(0) | Err(_) => size /= 2,
            Ok(_) => {}
        }
    }
    let _ = file.sync_all();
    path
}

/// With the disk full, a write answers 503 with a JSON error and a log line, never a panic;
/// reads keep working; once there is room again writes succeed without a restart, and nothing
/// answered 200 (or 201) is lost, then or after a restart.
#[cfg(feature = "sqlite")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_is_a_clear_error_reads_go_on_and_writes_recover() {
    let Some(disk) = SmallDisk::mount("16m") else { return };
    let db_path = disk.path.join("diun.db");
    let env = [("DB_PATH", db_path.display().to_string())];
    let mut service = Service::start(&env).await;
    let before = docker_event("before/full:1");
    assert_eq!(service.request("POST", "/webhook").body(before.to_string()).send().await.status, 200);
    // Every event answered 200, by image: all must be there at the end.
    let mut answered = vec![before];

    let filler = fill(&disk.path);
    // A little room left, so that some writes still fit before the disk is full: those answered
    // 200 at the edge must survive the refusal that follows.
    let full = std::fs::metadata(&filler).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&filler).unwrap().set_len(full - 1024 * 1024).unwrap();
    let mut refused = None;
    for i in 0..50 {
        let mut event = docker_event(&format!("during/full{i}:1"));
        event["hub_link"] = json!("x".repeat(256 * 1024));
        let response = service.request("POST", "/webhook").body(event.to_string()).send().await;
        if response.status != 200 {
            refused = Some(response);
            break;
        }
        answered.push(event);
    }
    let refused = refused.expect("50 large writes succeeded on a full disk");
    assert!(answered.len() > 1, "no write fitted in the room left: nothing at the edge was checked");
    // SECURITY.md: a full disk is a 503 with a JSON error (no longer a 500 "no such savepoint").
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert!(!refused.error().is_empty());
    // A small write may still fit in the pages SQLite already has (201); if not, it is the same
    // clear 503 as any write on a full disk. Never a 500.
    let tag = service.request("POST", "/api/tags").json(&json!({ "name": "full" })).send().await;
    match tag.status {
        201 => assert_eq!(tag.json()["name"], "full", "{}", tag.text()),
        503 => assert!(!tag.error().is_empty()),
        other => panic!("a tag on a full disk: {other} {}", tag.text()),
    }

    // Reads go on.
    assert_eq!(service.request("GET", "/healthz").send().await.status, 200);
    let updates = service.request("GET", "/api/updates").send().await;
    assert_eq!(updates.status, 200, "{}", updates.text());
    assert_all_answered_are_stored(&updates.json(), &answered);
    let log = service.log();
    assert!(log.lines().any(|l| (l.contains("WARN") || l.contains("ERROR")) && l.contains("full")), "{log}");

    // Room again: writes succeed without a restart.
    std::fs::remove_file(filler).unwrap();
    let after = docker_event("after/full:1");
    let response = service.request("POST", "/webhook").body(after.to_string()).send().await;
    assert_eq!(response.status, 200, "{}", response.text());
    answered.push(after);
    let updates = service.request("GET", "/api/updates").send().await.json();
    assert_all_answered_are_stored(&updates, &answered);
    let tags = service.request("GET", "/api/tags").send().await.json();
    assert!(tag.status != 201 || has_tag(&tags, "full"), "the tag was answered 201 but is gone: {tags}");

    service.signal("TERM");
    assert_eq!(service.wait(HANG).await, Some(0), "{}", service.log());
    assert!(!service.log().contains("panicked"), "{}", service.log());
    assert_sqlite_intact(&db_path);

    // And after a restart on the same file.
    let restarted = Service::start(&env).await;
    let updates = restarted.request("GET", "/api/updates").send().await.json();
    assert_all_answered_are_stored(&updates, &answered);
    let tags = restarted.request("GET", "/api/tags").send().await.json();
    assert!(tag.status != 201 || has_tag(&tags, "full"), "the tag was answered 201 but is gone: {tags}");
    drop(restarted);
    drop(disk);
}

#[cfg(feature = "sqlite")]
fn has_tag(tags: &Value, name: &str) -> bool {
    tags.as_array().expect("a list of tags").iter().any(|tag| tag["name"] == name)
}

/// Every event of `answered` is listed, as it was sent. (The events are large: not printed.)
#[cfg(feature = "sqlite")]
#[track_caller]
fn assert_all_answered_are_stored(updates: &Value, answered: &[Value]) {
    for event in answered {
        let image = event["image"].as_str().unwrap();
        let Some(stored) = updates.get(image) else { panic!("{image} was answered 200 but is gone") };
        assert!(stored["event"] == *event, "{image} was answered 200 but is not stored as sent");
    }
}

/// A database file the service may not write (its folder writable) is a clear one-line start-up
/// error too: SQLite opened it read-only without a word, and the service answered /healthz while
/// every webhook failed.
#[cfg(all(feature = "sqlite", unix))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_database_file_is_a_clear_start_up_error() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, folder) = a_folder_in_a_temp_dir("rw");
    let db_path = folder.join("diun.db");
    let mut service = Service::start(&[("DB_PATH", db_path.display().to_string())]).await;
    service.signal("TERM");
    assert_eq!(service.wait(HANG).await, Some(0), "{}", service.log());
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o777)).unwrap();
    for file in std::fs::read_dir(&folder).unwrap() {
        std::fs::set_permissions(file.unwrap().path(), std::fs::Permissions::from_mode(0o444)).unwrap();
    }
    let output = start_unprivileged(&db_path).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot open SQLite database") && stderr.contains("read-only"), "{stderr}");
    assert_eq!(stderr.lines().filter(|line| line.contains("ERROR")).count(), 1, "{stderr}");
}

/// A folder named `name` in a new temporary folder (kept while the first is), where the
/// unprivileged user of [`start_unprivileged`] can reach it: under `/tmp` when the temporary
/// folder is closed to other users (libpam-tmpdir gives each user a 0700 one).
#[cfg(all(feature = "sqlite", unix))]
fn a_folder_in_a_temp_dir(name: &str) -> (support::TempDir, std::path::PathBuf) {
    let dir = if others_can_reach(&std::env::temp_dir()) {
        support::TempDir::new()
    } else {
        support::TempDir::new_in(std::path::Path::new("/tmp"))
    };
    let folder = dir.0.join(name);
    std::fs::create_dir_all(&folder).unwrap();
    (dir, folder)
}

/// Whether every folder down to `path` lets other users through.
#[cfg(all(feature = "sqlite", unix))]
fn others_can_reach(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.ancestors()
        .all(|folder| std::fs::metadata(folder).is_ok_and(|meta| meta.permissions().mode() & 0o001 != 0))
}

/// Runs the service on `db_path` until it exits, as an unprivileged user when the tests run as
/// root (root ignores file permissions). That user runs a copy of the binary beside the
/// database's folder: the build's own may be out of its reach (a checkout in /root, 0700).
#[cfg(all(feature = "sqlite", unix))]
async fn start_unprivileged(db_path: &std::path::Path) -> std::process::Output {
    use std::os::unix::fs::PermissionsExt;
    let env =
        [("DB_PATH", db_path.display().to_string()), ("PORT", support::process::free_port().to_string())];
    let is_root = std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0");
    let mut command = if is_root {
        let beside = db_path.parent().and_then(std::path::Path::parent).expect("the temporary folder");
        let copy = beside.join("diun-dashboard");
        std::fs::copy(support::process::BINARY, &copy).expect("copy the binary");
        std::fs::set_permissions(&copy, std::fs::Permissions::from_mode(0o755)).expect("make it runnable");
        let mut command = support::process::command_of(&copy, &env);
        command.uid(65534).gid(65534);
        command
    } else {
        support::process::command(&env)
    };
    // A binary just written can be "busy" (ETXTBSY) for a moment: a process forked meanwhile
    // by another test's thread holds the copy's file open until it runs its own program.
    for _ in 0..20 {
        match tokio::time::timeout(HANG, command.output()).await.expect("start-up hung") {
            Err(err) if err.raw_os_error() == Some(26) => tokio::time::sleep(Duration::from_millis(50)).await,
            ran => return ran.expect("run"),
        }
    }
    panic!("the copy of the binary stayed busy")
}

/// A folder the service may not write to (it runs as an unprivileged user here: root ignores
/// permissions) is a clear one-line start-up error, not a service that fails its first write.
/// Only start-up is checked here: a folder that turns read-only under a running service leaves
/// SQLite the files it has open (a full disk is the failure that can happen then, tested apart).
#[cfg(all(feature = "sqlite", unix))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_folder_is_a_clear_start_up_error() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, folder) = a_folder_in_a_temp_dir("ro");
    // The unprivileged user must reach the folder, but not write in it.
    std::fs::set_permissions(&dir.0, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&folder, std::fs::Permissions::from_mode(0o555)).unwrap();
    let output = start_unprivileged(&folder.join("diun.db")).await;
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cannot open SQLite database"), "{stderr}");
    assert_eq!(stderr.lines().filter(|line| line.contains("ERROR")).count(), 1, "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
