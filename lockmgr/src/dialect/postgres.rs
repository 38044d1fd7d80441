//! PostgreSQL: times are `timestamptz` and "now" is the server's `now()`; fences come
//! from the sequence `lockmgr_lock_fence_seq`.

use chrono::{DateTime, Utc};
use diesel::connection::{Connection, SimpleConnection};
use diesel::pg::PgConnection;
use diesel::sql_types::{BigInt, Nullable, Text, Timestamptz};
use diesel::{OptionalExtension, QueryResult, QueryableByName, RunQueryDsl};

use super::stmt::Stmt;
use super::{AcquireRequest, Flag, LockConn, ReleaseRequest, RenewRequest};
use crate::error::{Error, InTransaction, Result};
use crate::migrate::MigrationError;
use crate::model::LockRow;

const COLUMNS: &str =
    " name, owner, locked_by, lock_process, locked_until, created_at, updated_at, fence, now() AS db_now";

const LIVE: &str = " (locked_until IS NULL OR locked_until > now())";

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

#[derive(QueryableByName)]
struct PgTime {
    #[diesel(sql_type = Timestamptz)]
    value: DateTime<Utc>,
}

/// A statement that reads the whole table: sequential scans are off on lockmgr's
/// connections (see conn.rs), so allow them again for this one.
fn whole_table(conn: &mut PgConnection, sql: &'static str) -> QueryResult<usize> {
    conn.transaction(|conn| {
        conn.batch_execute("SET LOCAL enable_seqscan = on")?;
        Stmt::new(sql).execute(conn)
    })
}

fn one(stmt: Stmt<'_>, conn: &mut PgConnection) -> QueryResult<Option<LockRow>> {
    Ok(stmt
        .get_result::<PgRow>(conn)
        .optional()?
        .map(LockRow::from))
}

impl LockConn for PgConnection {
    fn acquire(&mut self, req: &AcquireRequest<'_>) -> QueryResult<Option<LockRow>> {
        // One statement: a plain insert, or — when the name exists — an update that
        // only happens if the existing row has expired. A live row makes the
        // statement return nothing; it never raises a unique violation.
        let stmt = Stmt::new(
            "INSERT INTO lockmgr_lock AS l \
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
        .sql(", now() + ")
        .bind_opt_bigint(req.expires_us)
        .sql(
            " * interval '1 microsecond', now(), now(), nextval('lockmgr_lock_fence_seq')) \
             ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner, \
             locked_by = EXCLUDED.locked_by, lock_process = EXCLUDED.lock_process, \
             locked_until = EXCLUDED.locked_until, created_at = EXCLUDED.created_at, \
             updated_at = EXCLUDED.updated_at, fence = EXCLUDED.fence, waiters = false \
             WHERE l.locked_until <= now() RETURNING",
        )
        .sql(COLUMNS);
        one(stmt, self)
    }

    fn find(&mut self, name: &str, waiting: bool) -> QueryResult<Option<LockRow>> {
        let stmt = if waiting {
            // Flag the row only if it is not flagged yet: a waiter polling a held lock
            // reads it without rewriting it (and without a dead row version) each time.
            Stmt::new("WITH flagged AS (UPDATE lockmgr_lock SET waiters = true WHERE name = ")
                .bind_text(name)
                .sql(" AND NOT waiters RETURNING")
                .sql(COLUMNS)
                .sql(") SELECT * FROM flagged UNION ALL SELECT")
                .sql(COLUMNS)
                .sql(" FROM lockmgr_lock WHERE name = ")
                .bind_text(name)
                .sql(" AND NOT EXISTS (SELECT 1 FROM flagged)")
        } else {
            Stmt::new("SELECT")
                .sql(COLUMNS)
                .sql(" FROM lockmgr_lock WHERE name = ")
                .bind_text(name)
        };
        one(stmt, self)
    }

    fn release(&mut self, req: &ReleaseRequest<'_>) -> QueryResult<bool> {
        // A plain delete: the trigger lockmgr_lock_release sends the NOTIFY when a
        // waiter has flagged the row. With a minimum hold not yet reached, the row is
        // kept until it is, under an owner token nobody has.
        let stmt = match (req.owner, req.min_hold_us) {
            (Some(owner), Some(min_hold_us)) => Stmt::new(
                "WITH kept AS (UPDATE lockmgr_lock SET owner = owner || ':released', \
                 locked_until = created_at + ",
            )
            .bind_opt_bigint(Some(min_hold_us))
            .sql(" * interval '1 microsecond', updated_at = now() WHERE name = ")
            .bind_text(req.name)
            .sql(" AND owner = ")
            .bind_text(owner)
            .sql(" AND created_at + ")
            .bind_opt_bigint(Some(min_hold_us))
            .sql(
                " * interval '1 microsecond' > now() RETURNING name), \
                 gone AS (DELETE FROM lockmgr_lock WHERE name = ",
            )
            .bind_text(req.name)
            .sql(" AND owner = ")
            .bind_text(owner)
            .sql(" AND created_at + ")
            .bind_opt_bigint(Some(min_hold_us))
            .sql(
                " * interval '1 microsecond' <= now() RETURNING name) \
                 SELECT name FROM kept UNION ALL SELECT name FROM gone",
            ),
            (owner, _) => {
                let stmt = Stmt::new("DELETE FROM lockmgr_lock WHERE name = ").bind_text(req.name);
                stmt.and_owner(owner)
            }
        };
        Ok(stmt.execute(self)? > 0)
    }

    fn release_if_expired(&mut self, name: &str) -> QueryResult<bool> {
        let stmt = Stmt::new("DELETE FROM lockmgr_lock WHERE name = ")
            .bind_text(name)
            .sql(" AND locked_until <= now()");
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
            .load::<PgRow>(self)?
            .into_iter()
            .map(LockRow::from)
            .collect())
    }

    fn clean_expired(&mut self) -> QueryResult<usize> {
        whole_table(self, "DELETE FROM lockmgr_lock WHERE locked_until <= now()")
    }

    fn delete_all(&mut self) -> QueryResult<usize> {
        whole_table(self, "DELETE FROM lockmgr_lock")
    }

    fn clean_expired_batch(&mut self, limit: i64) -> QueryResult<usize> {
        // Rows being acquired or released right now are skipped, not waited for; the
        // outer test re-checks each row under its lock. It reads the whole table:
        // sequential scans are allowed for this one statement.
        self.transaction(|conn| {
            conn.batch_execute("SET LOCAL enable_seqscan = on")?;
            Stmt::new(
                "DELETE FROM lockmgr_lock WHERE name IN (SELECT name FROM lockmgr_lock \
                 WHERE locked_until <= now() LIMIT ",
            )
            .bind_opt_bigint(Some(limit))
            .sql(" FOR UPDATE SKIP LOCKED) AND locked_until <= now()")
            .execute(conn)
        })
    }

    fn database_now(&mut self) -> QueryResult<DateTime<Utc>> {
        Ok(Stmt::new("SELECT now() AS value")
            .get_result::<PgTime>(self)?
            .value)
    }

    fn renew(&mut self, req: &RenewRequest<'_>) -> QueryResult<Option<LockRow>> {
        let stmt = Stmt::new("UPDATE lockmgr_lock SET locked_until = CASE WHEN ")
            .bind_opt_bigint(req.expires_us)
            .sql("::bigint IS NULL OR locked_until IS NULL THEN NULL WHEN ")
            .bind_bool(req.add_time)
            .sql(" THEN GREATEST(locked_until, now()) + ")
            .bind_opt_bigint(req.expires_us)
            .sql(" * interval '1 microsecond' ELSE GREATEST(locked_until, now() + ")
            .bind_opt_bigint(req.expires_us)
            .sql(" * interval '1 microsecond') END, updated_at = now() WHERE name = ")
            .bind_text(req.name);
        let stmt = stmt.and_owner(req.owner);
        one(stmt.sql(" RETURNING").sql(COLUMNS), self)
    }

    fn in_transaction(
        &mut self,
        body: &mut dyn FnMut(&mut dyn LockConn) -> Result<()>,
    ) -> Result<()> {
        self.transaction::<_, InTransaction, _>(|conn| Ok(body(conn)?))
            .map_err(Error::from)
    }

    fn migrate(&mut self) -> Result<Vec<String>, MigrationError> {
        // A transaction-scoped advisory lock: processes that open a fresh database at
        // the same moment migrate one after the other; the later ones find nothing to do.
        self.transaction(|conn| {
            Stmt::new("SELECT pg_advisory_xact_lock(7486352610973)").execute(conn)?;
            crate::migrate::run(conn, crate::migrate::POSTGRES)
        })
    }
}
