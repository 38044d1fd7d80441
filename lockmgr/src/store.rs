//! [`LockStore`]: the lock operations over one database.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::backend::{
    self, expiry_micros, link_lost, AcquireRequest, Checkout, Pool, PoolOptions, ReleaseRequest,
    RenewRequest, Session, TableName,
};
use crate::database_url::{
    Backend, DatabaseUrl, DATABASE_URL, DEFAULT_SQLITE_PATH, LOCKMGR_DATABASE_URL,
    LOCKMGR_LISTEN_URL,
};
use crate::error::{DbResult, Error, Result};
use crate::events;
use crate::housekeeping::{clean_batches, Cleaner, ClockOffset};
use crate::model::{Lock, LockRow};
use crate::name::validate_name;
use crate::options::{RenewOptions, SetLockOptions};
use crate::set_lock::{SetLockAction, SetLockReport, SetLockStatus};
use crate::wakeup::{Ticket, WakeBoard};

/// A handle on the locks of one database: cheap to clone, safe to share between
/// threads (`Clone + Send + Sync`), backed by a connection pool.
///
/// The table is created on first use. Every expiry decision is made by the database's
/// clock inside the statement that acts on it (PostgreSQL: the server's `now()`;
/// MySQL: the server's `UTC_TIMESTAMP(6)`; SQLite: the clock of the process running
/// the statement, as SQLite has no server).
///
/// ```
/// use std::time::Duration;
/// use lockmgr::LockStore;
///
/// # fn main() -> lockmgr::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let path = dir.path().join("locks.sqlite3");
/// let store = LockStore::open(path.to_str().unwrap())?; // or "postgres://…"
/// let lock = store.get_lock("job:42", Some(Duration::from_secs(60)))?;
/// assert!(store.is_locked("job:42")?);
/// assert!(store.get_lock("job:42", None).unwrap_err().is_locked());
/// assert!(store.unlock(&lock)?);
/// assert!(!store.is_locked("job:42")?);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct LockStore {
    inner: Arc<Inner>,
}

// A panic cannot leave a store half-updated: the pool is internally synchronized and
// drops any connection handed back during a panic. So a store may cross
// `catch_unwind`, as the guard tests do.
impl std::panic::UnwindSafe for LockStore {}
impl std::panic::RefUnwindSafe for LockStore {}

struct Inner {
    url: DatabaseUrl,
    /// The lock table.
    table: TableName,
    pool: Pool,
    options: PoolOptions,
    locked_by: String,
    /// Wakes this process's waiters on release; shared by every store of the database.
    board: Arc<WakeBoard>,
    /// The longest sleep of a waiter between tries.
    poll_cap: Duration,
    /// The database clock's offset from this host's, for `once_per` ticks.
    clock: ClockOffset,
    /// When expired rows are next removed in the background.
    cleaner: Cleaner,
    /// PostgreSQL: where the release listener connects (`LISTEN` needs a session of
    /// its own); `None`: no listener, waiters poll.
    listen_target: Option<String>,
}

impl fmt::Debug for LockStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockStore")
            .field("url", &self.inner.url.masked)
            .field("backend", &self.inner.url.backend)
            .finish_non_exhaustive()
    }
}

/// What to release or renew: a [`Lock`] you acquired (owner-checked: only while the row
/// still belongs to that acquisition) or a bare name (whoever holds it: for admins).
#[derive(Debug, Clone, Copy)]
pub enum LockRef<'a> {
    /// Any holder of this name.
    Name(&'a str),
    /// Only this acquisition.
    Lock(&'a Lock),
}

impl<'a> LockRef<'a> {
    /// The lock name referred to.
    pub fn name(&self) -> &'a str {
        match self {
            LockRef::Name(name) => name,
            LockRef::Lock(lock) => &lock.name,
        }
    }

    fn owner(&self) -> Option<&'a str> {
        match self {
            LockRef::Name(_) => None,
            LockRef::Lock(lock) => Some(&lock.owner),
        }
    }
}

impl<'a> From<&'a str> for LockRef<'a> {
    fn from(name: &'a str) -> Self {
        LockRef::Name(name)
    }
}

impl<'a> From<&'a String> for LockRef<'a> {
    fn from(name: &'a String) -> Self {
        LockRef::Name(name)
    }
}

impl<'a> From<&'a Lock> for LockRef<'a> {
    fn from(lock: &'a Lock) -> Self {
        LockRef::Lock(lock)
    }
}

/// Opens a [`LockStore`] with settings other than the defaults.
///
/// ```
/// use std::time::Duration;
/// # fn main() -> lockmgr::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let url = dir.path().join("locks.sqlite3").to_str().unwrap().to_string();
/// let store = lockmgr::LockStore::builder(&url)
///     .pool_size(4)
///     .connection_timeout(Duration::from_secs(2))
///     .locked_by("worker-7")
///     .open()?;
/// assert_eq!(store.get_lock("a", None)?.locked_by, "worker-7");
/// # Ok(()) }
/// ```
#[derive(Clone)]
#[must_use = "a builder does nothing until .open() is called"]
pub struct LockStoreBuilder {
    url: String,
    options: PoolOptions,
    locked_by: Option<String>,
    migrate: bool,
    poll_cap: Option<Duration>,
    auto_clean: Option<Duration>,
    listen_url: Option<String>,
    table: Option<String>,
}

impl fmt::Debug for LockStoreBuilder {
    // The URL may carry a password: show it masked.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockStoreBuilder")
            .field("url", &crate::mask_password(&self.url))
            .field("options", &self.options)
            .field("locked_by", &self.locked_by)
            .field("migrate", &self.migrate)
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl LockStoreBuilder {
    /// Most connections the pool keeps open (default 10; always 1 for `sqlite::memory:`).
    pub fn pool_size(mut self, size: u32) -> Self {
        self.options.max_size = size.max(1);
        self
    }

    /// How long an operation waits for a pooled connection (or a new one) before it
    /// fails (default 5 s).
    pub fn connection_timeout(mut self, timeout: Duration) -> Self {
        self.options.connection_timeout = timeout;
        self
    }

    /// SQLite only: how long a writer waits for another process's write to finish
    /// (`PRAGMA busy_timeout`, default 30 s).
    pub fn busy_timeout(mut self, timeout: Duration) -> Self {
        self.options.busy_timeout = timeout;
        self
    }

    /// SQLite only, for tests: `PRAGMA max_page_count` on every connection, so that a
    /// write needing more pages fails as on a full disk.
    #[doc(hidden)]
    pub fn sqlite_max_page_count(mut self, pages: u32) -> Self {
        self.options.sqlite_max_page_count = Some(pages);
        self
    }

    /// PostgreSQL and MySQL: how long establishing a new connection may take before
    /// it fails (default [`DEFAULT_CONNECT_TIMEOUT`](crate::DEFAULT_CONNECT_TIMEOUT),
    /// 5 s). On PostgreSQL this is libpq's `connect_timeout` (whole seconds, at least
    /// 2), unless the URL sets `connect_timeout` itself.
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.options.connect_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// PostgreSQL and MySQL: how long one call on a connection (a statement, or the
    /// few statements of one operation) may wait for the server's answer (default
    /// [`DEFAULT_STATEMENT_TIMEOUT`](crate::DEFAULT_STATEMENT_TIMEOUT), 10 s). A call
    /// still waiting then has its connection closed under it and fails with
    /// [`Error::Timeout`]: this bounds every call even when the network silently
    /// drops everything (see the README, "Deploying"). The bound is kept on the
    /// client, so it works behind PgBouncer too. It also bounds migrations.
    pub fn statement_timeout(mut self, timeout: Duration) -> Self {
        self.options.statement_timeout = timeout.max(Duration::from_millis(1));
        self
    }

    /// The `locked_by` written on locks taken through this store (default: the host name).
    pub fn locked_by(mut self, locked_by: impl Into<String>) -> Self {
        self.locked_by = Some(locked_by.into());
        self
    }

    /// Whether opening applies the embedded migrations (default `true`). Turn it off
    /// when the table is managed elsewhere or the role may not create tables.
    pub fn migrate(mut self, migrate: bool) -> Self {
        self.migrate = migrate;
        self
    }

    /// The longest sleep of a waiter between two tries (default: 30 ms on SQLite and
    /// MySQL, where polling is how a waiter learns of a release in another process;
    /// 250 ms on PostgreSQL, where releases are announced with `NOTIFY` and polling is
    /// only the fallback; 50 ms on PostgreSQL behind a transaction pooler without a
    /// [`listen_url`](LockStoreBuilder::listen_url), where nothing is announced).
    /// Waiters also wake early on a release in this process and when the holder's lock
    /// expires.
    pub fn max_poll_interval(mut self, interval: Duration) -> Self {
        self.poll_cap = Some(interval.max(Duration::from_millis(1)));
        self
    }

    /// How often, at most, the store removes expired rows in the background while it is
    /// used (default [`DEFAULT_AUTO_CLEAN`], 30 s; `None`: never, as before
    /// [`LockStore::clean_locks`] was the only way). The removal runs on a short-lived
    /// thread of its own, in batches of at most 500 rows, by the database clock, so an
    /// acquisition never waits for it.
    pub fn auto_clean(mut self, every: Option<Duration>) -> Self {
        self.auto_clean = every.filter(|d| !d.is_zero());
        self
    }

    /// PostgreSQL: a URL on which waiters `LISTEN` for releases announced by other
    /// processes, instead of the store's own URL. `LISTEN` needs a server session of
    /// its own, which a transaction pooler (`?pgbouncer=true`) does not give: point
    /// this at the server itself (or at a session-pooling port) to keep prompt
    /// wake-ups behind such a pooler. It holds one connection per process, only while
    /// someone in the process waits (closed after 30 s without waiters).
    ///
    /// Without it, a store behind a transaction pooler starts no listener and its
    /// waiters poll (at most [`max_poll_interval`](LockStoreBuilder::max_poll_interval)
    /// apart, 50 ms by default); a store on a direct URL listens on that URL.
    /// [`LockStore::from_env`] takes it from `LOCKMGR_LISTEN_URL`. Ignored by the other
    /// backends.
    ///
    /// ```no_run
    /// # fn main() -> lockmgr::Result<()> {
    /// let store = lockmgr::LockStore::builder("postgres://app:pw@pgbouncer:6432/app?pgbouncer=true")
    ///     .listen_url("postgres://app:pw@db-primary:5432/app")
    ///     .open()?;
    /// # Ok(()) }
    /// ```
    pub fn listen_url(mut self, url: impl Into<String>) -> Self {
        self.listen_url = Some(url.into());
        self
    }

    /// The table that holds the locks (default [`DEFAULT_TABLE`](crate::DEFAULT_TABLE),
    /// `lockmgr_lock`): a plain identifier — lowercase ASCII letters, digits and `_`,
    /// not starting with a digit, at most 48 bytes — optionally qualified as
    /// `schema.table`. Anything else makes [`open`](LockStoreBuilder::open) fail with
    /// [`Error::InvalidTable`].
    ///
    /// Give lockmgr a table of its own when the database already has a table of the
    /// default name that is not lockmgr's (django-lockmgr's `lockmgr_lock`; opening
    /// then fails with [`Error::TableConflict`]), or to keep several independent sets
    /// of locks in one database. The names lockmgr's migration creates next to the
    /// table derive from it: `<table>_fence_seq` (PostgreSQL), `<table>_fence`
    /// (SQLite and MySQL), `<table>_migrations` (the ledger of its migrations), and
    /// the PostgreSQL `NOTIFY` channel `<table>_release`. Every process using the
    /// locks must name the same table.
    ///
    /// ```
    /// # fn main() -> lockmgr::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let url = dir.path().join("app.sqlite3").to_str().unwrap().to_string();
    /// let store = lockmgr::LockStore::builder(&url).table("job_locks").open()?;
    /// assert_eq!(store.table(), "job_locks");
    /// assert!(lockmgr::LockStore::builder(&url).table("job-locks").open().is_err());
    /// # Ok(()) }
    /// ```
    pub fn table(mut self, name: impl Into<String>) -> Self {
        self.table = Some(name.into());
        self
    }

    /// The SQL that creates this store's table (and the ledger of its migrations,
    /// recorded as applied) on an empty database of the URL's backend, without
    /// connecting: for an application that keeps the lock table in its own
    /// migrations, then opens the store with [`migrate(false)`](LockStoreBuilder::migrate)
    /// (or not: a store finds nothing to migrate there). `lockmgr migrate --print`
    /// prints it.
    ///
    /// ```
    /// let sql = lockmgr::LockStore::builder("postgres://app@db/app")
    ///     .table("ops.locks")
    ///     .migration_sql()?;
    /// assert!(sql.contains("CREATE TABLE \"ops\".\"locks\""));
    /// # Ok::<(), lockmgr::Error>(())
    /// ```
    pub fn migration_sql(&self) -> Result<String> {
        let url = DatabaseUrl::parse(&self.url)?;
        Ok(backend::migration_script(url.backend, &self.table_name()?))
    }

    /// The table name, checked.
    fn table_name(&self) -> Result<TableName> {
        match &self.table {
            None => Ok(TableName::default()),
            Some(name) => TableName::parse(name).map_err(|reason| Error::InvalidTable {
                name: name.clone(),
                reason,
            }),
        }
    }

    /// Connect (failing now if the database cannot be reached), create or upgrade the
    /// table, and return the store.
    pub fn open(self) -> Result<LockStore> {
        let table = self.table_name()?;
        let mut url = DatabaseUrl::parse(&self.url)?;
        backend::resolve_pooler(&mut url, &self.options)?;
        // The listener's connection is bounded like the store's own (connect timeout,
        // TCP keepalives); it blocks nobody, but must not hang forever either.
        let listen_target =
            backend::listen_target(&url, self.listen_url.as_deref(), &self.options)?;
        let (pool, applied) = Pool::open(&url, &self.options, &table, self.migrate)?;
        if !applied.is_empty() {
            tracing::info!(url = %url.masked, ?applied, "lockmgr: applied migrations");
        }
        let locked_by = self.locked_by.unwrap_or_else(default_locked_by);
        // Lock names are per table: so are wake-ups.
        let board = WakeBoard::for_database(&format!("{}:{}:{table}", url.backend, url.target));
        let poll_cap = self
            .poll_cap
            .unwrap_or_else(|| backend::default_poll_cap(url.backend, listen_target.is_some()));
        if url.pooled() && listen_target.is_none() {
            tracing::info!(
                url = %url.masked,
                ?poll_cap,
                "lockmgr: behind a transaction pooler without a listen URL: waiters poll"
            );
        }
        Ok(LockStore {
            inner: Arc::new(Inner {
                url,
                table,
                pool,
                options: self.options,
                locked_by,
                board,
                poll_cap,
                clock: ClockOffset::default(),
                cleaner: Cleaner::new(self.auto_clean),
                listen_target,
            }),
        })
    }
}

/// How often, at most, a store in use removes expired rows by default: every 30 s, so
/// that an expired row is gone within about a minute; see
/// [`LockStoreBuilder::auto_clean`].
pub const DEFAULT_AUTO_CLEAN: Duration = Duration::from_secs(30);

/// The host name, which is what `locked_by` says unless told otherwise.
pub(crate) fn default_locked_by() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// A fresh random owner token for one acquisition.
fn new_owner_token() -> Result<String> {
    let mut bytes = [0u8; 16];
    getrandom::fill(&mut bytes).map_err(|err| Error::Runtime {
        message: format!("no random numbers for an owner token: {err}"),
    })?;
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut token = String::with_capacity(2 * bytes.len());
    for byte in bytes {
        token.push(char::from(HEX[usize::from(byte >> 4)]));
        token.push(char::from(HEX[usize::from(byte & 0xf)]));
    }
    Ok(token)
}

/// Who takes a lock and for how long; see [`LockStore::acquire_once`].
pub(crate) struct AcquireSpec<'a> {
    pub(crate) name: &'a str,
    pub(crate) expires: Option<Duration>,
    pub(crate) locked_by: Option<&'a str>,
    pub(crate) lock_process: Option<i64>,
    /// The caller will wait if the lock is held: flag the holder's row so that its
    /// release notifies (PostgreSQL).
    pub(crate) waiting: bool,
    /// The attempt must be over by then (the end of a wait, plus a little).
    pub(crate) until: Option<Instant>,
}

impl LockStore {
    /// Open the store at `url` with default settings: `postgres://…` /
    /// `postgresql://…` for PostgreSQL; `mysql://…` for MySQL or MariaDB (with the
    /// `mysql` feature); `sqlite://PATH`, `sqlite::memory:` or a plain file path for
    /// SQLite. Creates the lock table if it is missing.
    pub fn open(url: &str) -> Result<LockStore> {
        LockStore::builder(url).open()
    }

    /// Settings beyond the defaults; see [`LockStoreBuilder`].
    pub fn builder(url: &str) -> LockStoreBuilder {
        LockStoreBuilder {
            url: url.to_string(),
            options: PoolOptions::default(),
            locked_by: None,
            migrate: true,
            poll_cap: None,
            auto_clean: Some(DEFAULT_AUTO_CLEAN),
            listen_url: None,
            table: None,
        }
    }

    /// Open the store named by the environment: `LOCKMGR_DATABASE_URL`, else
    /// `DATABASE_URL`, else the SQLite file `lockmgr.sqlite3` in the current directory.
    ///
    /// That last fallback is logged (a `warn`, once per process, naming the file's
    /// absolute path): a deployment that forgot to set the URL gets locks private to
    /// one directory of one host, which is worth a word. `LOCKMGR_LISTEN_URL`, when
    /// set, is its [`listen_url`](LockStoreBuilder::listen_url).
    pub fn from_env() -> Result<LockStore> {
        let url = url_from_env().unwrap_or_else(|| {
            warn_default_sqlite_once();
            DEFAULT_SQLITE_PATH.to_string()
        });
        let mut builder = LockStore::builder(&url);
        if let Some(listen) = std::env::var(LOCKMGR_LISTEN_URL)
            .ok()
            .filter(|v| !v.trim().is_empty())
        {
            builder = builder.listen_url(listen);
        }
        builder.open()
    }

    /// Which database this store uses.
    pub fn backend(&self) -> Backend {
        self.inner.url.backend
    }

    /// Whether this store goes through a transaction pooler: PostgreSQL with
    /// `?pgbouncer=true`, or with a pooler found at open when the URL did not say
    /// (`?pgbouncer=false` says there is none to worry about). Such a store sends only
    /// unnamed statements, sets nothing on the server session, and listens for
    /// releases only on its [`listen_url`](LockStoreBuilder::listen_url).
    pub fn through_pooler(&self) -> bool {
        self.inner.url.pooled()
    }

    /// The store's URL with any password masked.
    pub fn url(&self) -> &str {
        &self.inner.url.masked
    }

    /// Where the locks live, as shown to people: the absolute path of a SQLite file
    /// (or the URI or `:memory:` it was opened as), else the URL with any password
    /// masked.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let path = dir.path().join("locks.sqlite3");
    /// let store = lockmgr::LockStore::open(path.to_str().unwrap())?;
    /// assert_eq!(store.location(), path.display().to_string());
    /// # Ok::<(), lockmgr::Error>(())
    /// ```
    pub fn location(&self) -> String {
        let url = &self.inner.url;
        if url.backend == Backend::Sqlite && !url.in_memory && !url.target.starts_with("file:") {
            absolute_sqlite_path(&url.target)
        } else {
            url.masked.clone()
        }
    }

    /// The table holding the locks (`schema.table` when qualified); see
    /// [`LockStoreBuilder::table`].
    pub fn table(&self) -> String {
        self.inner.table.to_string()
    }

    /// The `locked_by` this store writes on the locks it takes.
    pub fn locked_by(&self) -> &str {
        &self.inner.locked_by
    }

    /// Apply the embedded migrations now; the versions applied (empty when the table
    /// was up to date).
    pub fn migrate(&self) -> Result<Vec<String>> {
        let url = &self.inner.url;
        self.with_conn(|conn| {
            conn.migrate(&self.inner.table)
                .map_err(|e| backend::migration_error(url, e))
        })
    }

    /// Take the lock `name` for `expires` (`None` or zero: never expires), or fail at
    /// once with [`Error::Locked`] when someone else holds it. An expired lock is taken
    /// over. One statement on the database in the common case (two on MySQL: the
    /// write, then a read of the row, as MySQL has no `RETURNING`).
    pub fn get_lock(&self, name: &str, expires: Option<Duration>) -> Result<Lock> {
        let outcome = self.acquire_once(&AcquireSpec {
            name,
            expires,
            locked_by: None,
            lock_process: Some(i64::from(std::process::id())),
            waiting: false,
            until: None,
        })?;
        match outcome {
            Ok(lock) => {
                events::acquired(&lock, 1, Duration::ZERO);
                Ok(lock)
            }
            Err(holder) => {
                events::not_acquired(&holder, 1, Duration::ZERO);
                Err(holder.locked_error())
            }
        }
    }

    /// Release a lock. By [`Lock`]: only if the row still belongs to that acquisition;
    /// by name: whoever holds it. Whether a row went away; releasing twice is fine.
    pub fn unlock<'a>(&self, target: impl Into<LockRef<'a>>) -> Result<bool> {
        let target = target.into();
        let lock = match target {
            LockRef::Lock(lock) => Some(lock),
            LockRef::Name(_) => None,
        };
        self.release(
            &ReleaseRequest {
                name: target.name(),
                owner: target.owner(),
                min_hold_us: None,
            },
            lock,
        )
    }

    /// Release one acquisition, keeping its row until `min_hold` after it was taken
    /// if that has not passed yet (see [`LockMgr::hold_at_least`]).
    pub(crate) fn release_held(&self, lock: &Lock, min_hold: Option<Duration>) -> Result<bool> {
        self.release(
            &ReleaseRequest {
                name: &lock.name,
                owner: Some(&lock.owner),
                min_hold_us: expiry_micros(min_hold),
            },
            Some(lock),
        )
    }

    /// Run one release; `lock`: the acquisition released, when owner-checked.
    fn release(&self, request: &ReleaseRequest<'_>, lock: Option<&Lock>) -> Result<bool> {
        validate_name(request.name)?;
        let released = events::failed(
            "release",
            request.name,
            self.with_conn_again(Again::release(), |conn| conn.release(request).db()),
        )?;
        // Log before waking: a woken waiter's "acquired" must come after this release.
        events::released(request.name, lock, released);
        if released {
            self.inner.board.wake(request.name);
        }
        Ok(released)
    }

    /// Release `name` only if its lock has expired (a stale row); whether a row went away.
    pub fn unlock_if_expired(&self, name: &str) -> Result<bool> {
        validate_name(name)?;
        let released = self.with_conn(|conn| conn.release_if_expired(name).db())?;
        events::released(name, None, released);
        if released {
            self.inner.board.wake(name);
        }
        Ok(released)
    }

    /// Release exactly these acquisitions (owner-checked, in one transaction): a lock
    /// taken or re-taken since `locks` was read is left alone. How many went.
    ///
    /// This is how to delete "what was listed": read [`list_locks`](LockStore::list_locks),
    /// show it, then pass the same list here.
    pub fn unlock_all(&self, locks: &[Lock]) -> Result<usize> {
        let mut released = Vec::new();
        self.with_conn(|conn| {
            conn.in_transaction(&mut |conn| {
                released.clear();
                for lock in locks {
                    let request = ReleaseRequest {
                        name: &lock.name,
                        owner: Some(&lock.owner),
                        min_hold_us: None,
                    };
                    if conn.release(&request).db()? {
                        released.push(lock.name.as_str());
                    }
                }
                Ok(())
            })
        })?;
        for name in &released {
            self.inner.board.wake(name);
            events::released(name, locks.iter().find(|l| l.name == *name), true);
        }
        Ok(released.len())
    }

    /// Whether `name` is held (by anyone) and has not expired.
    pub fn is_locked(&self, name: &str) -> Result<bool> {
        validate_name(name)?;
        self.with_conn(|conn| conn.is_locked(name).db())
    }

    /// The lock `name` if it is held and has not expired.
    pub fn find_lock(&self, name: &str) -> Result<Option<Lock>> {
        validate_name(name)?;
        let row = self.with_conn(|conn| conn.find(name, false).db())?;
        Ok(row
            .filter(|row| !row_expired(row))
            .map(|row| Lock::from_row(row, Instant::now())))
    }

    /// Every live (unexpired) lock, by name.
    pub fn list_locks(&self) -> Result<Vec<Lock>> {
        let rows = self.with_conn(|conn| conn.list_live().db())?;
        let now = Instant::now();
        Ok(rows
            .into_iter()
            .map(|row| Lock::from_row(row, now))
            .collect())
    }

    /// Delete every expired lock; how many went. Locks that never expire stay.
    pub fn clean_locks(&self) -> Result<usize> {
        let cleaned = self.with_conn(|conn| conn.clean_expired().db())?;
        if cleaned > 0 {
            self.inner.board.wake_all();
        }
        Ok(cleaned)
    }

    /// Delete every lock, live or not; how many went.
    pub fn reset_locks(&self) -> Result<usize> {
        let deleted = self.with_conn(|conn| conn.delete_all().db())?;
        if deleted > 0 {
            self.inner.board.wake_all();
        }
        Ok(deleted)
    }

    /// Extend a lock, as django-lockmgr's `renew_lock`; [`RenewOptions`] says how
    /// (to now + expires, or added; re-taken if gone, or not).
    ///
    /// By [`Lock`], only that acquisition's row is renewed; by name, whoever holds it.
    /// When there is nothing to renew and the options do not
    /// [create](RenewOptions::create): [`Error::LockNotFound`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use lockmgr::RenewOptions;
    /// # fn main() -> lockmgr::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = lockmgr::LockStore::open(dir.path().join("l.sqlite3").to_str().unwrap())?;
    /// let lock = store.get_lock("sync", Some(Duration::from_secs(20)))?;
    /// let lock = store.renew_lock(&lock, RenewOptions::new(Some(Duration::from_secs(60))))?;
    /// assert!(lock.expires_seconds().unwrap() >= 50);
    /// let lock = store.renew_lock(&lock, RenewOptions::new(Some(Duration::from_secs(60))).add_time())?;
    /// assert!(lock.expires_seconds().unwrap() >= 110);
    /// # Ok(()) }
    /// ```
    pub fn renew_lock<'a>(
        &self,
        lock: impl Into<LockRef<'a>>,
        options: RenewOptions,
    ) -> Result<Lock> {
        let target = lock.into();
        let name = target.name();
        validate_name(name)?;
        let request = RenewRequest {
            name,
            owner: target.owner(),
            expires_us: expiry_micros(options.expires()),
            add_time: options.adds_time(),
        };
        // Adding time is not idempotent: a renewal that timed out may have been
        // applied, so only one that never reached the server is tried again.
        let renewed = self.with_conn_again(Again::renewal(options.adds_time()), |conn| {
            let sent = Instant::now();
            Ok(conn.renew(&request).db()?.map(|row| (row, sent)))
        });
        match events::failed("renew", name, renewed)? {
            Some((row, sent)) => {
                let lock = Lock::from_row(row, Instant::now()).sent_at(sent);
                events::renewed(&lock);
                Ok(lock)
            }
            None if options.creates() => self.get_lock(name, options.expires()),
            None => Err(Error::LockNotFound {
                name: name.to_string(),
            }),
        }
    }

    /// Create or renew many locks in one transaction, as django-lockmgr's `set_lock`
    /// command; [`SetLockOptions`] says what happens to free and held names, and
    /// whether a held one aborts the call (all or nothing, [`Error::LockFail`] naming
    /// it). Duplicate names count once.
    ///
    /// ```
    /// use std::time::Duration;
    /// use lockmgr::SetLockOptions;
    /// # fn main() -> lockmgr::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = lockmgr::LockStore::open(dir.path().join("l.sqlite3").to_str().unwrap())?;
    /// store.get_lock("b", None)?;
    /// let report = store.set_lock(["a", "b"], SetLockOptions::new(Some(Duration::from_secs(60))))?;
    /// assert_eq!((report.created, report.renewed), (1, 1));
    ///
    /// let err = store.set_lock(["c", "b"], SetLockOptions::new(None).fail()).unwrap_err();
    /// assert!(matches!(err, lockmgr::Error::LockFail { ref name, .. } if name == "b"));
    /// assert!(!store.is_locked("c")?); // nothing of the failed call was kept
    /// # Ok(()) }
    /// ```
    pub fn set_lock<I, S>(&self, names: I, options: SetLockOptions) -> Result<SetLockReport>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut unique: Vec<String> = Vec::new();
        for name in names {
            let name = name.as_ref();
            validate_name(name)?;
            if !unique.iter().any(|n| n == name) {
                unique.push(name.to_string());
            }
        }
        // Rows are locked in name order, so two concurrent calls cannot deadlock.
        let mut order: Vec<usize> = (0..unique.len()).collect();
        order.sort_by(|&a, &b| unique[a].cmp(&unique[b]));

        let expires_us = expiry_micros(options.timeout());
        let locked_by = self.inner.locked_by.as_str();
        let pid = Some(i64::from(std::process::id()));
        let mut statuses: Vec<Option<SetLockStatus>> = Vec::new();
        self.with_conn(|conn| {
            conn.in_transaction(&mut |conn| {
                statuses = (0..unique.len()).map(|_| None).collect();
                for &index in &order {
                    let name = unique[index].as_str();
                    let status = set_one(conn, name, locked_by, pid, expires_us, &options)?;
                    statuses[index] = Some(status);
                }
                Ok(())
            })
        })?;
        let report = SetLockReport::from_statuses(statuses.into_iter().flatten().collect());
        for status in &report.statuses {
            match (status.action, &status.lock) {
                (SetLockAction::Create, Some(lock)) => events::acquired(lock, 1, Duration::ZERO),
                (SetLockAction::Extend, Some(lock)) => events::renewed(lock),
                _ => {}
            }
        }
        Ok(report)
    }

    /// One acquisition attempt: `Ok(Ok(lock))` when taken, `Ok(Err(holder))` when a live
    /// lock is in the way.
    pub(crate) fn acquire_once(
        &self,
        spec: &AcquireSpec<'_>,
    ) -> Result<std::result::Result<Lock, Lock>> {
        validate_name(spec.name)?;
        let owner = new_owner_token()?;
        let request = AcquireRequest {
            name: spec.name,
            owner: &owner,
            locked_by: spec.locked_by.unwrap_or(&self.inner.locked_by),
            lock_process: spec.lock_process,
            expires_us: expiry_micros(spec.expires),
        };
        // When the first statement of this acquisition was sent: its lease is counted
        // from then (a later try with the same owner token may find the row an
        // earlier one wrote).
        let mut first_sent: Option<Instant> = None;
        let outcome = self.with_conn_again(Again::acquisition(spec.until), |conn| {
            // The insert either takes the lock or finds a live row in its way; the
            // holder is read only on that losing path. If the holder is gone (or has
            // expired) by the time it is read, try again.
            for _ in 0..16 {
                first_sent.get_or_insert_with(Instant::now);
                if let Some(row) = conn.acquire(&request).db()? {
                    return Ok(Ok(row));
                }
                if let Some(row) = conn.find(spec.name, spec.waiting).db()? {
                    // Our own token: an earlier try of this acquisition took it, but
                    // its answer was lost with its connection.
                    if row.owner == owner {
                        return Ok(Ok(row));
                    }
                    if !row_expired(&row) {
                        return Ok(Err(row));
                    }
                }
            }
            Err(Error::Locked {
                name: spec.name.to_string(),
                locked_by: "(changing hands)".to_string(),
                lock_process: None,
                locked_until: None,
            })
        });
        if matches!(outcome, Err(Error::Timeout { .. })) {
            // The insert may have been applied without its answer arriving: do not
            // leave a row that nobody holds until it expires.
            self.release_abandoned(spec.name, &owner);
        }
        let outcome = events::failed("acquire", spec.name, outcome)?;
        if self.inner.cleaner.due() {
            self.clean_in_background();
        }
        // The callers log the outcome, with how many tries it took.
        let now = Instant::now();
        Ok(match outcome {
            Ok(row) => Ok(Lock::from_row(row, now).sent_at(first_sent.unwrap_or(now))),
            Err(row) => Err(Lock::from_row(row, now)),
        })
    }

    /// The longest sleep of a waiter between tries.
    pub(crate) fn poll_cap(&self) -> Duration {
        self.inner.poll_cap
    }

    /// Interest in the next release of `name`, taken before an acquisition attempt;
    /// on PostgreSQL this also makes sure the release listener runs, if it has one.
    pub(crate) fn wake_ticket(&self, name: &str) -> Ticket {
        if let Some(target) = &self.inner.listen_target {
            backend::spawn_listener(
                &self.inner.board,
                target.clone(),
                self.inner.table.channel(),
            );
        }
        self.inner.board.ticket(name)
    }

    /// The database clock now, estimated as this host's clock plus an offset measured
    /// with one query at most every 30 s (SQLite: this host's clock, which is the one its
    /// statements use). For `once_per` ticks.
    pub(crate) fn database_now_estimate(&self) -> Result<chrono::DateTime<chrono::Utc>> {
        if self.inner.url.backend == Backend::Sqlite {
            return Ok(chrono::Utc::now());
        }
        self.inner
            .clock
            .now(|| self.with_conn(|conn| conn.database_now().db()))
    }

    /// Remove expired rows in batches on the blocking pool, so that the acquisition
    /// that found the clean due does not wait for it.
    fn clean_in_background(&self) {
        let store = self.clone();
        crate::async_support::spawn_detached(move || {
            let cleaned = clean_batches(|limit| store.clean_batch(limit));
            store.inner.cleaner.finished();
            match cleaned {
                Ok(0) => {}
                Ok(rows) => tracing::debug!(rows, "lockmgr: removed expired locks"),
                Err(err) => {
                    tracing::debug!(error = %err, "lockmgr: removing expired locks failed");
                }
            }
        });
    }

    /// Delete up to `limit` expired rows; how many went. Waiters are woken when any did.
    fn clean_batch(&self, limit: i64) -> Result<usize> {
        let cleaned = self.with_conn(|conn| conn.clean_expired_batch(limit).db())?;
        if cleaned > 0 {
            self.inner.board.wake_all();
        }
        Ok(cleaned)
    }

    fn with_conn<R>(&self, f: impl FnOnce(&mut Session<'_>) -> Result<R>) -> Result<R> {
        let inner = &self.inner;
        inner
            .pool
            .with_conn(&inner.url, &inner.options, Checkout::Pooled(None), f)
    }

    /// Run `f` on a pooled connection; if the connection turns out to be gone (or
    /// did not answer in time, when `again` allows), run it again on new connections
    /// as `again` says, pausing between tries. `f` must be safe to run again.
    fn with_conn_again<R>(
        &self,
        again: Again,
        mut f: impl FnMut(&mut Session<'_>) -> Result<R>,
    ) -> Result<R> {
        let inner = &self.inner;
        // A connection that is gone, or did not answer when `timeouts` allows; when
        // retrying for a while, also a database that cannot be reached for now
        // (a restart).
        let retry = |err: &Error| match err {
            Error::Timeout { .. } => again.timeouts,
            Error::Connection { .. } => !again.budget.is_zero(),
            err => link_lost(err),
        };
        let from = Checkout::Pooled(again.until);
        let err = match inner
            .pool
            .with_conn(&inner.url, &inner.options, from, &mut f)
        {
            Err(err) if retry(&err) => err,
            done => return done,
        };
        events::retrying(again.op, &err);
        let started = Instant::now();
        let mut pause = Duration::ZERO;
        loop {
            std::thread::sleep(pause);
            let fresh = Checkout::Fresh;
            let result = inner
                .pool
                .with_conn(&inner.url, &inner.options, fresh, &mut f);
            pause = (pause * 2).clamp(RETRY_FIRST_PAUSE, RETRY_LONGEST_PAUSE);
            let next = Instant::now() + pause;
            let in_time = started.elapsed() + pause < again.budget
                && again.until.is_none_or(|until| next < until);
            match result {
                Err(err) if retry(&err) && in_time => {}
                done => return done,
            }
        }
    }

    /// In the background, release the acquisition `owner` of `name` whose answer was
    /// lost (it may or may not have been applied), retrying as a release does.
    fn release_abandoned(&self, name: &str, owner: &str) {
        let store = self.clone();
        let (name, owner) = (name.to_string(), owner.to_string());
        let named = name.clone();
        let spawned = std::thread::Builder::new()
            .name("lockmgr-release".into())
            .spawn(move || {
                let request = ReleaseRequest {
                    name: &name,
                    owner: Some(&owner),
                    min_hold_us: None,
                };
                let released =
                    store.with_conn_again(Again::release(), |conn| conn.release(&request).db());
                match released {
                    Ok(true) => {
                        events::released(&name, None, true);
                        store.inner.board.wake(&name);
                    }
                    Ok(false) => {}
                    Err(err) => events::abandoned_not_released(&name, &err),
                }
            });
        if let Err(err) = spawned {
            events::abandoned_not_released(&named, &err);
        }
    }
}

/// How long a release or renewal that meets a lost connection keeps trying new ones
/// (from its first failure). See the README, "Deploying".
pub(crate) const RETRY_BUDGET: Duration = Duration::from_secs(10);
/// The pause before the second retry; each later pause doubles, up to the longest.
const RETRY_FIRST_PAUSE: Duration = Duration::from_millis(100);
const RETRY_LONGEST_PAUSE: Duration = Duration::from_secs(1);

/// How a call that meets a lost connection is tried again on a new one.
#[derive(Debug, Clone, Copy)]
struct Again {
    /// What the call is, for the log.
    op: &'static str,
    /// The call must be over by then.
    until: Option<Instant>,
    /// How long to keep trying after the first failure; zero: once more, at once (the
    /// pooled connection was stale).
    budget: Duration,
    /// Whether a call that got no answer in time is tried again (only if running it
    /// twice does no harm).
    timeouts: bool,
}

impl Again {
    /// A release: idempotent (owner-checked, or by name), retried for a while.
    fn release() -> Again {
        Again {
            op: "release",
            until: None,
            budget: RETRY_BUDGET,
            timeouts: true,
        }
    }

    /// A renewal; one that adds time may have been applied when it timed out, so it
    /// is only retried after an error that says it never ran.
    fn renewal(add_time: bool) -> Again {
        Again {
            op: "renew",
            until: None,
            budget: RETRY_BUDGET,
            timeouts: !add_time,
        }
    }

    /// One acquisition attempt: once more at once on a new connection if the pooled
    /// one was stale (the same owner token, so a retry finds a row an earlier try
    /// wrote); a timeout is final (see `release_abandoned`).
    fn acquisition(until: Option<Instant>) -> Again {
        Again {
            op: "acquire",
            until,
            budget: Duration::ZERO,
            timeouts: false,
        }
    }
}

/// The database URL the environment names: [`LOCKMGR_DATABASE_URL`], else
/// [`DATABASE_URL`] (the first one set to something other than blanks); `None` when
/// neither is, and [`LockStore::from_env`] falls back to [`DEFAULT_SQLITE_PATH`].
///
/// ```
/// // With neither variable set:
/// # std::env::remove_var(lockmgr::LOCKMGR_DATABASE_URL);
/// # std::env::remove_var(lockmgr::DATABASE_URL);
/// assert_eq!(lockmgr::url_from_env(), None);
/// ```
pub fn url_from_env() -> Option<String> {
    [LOCKMGR_DATABASE_URL, DATABASE_URL]
        .iter()
        .filter_map(|key| std::env::var(key).ok())
        .find(|value| !value.trim().is_empty())
}

/// The absolute path of the SQLite file a relative `path` names from here.
pub fn absolute_sqlite_path(path: &str) -> String {
    std::path::absolute(path)
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| path.to_string())
}

/// Say once per process that no URL was set and which file is used instead.
fn warn_default_sqlite_once() {
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        tracing::warn!(
            path = %absolute_sqlite_path(DEFAULT_SQLITE_PATH),
            "lockmgr: no database URL set ({LOCKMGR_DATABASE_URL}, {DATABASE_URL}); \
             using a SQLite file in the current directory, private to this host"
        );
    });
}

fn row_expired(row: &LockRow) -> bool {
    row.locked_until.is_some_and(|until| until <= row.db_now)
}

/// One name of a `set_lock` call, inside its transaction.
fn set_one(
    conn: &mut Session<'_>,
    name: &str,
    locked_by: &str,
    lock_process: Option<i64>,
    expires_us: Option<i64>,
    options: &SetLockOptions,
) -> Result<SetLockStatus> {
    let (fail, renew, create) = (options.fails(), options.renews(), options.creates());
    let owner = new_owner_token()?;
    let now = Instant::now();
    loop {
        if create {
            let request = AcquireRequest {
                name,
                owner: &owner,
                locked_by,
                lock_process,
                expires_us,
            };
            if let Some(row) = conn.acquire(&request).db()? {
                return Ok(SetLockStatus::new(
                    name,
                    false,
                    SetLockAction::Create,
                    Some(Lock::from_row(row, now)),
                ));
            }
        }
        let existing = conn.find(name, false).db()?.filter(|row| !row_expired(row));
        let Some(existing) = existing else {
            if create {
                continue; // the holder let go between the two statements: take it
            }
            return Ok(SetLockStatus::new(name, false, SetLockAction::Skip, None));
        };
        if fail {
            return Err(Error::LockFail {
                name: existing.name,
                locked_by: existing.locked_by,
                locked_until: existing.locked_until,
            });
        }
        if !renew {
            let lock = Lock::from_row(existing, now);
            return Ok(SetLockStatus::new(
                name,
                true,
                SetLockAction::Skip,
                Some(lock),
            ));
        }
        let request = RenewRequest {
            name,
            owner: None,
            expires_us,
            add_time: false,
        };
        if let Some(row) = conn.renew(&request).db()? {
            return Ok(SetLockStatus::new(
                name,
                true,
                SetLockAction::Extend,
                Some(Lock::from_row(row, now)),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_tokens_are_32_hex_digits_and_differ() {
        let (a, b) = (new_owner_token().unwrap(), new_owner_token().unwrap());
        for token in [&a, &b] {
            assert_eq!(token.len(), 32, "{token}");
            assert!(
                token
                    .bytes()
                    .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)),
                "{token}"
            );
        }
        assert_ne!(a, b);
    }
}
