//! Network and server faults on the server backends (PostgreSQL, and MariaDB with the
//! `mysql` feature): a link that goes silent (a [`SilentProxy`] that stops forwarding
//! but closes nothing), connections killed by the server, a server restart, a server
//! that is down.
//!
//! What must hold: every call returns within its bounds; a guard's lost signal fires
//! before anyone else can take its lock, and no later than its lease deadline; a
//! release that meets a dead connection is retried on a new one, so no row is left
//! behind. Time bounds are generous (tens of seconds where the property is "does not
//! hang"): speed is not what is tested.

use std::sync::mpsc;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use lockmgr::{locked, Error, LockStore};
use testkit::{PgCluster, SilentProxy, TestDb};

/// Run `f` on a thread; its result and how long it took, or a failure naming `what`
/// if it is still running after `limit` (the thread is left behind, blocked).
fn within<T: Send + 'static>(
    limit: Duration,
    what: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> (T, Duration) {
    let (tx, rx) = mpsc::channel();
    let started = Instant::now();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(value) => (value, started.elapsed()),
        Err(_) => panic!("{what}: still blocked after {limit:?}"),
    }
}

fn proxy(db: &TestDb) -> (SilentProxy, String) {
    SilentProxy::in_front_of(db.url()).unwrap_or_else(|e| panic!("{e}"))
}

const LONG: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------------
// A silent link: every call is bounded

fn open_through_a_silent_link_fails_within_the_connect_timeout(db: &TestDb) {
    let (proxy, url) = proxy(db);
    proxy.go_silent();
    let (opened, took) = within(LONG, "LockStore::open", move || {
        LockStore::builder(&url)
            .connect_timeout(Duration::from_secs(2))
            .open()
    });
    let err = opened.unwrap_err();
    assert!(matches!(err, Error::Connection { .. }), "{err}");
    // 2 s (PostgreSQL: libpq's own, then the watchdog a second later), with room.
    assert!(took < Duration::from_secs(15), "open took {took:?}");
}

fn calls_on_a_silenced_link_time_out(db: &TestDb) {
    let (proxy, url) = proxy(db);
    // No background clean: it would take the pooled connection at the first
    // acquisition, and the calls below would then fail connecting (a Connection error,
    // also bounded) instead of timing out on the connection they were given.
    let store = LockStore::builder(&url)
        .connect_timeout(Duration::from_secs(2))
        .statement_timeout(Duration::from_secs(2))
        .auto_clean(None)
        .open()
        .unwrap();
    let held = store
        .get_lock("fault:calls", Some(Duration::from_secs(60)))
        .unwrap();
    proxy.go_silent();

    let on = store.clone();
    let (answer, took) = within(LONG, "is_locked", move || on.is_locked("fault:calls"));
    let err = answer.unwrap_err();
    assert!(err.is_timeout(), "{err}");
    assert!(took < Duration::from_secs(15), "is_locked took {took:?}");

    let on = store.clone();
    let (answer, took) = within(LONG, "get_lock", move || {
        on.get_lock("fault:other", Some(Duration::from_secs(60)))
    });
    assert!(answer.is_err(), "{answer:?}");
    assert!(took < Duration::from_secs(15), "get_lock took {took:?}");

    // A release keeps trying new connections for a while (each bounded by the
    // connect timeout), then gives up.
    let on = store.clone();
    let (answer, took) = within(LONG, "unlock", move || on.unlock(&held));
    assert!(answer.is_err(), "{answer:?}");
    assert!(took < Duration::from_secs(30), "unlock took {took:?}");

    // Once the link is back, the same store works again, on new connections.
    proxy.resume();
    let on = store.clone();
    let (answer, _) = within(LONG, "is_locked after resume", move || {
        on.is_locked("fault:never-taken")
    });
    assert!(!answer.unwrap());
}

#[locked(name = "fault:macro-wait", wait = 3, store = store)]
fn wait_for_the_job(store: &LockStore) -> Result<(), Error> {
    Ok(())
}

fn a_wait_ends_in_time_when_the_link_goes_silent(db: &TestDb) {
    let holder = db.store();
    let _held = holder
        .get_lock("fault:macro-wait", Some(Duration::from_secs(120)))
        .unwrap();
    let (proxy, url) = proxy(db);
    // A statement timeout far longer than the wait: the wait's own end must bound
    // the attempt running when the link went silent.
    let store = LockStore::builder(&url)
        .statement_timeout(Duration::from_secs(40))
        .open()
        .unwrap();
    let waiter = std::thread::spawn(move || {
        let started = Instant::now();
        let outcome = wait_for_the_job(&store);
        (outcome, started.elapsed())
    });
    std::thread::sleep(Duration::from_millis(700));
    proxy.go_silent();
    let ((outcome, took), _) = within(LONG, "#[locked(wait = 3)]", move || waiter.join().unwrap());
    assert!(outcome.is_err(), "{outcome:?}");
    // wait (3 s) + the last attempt's grace (1 s), with room; not the 40 s timeout.
    assert!(took < Duration::from_secs(12), "the wait took {took:?}");
}

fn a_keepalive_holder_knows_it_lost_before_anyone_takes_over(db: &TestDb) {
    let (proxy, url) = proxy(db);
    let store = LockStore::open(&url).unwrap();
    let guard = store
        .lock_mgr("fault:lease")
        .expires(Some(Duration::from_secs(3)))
        .keepalive(true)
        .acquire()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500)); // a renewal or two went through
    assert!(!guard.is_lost());
    let signal = guard.lost_signal();
    let blocking = std::thread::spawn(move || signal.wait_timeout(LONG).then(Instant::now));
    let signal = guard.lost_signal();
    let awaiting = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        runtime.block_on(async {
            tokio::time::timeout(LONG, signal.lost()).await.ok()?;
            Some(Instant::now())
        })
    });
    proxy.go_silent();
    let silenced = Instant::now();

    // Another process, on a direct connection, takes the lock as soon as it can.
    let other = db.store();
    let taken_at = loop {
        match other.get_lock("fault:lease", Some(Duration::from_secs(60))) {
            Ok(_) => break Instant::now(),
            Err(err) if err.is_locked() => {}
            Err(err) => panic!("{err}"),
        }
        assert!(silenced.elapsed() < LONG, "the lock was never freed");
        std::thread::sleep(Duration::from_millis(20));
    };
    // The moment another holder has the lock, the guard already says it is lost:
    // its own deadline, on its own monotonic clock, came first. (Asked of the
    // guard, not of when the threads below woke up: a woken thread can run late on
    // a loaded machine, whatever the deadline was.)
    assert!(
        guard.is_lost(),
        "another process took the lock {:?} after the silence, and the guard still trusts it",
        taken_at - silenced
    );
    let blocked_lost_at = blocking.join().unwrap().expect("wait_timeout never fired");
    let awaited_lost_at = awaiting
        .join()
        .unwrap()
        .expect("the lost future never completed");
    println!(
        "  after the silence: lost {:?} (wait_timeout), {:?} (lost()); taken over {:?}",
        blocked_lost_at - silenced,
        awaited_lost_at - silenced,
        taken_at - silenced
    );
    proxy.resume(); // the guard's release then finds the lock is no longer its own
}

// ---------------------------------------------------------------------------------
// Connections killed by the server: the release is retried on a new one

/// Kill every connection to `db` but the one doing the killing.
fn kill_connections(db: &TestDb) {
    match db.backend() {
        lockmgr::Backend::Postgres => {
            let mut admin = PgConnection::establish(db.url()).unwrap();
            admin
                .batch_execute(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                     WHERE datname = current_database() AND pid <> pg_backend_pid()",
                )
                .unwrap();
        }
        #[cfg(feature = "mysql")]
        lockmgr::Backend::Mysql => {
            use diesel::sql_types::BigInt;
            use diesel::{MysqlConnection, QueryableByName, RunQueryDsl};
            #[derive(QueryableByName)]
            struct Id {
                #[diesel(sql_type = BigInt)]
                id: i64,
            }
            let mut admin = MysqlConnection::establish(db.url()).unwrap();
            let ids: Vec<Id> = diesel::sql_query(
                "SELECT CAST(id AS SIGNED) AS id FROM information_schema.processlist \
                 WHERE db = DATABASE() AND id <> CONNECTION_ID()",
            )
            .load(&mut admin)
            .unwrap();
            for Id { id } in ids {
                let _ = admin.batch_execute(&format!("KILL CONNECTION {id}"));
            }
        }
        other => panic!("no server to kill connections of: {other}"),
    }
}

fn renew_and_release_survive_killed_connections(db: &TestDb) {
    let store = db.store();
    // Never expires: a release that is lost leaves the row forever.
    let mut guard = store
        .lock_mgr("fault:killed")
        .expires(None)
        .acquire()
        .unwrap();
    kill_connections(db);
    guard.renew_with(lockmgr::RenewOptions::new(None)).unwrap();
    kill_connections(db);
    drop(guard);
    assert!(db.store().find_lock("fault:killed").unwrap().is_none());
}

macro_rules! server_tests {
    ($($name:ident),* $(,)?) => {
        mod postgres {
            $( #[test] fn $name() { super::$name(&testkit::TestDb::postgres()) } )*
        }
        #[cfg(feature = "mysql")]
        mod mysql {
            $( #[test] fn $name() { super::$name(&testkit::TestDb::mysql()) } )*
        }
    };
}

server_tests!(
    open_through_a_silent_link_fails_within_the_connect_timeout,
    calls_on_a_silenced_link_time_out,
    a_wait_ends_in_time_when_the_link_goes_silent,
    a_keepalive_holder_knows_it_lost_before_anyone_takes_over,
    renew_and_release_survive_killed_connections,
);

// ---------------------------------------------------------------------------------
// idle_session_timeout (PostgreSQL), a restart, a server that is down (PostgreSQL)

#[test]
fn release_after_an_idle_session_timeout_leaves_no_row() {
    let db = TestDb::postgres();
    let database = db.url().rsplit('/').next().unwrap().to_string();
    PgConnection::establish(db.url())
        .unwrap()
        .batch_execute(&format!(
            "ALTER DATABASE {database} SET idle_session_timeout = '300ms'"
        ))
        .unwrap();
    let store = db.store();
    let guard = store
        .lock_mgr("fault:idle")
        .expires(None)
        .acquire()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1200)); // the server closed the connection
    drop(guard);
    assert!(db.store().find_lock("fault:idle").unwrap().is_none());
}

/// A guard whose lock never expires is dropped while the server is down; the server
/// is started again at once (it takes a while to come up). The release must get
/// through. (The release retries for 10 s from its first failure: a start that began
/// a second later left too little of that on a loaded machine, where a server start
/// can take several seconds.)
fn release_during_a_restart(url: &str, stop: &(dyn Fn() + Sync), restart: &(dyn Fn() + Sync)) {
    let store = LockStore::open(url).unwrap();
    let guard = store
        .lock_mgr("fault:restart")
        .expires(None)
        .acquire()
        .unwrap();
    stop();
    std::thread::scope(|scope| {
        scope.spawn(|| {
            std::thread::sleep(Duration::from_millis(100));
            restart();
        });
        drop(guard); // meets a dead connection, then a server that is not up yet
    });
    let after = LockStore::open(url).unwrap();
    assert!(after.find_lock("fault:restart").unwrap().is_none());
}

#[test]
fn release_during_a_server_restart_leaves_no_row() {
    let cluster = PgCluster::start(&[]).unwrap_or_else(|e| panic!("{e}"));
    let url = cluster.new_database();
    release_during_a_restart(&url, &|| cluster.stop(), &|| cluster.restart());
}

#[cfg(feature = "mysql")]
#[test]
fn mysql_release_during_a_server_restart_leaves_no_row() {
    let server = testkit::MysqlServer::start(&[]).unwrap_or_else(|e| panic!("{e}"));
    let url = server.new_database();
    release_during_a_restart(&url, &|| server.stop(), &|| server.restart());
}

#[test]
fn with_the_server_down_the_lost_signal_fires_by_the_lease_deadline() {
    let cluster = PgCluster::start(&[]).unwrap_or_else(|e| panic!("{e}"));
    let store = LockStore::open(&cluster.new_database()).unwrap();
    let guard = store
        .lock_mgr("fault:down")
        .expires(Some(Duration::from_secs(3)))
        .keepalive(true)
        .acquire()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1200));
    cluster.stop();
    // The last renewal that went through, and when its lease ends on this clock
    // (measured from when its answer was read, so a little after the real end).
    let last = guard.current_lock();
    let lease_end = Instant::now() + last.expires_in().unwrap();
    let signal = guard.lost_signal();
    let waiting = std::thread::spawn(move || signal.wait_timeout(LONG));
    // By the lease's end the guard says it is lost (its own deadline comes first).
    std::thread::sleep(lease_end.saturating_duration_since(Instant::now()));
    assert!(
        guard.is_lost(),
        "the lease ended and the guard still trusts it"
    );
    // And a thread blocked on the signal is woken.
    assert!(waiting.join().unwrap(), "never lost");
    cluster.restart(); // the guard's release goes through
}
