//! Database URL → backend, and keeping passwords out of every message.

use std::fmt;

use crate::error::{Error, Result};

/// The environment variable read first by [`LockStore::from_env`](crate::LockStore::from_env).
pub const LOCKMGR_DATABASE_URL: &str = "LOCKMGR_DATABASE_URL";
/// The environment variable read when [`LOCKMGR_DATABASE_URL`] is not set.
pub const DATABASE_URL: &str = "DATABASE_URL";
/// The embedded default: a SQLite file in the current directory.
pub const DEFAULT_SQLITE_PATH: &str = "lockmgr.sqlite3";
/// The environment variable [`LockStore::from_env`](crate::LockStore::from_env) reads
/// for a direct PostgreSQL URL on which waiters `LISTEN` for releases when the store's
/// own URL goes through a transaction pooler; see
/// [`LockStoreBuilder::listen_url`](crate::LockStoreBuilder::listen_url).
pub const LOCKMGR_LISTEN_URL: &str = "LOCKMGR_LISTEN_URL";
/// The PostgreSQL URL parameter that declares a transaction-pooling proxy in front of
/// the server (`?pgbouncer=true`), or its absence (`?pgbouncer=false`). lockmgr reads
/// it and removes it before connecting.
pub const PGBOUNCER_PARAM: &str = "pgbouncer";

/// Which database a URL selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// PostgreSQL: the shared store for many hosts.
    Postgres,
    /// SQLite: the embedded default, for one host.
    Sqlite,
    /// MySQL or MariaDB (`mysql://…`): a shared store for many hosts. Opening one
    /// needs the crate's `mysql` feature.
    Mysql,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Postgres => "postgres",
            Backend::Sqlite => "sqlite",
            Backend::Mysql => "mysql",
        })
    }
}

/// A parsed database URL: which backend, what to hand the driver, and how to show it.
#[derive(Clone)]
pub(crate) struct DatabaseUrl {
    pub(crate) backend: Backend,
    /// What the driver connects to: the URL for PostgreSQL and MySQL, the path for
    /// SQLite.
    pub(crate) target: String,
    /// SQLite `:memory:`: every connection would see its own database, so the pool
    /// keeps exactly one.
    pub(crate) in_memory: bool,
    /// The URL as given, with any password replaced by `***`.
    pub(crate) masked: String,
    /// PostgreSQL: the URL's `pgbouncer` parameter (removed from `target`):
    /// `Some(true)`, a transaction pooler is in front of the server; `Some(false)`,
    /// the connection keeps its server session; `None`, not said.
    pub(crate) pgbouncer: Option<bool>,
    /// The password, if any, to scrub from driver messages.
    secret: Option<String>,
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked)
    }
}

impl DatabaseUrl {
    /// Parse a URL as the contract lays out:
    /// `postgres://…` / `postgresql://…`, `mysql://…` (or `mariadb://…`),
    /// `sqlite://PATH`, `sqlite::memory:`, or a plain path.
    pub(crate) fn parse(raw: &str) -> Result<DatabaseUrl> {
        let masked = mask_password(raw);
        let invalid = |reason: &str| Error::InvalidUrl {
            url: masked.clone(),
            reason: reason.to_string(),
        };
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(invalid("the URL is empty"));
        }
        let lower = trimmed.to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            let parsed = url::Url::parse(trimmed).map_err(|e| invalid(&e.to_string()))?;
            if parsed.host_str().is_none_or(str::is_empty) && !has_query_host(&parsed) {
                return Err(invalid("a PostgreSQL URL needs a host"));
            }
            let secret = parsed
                .password()
                .map(percent_decode)
                .or_else(|| query_value(&parsed, "password"));
            let (target, pgbouncer) = take_pgbouncer_param(trimmed).map_err(|e| invalid(&e))?;
            return Ok(DatabaseUrl {
                backend: Backend::Postgres,
                target,
                in_memory: false,
                masked,
                pgbouncer,
                secret,
            });
        }
        if lower.starts_with("mysql://") || lower.starts_with("mariadb://") {
            return parse_mysql(trimmed, masked.clone(), &invalid);
        }
        let sqlite = |path: &str| -> Result<DatabaseUrl> {
            if path.is_empty() {
                return Err(invalid("a SQLite URL needs a file path"));
            }
            let in_memory = path == ":memory:";
            Ok(DatabaseUrl {
                backend: Backend::Sqlite,
                target: path.to_string(),
                in_memory,
                masked: masked.clone(),
                pgbouncer: None,
                secret: None,
            })
        };
        if let Some(rest) = strip_prefix_ci(trimmed, "sqlite://") {
            return sqlite(rest);
        }
        if let Some(rest) = strip_prefix_ci(trimmed, "sqlite:") {
            return sqlite(rest);
        }
        if let Some((scheme, _)) = trimmed.split_once("://") {
            let supported =
                "use postgres://…, mysql://…, sqlite://PATH, sqlite::memory: or a file path";
            return Err(invalid(&format!(
                "unsupported scheme {scheme:?}: {supported}"
            )));
        }
        sqlite(trimmed)
    }

    /// PostgreSQL behind a transaction pooler (`?pgbouncer=true`, or found at open):
    /// no statement or setting may depend on the server session.
    pub(crate) fn pooled(&self) -> bool {
        self.pgbouncer == Some(true)
    }

    /// Remove the password from a driver's message, wherever it appears.
    pub(crate) fn scrub(&self, message: &str) -> String {
        let mut out = message.to_string();
        if let Some(secret) = self.secret.as_deref().filter(|s| !s.is_empty()) {
            out = out.replace(secret, "***");
        }
        out
    }
}

/// `mysql://[USER[:PASSWORD]@]HOST[:PORT]/DATABASE[?unix_socket=…&ssl_mode=…]`; also
/// `mariadb://…`, handed to the driver as `mysql://…`. The database name is required:
/// the lock table lives in it.
fn parse_mysql(
    trimmed: &str,
    masked: String,
    invalid: &dyn Fn(&str) -> Error,
) -> Result<DatabaseUrl> {
    let target = match strip_prefix_ci(trimmed, "mariadb://") {
        Some(rest) => format!("mysql://{rest}"),
        None => format!("mysql://{}", &trimmed["mysql://".len()..]),
    };
    let parsed = url::Url::parse(&target).map_err(|e| invalid(&e.to_string()))?;
    let database = parsed
        .path_segments()
        .and_then(|mut segments| segments.next())
        .unwrap_or("");
    if database.is_empty() {
        return Err(invalid(
            "a MySQL URL needs a database name: mysql://user:password@host/DATABASE",
        ));
    }
    if !cfg!(feature = "mysql") {
        return Err(invalid(
            "this build of lockmgr has no MySQL support: enable its `mysql` cargo feature",
        ));
    }
    let secret = parsed.password().map(percent_decode);
    Ok(DatabaseUrl {
        backend: Backend::Mysql,
        target,
        in_memory: false,
        masked,
        pgbouncer: None,
        secret,
    })
}

/// Remove the `pgbouncer` parameter from a PostgreSQL URL (libpq refuses parameters
/// it does not know); the URL without it, and its value. The rest of the URL is kept
/// byte for byte.
fn take_pgbouncer_param(url: &str) -> std::result::Result<(String, Option<bool>), String> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_string(), None));
    };
    let mut value = None;
    let mut kept = Vec::new();
    for pair in query.split('&') {
        let (key, raw) = pair.split_once('=').unwrap_or((pair, ""));
        if !key.eq_ignore_ascii_case(PGBOUNCER_PARAM) {
            kept.push(pair);
            continue;
        }
        value = Some(match percent_decode(raw).to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "on" => true,
            "false" | "0" | "no" | "off" => false,
            other => {
                return Err(format!(
                    "`{PGBOUNCER_PARAM}` must be true or false, not {other:?}"
                ))
            }
        });
    }
    let target = if kept.is_empty() {
        base.to_string()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    Ok((target, value))
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

fn has_query_host(url: &url::Url) -> bool {
    query_value(url, "host").is_some()
}

fn query_value(url: &url::Url, key: &str) -> Option<String> {
    url.query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_string())
}

/// Show a database URL with its password (in the user-info part or a `password=`
/// query parameter) replaced by `***`. Works on malformed URLs too.
///
/// ```
/// use lockmgr::mask_password;
/// assert_eq!(mask_password("postgres://app:s3cret@db/locks"), "postgres://app:***@db/locks");
/// assert_eq!(mask_password("mysql://app:s3cret@db:3306/locks"), "mysql://app:***@db:3306/locks");
/// assert_eq!(
///     mask_password("postgres://db/locks?user=app&password=s3cret"),
///     "postgres://db/locks?user=app&password=***"
/// );
/// assert_eq!(mask_password("locks.sqlite3"), "locks.sqlite3");
/// ```
pub fn mask_password(raw: &str) -> String {
    let mut out = match raw.find("://") {
        Some(scheme_end) => {
            let rest_start = scheme_end + 3;
            let rest = &raw[rest_start..];
            let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            let authority = &rest[..authority_end];
            match authority.rfind('@') {
                Some(at) => {
                    let userinfo = &authority[..at];
                    match userinfo.find(':') {
                        Some(colon) => format!(
                            "{}{}:***{}",
                            &raw[..rest_start],
                            &userinfo[..colon],
                            &rest[at..]
                        ),
                        None => raw.to_string(),
                    }
                }
                None => raw.to_string(),
            }
        }
        None => raw.to_string(),
    };
    // `password=` anywhere after a `?` or `&` (query parameters).
    let mut search_from = 0;
    while let Some(pos) = find_password_param(&out[search_from..]) {
        let value_start = search_from + pos;
        let value_end = out[value_start..]
            .find(['&', '#'])
            .map_or(out.len(), |e| value_start + e);
        out.replace_range(value_start..value_end, "***");
        search_from = value_start + 3;
    }
    out
}

/// Offset of the value of the first `password=` query parameter in `s`.
fn find_password_param(s: &str) -> Option<usize> {
    let lower = s.to_ascii_lowercase();
    let mut from = 0;
    while let Some(pos) = lower[from..].find("password=") {
        let at = from + pos;
        if at > 0 && matches!(lower.as_bytes()[at - 1], b'?' | b'&') {
            return Some(at + "password=".len());
        }
        from = at + 1;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selects_backend() {
        let pg = DatabaseUrl::parse("postgres://u:p@localhost:5432/db").unwrap();
        assert_eq!(pg.backend, Backend::Postgres);
        let pg = DatabaseUrl::parse("postgresql://localhost/db").unwrap();
        assert_eq!(pg.backend, Backend::Postgres);
        let file = DatabaseUrl::parse("sqlite://data/locks.db").unwrap();
        assert_eq!(
            (file.backend, file.target.as_str()),
            (Backend::Sqlite, "data/locks.db")
        );
        let abs = DatabaseUrl::parse("sqlite:///tmp/locks.db").unwrap();
        assert_eq!(abs.target, "/tmp/locks.db");
        let mem = DatabaseUrl::parse("sqlite::memory:").unwrap();
        assert!(mem.in_memory);
        let plain = DatabaseUrl::parse("lockmgr.sqlite3").unwrap();
        assert_eq!(
            (plain.backend, plain.target.as_str()),
            (Backend::Sqlite, "lockmgr.sqlite3")
        );
    }

    #[cfg(feature = "mysql")]
    #[test]
    fn selects_mysql() {
        let my = DatabaseUrl::parse("mysql://u:p%40ss@127.0.0.1:3306/locks").unwrap();
        assert_eq!(my.backend, Backend::Mysql);
        assert_eq!(my.target, "mysql://u:p%40ss@127.0.0.1:3306/locks");
        assert_eq!(my.masked, "mysql://u:***@127.0.0.1:3306/locks");
        assert_eq!(my.scrub("denied for p@ss"), "denied for ***");
        let maria = DatabaseUrl::parse("MariaDB://u@db/locks?unix_socket=/run/m.sock").unwrap();
        assert_eq!(maria.backend, Backend::Mysql);
        assert_eq!(maria.target, "mysql://u@db/locks?unix_socket=/run/m.sock");
    }

    #[cfg(not(feature = "mysql"))]
    #[test]
    fn mysql_without_the_feature_says_so() {
        let err = DatabaseUrl::parse("mysql://u:hunter2@h/locks").unwrap_err();
        assert!(err.to_string().contains("`mysql` cargo feature"), "{err}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn rejects_bad_urls_without_leaking_the_password() {
        for bad in [
            "",
            "  ",
            "redis://u:hunter2@host/0",
            "postgres://u:hunter2@[bad/db",
            "sqlite://",
            "mysql://u:hunter2@[bad/db",
            "mysql://u:hunter2@host",
            "mysql://u:hunter2@host/",
        ] {
            let err = DatabaseUrl::parse(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidUrl { .. }), "{bad}: {err}");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn masks_passwords() {
        assert_eq!(
            mask_password("postgres://u:p%40ss@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(mask_password("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(
            mask_password("postgres://u:a@b@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(
            mask_password("postgres://h/db?password=x&sslmode=require&PASSWORD=y"),
            "postgres://h/db?password=***&sslmode=require&PASSWORD=***"
        );
        assert_eq!(
            mask_password("postgres://u:secret@[::1"),
            "postgres://u:***@[::1"
        );
        assert_eq!(
            mask_password("mysql://root:pw@localhost/db?unix_socket=/tmp/s"),
            "mysql://root:***@localhost/db?unix_socket=/tmp/s"
        );
    }

    #[test]
    fn reads_and_strips_the_pgbouncer_parameter() {
        for (raw, target, value) in [
            ("postgres://u:p@h:6432/db", "postgres://u:p@h:6432/db", None),
            (
                "postgres://u:p@h:6432/db?pgbouncer=true",
                "postgres://u:p@h:6432/db",
                Some(true),
            ),
            (
                "postgresql://h/db?sslmode=require&pgbouncer=TRUE&connect_timeout=5",
                "postgresql://h/db?sslmode=require&connect_timeout=5",
                Some(true),
            ),
            (
                "postgres://h/db?pgbouncer=false&application_name=a%20b",
                "postgres://h/db?application_name=a%20b",
                Some(false),
            ),
            ("postgres://h/db?pgbouncer=1", "postgres://h/db", Some(true)),
        ] {
            let url = DatabaseUrl::parse(raw).unwrap();
            assert_eq!(
                (url.target.as_str(), url.pgbouncer),
                (target, value),
                "{raw}"
            );
            assert_eq!(url.masked, mask_password(raw), "{raw}");
        }
        let err = DatabaseUrl::parse("postgres://u:hunter2@h/db?pgbouncer=maybe").unwrap_err();
        assert!(matches!(err, Error::InvalidUrl { .. }), "{err}");
        assert!(
            err.to_string()
                .contains("`pgbouncer` must be true or false"),
            "{err}"
        );
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn scrubs_decoded_password() {
        let url = DatabaseUrl::parse("postgres://u:p%40ss@h/db").unwrap();
        assert_eq!(url.scrub("auth failed for p@ss"), "auth failed for ***");
        let url = DatabaseUrl::parse("postgres://h/db?password=topsecret").unwrap();
        assert_eq!(url.scrub("topsecret!"), "***!");
    }
}
