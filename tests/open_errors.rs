//! Opening a store that cannot work gives a clear error, never a panic, and never
//! shows a password.

use std::time::Duration;

use lockmgr::{Error, LockStore};

fn open_err(url: &str) -> Error {
    LockStore::builder(url)
        .connection_timeout(Duration::from_secs(2))
        .open()
        .expect_err(url)
}

#[test]
fn unreachable_postgres_is_a_connection_error_without_password() {
    // Port 1 on loopback: nothing listens there.
    let err = open_err("postgres://app:hunter2-secret@127.0.0.1:1/locks");
    assert!(matches!(err, Error::Connection { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("postgres://app:***@127.0.0.1:1/locks"),
        "{text}"
    );
    assert!(!text.contains("hunter2"), "{text}");
    assert!(!format!("{err:?}").contains("hunter2"));
    assert!(!text.contains('\n'), "one line: {text}");
}

#[test]
fn password_in_query_string_is_masked_too() {
    let err = open_err("postgresql://127.0.0.1:1/locks?user=app&password=hunter2-secret");
    assert!(!err.to_string().contains("hunter2"), "{err}");
    assert!(!format!("{err:?}").contains("hunter2"));
}

#[test]
fn wrong_password_on_a_real_server_is_not_echoed() {
    // The test cluster trusts every local connection, so use a role that must not
    // exist: the server refuses it, and the message must not carry the password.
    let cluster = testkit::PgCluster::shared();
    let url = format!(
        "postgres://nobody:hunter2-secret@127.0.0.1:{}/postgres",
        cluster.port()
    );
    let err = open_err(&url);
    assert!(matches!(err, Error::Connection { .. }), "{err:?}");
    assert!(err.to_string().contains("nobody"), "{err}");
    assert!(!err.to_string().contains("hunter2"), "{err}");
}

#[test]
fn malformed_urls_are_invalid_url_errors() {
    for url in [
        "",
        "postgres://u:hunter2@[::1/db",
        "mongodb://u:hunter2@h/db",
        "postgres:///db",
    ] {
        let err = open_err(url);
        assert!(matches!(err, Error::InvalidUrl { .. }), "{url}: {err:?}");
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }
}

#[test]
fn sqlite_in_missing_directory_is_a_connection_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no/such/dir/locks.sqlite3");
    let err = open_err(path.to_str().unwrap());
    assert!(matches!(err, Error::Connection { .. }), "{err:?}");
    assert!(err.to_string().contains("no/such/dir"), "{err}");
}

#[test]
fn read_only_sqlite_database_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("locks.sqlite3");
    LockStore::open(path.to_str().unwrap())
        .unwrap()
        .get_lock("before", None)
        .unwrap();
    // Opened read-only (file permissions would not stop root, which CI runs as).
    let read_only = format!("file:{}?mode=ro", path.display());

    // The table is there, so opening works (nothing to migrate); writing does not.
    let store = LockStore::open(&read_only).unwrap();
    let err = store
        .get_lock("x", None)
        .expect_err("writing to a read-only database");
    let Error::Database(database) = &err else {
        panic!("{err:?}")
    };
    assert!(database.message().contains("readonly"), "{database:?}");
    // The driver's own error is there for whoever wants it, without being a type of
    // lockmgr's API.
    let driver = std::error::Error::source(database).expect("the driver's error");
    assert!(driver.to_string().contains("readonly"), "{driver}");
    assert!(err.to_string().contains("readonly"), "{err}");
    // Reading still works, and nothing was lost.
    let names: Vec<_> = store
        .list_locks()
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert_eq!(names, ["before"]);

    // A read-only database without the table cannot be migrated.
    let empty = dir.path().join("empty.sqlite3");
    std::fs::write(&empty, b"").unwrap();
    let err = LockStore::open(&format!("file:{}?mode=ro", empty.display()))
        .expect_err("migrating read-only");
    assert!(
        matches!(err, Error::Migration { .. } | Error::Connection { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("readonly"), "{err}");
}

#[test]
fn in_memory_sqlite_works_as_one_database() {
    let store = LockStore::open("sqlite::memory:").unwrap();
    let lock = store.get_lock("mem", None).unwrap();
    // Another thread sees the same database (the pool keeps exactly one connection).
    let other = store.clone();
    let seen = std::thread::spawn(move || other.is_locked("mem").unwrap())
        .join()
        .unwrap();
    assert!(seen);
    assert!(store.unlock(&lock).unwrap());
}

#[cfg(feature = "mysql")]
mod mysql {
    use super::open_err;
    use diesel::connection::SimpleConnection;
    use diesel::Connection;
    use lockmgr::{Error, LockStore};

    #[test]
    fn unreachable_mysql_is_a_connection_error_without_password() {
        let err = open_err("mysql://app:hunter2-secret@127.0.0.1:1/locks");
        assert!(matches!(err, Error::Connection { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("mysql://app:***@127.0.0.1:1/locks"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!format!("{err:?}").contains("hunter2"));
        assert!(!text.contains('\n'), "one line: {text}");
    }

    #[test]
    fn wrong_password_on_a_real_server_is_not_echoed() {
        let server = testkit::MysqlServer::shared();
        let db = server.new_database();
        let db_name = db.rsplit('/').next().unwrap().to_string();
        let mut admin = diesel::MysqlConnection::establish(&server.url_of("mysql")).unwrap();
        admin
            .batch_execute(&format!(
                "CREATE USER 'app'@'%' IDENTIFIED BY 'right-pass'; \
                 GRANT ALL ON {db_name}.* TO 'app'@'%'"
            ))
            .unwrap();
        let base = format!("127.0.0.1:{}/{db_name}", server.port());

        let err = open_err(&format!("mysql://app:hunter2-secret@{base}"));
        assert!(matches!(err, Error::Connection { .. }), "{err:?}");
        let text = err.to_string();
        assert!(text.contains("Access denied"), "{text}");
        assert!(text.contains("mysql://app:***@"), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!format!("{err:?}").contains("hunter2"));

        // The right password works, and the store shows its URL masked.
        let store = LockStore::open(&format!("mysql://app:right-pass@{base}")).unwrap();
        assert!(!store.url().contains("right-pass"), "{}", store.url());
        assert_eq!(store.backend(), lockmgr::Backend::Mysql);
        store.get_lock("granted", None).unwrap();
    }

    #[test]
    fn malformed_mysql_urls_are_invalid_url_errors() {
        for url in [
            "mysql://u:hunter2@[::1/db",
            "mysql://u:hunter2@localhost",
            "mariadb://u:hunter2@localhost/",
        ] {
            let err = open_err(url);
            assert!(matches!(err, Error::InvalidUrl { .. }), "{url}: {err:?}");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
    }
}
