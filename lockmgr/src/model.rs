//! The public [`Lock`] and its time arithmetic by the database clock.

use std::fmt;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

/// One held lock: a row of the `lockmgr_lock` table as the database returned it.
///
/// A `Lock` returned by [`LockStore::get_lock`](crate::LockStore::get_lock) also carries
/// the private owner token of that acquisition: passing it to
/// [`LockStore::unlock`](crate::LockStore::unlock) or
/// [`LockStore::renew_lock`](crate::LockStore::renew_lock) only touches the row while it
/// still belongs to this acquisition.
///
/// Time questions ([`expired`](Lock::expired), [`expires_in`](Lock::expires_in)) are
/// answered by the database clock: the row was read together with the database's
/// `now()`, and the time passed since then is measured with the local monotonic clock.
#[derive(Clone)]
pub struct Lock {
    /// The lock name.
    pub name: String,
    /// Who holds it: the host name unless set otherwise.
    pub locked_by: String,
    /// The holder's process id, when recorded.
    pub lock_process: Option<i64>,
    /// When the lock expires, by the database clock; `None`: never.
    pub locked_until: Option<DateTime<Utc>>,
    /// When this acquisition took the lock.
    pub created_at: DateTime<Utc>,
    /// When the row was last written (acquired or renewed).
    pub updated_at: DateTime<Utc>,
    /// The fencing token of this acquisition: larger than that of every earlier
    /// acquisition of any lock in the same store.
    pub fence: i64,
    pub(crate) owner: String,
    /// The database's `now()` when the row was read, and the local instant of that read.
    pub(crate) read_at: (DateTime<Utc>, Instant),
}

impl Lock {
    pub(crate) fn from_row(row: LockRow, read_at: Instant) -> Lock {
        Lock {
            name: row.name,
            locked_by: row.locked_by,
            lock_process: row.lock_process,
            locked_until: row.locked_until,
            created_at: row.created_at,
            updated_at: row.updated_at,
            fence: row.fence,
            owner: row.owner,
            read_at: (row.db_now, read_at),
        }
    }

    /// The database clock now, estimated from the time of the read plus the local
    /// monotonic time elapsed since.
    pub fn database_now(&self) -> DateTime<Utc> {
        let (db_now, instant) = self.read_at;
        let elapsed =
            chrono::Duration::from_std(instant.elapsed()).unwrap_or(chrono::Duration::MAX);
        db_now
            .checked_add_signed(elapsed)
            .unwrap_or(DateTime::<Utc>::MAX_UTC)
    }

    /// Whether the lock has expired by the database clock (never, when `locked_until` is `None`).
    ///
    /// ```
    /// # fn main() -> lockmgr::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = lockmgr::LockStore::open(dir.path().join("l.sqlite3").to_str().unwrap())?;
    /// let lock = store.get_lock("nightly", Some(std::time::Duration::from_secs(60)))?;
    /// assert!(!lock.expired());
    /// # Ok(()) }
    /// ```
    pub fn expired(&self) -> bool {
        self.locked_until
            .is_some_and(|until| until <= self.database_now())
    }

    /// Time left until expiry: `None` for a lock that never expires, zero once expired.
    pub fn expires_in(&self) -> Option<Duration> {
        let until = self.locked_until?;
        Some(
            (until - self.database_now())
                .to_std()
                .unwrap_or(Duration::ZERO),
        )
    }

    /// Whole seconds until expiry, negative once expired; `None` for a lock that never
    /// expires.
    pub fn expires_seconds(&self) -> Option<i64> {
        let until = self.locked_until?;
        Some((until - self.database_now()).num_seconds())
    }

    /// Whether two values are the same acquisition (same name and owner token).
    pub fn same_acquisition(&self, other: &Lock) -> bool {
        self.name == other.name && self.owner == other.owner
    }
}

impl fmt::Debug for Lock {
    // The owner token is a capability: keep it out of logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock")
            .field("name", &self.name)
            .field("locked_by", &self.locked_by)
            .field("lock_process", &self.lock_process)
            .field("locked_until", &self.locked_until)
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .field("fence", &self.fence)
            .finish_non_exhaustive()
    }
}

impl fmt::Display for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (held by {}", self.name, self.locked_by)?;
        if let Some(pid) = self.lock_process {
            write!(f, ", pid {pid}")?;
        }
        match self.locked_until {
            Some(until) => write!(f, ", until {}", until.format("%Y-%m-%d %H:%M:%S UTC"))?,
            None => f.write_str(", never expires")?,
        }
        write!(f, ", fence {})", self.fence)
    }
}

/// A lock row as every backend returns it, times already in UTC.
#[derive(Debug)]
pub(crate) struct LockRow {
    pub(crate) name: String,
    pub(crate) owner: String,
    pub(crate) locked_by: String,
    pub(crate) lock_process: Option<i64>,
    pub(crate) locked_until: Option<DateTime<Utc>>,
    pub(crate) created_at: DateTime<Utc>,
    pub(crate) updated_at: DateTime<Utc>,
    pub(crate) fence: i64,
    pub(crate) db_now: DateTime<Utc>,
}
