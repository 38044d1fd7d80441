//! Every lock statement, written once.
//!
//! The three databases differ in a handful of expressions only — how to say "now",
//! how to add microseconds to a time, where the next fence comes from, how to quote a
//! name, how to compare a name by its bytes — and those are the [`Flavor`]'s. Each
//! statement below is written once in terms of them, and built once per store (the
//! table name is part of its text), so diesel's statement cache hits on every later
//! call. What a backend really does differently (PostgreSQL's acquire that never locks a
//! live row, its single-statement hold-at-least release and waiter flag, MySQL's
//! acquire without `RETURNING`) is built in its own file from the same pieces.

use super::stmt::{Slot, Sql};
use crate::backend::table::{literal, TableName, FENCE_ROW};
use crate::database_url::Backend;

/// The columns of a [`Taken`](super::Taken), what an acquisition reads back.
pub(crate) const TAKEN_COLUMNS: &str = " fence, locked_until, created_at";

/// The SQL pieces in which the backends differ.
pub(crate) struct Flavor {
    pub(crate) backend: Backend,
    /// The lock table, quoted.
    pub(crate) table: String,
    /// The database clock now, fixed for the whole statement.
    pub(crate) now: &'static str,
    /// The value of `fence` for a new acquisition.
    pub(crate) next_fence: String,
}

impl Flavor {
    pub(crate) fn new(backend: Backend, table: &TableName) -> Flavor {
        let now = match backend {
            Backend::Postgres => "now()",
            Backend::Mysql => "UTC_TIMESTAMP(6)",
            _ => "strftime('%Y-%m-%d %H:%M:%f', 'now')",
        };
        let next_fence = match backend {
            Backend::Postgres => format!(
                "nextval({})",
                literal(&table.fence_sequence().quoted(backend))
            ),
            // The trigger sets it (see the migration).
            Backend::Mysql => "0".to_string(),
            _ => format!(
                "(SELECT fence + 1 FROM {} WHERE name = {FENCE_ROW})",
                table.quoted(backend)
            ),
        };
        Flavor {
            backend,
            table: table.quoted(backend),
            now,
            next_fence,
        }
    }

    /// The columns of a lock row, with the database clock as `db_now`.
    pub(crate) fn columns(&self) -> String {
        format!(
            " name, owner, locked_by, lock_process, locked_until, created_at, updated_at, \
             fence, {} AS db_now",
            self.now
        )
    }

    /// The row is a lock: SQLite's table also holds the fence row (see
    /// [`FENCE_ROW`]), which statements over the whole table leave alone.
    fn locks_only(&self) -> String {
        match self.backend {
            Backend::Sqlite => format!("name <> {FENCE_ROW}"),
            _ => "true".to_string(),
        }
    }

    /// The row has not expired.
    pub(crate) fn live(&self) -> String {
        format!("(locked_until IS NULL OR locked_until > {})", self.now)
    }

    /// `name = <the name>`, by its bytes and through the primary key (MySQL's column
    /// is `VARBINARY`: the cast keeps the connection's collation out of it).
    pub(crate) fn name_is(&self, sql: Sql) -> Sql {
        match self.backend {
            Backend::Mysql => sql
                .text(" name = CAST(")
                .bind(Slot::Name)
                .text(" AS BINARY)"),
            _ => sql.text(" name = ").bind(Slot::Name),
        }
    }

    /// `... AND owner = <the owner token>`.
    pub(crate) fn owner_is(&self, sql: Sql) -> Sql {
        sql.text(" AND owner = ").bind(Slot::Owner)
    }

    /// The time `base` plus the microseconds of `slot`.
    pub(crate) fn plus(&self, sql: Sql, base: &str, slot: Slot) -> Sql {
        match self.backend {
            Backend::Postgres => sql
                .text(&format!("{base} + "))
                .bind(slot)
                .text(" * interval '1 microsecond'"),
            Backend::Mysql => sql
                .text(&format!("{base} + INTERVAL "))
                .bind(slot)
                .text(" MICROSECOND"),
            // Times are text in one format: compute in it. The modifier is
            // `<seconds>.<6 digits> seconds`, written with integer arithmetic (a float
            // format, `%.6f`, costs more than the rest of the expression).
            _ => sql
                .text(&format!(
                    "strftime('%Y-%m-%d %H:%M:%f', {base}, printf('%d.%06d seconds', "
                ))
                .bind(slot)
                .text(" / 1000000, ")
                .bind(slot)
                .text(" % 1000000))"),
        }
    }

    /// The expiry of `slot` from `now`: `NULL` (never) when the slot is `NULL`.
    pub(crate) fn expiry(&self, sql: Sql, now: &str) -> Sql {
        let sql = self.is_null(sql.text("CASE WHEN "), Slot::Expires);
        self.plus(sql.text(" THEN NULL ELSE "), now, Slot::Expires)
            .text(" END")
    }

    /// `<slot> IS NULL` (typed on PostgreSQL, which cannot infer it).
    fn is_null(&self, sql: Sql, slot: Slot) -> Sql {
        let sql = sql.bind(slot);
        match self.backend {
            Backend::Postgres => sql.text("::bigint IS NULL"),
            _ => sql.text(" IS NULL"),
        }
    }

    /// The later of two times.
    fn greatest(&self) -> &'static str {
        match self.backend {
            Backend::Sqlite => "max",
            _ => "GREATEST",
        }
    }

    /// The owner token of a row kept after its release: one nobody has.
    fn released_owner(&self) -> &'static str {
        match self.backend {
            Backend::Mysql => "CONCAT(owner, ':released')",
            _ => "owner || ':released'",
        }
    }

    /// `INSERT INTO <table><alias> (<the columns of a new row>) `.
    pub(crate) fn insert_into(&self, alias: &str) -> Sql {
        Sql::new(&format!(
            "INSERT INTO {}{alias} \
             (name, owner, locked_by, lock_process, locked_until, created_at, updated_at, fence) ",
            self.table
        ))
    }

    /// The values of a new row taken at `now` (an expression for the database clock),
    /// in the order of [`insert_into`](Flavor::insert_into)'s columns, comma-separated.
    pub(crate) fn row_values(&self, sql: Sql, now: &str) -> Sql {
        let sql = sql
            .bind(Slot::Name)
            .text(", ")
            .bind(Slot::Owner)
            .text(", ")
            .bind(Slot::LockedBy)
            .text(", ")
            .bind(Slot::LockProcess)
            .text(", ");
        self.expiry(sql, now)
            .text(&format!(", {now}, {now}, {}", self.next_fence))
    }

    /// `ON CONFLICT … DO UPDATE … RETURNING …` after an insert into `<table> AS l`: the
    /// existing row is taken over (with `extra_set` added to its `SET`) only if it has
    /// expired (by the new row's `created_at`, which is the statement's now); a live one
    /// makes the statement return nothing. Returns the [`TAKEN_COLUMNS`].
    pub(crate) fn take_over_expired(&self, extra_set: &str) -> String {
        format!(
            " ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, \
             locked_by = excluded.locked_by, lock_process = excluded.lock_process, \
             locked_until = excluded.locked_until, created_at = excluded.created_at, \
             updated_at = excluded.updated_at, fence = excluded.fence{extra_set} \
             WHERE l.locked_until <= excluded.created_at RETURNING{TAKEN_COLUMNS}"
        )
    }

    /// `DELETE FROM <table> WHERE name = ?`.
    pub(crate) fn delete_named(&self) -> Sql {
        self.name_is(Sql::new(&format!("DELETE FROM {} WHERE", self.table)))
    }

    /// Held for less than the minimum: keep the row until `created_at` + `MinHold`
    /// under an owner token nobody has (no row matches otherwise).
    pub(crate) fn keep_until_min_hold(&self) -> Sql {
        let t = &self.table;
        let sql = Sql::new(&format!(
            "UPDATE {t} SET owner = {}, locked_until = ",
            self.released_owner()
        ));
        let sql = self.plus(sql, "created_at", Slot::MinHold);
        let sql = self.name_is(sql.text(&format!(", updated_at = {} WHERE", self.now)));
        let sql = self.plus(
            self.owner_is(sql).text(" AND "),
            "created_at",
            Slot::MinHold,
        );
        sql.text(&format!(" > {}", self.now))
    }

    /// `SELECT <columns> FROM <table> WHERE name = ?`.
    fn select_named(&self) -> Sql {
        self.name_is(Sql::new(&format!(
            "SELECT{} FROM {} WHERE",
            self.columns(),
            self.table
        )))
    }
}

/// The statements of one store.
pub(crate) struct Statements {
    /// Insert the row, or take over an expired one; returns the row if taken.
    pub(crate) acquire: Sql,
    /// The row of a name.
    pub(crate) find: Sql,
    /// The row of a name if it carries an owner token (MySQL's read-back).
    #[cfg_attr(not(feature = "mysql"), allow(dead_code))]
    pub(crate) find_owned: Sql,
    /// The [`TAKEN_COLUMNS`] of a name's row if it carries an owner token (MySQL's
    /// read-back after an acquisition).
    #[cfg_attr(not(feature = "mysql"), allow(dead_code))]
    pub(crate) find_taken: Sql,
    /// PostgreSQL: the row of a name, flagged as waited for.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) find_waiting: Option<Sql>,
    /// Delete the row of a name.
    pub(crate) release_any: Sql,
    /// Delete the row of a name if it carries an owner token.
    pub(crate) release_owned: Sql,
    /// See [`Flavor::keep_until_min_hold`].
    pub(crate) release_kept: Sql,
    /// PostgreSQL: keep or delete, in one statement; counts the rows either way.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) release_held: Option<Sql>,
    pub(crate) release_if_expired: Sql,
    pub(crate) is_locked: Sql,
    pub(crate) list_live: Sql,
    pub(crate) clean_expired: Sql,
    pub(crate) delete_all: Sql,
    pub(crate) clean_expired_batch: Sql,
    pub(crate) database_now: Sql,
    pub(crate) renew_any: Sql,
    pub(crate) renew_owned: Sql,
}

impl Statements {
    /// The statements of the lock table `table` on `backend`.
    pub(crate) fn new(backend: Backend, table: &TableName) -> Statements {
        let f = Flavor::new(backend, table);
        let t = &f.table;
        let now = f.now;
        let returning = if backend == Backend::Mysql {
            String::new()
        } else {
            format!(" RETURNING{}", f.columns())
        };
        let renew_any = renew(&f);
        let renew_owned = f.owner_is(renew(&f)).text(&returning);
        let statements = Statements {
            acquire: upsert(&f),
            find: f.select_named(),
            find_owned: f.owner_is(f.select_named()),
            find_taken: f.owner_is(f.name_is(Sql::new(&format!(
                "SELECT{TAKEN_COLUMNS} FROM {t} WHERE"
            )))),
            find_waiting: None,
            release_any: f.delete_named(),
            release_owned: f.owner_is(f.delete_named()),
            release_kept: f.keep_until_min_hold(),
            release_held: None,
            release_if_expired: f
                .delete_named()
                .text(&format!(" AND locked_until <= {now}")),
            is_locked: f
                .name_is(Sql::new(&format!("SELECT EXISTS (SELECT 1 FROM {t} WHERE")))
                .text(&format!(" AND {}) AS value", f.live())),
            list_live: Sql::new(&format!(
                "SELECT{} FROM {t} WHERE {} AND {} ORDER BY name",
                f.columns(),
                f.live(),
                f.locks_only()
            )),
            clean_expired: Sql::new(&format!("DELETE FROM {t} WHERE locked_until <= {now}")),
            delete_all: Sql::new(&format!("DELETE FROM {t} WHERE {}", f.locks_only())),
            clean_expired_batch: Sql::new(&format!(
                "DELETE FROM {t} WHERE name IN (SELECT name FROM {t} WHERE locked_until <= {now} LIMIT "
            ))
            .bind(Slot::Limit)
            .text(if backend == Backend::Postgres {
                // Rows being acquired or released right now are skipped, not waited
                // for; the outer test re-checks each row under its lock.
                " FOR UPDATE SKIP LOCKED"
            } else {
                ""
            })
            .text(&format!(") AND locked_until <= {now}")),
            database_now: Sql::new(&format!("SELECT {now} AS value")),
            renew_any: renew_any.text(&returning),
            renew_owned,
        };
        match backend {
            #[cfg(feature = "postgres")]
            Backend::Postgres => super::postgres::own_statements(&f, statements),
            #[cfg(feature = "mysql")]
            Backend::Mysql => super::mysql::own_statements(&f, statements),
            _ => statements,
        }
    }
}

/// One atomic statement: a plain insert, or — when the name exists — an update that
/// only happens if the existing row has expired. A live row makes it return nothing;
/// it never raises a unique violation. The database clock is read once, in a
/// subquery (SQLite evaluates each `strftime(…, 'now')` of a statement anew, and
/// formats its text each time). (PostgreSQL has its own, which does not lock a live
/// row: see `postgres.rs`; MySQL has no `RETURNING`: see `mysql.rs`.)
fn upsert(f: &Flavor) -> Sql {
    let sql = f.row_values(f.insert_into(" AS l").text("SELECT "), "clock.now");
    // `WHERE true`: SQLite's parser needs it before `ON CONFLICT` after a `SELECT`.
    sql.text(&format!(
        " FROM (SELECT {} AS now) AS clock WHERE true",
        f.now
    ))
    .text(&f.take_over_expired(""))
}

/// Extend the expiry of a name's row: never shortened, unless made "never expires";
/// with `AddTime`, added to the current expiry (counted from now if that passed).
/// Without `RETURNING` and owner check: the callers add what they need.
fn renew(f: &Flavor) -> Sql {
    let (now, greatest) = (f.now, f.greatest());
    let sql = Sql::new(&format!("UPDATE {} SET locked_until = CASE WHEN ", f.table));
    let sql = f
        .is_null(sql, Slot::Expires)
        .text(" OR locked_until IS NULL THEN NULL WHEN ")
        .bind(Slot::AddTime)
        .text(" THEN ");
    let sql = f.plus(
        sql,
        &format!("{greatest}(locked_until, {now})"),
        Slot::Expires,
    );
    let sql = f.plus(
        sql.text(&format!(" ELSE {greatest}(locked_until, ")),
        now,
        Slot::Expires,
    );
    f.name_is(sql.text(&format!(") END, updated_at = {now} WHERE")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_carry_the_table_name_quoted() {
        let table = TableName::parse("ops.jobs").unwrap();
        let pg = Statements::new(Backend::Postgres, &table);
        assert_eq!(
            pg.is_locked.shown(),
            "SELECT EXISTS (SELECT 1 FROM \"ops\".\"jobs\" WHERE name = ? AND \
             (locked_until IS NULL OR locked_until > now())) AS value"
        );
        assert!(pg
            .acquire
            .shown()
            .contains("nextval('\"ops\".\"jobs_fence_seq\"')"));
        let sqlite = Statements::new(Backend::Sqlite, &TableName::default());
        assert!(sqlite.acquire.shown().contains(
            "(SELECT fence + 1 FROM \"lockmgr_lock\" WHERE name = (char(1) || 'last fence'))"
        ));
        assert_eq!(
            sqlite.release_if_expired.shown(),
            "DELETE FROM \"lockmgr_lock\" WHERE name = ? AND \
             locked_until <= strftime('%Y-%m-%d %H:%M:%f', 'now')"
        );
    }
}
