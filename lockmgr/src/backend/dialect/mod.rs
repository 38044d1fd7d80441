//! The one place for backend-specific SQL.
//!
//! The statements are written once ([`statements`]), in terms of the few pieces in
//! which the databases differ, and built once per store. Each backend implements
//! [`LockConn`] over its own diesel connection: how a statement's rows are read (the
//! row types differ: PostgreSQL's `timestamptz`, naive UTC times elsewhere), and the
//! operations it really does differently; everything else is the trait's default,
//! written once. The store above runs them through a [`Session`].
//!
//! Each operation is one statement (one round trip) unless its doc says otherwise.

#[cfg(feature = "mysql")]
mod mysql;
#[cfg(feature = "postgres")]
mod postgres;
#[cfg(feature = "sqlite")]
mod sqlite;
mod statements;
mod stmt;

use chrono::{DateTime, NaiveDateTime, Utc};
use diesel::query_dsl::LoadQuery;
use diesel::sql_types::{BigInt, Bool, Nullable, Text, Timestamp};
#[cfg(any(feature = "postgres", feature = "mysql"))]
use diesel::OptionalExtension;
use diesel::{Connection, QueryResult, QueryableByName, RunQueryDsl};

pub(crate) use statements::Statements;
pub(crate) use stmt::{Bound, Values};

use super::migrate::MigrationError;
use super::table::TableName;
use crate::error::Result;
use crate::model::LockRow;

/// A lock row from a backend that keeps UTC times without a zone (SQLite's text
/// times, MySQL's `DATETIME(6)`), read as diesel `Timestamp`s.
#[derive(QueryableByName)]
#[allow(dead_code)] // unused in a build with PostgreSQL alone
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

/// What an acquisition reads back of the row it wrote ([`statements::TAKEN_COLUMNS`]),
/// on a backend with naive UTC times.
#[derive(QueryableByName)]
#[allow(dead_code)] // unused in a build with PostgreSQL alone
pub(crate) struct NaiveTaken {
    #[diesel(sql_type = BigInt)]
    fence: i64,
    #[diesel(sql_type = Nullable<Timestamp>)]
    locked_until: Option<NaiveDateTime>,
    #[diesel(sql_type = Timestamp)]
    created_at: NaiveDateTime,
}

impl From<NaiveTaken> for Taken {
    fn from(r: NaiveTaken) -> Taken {
        Taken {
            fence: r.fence,
            locked_until: r.locked_until.map(|t| t.and_utc()),
            created_at: r.created_at.and_utc(),
        }
    }
}

/// The columns an acquisition reads back of the row it wrote. The others are the
/// values it wrote, and `created_at` is the database clock of its statement, so the
/// whole row needs no more from the database.
pub(crate) struct Taken {
    pub(crate) fence: i64,
    pub(crate) locked_until: Option<DateTime<Utc>>,
    pub(crate) created_at: DateTime<Utc>,
}

/// The one column of a `SELECT <naive UTC time> AS value` query.
#[derive(QueryableByName)]
#[allow(dead_code)] // unused in a build with PostgreSQL alone
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

/// The one text column of a query (migrations read versions and column names).
#[derive(QueryableByName)]
struct TextValue {
    #[diesel(sql_type = Text)]
    value: String,
}

/// The text `value`s of the query `sql`.
fn load_texts<C>(conn: &mut C, sql: &str) -> QueryResult<Vec<String>>
where
    C: Connection,
    diesel::query_builder::SqlQuery: LoadQuery<'static, C, TextValue>,
{
    Ok(diesel::sql_query(sql)
        .load::<TextValue>(conn)?
        .into_iter()
        .map(|row| row.value)
        .collect())
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

impl AcquireRequest<'_> {
    /// The row this acquisition wrote, from what it read back (`None`: it wrote none).
    pub(super) fn row_of(&self, taken: Vec<Taken>) -> Option<LockRow> {
        let taken = taken.into_iter().next()?;
        Some(LockRow {
            name: self.name.to_string(),
            owner: self.owner.to_string(),
            locked_by: self.locked_by.to_string(),
            lock_process: self.lock_process,
            locked_until: taken.locked_until,
            created_at: taken.created_at,
            updated_at: taken.created_at,
            fence: taken.fence,
            db_now: taken.created_at,
        })
    }

    fn values(&self) -> Values<'_> {
        Values {
            name: self.name,
            owner: self.owner,
            locked_by: self.locked_by,
            lock_process: self.lock_process,
            expires: self.expires_us,
            ..Values::default()
        }
    }
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

impl ReleaseRequest<'_> {
    fn values(&self) -> Values<'_> {
        Values {
            name: self.name,
            owner: self.owner.unwrap_or_default(),
            min_hold: self.min_hold_us.unwrap_or_default(),
            ..Values::default()
        }
    }

    /// The plain delete of this release.
    fn delete<'s>(&self, sql: &'s Statements) -> &'s stmt::Sql {
        match self.owner {
            Some(_) => &sql.release_owned,
            None => &sql.release_any,
        }
    }
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

impl RenewRequest<'_> {
    fn values(&self) -> Values<'_> {
        Values {
            name: self.name,
            owner: self.owner.unwrap_or_default(),
            expires: self.expires_us,
            add_time: self.add_time,
            ..Values::default()
        }
    }

    fn statement<'s>(&self, sql: &'s Statements) -> &'s stmt::Sql {
        match self.owner {
            Some(_) => &sql.renew_owned,
            None => &sql.renew_any,
        }
    }
}

/// The lock operations of one backend, on one connection. The first five methods say
/// how a statement runs there; the operations are written once on top of them, and a
/// backend overrides only those it does differently.
pub(crate) trait LockConn {
    /// Run a statement that returns at most one lock row.
    fn one(&mut self, stmt: Bound<'_>) -> QueryResult<Option<LockRow>>;

    /// Run a statement that returns lock rows.
    fn rows(&mut self, stmt: Bound<'_>) -> QueryResult<Vec<LockRow>>;

    /// Run an acquisition's statement, which returns the [`Taken`] columns of the row
    /// it wrote, or no row. Every row is read: the statement is stepped to its end
    /// (see SQLite's [`one`](LockConn::one)).
    fn taken(&mut self, stmt: Bound<'_>) -> QueryResult<Vec<Taken>>;

    /// Run a statement that returns one boolean `value`.
    fn flag(&mut self, stmt: Bound<'_>) -> QueryResult<bool>;

    /// Run a statement that returns one time `value`.
    fn time(&mut self, stmt: Bound<'_>) -> QueryResult<DateTime<Utc>>;

    /// Run a writing statement; how many rows it touched.
    fn write(&mut self, stmt: Bound<'_>) -> QueryResult<usize>;

    /// Run a statement that reads the whole table (not by primary key).
    fn whole_table(&mut self, stmt: Bound<'_>) -> QueryResult<usize> {
        self.write(stmt)
    }

    /// Insert the row, or take over an expired one, atomically. `None` when a live
    /// row is in the way.
    fn acquire(
        &mut self,
        sql: &Statements,
        req: &AcquireRequest<'_>,
    ) -> QueryResult<Option<LockRow>> {
        Ok(req.row_of(self.taken(sql.acquire.with(req.values()))?))
    }

    /// The row of `name`, live or expired. With `waiting`, also mark the row as
    /// waited for, so that its release wakes waiters in other processes (PostgreSQL
    /// `NOTIFY`; backends without notifications ignore it: their waiters poll).
    fn find(
        &mut self,
        sql: &Statements,
        name: &str,
        waiting: bool,
    ) -> QueryResult<Option<LockRow>> {
        let _ = waiting;
        self.one(sql.find.with(Values::name(name)))
    }

    /// Release a lock (see [`ReleaseRequest`]). Whether the acquisition ended: its row
    /// went away, or is kept by `min_hold_us` under an owner token nobody has. With a
    /// minimum hold, two statements: keep the row, else delete it.
    fn release(&mut self, sql: &Statements, req: &ReleaseRequest<'_>) -> QueryResult<bool> {
        if req.owner.is_some()
            && req.min_hold_us.is_some()
            && self.write(sql.release_kept.with(req.values()))? > 0
        {
            return Ok(true);
        }
        Ok(self.write(req.delete(sql).with(req.values()))? > 0)
    }

    /// Delete the row of `name` only if it has expired. Whether a row went away.
    fn release_if_expired(&mut self, sql: &Statements, name: &str) -> QueryResult<bool> {
        Ok(self.write(sql.release_if_expired.with(Values::name(name)))? > 0)
    }

    /// Whether `name` has a live row.
    fn is_locked(&mut self, sql: &Statements, name: &str) -> QueryResult<bool> {
        self.flag(sql.is_locked.with(Values::name(name)))
    }

    /// Every live row, by name.
    fn list_live(&mut self, sql: &Statements) -> QueryResult<Vec<LockRow>> {
        self.rows(sql.list_live.with(Values::default()))
    }

    /// Delete expired rows; how many.
    fn clean_expired(&mut self, sql: &Statements) -> QueryResult<usize> {
        self.whole_table(sql.clean_expired.with(Values::default()))
    }

    /// Delete every row; how many.
    fn delete_all(&mut self, sql: &Statements) -> QueryResult<usize> {
        self.whole_table(sql.delete_all.with(Values::default()))
    }

    /// Delete at most `limit` expired rows (by the database clock), without waiting
    /// for rows another transaction is writing where the backend allows; how many.
    fn clean_expired_batch(&mut self, sql: &Statements, limit: i64) -> QueryResult<usize> {
        let values = Values {
            limit,
            ..Values::default()
        };
        self.whole_table(sql.clean_expired_batch.with(values))
    }

    /// The database clock now.
    fn database_now(&mut self, sql: &Statements) -> QueryResult<DateTime<Utc>> {
        self.time(sql.database_now.with(Values::default()))
    }

    /// Extend the expiry of a row; `None` when no row matched.
    fn renew(&mut self, sql: &Statements, req: &RenewRequest<'_>) -> QueryResult<Option<LockRow>> {
        self.one(req.statement(sql).with(req.values()))
    }

    /// Run `body` in one transaction that holds the write lock from its first
    /// statement (PostgreSQL and MySQL: row locks as it goes; SQLite:
    /// `BEGIN IMMEDIATE`). `body` may run more than once (MySQL retries a
    /// transaction the server chose as a deadlock victim); each run starts afresh.
    fn in_transaction(
        &mut self,
        body: &mut dyn FnMut(&mut dyn LockConn) -> Result<()>,
    ) -> Result<()>;

    /// Run SQL statements (a migration): no values, no results.
    fn batch(&mut self, sql: &str) -> QueryResult<()>;

    /// Run a query without values that returns one text column `value`.
    fn texts(&mut self, sql: &str) -> QueryResult<Vec<String>>;

    /// Apply the migrations of `table`, serialized against other processes doing the
    /// same. The versions applied now.
    fn migrate(&mut self, table: &TableName) -> std::result::Result<Vec<String>, MigrationError>;
}

/// A connection with the statements of its store: what the store runs its operations
/// on.
pub(crate) struct Session<'a> {
    conn: &'a mut dyn LockConn,
    sql: &'a Statements,
}

impl<'a> Session<'a> {
    pub(crate) fn new(conn: &'a mut dyn LockConn, sql: &'a Statements) -> Session<'a> {
        Session { conn, sql }
    }

    /// See [`LockConn::acquire`].
    pub(crate) fn acquire(&mut self, req: &AcquireRequest<'_>) -> QueryResult<Option<LockRow>> {
        self.conn.acquire(self.sql, req)
    }

    /// See [`LockConn::find`].
    pub(crate) fn find(&mut self, name: &str, waiting: bool) -> QueryResult<Option<LockRow>> {
        self.conn.find(self.sql, name, waiting)
    }

    /// See [`LockConn::release`].
    pub(crate) fn release(&mut self, req: &ReleaseRequest<'_>) -> QueryResult<bool> {
        self.conn.release(self.sql, req)
    }

    /// See [`LockConn::release_if_expired`].
    pub(crate) fn release_if_expired(&mut self, name: &str) -> QueryResult<bool> {
        self.conn.release_if_expired(self.sql, name)
    }

    /// See [`LockConn::is_locked`].
    pub(crate) fn is_locked(&mut self, name: &str) -> QueryResult<bool> {
        self.conn.is_locked(self.sql, name)
    }

    /// See [`LockConn::list_live`].
    pub(crate) fn list_live(&mut self) -> QueryResult<Vec<LockRow>> {
        self.conn.list_live(self.sql)
    }

    /// See [`LockConn::clean_expired`].
    pub(crate) fn clean_expired(&mut self) -> QueryResult<usize> {
        self.conn.clean_expired(self.sql)
    }

    /// See [`LockConn::delete_all`].
    pub(crate) fn delete_all(&mut self) -> QueryResult<usize> {
        self.conn.delete_all(self.sql)
    }

    /// See [`LockConn::clean_expired_batch`].
    pub(crate) fn clean_expired_batch(&mut self, limit: i64) -> QueryResult<usize> {
        self.conn.clean_expired_batch(self.sql, limit)
    }

    /// See [`LockConn::database_now`].
    pub(crate) fn database_now(&mut self) -> QueryResult<DateTime<Utc>> {
        self.conn.database_now(self.sql)
    }

    /// See [`LockConn::renew`].
    pub(crate) fn renew(&mut self, req: &RenewRequest<'_>) -> QueryResult<Option<LockRow>> {
        self.conn.renew(self.sql, req)
    }

    /// See [`LockConn::in_transaction`]; `body` gets a session on the transaction.
    pub(crate) fn in_transaction(
        &mut self,
        body: &mut dyn FnMut(&mut Session<'_>) -> Result<()>,
    ) -> Result<()> {
        let sql = self.sql;
        self.conn
            .in_transaction(&mut |conn| body(&mut Session::new(conn, sql)))
    }

    /// See [`LockConn::migrate`].
    pub(crate) fn migrate(
        &mut self,
        table: &TableName,
    ) -> std::result::Result<Vec<String>, MigrationError> {
        self.conn.migrate(table)
    }
}

/// The rows of `stmt`, read as `R` and turned into `T` (a [`LockRow`], a [`Taken`]).
fn load_rows<C, R, T>(conn: &mut C, stmt: Bound<'_>) -> QueryResult<Vec<T>>
where
    C: Connection,
    R: Into<T>,
    for<'b> Bound<'b>: LoadQuery<'b, C, R>,
{
    Ok(stmt.load::<R>(conn)?.into_iter().map(Into::into).collect())
}

/// The first row of `stmt` (the others are not read), read as `R`.
#[cfg(any(feature = "postgres", feature = "mysql"))]
fn first_row<C, R>(conn: &mut C, stmt: Bound<'_>) -> QueryResult<Option<LockRow>>
where
    C: Connection,
    R: Into<LockRow>,
    for<'b> Bound<'b>: LoadQuery<'b, C, R>,
{
    Ok(stmt.get_result::<R>(conn).optional()?.map(Into::into))
}

/// The boolean `value` of `stmt`.
fn load_flag<C>(conn: &mut C, stmt: Bound<'_>) -> QueryResult<bool>
where
    C: Connection,
    for<'b> Bound<'b>: LoadQuery<'b, C, Flag>,
{
    Ok(stmt.get_result::<Flag>(conn)?.value)
}

/// The time `value` of `stmt`, a naive UTC time.
#[allow(dead_code)] // unused in a build with PostgreSQL alone
fn load_naive_time<C>(conn: &mut C, stmt: Bound<'_>) -> QueryResult<DateTime<Utc>>
where
    C: Connection,
    for<'b> Bound<'b>: LoadQuery<'b, C, NaiveTime>,
{
    Ok(stmt.get_result::<NaiveTime>(conn)?.value.and_utc())
}

/// Clamp a duration to what every backend can add to "now" (100 years), in microseconds.
pub(crate) fn expiry_micros(expires: Option<std::time::Duration>) -> Option<i64> {
    const MAX_US: u128 = 100 * 365 * 24 * 3600 * 1_000_000;
    let expires = expires.filter(|d| !d.is_zero())?;
    Some(expires.as_micros().min(MAX_US) as i64)
}
