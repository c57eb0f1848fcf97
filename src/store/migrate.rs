//! Embedded, numbered SQL migrations (`NNNN_name.up.sql`), shared by both backends.
//!
//! Each backend applies the pending ones in order, one transaction each, recording them in
//! `schema_migrations`; this module only reads the files and decides what is pending.

use include_dir::Dir;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Migration {
    pub version: i64,
    pub name: String,
    pub sql: String,
}

/// Reads every `NNNN_name.up.sql` in `dir`, ordered by version.
pub fn from_dir(dir: &Dir<'_>) -> Result<Vec<Migration>, String> {
    let mut migrations = Vec::new();
    for file in dir.files() {
        let file_name = file.path().file_name().and_then(|n| n.to_str()).unwrap_or_default();
        let Some(stem) = file_name.strip_suffix(".up.sql") else {
            continue;
        };
        let (number, name) = stem
            .split_once('_')
            .ok_or_else(|| format!("migration {file_name} is not named NNNN_name.up.sql"))?;
        let version = number
            .parse::<i64>()
            .map_err(|_| format!("migration {file_name} does not start with a number"))?;
        let sql = file.contents_utf8().ok_or_else(|| format!("migration {file_name} is not UTF-8"))?;
        migrations.push(Migration { version, name: name.to_string(), sql: sql.to_string() });
    }
    migrations.sort_by_key(|m| m.version);
    if let Some(pair) = migrations.windows(2).find(|pair| pair[0].version == pair[1].version) {
        return Err(format!("two migrations share version {}", pair[0].version));
    }
    Ok(migrations)
}

/// The migrations still to apply, given the versions the database has recorded. A database
/// that records a version this binary does not know was written by a newer release: opening it
/// could corrupt it, so that is an error.
pub fn pending<'m>(migrations: &'m [Migration], applied: &[i64]) -> Result<Vec<&'m Migration>, String> {
    if let Some(unknown) = applied.iter().find(|v| !migrations.iter().any(|m| m.version == **v)) {
        return Err(format!(
            "the database has schema version {unknown}, which this release does not know; \
             it was written by a newer diun-dashboard"
        ));
    }
    Ok(migrations.iter().filter(|m| !applied.contains(&m.version)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn migration(version: i64) -> Migration {
        Migration { version, name: format!("m{version}"), sql: String::new() }
    }

    #[test]
    fn embedded_sets_are_numbered_from_one_without_gaps() {
        for dir in [&SQLITE, &POSTGRES] {
            let versions: Vec<i64> = from_dir(dir).unwrap().iter().map(|m| m.version).collect();
            assert!(!versions.is_empty());
            assert_eq!(versions, (1..=versions.len() as i64).collect::<Vec<_>>());
        }
        let sqlite: Vec<_> = from_dir(&SQLITE).unwrap().into_iter().map(|m| m.name).collect();
        let postgres: Vec<_> = from_dir(&POSTGRES).unwrap().into_iter().map(|m| m.name).collect();
        assert_eq!(sqlite, postgres, "every schema change needs a migration for both backends");
    }

    static SQLITE: Dir<'static> = include_dir::include_dir!("$CARGO_MANIFEST_DIR/migrations/sqlite");
    static POSTGRES: Dir<'static> = include_dir::include_dir!("$CARGO_MANIFEST_DIR/migrations/postgres");

    #[test]
    fn pending_skips_applied_and_refuses_unknown_versions() {
        let all = [migration(1), migration(2), migration(3)];
        let todo: Vec<i64> = pending(&all, &[1]).unwrap().iter().map(|m| m.version).collect();
        assert_eq!(todo, [2, 3]);
        assert!(pending(&all, &[1, 2, 3]).unwrap().is_empty());
        assert!(pending(&all, &[1, 4]).unwrap_err().contains("newer"));
    }
}
