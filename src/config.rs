//! Typed configuration, read once from the environment (SPEC §3).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

/// Where the data lives. Parsed whatever backends were compiled in, so a binary can say
/// clearly which Cargo feature it is missing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Database {
    Sqlite { path: PathBuf },
    Postgres { url: Secret },
}

impl Database {
    pub fn feature(&self) -> &'static str {
        match self {
            Database::Sqlite { .. } => "sqlite",
            Database::Postgres { .. } => "postgres",
        }
    }

    /// Whether this binary can use it.
    pub fn is_compiled_in(&self) -> bool {
        match self {
            Database::Sqlite { .. } => cfg!(feature = "sqlite"),
            Database::Postgres { .. } => cfg!(feature = "postgres"),
        }
    }
}

#[derive(Clone, Debug)]
pub struct Config {
    pub listen: SocketAddr,
    pub database: Database,
    pub webhook_secret: Option<Secret>,
    /// `DASHBOARD_USERNAME` and `DASHBOARD_PASSWORD`: HTTP Basic auth for the dashboard and `/api`.
    pub dashboard_credentials: Option<(String, Secret)>,
    /// `HISTORY_DAYS`: how long acknowledged webhook history is kept; `None` keeps it forever (`0`).
    pub history_days: Option<u32>,
}

/// A value that must never reach a log line: `Debug` prints a placeholder.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

pub const DEFAULT_PORT: u16 = 8080;
pub const DEFAULT_HISTORY_DAYS: u32 = 180;

impl Config {
    pub fn from_env() -> Result<Self, String> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the variables through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let non_empty = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        let listen = listen_address(non_empty("BIND").as_deref(), non_empty("PORT").as_deref())?;
        let database = match non_empty("DATABASE_URL") {
            Some(url) => {
                let url = url.trim();
                if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
                    return Err("DATABASE_URL must be a PostgreSQL URL (postgres://… or postgresql://…); \
                         unset it to use SQLite"
                        .into());
                }
                Database::Postgres { url: Secret::new(url) }
            }
            None => Database::Sqlite { path: sqlite_path(non_empty("DB_PATH"))? },
        };
        let webhook_secret =
            lookup("WEBHOOK_SECRET").filter(|s| !s.is_empty()).map(sendable_secret).transpose()?;
        let dashboard_credentials = match (non_empty("DASHBOARD_USERNAME"), lookup("DASHBOARD_PASSWORD")) {
            (Some(username), Some(password)) if !password.is_empty() => {
                if username.contains(':') {
                    return Err("DASHBOARD_USERNAME must not contain `:`".into());
                }
                Some((username, Secret::new(password)))
            }
            (None, None) => None,
            (None, Some(password)) if password.is_empty() => None,
            _ => return Err("set both DASHBOARD_USERNAME and DASHBOARD_PASSWORD, or neither".into()),
        };
        let history_days = match non_empty("HISTORY_DAYS") {
            None => Some(DEFAULT_HISTORY_DAYS),
            Some(text) => match text.trim().parse::<u32>() {
                Ok(0) => None,
                Ok(days) => Some(days),
                Err(_) => {
                    return Err(format!(
                        "HISTORY_DAYS must be a number of days (0 keeps history forever), not {text:?}"
                    ));
                }
            },
        };
        Ok(Self { listen, database, webhook_secret, dashboard_credentials, history_days })
    }
}

/// The webhook secret, if DIUN can send it: an HTTP header value cannot begin or end with
/// whitespace (parsers strip it) nor hold control characters, so a secret with either could never
/// match and every webhook would be refused. A trailing newline from a file is the usual cause.
fn sendable_secret(secret: String) -> Result<Secret, String> {
    let header_space = |c: char| c == ' ' || c == '\t';
    if secret.trim_matches(header_space) != secret
        || secret.chars().any(|c| c.is_ascii_control() && c != '\t')
    {
        return Err("WEBHOOK_SECRET begins or ends with whitespace or holds a control character, which \
             an HTTP header cannot carry: no webhook could match it; remove them (a trailing newline \
             from a file is the usual cause)"
            .into());
    }
    Ok(Secret::new(secret))
}

/// The addresses the `healthcheck` subcommand should call, in turn: the listen address, with a
/// wildcard replaced by loopback. `::` takes IPv4 too, and on a host with IPv6 turned off
/// (a common hardening on a NAS) `::1` does not exist while `127.0.0.1` answers.
pub fn local_addresses(listen: SocketAddr) -> Vec<SocketAddr> {
    let ips = match listen.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => vec![IpAddr::from([127, 0, 0, 1])],
        IpAddr::V6(v6) if v6.is_unspecified() => {
            vec![IpAddr::from(std::net::Ipv6Addr::LOCALHOST), IpAddr::from([127, 0, 0, 1])]
        }
        ip => vec![ip],
    };
    ips.into_iter().map(|ip| SocketAddr::new(ip, listen.port())).collect()
}

fn listen_address(bind: Option<&str>, port: Option<&str>) -> Result<SocketAddr, String> {
    let port = match port {
        None => DEFAULT_PORT,
        // Not 0: the OS would pick a port nobody knows, the healthcheck included.
        Some(text) => text
            .trim()
            .parse::<std::num::NonZeroU16>()
            .map_err(|_| format!("PORT must be a number from 1 to 65535, not {text:?}"))?
            .get(),
    };
    let bind = bind.unwrap_or("0.0.0.0").trim();
    let ip: IpAddr = bind
        .trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .map_err(|_| format!("BIND must be an IP address such as 0.0.0.0 or ::, not {bind:?}"))?;
    Ok(SocketAddr::new(ip, port))
}

/// `DB_PATH` as a file. SQLite would also take `:memory:` or a `file:` URI, but an in-memory
/// database is another, empty one on each of the service's connections (the webhook is stored,
/// the listing fails) and is gone at every restart.
fn sqlite_path(db_path: Option<String>) -> Result<PathBuf, String> {
    let path = db_path.unwrap_or_else(|| "diun.db".into());
    // Refused rather than trimmed: a space an `.env` file left after the path opened a new,
    // empty `diun.db ` beside the real one, and the dashboard looked emptied. Trimmed, the
    // reverse would happen to a deployment whose data has been in `diun.db ` since then.
    if path.trim() != path {
        return Err(format!(
            "DB_PATH {path:?} starts or ends with whitespace; remove it (and rename the database \
             file if it was created under that name)"
        ));
    }
    if path == ":memory:" || path.starts_with("file:") {
        return Err(format!(
            "DB_PATH must be a plain file path, not {path:?} (an in-memory or URI database); \
             the data must outlive a restart"
        ));
    }
    Ok(PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn config(vars: &[(&str, &str)]) -> Result<Config, String> {
        let vars: HashMap<String, String> =
            vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|name| vars.get(name).cloned())
    }

    #[test]
    fn defaults_are_sqlite_on_port_8080() {
        let config = config(&[]).unwrap();
        assert_eq!(config.listen, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(config.database, Database::Sqlite { path: "diun.db".into() });
        assert!(config.webhook_secret.is_none());
    }

    #[test]
    fn database_url_selects_postgres_and_empty_means_unset() {
        let pg = config(&[("DATABASE_URL", "postgresql://u:p@h/db")]).unwrap();
        assert_eq!(pg.database.feature(), "postgres");
        let empty = config(&[("DATABASE_URL", ""), ("DB_PATH", "/data/x.db")]).unwrap();
        assert_eq!(empty.database, Database::Sqlite { path: "/data/x.db".into() });
    }

    #[test]
    fn db_path_with_surrounding_whitespace_is_refused() {
        for spaced in ["/data/diun.db ", " /data/diun.db", "/data/diun.db\t"] {
            let err = config(&[("DB_PATH", spaced)]).unwrap_err();
            assert!(err.contains("whitespace"), "{spaced:?}: {err}");
        }
        let inner = config(&[("DB_PATH", "/data/my diun.db")]).unwrap();
        assert_eq!(inner.database, Database::Sqlite { path: "/data/my diun.db".into() });
    }

    #[test]
    fn an_in_memory_or_uri_sqlite_database_is_refused() {
        for db_path in [":memory:", "file:diun.db?mode=memory&cache=shared", "file:/data/diun.db"] {
            let err = config(&[("DB_PATH", db_path)]).unwrap_err();
            assert!(err.contains("DB_PATH must be a plain file path"), "{db_path}: {err}");
        }
        let odd = config(&[("DB_PATH", "./memory.db")]).unwrap();
        assert_eq!(odd.database, Database::Sqlite { path: "./memory.db".into() });
    }

    #[test]
    fn a_non_postgres_url_is_refused() {
        let err = config(&[("DATABASE_URL", "mysql://root@localhost/x")]).unwrap_err();
        assert!(err.contains("PostgreSQL URL"), "{err}");
    }

    #[test]
    fn bad_port_and_bind_are_refused() {
        assert!(config(&[("PORT", "http")]).unwrap_err().contains("PORT"));
        assert!(config(&[("PORT", "70000")]).is_err());
        assert!(config(&[("PORT", "0")]).unwrap_err().contains("from 1 to 65535"));
        assert!(config(&[("BIND", "localhost")]).unwrap_err().contains("BIND"));
        assert_eq!(config(&[("BIND", "::1"), ("PORT", "9")]).unwrap().listen, "[::1]:9".parse().unwrap());
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let config = config(&[
            ("DATABASE_URL", "postgres://user:hunter2@db/diun"),
            ("WEBHOOK_SECRET", "s3cr3t-token"),
            ("DASHBOARD_USERNAME", "admin"),
            ("DASHBOARD_PASSWORD", "pa55w0rd"),
        ])
        .unwrap();
        let printed = format!("{config:?}");
        for secret in ["hunter2", "s3cr3t-token", "pa55w0rd"] {
            assert!(!printed.contains(secret), "{printed}");
        }
    }

    #[test]
    fn a_webhook_secret_no_header_can_carry_is_refused() {
        for secret in ["s3cr3t\n", " s3cr3t", "s3cr3t\t", "   ", "s3c\r\nr3t", "s3c\u{7f}r3t"] {
            let err = config(&[("WEBHOOK_SECRET", secret)]).unwrap_err();
            assert!(err.contains("WEBHOOK_SECRET"), "{secret:?}: {err}");
            assert!(!err.contains("s3c"), "the error shows the secret: {err}");
        }
        // Beyond ASCII, HTTP carries the bytes as they are.
        for secret in ["s3cr3t", "Bearer s3cr3t", "s3c\tr3t", "sécret", "s3cr3t\u{a0}", "s3c\u{85}r3t"] {
            let config = config(&[("WEBHOOK_SECRET", secret)]).unwrap();
            assert_eq!(config.webhook_secret.map(|s| s.expose().to_string()).as_deref(), Some(secret));
        }
    }

    #[test]
    fn dashboard_credentials_need_both_halves() {
        let both = config(&[("DASHBOARD_USERNAME", "admin"), ("DASHBOARD_PASSWORD", "pw")]).unwrap();
        assert_eq!(both.dashboard_credentials.map(|(user, _)| user).as_deref(), Some("admin"));
        assert!(config(&[("DASHBOARD_USERNAME", "admin")]).unwrap_err().contains("both"));
        assert!(config(&[("DASHBOARD_PASSWORD", "pw")]).unwrap_err().contains("both"));
        assert!(config(&[("DASHBOARD_USERNAME", "a:b"), ("DASHBOARD_PASSWORD", "pw")]).is_err());
        assert!(config(&[]).unwrap().dashboard_credentials.is_none());
    }

    #[test]
    fn history_days_default_to_180_and_0_keeps_forever() {
        assert_eq!(config(&[]).unwrap().history_days, Some(180));
        assert_eq!(config(&[("HISTORY_DAYS", "30")]).unwrap().history_days, Some(30));
        assert_eq!(config(&[("HISTORY_DAYS", "0")]).unwrap().history_days, None);
        assert!(config(&[("HISTORY_DAYS", "-1")]).unwrap_err().contains("HISTORY_DAYS"));
    }

    #[test]
    fn healthcheck_calls_loopback_for_wildcard_binds() {
        let addresses = |listen: &str| -> Vec<String> {
            local_addresses(listen.parse().unwrap()).iter().map(ToString::to_string).collect()
        };
        assert_eq!(addresses("0.0.0.0:81"), ["127.0.0.1:81"]);
        assert_eq!(addresses("[::]:81"), ["[::1]:81", "127.0.0.1:81"]);
        assert_eq!(addresses("10.1.2.3:81"), ["10.1.2.3:81"]);
        assert_eq!(addresses("[::1]:81"), ["[::1]:81"]);
    }
}
