//! SQLite: times are UTC text `YYYY-MM-DD HH:MM:SS.SSS` and "now" is
//! `strftime(…, 'now')` — the clock of the process running the statement. Fences come
//! from the fence row of the lock table itself (see `FENCE_ROW`), moved forward by
//! triggers: an acquisition writes one page, where a separate counter table made two.
//!
//! Every write is a single statement or runs in `BEGIN IMMEDIATE`, so a writer waits
//! for the write lock (`busy_timeout`) instead of failing with "database is locked".

use chrono::{DateTime, Utc};
use diesel::connection::SimpleConnection;
use diesel::sqlite::SqliteConnection;
use diesel::{QueryResult, RunQueryDsl};

use super::stmt::Bound;
use super::{
    load_flag, load_naive_time, load_rows, load_texts, LockConn, NaiveRow, NaiveTaken, Taken,
};
use crate::backend::migrate::{self, MigrationError};
use crate::backend::table::TableName;
use crate::database_url::Backend;
use crate::error::{Error, InTransaction, Result};
use crate::model::LockRow;

impl LockConn for SqliteConnection {
    /// Steps the statement to the end, which matters for writes: SQLite commits an
    /// autocommit `INSERT/UPDATE … RETURNING` when the statement finishes, after the
    /// row was already handed out. Reading only the first row would leave that commit
    /// to the statement's reset, whose error diesel drops: a write rolled back for a
    /// full disk would be reported as done. Loading every row takes the last step, so
    /// a failed commit is this call's error.
    fn one(&mut self, stmt: Bound<'_>) -> QueryResult<Option<LockRow>> {
        Ok(self.rows(stmt)?.into_iter().next())
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

    fn write(&mut self, stmt: Bound<'_>) -> QueryResult<usize> {
        stmt.execute(self)
    }

    fn in_transaction(
        &mut self,
        body: &mut dyn FnMut(&mut dyn LockConn) -> Result<()>,
    ) -> Result<()> {
        self.immediate_transaction::<_, InTransaction, _>(|conn| Ok(body(conn)?))
            .map_err(Error::from)
    }

    fn batch(&mut self, sql: &str) -> QueryResult<()> {
        self.batch_execute(sql)
    }

    fn texts(&mut self, sql: &str) -> QueryResult<Vec<String>> {
        load_texts(self, sql)
    }

    fn migrate(&mut self, table: &TableName) -> Result<Vec<String>, MigrationError> {
        // BEGIN IMMEDIATE: processes that open a fresh file at the same moment migrate
        // one after the other; the later ones find nothing to do.
        self.immediate_transaction(|conn| migrate::run(conn, Backend::Sqlite, table))
    }
}
