//! PostgreSQL: times are `timestamptz` and "now" is the server's `now()`; fences come
//! from the table's sequence (`<table>_fence_seq`). A waiter flags the row it waits
//! for, and the release trigger then sends a `NOTIFY` (see the migration).

use chrono::{DateTime, Utc};
use diesel::connection::{Connection, SimpleConnection};
use diesel::pg::PgConnection;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz};
use diesel::{QueryResult, QueryableByName, RunQueryDsl};

use super::statements::{Flavor, Statements};
use super::stmt::{Bound, Slot, Sql, Values};
use super::{first_row, load_flag, load_rows, load_texts, LockConn, ReleaseRequest, Taken};
use crate::backend::migrate::{self, MigrationError};
use crate::backend::table::TableName;
use crate::database_url::Backend;
use crate::error::{Error, InTransaction, Result};
use crate::model::LockRow;

#[derive(QueryableByName)]
struct PgRow {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Text)]
    owner: String,
    #[diesel(sql_type = Text)]
    locked_by: String,
    #[diesel(sql_type = Nullable<BigInt>)]
    lock_process: Option<i64>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    locked_until: Option<DateTime<Utc>>,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
    #[diesel(sql_type = Timestamptz)]
    updated_at: DateTime<Utc>,
    #[diesel(sql_type = BigInt)]
    fence: i64,
    #[diesel(sql_type = Timestamptz)]
    db_now: DateTime<Utc>,
}

impl From<PgRow> for LockRow {
    fn from(r: PgRow) -> LockRow {
        LockRow {
            name: r.name,
            owner: r.owner,
            locked_by: r.locked_by,
            lock_process: r.lock_process,
            locked_until: r.locked_until,
            created_at: r.created_at,
            updated_at: r.updated_at,
            fence: r.fence,
            db_now: r.db_now,
        }
    }
}

/// See [`Taken`].
#[derive(QueryableByName)]
struct PgTaken {
    #[diesel(sql_type = BigInt)]
    fence: i64,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    locked_until: Option<DateTime<Utc>>,
    #[diesel(sql_type = Timestamptz)]
    created_at: DateTime<Utc>,
}

impl From<PgTaken> for Taken {
    fn from(r: PgTaken) -> Taken {
        Taken {
            fence: r.fence,
            locked_until: r.locked_until,
            created_at: r.created_at,
        }
    }
}

#[derive(QueryableByName)]
struct PgTime {
    #[diesel(sql_type = Timestamptz)]
    value: DateTime<Utc>,
}

/// The statements only PostgreSQL has.
pub(super) fn own_statements(f: &Flavor, mut statements: Statements) -> Statements {
    let (t, columns) = (&f.table, f.columns());
    statements.acquire = acquire(f);
    // Flag the row only if it is not flagged yet: a waiter polling a held lock reads
    // it without rewriting it (and without a dead row version) each time.
    let flag = f.name_is(Sql::new(&format!(
        "WITH flagged AS (UPDATE {t} SET waiters = true WHERE"
    )));
    let read = f.name_is(Sql::new(&format!(
        " AND NOT waiters RETURNING{columns}) SELECT * FROM flagged UNION ALL SELECT{columns} FROM {t} WHERE"
    )));
    statements.find_waiting = Some(
        flag.then(&read)
            .text(" AND NOT EXISTS (SELECT 1 FROM flagged)"),
    );
    // Keep the row (held for less than the minimum) or delete it, in one statement.
    let gone = f.plus(
        f.owner_is(f.delete_named()).text(" AND "),
        "created_at",
        Slot::MinHold,
    );
    statements.release_held = Some(
        Sql::new("WITH kept AS (")
            .then(&f.keep_until_min_hold())
            .text(" RETURNING name), gone AS (")
            .then(&gone)
            .text(&format!(
                " <= {} RETURNING name) SELECT name FROM kept UNION ALL SELECT name FROM gone",
                f.now
            )),
    );
    statements
}

/// Insert the row, or take over an expired one, without locking a live one.
///
/// The shared upsert (`INSERT … ON CONFLICT DO UPDATE … WHERE expired`) locks the
/// conflicting row even when its `WHERE` is false: on PostgreSQL every attempt that
/// finds a live lock would take a row lock, which gives the transaction an id and a
/// WAL record, so it ends in a durable commit (an fsync), and the holder's release
/// waits behind it. Here the insert's one row is only produced when no live row is
/// there (`WHERE NOT EXISTS`, a read): a live lock is answered by reading alone. An
/// absent name is inserted; an expired row is taken over by the `ON CONFLICT` update,
/// which re-checks its condition on the latest version of the row after locking it
/// (so of two takers, one wins). Only a row that turns live between the check and the
/// insert is locked, for this statement only, and then returns nothing.
fn acquire(f: &Flavor) -> Sql {
    let sql = f.row_values(f.insert_into(" AS l").text("SELECT "), f.now);
    let sql = sql.text(&format!(
        " WHERE NOT EXISTS (SELECT 1 FROM {} WHERE",
        f.table
    ));
    // A new holder has no waiters yet (see the migration).
    f.name_is(sql)
        .text(&format!(" AND {})", f.live()))
        .text(&f.take_over_expired(", waiters = false"))
}

impl LockConn for PgConnection {
    fn one(&mut self, stmt: Bound<'_>) -> QueryResult<Option<LockRow>> {
        first_row::<_, PgRow>(self, stmt)
    }

    fn rows(&mut self, stmt: Bound<'_>) -> QueryResult<Vec<LockRow>> {
        load_rows::<_, PgRow, _>(self, stmt)
    }

    fn taken(&mut self, stmt: Bound<'_>) -> QueryResult<Vec<Taken>> {
        load_rows::<_, PgTaken, _>(self, stmt)
    }

    fn flag(&mut self, stmt: Bound<'_>) -> QueryResult<bool> {
        load_flag(self, stmt)
    }

    fn time(&mut self, stmt: Bound<'_>) -> QueryResult<DateTime<Utc>> {
        Ok(stmt.get_result::<PgTime>(self)?.value)
    }

    fn write(&mut self, stmt: Bound<'_>) -> QueryResult<usize> {
        stmt.execute(self)
    }

    /// Sequential scans are off on lockmgr's connections (see conn.rs): allow them
    /// again for this one statement.
    fn whole_table(&mut self, stmt: Bound<'_>) -> QueryResult<usize> {
        self.transaction(|conn| {
            conn.batch_execute("SET LOCAL enable_seqscan = on")?;
            stmt.execute(conn)
        })
    }

    fn find(
        &mut self,
        sql: &Statements,
        name: &str,
        waiting: bool,
    ) -> QueryResult<Option<LockRow>> {
        match (&sql.find_waiting, waiting) {
            (Some(flagged), true) => self.one(flagged.with(Values::name(name))),
            _ => self.one(sql.find.with(Values::name(name))),
        }
    }

    /// One statement: a plain delete (the release trigger sends the `NOTIFY` when a
    /// waiter flagged the row), or, with a minimum hold not yet reached, keep the row.
    fn release(&mut self, sql: &Statements, req: &ReleaseRequest<'_>) -> QueryResult<bool> {
        let stmt = match (&sql.release_held, req.owner, req.min_hold_us) {
            (Some(held), Some(_), Some(_)) => held,
            _ => req.delete(sql),
        };
        Ok(self.write(stmt.with(req.values()))? > 0)
    }

    fn in_transaction(
        &mut self,
        body: &mut dyn FnMut(&mut dyn LockConn) -> Result<()>,
    ) -> Result<()> {
        self.transaction::<_, InTransaction, _>(|conn| Ok(body(conn)?))
            .map_err(Error::from)
    }

    fn batch(&mut self, sql: &str) -> QueryResult<()> {
        self.batch_execute(sql)
    }

    fn texts(&mut self, sql: &str) -> QueryResult<Vec<String>> {
        load_texts(self, sql)
    }

    fn migrate(&mut self, table: &TableName) -> Result<Vec<String>, MigrationError> {
        // A transaction-scoped advisory lock: processes that open a fresh database at
        // the same moment migrate one after the other; the later ones find nothing to do.
        self.transaction(|conn| {
            conn.batch_execute("SELECT pg_advisory_xact_lock(7486352610973)")?;
            migrate::run(conn, Backend::Postgres, table)
        })
    }
}
