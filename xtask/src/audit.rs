//! `cargo xtask audit`: checks Cargo.lock against the RustSec advisory database with
//! cargo-audit, or cargo-deny when that is what is installed.
//!
//! Both tools need the advisory database, a git repository on GitHub. Where it cannot be
//! fetched (this project's machines reach only crates.io, PyPI, Debian and npm) and no local
//! copy exists, the audit cannot run: that is said loudly and is not a failure, also under
//! CI=true, since no change to the project could fix it. A known vulnerability, once the
//! database is at hand, is a failure. See SECURITY.md.
//!
//! A local copy is used when present: `CARGO_AUDIT_DB=<dir>` (a clone of
//! rustsec/advisory-db), or cargo-audit's default `~/.cargo/advisory-db`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::system::{self, command};

pub fn run(root: &Path) -> Result<(), String> {
    if system::on_path("cargo-audit") {
        return cargo_audit(root);
    }
    if system::on_path("cargo-deny") {
        return cargo_deny(root);
    }
    if std::env::var("XTASK_INSTALL_AUDIT").is_ok_and(|value| value == "1") {
        println!("installing cargo-audit from crates.io");
        system::run(&mut command("cargo", &["install", "--locked", "cargo-audit"]))?;
        return cargo_audit(root);
    }
    loudly(&[
        "cargo-audit and cargo-deny are not installed: the dependency audit did not run.",
        "Install one (`cargo install --locked cargo-audit`), or run with XTASK_INSTALL_AUDIT=1.",
    ]);
    Ok(())
}

/// A local advisory database, if there is one.
fn local_database() -> Option<PathBuf> {
    let given = std::env::var_os("CARGO_AUDIT_DB").map(PathBuf::from);
    let default = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo")))
        .map(|cargo_home| cargo_home.join("advisory-db"));
    given.or(default).filter(|dir| dir.join("crates").is_dir())
}

fn cargo_audit(root: &Path) -> Result<(), String> {
    let mut audit = command("cargo", &["audit"]);
    if let Some(db) = local_database() {
        println!("advisory database: {} (not fetched)", db.display());
        audit.arg("--db").arg(&db).args(["--no-fetch", "--stale"]);
    }
    checked(audit.current_dir(root), "cargo audit")
}

fn cargo_deny(root: &Path) -> Result<(), String> {
    let mut deny = command("cargo", &["deny", "check", "advisories"]);
    if local_database().is_some() {
        deny.arg("--disable-fetch");
    }
    checked(deny.current_dir(root), "cargo deny")
}

/// Runs the tool; tells a database that cannot be fetched from a real finding.
fn checked(tool: &mut Command, name: &str) -> Result<(), String> {
    println!("$ {name}");
    let output = tool.output().map_err(|err| format!("cannot run {name}: {err}"))?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    print!("{stdout}");
    eprint!("{stderr}");
    if output.status.success() {
        return Ok(());
    }
    let text = format!("{stdout}{stderr}").to_lowercase();
    let unfetchable =
        ["couldn't fetch advisory database", "failed to fetch advisory database", "failed to fetch"]
            .iter()
            .any(|sign| text.contains(sign))
            && !text.contains("vulnerabilit");
    if unfetchable {
        loudly(&[
            "THE DEPENDENCY AUDIT DID NOT RUN: the RustSec advisory database could not be fetched.",
            "It is a git repository on GitHub, which this machine cannot reach (only crates.io, PyPI,",
            "Debian and npm are). Not a failure, since no change to the project can fix it; run",
            "`cargo xtask audit` where GitHub is reachable, or give a local copy with CARGO_AUDIT_DB.",
        ]);
        return Ok(());
    }
    Err(format!("{name} reports advisories for the dependencies (see above)"))
}

fn loudly(lines: &[&str]) {
    let rule = "!".repeat(96);
    println!("\n{rule}");
    for line in lines {
        println!("!! {line}");
    }
    println!("{rule}\n");
}
