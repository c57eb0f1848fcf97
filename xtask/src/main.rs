//! `cargo xtask <command>`: the project's automation, in plain Rust.
//!
//! test           everything CI checks: fmt, clippy and tests for every feature set (PostgreSQL
//!                included), container file lint, browser tests
//! test-postgres  only the PostgreSQL part
//! dist           build the binaries the Dockerfiles build, and smoke-test them
//! bench          build release binaries and measure them with wrk (BENCHMARKS.md)
//! fuzz [SECONDS] run every cargo-fuzz target for SECONDS each (default 60; nightly)
//! audit          check Cargo.lock against the RustSec advisories (cargo-audit or cargo-deny)
//! icons          regenerate assets/js/icon-data.js from the simple-icons package
//! screenshot     regenerate docs/screenshot.png from the running app (headless Chromium)
//! ci             the same as test (the single gate)

mod audit;
mod bench;
mod browser;
mod dist;
mod docker;
mod fuzz;
mod icons;
mod postgres;
mod schema;
mod system;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use system::{Step, cargo};

const USAGE: &str = "usage: cargo xtask <test|test-postgres|dist|bench|fuzz|audit|icons|screenshot|ci>";

/// The feature sets every check runs on: the full build and both slim ones.
const FEATURE_SETS: [(&str, &[&str]); 3] = [
    ("default features", &[]),
    ("sqlite only", &["--no-default-features", "--features", "sqlite"]),
    ("postgres only", &["--no-default-features", "--features", "postgres"]),
];

fn main() -> ExitCode {
    let root = project_root();
    let command = std::env::args().nth(1).unwrap_or_default();
    let result = match command.as_str() {
        "test" | "ci" => test(&root),
        "test-postgres" => test_postgres(&root),
        "dist" => dist::run(&root),
        "bench" => bench::run(&root),
        "fuzz" => fuzz::run(&root),
        "audit" => audit::run(&root),
        "icons" => icons::run(&root),
        "screenshot" => browser::screenshot(&root),
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("xtask: {message}");
            ExitCode::FAILURE
        }
    }
}

fn project_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

fn test(root: &Path) -> Result<(), String> {
    let mut steps = Step::list();
    // Chromium and PostgreSQL are found, installed or started before the long builds: a
    // machine without them learns so at once, not after the lints. An interrupted run still
    // removes a throwaway server (postgres::Watchdog).
    // The tests signal the service with kill(1), which a minimal Debian image lacks (procps);
    // the container lint's wheels need a Python that makes virtual environments; PostgreSQL's
    // package is asked for here too when the tests would stop for it.
    let lacks_python_venv = docker::lacks_python_venv(root);
    let mut wanted =
        vec![browser::CHROMIUM[0], browser::CHROMIUM[1], ("procps", "kill"), docker::PYTHON_VENV];
    wanted.extend(postgres::package_needed());
    system::ensure_packages_found_by(&wanted, |program| {
        if program == docker::PYTHON_VENV.1 { !lacks_python_venv } else { system::on_path(program) }
    })?;
    let database = postgres::provide()?;
    steps.run("rustfmt", || cargo(root, &["fmt", "--all", "--", "--check"], &[]))?;
    for (name, flags) in FEATURE_SETS {
        // --locked as in the Dockerfiles: a Cargo.lock that needs updating fails here too.
        let mut args = vec!["clippy", "--workspace", "--all-targets", "--locked"];
        args.extend_from_slice(flags);
        args.extend_from_slice(&["--", "-D", "warnings"]);
        steps.run(&format!("clippy, {name}"), || cargo(root, &args, &[]))?;
    }
    steps.run("a build without any backend is refused", || no_backend_is_a_compile_error(root))?;
    steps.run("container files lint", || docker::lint(root))?;

    let env = database.test_env();
    for (name, flags) in FEATURE_SETS {
        let mut args = vec!["test", "--workspace", "--locked"];
        args.extend_from_slice(flags);
        steps.run(&format!("tests, {name}"), || cargo(root, &args, &env))?;
    }
    steps.run("browser tests", || browser::run(root, &env))?;
    drop(database);
    steps.finish()
}

fn test_postgres(root: &Path) -> Result<(), String> {
    let mut steps = Step::list();
    // As in `test`: kill(1) for the tests' signals, PostgreSQL's package when they would stop for it.
    let mut wanted = vec![("procps", "kill")];
    wanted.extend(postgres::package_needed());
    system::ensure_packages(&wanted)?;
    let database = postgres::provide()?;
    let env = database.test_env();
    steps.run("tests, postgres only", || {
        cargo(root, &["test", "--locked", "--no-default-features", "--features", "postgres"], &env)
    })?;
    steps.run("SQLite/PostgreSQL parity", || cargo(root, &["test", "--locked", "--test", "parity"], &env))?;
    drop(database);
    steps.finish()
}

/// `compile_error!` must stop a build that has no database backend, with its message.
fn no_backend_is_a_compile_error(root: &Path) -> Result<(), String> {
    let output = system::command("cargo", &["check", "--no-default-features", "--message-format", "short"])
        .current_dir(root)
        .output()
        .map_err(|err| format!("cannot run cargo: {err}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.success() {
        return Err(
            "`cargo check --no-default-features` succeeded, but a build without a backend must fail".into()
        );
    }
    // The compile_error! itself, not any line that happens to mention backends.
    match stderr.lines().find(|l| l.contains("error: diun-dashboard needs a database backend")) {
        Some(line) => {
            println!("refused as expected: {line}");
            Ok(())
        }
        None => Err(format!("the build failed without the expected error:\n{stderr}")),
    }
}
