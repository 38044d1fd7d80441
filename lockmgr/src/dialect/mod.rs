//! The one place for backend-specific SQL.
//!
//! Every lock statement differs a little between databases (how to say "now", how to
//! hand out fences, how to add seconds to a time), so each backend implements
//! [`LockConn`] over its own diesel connection and the store above it is written once,
//! against `&mut dyn LockConn`. Adding a backend means one more file here and one more
//! pool variant in [`crate::conn`].
//!
//! Each method is one statement (one round trip) unless its doc says otherwise.

#[cfg(feature = "mysql")]
mod mysql;
mod postgres;
mod sqlite;
mod stmt;

use crate::error::Result;
use crate::model::LockRow;
use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::sql_types::{BigInt, Bool, Nullable, Text, Timestamp};
use diesel::{QueryResult, QueryableByName};

/// A lock row from a backend that keeps UTC times without a zone (SQLite's text
/// times, MySQL's `DATETIME(6)`), read as diesel `Timestamp`s.
#[derive(QueryableByName)]
pub(crate) struct NaiveRow {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    owner: String,
    #[diesel(sql_type = Text)]
    locked_by: String,
    #[diesel(sql_type = Nullable<BigInt>)]
    lock_process: Option<i64>,
    #[diesel(sql_type = Nullable<Timestamp>)]
    locked_until: Option<NaiveDateTime>,
    #[diesel(sql_type = Timestamp)]
    created_at: NaiveDateTime,
    #[diesel(sql_type = Timestamp)]
    updated_at: NaiveDateTime,
    #[diesel(sql_type = BigInt)]
    fence: i64,
    #[diesel(sql_type = Timestamp)]
    db_now: NaiveDateTime,
}

impl From<NaiveRow> for LockRow {
    fn from(r: NaiveRow) -> LockRow {
        let utc = |t: NaiveDateTime| DateTime::<Utc>::from_naive_utc_and_offset(t, Utc);
        LockRow {
            name: r.name,
            owner: r.owner,
            locked_by: r.locked_by,
            lock_process: r.lock_process,
            locked_until: r.locked_until.map(utc),
            created_at: utc(r.created_at),
            updated_at: utc(r.updated_at),
            fence: r.fence,
            db_now: utc(r.db_now),
        }
    }
}

/// The one column of a `SELECT <naive UTC time> AS value` query.
#[derive(QueryableByName)]
pub(crate) struct NaiveTime {
    #[diesel(sql_type = Timestamp)]
    pub(crate) value: NaiveDateTime,
}

/// The one boolean column of an `EXISTS (…) AS value` query.
#[derive(QueryableByName)]
pub(crate) struct Flag {
    #[diesel(sql_type = Bool)]
    pub(crate) value: bool,
}

/// Take a lock: insert its row, or take over the row if it has expired.
pub(crate) struct AcquireRequest<'a> {
    pub(crate) name: &'a str,
    pub(crate) owner: &'a str,
    pub(crate) locked_by: &'a str,
    pub(crate) lock_process: Option<i64>,
    /// Microseconds from the database's now; `None`: never expires.
    pub(crate) expires_us: Option<i64>,
}

/// Release a lock.
pub(crate) struct ReleaseRequest<'a> {
    pub(crate) name: &'a str,
    /// `Some`: only the row of that acquisition; `None`: whoever holds it.
    pub(crate) owner: Option<&'a str>,
    /// Hold at least: if the lock was acquired less than this many microseconds ago
    /// (by the database clock), keep the row until `created_at` + this, under an owner
    /// token nobody has, instead of deleting it. Only with `owner`.
    pub(crate) min_hold_us: Option<i64>,
}

/// Extend a lock's expiry.
pub(crate) struct RenewRequest<'a> {
    pub(crate) name: &'a str,
    /// `Some`: only the row of that acquisition; `None`: whoever holds it.
    pub(crate) owner: Option<&'a str>,
    /// Microseconds; `None`: make it never expire.
    pub(crate) expires_us: Option<i64>,
    /// Add to the current expiry (counted from now if that has passed) instead of
    /// setting it to now + expires; without it, an expiry is never shortened.
    pub(crate) add_time: bool,
}

/// The lock statements of one backend, on one connection.
pub(crate) trait LockConn {
    /// Insert the row, or take over an expired one, atomically. `None` when a live
    /// row is in the way.
    fn acquire(&mut self, req: &AcquireRequest<'_>) -> QueryResult<Option<LockRow>>;

    /// The row of `name`, live or expired. With `waiting`, also mark the row as
    /// waited for, so that its release wakes waiters in other processes (PostgreSQL
    /// `NOTIFY`; backends without notifications ignore it).
    fn find(&mut self, name: &str, waiting: bool) -> QueryResult<Option<LockRow>>;

    /// Release a lock (see [`ReleaseRequest`]). Whether the acquisition ended: its row
    /// went away, or is kept by `min_hold_us` under an owner token nobody has.
    fn release(&mut self, req: &ReleaseRequest<'_>) -> QueryResult<bool>;

    /// Delete the row of `name` only if it has expired. Whether a row went away.
    fn release_if_expired(&mut self, name: &str) -> QueryResult<bool>;

    /// Whether `name` has a live row.
    fn is_locked(&mut self, name: &str) -> QueryResult<bool>;

    /// Every live row, by name.
    fn list_live(&mut self) -> QueryResult<Vec<LockRow>>;

    /// Delete expired rows; how many.
    fn clean_expired(&mut self) -> QueryResult<usize>;

    /// Delete every row; how many.
    fn delete_all(&mut self) -> QueryResult<usize>;

    /// Delete at most `limit` expired rows (by the database clock), without waiting
    /// for rows another transaction is writing where the backend allows; how many.
    fn clean_expired_batch(&mut self, limit: i64) -> QueryResult<usize>;

    /// The database clock now.
    fn database_now(&mut self) -> QueryResult<DateTime<Utc>>;

    /// Extend the expiry of a row; `None` when no row matched.
    fn renew(&mut self, req: &RenewRequest<'_>) -> QueryResult<Option<LockRow>>;

    /// Run `body` in one transaction that holds the write lock from its first
    /// statement (PostgreSQL and MySQL: row locks as it goes; SQLite:
    /// `BEGIN IMMEDIATE`). `body` may run more than once (MySQL retries a
    /// transaction the server chose as a deadlock victim); each run starts afresh.
    fn in_transaction(
        &mut self,
        body: &mut dyn FnMut(&mut dyn LockConn) -> Result<()>,
    ) -> Result<()>;

    /// Apply the embedded migrations, serialized against other processes doing the
    /// same. The versions applied now.
    fn migrate(&mut self) -> std::result::Result<Vec<String>, crate::migrate::MigrationError>;
}

/// Clamp a duration to what every backend can add to "now" (100 years), in microseconds.
pub(crate) fn expiry_micros(expires: Option<std::time::Duration>) -> Option<i64> {
    const MAX_US: u128 = 100 * 365 * 24 * 3600 * 1_000_000;
    let expires = expires.filter(|d| !d.is_zero())?;
    Some(expires.as_micros().min(MAX_US) as i64)
}
