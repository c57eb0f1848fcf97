//! The browser tests: headless Chromium through chromedriver, against the real binary.

use std::path::Path;

use crate::system::{self, cargo};

/// What the browser tests need.
pub const CHROMIUM: [(&str, &str); 2] = [("chromium", "chromium"), ("chromium-driver", "chromedriver")];

pub fn ensure_chromium() -> Result<(), String> {
    system::ensure_packages(&CHROMIUM)
}

/// The chromedriver for the browser the tests start: Debian's Chromium, which they prefer when
/// it is there, goes with Debian's driver. Another one earlier on PATH (npm's, Selenium's) may
/// be of another major version, and then no session starts.
fn driver() -> Result<String, String> {
    const DEBIAN_BROWSER: &str = "/usr/bin/chromium";
    const DEBIAN_DRIVER: &str = "/usr/bin/chromedriver";
    if !Path::new(DEBIAN_BROWSER).exists() {
        return Ok("chromedriver".into());
    }
    if !Path::new(DEBIAN_DRIVER).exists() {
        system::install_package(
            "chromium-driver",
            "Debian's chromium is here without Debian's chromedriver",
        )?;
    }
    Ok(DEBIAN_DRIVER.into())
}

pub fn run(root: &Path, env: &[(&str, String)]) -> Result<(), String> {
    if !root.join("tests/browser.rs").is_file() {
        let why = "tests/browser.rs does not exist yet";
        if system::in_ci() {
            return Err(format!("browser tests cannot be skipped under CI=true: {why}"));
        }
        println!("skipped: {why}");
        return Ok(());
    }
    ensure_chromium()?;
    let mut env = env.to_vec();
    env.push(("CHROMEDRIVER", driver()?));
    // A wait that times out panics inside the WebDriver client; the backtrace names the test line.
    if std::env::var_os("RUST_BACKTRACE").is_none() {
        env.push(("RUST_BACKTRACE", "1".to_string()));
    }
    // One browser at a time: on a small machine parallel Chromiums only compete for the cores.
    // The browser tests are #[ignore]d in plain `cargo test` runs (they need Chromium); here
    // they run, and CHROMEDRIVER is set, so under CI=true none can be skipped.
    cargo(root, &["test", "--test", "browser", "--", "--ignored", "--test-threads=1"], &env)
}

/// Regenerates the README's screenshot (docs/screenshot.png) from the running app: the browser
/// test `screenshot_for_the_readme` seeds a realistic set and writes it. `pngquant`, when
/// installed, shrinks it further.
pub fn screenshot(root: &Path) -> Result<(), String> {
    ensure_chromium()?;
    let out = root.join("docs/screenshot.png");
    let env = [("CHROMEDRIVER", driver()?), ("SCREENSHOT_OUT", out.display().to_string())];
    cargo(
        root,
        &["test", "--test", "browser", "--", "--ignored", "--exact", "screenshot_for_the_readme"],
        &env,
    )?;
    if system::on_path("pngquant") {
        let path = out.display().to_string();
        let mut pngquant = system::command(
            "pngquant",
            &["--force", "--skip-if-larger", "--quality", "80-95", "--strip", "--output", &path, &path],
        );
        // 98 and 99: the quantized file would be larger or too poor; the original stays.
        system::run(&mut pngquant).or_else(|err| {
            if err.contains("exit status: 98") || err.contains("exit status: 99") { Ok(()) } else { Err(err) }
        })?;
    }
    let size = std::fs::metadata(&out).map_err(|err| format!("{}: {err}", out.display()))?.len();
    println!("{}: {} KiB", out.display(), size / 1024);
    Ok(())
}
