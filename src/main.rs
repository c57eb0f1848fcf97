//! Reads the configuration, opens the store, serves until SIGTERM or SIGINT, closes the store.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::ExitCode;
use std::sync::Arc;

use diun_dashboard::config::{self, Config, Database};
use diun_dashboard::http::AppState;
use diun_dashboard::store::Store;

const USAGE: &str = "\
diun-dashboard — a persistent dashboard of the image updates DIUN reports

USAGE:
    diun-dashboard              serve the dashboard and the webhook
    diun-dashboard healthcheck  exit 0 if the running service answers /healthz with 200
    diun-dashboard migrate --from <sqlite file> [--to <postgres url>] [--force]
                                copy everything from SQLite to an empty PostgreSQL database
                                (--to defaults to DATABASE_URL)
    diun-dashboard --version    print the version
    diun-dashboard --help       print this help

ENVIRONMENT:
    PORT            TCP port (default 8080)
    BIND            listen address (default 0.0.0.0)
    DATABASE_URL    postgres://… to use PostgreSQL; unset to use SQLite
    DB_PATH         SQLite file (default diun.db)
    WEBHOOK_SECRET  when set, POST /webhook needs `Authorization: <secret>`
    HISTORY_DAYS    days of acknowledged webhook history kept (default 180, 0 = forever)
    DASHBOARD_USERNAME, DASHBOARD_PASSWORD
                    both set: the dashboard, /api and /metrics need them (HTTP
                    Basic); /webhook and /healthz do not. Only one set is refused
    RUST_LOG        log filter (default info)
";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match args.iter().map(String::as_str).collect::<Vec<_>>().as_slice() {
        [] => serve(),
        ["healthcheck"] => healthcheck(),
        ["migrate", options @ ..] => migrate(options),
        ["--version" | "-V"] => {
            println!("diun-dashboard {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        ["--help" | "-h" | "help"] => {
            print!("{USAGE}");
            ExitCode::SUCCESS
        }
        other => {
            eprint!("error: unknown arguments {other:?}\n\n{USAGE}");
            ExitCode::from(2)
        }
    };
    // The last lines may still be gathered (see `logging`).
    diun_dashboard::logging::flush();
    code
}

fn serve() -> ExitCode {
    diun_dashboard::logging::init();
    let outcome = Config::from_env().and_then(|config| {
        tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .map_err(|err| format!("cannot start the async runtime: {err}"))?
            .block_on(run(config))
    });
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            fatal(&message);
            ExitCode::FAILURE
        }
    }
}

/// A failure that ends the process is printed even when `RUST_LOG` turns errors off: a failed
/// start must never be silent.
fn fatal(message: &str) {
    if log::log_enabled!(log::Level::Error) {
        log::error!("{message}");
    } else {
        eprintln!("error: {message}");
    }
}

async fn run(config: Config) -> Result<(), String> {
    diun_dashboard::limits::raise_open_file_limit();
    // Not for a backend this binary lacks: "Using SQLite" and then "built without SQLite" read
    // as if it had used it; `Store::open` says what is missing.
    match &config.database {
        database if !database.is_compiled_in() => {}
        Database::Sqlite { path } => log::info!("Using SQLite database at {}", path.display()),
        Database::Postgres { .. } => log::info!("Using PostgreSQL database"),
    }
    // Listened for from here: a stop asked during a long migration ends the start (a PostgreSQL
    // migration rolls back once the server notices the connection gone, at the end of its
    // current statement; a SQLite one, on a thread of its own, is let finish first). Left
    // unhandled until serving, the signal was lost on PID 1 (Docker), which then stopped only
    // when killed at the end of the stop timeout.
    let mut shutdown = std::pin::pin!(shutdown_signal());
    // No time limit around it: each backend fails within seconds on a database it cannot
    // reach, and a migration must be let run to its end, however long (see `PostgresStore::open`).
    let starting = async {
        let store = Store::open(&config.database).await?;
        store.listening_to_other_replicas().await;
        Ok::<_, String>(store)
    };
    let store = tokio::select! {
        store = starting => store?,
        () = &mut shutdown => {
            log::info!("stopped before the service started");
            return Ok(());
        }
    };
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|err| format!("cannot listen on {}: {err}", config.listen))?;
    let address = listener.local_addr().unwrap_or(config.listen);
    log::info!("Listening on http://{address}");
    if config.webhook_secret.is_none() {
        log::warn!("WEBHOOK_SECRET is not set: anyone who can reach /webhook can post updates");
    }
    let store = Arc::new(store);
    let mut state = AppState::new(Arc::clone(&store), config.webhook_secret);
    if let Some((username, password)) = &config.dashboard_credentials {
        log::info!("The dashboard and /api require HTTP Basic authentication as {username:?}");
        state = state.with_dashboard_credentials(username, password);
    }
    // The start-up lines are out before anything is served (see `logging`).
    diun_dashboard::logging::flush();
    let pruning = config.history_days.map(|days| diun_dashboard::retention::spawn(Arc::clone(&store), days));
    let stopping = async {
        shutdown.await;
        // Shutdown may take up to the grace period: the log says why the service is still there.
        log::info!("stopping: finishing the requests in flight");
    };
    diun_dashboard::serve(listener, state, stopping).await;
    if let Some(pruning) = pruning {
        pruning.abort();
    }
    log::info!("shutting down");
    store.close().await;
    Ok(())
}

/// Completes on SIGTERM or SIGINT (Ctrl-C). The handlers are installed when this is called, not
/// when the future is first polled.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    let signals = {
        use tokio::signal::unix::{SignalKind, signal};
        (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    };
    #[cfg(not(unix))]
    let interrupt = tokio::signal::ctrl_c();
    async move {
        #[cfg(unix)]
        {
            let (terminate, interrupt) = signals;
            let received = |signal: std::io::Result<tokio::signal::unix::Signal>, name: &'static str| async move {
                match signal {
                    Ok(mut signal) => {
                        signal.recv().await;
                    }
                    Err(err) => {
                        log::error!("cannot listen for {name}: {err}");
                        std::future::pending::<()>().await;
                    }
                }
            };
            tokio::select! {
                () = received(terminate, "SIGTERM") => {}
                () = received(interrupt, "SIGINT") => {}
            }
        }
        #[cfg(not(unix))]
        let _ = interrupt.await;
    }
}

/// `migrate --from <sqlite file> --to <postgres url> [--force]` (`--to` defaults to DATABASE_URL).
fn migrate(options: &[&str]) -> ExitCode {
    diun_dashboard::logging::init();
    let mut from = None;
    // As the service reads it: trimmed, and blank as unset.
    let mut to =
        std::env::var("DATABASE_URL").ok().map(|url| url.trim().to_string()).filter(|url| !url.is_empty());
    let mut force = false;
    let mut rest = options.iter();
    while let Some(option) = rest.next() {
        match *option {
            "--from" => from = rest.next().map(|path| std::path::PathBuf::from(*path)),
            "--to" => to = rest.next().map(|url| url.to_string()),
            "--force" => force = true,
            // Not echoed when it may be a URL: a forgotten `--to` would print its password.
            other if other.contains("://") => {
                eprintln!("error: unknown option (a URL? it goes after --to)\n\n{USAGE}");
                return ExitCode::from(2);
            }
            other => {
                eprintln!("error: unknown option {other:?}\n\n{USAGE}");
                return ExitCode::from(2);
            }
        }
    }
    let (Some(from), Some(to)) = (from, to) else {
        eprintln!("error: migrate needs --from <sqlite file> and --to <postgres url>\n\n{USAGE}");
        return ExitCode::from(2);
    };
    match copy_to_postgres(&from, &to, force) {
        Ok(summary) => {
            println!("{summary}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            fatal(&message);
            ExitCode::FAILURE
        }
    }
}

#[cfg(all(feature = "sqlite", feature = "postgres"))]
fn copy_to_postgres(from: &std::path::Path, to: &str, force: bool) -> Result<String, String> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .map_err(|err| format!("cannot start the async runtime: {err}"))?;
    // Listened for from the start: without handlers, SIGTERM and SIGINT are ignored by a
    // container's PID 1 (`docker compose run migrate`), which then stops only when killed.
    let copied = runtime.block_on(async {
        tokio::select! {
            copied = diun_dashboard::transfer::migrate(from, to, force) => copied.map(Some),
            () = shutdown_signal() => Ok(None),
        }
    })?;
    let Some(copied) = copied else {
        // The SQLite side may be busy on a thread of its own; the process ends without it.
        runtime.shutdown_background();
        // A stop during the COMMIT itself may come after it: the message does not promise.
        return Err("stopped before the copy finished: PostgreSQL rolls back a copy it had not committed \
                    (run migrate again: without --force it refuses a target that already holds data)"
            .into());
    };
    let left_out = match copied.dangling_assignments {
        0 => String::new(),
        dangling => format!(
            "; {dangling} tag assignment(s) pointing at a tag or an image that is gone were left out \
             (the dashboard showed those images untagged)"
        ),
    };
    Ok(format!(
        "copied {} update(s), {} tag(s), {} tag assignment(s) and {} history event(s) to PostgreSQL; \
         the copy was verified before it was committed{left_out}",
        copied.updates, copied.tags, copied.assignments, copied.events
    ))
}

#[cfg(not(all(feature = "sqlite", feature = "postgres")))]
fn copy_to_postgres(_: &std::path::Path, _: &str, _: bool) -> Result<String, String> {
    Err("migrate needs both the `sqlite` and the `postgres` Cargo features; use the full build".into())
}

/// For container HEALTHCHECKs in images without curl: one plain HTTP/1.1 request.
fn healthcheck() -> ExitCode {
    let config = match Config::from_env() {
        Ok(config) => config,
        Err(message) => {
            eprintln!("error: {message}");
            return ExitCode::FAILURE;
        }
    };
    let addresses = config::local_addresses(config.listen);
    // One deadline for everything: Docker's HEALTHCHECK --timeout kills the check at 7 s, and
    // its own message ("exceeded timeout") would replace ours, which says what failed.
    let deadline = std::time::Instant::now() + diun_dashboard::http::HEALTHCHECK_WAIT;
    let too_late = || std::io::Error::new(std::io::ErrorKind::TimedOut, "no answer in time");
    let left = || {
        deadline
            .checked_duration_since(std::time::Instant::now())
            .filter(|left| !left.is_zero())
            .ok_or_else(too_late)
    };
    // A socket's own timeout ends a read or a write as "would block" on Linux: the same deadline.
    let in_time = |err: std::io::Error| match err.kind() {
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut => too_late(),
        _ => err,
    };
    // The first address that takes the connection is asked (see `local_addresses`).
    let mut connected = Err(std::io::Error::other("no address to call"));
    let mut address = config.listen;
    for candidate in addresses {
        address = candidate;
        connected = left().and_then(|left| TcpStream::connect_timeout(&address, left));
        if connected.is_ok() {
            break;
        }
    }
    let check = || -> std::io::Result<String> {
        let mut stream = connected?;
        stream.set_write_timeout(Some(left()?))?;
        write!(stream, "GET /healthz HTTP/1.1\r\nHost: {address}\r\nConnection: close\r\n\r\n")
            .map_err(in_time)?;
        let mut response = Vec::new();
        let mut chunk = [0; 4096];
        while response.len() < 64 * 1024 {
            stream.set_read_timeout(Some(left()?))?;
            match stream.read(&mut chunk).map_err(in_time)? {
                0 => break,
                read => response.extend_from_slice(&chunk[..read]),
            }
        }
        Ok(String::from_utf8_lossy(&response).into_owned())
    };
    match check() {
        Ok(response) if response.starts_with("HTTP/1.1 200") => {
            println!("healthy");
            ExitCode::SUCCESS
        }
        Ok(response) => {
            let status = response.lines().next().unwrap_or("no response");
            let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
            eprintln!("unhealthy: {status} {body}");
            ExitCode::FAILURE
        }
        Err(err) => {
            eprintln!("unhealthy: cannot reach http://{address}/healthz: {err}");
            ExitCode::FAILURE
        }
    }
}
