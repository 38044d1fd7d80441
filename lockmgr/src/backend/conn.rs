//! Connection pools: one r2d2 pool per store, over the backend's diesel connection.
//!
//! Checking a connection out sends nothing (no `test_on_check_out` query): the lock
//! path stays at one round trip per statement. A connection whose statement failed
//! because the link is gone (server restarted, socket closed) is marked broken and
//! dropped when it goes back, so the pool reconnects on its own.
//!
//! Every call is bounded in time: checkout by `connection_timeout`, connecting by
//! `connect_timeout` (libpq's own, and the [watchdog](super::watchdog) for MySQL), and
//! each call on a connection by `statement_timeout` (the watchdog shuts the socket of
//! a call that overruns). SQLite has no socket: its `busy_timeout` bounds a call.

#[cfg(feature = "postgres")]
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[cfg(feature = "postgres")]
use diesel::connection::CacheSize;
use diesel::connection::{Connection, SimpleConnection};
#[cfg(feature = "mysql")]
use diesel::mysql::MysqlConnection;
#[cfg(feature = "postgres")]
use diesel::pg::PgConnection;
use diesel::r2d2::{self, ManageConnection, R2D2Connection};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
#[cfg(feature = "sqlite")]
use diesel::sqlite::SqliteConnection;

use super::dialect::{LockConn, Session, Statements};
use super::migrate::MigrationError;
use super::table::TableName;
use super::watchdog::{self, Armed, Snapshot, Socket};
use crate::database_url::{Backend, DatabaseUrl};
use crate::error::{DbResult, Error, Result};

/// Pool and connection settings; see [`LockStoreBuilder`](crate::LockStoreBuilder).
#[derive(Debug, Clone)]
pub(crate) struct PoolOptions {
    pub(crate) max_size: u32,
    pub(crate) connection_timeout: Duration,
    pub(crate) busy_timeout: Duration,
    pub(crate) connect_timeout: Duration,
    pub(crate) statement_timeout: Duration,
    /// SQLite: `PRAGMA max_page_count` on every connection (tests make the database
    /// "full" on demand with it).
    pub(crate) sqlite_max_page_count: Option<u32>,
}

/// The default of [`LockStoreBuilder::connect_timeout`](crate::LockStoreBuilder::connect_timeout).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// The default of [`LockStoreBuilder::statement_timeout`](crate::LockStoreBuilder::statement_timeout).
pub const DEFAULT_STATEMENT_TIMEOUT: Duration = Duration::from_secs(10);

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            max_size: 10,
            connection_timeout: Duration::from_secs(5),
            busy_timeout: Duration::from_secs(30),
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            statement_timeout: DEFAULT_STATEMENT_TIMEOUT,
            sqlite_max_page_count: None,
        }
    }
}

/// A pooled connection, with a flag the store sets when the link is known to be dead.
pub(crate) struct Managed<C> {
    pub(crate) conn: C,
    broken: bool,
    /// Our handle on the connection's socket, for the watchdog; `None` for SQLite, or
    /// when the socket could not be told apart (then calls are not bounded by lockmgr).
    socket: Option<Arc<Socket>>,
}

/// Per-connection setup run right after connecting (SQLite pragmas, MySQL session
/// settings).
type Setup<C> = Arc<dyn Fn(&mut C) -> diesel::QueryResult<()> + Send + Sync>;

/// Connects with diesel, then runs the backend's per-connection setup.
pub(crate) struct Manager<C> {
    target: String,
    setup: Setup<C>,
    /// Network backends: the watchdog bounds connecting and each call.
    watch: Option<Watch>,
}

impl<C> Clone for Manager<C> {
    fn clone(&self) -> Self {
        Manager {
            target: self.target.clone(),
            setup: Arc::clone(&self.setup),
            watch: self.watch.clone(),
        }
    }
}

/// How the watchdog bounds the connections of a network backend.
#[derive(Clone)]
struct Watch {
    /// The server's TCP port, when the URL says which (only sockets to it are ours).
    port: Option<u16>,
    /// A connect still running this long after it began is cut.
    connect: Duration,
    /// The per-connection setup statements are bounded by this.
    statement: Duration,
}

impl<C> Manager<C>
where
    C: Connection + R2D2Connection + Send + 'static,
{
    /// Establish, find the connection's socket, run the setup; one attempt.
    fn establish_watched(&self, watch: &Watch) -> std::result::Result<Managed<C>, r2d2::Error> {
        let snapshot = Arc::new(Snapshot::take(watch.port));
        let armed = watchdog::arm_connect(&snapshot, Instant::now() + watch.connect);
        let established = C::establish(&self.target);
        let fired = armed.is_some_and(Armed::disarm);
        let conn = match established {
            Ok(_) | Err(_) if fired => {
                return Err(r2d2::Error::ConnectionError(
                    diesel::ConnectionError::BadConnection(format!(
                        "no answer within the connect timeout ({:?})",
                        watch.connect
                    )),
                ))
            }
            Ok(conn) => conn,
            Err(err) => return Err(r2d2::Error::ConnectionError(err)),
        };
        let mut managed = Managed {
            conn,
            broken: false,
            socket: snapshot.opened_socket(),
        };
        let setup = Arc::clone(&self.setup);
        run_watched(&mut managed, watch.statement, |conn| setup(conn).db()).map_err(
            |err| match err {
                Error::Database(err) => r2d2::Error::QueryError(err.into_driver()),
                other => r2d2::Error::ConnectionError(diesel::ConnectionError::BadConnection(
                    other.to_string(),
                )),
            },
        )?;
        Ok(managed)
    }
}

impl<C> ManageConnection for Manager<C>
where
    C: Connection + R2D2Connection + Send + 'static,
{
    type Connection = Managed<C>;
    type Error = r2d2::Error;

    fn connect(&self) -> std::result::Result<Managed<C>, r2d2::Error> {
        let Some(watch) = &self.watch else {
            let mut conn = C::establish(&self.target).map_err(r2d2::Error::ConnectionError)?;
            (self.setup)(&mut conn).map_err(r2d2::Error::QueryError)?;
            return Ok(Managed {
                conn,
                broken: false,
                socket: None,
            });
        };
        if !watchdog::supported() {
            warn_unwatched("this system has no /proc/self/fd");
            let mut unwatched = self.clone();
            unwatched.watch = None;
            return unwatched.connect();
        }
        // One connect at a time to this server port in this process, so that the socket
        // each one opened can be told apart. Another thread of the application may
        // still open a socket to the same port meanwhile: then try again.
        let serial = watchdog::serialize_connects(watch.port);
        let _one_at_a_time = serial.lock().unwrap_or_else(|p| p.into_inner());
        let mut attempt = 0;
        loop {
            let managed = self.establish_watched(watch)?;
            attempt += 1;
            if managed.socket.is_some() || attempt == 3 {
                if managed.socket.is_none() {
                    warn_unwatched("its socket could not be told apart from others");
                }
                return Ok(managed);
            }
        }
    }

    fn is_valid(&self, conn: &mut Managed<C>) -> std::result::Result<(), r2d2::Error> {
        conn.conn.ping().map_err(r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut Managed<C>) -> bool {
        // A panic may have cut a transaction short: do not hand that connection out again.
        conn.broken || std::thread::panicking() || conn.conn.is_broken()
    }
}

/// A connection whose calls lockmgr cannot bound: said once per process, at warn.
fn warn_unwatched(reason: &str) {
    static SAID: std::sync::Once = std::sync::Once::new();
    SAID.call_once(|| {
        tracing::warn!(
            reason,
            "lockmgr: a database connection is not watched: its calls are bounded only by the driver's own timeouts"
        );
    });
}

/// A pool, the manager that fills it (to connect afresh outside the pool), and the
/// statements of the store.
pub(crate) struct Pooled<C: Connection + R2D2Connection + Send + 'static> {
    pool: r2d2::Pool<Manager<C>>,
    manager: Manager<C>,
    sql: Statements,
}

/// The pool of one store.
pub(crate) enum Pool {
    #[cfg(feature = "postgres")]
    Postgres(Pooled<PgConnection>),
    #[cfg(feature = "sqlite")]
    Sqlite(Pooled<SqliteConnection>),
    #[cfg(feature = "mysql")]
    Mysql(Pooled<MysqlConnection>),
}

impl Pool {
    /// Connect once (so an unreachable database fails now, with the driver's reason),
    /// apply the migrations when asked, and build the pool.
    pub(crate) fn open(
        url: &DatabaseUrl,
        options: &PoolOptions,
        table: &TableName,
        migrate: bool,
    ) -> Result<(Pool, Vec<String>)> {
        let sql = || Statements::new(url.backend, table);
        match url.backend {
            #[cfg(feature = "postgres")]
            Backend::Postgres => {
                let setup: Setup<PgConnection> = if url.pooled() {
                    // Behind a transaction pooler each statement may run on another
                    // server session: nothing may live in one. Statements are sent
                    // unnamed (parse, bind and execute in one round trip), so no
                    // `__diesel_stmt_N` is left on a server connection for another
                    // client to run, and each is planned for its own values (a
                    // custom plan: the primary key), so sequential scans need no
                    // session setting. diesel's own `SET TIME ZONE` and
                    // `CLIENT_ENCODING` at connect are parameters PgBouncer tracks
                    // per client.
                    Arc::new(|conn| {
                        conn.set_prepared_statement_cache_size(CacheSize::Disabled);
                        Ok(())
                    })
                } else {
                    // diesel already sets `TIME ZONE 'UTC'` and UTF-8 on every new
                    // connection. Lock statements are prepared once per connection and
                    // PostgreSQL soon reuses one generic plan for them: if that plan was
                    // made while the table was nearly empty it may be a sequential scan,
                    // kept after the table grows to thousands of locks (measured: 13×
                    // slower at 100,000). Every lock statement has a primary-key path, so
                    // rule sequential scans out for this session.
                    Arc::new(|conn| conn.batch_execute("SET enable_seqscan = off"))
                };
                let manager = Manager::<PgConnection> {
                    target: with_libpq_settings(&url.target, options.connect_timeout),
                    setup,
                    // libpq's connect_timeout bounds connecting; the watchdog is the
                    // backstop, a second later.
                    watch: Some(Watch {
                        port: server_port(&url.target, 5432),
                        connect: Duration::from_secs(libpq_seconds(options.connect_timeout) + 1),
                        statement: options.statement_timeout,
                    }),
                };
                let applied = first_connection(&manager, url, options, table, migrate)?;
                Ok((
                    Pool::Postgres(Pooled::new(manager, options, options.max_size, sql())),
                    applied,
                ))
            }
            #[cfg(feature = "sqlite")]
            Backend::Sqlite => {
                let manager = sqlite_manager(&url.target, url, options);
                let (manager, applied) = match first_connection(
                    &manager, url, options, table, migrate,
                ) {
                    Ok(applied) => (manager, applied),
                    Err(err) => {
                        // A database on read-only storage whose shared-memory index
                        // cannot be created: read it as the immutable file it is.
                        let Some(target) = read_only_fallback(url) else {
                            return Err(err);
                        };
                        let mut read_only = url.clone();
                        read_only.read_only = true;
                        let manager = sqlite_manager(&target, &read_only, options);
                        let applied = first_connection(&manager, url, options, table, migrate)
                            .map_err(|_| err)?;
                        tracing::info!(
                            url = %url.masked,
                            "lockmgr: the SQLite database is on read-only storage; opened read-only"
                        );
                        (manager, applied)
                    }
                };
                // `:memory:` is one database per connection: keep exactly one.
                let size = if url.in_memory { 1 } else { options.max_size };
                let pooled = Pooled::new(manager, options, size, sql());
                if url.in_memory {
                    // The migrated connection above is gone with its database; the
                    // pool's only connection must carry the table itself.
                    let mut conn = pooled
                        .pool
                        .get()
                        .map_err(|e| connection_error(url, &e.to_string()))?;
                    conn.conn
                        .migrate(table)
                        .map_err(|e| migration_error(url, e))?;
                }
                Ok((Pool::Sqlite(pooled), applied))
            }
            #[cfg(feature = "mysql")]
            Backend::Mysql => {
                let manager = Manager::<MysqlConnection> {
                    target: url.target.clone(),
                    // diesel already sets `time_zone = '+00:00'` and utf8mb4. READ
                    // COMMITTED: a plain read inside a transaction sees the latest
                    // committed row (see dialect/mysql.rs). A fixed sql_mode: strict,
                    // and none of ANSI_QUOTES, PIPES_AS_CONCAT… whatever the server's
                    // default is. One round trip, once per connection.
                    setup: Arc::new(|conn| {
                        conn.batch_execute(
                            "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED; \
                             SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION'",
                        )
                    }),
                    // diesel offers no way to set the MySQL client's own timeouts:
                    // the watchdog bounds connecting as well as each call.
                    watch: Some(Watch {
                        port: server_port(&url.target, 3306),
                        connect: options.connect_timeout,
                        statement: options.statement_timeout,
                    }),
                };
                let applied = first_connection(&manager, url, options, table, migrate)?;
                Ok((
                    Pool::Mysql(Pooled::new(manager, options, options.max_size, sql())),
                    applied,
                ))
            }
            // DatabaseUrl::parse already refuses the URL of a backend not built in.
            #[allow(unreachable_patterns)]
            backend => Err(Error::InvalidUrl {
                url: url.masked.clone(),
                reason: crate::database_url::not_built_in(backend),
            }),
        }
    }

    /// Run `f` on a pooled connection (or, when `from` says so, on a new connection
    /// made for it), within the store's timeouts.
    pub(crate) fn with_conn<R>(
        &self,
        url: &DatabaseUrl,
        options: &PoolOptions,
        from: Checkout,
        f: impl FnOnce(&mut Session<'_>) -> Result<R>,
    ) -> Result<R> {
        match self {
            #[cfg(feature = "postgres")]
            Pool::Postgres(pooled) => pooled.run(url, options, from, f),
            #[cfg(feature = "sqlite")]
            Pool::Sqlite(pooled) => pooled.run(url, options, from, f),
            #[cfg(feature = "mysql")]
            Pool::Mysql(pooled) => pooled.run(url, options, from, f),
        }
    }
}

/// Where a call gets its connection.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Checkout {
    /// From the pool; the call must be over by the instant given, if any (its
    /// checkout and statement timeouts are cut to fit).
    Pooled(Option<Instant>),
    /// A new connection, not from the pool (which may hold more connections as dead
    /// as the one that just failed), dropped after the call.
    Fresh,
}

impl<C> Pooled<C>
where
    C: Connection + R2D2Connection + LockConn + Send + 'static,
{
    fn new(manager: Manager<C>, options: &PoolOptions, size: u32, sql: Statements) -> Self {
        let pool = r2d2::Pool::builder()
            .max_size(size.max(1))
            .min_idle(Some(0))
            .test_on_check_out(false)
            .connection_timeout(options.connection_timeout)
            .error_handler(Box::new(r2d2::NopErrorHandler))
            .build_unchecked(manager.clone());
        Pooled { pool, manager, sql }
    }

    fn run<R>(
        &self,
        url: &DatabaseUrl,
        options: &PoolOptions,
        from: Checkout,
        f: impl FnOnce(&mut Session<'_>) -> Result<R>,
    ) -> Result<R> {
        let sql = &self.sql;
        let until = match from {
            Checkout::Pooled(until) => until,
            Checkout::Fresh => {
                let mut conn = self
                    .manager
                    .connect()
                    .map_err(|e| connection_error(url, &e.to_string()))?;
                return run_watched(&mut conn, options.statement_timeout, |c| {
                    f(&mut Session::new(c, sql))
                })
                .map_err(|e| with_url(e, url));
            }
        };
        let left = |limit: Duration| match until {
            Some(until) => limit.min(until.saturating_duration_since(Instant::now())),
            None => limit,
        };
        let mut conn = self
            .pool
            .get_timeout(left(options.connection_timeout).max(Duration::from_millis(1)))
            .map_err(|e| connection_error(url, &e.to_string()))?;
        run_watched(&mut conn, left(options.statement_timeout), |c| {
            f(&mut Session::new(c, sql))
        })
        .map_err(|e| with_url(e, url))
    }
}

/// Run `f` on `conn`, the watchdog cutting it off after `timeout`. A connection whose
/// link is gone, or that was cut off, is marked broken (the pool drops it).
fn run_watched<C, R>(
    conn: &mut Managed<C>,
    timeout: Duration,
    f: impl FnOnce(&mut C) -> Result<R>,
) -> Result<R> {
    let armed = conn
        .socket
        .as_ref()
        .and_then(|socket| watchdog::arm(socket, Instant::now() + timeout));
    let result = f(&mut conn.conn);
    let cut_off = armed.is_some_and(Armed::disarm);
    if cut_off || conn.socket.as_ref().is_some_and(|s| s.tripped()) {
        conn.broken = true;
        if result.is_err() {
            return Err(Error::Timeout {
                url: String::new(),
                after: timeout,
            });
        }
    }
    if let Some(err) = result.as_ref().err().and_then(Error::driver) {
        if link_is_gone(err) {
            conn.broken = true;
        }
    }
    result
}

/// Fill in the URL of a [`Error::Timeout`] made below the store.
fn with_url(err: Error, url: &DatabaseUrl) -> Error {
    match err {
        Error::Timeout { after, .. } => Error::Timeout {
            url: url.masked.clone(),
            after,
        },
        other => other,
    }
}

/// Whether `err` says the connection went away under the call: the call never got
/// its answer, and may be tried again on a new connection.
pub(crate) fn link_lost(err: &Error) -> bool {
    err.driver().is_some_and(link_is_gone)
}

#[cfg(feature = "postgres")]
/// libpq's `connect_timeout` is whole seconds, at least 2.
fn libpq_seconds(timeout: Duration) -> u64 {
    timeout.as_secs_f64().ceil().max(2.0) as u64
}

#[cfg(feature = "postgres")]
/// The PostgreSQL URL with lockmgr's client-side settings added, unless the URL sets
/// them itself: `connect_timeout`, and TCP keepalives and `tcp_user_timeout` so that
/// an idle pooled connection across a dead link is noticed within about a minute.
/// All are libpq's own (nothing is sent to the server, so PgBouncer accepts them).
pub(crate) fn with_libpq_settings(target: &str, connect_timeout: Duration) -> String {
    let is_url = target.contains("://");
    let present: HashSet<String> = if is_url {
        url::Url::parse(target)
            .map(|u| u.query_pairs().map(|(key, _)| key.into_owned()).collect())
            .unwrap_or_default()
    } else {
        conninfo_keys(target)
    };
    let connect_timeout = libpq_seconds(connect_timeout).to_string();
    let settings = [
        ("connect_timeout", connect_timeout.as_str()),
        ("keepalives", "1"),
        ("keepalives_idle", "30"),
        ("keepalives_interval", "10"),
        ("keepalives_count", "3"),
        ("tcp_user_timeout", "30000"),
    ];
    let mut out = target.to_string();
    for (key, value) in settings {
        if !present.contains(key) {
            if is_url {
                out.push(if out.contains('?') { '&' } else { '?' });
            } else {
                out.push(' ');
            }
            out.push_str(key);
            out.push('=');
            out.push_str(value);
        }
    }
    out
}

#[cfg(feature = "postgres")]
/// The keys of a libpq `key=value …` connection string.
fn conninfo_keys(conninfo: &str) -> HashSet<String> {
    conninfo_pairs(conninfo).map(|(key, _)| key).collect()
}

#[cfg(feature = "postgres")]
/// The `key=value` pairs of a libpq connection string (values unquoted).
fn conninfo_pairs(conninfo: &str) -> impl Iterator<Item = (String, String)> + '_ {
    let mut rest = conninfo.trim_start();
    std::iter::from_fn(move || {
        let (key, after) = rest.split_once('=')?;
        let key = key.trim().to_string();
        let after = after.trim_start();
        let (value, tail) = match after.strip_prefix('\'') {
            Some(quoted) => {
                let mut value = String::new();
                let mut chars = quoted.char_indices();
                let mut end = quoted.len();
                while let Some((i, c)) = chars.next() {
                    match c {
                        '\\' => value.extend(chars.next().map(|(_, c)| c)),
                        '\'' => {
                            end = i + 1;
                            break;
                        }
                        c => value.push(c),
                    }
                }
                (value, &quoted[end.min(quoted.len())..])
            }
            None => {
                let end = after.find(char::is_whitespace).unwrap_or(after.len());
                (after[..end].to_string(), &after[end..])
            }
        };
        rest = tail.trim_start();
        Some((key, value))
    })
}

#[cfg(any(feature = "postgres", feature = "mysql"))]
/// The TCP port a URL connects to (`default` when it names none); `None` when that
/// cannot be told (several hosts, a malformed URL).
pub(super) fn server_port(target: &str, default: u16) -> Option<u16> {
    #[cfg(feature = "postgres")]
    if !target.contains("://") {
        return match conninfo_pairs(target).find(|(key, _)| key == "port") {
            Some((_, port)) => port.parse().ok(),
            None => Some(default),
        };
    }
    let parsed = url::Url::parse(target).ok()?;
    if let Some((_, port)) = parsed.query_pairs().find(|(key, _)| key == "port") {
        return port.parse().ok();
    }
    Some(parsed.port().unwrap_or(default))
}

#[cfg(feature = "sqlite")]
/// The pool manager of a SQLite database: connect to `target`, then set the
/// connection up (busy timeout, WAL unless read-only or in memory).
fn sqlite_manager(
    target: &str,
    url: &DatabaseUrl,
    options: &PoolOptions,
) -> Manager<SqliteConnection> {
    let busy_timeout = options.busy_timeout;
    let busy_ms = busy_timeout.as_millis().min(i32::MAX as u128);
    let keeps_journal_mode = url.in_memory || url.read_only;
    let max_page_count = options.sqlite_max_page_count;
    Manager {
        target: target.to_string(),
        setup: Arc::new(move |conn| {
            // busy_timeout first: switching to WAL needs a lock another process may
            // hold for a moment.
            conn.batch_execute(&format!("PRAGMA busy_timeout = {busy_ms};"))?;
            if !keeps_journal_mode {
                // While another process creates the file or switches it to WAL,
                // SQLite may answer "database is locked" at once, without waiting:
                // wait here instead, within busy_timeout.
                retry_while_busy(busy_timeout, || {
                    conn.batch_execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
                })?;
            }
            if let Some(pages) = max_page_count {
                conn.batch_execute(&format!("PRAGMA max_page_count = {pages};"))?;
            }
            Ok(())
        }),
        // No socket: busy_timeout bounds a call.
        watch: None,
    }
}

#[cfg(feature = "sqlite")]
/// For a SQLite file that exists but could not be opened: the URI that opens it
/// read-only and immutable, when that is safe — no write-ahead log beside it (so no
/// committed change lives outside the file) and its folder not writable (so no
/// writer can appear: a writer needs a journal or log there).
fn read_only_fallback(url: &DatabaseUrl) -> Option<String> {
    if url.in_memory || url.read_only || url.target.starts_with("file:") {
        return None;
    }
    let path = std::path::Path::new(&url.target);
    let folder = match path.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => std::path::Path::new("."),
    };
    let wal = std::path::PathBuf::from(format!("{}-wal", url.target));
    let folder_writable = tempfile::tempfile_in(folder).is_ok();
    (path.is_file() && !wal.exists() && !folder_writable).then(|| {
        let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
        format!(
            "file:{}?mode=ro&immutable=1",
            crate::database_url::encode_uri_path(&absolute.to_string_lossy())
        )
    })
}

#[cfg(feature = "sqlite")]
/// Run `step` again while SQLite answers "database is locked" (`SQLITE_BUSY`)
/// without having waited, for up to `budget` in all.
fn retry_while_busy(
    budget: Duration,
    mut step: impl FnMut() -> diesel::QueryResult<()>,
) -> diesel::QueryResult<()> {
    let deadline = Instant::now() + budget;
    let mut pause = Duration::from_millis(1);
    loop {
        match step() {
            Err(DieselError::DatabaseError(_, info))
                if info.message().contains("database is locked") && Instant::now() < deadline =>
            {
                std::thread::sleep(pause);
                pause = (pause * 2).min(Duration::from_millis(50));
            }
            outcome => return outcome,
        }
    }
}

/// PostgreSQL without a `pgbouncer` parameter: find out whether a pooler is in
/// between (see `backend/pooler.rs`) and, if one is, behave as with `?pgbouncer=true`,
/// with a warning that says how to make the choice explicit.
pub(crate) fn resolve_pooler(url: &mut DatabaseUrl, options: &PoolOptions) -> Result<()> {
    if url.backend != Backend::Postgres || url.pgbouncer.is_some() {
        return Ok(());
    }
    #[cfg(not(feature = "postgres"))]
    return {
        let _ = options;
        Ok(())
    };
    #[cfg(feature = "postgres")]
    resolve_postgres_pooler(url, options)
}

/// See [`resolve_pooler`].
#[cfg(feature = "postgres")]
fn resolve_postgres_pooler(url: &mut DatabaseUrl, options: &PoolOptions) -> Result<()> {
    // Bounded like every other connect: libpq's connect_timeout and TCP settings.
    let target = with_libpq_settings(&url.target, options.connect_timeout);
    let pooled =
        super::pooler::pooler_in_between(&target).map_err(|e| connection_error(url, &e))?;
    if pooled {
        tracing::warn!(
            url = %url.masked,
            "lockmgr: this URL reaches PostgreSQL through a connection pooler (the server \
             session differs from the one announced at connect); lockmgr uses it as with \
             ?pgbouncer=true: no named prepared statements, no session settings, no LISTEN \
             (waiters poll unless a listen URL is set). Add ?pgbouncer=true to the URL to \
             say so, or ?pgbouncer=false if the pooler keeps sessions (session pooling)"
        );
    }
    url.pgbouncer = Some(pooled);
    Ok(())
}

/// The statement failed because the connection itself is gone.
fn link_is_gone(err: &DieselError) -> bool {
    match err {
        DieselError::DatabaseError(
            DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
            _,
        )
        | DieselError::BrokenTransactionManager => true,
        // diesel reports MySQL's client errors 2006 / 2013 as `Unknown`: known by text.
        DieselError::DatabaseError(DatabaseErrorKind::Unknown, info) => {
            let message = info.message().to_ascii_lowercase();
            message.contains("server has gone away") || message.contains("lost connection")
        }
        _ => false,
    }
}

fn first_connection<C>(
    manager: &Manager<C>,
    url: &DatabaseUrl,
    options: &PoolOptions,
    table: &TableName,
    migrate: bool,
) -> Result<Vec<String>>
where
    C: Connection + R2D2Connection + LockConn + Send + 'static,
{
    let mut conn = manager
        .connect()
        .map_err(|e| connection_error(url, &e.to_string()))?;
    if !migrate {
        return Ok(Vec::new());
    }
    run_watched(&mut conn, options.statement_timeout, |conn| {
        conn.migrate(table).map_err(|e| migration_error(url, e))
    })
    .map_err(|e| with_url(e, url))
}

pub(crate) fn connection_error(url: &DatabaseUrl, message: &str) -> Error {
    Error::Connection {
        url: url.masked.clone(),
        message: one_line(&url.scrub(message)),
    }
}

pub(crate) fn migration_error(url: &DatabaseUrl, err: MigrationError) -> Error {
    match err {
        MigrationError::Failed(message) => Error::Migration {
            url: url.masked.clone(),
            message: one_line(&url.scrub(&message)),
        },
        MigrationError::Conflict { table, reason } => Error::TableConflict {
            url: url.masked.clone(),
            table,
            reason,
        },
    }
}

/// Driver messages often span lines; errors are shown on one.
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(all(test, feature = "postgres"))]
mod tests {
    use super::*;

    #[test]
    fn libpq_settings_are_added_unless_the_url_sets_them() {
        let url = with_libpq_settings("postgres://u@h/db", Duration::from_millis(500));
        assert_eq!(
            url,
            "postgres://u@h/db?connect_timeout=2&keepalives=1&keepalives_idle=30\
             &keepalives_interval=10&keepalives_count=3&tcp_user_timeout=30000"
        );
        let url = with_libpq_settings(
            "postgres://u@h/db?connect_timeout=9&sslmode=disable",
            Duration::from_secs(5),
        );
        assert!(
            url.starts_with("postgres://u@h/db?connect_timeout=9&sslmode=disable&keepalives=1"),
            "{url}"
        );
        assert_eq!(url.matches("connect_timeout").count(), 1, "{url}");
    }

    #[test]
    fn the_server_port_is_read_from_the_url() {
        assert_eq!(server_port("postgres://u@h:6432/db", 5432), Some(6432));
        assert_eq!(server_port("postgres://u@h/db", 5432), Some(5432));
        assert_eq!(server_port("postgres://u@h/db?port=7000", 5432), Some(7000));
        assert_eq!(server_port("mysql://u@h/db", 3306), Some(3306));
    }
}
