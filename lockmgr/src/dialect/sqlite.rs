//! SQLite: times are UTC text `YYYY-MM-DD HH:MM:SS.SSS` and "now" is
//! `strftime(…, 'now')` — the clock of the process running the statement. Fences come
//! from the one-row table `lockmgr_fence`, moved forward by triggers.
//!
//! Every write is a single statement or runs in `BEGIN IMMEDIATE`, so a writer waits
//! for the write lock (`busy_timeout`) instead of failing with "database is locked".

use diesel::sqlite::SqliteConnection;
use diesel::{QueryResult, RunQueryDsl};

use super::stmt::Stmt;
use super::{AcquireRequest, Flag, LockConn, NaiveRow, NaiveTime, ReleaseRequest, RenewRequest};
use crate::error::{Error, InTransaction, Result};
use crate::migrate::MigrationError;
use crate::model::LockRow;

const COLUMNS: &str = " name, owner, locked_by, lock_process, locked_until, created_at, \
     updated_at, fence, strftime('%Y-%m-%d %H:%M:%f', 'now') AS db_now";

const NOW: &str = "strftime('%Y-%m-%d %H:%M:%f', 'now')";

const LIVE: &str = " (locked_until IS NULL OR locked_until > strftime('%Y-%m-%d %H:%M:%f', 'now'))";

/// Run a statement that returns at most one row, stepping it to the end.
///
/// Stepping to the end matters for writes: SQLite commits an autocommit
/// `INSERT/UPDATE … RETURNING` when the statement finishes, after the row was
/// already handed out. Reading only the first row (`get_result`) would leave that
/// commit to the statement's reset, whose error diesel drops: a write rolled back
/// for a full disk would be reported as done. Loading every row takes the last step,
/// so a failed commit is this call's error.
fn one(stmt: Stmt<'_>, conn: &mut SqliteConnection) -> QueryResult<Option<LockRow>> {
    Ok(stmt
        .load::<NaiveRow>(conn)?
        .into_iter()
        .next()
        .map(LockRow::from))
}

impl LockConn for SqliteConnection {
    fn acquire(&mut self, req: &AcquireRequest<'_>) -> QueryResult<Option<LockRow>> {
        // One statement, so it takes the write lock before it reads: an insert, or a
        // take-over of an expired row. A live row makes it return nothing.
        let stmt = Stmt::new(
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
        .sql(", CASE WHEN ")
        .bind_opt_bigint(req.expires_us)
        .sql(" IS NULL THEN NULL ELSE strftime('%Y-%m-%d %H:%M:%f', 'now', printf('%.6f seconds', ")
        .bind_opt_bigint(req.expires_us)
        .sql(
            " / 1000000.0)) END, strftime('%Y-%m-%d %H:%M:%f', 'now'), \
             strftime('%Y-%m-%d %H:%M:%f', 'now'), \
             (SELECT value + 1 FROM lockmgr_fence WHERE id = 1)) \
             ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, \
             locked_by = excluded.locked_by, lock_process = excluded.lock_process, \
             locked_until = excluded.locked_until, created_at = excluded.created_at, \
             updated_at = excluded.updated_at, fence = excluded.fence \
             WHERE lockmgr_lock.locked_until <= strftime('%Y-%m-%d %H:%M:%f', 'now') RETURNING",
        )
        .sql(COLUMNS);
        one(stmt, self)
    }

    fn find(&mut self, name: &str, _waiting: bool) -> QueryResult<Option<LockRow>> {
        // No notifications across processes: waiters poll (see wait.rs).
        let stmt = Stmt::new("SELECT")
            .sql(COLUMNS)
            .sql(" FROM lockmgr_lock WHERE name = ")
            .bind_text(name);
        one(stmt, self)
    }

    fn release(&mut self, req: &ReleaseRequest<'_>) -> QueryResult<bool> {
        if let (Some(owner), Some(min_hold_us)) = (req.owner, req.min_hold_us) {
            // Held for less than the minimum: keep the row until created_at + min_hold,
            // under an owner token nobody has. Else fall through to the delete.
            let kept = Stmt::new(
                "UPDATE lockmgr_lock SET owner = owner || ':released', \
                 locked_until = strftime('%Y-%m-%d %H:%M:%f', created_at, printf('%.6f seconds', ",
            )
            .bind_opt_bigint(Some(min_hold_us))
            .sql(" / 1000000.0)), updated_at = ")
            .sql(NOW)
            .sql(" WHERE name = ")
            .bind_text(req.name)
            .sql(" AND owner = ")
            .bind_text(owner)
            .sql(" AND strftime('%Y-%m-%d %H:%M:%f', created_at, printf('%.6f seconds', ")
            .bind_opt_bigint(Some(min_hold_us))
            .sql(" / 1000000.0)) > ")
            .sql(NOW)
            .execute(self)?;
            if kept > 0 {
                return Ok(true);
            }
        }
        let stmt = Stmt::new("DELETE FROM lockmgr_lock WHERE name = ").bind_text(req.name);
        let stmt = stmt.and_owner(req.owner);
        Ok(stmt.execute(self)? > 0)
    }

    fn release_if_expired(&mut self, name: &str) -> QueryResult<bool> {
        let stmt = Stmt::new("DELETE FROM lockmgr_lock WHERE name = ")
            .bind_text(name)
            .sql(" AND locked_until <= ")
            .sql(NOW);
        Ok(stmt.execute(self)? > 0)
    }

    fn is_locked(&mut self, name: &str) -> QueryResult<bool> {
        let stmt = Stmt::new("SELECT EXISTS (SELECT 1 FROM lockmgr_lock WHERE name = ")
            .bind_text(name)
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
        Stmt::new("DELETE FROM lockmgr_lock WHERE locked_until <= ")
            .sql(NOW)
            .execute(self)
    }

    fn delete_all(&mut self) -> QueryResult<usize> {
        Stmt::new("DELETE FROM lockmgr_lock").execute(self)
    }

    fn clean_expired_batch(&mut self, limit: i64) -> QueryResult<usize> {
        Stmt::new(
            "DELETE FROM lockmgr_lock WHERE name IN \
             (SELECT name FROM lockmgr_lock WHERE locked_until <= ",
        )
        .sql(NOW)
        .sql(" LIMIT ")
        .bind_opt_bigint(Some(limit))
        .sql(")")
        .execute(self)
    }

    fn database_now(&mut self) -> QueryResult<chrono::DateTime<chrono::Utc>> {
        let now = Stmt::new("SELECT ").sql(NOW).sql(" AS value");
        Ok(now.get_result::<NaiveTime>(self)?.value.and_utc())
    }

    fn renew(&mut self, req: &RenewRequest<'_>) -> QueryResult<Option<LockRow>> {
        let stmt = Stmt::new("UPDATE lockmgr_lock SET locked_until = CASE WHEN ")
            .bind_opt_bigint(req.expires_us)
            .sql(" IS NULL OR locked_until IS NULL THEN NULL WHEN ")
            .bind_bool(req.add_time)
            .sql(
                " THEN strftime('%Y-%m-%d %H:%M:%f', \
                 max(locked_until, strftime('%Y-%m-%d %H:%M:%f', 'now')), printf('%.6f seconds', ",
            )
            .bind_opt_bigint(req.expires_us)
            .sql(
                " / 1000000.0)) ELSE max(locked_until, \
                 strftime('%Y-%m-%d %H:%M:%f', 'now', printf('%.6f seconds', ",
            )
            .bind_opt_bigint(req.expires_us)
            .sql(" / 1000000.0))) END, updated_at = ")
            .sql(NOW)
            .sql(" WHERE name = ")
            .bind_text(req.name);
        let stmt = stmt.and_owner(req.owner);
        one(stmt.sql(" RETURNING").sql(COLUMNS), self)
    }

    fn in_transaction(
        &mut self,
        body: &mut dyn FnMut(&mut dyn LockConn) -> Result<()>,
    ) -> Result<()> {
        self.immediate_transaction::<_, InTransaction, _>(|conn| Ok(body(conn)?))
            .map_err(Error::from)
    }

    fn migrate(&mut self) -> Result<Vec<String>, MigrationError> {
        // BEGIN IMMEDIATE: processes that open a fresh file at the same moment migrate
        // one after the other; the later ones find nothing to do.
        self.immediate_transaction(|conn| crate::migrate::run(conn, crate::migrate::SQLITE))
    }
}
