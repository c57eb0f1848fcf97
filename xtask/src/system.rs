//! Running commands, checking for system packages, and counting steps.

use std::path::Path;
use std::process::Command;
use std::time::Instant;

pub fn command(program: &str, args: &[&str]) -> Command {
    let mut command = Command::new(program);
    command.args(args);
    command
}

/// Runs cargo in `root` with `args` and extra environment, echoing the command line.
pub fn cargo(root: &Path, args: &[&str], env: &[(&str, String)]) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    run(command(&cargo, args).current_dir(root).envs(env.iter().map(|(k, v)| (k, v))))
}

/// Runs a command to completion, echoing it first; a non-zero exit is an error.
pub fn run(command: &mut Command) -> Result<(), String> {
    let line = describe(command);
    println!("$ {line}");
    let status = command.status().map_err(|err| format!("cannot run `{line}`: {err}"))?;
    if status.success() { Ok(()) } else { Err(format!("`{line}` failed ({status})")) }
}

/// The program and its arguments as one line (environment left out: it may hold secrets).
fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(|part| part.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

pub fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|output| String::from_utf8_lossy(&output.stdout).trim() == "0")
}

pub fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
}

/// Makes sure a Debian package is installed: installs it with apt when running as root, else
/// stops with the one command that would.
pub fn ensure_package(package: &str, provides: &str) -> Result<(), String> {
    ensure_packages(&[(package, provides)])
}

/// [`ensure_package`] for several (package, program it provides) at once: a machine that lacks
/// three learns so in one line, not in three runs.
pub fn ensure_packages(wanted: &[(&str, &str)]) -> Result<(), String> {
    ensure_packages_found_by(wanted, on_path)
}

/// [`ensure_packages`] where `found` says whether each one's program is there.
pub fn ensure_packages_found_by(wanted: &[(&str, &str)], found: impl Fn(&str) -> bool) -> Result<(), String> {
    match missing_packages(wanted, found) {
        Some((packages, why)) => install_package(&packages, &why),
        None => Ok(()),
    }
}

/// The packages of `wanted` whose program `found` does not find, as apt's arguments, and why.
fn missing_packages(wanted: &[(&str, &str)], found: impl Fn(&str) -> bool) -> Option<(String, String)> {
    let missing: Vec<_> = wanted.iter().filter(|(_, provides)| !found(provides)).collect();
    if missing.is_empty() {
        return None;
    }
    let packages = missing.iter().map(|(package, _)| *package).collect::<Vec<_>>().join(" ");
    let programs = missing.iter().map(|(_, provides)| format!("`{provides}`")).collect::<Vec<_>>().join(", ");
    let verb = if missing.len() == 1 { "is" } else { "are" };
    Some((packages, format!("{programs} {verb} missing")))
}

/// Installs Debian packages (`package`: names separated by spaces) with apt when running as
/// root, else stops with the one command that would; `why` says what their absence broke.
pub fn install_package(package: &str, why: &str) -> Result<(), String> {
    if !can_install() {
        return Err(format!("{why}: install with `{}` and run again", install_command(package)));
    }
    println!("{why}; installing with apt: {package}");
    apt_install(package)
}

/// Whether [`apt_install`] can run here.
pub fn can_install() -> bool {
    is_root() && on_path("apt-get")
}

/// Installs `package` (names separated by spaces) with apt, as root.
pub fn apt_install(package: &str) -> Result<(), String> {
    // A machine just booted runs apt's daily jobs, which hold dpkg's lock for a while.
    let wait_for_lock = ["-o", "DPkg::Lock::Timeout=600"];
    let mut update = wait_for_lock.to_vec();
    update.extend(["update", "-q"]);
    run(command("apt-get", &update).env("DEBIAN_FRONTEND", "noninteractive"))?;
    let mut install = wait_for_lock.to_vec();
    install.extend(["install", "-y", "-q", "--no-install-recommends"]);
    install.extend(package.split_whitespace());
    run(command("apt-get", &install).env("DEBIAN_FRONTEND", "noninteractive"))
}

/// The one command a user who is not root runs to install `package`: through sudo, or su on a
/// Debian installed with a root password (no sudo).
pub fn install_command(package: &str) -> String {
    let apt = format!("apt-get update && apt-get install -y {package}");
    if on_path("sudo") { format!("sudo sh -c '{apt}'") } else { format!("su -c '{apt}'") }
}

/// Whether the run is CI's, where nothing may be skipped.
pub fn in_ci() -> bool {
    // CI=1 and CI=woodpecker mean CI as much as CI=true does; only CI=false (or 0) does not.
    std::env::var("CI").is_ok_and(|value| !value.is_empty() && value != "false" && value != "0")
}

/// A named sequence of checks, reported one line each at the end.
pub struct Step {
    done: Vec<(String, f64)>,
}

impl Step {
    pub fn list() -> Self {
        Self { done: Vec::new() }
    }

    pub fn run(&mut self, name: &str, check: impl FnOnce() -> Result<(), String>) -> Result<(), String> {
        println!("\n==> {name}");
        let started = Instant::now();
        check().map_err(|err| {
            self.report();
            format!("{name}: {err}\nxtask: {} passed, 1 failed", self.done.len())
        })?;
        self.done.push((name.to_string(), started.elapsed().as_secs_f64()));
        Ok(())
    }

    fn report(&self) {
        println!();
        for (name, seconds) in &self.done {
            println!("ok  {seconds:>6.1} s  {name}");
        }
    }

    pub fn finish(self) -> Result<(), String> {
        self.report();
        println!("xtask: {} passed, 0 failed", self.done.len());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_missing_package_is_named_in_one_line() {
        let wanted = [("chromium", "chromium"), ("chromium-driver", "chromedriver"), ("procps", "kill")];
        assert_eq!(missing_packages(&wanted, |_| true), None);
        let (packages, why) = missing_packages(&wanted, |program| program == "chromium").unwrap();
        assert_eq!(packages, "chromium-driver procps");
        assert_eq!(why, "`chromedriver`, `kill` are missing");
        let (packages, why) = missing_packages(&wanted, |program| program != "kill").unwrap();
        assert_eq!((packages.as_str(), why.as_str()), ("procps", "`kill` is missing"));
    }
}
