//! Connection pools: one r2d2 pool per store, over the backend's diesel connection.
//!
//! Checking a connection out sends nothing (no `test_on_check_out` query): the lock
//! path stays at one round trip per statement. A connection whose statement failed
//! because the link is gone (server restarted, socket closed) is marked broken and
//! dropped when it goes back, so the pool reconnects on its own.

use std::time::Duration;

use diesel::connection::{CacheSize, Connection, SimpleConnection};
#[cfg(feature = "mysql")]
use diesel::mysql::MysqlConnection;
use diesel::pg::PgConnection;
use diesel::r2d2::{self, ManageConnection, R2D2Connection};
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sqlite::SqliteConnection;

use crate::database_url::{Backend, DatabaseUrl};
use crate::dialect::LockConn;
use crate::error::{Error, Result};

/// Pool and connection settings; see [`LockStoreBuilder`](crate::LockStoreBuilder).
#[derive(Debug, Clone)]
pub(crate) struct PoolOptions {
    pub(crate) max_size: u32,
    pub(crate) connection_timeout: Duration,
    pub(crate) busy_timeout: Duration,
}

impl Default for PoolOptions {
    fn default() -> Self {
        PoolOptions {
            max_size: 10,
            connection_timeout: Duration::from_secs(5),
            busy_timeout: Duration::from_secs(30),
        }
    }
}

/// A pooled connection, with a flag the store sets when the link is known to be dead.
pub(crate) struct Managed<C> {
    pub(crate) conn: C,
    broken: bool,
}

/// Per-connection setup run right after connecting (SQLite pragmas, MySQL session
/// settings).
type Setup<C> = Box<dyn Fn(&mut C) -> diesel::QueryResult<()> + Send + Sync>;

/// Connects with diesel, then runs the backend's per-connection setup.
pub(crate) struct Manager<C> {
    target: String,
    setup: Setup<C>,
}

impl<C> ManageConnection for Manager<C>
where
    C: Connection + R2D2Connection + Send + 'static,
{
    type Connection = Managed<C>;
    type Error = r2d2::Error;

    fn connect(&self) -> std::result::Result<Managed<C>, r2d2::Error> {
        let mut conn = C::establish(&self.target).map_err(r2d2::Error::ConnectionError)?;
        (self.setup)(&mut conn).map_err(r2d2::Error::QueryError)?;
        Ok(Managed {
            conn,
            broken: false,
        })
    }

    fn is_valid(&self, conn: &mut Managed<C>) -> std::result::Result<(), r2d2::Error> {
        conn.conn.ping().map_err(r2d2::Error::QueryError)
    }

    fn has_broken(&self, conn: &mut Managed<C>) -> bool {
        // A panic may have cut a transaction short: do not hand that connection out again.
        conn.broken || std::thread::panicking() || conn.conn.is_broken()
    }
}

/// The pool of one store.
pub(crate) enum Pool {
    Postgres(r2d2::Pool<Manager<PgConnection>>),
    Sqlite(r2d2::Pool<Manager<SqliteConnection>>),
    #[cfg(feature = "mysql")]
    Mysql(r2d2::Pool<Manager<MysqlConnection>>),
}

impl Pool {
    /// Connect once (so an unreachable database fails now, with the driver's reason),
    /// apply the migrations when asked, and build the pool.
    pub(crate) fn open(
        url: &DatabaseUrl,
        options: &PoolOptions,
        migrate: bool,
    ) -> Result<(Pool, Vec<String>)> {
        match url.backend {
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
                    Box::new(|conn| {
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
                    Box::new(|conn| conn.batch_execute("SET enable_seqscan = off"))
                };
                let manager = Manager::<PgConnection> {
                    target: url.target.clone(),
                    setup,
                };
                let applied = first_connection(&manager, url, migrate)?;
                Ok((
                    Pool::Postgres(build(manager, options, options.max_size)),
                    applied,
                ))
            }
            Backend::Sqlite => {
                let busy_ms = options.busy_timeout.as_millis().min(i32::MAX as u128);
                let in_memory = url.in_memory;
                let manager = Manager::<SqliteConnection> {
                    target: url.target.clone(),
                    setup: Box::new(move |conn| {
                        // busy_timeout first: switching to WAL needs a lock another
                        // process may hold for a moment.
                        conn.batch_execute(&format!("PRAGMA busy_timeout = {busy_ms};"))?;
                        if !in_memory {
                            conn.batch_execute(
                                "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;",
                            )?;
                        }
                        Ok(())
                    }),
                };
                let applied = first_connection(&manager, url, migrate)?;
                // `:memory:` is one database per connection: keep exactly one.
                let size = if in_memory { 1 } else { options.max_size };
                let pool = build(manager, options, size);
                if in_memory {
                    // The migrated connection above is gone with its database; the
                    // pool's only connection must carry the table itself.
                    let mut conn = pool
                        .get()
                        .map_err(|e| connection_error(url, &e.to_string()))?;
                    conn.conn
                        .migrate()
                        .map_err(|e| migration_error(url, &e.to_string()))?;
                }
                Ok((Pool::Sqlite(pool), applied))
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
                    setup: Box::new(|conn| {
                        conn.batch_execute(
                            "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED; \
                             SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_ENGINE_SUBSTITUTION'",
                        )
                    }),
                };
                let applied = first_connection(&manager, url, migrate)?;
                Ok((
                    Pool::Mysql(build(manager, options, options.max_size)),
                    applied,
                ))
            }
            // DatabaseUrl::parse already refuses mysql:// in such a build.
            #[cfg(not(feature = "mysql"))]
            Backend::Mysql => Err(Error::InvalidUrl {
                url: url.masked.clone(),
                reason:
                    "this build of lockmgr has no MySQL support: enable its `mysql` cargo feature"
                        .to_string(),
            }),
        }
    }

    /// Run `f` on a pooled connection.
    pub(crate) fn with_conn<R>(
        &self,
        url: &DatabaseUrl,
        f: impl FnOnce(&mut dyn LockConn) -> Result<R>,
    ) -> Result<R> {
        match self {
            Pool::Postgres(pool) => run_on(pool, url, f),
            Pool::Sqlite(pool) => run_on(pool, url, f),
            #[cfg(feature = "mysql")]
            Pool::Mysql(pool) => run_on(pool, url, f),
        }
    }
}

fn run_on<C, R>(
    pool: &r2d2::Pool<Manager<C>>,
    url: &DatabaseUrl,
    f: impl FnOnce(&mut dyn LockConn) -> Result<R>,
) -> Result<R>
where
    C: Connection + R2D2Connection + LockConn + Send + 'static,
{
    let mut conn = pool
        .get()
        .map_err(|e| connection_error(url, &e.to_string()))?;
    let result = f(&mut conn.conn);
    if let Err(Error::Database(err)) = &result {
        if link_is_gone(err) {
            conn.broken = true;
        }
    }
    result
}

/// PostgreSQL without a `pgbouncer` parameter: find out whether a pooler is in
/// between (see [`crate::pooler`]) and, if one is, behave as with `?pgbouncer=true`,
/// with a warning that says how to make the choice explicit.
pub(crate) fn resolve_pooler(url: &mut DatabaseUrl) -> Result<()> {
    if url.backend != Backend::Postgres || url.pgbouncer.is_some() {
        return Ok(());
    }
    let pooled =
        crate::pooler::pooler_in_between(&url.target).map_err(|e| connection_error(url, &e))?;
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
    conn.conn
        .migrate()
        .map_err(|e| migration_error(url, &e.to_string()))
}

fn build<C>(manager: Manager<C>, options: &PoolOptions, size: u32) -> r2d2::Pool<Manager<C>>
where
    C: Connection + R2D2Connection + Send + 'static,
{
    r2d2::Pool::builder()
        .max_size(size.max(1))
        .min_idle(Some(0))
        .test_on_check_out(false)
        .connection_timeout(options.connection_timeout)
        .error_handler(Box::new(r2d2::NopErrorHandler))
        .build_unchecked(manager)
}

pub(crate) fn connection_error(url: &DatabaseUrl, message: &str) -> Error {
    Error::Connection {
        url: url.masked.clone(),
        message: one_line(&url.scrub(message)),
    }
}

pub(crate) fn migration_error(url: &DatabaseUrl, message: &str) -> Error {
    Error::Migration {
        url: url.masked.clone(),
        message: one_line(&url.scrub(message)),
    }
}

/// Driver messages often span lines; errors are shown on one.
fn one_line(message: &str) -> String {
    message.split_whitespace().collect::<Vec<_>>().join(" ")
}
