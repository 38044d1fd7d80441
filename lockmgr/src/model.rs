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
    /// For a lock this process acquired or renewed: when the statement that did it
    /// was sent (the lease is counted from then).
    pub(crate) sent_at: Option<Instant>,
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
            sent_at: None,
        }
    }

    /// This lock was acquired or renewed by a statement sent at `sent`.
    pub(crate) fn sent_at(mut self, sent: Instant) -> Lock {
        self.sent_at = Some(sent);
        self
    }

    /// The local instant until which the holder may trust this lock: the time the
    /// acquiring or renewing statement was sent, plus the lease it granted (the
    /// expiry minus the database's now in that statement), minus
    /// [`lease_margin`]. `None` for a lock that never expires, or one this process
    /// did not take or renew.
    ///
    /// The server counted the lease from a moment after the statement was sent, so
    /// the holder's deadline falls before the moment anyone else can take the lock,
    /// as long as the two clocks run at the same rate to within the margin.
    pub(crate) fn lease_deadline(&self) -> Option<Instant> {
        let sent = self.sent_at?;
        let lease = (self.locked_until? - self.read_at.0)
            .to_std()
            .unwrap_or(Duration::ZERO);
        let trusted = lease.saturating_sub(lease_margin(lease));
        Some(sent.checked_add(trusted).unwrap_or(sent))
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

    /// [`Error::Locked`](crate::Error::Locked) describing this lock as the holder in
    /// the way.
    pub(crate) fn locked_error(&self) -> crate::Error {
        crate::Error::Locked {
            name: self.name.clone(),
            locked_by: self.locked_by.clone(),
            lock_process: self.lock_process,
            locked_until: self.locked_until,
        }
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

/// How much sooner than its lease a holder stops trusting a lock: a tenth of the lease,
/// at most one second (for the time between the deadline and the holder's code
/// noticing it: scheduling, a pause), plus 0.1% of the lease (for the local and the
/// database clocks running at slightly different rates; NTP keeps them within
/// 0.05%).
pub(crate) fn lease_margin(lease: Duration) -> Duration {
    (lease / 10).min(Duration::from_secs(1)) + lease / 1000
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_deadline_counts_from_the_send_minus_the_margin() {
        let now = Utc::now();
        let sent = Instant::now();
        let row = LockRow {
            name: "n".into(),
            owner: "o".into(),
            locked_by: "h".into(),
            lock_process: None,
            locked_until: Some(now + chrono::Duration::seconds(60)),
            created_at: now,
            updated_at: now,
            fence: 1,
            db_now: now,
        };
        let lock = Lock::from_row(row, sent + Duration::from_millis(5));
        assert_eq!(lock.lease_deadline(), None, "not sent by us: no lease");
        let lock = lock.sent_at(sent);
        let margin = lease_margin(Duration::from_secs(60));
        assert_eq!(margin, Duration::from_millis(1060));
        assert_eq!(
            lock.lease_deadline(),
            Some(sent + Duration::from_secs(60) - margin)
        );
        assert_eq!(
            lease_margin(Duration::from_secs(2)),
            Duration::from_millis(202)
        );
    }
}
