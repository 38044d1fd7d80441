//! Liveness on both backends: prompt hand-off to waiters, keep-alive with its
//! lost-lock signal, and hold-at-least. Time bounds here are deliberately generous
//! (seconds, not milliseconds): speed is measured in benches/handoff.rs.

use std::time::{Duration, Instant};

use diesel::RunQueryDsl;
use testkit::TestDb;

fn waiter_gets_a_released_lock_promptly(db: &TestDb) {
    let holder_store = db.store();
    let waiter_store = db.store(); // another store of the same database
    let lock = holder_store
        .get_lock("live:handoff", Some(Duration::from_secs(60)))
        .unwrap();
    let waiter = std::thread::spawn(move || {
        let guard = waiter_store
            .lock_mgr("live:handoff")
            .wait(Duration::from_secs(30))
            .acquire()
            .unwrap();
        (Instant::now(), guard.fence())
    });
    std::thread::sleep(Duration::from_millis(1500)); // let the waiter's backoff grow
    let released_at = Instant::now();
    assert!(holder_store.unlock(&lock).unwrap());
    let (acquired_at, fence) = waiter.join().unwrap();
    let late = acquired_at.duration_since(released_at);
    assert!(
        late < Duration::from_secs(2),
        "the waiter took {late:?} after the release"
    );
    assert!(fence > lock.fence);
}

fn keepalive_outlives_the_expiry(db: &TestDb) {
    let store = db.store();
    let observer = db.store();
    let guard = store
        .lock_mgr("live:long")
        .expires(Some(Duration::from_secs(2)))
        .keepalive(true)
        .acquire()
        .unwrap();
    let first_until = guard.main_lock().locked_until.unwrap();
    // A 6 s body on a 2 s lock: nobody else may take it meanwhile.
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(6) {
        assert!(observer
            .get_lock("live:long", None)
            .unwrap_err()
            .is_locked());
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(!guard.is_lost());
    let current = guard.current_lock();
    assert!(current.locked_until.unwrap() > first_until + chrono::Duration::seconds(3));
    assert_eq!(current.fence, guard.fence());
    drop(guard);
    assert!(!observer.is_locked("live:long").unwrap());
}

fn lock_cleared_from_outside_marks_the_guard_lost(db: &TestDb) {
    let store = db.store();
    let guard = store
        .lock_mgr("live:cleared")
        .expires(Some(Duration::from_millis(900)))
        .keepalive(true)
        .acquire()
        .unwrap();
    let signal = guard.lost_signal();
    assert!(
        !signal.wait_timeout(Duration::from_millis(400)),
        "lost while nobody touched it"
    );
    // What `lockmgr clear-lock` does: release by name, whoever holds it.
    assert!(db.store().unlock("live:cleared").unwrap());
    assert!(
        signal.wait_timeout(Duration::from_secs(10)),
        "keep-alive did not notice"
    );
    assert!(guard.is_lost());
    // Someone else may now take it, and the lost guard's drop leaves theirs alone.
    let other = db
        .store()
        .get_lock("live:cleared", Some(Duration::from_secs(60)))
        .unwrap();
    drop(guard);
    assert!(store
        .find_lock("live:cleared")
        .unwrap()
        .unwrap()
        .same_acquisition(&other));
}

fn lock_taken_over_during_keepalive_is_lost(db: &TestDb) {
    let store = db.store();
    let guard = store
        .lock_mgr("live:taken")
        .expires(Some(Duration::from_millis(600)))
        .keepalive(true)
        .acquire()
        .unwrap();
    // Simulate a takeover: an admin clears it and another holder takes it at once.
    store.unlock("live:taken").unwrap();
    let thief = store
        .get_lock("live:taken", Some(Duration::from_secs(60)))
        .unwrap();
    assert!(guard.lost_signal().wait_timeout(Duration::from_secs(10)));
    let now = store.find_lock("live:taken").unwrap().unwrap();
    assert!(now.same_acquisition(&thief));
    assert_eq!(
        now.locked_until, thief.locked_until,
        "the lost guard renewed the thief's lock"
    );
}

fn dropping_the_guard_stops_renewals(db: &TestDb) {
    let store = db.store();
    // The shortest kept-alive lease: 3 s, renewed every second.
    let guard = store
        .lock_mgr("live:stop")
        .expires(Some(lockmgr::MIN_KEEPALIVE_EXPIRES))
        .keepalive(true)
        .acquire()
        .unwrap();
    let first_until = guard.main_lock().locked_until;
    assert!(
        testkit::eventually(Duration::from_secs(10), || guard
            .current_lock()
            .locked_until
            > first_until),
        "never renewed"
    );
    drop(guard);
    assert!(!store.is_locked("live:stop").unwrap());
    // Two renewal periods later, nothing has brought the row back.
    std::thread::sleep(Duration::from_millis(2200));
    assert!(!store.is_locked("live:stop").unwrap());
    assert!(store.find_lock("live:stop").unwrap().is_none());
}

fn min_hold_keeps_the_row_for_the_window(db: &TestDb) {
    let store = db.store();
    let other = db.store();
    let guard = store
        .lock_mgr("live:cron")
        .expires(Some(Duration::from_secs(60)))
        .hold_at_least(Duration::from_millis(1500))
        .acquire()
        .unwrap();
    let taken = guard.main_lock().created_at;
    drop(guard); // the job took no time at all
    let kept = other
        .find_lock("live:cron")
        .unwrap()
        .expect("the row stays for the window");
    let window = kept.locked_until.unwrap() - taken;
    assert!(
        (window - chrono::Duration::milliseconds(1500))
            .num_milliseconds()
            .abs()
            <= 5,
        "{window}"
    );
    assert!(other.get_lock("live:cron", None).unwrap_err().is_locked());
    // Then it frees itself, and can be taken again.
    let waited = other
        .lock_mgr("live:cron")
        .wait(Duration::from_secs(20))
        .acquire()
        .unwrap();
    assert!(waited.main_lock().created_at >= kept.locked_until.unwrap());
}

fn min_hold_passed_releases_at_once(db: &TestDb) {
    let store = db.store();
    let guard = store
        .lock_mgr("live:slow-cron")
        .hold_at_least(Duration::from_millis(200))
        .acquire()
        .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    drop(guard);
    assert!(
        store.find_lock("live:slow-cron").unwrap().is_none(),
        "held longer than min_hold: deleted"
    );
}

/// A long job on a short lock, renewed while it runs; reports whether the lock was
/// ever lost and whether another store could take it meanwhile.
#[lockmgr::locked(name = "macro:long", expires = 1, keepalive = true, store = store, guard = g)]
fn long_job(
    store: &lockmgr::LockStore,
    other: &lockmgr::LockStore,
) -> lockmgr::Result<(bool, bool)> {
    let mut stolen = false;
    for _ in 0..6 {
        std::thread::sleep(Duration::from_millis(500));
        stolen |= other.get_lock("macro:long", None).is_ok();
    }
    Ok((g.is_lost(), stolen))
}

/// A cron job that must not run twice within 2 s, however fast it is.
#[lockmgr::locked(name = "macro:cron", min_hold = 2, store = store)]
fn cron_job(store: &lockmgr::LockStore) -> lockmgr::Result<()> {
    Ok(())
}

fn locked_keepalive_outlives_the_expiry(db: &TestDb) {
    let (store, other) = (db.store(), db.store());
    assert_eq!(long_job(&store, &other).unwrap(), (false, false));
    assert!(
        !store.is_locked("macro:long").unwrap(),
        "released after the call"
    );
}

fn locked_min_hold_blocks_a_second_run_in_the_window(db: &TestDb) {
    let store = db.store();
    cron_job(&store).unwrap();
    assert!(
        cron_job(&store).unwrap_err().is_locked(),
        "ran twice in the window"
    );
    assert!(testkit::eventually(Duration::from_secs(10), || cron_job(
        &store
    )
    .is_ok()));
}

testkit::backend_tests!(
    locked_keepalive_outlives_the_expiry,
    locked_min_hold_blocks_a_second_run_in_the_window,
    waiter_gets_a_released_lock_promptly,
    keepalive_outlives_the_expiry,
    lock_cleared_from_outside_marks_the_guard_lost,
    lock_taken_over_during_keepalive_is_lost,
    dropping_the_guard_stops_renewals,
    min_hold_keeps_the_row_for_the_window,
    min_hold_passed_releases_at_once,
);

/// PostgreSQL: a release sends `NOTIFY lockmgr_release, '<name>'` when, and only when,
/// someone waits for the lock (an uncontended release stays one plain statement).
#[test]
fn postgres_release_notifies_only_waited_locks() {
    use diesel::connection::SimpleConnection;
    use diesel::{Connection, PgConnection};

    let db = TestDb::postgres();
    let store = db.store();
    let mut listener = PgConnection::establish(db.url()).unwrap();
    listener.batch_execute("LISTEN lockmgr_release").unwrap();
    let received = |listener: &mut PgConnection| -> Vec<String> {
        std::thread::sleep(Duration::from_millis(200));
        listener
            .notifications_iter()
            .map(|n| n.unwrap().payload)
            .collect()
    };

    let quiet = store.get_lock("notify:quiet", None).unwrap();
    store.unlock(&quiet).unwrap();
    assert_eq!(
        received(&mut listener),
        Vec::<String>::new(),
        "an unwaited release notified"
    );

    let held = store.get_lock("notify:waited", None).unwrap();
    let waiter_store = db.store();
    let waiter = std::thread::spawn(move || {
        waiter_store
            .lock_mgr("notify:waited")
            .wait(Duration::from_secs(30))
            .acquire()
            .map(|guard| guard.fence())
    });
    assert!(testkit::eventually(Duration::from_secs(10), || {
        // The waiter has flagged the row once it has tried and failed.
        let mut conn = PgConnection::establish(db.url()).unwrap();
        diesel::sql_query("SELECT name FROM lockmgr_lock WHERE name = 'notify:waited' AND waiters")
            .execute(&mut conn)
            .unwrap()
            == 1
    }));
    store.unlock(&held).unwrap();
    assert!(waiter.join().unwrap().unwrap() > held.fence);
    let notes: Vec<String> = testkit::awaited_notifications(&mut listener)
        .into_iter()
        .map(|(_, payload)| payload)
        .collect();
    assert_eq!(notes, ["notify:waited"]);
}

/// PostgreSQL: an attempt that finds the lock held only reads the row. It does not
/// lock it (a row lock would make every waiter's poll a durable commit, and the
/// holder's release would queue behind those): with another transaction holding the
/// row's lock, the attempt still answers `Locked` at once; and a waiter's polls leave
/// no row lock behind on the row they read.
#[test]
fn postgres_attempts_on_a_held_lock_do_not_lock_the_row() {
    use diesel::connection::SimpleConnection;
    use diesel::{Connection, PgConnection};
    use std::sync::mpsc;

    let db = TestDb::postgres();
    let store = db.store();
    let held = store
        .get_lock("rowlock:held", Some(Duration::from_secs(600)))
        .unwrap();

    // Another session locks the row (as a release or renewal in flight does) and keeps
    // it locked until told to stop, or for 20 s.
    let (stop, stopped) = mpsc::channel::<()>();
    let (locked, is_locked) = mpsc::channel::<()>();
    let url = db.url().to_string();
    let row_locker = std::thread::spawn(move || {
        let mut conn = PgConnection::establish(&url).unwrap();
        conn.batch_execute(
            "BEGIN; SELECT 1 FROM lockmgr_lock WHERE name = 'rowlock:held' FOR UPDATE",
        )
        .unwrap();
        locked.send(()).unwrap();
        let told = stopped.recv_timeout(Duration::from_secs(20)).is_ok();
        conn.batch_execute("ROLLBACK").unwrap();
        told
    });
    is_locked.recv().unwrap();
    let err = store.get_lock("rowlock:held", None).unwrap_err();
    assert!(err.is_locked(), "{err}");
    // Answered while the row was still locked: the attempt did not wait for it.
    stop.send(()).unwrap();
    assert!(
        row_locker.join().unwrap(),
        "the attempt waited for the row lock to go"
    );

    // A waiter polls a lock nobody else touches: the row version it sees last is the
    // one its waiter flag wrote, and no poll after that has locked it.
    let polled = store
        .get_lock("rowlock:polled", Some(Duration::from_secs(600)))
        .unwrap();
    let waiter = store.clone();
    let attempt = std::thread::spawn(move || {
        waiter
            .lock_mgr("rowlock:polled")
            .wait(Duration::from_millis(300))
            .acquire()
            .map(|_| ())
    });
    assert!(attempt.join().unwrap().unwrap_err().is_locked());
    let mut conn = PgConnection::establish(db.url()).unwrap();
    #[derive(diesel::QueryableByName)]
    struct Row {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        waiters: bool,
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        xmax: i64,
    }
    // A row lock leaves the locker's transaction id in `xmax` of the version it locked.
    let row = diesel::sql_query(
        "SELECT waiters, xmax::text::bigint AS xmax FROM lockmgr_lock \
         WHERE name = 'rowlock:polled'",
    )
    .get_result::<Row>(&mut conn)
    .unwrap();
    assert!(row.waiters, "the waiter did not flag the row");
    let xmax_locked = row.xmax;
    assert_eq!(xmax_locked, 0, "a waiter's attempt locked the held row");
    store.unlock(&polled).unwrap();
    store.unlock(&held).unwrap();
}
