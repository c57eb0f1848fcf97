//! `cargo xtask dist`: builds the binaries the container images build, with the same cargo
//! commands (`docker::cargo_commands()`), prints their sizes, and smoke-tests each one the way
//! a container runs it: start it, wait for `/healthz`, run its `healthcheck` subcommand, stop it
//! with SIGTERM and expect a clean exit.
//!
//! The images build on musl (Alpine's native target) and this builds on the host's target, so
//! the code, features, profile and Cargo.lock are the same but the libc is not; see
//! docs/deployment.md.

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::docker;
use crate::schema::{ScratchSchema, find_psql};

const BINARY: &str = "diun-dashboard";
const START_LIMIT: Duration = Duration::from_secs(30);
const STOP_LIMIT: Duration = Duration::from_secs(10);

struct Binary {
    name: String,
    features: Vec<String>,
    path: PathBuf,
}

impl Binary {
    fn has(&self, feature: &str) -> bool {
        self.features.iter().any(|f| f == feature)
    }
}

pub fn run(root: &Path) -> Result<(), String> {
    let ci = crate::system::in_ci();
    // Each binary is stopped with `kill -TERM`: procps, which minimal Debian images lack.
    crate::system::ensure_package("procps", "kill")?;
    let mut binaries = Vec::new();
    for (name, args) in docker::cargo_commands() {
        let target_dir = root.join("target/dist").join(&name);
        println!("dist: {name}: cargo {} --target-dir target/dist/{name}", args.join(" "));
        let status = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
            .args(&args)
            .arg("--target-dir")
            .arg(&target_dir)
            .current_dir(root)
            .status()
            .map_err(|err| format!("dist: cannot run cargo: {err}"))?;
        if !status.success() {
            return Err(format!("dist: building `{name}` failed ({status})"));
        }
        let path = target_dir.join("release").join(format!("{BINARY}{}", std::env::consts::EXE_SUFFIX));
        binaries.push(Binary { name, features: features_of(&args), path });
    }

    println!(
        "dist: binary sizes ({}-{}; the images build the same on musl):",
        std::env::consts::ARCH,
        std::env::consts::OS
    );
    for binary in &binaries {
        let size =
            fs::metadata(&binary.path).map_err(|e| format!("dist: {}: {e}", binary.path.display()))?.len();
        println!(
            "  {:<9} {:>10} bytes  {:>6.2} MiB  --features {:<16} {}",
            binary.name,
            size,
            size as f64 / (1024.0 * 1024.0),
            binary.features.join(","),
            binary.path.strip_prefix(root).unwrap_or(&binary.path).display()
        );
    }

    let work = std::env::temp_dir().join(format!("{BINARY}-dist-{}", std::process::id()));
    fs::create_dir_all(&work).map_err(|e| format!("dist: {}: {e}", work.display()))?;
    // The same provider as the tests (DATABASE_URL, a scratch database, a throwaway cluster),
    // kept until the smoke tests are over. The binaries migrate into a schema of their own,
    // dropped afterwards: a given DATABASE_URL may be somebody's dashboard.
    let provided = crate::postgres::provide();
    let schema = provided.as_ref().map_err(String::clone).and_then(|db| {
        let name = format!("dist_{}", std::process::id());
        ScratchSchema::create(&db.url(), &find_psql()?, &name)
    });
    let postgres = schema.as_ref().map(ScratchSchema::url).map_err(String::clone);
    match &postgres {
        Ok(url) => println!("dist: PostgreSQL for the smoke tests: {}", redact(url)),
        Err(why) => println!("dist: no PostgreSQL for the smoke tests: {why}"),
    }
    let mut failures = Vec::new();
    let mut not_run = Vec::new();
    for binary in &binaries {
        match smoke(binary, &work, &postgres, &mut not_run) {
            Ok(()) => println!("dist: {}: smoke test passed", binary.name),
            Err(why) => {
                println!("dist: {}: smoke test FAILED: {why}", binary.name);
                failures.push(format!("{}: {why}", binary.name));
            }
        }
    }
    for what in &not_run {
        println!("dist: NOT RUN {what}");
    }
    if !failures.is_empty() {
        return Err(format!(
            "dist: {} smoke test(s) failed (logs in {}):\n  {}",
            failures.len(),
            work.display(),
            failures.join("\n  ")
        ));
    }
    if ci && !not_run.is_empty() {
        return Err(format!("dist: smoke tests not run under CI=true: {}", not_run.join("; ")));
    }
    let _ = fs::remove_dir_all(&work);
    Ok(())
}

/// The features after `--features` in a cargo command line.
fn features_of(args: &[String]) -> Vec<String> {
    let at = args.iter().position(|a| a == "--features");
    let value = at.and_then(|at| args.get(at + 1)).map_or("", String::as_str);
    value.split([',', ' ']).filter(|f| !f.is_empty()).map(String::from).collect()
}

fn smoke(
    binary: &Binary,
    work: &Path,
    postgres: &Result<String, String>,
    not_run: &mut Vec<String>,
) -> Result<(), String> {
    let log = work.join(format!("{}-version.log", binary.name));
    let (status, output) = run_captured(Command::new(&binary.path).arg("--version"), &log, STOP_LIMIT)?;
    if !status.success() || !output.starts_with(&format!("{BINARY} ")) {
        return Err(format!("`--version` printed {output:?} ({status})"));
    }

    if binary.has("sqlite") {
        let db_path = work.join(&binary.name).join("not/yet/there/diun.db");
        serve_and_stop(binary, work, Backend::Sqlite(&db_path))?;
    } else {
        refuses_compiled_out_backend(binary, work, None, "sqlite")?;
    }
    if binary.has("postgres") {
        match postgres {
            Ok(url) => serve_and_stop(binary, work, Backend::Postgres(url))?,
            Err(why) => not_run.push(format!("{} on PostgreSQL: {why}", binary.name)),
        }
    } else {
        refuses_compiled_out_backend(binary, work, Some("postgres://nobody@127.0.0.1:1/none"), "postgres")?;
    }
    Ok(())
}

enum Backend<'a> {
    Sqlite(&'a Path),
    Postgres(&'a str),
}

/// The binary in `work`, with a clean application environment plus `vars`.
fn app_command(binary: &Binary, work: &Path, vars: &[(&str, String)]) -> Command {
    let mut command = Command::new(&binary.path);
    command.current_dir(work);
    // Nothing from the developer's shell (a DASHBOARD_PASSWORD, say) reaches the binary.
    command.env_clear();
    command.env("RUST_LOG", "info");
    command.envs(vars.iter().map(|(k, v)| (k, v)));
    command
}

/// A started service; killed if a check fails before it was stopped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

fn serve_and_stop(binary: &Binary, work: &Path, backend: Backend) -> Result<(), String> {
    let port = free_port()?;
    let (label, mut vars) = match backend {
        Backend::Sqlite(path) => ("sqlite", vec![("DB_PATH", path.display().to_string())]),
        Backend::Postgres(url) => ("postgres", vec![("DATABASE_URL", url.to_string())]),
    };
    vars.extend([("PORT", port.to_string()), ("BIND", "127.0.0.1".to_string())]);
    let log = work.join(format!("{}-{label}.log", binary.name));
    let what = |step: &str| format!("on {label}: {step} (log: {})", log.display());

    let mut child = Running(spawn_logged(&mut app_command(binary, work, &vars), &log)?);
    let deadline = Instant::now() + START_LIMIT;
    let body = loop {
        if let Ok(Some(status)) = child.0.try_wait() {
            return Err(what(&format!("exited at start-up ({status}): {}", tail(&log))));
        }
        match http_get(port, "/healthz") {
            Ok((200, body)) => break body,
            _ if Instant::now() > deadline => {
                return Err(what(&format!("/healthz did not answer 200 within {} s", START_LIMIT.as_secs())));
            }
            _ => sleep(Duration::from_millis(100)),
        }
    };
    let compact: String = body.chars().filter(|c| !c.is_whitespace()).collect();
    if !compact.contains("\"status\":\"ok\"") || !compact.contains(&format!("\"backend\":\"{label}\"")) {
        return Err(what(&format!("/healthz answered {body:?}, expected status ok and backend {label}")));
    }

    let logged = fs::read_to_string(&log).unwrap_or_default();
    match backend {
        Backend::Sqlite(path) => {
            if !logged.contains(&format!("Using SQLite database at {}", path.display())) {
                return Err(what("the start-up log does not name the SQLite file"));
            }
            if !path.exists() {
                return Err(what(&format!("{} was not created (nor its parent folders)", path.display())));
            }
        }
        Backend::Postgres(url) => {
            if !logged.contains("Using PostgreSQL database") {
                return Err(what("the start-up log does not say `Using PostgreSQL database`"));
            }
            if password_of(url).is_some_and(|password| logged.contains(password)) {
                return Err(what("the log contains the database password"));
            }
        }
    }

    let check_log = work.join(format!("{}-{label}-healthcheck.log", binary.name));
    let healthcheck =
        || run_captured(app_command(binary, work, &vars).arg("healthcheck"), &check_log, STOP_LIMIT);
    let (status, output) = healthcheck()?;
    if !status.success() {
        return Err(what(&format!("`healthcheck` exited with {status}: {output}")));
    }

    let pid = child.0.id().to_string();
    let killed = Command::new("kill").args(["-TERM", &pid]).status();
    if !killed.is_ok_and(|s| s.success()) {
        return Err(what("`kill -TERM` failed"));
    }
    let status = wait_for(&mut child.0, STOP_LIMIT)?
        .ok_or_else(|| what(&format!("still running {} s after SIGTERM", STOP_LIMIT.as_secs())))?;
    if !status.success() {
        return Err(what(&format!("exited with {status} after SIGTERM: {}", tail(&log))));
    }

    let (status, _) = healthcheck()?;
    if status.success() {
        return Err(what("`healthcheck` still succeeds once the service has stopped"));
    }
    println!("dist: {}: on {label}: /healthz 200, healthcheck 0, SIGTERM → exit 0", binary.name);
    Ok(())
}

/// A slim binary asked for the backend it lacks must stop at once and name the missing feature.
fn refuses_compiled_out_backend(
    binary: &Binary,
    work: &Path,
    url: Option<&str>,
    feature: &str,
) -> Result<(), String> {
    let port = free_port()?;
    let db_path = work.join(format!("{}-without-{feature}.db", binary.name)).display().to_string();
    let mut vars = vec![("PORT", port.to_string()), ("BIND", "127.0.0.1".to_string()), ("DB_PATH", db_path)];
    vars.extend(url.map(|url| ("DATABASE_URL", url.to_string())));
    let log = work.join(format!("{}-without-{feature}.log", binary.name));
    let (status, output) = run_captured(&mut app_command(binary, work, &vars), &log, STOP_LIMIT)?;
    if status.success() || !output.contains(&format!("`{feature}`")) {
        return Err(format!(
            "asked for {feature} (which it lacks) it should exit non-zero naming the `{feature}` feature; it exited with {status}: {output}"
        ));
    }
    println!("dist: {}: without the {feature} feature it refuses to start and says so", binary.name);
    Ok(())
}

fn spawn_logged(command: &mut Command, log: &Path) -> Result<Child, String> {
    let file = fs::File::create(log).map_err(|e| format!("{}: {e}", log.display()))?;
    let copy = file.try_clone().map_err(|e| format!("{}: {e}", log.display()))?;
    command
        .stdin(Stdio::null())
        .stdout(file)
        .stderr(copy)
        .spawn()
        .map_err(|e| format!("cannot start {:?}: {e}", command.get_program()))
}

/// Runs to completion within `limit`; returns the exit status and the output (stdout and stderr).
fn run_captured(command: &mut Command, log: &Path, limit: Duration) -> Result<(ExitStatus, String), String> {
    let mut child = Running(spawn_logged(command, log)?);
    let Some(status) = wait_for(&mut child.0, limit)? else {
        let program = Path::new(command.get_program()).file_name().unwrap_or_default();
        let words: Vec<_> =
            std::iter::once(program).chain(command.get_args()).map(|w| w.to_string_lossy()).collect();
        return Err(format!("`{}` did not finish within {} s", words.join(" "), limit.as_secs()));
    };
    Ok((status, fs::read_to_string(log).unwrap_or_default().trim().to_string()))
}

fn wait_for(child: &mut Child, limit: Duration) -> Result<Option<ExitStatus>, String> {
    let deadline = Instant::now() + limit;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return Ok(Some(status)),
            Ok(None) if Instant::now() > deadline => return Ok(None),
            Ok(None) => sleep(Duration::from_millis(50)),
            Err(err) => return Err(format!("cannot wait for the process: {err}")),
        }
    }
}

fn tail(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(5)..].join(" | ")
}

fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .map_err(|e| format!("cannot find a free port: {e}"))
}

/// One HTTP/1.1 GET on 127.0.0.1; the status code and the body.
fn http_get(port: u16, path: &str) -> std::io::Result<(u16, String)> {
    let timeout = Duration::from_secs(2);
    let mut stream = TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes())?;
    let mut response = String::new();
    stream.take(1024 * 1024).read_to_string(&mut response)?;
    parse_response(&response)
        .map(|(status, body)| (status, body.to_string()))
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP response: {response:?}")))
}

fn parse_response(response: &str) -> Option<(u16, &str)> {
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.strip_prefix("HTTP/1.")?.get(2..5)?.parse().ok()?;
    Some((status, body))
}

fn password_of(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    let (userinfo, _) = authority.rsplit_once('@')?;
    userinfo.split_once(':').map(|(_, password)| password).filter(|p| !p.is_empty())
}

fn redact(url: &str) -> String {
    match password_of(url) {
        Some(password) => url.replacen(&format!(":{password}@"), ":***@", 1),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn features_are_read_from_the_cargo_command() {
        let args: Vec<String> =
            ["build", "--release", "--features", "sqlite,postgres"].map(String::from).to_vec();
        assert_eq!(features_of(&args), ["sqlite", "postgres"]);
        assert!(features_of(&args[..2]).is_empty());
    }

    #[test]
    fn every_image_binary_is_built_with_a_backend() {
        for (name, args) in docker::cargo_commands() {
            assert!(!features_of(&args).is_empty(), "{name}");
        }
    }

    #[test]
    fn passwords_are_found_and_redacted() {
        assert_eq!(password_of("postgres://u:s3cret@h:5432/d"), Some("s3cret"));
        assert_eq!(password_of("postgres://u@h/d"), None);
        assert_eq!(password_of("postgres://u:@h/d"), None);
        assert_eq!(redact("postgres://u:s3cret@h:5432/d"), "postgres://u:***@h:5432/d");
        assert_eq!(redact("postgres://postgres@127.0.0.1:5432/x"), "postgres://postgres@127.0.0.1:5432/x");
    }

    #[test]
    fn responses_give_status_and_body() {
        let response = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n{\"status\":\"ok\"}";
        assert_eq!(parse_response(response), Some((200, "{\"status\":\"ok\"}")));
        assert_eq!(parse_response("HTTP/1.1 503 Service Unavailable\r\n\r\n"), Some((503, "")));
        assert_eq!(parse_response("garbage"), None);
    }

    #[test]
    fn http_get_reads_a_real_socket() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut byte = [0u8; 1];
            while !request.ends_with(b"\r\n\r\n") && stream.read(&mut byte).unwrap() == 1 {
                request.push(byte[0]);
            }
            assert!(String::from_utf8_lossy(&request).starts_with("GET /healthz HTTP/1.1\r\n"));
            stream.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").unwrap();
        });
        assert_eq!(http_get(port, "/healthz").unwrap(), (200, "ok".to_string()));
        server.join().unwrap();
    }

    #[test]
    fn run_captured_reports_status_output_and_time_outs() {
        let dir = std::env::temp_dir().join(format!("dist-test-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let log = dir.join("out.log");
        let (status, output) =
            run_captured(Command::new("sh").args(["-c", "echo out; echo err >&2; exit 3"]), &log, STOP_LIMIT)
                .unwrap();
        assert_eq!(status.code(), Some(3));
        assert_eq!(output, "out\nerr");
        let slow = run_captured(Command::new("sleep").arg("5"), &log, Duration::from_millis(200));
        assert!(slow.is_err_and(|e| e.contains("did not finish")));
        fs::remove_dir_all(&dir).unwrap();
    }
}
