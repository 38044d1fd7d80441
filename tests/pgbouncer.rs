//! lockmgr behind a real PgBouncer (Debian's `pgbouncer`, started by the test kit on
//! a loopback port in front of the test cluster), in transaction and session pooling
//! modes.
//!
//! In transaction mode every statement outside a transaction may run on another
//! server session, shared with other clients: nothing lockmgr does may depend on one
//! (named prepared statements, `SET`, `LISTEN`). The pools here are kept small (one
//! or two server connections) so that clients really do share sessions.
//!
//! PgBouncer reaches the cluster through its Unix socket: in `pg_stat_activity` its
//! server connections have no `client_addr`, direct clients have `127.0.0.1`.

use std::fs;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use diesel::connection::CacheSize;
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Bool, Text};
use lockmgr::LockStore;
use testkit::{eventually, start_at, PgBouncer, PgCluster, PoolMode};

const WORKER: &str = env!("CARGO_BIN_EXE_lockmgr-test-worker");

/// A fresh database in the shared cluster, and a pooler of `mode` with `pool_size`
/// server connections in front of it.
fn setup(mode: PoolMode, pool_size: u32) -> (String, PgBouncer) {
    let cluster = PgCluster::shared();
    let direct = cluster.new_database();
    let bouncer = PgBouncer::start(cluster, mode, pool_size).unwrap_or_else(|e| panic!("{e}"));
    (direct, bouncer)
}

/// A plain diesel connection through the pooler, sending only unnamed statements.
fn pooled_conn(url: &str) -> PgConnection {
    let mut conn = PgConnection::establish(url).unwrap_or_else(|e| panic!("{url}: {e}"));
    conn.set_prepared_statement_cache_size(CacheSize::Disabled);
    conn
}

fn direct_conn(url: &str) -> PgConnection {
    PgConnection::establish(url).unwrap_or_else(|e| panic!("{url}: {e}"))
}

#[derive(QueryableByName, Debug)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

fn count(conn: &mut PgConnection, sql: &str) -> i64 {
    diesel::sql_query(sql)
        .get_result::<Count>(conn)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .n
}

#[derive(Debug, Default)]
struct Tally {
    won: u64,
    locked: u64,
    other: u64,
    overlap: u64,
    sentinel_lost: u64,
}

/// 3 worker processes race `get_lock` / `unlock` on one name through `url` (each try
/// also asks `is_locked` on a lock held for the whole run): never two holders, no
/// error but `Locked`, the held lock untouched, and nothing written where it should
/// not be.
fn race_through(url: &str, direct: &str) {
    let store = LockStore::open(direct).unwrap();
    let sentinel = store.get_lock("sentinel", None).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (marker, counter) = (dir.path().join("held"), dir.path().join("counter"));
    fs::write(&counter, "0").unwrap();
    let start_at = start_at(Duration::from_millis(1500));
    let children: Vec<_> = (0..3)
        .map(|_| {
            #[rustfmt::skip]
            let args = [
                "race", "--url", url, "--name", "race:one", "--tries", "300",
                "--sentinel", "sentinel", "--pool-size", "2",
                "--marker", path(&marker), "--counter", path(&counter),
                "--start-at", &start_at,
            ];
            worker(&args)
        })
        .collect();
    let mut total = Tally::default();
    let mut errors = String::new();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "worker failed: {stdout}\n{stderr}");
        errors.push_str(&stderr.lines().take(5).collect::<Vec<_>>().join("\n"));
        let line = stdout
            .lines()
            .find(|l| l.starts_with("tally "))
            .unwrap_or_else(|| panic!("no tally: {stdout}\n{stderr}"));
        let field = |key: &str| -> u64 {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {key} in {line}"))
        };
        total.won += field("won");
        total.locked += field("locked");
        total.other += field("other");
        total.overlap += field("overlap");
        total.sentinel_lost += field("sentinel_lost");
    }
    println!("{total:?}");
    let counted: u64 = fs::read_to_string(&counter)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(total.overlap, 0, "two processes held the lock at once");
    assert_eq!(total.other, 0, "errors other than Locked:\n{errors}");
    assert_eq!(
        total.sentinel_lost, 0,
        "is_locked said a held lock was free"
    );
    assert_eq!(total.won + total.locked, 900, "{total:?}");
    assert_eq!(counted, total.won, "updates made under the lock were lost");
    assert!(total.won > 0, "{total:?}");

    let held = store
        .find_lock("sentinel")
        .unwrap()
        .expect("the never-expiring lock is gone");
    assert_eq!(
        (held.fence, held.locked_until),
        (sentinel.fence, None),
        "the held lock was changed"
    );
    let mut conn = direct_conn(direct);
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM lockmgr_lock"),
        1,
        "only the held lock is left"
    );
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) AS n FROM lockmgr_lock_migrations WHERE version NOT LIKE '2026%'"
        ),
        0,
        "something other than a migration was written into the migrations ledger"
    );
    assert!(store.unlock(&sentinel).unwrap());
}

#[test]
fn three_processes_through_a_transaction_pool() {
    let (direct, bouncer) = setup(PoolMode::Transaction, 2);
    let url = format!("{}?pgbouncer=true", bouncer.url_for(&direct));
    race_through(&url, &direct);
}

/// Without `?pgbouncer=true` the pooler is found at open (the server session is not
/// the one announced at connect) and used the same way.
#[test]
fn three_processes_through_a_transaction_pool_found_without_the_parameter() {
    let (direct, bouncer) = setup(PoolMode::Transaction, 2);
    race_through(&bouncer.url_for(&direct), &direct);
}

/// The pooler is found whatever its mode; a direct connection is not taken for one;
/// the URL's word wins over what is found.
#[test]
fn a_pooler_is_found_at_open_unless_the_url_says() {
    let cluster = PgCluster::shared();
    let direct = cluster.new_database();
    for mode in [PoolMode::Transaction, PoolMode::Session] {
        let bouncer = PgBouncer::start(cluster, mode, 1).unwrap_or_else(|e| panic!("{e}"));
        let pooled = bouncer.url_for(&direct);
        let store = LockStore::open(&pooled).unwrap();
        assert!(store.through_pooler(), "{mode:?}: not found");
        let said = LockStore::open(&format!("{pooled}?pgbouncer=false")).unwrap();
        assert!(
            !said.through_pooler(),
            "{mode:?}: pgbouncer=false overruled"
        );
    }
    assert!(!LockStore::open(&direct).unwrap().through_pooler());
    let said = LockStore::open(&format!("{direct}?pgbouncer=true")).unwrap();
    assert!(said.through_pooler());
}

#[test]
fn three_processes_through_a_session_pool() {
    let (direct, bouncer) = setup(PoolMode::Session, 2);
    race_through(&bouncer.url_for(&direct), &direct);
    // Told that the pooler keeps sessions, lockmgr prepares its statements there.
    let url = format!("{}?pgbouncer=false", bouncer.url_for(&direct));
    race_through(&url, &direct);
}

#[derive(QueryableByName, Debug, PartialEq)]
struct SessionState {
    #[diesel(sql_type = Text)]
    seqscan: String,
    #[diesel(sql_type = BigInt)]
    prepared: i64,
    #[diesel(sql_type = BigInt)]
    listening: i64,
}

/// With one server connection for everyone, whatever a store leaves in a session is
/// seen by the next client: nothing may be left (no `SET`, no named statement, no
/// `LISTEN`).
#[test]
fn no_session_state_is_left_on_the_shared_server_connection() {
    let (direct, bouncer) = setup(PoolMode::Transaction, 1);
    let url = format!("{}?pgbouncer=true", bouncer.url_for(&direct));
    let store = LockStore::open(&url).unwrap();
    let lock = store.get_lock("a", Some(Duration::from_secs(60))).unwrap();
    assert!(store.is_locked("a").unwrap());
    assert!(store.find_lock("a").unwrap().is_some());
    assert_eq!(store.list_locks().unwrap().len(), 1);
    store
        .renew_lock(
            &lock,
            lockmgr::RenewOptions::new(Some(Duration::from_secs(120))),
        )
        .unwrap();
    // A waiter: the lock is released by another store while it waits.
    let releaser = LockStore::open(&direct).unwrap();
    let started = Instant::now();
    let waiter = {
        let store = store.clone();
        std::thread::spawn(move || {
            store
                .lock_mgr("a")
                .wait(Duration::from_secs(30))
                .acquire()
                .map(|guard| guard.fence())
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    assert!(releaser.unlock("a").unwrap());
    waiter.join().unwrap().expect("the waiter got the lock");
    println!("waited {:?}", started.elapsed());
    store.clean_locks().unwrap();
    store.reset_locks().unwrap();

    let mut conn = pooled_conn(&bouncer.url_for(&direct));
    let state: SessionState = diesel::sql_query(
        "SELECT current_setting('enable_seqscan') AS seqscan, \
         (SELECT count(*) FROM pg_prepared_statements) AS prepared, \
         (SELECT count(*) FROM pg_listening_channels()) AS listening",
    )
    .get_result(&mut conn)
    .unwrap();
    assert_eq!(
        state,
        SessionState {
            seqscan: "on".into(),
            prepared: 0,
            listening: 0
        },
        "lockmgr left session state on a server connection other clients use"
    );
}

/// 3 processes open the same fresh database through a one-connection transaction
/// pool at once: the table is created once, the ledger holds just the migration, and
/// each takes its lock.
#[test]
fn migrations_through_the_transaction_pool() {
    let (direct, bouncer) = setup(PoolMode::Transaction, 1);
    let url = format!("{}?pgbouncer=true", bouncer.url_for(&direct));
    let dir = tempfile::tempdir().unwrap();
    let start_at = start_at(Duration::from_millis(500));
    // `locked-counter` opens the store (migrating) right away, before `--start-at`:
    // the three opens race.
    let children: Vec<_> = (0..3)
        .map(|i| {
            let (marker, counter) = (
                dir.path().join(format!("held{i}")),
                dir.path().join(format!("counter{i}")),
            );
            #[rustfmt::skip]
            let args = [
                "locked-counter", "--url", &url, "--calls", "5", "--key", &format!("migrate{i}"),
                "--marker", path(&marker), "--counter", path(&counter), "--start-at", &start_at,
            ];
            worker(&args)
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "opening through the pooler failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let mut conn = direct_conn(&direct);
    assert_eq!(
        count(
            &mut conn,
            "SELECT count(*) AS n FROM lockmgr_lock_migrations"
        ),
        1
    );
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM lockmgr_lock"),
        0
    );
    // The migrations went through the pooler: nothing else made the table.
    let store = LockStore::builder(&url).migrate(false).open().unwrap();
    assert!(store.migrate().unwrap().is_empty(), "already up to date");
}

/// Backends that ran `LISTEN lockmgr_release` in this database: (direct clients,
/// PgBouncer's server connections).
fn listeners(conn: &mut PgConnection) -> (i64, i64) {
    #[derive(QueryableByName)]
    struct Listeners {
        #[diesel(sql_type = BigInt)]
        direct: i64,
        #[diesel(sql_type = BigInt)]
        pooled: i64,
    }
    let l: Listeners = diesel::sql_query(
        "SELECT count(*) FILTER (WHERE client_addr IS NOT NULL) AS direct, \
         count(*) FILTER (WHERE client_addr IS NULL) AS pooled FROM pg_stat_activity \
         WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
    )
    .get_result(conn)
    .unwrap();
    (l.direct, l.pooled)
}

fn flagged(conn: &mut PgConnection, name: &str) -> bool {
    #[derive(QueryableByName)]
    struct Flagged {
        #[diesel(sql_type = Bool)]
        waiters: bool,
    }
    diesel::sql_query("SELECT waiters FROM lockmgr_lock WHERE name = $1")
        .bind::<Text, _>(name)
        .get_result::<Flagged>(conn)
        .map(|f| f.waiters)
        .unwrap_or(false)
}

/// A waiter behind the transaction pooler, released by another store: with a listen
/// URL it `LISTEN`s there (a direct connection, never through the pooler); without
/// one nothing `LISTEN`s and it gets the lock by polling.
fn wait_for_release(listen_url: Option<&str>, direct: &str, pooled_url: &str) {
    let mut builder = LockStore::builder(pooled_url);
    if let Some(listen) = listen_url {
        builder = builder.listen_url(listen);
    }
    let waiter_store = builder.open().unwrap();
    let holder_store = LockStore::open(direct).unwrap();
    let held = holder_store.get_lock("handoff", None).unwrap();
    let waiter = std::thread::spawn(move || {
        waiter_store
            .lock_mgr("handoff")
            .wait(Duration::from_secs(60))
            .acquire()
            .map(|guard| guard.fence())
    });
    let mut conn = direct_conn(direct);
    assert!(
        eventually(Duration::from_secs(20), || flagged(&mut conn, "handoff")),
        "the waiter never flagged the lock it waits for"
    );
    let expected = if listen_url.is_some() { (1, 0) } else { (0, 0) };
    if listen_url.is_some() {
        assert!(
            eventually(Duration::from_secs(20), || listeners(&mut conn) == expected),
            "no direct listener: {:?}",
            listeners(&mut conn)
        );
    } else {
        std::thread::sleep(Duration::from_millis(500)); // a listener would be up by now
    }
    assert_eq!(
        listeners(&mut conn),
        expected,
        "(direct, through the pooler)"
    );
    let released = Instant::now();
    assert!(holder_store.unlock(&held).unwrap());
    let fence = waiter.join().unwrap().expect("the waiter got the lock");
    println!("hand-off after {:?}", released.elapsed());
    assert!(fence > held.fence);
    assert_eq!(
        listeners(&mut conn).1,
        0,
        "something LISTENed through the pooler"
    );
}

#[test]
fn waiters_listen_on_the_direct_listen_url() {
    let (direct, bouncer) = setup(PoolMode::Transaction, 2);
    let url = format!("{}?pgbouncer=true", bouncer.url_for(&direct));
    wait_for_release(Some(&direct), &direct, &url);
}

#[test]
fn without_a_listen_url_waiters_poll_and_nothing_listens() {
    let (direct, bouncer) = setup(PoolMode::Transaction, 2);
    let url = format!("{}?pgbouncer=true", bouncer.url_for(&direct));
    wait_for_release(None, &direct, &url);
}

#[test]
fn a_listen_url_through_a_transaction_pooler_is_refused() {
    let (direct, bouncer) = setup(PoolMode::Transaction, 1);
    let url = format!("{}?pgbouncer=true", bouncer.url_for(&direct));
    let err = LockStore::builder(&direct)
        .listen_url(&url)
        .open()
        .unwrap_err();
    let message = err.to_string();
    assert!(message.contains("LISTEN needs a session"), "{message}");
    assert!(!message.contains(PgBouncer::PASSWORD), "{message}");
}

/// No lock statement reads the table sequentially, through the pooler (unnamed
/// statements, planned for their values) or directly (prepared statements under
/// `enable_seqscan = off`), even when the table grew after its statistics were taken
/// while it was nearly empty: cost stays flat as locks pile up. Counted by
/// PostgreSQL's per-table statistics, not by the clock.
#[test]
fn lock_statements_use_the_primary_key_as_the_table_grows() {
    let cluster = PgCluster::shared();
    // One server connection, as the direct store has one: its statistics arrive
    // together (see `scans_after`).
    let bouncer =
        PgBouncer::start(cluster, PoolMode::Transaction, 1).unwrap_or_else(|e| panic!("{e}"));
    for through_pooler in [true, false] {
        let direct = cluster.new_database();
        let url = if through_pooler {
            format!("{}?pgbouncer=true", bouncer.url_for(&direct))
        } else {
            direct.clone()
        };
        let mut conn = direct_conn(&direct);
        // Without the background clean: it reads by expiry (no index), and on a
        // loaded machine its first run could be counted among the lock statements'.
        let store = LockStore::builder(&url)
            .pool_size(1)
            .auto_clean(None)
            .open()
            .unwrap();
        store.get_lock("seed", None).unwrap();
        diesel::sql_query("ANALYZE lockmgr_lock")
            .execute(&mut conn)
            .unwrap();
        // Warm up on the nearly empty table (a prepared statement turns generic after
        // five runs).
        cycle(&store, "warm", 10);
        diesel::sql_query(
            "INSERT INTO lockmgr_lock (name, owner, locked_by) \
             SELECT 'other:' || n, md5(n::text), 'test' FROM generate_series(1, 50000) AS n",
        )
        .execute(&mut conn)
        .unwrap();
        let before = scans_after(&mut conn, 10);
        cycle(&store, "grown", 20);
        let after = scans_after(&mut conn, 30);
        println!("{url}: (seq, idx) scans {before:?} -> {after:?}");
        assert_eq!(
            after.0, before.0,
            "a lock statement scanned the whole table"
        );
    }
}

/// `n` × (acquire, is_locked, find_lock, release) on distinct names.
fn cycle(store: &LockStore, prefix: &str, n: usize) {
    for i in 0..n {
        let name = format!("{prefix}:{i}");
        let lock = store
            .get_lock(&name, Some(Duration::from_secs(60)))
            .unwrap();
        assert!(store.is_locked(&name).unwrap());
        assert!(store.find_lock(&name).unwrap().is_some());
        assert!(store.unlock(&lock).unwrap());
    }
}

/// (sequential, index) scans of the lock table, once the statistics show `deleted`
/// rows deleted: a backend sends its counts some time after its statements ran, all
/// at once, so the scans of the statements up to that delete are then all in.
fn scans_after(conn: &mut PgConnection, deleted: i64) -> (i64, i64) {
    #[derive(QueryableByName, Default)]
    struct Scans {
        #[diesel(sql_type = BigInt)]
        seq: i64,
        #[diesel(sql_type = BigInt)]
        idx: i64,
        #[diesel(sql_type = BigInt)]
        deleted: i64,
    }
    let mut s = Scans::default();
    let arrived = eventually(Duration::from_secs(60), || {
        diesel::sql_query("SELECT pg_stat_clear_snapshot()")
            .execute(conn)
            .unwrap();
        s = diesel::sql_query(
            "SELECT seq_scan AS seq, coalesce(idx_scan, 0) AS idx, n_tup_del AS deleted \
             FROM pg_stat_user_tables WHERE relname = 'lockmgr_lock'",
        )
        .get_result(conn)
        .unwrap();
        s.deleted >= deleted
    });
    assert!(arrived, "statistics never showed {deleted} deletes");
    (s.seq, s.idx)
}

/// Start `lockmgr-test-worker` with `args`, its output piped.
fn worker(args: &[&str]) -> Child {
    Command::new(WORKER)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cannot start lockmgr-test-worker")
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}
