//! The lock table in a database it shares with others: a table name of its own
//! (beside django-lockmgr's `lockmgr_lock`, or a second set of locks), lockmgr's own
//! migration ledger beside an application's diesel migrations, the upgrade of a
//! database migrated by lockmgr 0.1, and the printed SQL an application runs itself.

use std::time::Duration;

use diesel::prelude::*;
use diesel::sql_types::BigInt;
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use lockmgr::{Backend, Error, LockStore, SetLockOptions};
use testkit::TestDb;

/// An application's own migration (version 20260101000000).
const APP: EmbeddedMigrations = embed_migrations!("tests/fixtures/app-migrations");
/// lockmgr 0.1's migration, as it ran it: through diesel's harness.
const OLD_POSTGRES: EmbeddedMigrations =
    embed_migrations!("tests/fixtures/lockmgr-0.1-migrations/postgres");
const OLD_SQLITE: EmbeddedMigrations =
    embed_migrations!("tests/fixtures/lockmgr-0.1-migrations/sqlite");
#[cfg(feature = "mysql")]
const OLD_MYSQL: EmbeddedMigrations =
    embed_migrations!("tests/fixtures/lockmgr-0.1-migrations/mysql");

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// What these tests do on a connection of their own, whatever the backend.
trait Raw {
    fn run(&mut self, migrations: EmbeddedMigrations);
    fn revert_last(&mut self, migrations: EmbeddedMigrations) -> String;
    /// The versions in `__diesel_schema_migrations` (creating it if missing).
    fn diesel_versions(&mut self) -> Vec<String>;
    /// `SELECT COUNT(*) AS n …`.
    fn count(&mut self, sql: &str) -> i64;
}

impl<C> Raw for C
where
    C: Connection + MigrationHarness<C::Backend>,
    diesel::query_builder::SqlQuery: diesel::query_dsl::LoadQuery<'static, C, Count>,
{
    fn run(&mut self, migrations: EmbeddedMigrations) {
        self.run_pending_migrations(migrations).unwrap();
    }

    fn revert_last(&mut self, migrations: EmbeddedMigrations) -> String {
        self.revert_last_migration(migrations).unwrap().to_string()
    }

    fn diesel_versions(&mut self) -> Vec<String> {
        let mut versions: Vec<String> = self
            .applied_migrations()
            .unwrap()
            .iter()
            .map(|v| v.to_string())
            .collect();
        versions.sort();
        versions
    }

    fn count(&mut self, sql: &str) -> i64 {
        diesel::sql_query(sql)
            .get_result::<Count>(self)
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
            .n
    }
}

fn raw(db: &TestDb) -> Box<dyn Raw> {
    match db.backend() {
        Backend::Postgres => Box::new(PgConnection::establish(db.url()).unwrap()),
        #[cfg(feature = "mysql")]
        Backend::Mysql => Box::new(diesel::MysqlConnection::establish(db.url()).unwrap()),
        // The stores of a test write the same file at the same time (a background
        // clean of expired locks, say): this connection waits for them.
        _ => Box::new(testkit::sqlite_connection(db.url())),
    }
}

fn old_migrations(backend: Backend) -> EmbeddedMigrations {
    match backend {
        Backend::Postgres => OLD_POSTGRES,
        #[cfg(feature = "mysql")]
        Backend::Mysql => OLD_MYSQL,
        _ => OLD_SQLITE,
    }
}

/// django-lockmgr's table, as its Django migration makes it (`id` primary key).
fn create_django_table(db: &TestDb) {
    let (id, time) = match db.backend() {
        Backend::Postgres => ("id SERIAL PRIMARY KEY", "TIMESTAMPTZ"),
        Backend::Mysql => ("id INTEGER AUTO_INCREMENT PRIMARY KEY", "DATETIME(6)"),
        _ => ("id INTEGER PRIMARY KEY AUTOINCREMENT", "DATETIME"),
    };
    db.execute(&format!(
        "CREATE TABLE lockmgr_lock (\
            {id}, \
            name VARCHAR(255) NOT NULL UNIQUE, \
            locked_by VARCHAR(100) NOT NULL, \
            lock_process INTEGER NULL, \
            locked_until {time} NULL, \
            created_at {time} NOT NULL, \
            updated_at {time} NOT NULL); \
         INSERT INTO lockmgr_lock (name, locked_by, lock_process, locked_until, created_at, updated_at) \
         VALUES ('django-job', 'web1', 42, NULL, '2026-01-01 00:00:00', '2026-01-01 00:00:00');"
    ));
}

/// A schema-qualified name on this backend: PostgreSQL's schema `ops` (created
/// here), SQLite's `main`, MySQL's database of the test.
fn qualified(db: &TestDb, table: &str) -> String {
    match db.backend() {
        Backend::Postgres => {
            db.execute("CREATE SCHEMA IF NOT EXISTS ops");
            format!("ops.{table}")
        }
        Backend::Mysql => {
            let database = db.url().rsplit('/').next().unwrap();
            format!("{}.{table}", database.split('?').next().unwrap())
        }
        _ => format!("main.{table}"),
    }
}

fn names(store: &LockStore) -> Vec<String> {
    store
        .list_locks()
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect()
}

fn a_foreign_table_of_the_default_name_is_named_with_the_way_out(db: &TestDb) {
    create_django_table(db);
    let err = LockStore::open(db.url()).unwrap_err();
    assert!(matches!(err, Error::TableConflict { .. }), "{err:?}");
    let text = err.to_string();
    for needle in [
        "lockmgr_lock",
        "is not lockmgr's",
        "django-lockmgr",
        "locked_by",
        "table(",
        "--table",
    ] {
        assert!(text.contains(needle), "{needle:?} missing: {text}");
    }

    // With a table of its own, everything works beside django-lockmgr's.
    let store = LockStore::builder(db.url())
        .table("app_locks")
        .open()
        .unwrap();
    let lock = store
        .get_lock("job", Some(Duration::from_secs(60)))
        .unwrap();
    assert!(store.is_locked("job").unwrap());
    assert_eq!(names(&store), ["job"]);
    assert!(store.unlock(&lock).unwrap());
    assert!(store.migrate().unwrap().is_empty());
    let mut conn = raw(db);
    assert_eq!(
        conn.count("SELECT COUNT(*) AS n FROM lockmgr_lock WHERE name = 'django-job'"),
        1,
        "django-lockmgr's row is untouched"
    );
}

fn two_tables_keep_the_same_names_apart(db: &TestDb) {
    let default = db.store();
    let other = LockStore::builder(db.url())
        .table("other_locks")
        .open()
        .unwrap();
    let qualified_name = qualified(db, "third_locks");
    let third = LockStore::builder(db.url())
        .table(&qualified_name)
        .open()
        .unwrap();
    assert_eq!(third.table(), qualified_name);
    let mut fences = Vec::new();
    for store in [&default, &other, &third] {
        let first = store.get_lock("same", None).unwrap();
        let second = store.get_lock("second", None).unwrap();
        assert!(second.fence > first.fence);
        fences.push(first.fence);
        assert!(store.get_lock("same", None).unwrap_err().is_locked());
        assert_eq!(names(store), ["same", "second"]);
    }
    assert!(other.unlock("same").unwrap());
    assert!(default.is_locked("same").unwrap() && third.is_locked("same").unwrap());
    assert!(!other.is_locked("same").unwrap());
    let report = other
        .set_lock(["same", "second"], SetLockOptions::new(None))
        .unwrap();
    assert_eq!((report.created, report.renewed), (1, 1));
    assert_eq!(third.reset_locks().unwrap(), 2);
    assert_eq!(names(&default), ["same", "second"]);
    assert!(names(&third).is_empty());
    {
        let guard = third.lock_mgr("guarded").acquire().unwrap();
        assert!(third.is_locked("guarded").unwrap());
        assert!(!default.is_locked("guarded").unwrap());
        drop(guard);
    }
    assert!(!third.is_locked("guarded").unwrap());
}

fn an_application_keeps_its_diesel_ledger_to_itself(db: &TestDb) {
    let mut conn = raw(db);
    conn.run(APP);
    let store = db.store(); // lockmgr migrates its own table here
    store.get_lock("job", None).unwrap();
    assert_eq!(conn.diesel_versions(), ["20260101000000"]);
    assert_eq!(conn.revert_last(APP), "20260101000000");
    assert!(conn.diesel_versions().is_empty());
    // lockmgr's table and ledger are not the application's business, and stay.
    assert!(store.is_locked("job").unwrap());
    assert!(LockStore::open(db.url())
        .unwrap()
        .migrate()
        .unwrap()
        .is_empty());
}

fn a_database_migrated_by_lockmgr_0_1_is_taken_over(db: &TestDb) {
    let mut conn = raw(db);
    conn.run(APP);
    conn.run(old_migrations(db.backend()));
    assert_eq!(conn.diesel_versions(), ["20260101000000", "20261127000000"]);
    // A lock held meanwhile, in the table 0.1 made. On SQLite, taken as 0.1 took it
    // (its fences came from a counter table, which a later migration folds into the
    // lock table); elsewhere, the statements are still those of 0.1.
    if db.backend() == Backend::Sqlite {
        db.execute(
            "INSERT INTO lockmgr_lock (name, owner, locked_by, lock_process, locked_until, \
             created_at, updated_at, fence) VALUES ('kept', 'token-of-0.1', 'host', 1, NULL, \
             strftime('%Y-%m-%d %H:%M:%f', 'now'), strftime('%Y-%m-%d %H:%M:%f', 'now'), \
             (SELECT value + 1 FROM lockmgr_fence WHERE id = 1))",
        );
    } else {
        LockStore::builder(db.url())
            .migrate(false)
            .open()
            .unwrap()
            .get_lock("kept", None)
            .unwrap();
    }

    let store = LockStore::open(db.url()).unwrap();
    assert!(store.migrate().unwrap().is_empty(), "nothing left to do");
    assert!(store.is_locked("kept").unwrap());
    let held = store.find_lock("kept").unwrap().unwrap();
    assert!(held.fence >= 1);
    // The fences handed out before the upgrade are not handed out again.
    assert!(store.get_lock("new", None).unwrap().fence > held.fence);
    assert_eq!(names(&store), ["kept", "new"]);
    assert_eq!(conn.diesel_versions(), ["20260101000000"]);
    assert_eq!(
        conn.count(
            "SELECT COUNT(*) AS n FROM lockmgr_lock_migrations WHERE version = '20261127000000'"
        ),
        1
    );
    // The application's ledger works again for the application.
    assert_eq!(conn.revert_last(APP), "20260101000000");
    assert!(store.unlock("kept").unwrap());
}

fn the_printed_sql_gives_a_table_used_without_migrating(db: &TestDb) {
    let builder = LockStore::builder(db.url()).table("printed_locks");
    let sql = builder.migration_sql().unwrap();
    assert!(sql.contains("printed_locks"), "{sql}");
    assert!(!sql.contains("lockmgr_lock\""), "{sql}");
    db.execute(&sql);

    let store = builder.clone().migrate(false).open().unwrap();
    let first = store.get_lock("a", Some(Duration::from_secs(60))).unwrap();
    assert!(store.get_lock("b", None).unwrap().fence > first.fence);
    assert!(store.get_lock("a", None).unwrap_err().is_locked());
    assert_eq!(names(&store), ["a", "b"]);
    // A store that does migrate finds the table up to date.
    assert!(builder.open().unwrap().migrate().unwrap().is_empty());
    // Only that table: the default one was not made.
    let default = LockStore::builder(db.url()).migrate(false).open().unwrap();
    assert!(default.is_locked("a").is_err());
}

testkit::backend_tests!(
    a_foreign_table_of_the_default_name_is_named_with_the_way_out,
    two_tables_keep_the_same_names_apart,
    an_application_keeps_its_diesel_ledger_to_itself,
    a_database_migrated_by_lockmgr_0_1_is_taken_over,
    the_printed_sql_gives_a_table_used_without_migrating,
);

#[test]
fn table_names_other_than_plain_identifiers_are_refused() {
    let db = TestDb::sqlite();
    for name in [
        "",
        "Locks",
        "locks;drop table x",
        "lo\"cks",
        "a.b.c",
        "9locks",
        "locks ",
    ] {
        let err = LockStore::builder(db.url()).table(name).open().unwrap_err();
        assert!(
            matches!(err, Error::InvalidTable { .. }),
            "{name:?}: {err:?}"
        );
        assert!(err.to_string().contains("invalid lock table name"), "{err}");
    }
    // The SQL is printed without connecting: an unreachable server is fine.
    let sql = LockStore::builder("postgres://app:pw@127.0.0.1:1/app")
        .table("ops.locks")
        .migration_sql()
        .unwrap();
    assert!(sql.contains("CREATE TABLE \"ops\".\"locks\""), "{sql}");
    assert!(sql.contains("pg_notify('ops.locks_release'"), "{sql}");
}

/// PostgreSQL: a release of a waited-for lock is announced on its table's own
/// `NOTIFY` channel, and the waiters' listener `LISTEN`s on that channel.
#[test]
fn a_table_has_its_own_release_channel() {
    let db = TestDb::postgres();
    let open = || {
        LockStore::builder(db.url())
            .table("notified_locks")
            .open()
            .unwrap()
    };
    let mut outside = PgConnection::establish(db.url()).unwrap();
    diesel::connection::SimpleConnection::batch_execute(
        &mut outside,
        "LISTEN \"notified_locks_release\"",
    )
    .unwrap();
    let holder = open();
    let held = holder.get_lock("x", None).unwrap();
    let waiter = open();
    let waiting = std::thread::spawn(move || {
        waiter
            .lock_mgr("x")
            .wait(Duration::from_secs(60))
            .acquire()
            .map(|guard| guard.fence())
    });
    let mut conn = raw(&db);
    assert!(
        testkit::eventually(Duration::from_secs(20), || {
            conn.count("SELECT COUNT(*) AS n FROM notified_locks WHERE waiters") == 1
                && conn.count(
                    "SELECT COUNT(*) AS n FROM pg_stat_activity \
                     WHERE query = 'LISTEN \"notified_locks_release\"' AND pid <> pg_backend_pid()",
                ) >= 2
        }),
        "no waiter flagged the row and listened on the table's channel"
    );
    assert!(holder.unlock(&held).unwrap());
    assert!(waiting.join().unwrap().unwrap() > held.fence);
    let notes = testkit::awaited_notifications(&mut outside);
    assert_eq!(
        notes,
        [("notified_locks_release".to_string(), "x".to_string())]
    );
}
