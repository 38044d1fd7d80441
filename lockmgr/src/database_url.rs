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
    /// What the driver connects to: the URL (or libpq key/value string) for
    /// PostgreSQL and MySQL; for SQLite a path, or a `file:` URI when the URL carried
    /// SQLite URI parameters such as `mode=ro`.
    pub(crate) target: String,
    /// SQLite `:memory:`: every connection would see its own database, so the pool
    /// keeps exactly one.
    pub(crate) in_memory: bool,
    /// SQLite opened read-only (`mode=ro`, `immutable=1`): the journal mode is left
    /// as it is and migrations are only checked, never applied.
    pub(crate) read_only: bool,
    /// The URL as given, with any password replaced by `***`.
    pub(crate) masked: String,
    /// PostgreSQL: the URL's `pgbouncer` parameter (removed from `target`):
    /// `Some(true)`, a transaction pooler is in front of the server; `Some(false)`,
    /// the connection keeps its server session; `None`, not said.
    pub(crate) pgbouncer: Option<bool>,
    /// The passwords of the URL, as written and decoded, to scrub from driver messages.
    secrets: Vec<String>,
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked)
    }
}

/// The connection parameters of libpq's `key=value` connection strings. A string
/// that starts with one of them (`host=db user=app …`) is a PostgreSQL connection
/// string, not a file name.
const LIBPQ_KEYWORDS: &[&str] = &[
    "host",
    "hostaddr",
    "port",
    "dbname",
    "user",
    "password",
    "passfile",
    "service",
    "connect_timeout",
    "client_encoding",
    "options",
    "application_name",
    "fallback_application_name",
    "keepalives",
    "keepalives_idle",
    "keepalives_interval",
    "keepalives_count",
    "tcp_user_timeout",
    "replication",
    "gssencmode",
    "sslmode",
    "requiressl",
    "sslcompression",
    "sslcert",
    "sslkey",
    "sslpassword",
    "sslrootcert",
    "sslcrl",
    "sslcrldir",
    "sslsni",
    "requirepeer",
    "ssl_min_protocol_version",
    "ssl_max_protocol_version",
    "krbsrvname",
    "gsslib",
    "target_session_attrs",
    "load_balance_hosts",
];

/// The parameters of SQLite URI file names that a `sqlite://PATH?…` URL may carry,
/// with the values each accepts (`None`: any).
const SQLITE_URI_PARAMS: &[(&str, Option<&[&str]>)] = &[
    ("mode", Some(&["ro", "rw", "rwc", "memory"])),
    ("cache", Some(&["shared", "private"])),
    ("immutable", Some(&["0", "1"])),
    ("nolock", Some(&["0", "1"])),
    ("psow", Some(&["0", "1"])),
    ("vfs", None),
];

impl DatabaseUrl {
    /// Parse a database URL:
    /// `postgres://…` / `postgresql://…` or a libpq `key=value` string, `mysql://…`
    /// (or `mariadb://…`), `sqlite://PATH[?PARAMS]`, `sqlite::memory:`, a `file:` URI,
    /// or a plain path. A URL of a backend this build does not have (see the cargo
    /// features) is refused.
    pub(crate) fn parse(raw: &str) -> Result<DatabaseUrl> {
        let url = DatabaseUrl::parse_any(raw)?;
        if !built_in(url.backend) {
            return Err(Error::InvalidUrl {
                url: url.masked,
                reason: not_built_in(url.backend),
            });
        }
        Ok(url)
    }

    /// [`parse`](DatabaseUrl::parse), whichever backends are built in.
    fn parse_any(raw: &str) -> Result<DatabaseUrl> {
        let masked = mask_password(raw);
        let secrets = secrets_of(raw);
        let invalid = |reason: &str| Error::InvalidUrl {
            url: masked.clone(),
            reason: reason.to_string(),
        };
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err(invalid("the URL is empty"));
        }
        if trimmed.contains('\0') {
            return Err(invalid("a URL cannot contain a NUL character"));
        }
        let url = |backend: Backend, target: String| DatabaseUrl {
            backend,
            target,
            in_memory: false,
            read_only: false,
            masked: masked.clone(),
            pgbouncer: None,
            secrets: secrets.clone(),
        };
        let lower = trimmed.to_ascii_lowercase();
        if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
            let parsed = url::Url::parse(trimmed).map_err(|e| invalid(&e.to_string()))?;
            if parsed.host_str().is_none_or(str::is_empty) && !has_query_host(&parsed) {
                return Err(invalid("a PostgreSQL URL needs a host"));
            }
            let (target, pgbouncer) = take_pgbouncer_param(trimmed).map_err(|e| invalid(&e))?;
            let mut db = url(Backend::Postgres, target);
            db.pgbouncer = pgbouncer;
            return Ok(db);
        }
        if is_libpq_conninfo(trimmed) {
            let (target, pgbouncer) = take_conninfo_pgbouncer(trimmed).map_err(|e| invalid(&e))?;
            let mut db = url(Backend::Postgres, target);
            db.pgbouncer = pgbouncer;
            return Ok(db);
        }
        if lower.starts_with("mysql://") || lower.starts_with("mariadb://") {
            let target = parse_mysql(trimmed, &invalid)?;
            return Ok(url(Backend::Mysql, target));
        }
        let sqlite = |path: &str, params: Option<&str>| -> Result<DatabaseUrl> {
            if path.is_empty() {
                return Err(invalid("a SQLite URL needs a file path"));
            }
            let mut db = url(Backend::Sqlite, path.to_string());
            db.in_memory = path == ":memory:";
            if let Some(params) = params {
                let read_only = sqlite_params(params).map_err(|reason| invalid(&reason))?;
                db.read_only = read_only.read_only;
                db.in_memory |= read_only.in_memory;
                db.target = format!("file:{}?{params}", encode_uri_path(path));
            }
            Ok(db)
        };
        let sqlite_rest =
            strip_prefix_ci(trimmed, "sqlite://").or_else(|| strip_prefix_ci(trimmed, "sqlite:"));
        if let Some(rest) = sqlite_rest {
            return match rest.split_once('?') {
                Some((path, params)) => sqlite(path, Some(params)),
                None => sqlite(rest, None),
            };
        }
        if let Some(rest) = strip_prefix_ci(trimmed, "file:") {
            // A SQLite URI file name, handed to SQLite as it is.
            let params = rest.split_once('?').map(|(_, params)| params);
            let mut db = url(Backend::Sqlite, trimmed.to_string());
            if let Some(params) = params {
                let flags = sqlite_params(params).map_err(|reason| invalid(&reason))?;
                db.read_only = flags.read_only;
                db.in_memory = flags.in_memory;
            }
            return Ok(db);
        }
        if let Some((scheme, _)) = trimmed.split_once("://") {
            let supported = "use postgres://…, mysql://…, sqlite://PATH, sqlite::memory:, \
                 a libpq key=value string or a file path";
            return Err(invalid(&format!(
                "unsupported scheme {:?}: {supported}",
                mask_password(scheme)
            )));
        }
        sqlite(trimmed, None)
    }

    /// PostgreSQL behind a transaction pooler (`?pgbouncer=true`, or found at open):
    /// no statement or setting may depend on the server session.
    pub(crate) fn pooled(&self) -> bool {
        self.pgbouncer == Some(true)
    }

    /// Remove the password from a driver's message, wherever it appears.
    pub(crate) fn scrub(&self, message: &str) -> String {
        scrub_secrets(&self.secrets, message)
    }
}

/// What the parameters of a SQLite URI say about how it is opened.
struct SqliteFlags {
    read_only: bool,
    in_memory: bool,
}

/// Check the `?…` parameters of a SQLite URL: only SQLite's own URI parameters, each
/// with a value it accepts.
fn sqlite_params(params: &str) -> std::result::Result<SqliteFlags, String> {
    let mut flags = SqliteFlags {
        read_only: false,
        in_memory: false,
    };
    for pair in params.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let Some((_, allowed)) = SQLITE_URI_PARAMS.iter().find(|(k, _)| *k == key) else {
            let known: Vec<&str> = SQLITE_URI_PARAMS.iter().map(|(k, _)| *k).collect();
            return Err(format!(
                "unknown SQLite parameter {key:?} (known: {})",
                known.join(", ")
            ));
        };
        if let Some(allowed) = allowed {
            if !allowed.contains(&value) {
                return Err(format!(
                    "SQLite parameter {key}={value:?} must be one of {}",
                    allowed.join(", ")
                ));
            }
        }
        match (key, value) {
            ("mode", "ro") | ("immutable", "1") => flags.read_only = true,
            ("mode", "memory") => flags.in_memory = true,
            _ => {}
        }
    }
    Ok(flags)
}

/// A file path as the path of a SQLite `file:` URI: `%`, `?` and `#` escaped.
pub(crate) fn encode_uri_path(path: &str) -> String {
    path.replace('%', "%25")
        .replace('?', "%3f")
        .replace('#', "%23")
}

/// Whether `s` is a libpq `key=value …` connection string: it starts with one of
/// libpq's parameter names followed by `=`.
fn is_libpq_conninfo(s: &str) -> bool {
    let Some((key, _)) = s.split_once('=') else {
        return false;
    };
    LIBPQ_KEYWORDS.contains(&key.trim_end())
}

/// `mysql://[USER[:PASSWORD]@]HOST[:PORT]/DATABASE[?unix_socket=…&ssl_mode=…]`; also
/// `mariadb://…`, handed to the driver as `mysql://…`. The database name is required:
/// the lock table lives in it. The URL the driver gets.
fn parse_mysql(trimmed: &str, invalid: &dyn Fn(&str) -> Error) -> Result<String> {
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
    Ok(target)
}

/// Whether this build of lockmgr has `backend` (its cargo feature).
pub(crate) fn built_in(backend: Backend) -> bool {
    match backend {
        Backend::Postgres => cfg!(feature = "postgres"),
        Backend::Sqlite => cfg!(feature = "sqlite"),
        Backend::Mysql => cfg!(feature = "mysql"),
    }
}

/// Why a URL of `backend` cannot be opened by a build without it.
pub(crate) fn not_built_in(backend: Backend) -> String {
    let name = match backend {
        Backend::Postgres => "PostgreSQL",
        Backend::Sqlite => "SQLite",
        Backend::Mysql => "MySQL",
    };
    format!("this build of lockmgr has no {name} support: enable its `{backend}` cargo feature")
}

/// Remove the `pgbouncer` parameter from a PostgreSQL URL (libpq refuses parameters
/// it does not know); the URL without it, and its value. The rest of the URL is kept
/// byte for byte.
/// The value of a `pgbouncer` parameter.
fn pgbouncer_flag(raw: &str) -> std::result::Result<bool, String> {
    match raw.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        other => Err(format!(
            "`{PGBOUNCER_PARAM}` must be true or false, not {other:?}"
        )),
    }
}

/// A libpq `key=value` string without its `pgbouncer=…` pair (which libpq would
/// refuse), and that pair's value.
fn take_conninfo_pgbouncer(conninfo: &str) -> std::result::Result<(String, Option<bool>), String> {
    let names_it = conninfo.split_whitespace().any(|token| {
        token
            .split('=')
            .next()
            .is_some_and(|key| key.eq_ignore_ascii_case(PGBOUNCER_PARAM))
    });
    if !names_it {
        // Left exactly as written (quoted values keep their spaces).
        return Ok((conninfo.to_string(), None));
    }
    let mut value = None;
    let mut kept: Vec<&str> = Vec::new();
    let mut tokens = conninfo.split_whitespace().peekable();
    while let Some(token) = tokens.next() {
        let key = token.split('=').next().unwrap_or("");
        if !key.eq_ignore_ascii_case(PGBOUNCER_PARAM) {
            kept.push(token);
            continue;
        }
        // `pgbouncer=true`, `pgbouncer= true` or `pgbouncer = true`.
        let mut raw = token.split_once('=').map_or("", |(_, v)| v).to_string();
        if !token.contains('=') && tokens.peek() == Some(&"=") {
            tokens.next();
        }
        if raw.is_empty() {
            raw = tokens
                .next()
                .unwrap_or("")
                .trim_start_matches('=')
                .to_string();
        }
        value = Some(pgbouncer_flag(&raw)?);
    }
    Ok((kept.join(" "), value))
}

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
        let raw = percent_encoding::percent_decode_str(raw).decode_utf8_lossy();
        value = Some(pgbouncer_flag(&raw)?);
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
    url.query_pairs().any(|(k, _)| k == "host")
}

/// Where the password of `scheme://user:password@host…` lies in `raw`, if it has one.
///
/// In a well-formed URL the user info ends at the last `@` before the first `/`, `?`
/// or `#`. A password holding one of those characters unencoded makes the URL
/// malformed and that point ambiguous: then the last `@` anywhere is taken, which may
/// hide more than the password but never less.
fn password_span(raw: &str) -> Option<std::ops::Range<usize>> {
    let start = raw.find("://")? + 3;
    let rest = &raw[start..];
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let at = match rest[..authority_end].rfind('@') {
        Some(at) if url::Url::parse(raw.trim()).is_ok() => at,
        _ => rest.rfind('@')?,
    };
    let colon = rest[..at].find(':')?;
    Some(start + colon + 1..start + at)
}

/// The spans of `password=VALUE` and `sslpassword=VALUE` parameters in `raw`, in URL
/// query strings (`?…&password=…`) and libpq `key=value` strings (`password='a b'`).
fn password_param_spans(raw: &str) -> Vec<std::ops::Range<usize>> {
    let lower = raw.to_ascii_lowercase();
    let bytes = raw.as_bytes();
    let mut spans = Vec::new();
    let mut from = 0;
    while let Some(pos) = lower[from..].find("password") {
        let key_start = from + pos;
        from = key_start + "password".len();
        let key_start = if lower[..key_start].ends_with("ssl") {
            key_start - 3
        } else {
            key_start
        };
        let starts_a_key = key_start == 0
            || matches!(bytes[key_start - 1], b'?' | b'&' | b';')
            || bytes[key_start - 1].is_ascii_whitespace();
        if !starts_a_key {
            continue;
        }
        let after_key = &raw[from..];
        let Some(eq) = after_key
            .find(|c: char| !c.is_whitespace())
            .filter(|&i| after_key[i..].starts_with('='))
        else {
            continue;
        };
        let mut value_start = from + eq + 1;
        while raw[value_start..].starts_with([' ', '\t']) {
            value_start += 1;
        }
        let value = &raw[value_start..];
        let len = if let Some(quoted) = value.strip_prefix('\'') {
            // libpq: single quotes, backslash escapes.
            let mut end = quoted.len();
            let mut escaped = false;
            for (i, c) in quoted.char_indices() {
                match c {
                    _ if escaped => escaped = false,
                    '\\' => escaped = true,
                    '\'' => {
                        end = i + 1;
                        break;
                    }
                    _ => {}
                }
            }
            1 + end
        } else {
            value
                .find(|c: char| c == '&' || c == '#' || c.is_whitespace())
                .unwrap_or(value.len())
        };
        spans.push(value_start..value_start + len);
        from = value_start + len;
    }
    spans
}

/// Every password in `raw`, as written and percent-decoded (and unquoted), longest
/// first: what must never appear in a message.
fn secrets_of(raw: &str) -> Vec<String> {
    let mut spans = password_param_spans(raw);
    spans.extend(password_span(raw));
    let mut secrets = Vec::new();
    for span in spans {
        let written = &raw[span];
        secrets.push(written.to_string());
        let unquoted = written
            .strip_prefix('\'')
            .map(|v| v.strip_suffix('\'').unwrap_or(v).replace("\\'", "'"))
            .unwrap_or_else(|| written.to_string());
        secrets.push(
            percent_encoding::percent_decode_str(&unquoted)
                .decode_utf8_lossy()
                .into_owned(),
        );
        secrets.push(unquoted);
    }
    secrets.retain(|s| !s.is_empty());
    secrets.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    secrets.dedup();
    secrets
}

fn scrub_secrets(secrets: &[String], text: &str) -> String {
    let mut out = text.to_string();
    for secret in secrets {
        out = out.replace(secret.as_str(), "***");
    }
    out
}

/// Remove every password of the database URL `url` from `text`: as written in the
/// URL, percent-decoded, and unquoted. For messages that may repeat a URL or a
/// driver's words about it (the command line runs every error through it).
///
/// ```
/// use lockmgr::scrub_password;
/// let url = "postgres://app:p%40ss@db/locks";
/// assert_eq!(scrub_password(url, "auth failed for p@ss"), "auth failed for ***");
/// assert_eq!(scrub_password("host=db password='a b'", "bad 'a b'"), "bad ***");
/// ```
pub fn scrub_password(url: &str, text: &str) -> String {
    scrub_secrets(&secrets_of(url), text)
}

/// Show a database URL with its password (in the user-info part, a `password=` query
/// parameter, or a libpq `key=value` string) replaced by `***`. Works on malformed
/// URLs too: where the end of a password is ambiguous, more is hidden, never less.
///
/// ```
/// use lockmgr::mask_password;
/// assert_eq!(mask_password("postgres://app:s3cret@db/locks"), "postgres://app:***@db/locks");
/// assert_eq!(mask_password("mysql://app:s3cret@db:3306/locks"), "mysql://app:***@db:3306/locks");
/// assert_eq!(
///     mask_password("postgres://db/locks?user=app&password=s3cret"),
///     "postgres://db/locks?user=app&password=***"
/// );
/// // A password with an unencoded `#` or `/` is still hidden whole.
/// assert_eq!(mask_password("postgres://app:s3#cr/et@db/locks"), "postgres://app:***@db/locks");
/// assert_eq!(mask_password("host=db user=app password=s3cret"), "host=db user=app password=***");
/// assert_eq!(mask_password("locks.sqlite3"), "locks.sqlite3");
/// ```
pub fn mask_password(raw: &str) -> String {
    let mut spans = password_param_spans(raw);
    spans.extend(password_span(raw));
    spans.sort_by_key(|span| std::cmp::Reverse(span.start));
    let mut out = raw.to_string();
    let mut last_start = usize::MAX;
    for span in spans {
        // Spans may overlap (a `password=` inside the user info): replace each region
        // once, from the end.
        let end = span.end.min(last_start);
        if span.start >= end {
            continue;
        }
        out.replace_range(span.start..end, "***");
        last_start = span.start;
    }
    out
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

    /// Passwords that make a URL malformed, and the pieces of them that must never
    /// be shown.
    const MALFORMED: &[(&str, &[&str])] = &[
        ("postgres://app:hunt#er2@db/locks", &["hunt", "er2"]),
        ("postgres://app:hunt/er2@db/locks", &["hunt", "er2"]),
        ("postgres://app:hunt?er2@db/locks", &["hunt", "er2"]),
        ("postgres://app:hunter2%00@db/locks", &["hunter2"]),
        ("postgres://app:hunt er2@db/locks", &["hunt", "er2"]),
        ("postgresql://app:hunt#er/2?x@[::1/locks", &["hunt", "er/2"]),
        ("mysql://app:hunt#er2@db/locks", &["hunt", "er2"]),
        ("mysql://app:hunt/er2@db:3306/locks", &["hunt", "er2"]),
        ("redis://app:hunt#er2@db/0", &["hunt", "er2"]),
        (
            "host=db user=app password=hunter2 dbname=locks",
            &["hunter2"],
        ),
        ("host=db password='hunt er2' dbname=locks", &["hunt", "er2"]),
        ("host=db password = 'hunt\\' er2'", &["hunt", "er2"]),
        (
            "postgres://db/locks?sslpassword=hunter2&password=hunter3",
            &["hunter"],
        ),
    ];

    #[test]
    fn malformed_urls_never_show_their_password() {
        for (raw, pieces) in MALFORMED {
            let shown = [
                mask_password(raw),
                match DatabaseUrl::parse(raw) {
                    Ok(url) => format!("{} {url:?}", url.masked),
                    Err(err) => format!("{err} {err:?}"),
                },
            ];
            for text in shown {
                for piece in *pieces {
                    assert!(!text.contains(piece), "{raw}: {text}");
                }
            }
            // And a driver message that repeats the URL is scrubbed.
            let scrubbed = scrub_password(raw, &format!("cannot parse {raw}"));
            for piece in *pieces {
                assert!(!scrubbed.contains(piece), "{raw}: {scrubbed}");
            }
        }
    }

    #[test]
    fn libpq_connection_strings_are_postgres() {
        let url =
            DatabaseUrl::parse("host=db port=5433 user=app password=s3 dbname=locks").unwrap();
        assert_eq!(url.backend, Backend::Postgres);
        assert_eq!(
            url.masked,
            "host=db port=5433 user=app password=*** dbname=locks"
        );
        assert_eq!(url.scrub("no s3 here"), "no *** here");
        // A file name with an `=` in it is still a file.
        let file = DatabaseUrl::parse("data/a=b.sqlite3").unwrap();
        assert_eq!(file.backend, Backend::Sqlite);
    }

    #[test]
    fn sqlite_urls_take_sqlite_uri_parameters() {
        let ro = DatabaseUrl::parse("sqlite://data/f.db?mode=ro").unwrap();
        assert_eq!(ro.target, "file:data/f.db?mode=ro");
        assert!(ro.read_only);
        let odd = DatabaseUrl::parse("sqlite:///tmp/a%b#c.db?immutable=1&cache=shared").unwrap();
        assert_eq!(
            odd.target,
            "file:/tmp/a%25b%23c.db?immutable=1&cache=shared"
        );
        assert!(odd.read_only);
        let uri = DatabaseUrl::parse("file:/tmp/x.db?mode=ro").unwrap();
        assert_eq!((uri.backend, uri.read_only), (Backend::Sqlite, true));
        for bad in [
            "sqlite://f.db?mode=readonly",
            "sqlite://f.db?journal=wal",
            "file:f.db?x=1",
        ] {
            let err = DatabaseUrl::parse(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidUrl { .. }), "{bad}: {err}");
        }
    }

    #[test]
    fn scrubs_passwords_as_written_and_decoded() {
        let raw = "postgres://app:pa%00ss%23@db/locks";
        assert_eq!(scrub_password(raw, "token: pa%00ss%23"), "token: ***");
        assert_eq!(scrub_password(raw, "token: pa\0ss#"), "token: ***");
        assert_eq!(scrub_password("host=db password='a\\'b'", "x a'b"), "x ***");
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
