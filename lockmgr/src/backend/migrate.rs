//! The migrations that create and upgrade the lock table, and lockmgr's own ledger of
//! them.
//!
//! The SQL lives in the top-level `migrations/` folder (one folder per backend,
//! packaged inside the crate) and is compiled into the library, so a store can create
//! its table on first use and `lockmgr migrate` needs no files at run time. Each file
//! is a template: the names in braces (`{table}`, `{fence_seq}`, …) are filled in
//! from the store's table name, quoted for the backend.
//!
//! Which migrations ran is kept in a small table of lockmgr's own next to the lock
//! table (`<table>_migrations`), never in the application's diesel ledger
//! (`__diesel_schema_migrations`). Versions before 0.2 recorded themselves there: a
//! database migrated that way is taken over — lockmgr's rows move from diesel's
//! ledger to lockmgr's, and the lock table is kept as it is.

use std::collections::BTreeSet;

use super::dialect::LockConn;
use super::table::{literal, quote, TableName, FENCE_ROW};
use crate::database_url::Backend;

/// One migration: its version (as diesel recorded it before lockmgr had a ledger of
/// its own) and the template of its SQL.
struct Migration {
    version: &'static str,
    up: &'static str,
}

/// The migrations of a backend, oldest first.
fn migrations(backend: Backend) -> &'static [Migration] {
    match backend {
        Backend::Postgres => &[Migration {
            version: "20261127000000",
            up: include_str!(
                "../../migrations/postgres/2026-11-27-000000_lockmgr_create_locks/up.sql"
            ),
        }],
        Backend::Mysql => &[Migration {
            version: "20261127000000",
            up: include_str!(
                "../../migrations/mysql/2026-11-27-000000_lockmgr_create_locks/up.sql"
            ),
        }],
        _ => &[
            Migration {
                version: "20261127000000",
                up: include_str!(
                    "../../migrations/sqlite/2026-11-27-000000_lockmgr_create_locks/up.sql"
                ),
            },
            Migration {
                version: "20261130000000",
                up: include_str!(
                    "../../migrations/sqlite/2026-11-30-000000_lockmgr_fence_row/up.sql"
                ),
            },
        ],
    }
}

/// The ledger of applied versions, created when missing.
const LEDGER: &str = "CREATE TABLE IF NOT EXISTS {ledger} (\n    \
    version VARCHAR(50) NOT NULL PRIMARY KEY,\n    \
    run_on  TIMESTAMP NOT NULL DEFAULT CURRENT_TIMESTAMP\n);\n";

/// The diesel ledger earlier versions of lockmgr recorded themselves in.
const DIESEL_LEDGER: &str = "__diesel_schema_migrations";

/// Columns only lockmgr's lock table has (together).
const OWN_COLUMNS: [&str; 2] = ["owner", "fence"];

/// Why a migration did not run.
#[derive(Debug)]
pub(crate) enum MigrationError {
    /// A statement failed, or another process's migration took too long.
    Failed(String),
    /// A table of that name exists and is not lockmgr's.
    Conflict { table: String, reason: String },
}

impl From<diesel::result::Error> for MigrationError {
    fn from(err: diesel::result::Error) -> Self {
        MigrationError::Failed(err.to_string())
    }
}

impl From<&str> for MigrationError {
    fn from(message: &str) -> Self {
        MigrationError::Failed(message.to_string())
    }
}

/// `template` with every `{name}` filled in for `table` on `backend`.
fn render(template: &str, backend: Backend, table: &TableName) -> String {
    let q = |name: &TableName| name.quoted(backend);
    let bare = |name: &TableName| quote(name.bare(), backend);
    let mut out = String::with_capacity(template.len() + 256);
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else {
            break;
        };
        let key = &rest[open + 1..open + close];
        let value = match key {
            "table" => q(table),
            "table_bare" => bare(table),
            "fence_seq" => q(&table.fence_sequence()),
            "fence_seq_text" => literal(&q(&table.fence_sequence())),
            "fence_table" => q(&table.fence_table()),
            "fence_table_bare" => bare(&table.fence_table()),
            "notify_function" => q(&table.notify_function()),
            "channel_text" => literal(&table.channel()),
            // PostgreSQL: a trigger takes its table's schema, never a qualified name.
            "release_trigger" => bare(&table.trigger("_release")),
            "fence_trigger" => q(&table.trigger("_fence")),
            "fence_insert_trigger" => q(&table.trigger("_fence_insert")),
            "fence_update_trigger" => q(&table.trigger("_fence_update")),
            "fence_row" => FENCE_ROW.to_string(),
            "ledger" => q(&table.ledger()),
            // Not a name of ours (none of the templates has one): kept as written.
            other => format!("{{{other}}}"),
        };
        out.push_str(&value);
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    out
}

/// The SQL that records `version` in the ledger of `table`.
fn record(backend: Backend, table: &TableName, version: &str) -> String {
    format!(
        "INSERT INTO {} (version) VALUES ({});\n",
        table.ledger().quoted(backend),
        literal(version)
    )
}

/// Everything lockmgr would run on an empty database for `table`, as one script: the
/// ledger, every migration, and their versions recorded. What `lockmgr migrate
/// --print` prints, for an application that keeps the table in its own migrations.
pub(crate) fn script(backend: Backend, table: &TableName) -> String {
    let mut out = format!(
        "-- lockmgr's lock table {table} on {backend}, and the ledger of its migrations.\n\
         -- A store opened on this database then finds nothing to migrate.\n\n"
    );
    out.push_str(&render(LEDGER, backend, table));
    for migration in migrations(backend) {
        out.push('\n');
        out.push_str(&render(migration.up, backend, table));
        out.push('\n');
        out.push_str(&record(backend, table, migration.version));
    }
    out
}

/// The query that lists the columns of `table` (no rows: no such table), as `value`.
fn columns_query(backend: Backend, table: &TableName) -> String {
    match backend {
        Backend::Postgres => format!(
            "SELECT attname::text AS value FROM pg_attribute \
             WHERE attrelid = to_regclass({}) AND attnum > 0 AND NOT attisdropped",
            literal(&table.quoted(backend))
        ),
        Backend::Mysql => format!(
            "SELECT CAST(column_name AS CHAR) AS value FROM information_schema.columns \
             WHERE table_schema = {} AND table_name = {}",
            table
                .schema()
                .map_or_else(|| "DATABASE()".to_string(), literal),
            literal(table.bare())
        ),
        _ => format!(
            "SELECT name AS value FROM pragma_table_info({}, {})",
            literal(table.bare()),
            literal(table.schema().unwrap_or("main"))
        ),
    }
}

/// Apply the pending migrations of `table` on `conn` (the caller serializes this
/// against other processes); the versions applied now.
pub(crate) fn run(
    conn: &mut dyn LockConn,
    backend: Backend,
    table: &TableName,
) -> Result<Vec<String>, MigrationError> {
    conn.batch(&render(LEDGER, backend, table))?;
    let ledger = table.ledger().quoted(backend);
    let mut done: BTreeSet<String> = conn
        .texts(&format!("SELECT version AS value FROM {ledger}"))?
        .into_iter()
        .collect();
    if *table == TableName::default() {
        take_over_diesel_ledger(conn, backend, table, &mut done)?;
    }
    let mut applied = Vec::new();
    for (index, migration) in migrations(backend).iter().enumerate() {
        if done.contains(migration.version) {
            continue;
        }
        if index == 0 && is_ours(conn, backend, table)? {
            // The table was made by hand from the printed script, without its ledger
            // lines: keep it.
            conn.batch(&record(backend, table, migration.version))?;
            continue;
        }
        conn.batch(&render(migration.up, backend, table))?;
        conn.batch(&record(backend, table, migration.version))?;
        applied.push(migration.version.to_string());
    }
    Ok(applied)
}

/// Whether `table` exists as lockmgr's lock table; an error when it exists as
/// something else (django-lockmgr's table of the same name, say).
fn is_ours(
    conn: &mut dyn LockConn,
    backend: Backend,
    table: &TableName,
) -> Result<bool, MigrationError> {
    let columns = conn.texts(&columns_query(backend, table))?;
    if columns.is_empty() {
        return Ok(false);
    }
    if OWN_COLUMNS
        .iter()
        .all(|own| columns.iter().any(|c| c.eq_ignore_ascii_case(own)))
    {
        return Ok(true);
    }
    let django = ["id", "name", "locked_by", "lock_process", "locked_until"]
        .iter()
        .all(|column| columns.iter().any(|c| c == column));
    Err(MigrationError::Conflict {
        table: table.to_string(),
        reason: format!(
            "a table of that name exists and is not lockmgr's (its columns: {}){}",
            columns.join(", "),
            if django {
                "; it looks like django-lockmgr's"
            } else {
                ""
            }
        ),
    })
}

/// Earlier versions recorded lockmgr's migrations in diesel's ledger, where they break
/// the application's own `revert_last_migration`: move them to lockmgr's ledger (when
/// the lock table is there) and out of diesel's. Diesel's table itself stays.
fn take_over_diesel_ledger(
    conn: &mut dyn LockConn,
    backend: Backend,
    table: &TableName,
    done: &mut BTreeSet<String>,
) -> Result<(), MigrationError> {
    let diesel = TableName::parse(DIESEL_LEDGER).map_err(MigrationError::Failed)?;
    if conn.texts(&columns_query(backend, &diesel))?.is_empty() {
        return Ok(());
    }
    let ours: Vec<String> = migrations(backend)
        .iter()
        .map(|m| literal(m.version))
        .collect();
    let listed = format!(
        "FROM {} WHERE version IN ({})",
        diesel.quoted(backend),
        ours.join(", ")
    );
    let found = conn.texts(&format!("SELECT version AS value {listed}"))?;
    if found.is_empty() {
        return Ok(());
    }
    if is_ours(conn, backend, table)? {
        for version in &found {
            if done.insert(version.clone()) {
                conn.batch(&record(backend, table, version))?;
            }
        }
    }
    conn.batch(&format!("DELETE {listed}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_template_name_is_filled_in() {
        for backend in [Backend::Postgres, Backend::Sqlite, Backend::Mysql] {
            for table in [TableName::default(), TableName::parse("ops.jobs").unwrap()] {
                let script = script(backend, &table);
                assert!(!script.contains('{'), "{backend}: {script}");
                let code: Vec<&str> = script
                    .lines()
                    .filter(|line| !line.trim_start().starts_with("--"))
                    .collect();
                let default_names = code.iter().any(|line| line.contains("lockmgr_"));
                assert_eq!(default_names, table == TableName::default(), "{script}");
            }
        }
    }

    #[test]
    fn the_default_table_keeps_the_names_of_earlier_versions() {
        let pg = script(Backend::Postgres, &TableName::default());
        assert!(
            pg.contains("CREATE SEQUENCE \"lockmgr_lock_fence_seq\""),
            "{pg}"
        );
        assert!(
            pg.contains("pg_notify('lockmgr_release', OLD.name)"),
            "{pg}"
        );
        assert!(
            pg.contains("CREATE TRIGGER \"lockmgr_lock_release\" AFTER DELETE ON \"lockmgr_lock\"")
        );
        // SQLite's fence table of 0.1 is created, then folded into the lock table.
        let sqlite = script(Backend::Sqlite, &TableName::default());
        assert!(
            sqlite.contains("CREATE TABLE \"lockmgr_fence\""),
            "{sqlite}"
        );
        assert!(sqlite.contains("DROP TABLE \"lockmgr_fence\""), "{sqlite}");
    }
}
