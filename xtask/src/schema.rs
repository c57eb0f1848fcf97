//! Scratch schemas: a schema of its own for a service the xtask starts, in a database that may
//! be somebody's (a given `DATABASE_URL`). The service migrates into it, and it is dropped with
//! its guard, also when a step fails on the way, or by a watchdog when the xtask is killed.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::postgres::Watchdog;

pub struct ScratchSchema {
    base_url: String,
    psql: PathBuf,
    name: String,
    /// Drops it when the xtask is killed (Ctrl-C) before `Drop` runs; disarmed after it.
    _watchdog: Option<Watchdog>,
}

impl ScratchSchema {
    /// Creates the schema `name` (dashes become underscores) afresh in the database at `base_url`.
    pub fn create(base_url: &str, psql: &Path, name: &str) -> Result<Self, String> {
        let name = name.replace('-', "_");
        run(psql, base_url, &format!("DROP SCHEMA IF EXISTS {name} CASCADE; CREATE SCHEMA {name}"))?;
        let watchdog = Watchdog::arm(&[psql_command(psql, base_url, &drop_sql(&name))]);
        Ok(Self { base_url: base_url.to_string(), psql: psql.to_path_buf(), name, _watchdog: watchdog })
    }

    /// A URL whose connections work in this schema.
    pub fn url(&self) -> String {
        in_schema(&self.base_url, &self.name)
    }
}

impl Drop for ScratchSchema {
    fn drop(&mut self) {
        if let Err(err) = run(&self.psql, &self.base_url, &drop_sql(&self.name)) {
            println!("xtask: could not drop the scratch schema {}: {err}", self.name);
        }
    }
}

fn in_schema(url: &str, schema: &str) -> String {
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options=-c%20search_path%3D{schema}")
}

fn drop_sql(name: &str) -> String {
    format!("DROP SCHEMA IF EXISTS {name} CASCADE")
}

fn psql_command(psql: &Path, url: &str, sql: &str) -> Command {
    let mut command = Command::new(psql);
    command
        .args(["-w", "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
        .env("PGCONNECT_TIMEOUT", "5");
    command
}

/// Runs `sql` with psql on the database at `url`; its output, trimmed.
pub fn run(psql: &Path, url: &str, sql: &str) -> Result<String, String> {
    let output = psql_command(psql, url, sql).output().map_err(|err| format!("cannot run psql: {err}"))?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    } else {
        Err(format!("psql: {}", String::from_utf8_lossy(&output.stderr).trim()))
    }
}

/// psql on PATH, else the newest under /usr/lib/postgresql (Debian's packages put it there too).
pub fn find_psql() -> Result<PathBuf, String> {
    if let Some(paths) = std::env::var_os("PATH")
        && let Some(dir) = std::env::split_paths(&paths).find(|dir| dir.join("psql").is_file())
    {
        return Ok(dir.join("psql"));
    }
    crate::postgres::newest_version_dir(|dir| dir.join("bin/psql").is_file())
        .map(|dir| dir.join("bin/psql"))
        .ok_or_else(|| "psql is needed to make scratch schemas; install postgresql-client".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_schema_is_added_to_the_urls_options() {
        assert_eq!(
            in_schema("postgres://u@h/db", "dist_1"),
            "postgres://u@h/db?options=-c%20search_path%3Ddist_1"
        );
        assert_eq!(
            in_schema("postgres://u@h/db?sslmode=disable", "dist_1"),
            "postgres://u@h/db?sslmode=disable&options=-c%20search_path%3Ddist_1"
        );
    }
}
