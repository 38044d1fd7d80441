//! The one error type of the crate.

use std::fmt;

use chrono::{DateTime, Utc};

/// A `Result` whose error is [`enum@Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in lockmgr.
///
/// The lock outcomes a caller is expected to handle are [`Error::Locked`] (someone else
/// holds the lock), [`Error::LockNotFound`] (renewing a lock that is gone) and
/// [`Error::LockFail`] (`set_lock` with `fail` met an existing lock). The rest are
/// configuration and database failures.
///
/// No variant ever carries a database password: URLs are masked and connection
/// messages are scrubbed before they are stored here.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The lock is held by someone else (and has not expired).
    #[error("lock {name:?} is held by {locked_by}{} {}", pid_suffix(*.lock_process), until_text(.locked_until))]
    Locked {
        /// The lock that could not be had.
        name: String,
        /// Who holds it (`locked_by` of the holder's row).
        locked_by: String,
        /// The holder's process id, when it recorded one.
        lock_process: Option<i64>,
        /// When the holder's lock expires, by the database clock; `None`: never.
        locked_until: Option<DateTime<Utc>>,
    },

    /// Renewing a lock that does not exist (or, for a renewal by [`Lock`](crate::Lock),
    /// that is no longer ours).
    #[error("lock {name:?} was not found")]
    LockNotFound {
        /// The lock that was asked for.
        name: String,
    },

    /// `set_lock` with `fail` met a lock that already exists; nothing of that call was kept.
    #[error("lock {name:?} already exists (held by {locked_by} {}); nothing was changed", until_text(.locked_until))]
    LockFail {
        /// The first existing lock met.
        name: String,
        /// Who holds it.
        locked_by: String,
        /// When it expires; `None`: never.
        locked_until: Option<DateTime<Utc>>,
    },

    /// A lock name that is empty, longer than 255 bytes, or holds a NUL or control
    /// character. Raised before the database is touched.
    #[error("invalid lock name {name}: {reason}")]
    InvalidName {
        /// The offending name, quoted, escaped and cut to a readable length.
        name: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A database URL that cannot be used (malformed, or an unsupported scheme).
    #[error("invalid database URL {url}: {reason}")]
    InvalidUrl {
        /// The URL with any password masked.
        url: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A lock table name that is not a plain identifier (lowercase letters, digits and
    /// `_`, not starting with a digit), optionally as `schema.table`; see
    /// [`LockStoreBuilder::table`](crate::LockStoreBuilder::table).
    #[error("invalid lock table name {name:?}: {reason}")]
    InvalidTable {
        /// The name as given.
        name: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The lock table's name is taken by a table lockmgr did not create, such as
    /// django-lockmgr's `lockmgr_lock`: lockmgr needs a table of its own, named with
    /// [`LockStoreBuilder::table`](crate::LockStoreBuilder::table) (the CLI's
    /// `--table`). Nothing was changed.
    #[error(
        "the table {table} at {url} is not lockmgr's: {reason}. Give lockmgr a table of its \
         own: LockStoreBuilder::table(\"…\") in code, --table NAME on the lockmgr command line"
    )]
    TableConflict {
        /// The URL with any password masked.
        url: String,
        /// The table name.
        table: String,
        /// What was found there.
        reason: String,
    },

    /// The database could not be reached or opened.
    #[error("cannot connect to {url}: {message}")]
    Connection {
        /// The URL with any password masked.
        url: String,
        /// The driver's message, with any password scrubbed.
        message: String,
    },

    /// Creating or upgrading the lock table failed.
    #[error("cannot migrate the lock table at {url}: {message}")]
    Migration {
        /// The URL with any password masked.
        url: String,
        /// What went wrong.
        message: String,
    },

    /// The async runtime or the operating system could not do what lockmgr needed: a
    /// tokio runtime shutting down during an acquisition, no random numbers for an
    /// owner token.
    #[error("{message}")]
    Runtime {
        /// What failed.
        message: String,
    },

    /// A statement failed in the database (or its connection did), or a write could
    /// not be committed (a full disk, say).
    #[error("database error: {0}")]
    Database(#[source] DatabaseError),

    /// A call to the database got no answer in time (the store's
    /// [`statement_timeout`](crate::LockStoreBuilder::statement_timeout), or less when
    /// a wait ran out first): the link may be silently broken, or the server stuck.
    /// The connection was closed. A write that timed out may still have been applied.
    #[error("no answer from {url} within {after:?}; the connection was closed")]
    Timeout {
        /// The URL with any password masked.
        url: String,
        /// How long the call was given.
        after: std::time::Duration,
    },
}

/// What the database or its driver said about a failed statement: one line of text,
/// with the driver's own error as [`source`](std::error::Error::source). Opaque on
/// purpose: which driver lockmgr uses is not part of its API.
pub struct DatabaseError {
    message: String,
    source: diesel::result::Error,
}

impl DatabaseError {
    /// The database's or driver's message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// The driver's error, for lockmgr's own decisions (retry, broken link).
    pub(crate) fn driver(&self) -> &diesel::result::Error {
        &self.source
    }

    /// The driver's error, owned (to hand back to the connection pool).
    pub(crate) fn into_driver(self) -> diesel::result::Error {
        self.source
    }
}

impl fmt::Display for DatabaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl fmt::Debug for DatabaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("DatabaseError").field(&self.message).finish()
    }
}

impl std::error::Error for DatabaseError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// Turn a driver's result into lockmgr's: `.db()` where `?` would need a public
/// `From<diesel::result::Error>` (which would make diesel part of the API).
pub(crate) trait DbResult<T> {
    /// The value, or the driver's error as [`Error::Database`].
    fn db(self) -> Result<T>;
}

impl<T> DbResult<T> for diesel::QueryResult<T> {
    fn db(self) -> Result<T> {
        self.map_err(Error::from_driver)
    }
}

/// An error inside a diesel transaction: the driver's (which makes diesel roll back
/// and is what its `transaction` needs to convert from) or lockmgr's own.
pub(crate) enum InTransaction {
    Driver(diesel::result::Error),
    Lock(Error),
}

impl From<diesel::result::Error> for InTransaction {
    fn from(err: diesel::result::Error) -> Self {
        InTransaction::Driver(err)
    }
}

impl From<Error> for InTransaction {
    fn from(err: Error) -> Self {
        InTransaction::Lock(err)
    }
}

impl From<InTransaction> for Error {
    fn from(err: InTransaction) -> Self {
        match err {
            InTransaction::Driver(err) => Error::from_driver(err),
            InTransaction::Lock(err) => err,
        }
    }
}

impl Error {
    /// Whether this is [`Error::Locked`]: somebody else holds the lock.
    ///
    /// ```
    /// # fn main() -> lockmgr::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = lockmgr::LockStore::open(dir.path().join("locks.sqlite3").to_str().unwrap())?;
    /// let _mine = store.get_lock("report", None)?;
    /// let err = store.get_lock("report", None).unwrap_err();
    /// assert!(err.is_locked());
    /// # Ok(()) }
    /// ```
    pub fn is_locked(&self) -> bool {
        matches!(self, Error::Locked { .. })
    }

    /// Whether this is [`Error::Timeout`]: the database did not answer in time.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout { .. })
    }

    /// The lock name this error is about, for the lock outcomes.
    pub fn lock_name(&self) -> Option<&str> {
        match self {
            Error::Locked { name, .. }
            | Error::LockNotFound { name }
            | Error::LockFail { name, .. } => Some(name),
            _ => None,
        }
    }
}

impl Error {
    /// A driver's error as [`Error::Database`].
    pub(crate) fn from_driver(err: diesel::result::Error) -> Self {
        Error::Database(DatabaseError {
            message: err.to_string(),
            source: err,
        })
    }

    /// The driver's error behind an [`Error::Database`].
    pub(crate) fn driver(&self) -> Option<&diesel::result::Error> {
        match self {
            Error::Database(err) => Some(err.driver()),
            _ => None,
        }
    }
}

fn pid_suffix(pid: Option<i64>) -> String {
    pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
}

fn until_text(until: &Option<DateTime<Utc>>) -> String {
    match until {
        Some(t) => format!("until {}", t.format("%Y-%m-%d %H:%M:%S%.3f UTC")),
        None => "with no expiry".to_string(),
    }
}
