//! MySQL and MariaDB: times are UTC `DATETIME(6)` and "now" is the server's
//! `UTC_TIMESTAMP(6)`; fences come from a one-row table (`lockmgr_fence`, or
//! `<table>_fence`), moved forward by a trigger inside the acquiring statement (see
//! the migration).
//!
//! MySQL has no `RETURNING` (MariaDB's does not cover `ON DUPLICATE KEY UPDATE`), so a
//! statement that writes a row is followed by a `SELECT` that reads it back: acquire
//! and renew are **two round trips** here, where PostgreSQL and SQLite need one. The
//! write is still one atomic statement, and the read-back is by name *and* owner token,
//! so it can only find this acquisition's own row. The affected-rows count cannot
//! replace the read: diesel connects with `CLIENT_FOUND_ROWS`, under which an
//! `ON DUPLICATE KEY UPDATE` that changed nothing counts 1, the same as an insert.
//!
//! Connections run at `READ COMMITTED`: a plain `SELECT` inside a transaction sees the
//! latest committed row (as on PostgreSQL), not a snapshot older than the row locks the
//! transaction already holds. A statement the server picks as a deadlock victim is
//! retried; inside a transaction the whole transaction is ([`LockConn::in_transaction`]).

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::connection::{
    AnsiTransactionManager, Connection, SimpleConnection, TransactionManager,
};
use diesel::mysql::MysqlConnection;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sql_types::{BigInt, Nullable};
use diesel::{QueryResult, QueryableByName, RunQueryDsl};

use super::statements::{Flavor, Statements};
use super::stmt::{Bound, Slot, Sql};
use super::{
    first_row, load_flag, load_naive_time, load_rows, load_texts, AcquireRequest, LockConn,
    NaiveRow, NaiveTaken, RenewRequest, Taken,
};
use crate::backend::migrate::{self, MigrationError};
use crate::backend::table::TableName;
use crate::database_url::Backend;
use crate::error::{Error, InTransaction, Result};
use crate::model::LockRow;

/// How often a statement or transaction chosen as a deadlock victim is run again.
const DEADLOCK_RETRIES: u32 = 50;

#[derive(QueryableByName)]
struct Number {
    #[diesel(sql_type = Nullable<BigInt>)]
    value: Option<i64>,
}

/// The statements only MySQL has.
pub(super) fn own_statements(f: &Flavor, mut statements: Statements) -> Statements {
    // One atomic statement: a plain insert, or — when the name exists — an update
    // that only changes the row if it has expired. A live row is left as it was; the
    // statement never raises a duplicate-key error.
    //
    // MySQL runs the assignments left to right and later ones see the columns
    // already assigned, so `locked_until`, which the expiry test reads, comes last
    // (MariaDB's SIMULTANEOUS_ASSIGNMENT mode gives the same result).
    // `UTC_TIMESTAMP(6)` is fixed for the whole statement. The trigger has already
    // put the next fence into the row being inserted: `VALUES(fence)`.
    let now = f.now;
    let expired = format!("locked_until <= {now}");
    let take = |column: &str| format!("{column} = IF({expired}, VALUES({column}), {column})");
    let updates: Vec<String> = [
        "owner",
        "locked_by",
        "lock_process",
        "created_at",
        "updated_at",
        "fence",
        "locked_until",
    ]
    .iter()
    .map(|column| take(column))
    .collect();
    statements.acquire = f
        .row_values(f.insert_into("").text("VALUES ("), now)
        .text(")")
        .text(&format!(" ON DUPLICATE KEY UPDATE {}", updates.join(", ")));
    // MySQL has no LIMIT in an IN subquery; a DELETE takes one of its own.
    statements.clean_expired_batch = Sql::new(&format!(
        "DELETE FROM {} WHERE locked_until <= {now} LIMIT ",
        f.table
    ))
    .bind(Slot::Limit);
    statements
}

fn is_deadlock(err: &DieselError) -> bool {
    matches!(
        err,
        DieselError::DatabaseError(DatabaseErrorKind::SerializationFailure, _)
    )
}

/// Whether `err` (from a transaction body) is a deadlock the server rolled back.
fn is_deadlock_error(err: &Error) -> bool {
    err.driver().is_some_and(is_deadlock)
}

fn inside_transaction(conn: &mut MysqlConnection) -> bool {
    AnsiTransactionManager::transaction_manager_status_mut(conn)
        .transaction_depth()
        .map_or(true, |depth| depth.is_some())
}

/// A short, growing pause before running a deadlock victim again.
fn deadlock_pause(attempt: u32) {
    std::thread::sleep(Duration::from_micros(200 * u64::from(attempt.min(20) + 1)));
}

impl LockConn for MysqlConnection {
    fn one(&mut self, stmt: Bound<'_>) -> QueryResult<Option<LockRow>> {
        first_row::<_, NaiveRow>(self, stmt)
    }

    fn rows(&mut self, stmt: Bound<'_>) -> QueryResult<Vec<LockRow>> {
        load_rows::<_, NaiveRow, _>(self, stmt)
    }

    fn taken(&mut self, stmt: Bound<'_>) -> QueryResult<Vec<Taken>> {
        load_rows::<_, NaiveTaken, _>(self, stmt)
    }

    fn flag(&mut self, stmt: Bound<'_>) -> QueryResult<bool> {
        load_flag(self, stmt)
    }

    fn time(&mut self, stmt: Bound<'_>) -> QueryResult<DateTime<Utc>> {
        load_naive_time(self, stmt)
    }

    /// Run again if the server picked the statement as a deadlock victim. Inside a
    /// transaction the victim is the whole transaction, which only its owner can run
    /// again: the error is passed up.
    fn write(&mut self, stmt: Bound<'_>) -> QueryResult<usize> {
        if inside_transaction(self) {
            return stmt.execute(self);
        }
        let mut attempt = 0;
        loop {
            match stmt.execute(self) {
                Err(e) if is_deadlock(&e) && attempt < DEADLOCK_RETRIES => {
                    attempt += 1;
                    deadlock_pause(attempt);
                }
                other => return other,
            }
        }
    }

    /// Two round trips: the write, then a read of the row by name and owner.
    fn acquire(
        &mut self,
        sql: &Statements,
        req: &AcquireRequest<'_>,
    ) -> QueryResult<Option<LockRow>> {
        self.write(sql.acquire.with(req.values()))?;
        // The owner token is fresh: the row carries it only if this call wrote it.
        Ok(req.row_of(self.taken(sql.find_taken.with(req.values()))?))
    }

    /// Two round trips: the update, then (when it matched a row) a read of that row.
    fn renew(&mut self, sql: &Statements, req: &RenewRequest<'_>) -> QueryResult<Option<LockRow>> {
        // Only `locked_until` reads a column, and it is assigned first, from the old
        // values; `updated_at` does not depend on it. With CLIENT_FOUND_ROWS (diesel's
        // setting) the count is of matched rows, also a renewal that changed nothing.
        if self.write(req.statement(sql).with(req.values()))? == 0 {
            return Ok(None);
        }
        let read = match req.owner {
            Some(_) => &sql.find_owned,
            None => &sql.find,
        };
        self.one(read.with(req.values()))
    }

    fn in_transaction(
        &mut self,
        body: &mut dyn FnMut(&mut dyn LockConn) -> Result<()>,
    ) -> Result<()> {
        // A deadlock victim's transaction is rolled back whole: run it again from the
        // start. (Two transactions that lock rows and the fence counter in different
        // orders can deadlock; a lone statement retries itself in `write`.)
        let mut attempt = 0;
        loop {
            let outcome = self
                .transaction::<_, InTransaction, _>(|conn| Ok(body(conn)?))
                .map_err(Error::from);
            match outcome {
                Err(e) if is_deadlock_error(&e) && attempt < DEADLOCK_RETRIES => {
                    attempt += 1;
                    deadlock_pause(attempt);
                }
                other => return other,
            }
        }
    }

    fn batch(&mut self, sql: &str) -> QueryResult<()> {
        self.batch_execute(sql)
    }

    fn texts(&mut self, sql: &str) -> QueryResult<Vec<String>> {
        load_texts(self, sql)
    }

    fn migrate(&mut self, table: &TableName) -> Result<Vec<String>, MigrationError> {
        // A named server lock, one per database: processes that open a fresh database
        // at the same moment migrate one after the other; the later ones find nothing
        // to do. (MySQL commits DDL at once, so a transaction could not serialize them.)
        let got = diesel::sql_query(
            "SELECT GET_LOCK(CONCAT('lockmgr_migrate:', MD5(COALESCE(DATABASE(), ''))), 60) AS value",
        )
        .get_result::<Number>(self)?
        .value;
        if got != Some(1) {
            return Err("timed out after 60 s waiting for another process's migration".into());
        }
        let result = migrate::run(self, Backend::Mysql, table);
        let released = diesel::sql_query(
            "SELECT RELEASE_LOCK(CONCAT('lockmgr_migrate:', MD5(COALESCE(DATABASE(), '')))) AS value",
        )
        .get_result::<Number>(self);
        let applied = result?;
        released?;
        Ok(applied)
    }
}
