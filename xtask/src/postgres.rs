//! A PostgreSQL server for the tests, found or made, in this order (SPEC §8):
//! 1. `DATABASE_URL`, when set: used as it is (each test makes and drops its own schema);
//! 2. a server answering on localhost:5432: a scratch database, dropped afterwards;
//! 3. a throwaway cluster from the local PostgreSQL binaries (initdb + pg_ctl in a temp dir,
//!    through `runuser -u postgres` when root), stopped and deleted afterwards;
//!
//! PostgreSQL is installed with apt first when there are no binaries and we are root.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use crate::system::{self, command};

/// A database for one xtask run; dropping it cleans up what was made for it, also after a
/// failed step.
pub struct TestDatabase {
    url: String,
    cleanup: Cleanup,
    /// The same cleanup for when this process dies without unwinding (Ctrl-C, kill); disarmed
    /// when dropped.
    _watchdog: Option<Watchdog>,
}

enum Cleanup {
    Nothing,
    DropDatabase { user: String, name: String },
    StopCluster { bin: PathBuf, dir: PathBuf, as_postgres: bool },
}

/// Connections one test may hold at once: its app's pool (SPEC §2: 25 at most) and a few of
/// its own.
const CONNECTIONS_PER_TEST: usize = 28;

impl TestDatabase {
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// What the tests need to reach this database: its URL and, when the server allows fewer
    /// connections than tests running side by side would take (a server's default 100 on a
    /// machine of many cores), fewer tests at once, rather than "too many clients" now and then.
    pub fn test_env(&self) -> Vec<(&'static str, String)> {
        let mut env = vec![("TEST_DATABASE_URL", self.url())];
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let allowed = psql_command_for_url(&self.url, "SHOW max_connections")
            .output()
            .ok()
            .filter(|output| output.status.success())
            .and_then(|output| String::from_utf8_lossy(&output.stdout).trim().parse::<usize>().ok());
        if let Some(allowed) = allowed {
            // A few are the server's own (superuser_reserved_connections) and the xtask's.
            let fit = (allowed.saturating_sub(8) / CONNECTIONS_PER_TEST).max(1);
            if fit < cores {
                println!("PostgreSQL allows {allowed} connections: {fit} test(s) at a time");
                env.push(("RUST_TEST_THREADS", fit.to_string()));
            }
        }
        env
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        match &self.cleanup {
            Cleanup::Nothing => {}
            Cleanup::DropDatabase { user, name } => {
                let [forced, ends, plain] = drop_database_sql(name);
                let dropped = psql(user, "postgres", &forced).or_else(|_| {
                    psql(user, "postgres", &ends)?;
                    psql(user, "postgres", &plain)
                });
                if let Err(err) = dropped {
                    eprintln!("xtask: could not drop the scratch database {name}: {err}");
                }
            }
            Cleanup::StopCluster { bin, dir, as_postgres } => {
                let _ = stop_cluster(bin, dir, *as_postgres).output();
                let _ = std::fs::remove_dir_all(dir);
                println!("stopped and removed the throwaway PostgreSQL cluster");
            }
        }
        // The watchdog, a field, is disarmed only after this: a second Ctrl-C during the
        // cleanup above still leaves it to the watchdog.
    }
}

/// Runs a cleanup after this process is gone, however it went. Ctrl-C kills the xtask without
/// running `Drop`, and would leave a throwaway server (which `pg_ctl` detaches from the
/// terminal) or a scratch database behind. A shell in a process group of its own, which the
/// terminal's Ctrl-C does not reach, blocks reading a pipe whose writing end only this process
/// holds (Rust opens pipes close-on-exec); the kernel closes it when this process ends, for
/// whatever reason, and the shell then runs the cleanup. A normal end disarms it.
pub(crate) struct Watchdog(Child);

impl Watchdog {
    /// None, said why, when no shell can be started: the run goes on without it.
    pub(crate) fn arm(cleanup: &[Command]) -> Option<Watchdog> {
        Self::try_arm(cleanup)
            .map_err(|err| println!("xtask: {err}; an interrupted run will leave it behind"))
            .ok()
    }

    fn try_arm(cleanup: &[Command]) -> Result<Watchdog, String> {
        let script = std::iter::once("read -r _".to_string())
            .chain(cleanup.iter().map(shell_line))
            .collect::<Vec<_>>()
            .join("\n");
        let child = Command::new("sh")
            .args(["-c", &script])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|err| format!("cannot start the cleanup watchdog: {err}"))?;
        Ok(Watchdog(child))
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One command as a line of `sh`, with its folder and its changes to the environment.
fn shell_line(command: &Command) -> String {
    let mut line = String::from("(");
    if let Some(dir) = command.get_current_dir() {
        line += &format!("cd {} && ", shell_quote(&dir.to_string_lossy()));
    }
    line += "exec env";
    // env reads its options (-u) only before the first assignment.
    for (name, _) in command.get_envs().filter(|(_, value)| value.is_none()) {
        line += &format!(" -u {}", shell_quote(&name.to_string_lossy()));
    }
    for (name, value) in command.get_envs() {
        if let Some(value) = value {
            let assignment = format!("{}={}", name.to_string_lossy(), value.to_string_lossy());
            line += &format!(" {}", shell_quote(&assignment));
        }
    }
    for part in std::iter::once(command.get_program()).chain(command.get_args()) {
        line += &format!(" {}", shell_quote(&part.to_string_lossy()));
    }
    line + ")"
}

fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "'\\''"))
}

/// The Debian package [`provide`] would stop for, as (package, program it provides), so that it
/// is asked for with the others up front and a user who is not root learns of all of them in
/// one run: none with a URL given or binaries here; psql's when a server answers on localhost
/// without it; else the server's.
pub fn package_needed() -> Option<(&'static str, &'static str)> {
    let cluster_only = cluster_only();
    if (!cluster_only && given_url(|name| std::env::var(name).ok()).is_some()) || find_bindir().is_some() {
        return None;
    }
    package_for(!cluster_only && server_answers_on_localhost(), system::on_path("psql"))
}

/// `XTASK_POSTGRES=cluster`: a throwaway cluster whatever else is at hand (a URL in the
/// environment, the server on localhost), to exercise the path a machine without either takes.
fn cluster_only() -> bool {
    std::env::var("XTASK_POSTGRES").is_ok_and(|value| value == "cluster")
}

/// [`package_needed`] with neither a URL nor binaries, from what answers and what is installed.
fn package_for(local_server: bool, psql: bool) -> Option<(&'static str, &'static str)> {
    match (local_server, psql) {
        (true, true) => None,
        (true, false) => Some(("postgresql-client", "psql")),
        (false, _) => Some(("postgresql", "initdb")),
    }
}

/// A database for the tests: a throwaway cluster started here runs without `fsync`.
pub fn provide() -> Result<TestDatabase, String> {
    provide_with(Durability::Relaxed)
}

/// Whether a throwaway cluster flushes its commits to disk.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `fsync=off`: the tests' commits need not survive a crash of the machine.
    Relaxed,
    /// The server's defaults: what the bench measures must cost what it costs a user.
    AsDeployed,
}

pub fn provide_with(durability: Durability) -> Result<TestDatabase, String> {
    let cluster_only = cluster_only();
    match given_url(|name| std::env::var(name).ok()) {
        Some((name, _)) if cluster_only => {
            println!("PostgreSQL: XTASK_POSTGRES=cluster, so {name} is left aside for a throwaway cluster")
        }
        Some((name, url)) => {
            println!("PostgreSQL: using {name}");
            check_given_url(name, &url)?;
            return Ok(TestDatabase { url, cleanup: Cleanup::Nothing, _watchdog: None });
        }
        None => {}
    }
    if !cluster_only && let Some(database) = scratch_database_on_localhost() {
        return Ok(database);
    }
    if find_bindir().is_none() && system::can_install() {
        println!("PostgreSQL: no server and no binaries; installing the Debian package postgresql");
        system::apt_install("postgresql")?;
    }
    match find_bindir() {
        Some(bin) => throwaway_cluster(&bin, durability),
        // The scratch database on a local server is made with psql: say so rather than ask for
        // the server that is already there.
        None if !cluster_only && !system::on_path("psql") && server_answers_on_localhost() => Err(format!(
            "PostgreSQL answers on localhost:5432, but psql, which makes the tests' scratch database \
             there, is missing: install it (`{}`) or set DATABASE_URL",
            system::install_command("postgresql-client")
        )),
        None if cluster_only => Err(format!(
            "XTASK_POSTGRES=cluster needs PostgreSQL's server binaries (initdb, pg_ctl): install them (`{}`)",
            system::install_command("postgresql")
        )),
        // The scratch database was refused (a password asked for, say): a server is there.
        None if server_answers_on_localhost() => Err(format!(
            "PostgreSQL answers on localhost:5432 but gave user postgres or $USER no scratch database without \
             a password: set DATABASE_URL=postgres://user:password@127.0.0.1:5432/db, or install PostgreSQL's \
             binaries for a throwaway server (`{}`)",
            system::install_command("postgresql")
        )),
        None => Err(format!(
            "PostgreSQL is needed for the tests: set DATABASE_URL=postgres://user@host/db, start a server \
             on localhost:5432, or install it (`{}`)",
            system::install_command("postgresql")
        )),
    }
}

/// The database the user gave, and the variable it came from. TEST_DATABASE_URL first: it is
/// what `cargo test` reads (README), so a developer who set it for that means it here too.
fn given_url(lookup: impl Fn(&str) -> Option<String>) -> Option<(&'static str, String)> {
    ["TEST_DATABASE_URL", "DATABASE_URL"]
        .into_iter()
        .find_map(|name| lookup(name).filter(|url| !url.trim().is_empty()).map(|url| (name, url)))
}

/// A URL left in the environment by another project (another scheme, a host only its Compose
/// network resolves) fails every PostgreSQL test only after the builds; said here instead, in one
/// line. The URL itself is not printed: it may hold a password.
fn check_given_url(name: &str, url: &str) -> Result<(), String> {
    let advice = "fix or unset it, or set XTASK_POSTGRES=cluster for a throwaway server";
    if let Some(problem) = url_scheme_problem(url) {
        return Err(format!("{name} {problem}: {advice}"));
    }
    if !system::on_path("psql") {
        // The tests will say it if it does not answer; psql is only needed for this early word.
        return Ok(());
    }
    let answer = psql_command_for_url(url, "SELECT 1")
        .stderr(Stdio::piped())
        .output()
        .map_err(|err| format!("cannot run psql: {err}"))?;
    if answer.status.success() {
        return Ok(());
    }
    // psql quotes parts of a URL it cannot read (a host name, a token), which may be pieces of
    // its password: with a password in the URL, nothing of what psql said is printed.
    if url_has_password(url) {
        return Err(format!(
            "{name} does not answer (psql's reason is not shown: the URL holds a password): {advice}"
        ));
    }
    let why = String::from_utf8_lossy(&answer.stderr);
    let why = why.lines().map(str::trim).find(|line| !line.is_empty()).unwrap_or("no reason given");
    Err(format!("{name} does not answer ({why}): {advice}"))
}

/// Whether the URL may hold a password: a `:` before its last `@`. Broadly: a password written
/// with a `/` or `@` unencoded (libpq takes some of those) still counts, and a false alarm only
/// hides psql's reason.
fn url_has_password(url: &str) -> bool {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.rsplit_once('@').is_some_and(|(user, _)| user.contains(':'))
}

fn url_scheme_problem(url: &str) -> Option<&'static str> {
    let url = url.trim();
    (!url.starts_with("postgres://") && !url.starts_with("postgresql://"))
        .then_some("is not a postgres:// or postgresql:// URL")
}

fn server_answers_on_localhost() -> bool {
    let address = std::net::SocketAddr::from(([127, 0, 0, 1], 5432));
    std::net::TcpStream::connect_timeout(&address, std::time::Duration::from_secs(1)).is_ok()
}

/// psql on the database `url` names, as the tests reach it (no password file, no TLS).
fn psql_command_for_url(url: &str, sql: &str) -> Command {
    let mut psql = command("psql", &["-w", "-X", "-q", "-A", "-t", "-d", url, "-c", sql]);
    psql.env("PGCONNECT_TIMEOUT", "3").stderr(Stdio::null());
    psql
}

fn psql(user: &str, database: &str, sql: &str) -> Result<String, String> {
    psql_at("127.0.0.1", "5432", user, database, sql)
}

fn psql_at(host: &str, port: &str, user: &str, database: &str, sql: &str) -> Result<String, String> {
    let output = psql_command(host, port, user, database, sql)
        .output()
        .map_err(|err| format!("cannot run psql: {err}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).trim().to_string())
    }
}

fn psql_command(host: &str, port: &str, user: &str, database: &str, sql: &str) -> Command {
    let mut psql = command(
        "psql",
        &["-w", "-X", "-q", "-A", "-t", "-h", host, "-p", port, "-U", user, "-d", database, "-c", sql],
    );
    psql.env("PGCONNECT_TIMEOUT", "3")
        // The tests connect with the URL built from what psql reached, without a password: a
        // server psql reaches only with one (PGPASSWORD, ~/.pgpass) must not count as reachable.
        .env_remove("PGPASSWORD")
        .env("PGPASSFILE", "/dev/null")
        // Nor one it reaches only over TLS or GSS encryption: the tests connect without either.
        .env("PGSSLMODE", "disable")
        .env("PGGSSENCMODE", "disable");
    psql
}

/// Drops `name` with what is still connected to it (a test stopped mid-way): in one step where
/// the server knows `WITH (FORCE)` (13 and newer: a client cannot connect again in between),
/// else, as PostgreSQL 12 and older refuse it (their scratch databases were left behind), its
/// connections ended first. Run in this order, each on its own (DROP DATABASE runs in no
/// transaction), the last two doing nothing after the first.
fn drop_database_sql(name: &str) -> [String; 3] {
    [
        format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
        format!(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
             WHERE datname = '{name}' AND pid <> pg_backend_pid()"
        ),
        format!("DROP DATABASE IF EXISTS {name}"),
    ]
}

fn scratch_database_on_localhost() -> Option<TestDatabase> {
    if !system::on_path("psql") {
        return None;
    }
    let login = std::env::var("USER").unwrap_or_default();
    let user = ["postgres", login.as_str()]
        .into_iter()
        .filter(|user| !user.is_empty())
        .find(|user| psql(user, "postgres", "SELECT 1").is_ok_and(|out| out == "1"))?
        .to_string();
    let name = format!("diun_xtask_{}", std::process::id());
    let watchdog = Watchdog::arm(
        &drop_database_sql(&name).map(|sql| psql_command("127.0.0.1", "5432", &user, "postgres", &sql)),
    );
    if let Err(err) = psql(&user, "postgres", &format!("CREATE DATABASE {name}")) {
        println!(
            "PostgreSQL on localhost:5432 answers but refuses a scratch database ({err}); trying another way"
        );
        return None;
    }
    println!("PostgreSQL: scratch database {name} on localhost:5432 (user {user}), dropped afterwards");
    let url = format!("postgres://{user}@127.0.0.1:5432/{name}");
    Some(TestDatabase { url, cleanup: Cleanup::DropDatabase { user, name }, _watchdog: watchdog })
}

/// The folder holding initdb and pg_ctl: on PATH, or Debian's newest /usr/lib/postgresql/N/bin.
fn find_bindir() -> Option<PathBuf> {
    let has_both = |dir: &Path| dir.join("initdb").is_file() && dir.join("pg_ctl").is_file();
    // Both from one folder: one version's initdb with another's pg_ctl fails on the data folder.
    if let Some(paths) = std::env::var_os("PATH")
        && let Some(dir) = std::env::split_paths(&paths).find(|dir| has_both(dir))
    {
        return Some(dir);
    }
    newest_version_dir(|dir| has_both(&dir.join("bin"))).map(|dir| dir.join("bin"))
}

/// The newest version's folder under /usr/lib/postgresql (Debian's layout) that `usable`
/// accepts: by number, so 17 comes after 9.6.
pub fn newest_version_dir(usable: impl Fn(&Path) -> bool) -> Option<PathBuf> {
    let mut versions: Vec<(Vec<u32>, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(Result::ok)
        .filter_map(|entry| Some((version_key(&entry.file_name().to_string_lossy())?, entry.path())))
        .filter(|(_, dir)| usable(dir))
        .collect();
    versions.sort();
    versions.pop().map(|(_, dir)| dir)
}

fn version_key(name: &str) -> Option<Vec<u32>> {
    name.split('.').map(|part| part.parse().ok()).collect()
}

/// PostgreSQL refuses to run as root, so as root its tools run as the `postgres` user. They run
/// in the temporary directory: initdb and pg_ctl (up to PostgreSQL 15) change back to the
/// caller's directory, which `postgres` cannot enter when the checkout is under `/root`.
fn postgres_tool(program: &Path, args: &[&str], as_postgres: bool) -> Command {
    let mut command = if as_postgres {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(program);
        command
    } else {
        Command::new(program)
    };
    command.args(args).current_dir(cluster_base(as_postgres));
    command
}

/// Where the throwaway cluster lives: `TMPDIR`, unless the `postgres` user may not enter it
/// (libpam-tmpdir's `/tmp/user/0`, mode 0700) or it is too long for the server's socket path
/// (about 100 bytes, the cluster's folder and the socket's name included): then `/tmp`.
fn cluster_base(as_postgres: bool) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let chosen = std::env::temp_dir();
    let others_may_enter = || {
        chosen
            .ancestors()
            .all(|dir| std::fs::metadata(dir).is_ok_and(|m| m.permissions().mode() & 0o001 != 0))
    };
    // pg_ctl hands its options (the socket's folder among them) to a shell: no quoting needed.
    let plain = chosen.to_str().is_some_and(|path| {
        path.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'/' | b'.' | b'_' | b'-'))
    });
    if plain && chosen.as_os_str().len() <= 60 && (!as_postgres || others_may_enter()) {
        chosen
    } else {
        PathBuf::from("/tmp")
    }
}

fn stop_cluster(bin: &Path, dir: &Path, as_postgres: bool) -> Command {
    let data = dir.join("data");
    postgres_tool(
        &bin.join("pg_ctl"),
        &["-D", &data.to_string_lossy(), "-m", "immediate", "-w", "stop"],
        as_postgres,
    )
}

fn throwaway_cluster(bin: &Path, durability: Durability) -> Result<TestDatabase, String> {
    let as_postgres = system::is_root();
    // The bench's on a disk: /tmp is a tmpfs on Debian 13, where its flushes would cost nothing.
    let var_tmp = Path::new("/var/tmp");
    let base = if durability == Durability::AsDeployed && var_tmp.is_dir() {
        var_tmp.to_path_buf()
    } else {
        cluster_base(as_postgres)
    };
    let dir = base.join(format!("diun-xtask-pg-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|err| format!("cannot create {}: {err}", dir.display()))?;
    // From here on, dropping the guard (or this process dying) stops and removes whatever was
    // started.
    let watchdog = Watchdog::arm(&[
        stop_cluster(bin, &dir, as_postgres),
        command("rm", &["-rf", "--", &dir.to_string_lossy()]),
    ]);
    let mut database = TestDatabase {
        url: String::new(),
        cleanup: Cleanup::StopCluster { bin: bin.to_path_buf(), dir: dir.clone(), as_postgres },
        _watchdog: watchdog,
    };
    if as_postgres {
        system::run(&mut command("chown", &["postgres:postgres", &dir.to_string_lossy()]))
            .map_err(|err| format!("{err} (is the `postgres` system user missing?)"))?;
    }
    let data = dir.join("data").to_string_lossy().into_owned();
    let socket_dir = dir.to_string_lossy().into_owned();
    // runuser keeps LANG: a locale forwarded from another machine and not installed here
    // would make initdb fail, and C always exists.
    system::run(&mut postgres_tool(
        &bin.join("initdb"),
        &["-D", &data, "-U", "postgres", "--auth=trust", "--encoding=UTF8", "--locale=C", "--no-sync"],
        as_postgres,
    ))?;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map_err(|err| format!("cannot find a free port: {err}"))?
        .port();
    // Every test's app keeps a pool of its own (up to 25 connections): on a machine with many
    // cores, tests run side by side would exceed the default 100.
    let fsync = if durability == Durability::Relaxed { " -c fsync=off" } else { "" };
    let options =
        format!("-c listen_addresses=127.0.0.1 -p {port} -k {socket_dir}{fsync} -c max_connections=400");
    let log_path = dir.join("server.log");
    let log = log_path.to_string_lossy().into_owned();
    system::run(&mut postgres_tool(
        &bin.join("pg_ctl"),
        &["-D", &data, "-l", &log, "-o", &options, "-w", "-t", "30", "start"],
        as_postgres,
    ))
    // The cleanup removes the folder, log and all: what the server said goes with the error.
    .map_err(|err| format!("{err}\n{}", server_log_tail(&log_path)))?;
    println!("PostgreSQL: throwaway cluster in {} on port {port}, removed afterwards", dir.display());
    database.url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
    Ok(database)
}

/// The last lines of a throwaway server's log, for an error that would otherwise only point at it.
fn server_log_tail(path: &std::path::Path) -> String {
    match std::fs::read_to_string(path) {
        Ok(log) => {
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(15)..].join("\n");
            format!("the server's log ended with:\n{tail}")
        }
        Err(err) => format!("the server's log could not be read: {err}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_package_asked_for_up_front_is_the_one_the_tests_would_stop_for() {
        assert_eq!(package_for(true, true), None, "a scratch database on the local server");
        assert_eq!(package_for(true, false), Some(("postgresql-client", "psql")));
        assert_eq!(package_for(false, true), Some(("postgresql", "initdb")), "psql alone makes no server");
        assert_eq!(package_for(false, false), Some(("postgresql", "initdb")));
    }

    #[test]
    fn a_given_test_database_url_comes_first_and_blank_counts_as_unset() {
        let given = |vars: &[(&str, &str)]| {
            let vars: Vec<(String, String)> =
                vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            given_url(move |name| vars.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()))
        };
        let both = given(&[("DATABASE_URL", "postgres://a/x"), ("TEST_DATABASE_URL", "postgres://b/y")]);
        assert_eq!(both, Some(("TEST_DATABASE_URL", "postgres://b/y".to_string())));
        let blank_test = given(&[("DATABASE_URL", "postgres://a/x"), ("TEST_DATABASE_URL", " ")]);
        assert_eq!(blank_test, Some(("DATABASE_URL", "postgres://a/x".to_string())));
        assert_eq!(given(&[]), None);
    }

    #[test]
    fn a_password_is_found_in_a_url_however_it_is_written() {
        assert!(url_has_password("postgres://u:p@h/db"));
        assert!(url_has_password("postgres://u:p@ss@h/db"), "an unencoded @ in the password");
        assert!(url_has_password("postgresql://u:p%zz@h:5432/db?sslmode=disable"));
        assert!(!url_has_password("postgres://u@h/db"));
        assert!(url_has_password("postgres://u:pa/ss@h/db"), "an unencoded / in the password");
        assert!(!url_has_password("postgres://h/db?options=-c%20a%3Ab"));
    }

    #[test]
    fn versions_sort_by_number() {
        let mut names = ["9.6", "17", "15", "10", "notes"].map(version_key);
        names.sort();
        assert_eq!(names.last(), Some(&Some(vec![17])));
        assert_eq!(version_key("9.6"), Some(vec![9, 6]));
        assert_eq!(version_key("notes"), None);
    }

    #[test]
    fn a_given_url_of_another_scheme_is_refused_before_the_builds() {
        assert_eq!(url_scheme_problem("postgres://u@h/db"), None);
        assert_eq!(url_scheme_problem(" postgresql://h/db"), None);
        for other in ["mysql://u@h/db", "sqlite:diun.db", "host=localhost dbname=x"] {
            assert!(url_scheme_problem(other).is_some(), "{other}");
        }
    }

    #[test]
    fn a_failed_start_shows_the_end_of_the_server_log() {
        let dir = std::env::temp_dir().join(format!("diun-xtask-log-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("server.log");
        let log: Vec<String> = (1..=40).map(|n| format!("line {n}")).collect();
        std::fs::write(&path, log.join("\n")).unwrap();
        let tail = server_log_tail(&path);
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(tail.contains("line 40") && tail.contains("line 26"), "{tail}");
        assert!(!tail.contains("line 25\n"), "only the last lines: {tail}");
        assert!(server_log_tail(&dir.join("gone.log")).contains("could not be read"));
    }

    /// The watchdog's cleanup runs once the pipe from this process closes, as it does when this
    /// process dies however it dies; a watchdog dropped (the normal end) runs nothing.
    #[test]
    fn the_watchdog_cleans_up_only_when_its_pipe_closes() {
        let dir = std::env::temp_dir().join(format!("diun-xtask-watchdog-test-{}", std::process::id()));
        let quoted = dir.join("it's a folder");
        let kept = dir.join("kept");
        std::fs::create_dir_all(&quoted).unwrap();
        std::fs::create_dir_all(&kept).unwrap();
        // A variable removed whose name sorts after one set: env takes `-u` before assignments only.
        let mut env_check = command(
            "sh",
            &["-c", r#"test "$A_WATCHED" = "it's" && test -z "${Z_GONE+set}" && touch env-ok"#],
        );
        env_check.current_dir(&dir).env("A_WATCHED", "it's").env_remove("Z_GONE");

        let mut watchdog =
            Watchdog::try_arm(&[env_check, command("rm", &["-rf", "--", &quoted.to_string_lossy()])])
                .unwrap();
        let pid = watchdog.0.id();
        assert_ne!(
            process_group(pid),
            process_group(std::process::id()),
            "the terminal's Ctrl-C would reach it"
        );
        wait_until_reading_its_pipe(pid);
        assert!(quoted.exists(), "nothing is cleaned up while this process lives");
        drop(watchdog.0.stdin.take());
        assert!(watchdog.0.wait().unwrap().success());
        assert!(!quoted.exists(), "the folder, its name quoted, is removed");
        assert!(dir.join("env-ok").exists(), "the command ran in its folder with its environment");

        let disarmed = Watchdog::try_arm(&[command("rm", &["-rf", "--", &kept.to_string_lossy()])]).unwrap();
        wait_until_reading_its_pipe(disarmed.0.id());
        drop(disarmed);
        let still_there = kept.exists();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(still_there, "a disarmed watchdog cleans nothing");
    }

    fn process_group(pid: u32) -> String {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        // After the parenthesised command name: state, parent, process group.
        stat.rsplit_once(')').unwrap().1.split_whitespace().nth(2).unwrap().to_string()
    }

    fn wait_until_reading_its_pipe(pid: u32) {
        for _ in 0..1000 {
            let wchan = std::fs::read_to_string(format!("/proc/{pid}/wchan")).unwrap_or_default();
            if wchan.contains("pipe_read") {
                return;
            }
            // A kernel that hides where a process sleeps says 0: asleep is the most it tells.
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            let asleep = stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('S'));
            if matches!(wchan.trim(), "" | "0") && asleep {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("the watchdog never waited on its pipe");
    }
}
