//! MySQL and MariaDB: times are UTC `DATETIME(6)` and "now" is the server's
//! `UTC_TIMESTAMP(6)`; fences come from the one-row table `lockmgr_fence`, moved
//! forward by a trigger inside the acquiring statement (see the migration).
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

use diesel::connection::{AnsiTransactionManager, Connection, TransactionManager};
use diesel::mysql::MysqlConnection;
use diesel::result::{DatabaseErrorKind, Error as DieselError};
use diesel::sql_types::{BigInt, Nullable};
use diesel::{OptionalExtension, QueryResult, QueryableByName, RunQueryDsl};

use super::stmt::Stmt;
use super::{AcquireRequest, Flag, LockConn, NaiveRow, NaiveTime, ReleaseRequest, RenewRequest};
use crate::error::{Error, InTransaction, Result};
use crate::migrate::MigrationError;
use crate::model::LockRow;

const COLUMNS: &str = " name, owner, locked_by, lock_process, locked_until, created_at, \
     updated_at, fence, UTC_TIMESTAMP(6) AS db_now";

const LIVE: &str = " (locked_until IS NULL OR locked_until > UTC_TIMESTAMP(6))";

/// `name = ?` as a byte comparison that uses the primary key (the column is
/// `VARBINARY`; the cast keeps the connection's collation out of it).
const NAME_IS: &str = " name = CAST(";
const NAME_IS_END: &str = " AS BINARY)";

/// How often a statement or transaction chosen as a deadlock victim is run again.
const DEADLOCK_RETRIES: u32 = 50;

#[derive(QueryableByName)]
struct Number {
    #[diesel(sql_type = Nullable<BigInt>)]
    value: Option<i64>,
}

fn one(stmt: Stmt<'_>, conn: &mut MysqlConnection) -> QueryResult<Option<LockRow>> {
    Ok(stmt
        .get_result::<NaiveRow>(conn)
        .optional()?
        .map(LockRow::from))
}

/// The row of `name` if it carries `owner` (any row of `name` when `owner` is `None`).
fn read_back(
    conn: &mut MysqlConnection,
    name: &str,
    owner: Option<&str>,
) -> QueryResult<Option<LockRow>> {
    let stmt = Stmt::new("SELECT")
        .sql(COLUMNS)
        .sql(" FROM lockmgr_lock WHERE")
        .sql(NAME_IS)
        .bind_text(name)
        .sql(NAME_IS_END);
    let stmt = stmt.and_owner(owner);
    one(stmt, conn)
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

/// Run one writing statement, again if the server picked it as a deadlock victim.
/// Inside a transaction the victim is the whole transaction, which only its owner
/// can run again: the error is passed up.
fn write<T>(
    conn: &mut MysqlConnection,
    mut statement: impl FnMut(&mut MysqlConnection) -> QueryResult<T>,
) -> QueryResult<T> {
    if inside_transaction(conn) {
        return statement(conn);
    }
    let mut attempt = 0;
    loop {
        match statement(conn) {
            Err(e) if is_deadlock(&e) && attempt < DEADLOCK_RETRIES => {
                attempt += 1;
                deadlock_pause(attempt);
            }
            other => return other,
        }
    }
}

impl LockConn for MysqlConnection {
    /// Two round trips: the write below, then a read of the row by name and owner.
    fn acquire(&mut self, req: &AcquireRequest<'_>) -> QueryResult<Option<LockRow>> {
        // One atomic statement: a plain insert, or — when the name exists — an update
        // that only changes the row if it has expired. A live row is left as it was;
        // the statement never raises a duplicate-key error.
        //
        // MySQL runs the assignments left to right and later ones see the columns
        // already assigned, so `locked_until`, which the expiry test reads, comes
        // last (MariaDB's SIMULTANEOUS_ASSIGNMENT mode gives the same result).
        // `UTC_TIMESTAMP(6)` is fixed for the whole statement. The trigger has
        // already put the next fence into the row being inserted: `VALUES(fence)`.
        write(self, |conn| {
            Stmt::new(
                "INSERT INTO lockmgr_lock \
                 (name, owner, locked_by, lock_process, locked_until, created_at, updated_at, fence) \
                 VALUES (",
            )
            .bind_text(req.name)
            .sql(", ")
            .bind_text(req.owner)
            .sql(", ")
            .bind_text(req.locked_by)
            .sql(", ")
            .bind_opt_bigint(req.lock_process)
            .sql(", UTC_TIMESTAMP(6) + INTERVAL ")
            .bind_opt_bigint(req.expires_us)
            .sql(
                " MICROSECOND, UTC_TIMESTAMP(6), UTC_TIMESTAMP(6), 0) \
                 ON DUPLICATE KEY UPDATE \
                 owner = IF(locked_until <= UTC_TIMESTAMP(6), VALUES(owner), owner), \
                 locked_by = IF(locked_until <= UTC_TIMESTAMP(6), VALUES(locked_by), locked_by), \
                 lock_process = IF(locked_until <= UTC_TIMESTAMP(6), VALUES(lock_process), lock_process), \
                 created_at = IF(locked_until <= UTC_TIMESTAMP(6), VALUES(created_at), created_at), \
                 updated_at = IF(locked_until <= UTC_TIMESTAMP(6), VALUES(updated_at), updated_at), \
                 fence = IF(locked_until <= UTC_TIMESTAMP(6), VALUES(fence), fence), \
                 locked_until = IF(locked_until <= UTC_TIMESTAMP(6), VALUES(locked_until), locked_until)",
            )
            .execute(conn)
        })?;
        // The owner token is fresh: the row carries it only if this call wrote it.
        read_back(self, req.name, Some(req.owner))
    }

    fn find(&mut self, name: &str, _waiting: bool) -> QueryResult<Option<LockRow>> {
        // No notifications across processes: waiters poll (see wait.rs).
        read_back(self, name, None)
    }

    fn release(&mut self, req: &ReleaseRequest<'_>) -> QueryResult<bool> {
        if let (Some(owner), Some(min_hold_us)) = (req.owner, req.min_hold_us) {
            // Held for less than the minimum: keep the row until created_at + min_hold,
            // under an owner token nobody has. Else fall through to the delete.
            let kept = write(self, |conn| {
                Stmt::new(
                    "UPDATE lockmgr_lock SET owner = CONCAT(owner, ':released'), \
                     locked_until = created_at + INTERVAL ",
                )
                .bind_opt_bigint(Some(min_hold_us))
                .sql(" MICROSECOND, updated_at = UTC_TIMESTAMP(6) WHERE")
                .sql(NAME_IS)
                .bind_text(req.name)
                .sql(NAME_IS_END)
                .sql(" AND owner = ")
                .bind_text(owner)
                .sql(" AND created_at + INTERVAL ")
                .bind_opt_bigint(Some(min_hold_us))
                .sql(" MICROSECOND > UTC_TIMESTAMP(6)")
                .execute(conn)
            })?;
            if kept > 0 {
                return Ok(true);
            }
        }
        write(self, |conn| {
            let stmt = Stmt::new("DELETE FROM lockmgr_lock WHERE")
                .sql(NAME_IS)
                .bind_text(req.name)
                .sql(NAME_IS_END);
            let stmt = stmt.and_owner(req.owner);
            stmt.execute(conn)
        })
        .map(|deleted| deleted > 0)
    }

    fn release_if_expired(&mut self, name: &str) -> QueryResult<bool> {
        write(self, |conn| {
            Stmt::new("DELETE FROM lockmgr_lock WHERE")
                .sql(NAME_IS)
                .bind_text(name)
                .sql(NAME_IS_END)
                .sql(" AND locked_until <= UTC_TIMESTAMP(6)")
                .execute(conn)
        })
        .map(|deleted| deleted > 0)
    }

    fn is_locked(&mut self, name: &str) -> QueryResult<bool> {
        let stmt = Stmt::new("SELECT EXISTS (SELECT 1 FROM lockmgr_lock WHERE")
            .sql(NAME_IS)
            .bind_text(name)
            .sql(NAME_IS_END)
            .sql(" AND")
            .sql(LIVE)
            .sql(") AS value");
        Ok(stmt.get_result::<Flag>(self)?.value)
    }

    fn list_live(&mut self) -> QueryResult<Vec<LockRow>> {
        let stmt = Stmt::new("SELECT")
            .sql(COLUMNS)
            .sql(" FROM lockmgr_lock WHERE")
            .sql(LIVE)
            .sql(" ORDER BY name");
        Ok(stmt
            .load::<NaiveRow>(self)?
            .into_iter()
            .map(LockRow::from)
            .collect())
    }

    fn clean_expired(&mut self) -> QueryResult<usize> {
        write(self, |conn| {
            Stmt::new("DELETE FROM lockmgr_lock WHERE locked_until <= UTC_TIMESTAMP(6)")
                .execute(conn)
        })
    }

    fn delete_all(&mut self) -> QueryResult<usize> {
        write(self, |conn| {
            Stmt::new("DELETE FROM lockmgr_lock").execute(conn)
        })
    }

    fn clean_expired_batch(&mut self, limit: i64) -> QueryResult<usize> {
        write(self, |conn| {
            Stmt::new("DELETE FROM lockmgr_lock WHERE locked_until <= UTC_TIMESTAMP(6) LIMIT ")
                .bind_opt_bigint(Some(limit))
                .execute(conn)
        })
    }

    fn database_now(&mut self) -> QueryResult<chrono::DateTime<chrono::Utc>> {
        let now = Stmt::new("SELECT UTC_TIMESTAMP(6) AS value");
        Ok(now.get_result::<NaiveTime>(self)?.value.and_utc())
    }

    /// Two round trips: the update, then (when it matched a row) a read of that row.
    fn renew(&mut self, req: &RenewRequest<'_>) -> QueryResult<Option<LockRow>> {
        // Only `locked_until` reads a column, and it is assigned first, from the old
        // values; `updated_at` does not depend on it.
        let matched = write(self, |conn| {
            let stmt = Stmt::new("UPDATE lockmgr_lock SET locked_until = CASE WHEN ")
                .bind_opt_bigint(req.expires_us)
                .sql(" IS NULL OR locked_until IS NULL THEN NULL WHEN ")
                .bind_bool(req.add_time)
                .sql(" THEN GREATEST(locked_until, UTC_TIMESTAMP(6)) + INTERVAL ")
                .bind_opt_bigint(req.expires_us)
                .sql(" MICROSECOND ELSE GREATEST(locked_until, UTC_TIMESTAMP(6) + INTERVAL ")
                .bind_opt_bigint(req.expires_us)
                .sql(" MICROSECOND) END, updated_at = UTC_TIMESTAMP(6) WHERE")
                .sql(NAME_IS)
                .bind_text(req.name)
                .sql(NAME_IS_END);
            let stmt = stmt.and_owner(req.owner);
            stmt.execute(conn)
        })?;
        // With CLIENT_FOUND_ROWS (diesel's setting) this counts matched rows, also a
        // renewal that changed nothing.
        if matched == 0 {
            return Ok(None);
        }
        read_back(self, req.name, req.owner)
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

    fn migrate(&mut self) -> Result<Vec<String>, MigrationError> {
        // A named server lock, one per database: processes that open a fresh database
        // at the same moment migrate one after the other; the later ones find nothing
        // to do. (MySQL commits DDL at once, so a transaction could not serialize them.)
        let got = Stmt::new(
            "SELECT GET_LOCK(CONCAT('lockmgr_migrate:', MD5(COALESCE(DATABASE(), ''))), 60) AS value",
        )
        .get_result::<Number>(self)?
        .value;
        if got != Some(1) {
            return Err("timed out after 60 s waiting for another process's migration".into());
        }
        let result = crate::migrate::run(self, crate::migrate::MYSQL);
        let released = Stmt::new(
            "SELECT RELEASE_LOCK(CONCAT('lockmgr_migrate:', MD5(COALESCE(DATABASE(), '')))) AS value",
        )
        .get_result::<Number>(self);
        let applied = result?;
        released?;
        Ok(applied)
    }
}
