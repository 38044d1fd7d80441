//! The embedded migrations that create and upgrade the lock table.
//!
//! The SQL lives in the top-level `migrations/` folder (one folder per backend) and is
//! compiled into the library, so a store can create its table on first use and
//! `lockmgr migrate` needs no files at run time.

use diesel::backend::Backend;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

pub(crate) const POSTGRES: EmbeddedMigrations = embed_migrations!("migrations/postgres");
pub(crate) const SQLITE: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
#[cfg(feature = "mysql")]
pub(crate) const MYSQL: EmbeddedMigrations = embed_migrations!("migrations/mysql");

/// What diesel's migration harness fails with.
pub(crate) type MigrationError = Box<dyn std::error::Error + Send + Sync>;

/// Apply the pending migrations of `source`; the versions applied.
pub(crate) fn run<C, DB>(
    conn: &mut C,
    source: EmbeddedMigrations,
) -> Result<Vec<String>, MigrationError>
where
    C: MigrationHarness<DB>,
    DB: Backend,
{
    Ok(conn
        .run_pending_migrations(source)?
        .into_iter()
        .map(|version| version.to_string())
        .collect())
}
