//! The browser tests: headless Chromium through chromedriver, against the real binary.

use std::path::Path;

use crate::system::{self, cargo};

pub fn run(root: &Path, env: &[(&str, String)]) -> Result<(), String> {
    if !root.join("tests/browser.rs").is_file() {
        let why = "tests/browser.rs does not exist yet";
        if system::in_ci() {
            return Err(format!("browser tests cannot be skipped under CI=true: {why}"));
        }
        println!("skipped: {why}");
        return Ok(());
    }
    system::ensure_package("chromium", "chromium")?;
    system::ensure_package("chromium-driver", "chromedriver")?;
    let mut env = env.to_vec();
    env.push(("CHROMEDRIVER", "chromedriver".to_string()));
    // A wait that times out panics inside the WebDriver client; the backtrace names the test line.
    if std::env::var_os("RUST_BACKTRACE").is_none() {
        env.push(("RUST_BACKTRACE", "1".to_string()));
    }
    // One browser at a time: on a small machine parallel Chromiums only compete for the cores.
    cargo(root, &["test", "--test", "browser", "--", "--test-threads=1"], &env)
}
