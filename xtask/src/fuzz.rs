//! `cargo xtask fuzz [SECONDS]`: runs every cargo-fuzz target under `fuzz/` for a bounded time
//! (SECONDS each, default 60, or `FUZZ_SECONDS`), starting from the committed seeds in
//! `fuzz/seeds/<target>` and growing a local corpus in `fuzz/corpus/<target>` (not committed).
//!
//! A failing input stops the run with its path and the command that reproduces it; it then
//! becomes a regression test (tests/hostile.rs, or the unit tests of src/model.rs).

use std::path::Path;

use crate::system::{self, Step, command};

/// The targets in `fuzz/fuzz_targets/`.
const TARGETS: [&str; 2] = ["webhook_body", "image_path"];
const DEFAULT_SECONDS: u64 = 60;

pub fn run(root: &Path) -> Result<(), String> {
    let seconds = match std::env::args().nth(2).or_else(|| std::env::var("FUZZ_SECONDS").ok()) {
        Some(text) => text.parse::<u64>().map_err(|_| format!("SECONDS must be a number, not {text:?}"))?,
        None => DEFAULT_SECONDS,
    };
    ensure_tools()?;
    let mut steps = Step::list();
    for target in TARGETS {
        steps.run(&format!("fuzz {target} for {seconds} s"), || fuzz(root, target, seconds))?;
    }
    steps.finish()
}

/// cargo-fuzz needs the nightly toolchain (for the sanitizer flags) and the cargo-fuzz
/// subcommand, which installs from crates.io.
fn ensure_tools() -> Result<(), String> {
    let nightly = command("rustup", &["run", "nightly", "rustc", "--version"]).output();
    if !nightly.is_ok_and(|output| output.status.success()) {
        return Err("cargo fuzz needs the nightly toolchain: `rustup toolchain install nightly`".into());
    }
    if !system::on_path("cargo-fuzz") {
        println!("cargo-fuzz is missing; installing it from crates.io");
        system::run(&mut command("cargo", &["install", "--locked", "cargo-fuzz"]))?;
    }
    Ok(())
}

fn fuzz(root: &Path, target: &str, seconds: u64) -> Result<(), String> {
    let fuzz_dir = root.join("fuzz");
    let corpus = fuzz_dir.join("corpus").join(target);
    std::fs::create_dir_all(&corpus).map_err(|err| format!("cannot create {}: {err}", corpus.display()))?;
    let seeds = fuzz_dir.join("seeds").join(target);
    let (corpus, seeds) = (corpus.to_string_lossy().into_owned(), seeds.to_string_lossy().into_owned());
    let max_time = format!("-max_total_time={seconds}");
    // `cargo` from PATH (rustup's proxy understands `+nightly`); the variables the outer
    // stable cargo set would pin the toolchain.
    let mut run = command(
        "cargo",
        &[
            "+nightly",
            "fuzz",
            "run",
            "--fuzz-dir",
            "fuzz",
            target,
            &corpus,
            &seeds,
            "--",
            &max_time,
            "-timeout=10",
            "-rss_limit_mb=2048",
        ],
    );
    for name in ["CARGO", "RUSTUP_TOOLCHAIN", "RUSTC", "RUSTDOC", "CARGO_TARGET_DIR"] {
        run.env_remove(name);
    }
    match system::run(run.current_dir(root)) {
        Ok(()) => Ok(()),
        Err(err) => {
            let artifacts = fuzz_dir.join("artifacts").join(target);
            let found: Vec<String> = std::fs::read_dir(&artifacts)
                .map(|entries| {
                    entries.filter_map(Result::ok).map(|entry| entry.path().display().to_string()).collect()
                })
                .unwrap_or_default();
            if found.is_empty() {
                return Err(err);
            }
            Err(format!(
                "{target} found failing input(s):\n  {}\nreproduce with `cargo +nightly fuzz run --fuzz-dir fuzz \
                 {target} <file>`, fix it, and add the input as a regression test",
                found.join("\n  ")
            ))
        }
    }
}
