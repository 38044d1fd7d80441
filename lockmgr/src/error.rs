//! The one error type of the crate.

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

    /// A statement failed in the database.
    #[error("database error: {0}")]
    Database(#[source] diesel::result::Error),

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

impl From<diesel::result::Error> for Error {
    fn from(err: diesel::result::Error) -> Self {
        Error::Database(err)
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
