//! The lock store on both backends: django-lockmgr's own tests carried over, and the
//! guarantees beyond them (owner checks, fencing, all-or-nothing `set_lock`).

use std::time::{Duration, Instant};

use lockmgr::{Error, LockStore, SetLockAction};
use testkit::TestDb;

const MINUTE: Option<Duration> = Some(Duration::from_secs(60));

fn secs(s: u64) -> Option<Duration> {
    Some(Duration::from_secs(s))
}

fn millis(ms: u64) -> Option<Duration> {
    Some(Duration::from_millis(ms))
}

/// Sleep until `store` reports `name` as free (expiry has passed by the database clock).
fn wait_until_free(store: &LockStore, name: &str) {
    assert!(
        testkit::eventually(Duration::from_secs(10), || !store.is_locked(name).unwrap()),
        "{name} did not expire"
    );
}

/// A store without the background removal of expired rows, for tests that look at
/// an expired row: the store's first clean runs on a thread of its own at its first
/// acquisition, and on a loaded machine it can come after a short lock expired.
fn keeping_expired_rows(db: &TestDb) -> LockStore {
    LockStore::builder(db.url())
        .auto_clean(None)
        .open()
        .unwrap()
}

// --- django-lockmgr's own tests, in Rust -----------------------------------------

fn second_get_lock_fails_with_locked(db: &TestDb) {
    let store = db.store();
    let held = store.get_lock("seed:one", MINUTE).unwrap();
    match store.get_lock("seed:one", MINUTE) {
        Err(Error::Locked {
            name,
            locked_by,
            lock_process,
            locked_until,
        }) => {
            assert_eq!(name, "seed:one");
            assert_eq!(locked_by, held.locked_by);
            assert_eq!(lock_process, Some(i64::from(std::process::id())));
            assert_eq!(locked_until, held.locked_until);
        }
        other => panic!("expected Locked, got {other:?}"),
    }
}

fn is_locked_true_and_false(db: &TestDb) {
    let store = db.store();
    assert!(!store.is_locked("seed:is").unwrap());
    let lock = store.get_lock("seed:is", MINUTE).unwrap();
    assert!(store.is_locked("seed:is").unwrap());
    assert!(!store.is_locked("seed:is-other").unwrap());
    store.unlock(&lock).unwrap();
    assert!(!store.is_locked("seed:is").unwrap());
}

fn lock_unlock_lock_unlock(db: &TestDb) {
    let store = db.store();
    for _ in 0..2 {
        let lock = store.get_lock("seed:cycle", MINUTE).unwrap();
        assert!(store.is_locked("seed:cycle").unwrap());
        assert!(store.unlock(&lock).unwrap());
        assert!(!store.is_locked("seed:cycle").unwrap());
    }
    // Releasing twice is fine, and says nothing went away the second time.
    let lock = store.get_lock("seed:cycle", MINUTE).unwrap();
    assert!(store.unlock(&lock).unwrap());
    assert!(!store.unlock(&lock).unwrap());
    assert!(!store.unlock("seed:cycle").unwrap());
}

fn expired_lock_is_free_and_taken_over(db: &TestDb) {
    let store = db.store();
    let old = store.get_lock("seed:expire", millis(1000)).unwrap();
    assert!(store.is_locked("seed:expire").unwrap());
    wait_until_free(&store, "seed:expire");
    // `expired()` estimates the database clock from the `now()` of the statement that
    // read the row, so it trails the server by that statement's run and reply time:
    // right after the server calls the lock free it may not agree yet.
    assert!(testkit::eventually(Duration::from_secs(1), || old.expired()));
    assert!(store
        .list_locks()
        .unwrap()
        .iter()
        .all(|l| l.name != "seed:expire"));
    let new = store.get_lock("seed:expire", MINUTE).unwrap();
    assert!(new.fence > old.fence);
    assert!(!new.expired());
}

/// An acquisition reads back only what the database decides (fence, expiry, the time
/// taken) and fills in the rest from what it wrote: the lock it returns is its row, on
/// a new name and on an expired row taken over, and its owner token is the row's (an
/// owner-checked release finds it).
fn acquired_lock_is_its_row(db: &TestDb) {
    let store = keeping_expired_rows(db);
    let same = |acquired: &lockmgr::Lock| {
        let row = store.find_lock(&acquired.name).unwrap().unwrap();
        assert_eq!(
            (
                &row.name,
                &row.locked_by,
                row.lock_process,
                row.locked_until,
                row.created_at,
                row.updated_at,
                row.fence
            ),
            (
                &acquired.name,
                &acquired.locked_by,
                acquired.lock_process,
                acquired.locked_until,
                acquired.created_at,
                acquired.updated_at,
                acquired.fence
            )
        );
        assert_eq!(acquired.lock_process, Some(i64::from(std::process::id())));
        assert!(acquired.locked_until.unwrap() > acquired.created_at);
    };
    let new = store.get_lock("row:new", MINUTE).unwrap();
    same(&new);
    assert!(store.unlock(&new).unwrap());

    let old = store.get_lock("row:taken-over", millis(200)).unwrap();
    wait_until_free(&store, "row:taken-over");
    let taken = store.get_lock("row:taken-over", MINUTE).unwrap();
    same(&taken);
    assert!(taken.fence > old.fence);
    assert!(!store.unlock(&old).unwrap());
    assert!(store.unlock(&taken).unwrap());
}

fn never_expiring_locks_survive_clean(db: &TestDb) {
    let store = keeping_expired_rows(db);
    let none = store.get_lock("seed:none", None).unwrap();
    let zero = store.get_lock("seed:zero", Some(Duration::ZERO)).unwrap();
    assert_eq!((none.locked_until, zero.locked_until), (None, None));
    assert_eq!(none.expires_in(), None);
    store.get_lock("seed:short", millis(200)).unwrap();
    wait_until_free(&store, "seed:short");
    assert_eq!(store.clean_locks().unwrap(), 1);
    assert_eq!(store.clean_locks().unwrap(), 0);
    assert!(store.is_locked("seed:none").unwrap());
    assert!(store.is_locked("seed:zero").unwrap());
}

fn guard_releases_on_exit_and_after_error(db: &TestDb) {
    let store = db.store();
    {
        let mut guard = store
            .lock_mgr("seed:guard")
            .expires(MINUTE)
            .acquire()
            .unwrap();
        guard.lock("seed:guard-extra").unwrap();
        assert!(store.is_locked("seed:guard").unwrap());
        assert!(store.is_locked("seed:guard-extra").unwrap());
    }
    assert!(!store.is_locked("seed:guard").unwrap());
    assert!(!store.is_locked("seed:guard-extra").unwrap());

    let failing_job = || -> Result<(), String> {
        let mut guard = store
            .lock_mgr("seed:guard")
            .acquire()
            .map_err(|e| e.to_string())?;
        guard.lock("seed:guard-extra").map_err(|e| e.to_string())?;
        Err("the job failed".to_string())
    };
    assert!(failing_job().is_err());
    assert!(!store.is_locked("seed:guard").unwrap());
    assert!(!store.is_locked("seed:guard-extra").unwrap());
}

fn guard_releases_during_panic(db: &TestDb) {
    let store = db.store();
    let result = std::panic::catch_unwind(|| {
        let mut guard = store.lock_mgr("seed:panic").acquire().unwrap();
        guard.lock("seed:panic-extra").unwrap();
        panic!("job blew up");
    });
    assert!(result.is_err());
    assert!(!store.is_locked("seed:panic").unwrap());
    assert!(!store.is_locked("seed:panic-extra").unwrap());
}

fn guard_extra_lock_held_elsewhere_fails(db: &TestDb) {
    let store = db.store();
    let _other = store.get_lock("seed:taken", MINUTE).unwrap();
    let mut guard = store.lock_mgr("seed:main").acquire().unwrap();
    assert!(guard.lock("seed:taken").unwrap_err().is_locked());
    drop(guard);
    assert!(
        store.is_locked("seed:taken").unwrap(),
        "someone else's lock survives"
    );
    assert!(!store.is_locked("seed:main").unwrap());
}

fn wait_acquires_when_holder_expires_in_window(db: &TestDb) {
    let store = db.store();
    let held = store.get_lock("seed:wait", millis(500)).unwrap();
    let guard = store
        .lock_mgr("seed:wait")
        .wait(Duration::from_secs(10))
        .acquire()
        .unwrap();
    // Taken once the holder's lease was over, by the database's clock (a local
    // stopwatch would depend on when this thread got to start it).
    let until = held.locked_until.unwrap();
    assert!(
        guard.main_lock().created_at >= until,
        "taken at {} before the holder's lease ended at {until}",
        guard.main_lock().created_at
    );
    assert_eq!(guard.name(), "seed:wait");
}

fn wait_fails_with_locked_after_window(db: &TestDb) {
    let store = db.store();
    store.get_lock("seed:wait-fail", MINUTE).unwrap();
    let started = Instant::now();
    let err = store
        .lock_mgr("seed:wait-fail")
        .wait(Duration::from_millis(700))
        .acquire()
        .unwrap_err();
    let waited = started.elapsed();
    assert!(err.is_locked(), "{err}");
    assert!(
        waited >= Duration::from_millis(700),
        "gave up early: {waited:?}"
    );
}

fn wait_acquires_after_release_from_another_thread(db: &TestDb) {
    let store = db.store();
    let lock = store.get_lock("seed:handoff", MINUTE).unwrap();
    let other = store.clone();
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        other.unlock(&lock).unwrap();
    });
    let guard = store
        .lock_mgr("seed:handoff")
        .wait(Duration::from_secs(30))
        .acquire()
        .unwrap();
    releaser.join().unwrap();
    assert_eq!(guard.name(), "seed:handoff");
}

fn renew_without_add_time_sets_from_now(db: &TestDb) {
    let store = db.store();
    let lock = store.get_lock("seed:renew", secs(20)).unwrap();
    let renewed = store
        .renew_lock(&lock, lockmgr::RenewOptions::new(secs(60)))
        .unwrap();
    assert!(renewed.expires_seconds().unwrap() >= 50, "{renewed:?}");
    // By name too.
    let renewed = store
        .renew_lock("seed:renew", lockmgr::RenewOptions::new(secs(120)))
        .unwrap();
    assert!(renewed.expires_seconds().unwrap() >= 110);
}

fn renew_with_add_time_adds(db: &TestDb) {
    let store = db.store();
    let lock = store.get_lock("seed:add", secs(10)).unwrap();
    let renewed = store
        .renew_lock(&lock, lockmgr::RenewOptions::new(secs(20)).add_time())
        .unwrap();
    assert!(renewed.expires_seconds().unwrap() >= 25, "{renewed:?}");
    assert!(renewed.expires_seconds().unwrap() <= 30);
}

fn renew_shorter_keeps_or_adds(db: &TestDb) {
    let store = db.store();
    let lock = store.get_lock("seed:shorter", secs(60)).unwrap();
    let kept = store
        .renew_lock(&lock, lockmgr::RenewOptions::new(secs(10)))
        .unwrap();
    assert_eq!(
        kept.locked_until, lock.locked_until,
        "never shortened without add_time"
    );
    let added = store
        .renew_lock(&lock, lockmgr::RenewOptions::new(secs(10)).add_time())
        .unwrap();
    assert!(added.expires_seconds().unwrap() >= 65, "{added:?}");
}

fn renew_missing_is_not_found_unless_create(db: &TestDb) {
    let store = db.store();
    match store.renew_lock("seed:missing", lockmgr::RenewOptions::new(secs(30))) {
        Err(Error::LockNotFound { name }) => assert_eq!(name, "seed:missing"),
        other => panic!("expected LockNotFound, got {other:?}"),
    }
    let created = store
        .renew_lock(
            "seed:missing",
            lockmgr::RenewOptions::new(secs(30)).create(),
        )
        .unwrap();
    assert!(store.is_locked("seed:missing").unwrap());
    assert!(created.expires_seconds().unwrap() >= 25);
}

fn renew_never_expiring_lock(db: &TestDb) {
    let store = db.store();
    let lock = store.get_lock("seed:forever", None).unwrap();
    let renewed = store
        .renew_lock(&lock, lockmgr::RenewOptions::new(secs(30)))
        .unwrap();
    assert_eq!(
        renewed.locked_until, None,
        "a lock that never expires stays so"
    );
    let renewed = store
        .renew_lock(&lock, lockmgr::RenewOptions::new(secs(30)).add_time())
        .unwrap();
    assert_eq!(renewed.locked_until, None);
    // And a lock with an expiry can be made to never expire.
    let timed = store.get_lock("seed:timed", secs(30)).unwrap();
    assert_eq!(
        store
            .renew_lock(&timed, lockmgr::RenewOptions::new(None))
            .unwrap()
            .locked_until,
        None
    );
}

fn guard_renew_main_and_expired_main(db: &TestDb) {
    let store = keeping_expired_rows(db);
    let mut guard = store
        .lock_mgr("seed:guard-renew")
        .expires(secs(10))
        .acquire()
        .unwrap();
    let fence = guard.fence();
    let renewed = guard.renew().unwrap();
    assert!(renewed.expires_seconds().unwrap() >= 125, "{renewed:?}"); // 10 + 120
    assert_eq!(guard.fence(), fence);

    let mut short = store
        .lock_mgr("seed:guard-expired")
        .expires(millis(200))
        .acquire()
        .unwrap();
    wait_until_free(&store, "seed:guard-expired");
    short.renew().unwrap();
    assert!(store.is_locked("seed:guard-expired").unwrap());
    assert!(short.main_lock().expires_seconds().unwrap() >= 110);

    // Expired and cleaned away: renew() takes it anew.
    let mut gone = store
        .lock_mgr("seed:guard-gone")
        .expires(millis(200))
        .acquire()
        .unwrap();
    wait_until_free(&store, "seed:guard-gone");
    store.clean_locks().unwrap();
    let old_fence = gone.fence();
    gone.renew().unwrap();
    assert!(store.is_locked("seed:guard-gone").unwrap());
    assert!(gone.fence() > old_fence);
    drop((guard, short, gone));
    assert!(store.list_locks().unwrap().is_empty());
}

// --- beyond django-lockmgr ------------------------------------------------------

fn stale_lock_cannot_touch_new_holder(db: &TestDb) {
    let store = db.store();
    let stale = store.get_lock("beyond:stale", millis(200)).unwrap();
    wait_until_free(&store, "beyond:stale");
    let fresh = store.get_lock("beyond:stale", MINUTE).unwrap();

    assert!(
        !store.unlock(&stale).unwrap(),
        "a stale lock released the new holder's lock"
    );
    assert!(matches!(
        store.renew_lock(&stale, lockmgr::RenewOptions::new(secs(600)).add_time()),
        Err(Error::LockNotFound { .. })
    ));
    // With create, it cannot take it either: someone holds it.
    assert!(store
        .renew_lock(&stale, lockmgr::RenewOptions::new(secs(600)).create())
        .unwrap_err()
        .is_locked());
    let current = store.find_lock("beyond:stale").unwrap().unwrap();
    assert!(current.same_acquisition(&fresh));
    assert_eq!(
        current.locked_until, fresh.locked_until,
        "the stale renew changed nothing"
    );
    assert!(store.unlock(&fresh).unwrap());
}

fn stale_guard_drop_leaves_new_holder_alone(db: &TestDb) {
    let store = db.store();
    let guard = store
        .lock_mgr("beyond:guard")
        .expires(millis(200))
        .acquire()
        .unwrap();
    wait_until_free(&store, "beyond:guard");
    let fresh = store.get_lock("beyond:guard", MINUTE).unwrap();
    drop(guard);
    assert!(store.is_locked("beyond:guard").unwrap());
    assert!(store
        .find_lock("beyond:guard")
        .unwrap()
        .unwrap()
        .same_acquisition(&fresh));
}

fn unlock_by_name_is_unconditional(db: &TestDb) {
    let store = db.store();
    store.get_lock("beyond:admin", None).unwrap();
    assert!(store.unlock("beyond:admin").unwrap());
    assert!(!store.is_locked("beyond:admin").unwrap());
    let name = String::from("beyond:admin");
    store.get_lock(&name, None).unwrap();
    assert!(store.unlock(&name).unwrap());
}

fn fence_grows_across_all_locks(db: &TestDb) {
    let store = db.store();
    let mut last = 0;
    for i in 0..20 {
        let lock = store
            .get_lock(&format!("beyond:fence:{}", i % 3), None)
            .unwrap();
        assert!(lock.fence > last, "fence {} after {last}", lock.fence);
        last = lock.fence;
        store.unlock(&lock).unwrap();
    }
    // A take-over of an expired row also gets a larger fence.
    let old = store.get_lock("beyond:fence:x", millis(100)).unwrap();
    wait_until_free(&store, "beyond:fence:x");
    let taken = store.get_lock("beyond:fence:x", None).unwrap();
    assert!(taken.fence > old.fence.max(last));
    // Removing every lock, expired or not, does not start the fences again (on SQLite
    // the last fence lives in a row of the lock table, which these leave alone).
    assert_eq!(store.clean_locks().unwrap(), 0);
    assert_eq!(store.reset_locks().unwrap(), 1);
    assert!(store.list_locks().unwrap().is_empty());
    assert!(store.get_lock("beyond:fence:0", None).unwrap().fence > taken.fence);
}

fn list_locks_shows_live_locks_only(db: &TestDb) {
    let store = keeping_expired_rows(db);
    store.get_lock("list:b", MINUTE).unwrap();
    store.get_lock("list:a", None).unwrap();
    store.get_lock("list:gone", millis(100)).unwrap();
    wait_until_free(&store, "list:gone");
    let names: Vec<_> = store
        .list_locks()
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert_eq!(names, ["list:a", "list:b"]);
    assert_eq!(store.reset_locks().unwrap(), 3);
    assert!(store.list_locks().unwrap().is_empty());
}

fn unlock_all_removes_exactly_what_was_listed(db: &TestDb) {
    let store = db.store();
    store.get_lock("listed:1", MINUTE).unwrap();
    store.get_lock("listed:2", MINUTE).unwrap();
    let shown = store.list_locks().unwrap();
    // Between listing and deleting, one lock changes hands and one appears.
    store.unlock("listed:2").unwrap();
    store.get_lock("listed:2", MINUTE).unwrap();
    store.get_lock("listed:3", MINUTE).unwrap();
    assert_eq!(store.unlock_all(&shown).unwrap(), 1);
    assert!(!store.is_locked("listed:1").unwrap());
    assert!(store.is_locked("listed:2").unwrap());
    assert!(store.is_locked("listed:3").unwrap());
}

fn unlock_if_expired_only_removes_stale_rows(db: &TestDb) {
    let store = keeping_expired_rows(db);
    store.get_lock("stale:live", MINUTE).unwrap();
    store.get_lock("stale:old", millis(100)).unwrap();
    wait_until_free(&store, "stale:old");
    assert!(!store.unlock_if_expired("stale:live").unwrap());
    assert!(store.unlock_if_expired("stale:old").unwrap());
    assert!(!store.unlock_if_expired("stale:missing").unwrap());
    assert!(store.is_locked("stale:live").unwrap());
}

fn set_lock_creates_renews_and_skips(db: &TestDb) {
    let store = db.store();
    store.get_lock("set:held", secs(30)).unwrap();
    let report = store
        .set_lock(
            ["set:new", "set:held", "set:new"],
            lockmgr::SetLockOptions::new(secs(300)),
        )
        .unwrap();
    assert_eq!(
        (
            report.created,
            report.renewed,
            report.skip_create,
            report.skip_renew
        ),
        (1, 1, 0, 0)
    );
    let statuses: Vec<_> = report
        .statuses
        .iter()
        .map(|s| (s.name.as_str(), s.was_locked, s.action))
        .collect();
    assert_eq!(
        statuses,
        [
            ("set:new", false, SetLockAction::Create),
            ("set:held", true, SetLockAction::Extend)
        ]
    );
    assert!(
        store
            .find_lock("set:held")
            .unwrap()
            .unwrap()
            .expires_seconds()
            .unwrap()
            >= 290
    );

    // No renew: held names are skipped. No create: free names are skipped.
    let report = store
        .set_lock(
            ["set:held", "set:free"],
            lockmgr::SetLockOptions::new(secs(900))
                .no_renew()
                .only_renew(),
        )
        .unwrap();
    assert_eq!(
        (
            report.created,
            report.renewed,
            report.skip_create,
            report.skip_renew
        ),
        (0, 0, 1, 1)
    );
    assert!(report
        .statuses
        .iter()
        .all(|s| s.action == SetLockAction::Skip));
    assert!(!store.is_locked("set:free").unwrap());
    assert!(
        store
            .find_lock("set:held")
            .unwrap()
            .unwrap()
            .expires_seconds()
            .unwrap()
            < 310
    );

    // No timeout: never expires.
    let report = store
        .set_lock(["set:forever"], lockmgr::SetLockOptions::new(None))
        .unwrap();
    assert_eq!(report.statuses[0].lock.as_ref().unwrap().locked_until, None);
}

fn set_lock_fail_keeps_nothing(db: &TestDb) {
    let store = db.store();
    let held = store.get_lock("fail:m", secs(30)).unwrap();
    match store.set_lock(
        ["fail:a", "fail:m", "fail:z"],
        lockmgr::SetLockOptions::new(secs(300)).fail(),
    ) {
        Err(Error::LockFail {
            name, locked_until, ..
        }) => {
            assert_eq!(name, "fail:m");
            assert_eq!(locked_until, held.locked_until);
        }
        other => panic!("expected LockFail, got {other:?}"),
    }
    assert!(
        !store.is_locked("fail:a").unwrap(),
        "the failed call kept a lock"
    );
    assert!(!store.is_locked("fail:z").unwrap());
    let after = store.find_lock("fail:m").unwrap().unwrap();
    assert_eq!(
        after.locked_until, held.locked_until,
        "the failed call renewed a lock"
    );
}

fn invalid_names_are_refused(db: &TestDb) {
    let store = db.store();
    let sentinel = store.get_lock("sentinel", MINUTE).unwrap();
    let long = "x".repeat(256);
    let huge = "y".repeat(1 << 20);
    let bad_names = [
        "",
        "nul\0byte",
        "new\nline",
        "tab\t",
        "esc\u{1b}[0m",
        "c1\u{9b}",
        long.as_str(),
        huge.as_str(),
    ];
    for bad in bad_names {
        let shown = &bad[..bad.len().min(20)];
        let invalid = |r: Result<(), Error>| {
            assert!(
                matches!(r, Err(Error::InvalidName { .. })),
                "{shown:?}: {r:?}"
            )
        };
        invalid(store.get_lock(bad, None).map(drop));
        invalid(store.is_locked(bad).map(drop));
        invalid(store.unlock(bad).map(drop));
        invalid(store.unlock_if_expired(bad).map(drop));
        invalid(store.find_lock(bad).map(drop));
        invalid(
            store
                .renew_lock(bad, lockmgr::RenewOptions::new(None).create())
                .map(drop),
        );
        invalid(
            store
                .set_lock(["ok", bad], lockmgr::SetLockOptions::new(None))
                .map(drop),
        );
        invalid(store.lock_mgr(bad).acquire().map(drop));
        let mut guard = store.lock_mgr("guard-main").acquire().unwrap();
        invalid(guard.lock(bad).map(drop));
    }
    assert!(
        !store.is_locked("ok").unwrap(),
        "a refused set_lock kept nothing"
    );
    // The store still works, and no other lock was touched.
    let after = store.find_lock("sentinel").unwrap().unwrap();
    assert!(after.same_acquisition(&sentinel));
    assert_eq!(
        (after.locked_until, after.fence),
        (sentinel.locked_until, sentinel.fence)
    );
    // Names that look odd but are valid round-trip exactly, and are distinct.
    let max = "é".repeat(127);
    let odd = [
        "Job",
        "job",
        "quote'\"; DROP TABLE lockmgr_lock; --",
        "日本語 ✓ émoji 🔒",
        "%_*?\\",
        max.as_str(),
    ];
    for good in odd {
        let lock = store.get_lock(good, None).unwrap();
        assert_eq!(lock.name, good);
        assert!(store.is_locked(good).unwrap());
    }
    let mut listed: Vec<_> = store
        .list_locks()
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect();
    let mut expected: Vec<String> = odd.iter().map(|s| s.to_string()).collect();
    expected.push("sentinel".into());
    listed.sort();
    expected.sort();
    assert_eq!(listed, expected);
    // LIKE-style characters are not patterns: releasing "%_*?\\" releases only it.
    assert!(store.unlock("%_*?\\").unwrap());
    assert_eq!(store.list_locks().unwrap().len(), odd.len());
}

fn names_compare_byte_for_byte(db: &TestDb) {
    let store = db.store();
    // Names that a collation could fold together: case, trailing spaces (MySQL's
    // PAD SPACE collations), Unicode normalization (NFC "é" and NFD "e + ◌́"),
    // and `ß` / `ss`. Each one is a lock of its own.
    let names = [
        "job",
        "Job",
        "job ",
        "job  ",
        "caf\u{e9}",
        "cafe\u{301}",
        "stra\u{df}e",
        "strasse",
    ];
    let locks: Vec<_> = names
        .iter()
        .map(|name| {
            store
                .get_lock(name, MINUTE)
                .unwrap_or_else(|e| panic!("{name:?} was taken as another name: {e}"))
        })
        .collect();
    for (lock, name) in locks.iter().zip(names) {
        assert_eq!(lock.name, name);
    }
    assert!(!store.is_locked("JOB").unwrap());
    assert!(!store.is_locked(" job").unwrap());
    assert!(store.unlock("job").unwrap());
    assert!(
        store.is_locked("job ").unwrap(),
        "unlocking `job` released `job `"
    );
    assert!(store.is_locked("Job").unwrap());
    let listed: Vec<_> = store
        .list_locks()
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert_eq!(listed.len(), names.len() - 1, "{listed:?}");
}

fn stores_share_one_database(db: &TestDb) {
    let a = db.store();
    let b = db.store();
    let lock = a.get_lock("shared", MINUTE).unwrap();
    assert!(b.get_lock("shared", MINUTE).unwrap_err().is_locked());
    assert!(
        b.unlock(&lock).unwrap(),
        "an acquisition can be released through any store"
    );
    assert!(!a.is_locked("shared").unwrap());
}

fn threads_race_without_raw_errors(db: &TestDb) {
    let store = db.store();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            std::thread::spawn(move || {
                let (mut won, mut lost) = (0, 0);
                for _ in 0..30 {
                    match store.get_lock("race:threads", MINUTE) {
                        Ok(lock) => {
                            won += 1;
                            store.unlock(&lock).unwrap();
                        }
                        Err(e) if e.is_locked() => lost += 1,
                        Err(e) => panic!("a loser got a raw error: {e}"),
                    }
                }
                (won, lost)
            })
        })
        .collect();
    let results: Vec<(u32, u32)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert_eq!(results.iter().map(|(w, l)| w + l).sum::<u32>(), 240);
    assert!(results.iter().map(|(w, _)| w).sum::<u32>() > 0);
}

fn set_lock_races_get_lock_without_raw_errors(db: &TestDb) {
    // set_lock renews and creates rows in one transaction while other threads take
    // and drop the same names one at a time. Whatever order the database locks
    // things in (MySQL: rows, and the fence counter on every insert), every call
    // ends as Ok or Locked: deadlocks and busy errors are retried inside.
    let store = db.store();
    let names = ["mix:a", "mix:b", "mix:c", "mix:d"];
    let setters: Vec<_> = (0..3)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    let report = store
                        .set_lock(names, lockmgr::SetLockOptions::new(MINUTE))
                        .unwrap_or_else(|e| panic!("set_lock got a raw error: {e}"));
                    assert_eq!(report.created + report.renewed, names.len());
                    // Free one name, so the next call creates (inserts) after renewing.
                    store.unlock(names[(t + i) % names.len()]).unwrap();
                }
            })
        })
        .collect();
    let takers: Vec<_> = (0..3)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut won = 0;
                for i in 0..50 {
                    match store.get_lock(names[(t + i) % names.len()], MINUTE) {
                        Ok(lock) => {
                            won += 1;
                            store.unlock(&lock).unwrap();
                        }
                        Err(e) if e.is_locked() => {}
                        Err(e) => panic!("get_lock got a raw error: {e}"),
                    }
                }
                won
            })
        })
        .collect();
    for setter in setters {
        setter.join().unwrap();
    }
    for taker in takers {
        taker.join().unwrap();
    }
    let fences: Vec<i64> = names
        .iter()
        .filter_map(|name| store.find_lock(name).unwrap())
        .map(|lock| lock.fence)
        .collect();
    let mut unique = fences.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), fences.len(), "two live locks share a fence");
}

testkit::backend_tests!(
    expired_rows_are_removed_on_their_own,
    second_get_lock_fails_with_locked,
    is_locked_true_and_false,
    lock_unlock_lock_unlock,
    expired_lock_is_free_and_taken_over,
    acquired_lock_is_its_row,
    never_expiring_locks_survive_clean,
    guard_releases_on_exit_and_after_error,
    guard_releases_during_panic,
    guard_extra_lock_held_elsewhere_fails,
    wait_acquires_when_holder_expires_in_window,
    wait_fails_with_locked_after_window,
    wait_acquires_after_release_from_another_thread,
    renew_without_add_time_sets_from_now,
    renew_with_add_time_adds,
    renew_shorter_keeps_or_adds,
    renew_missing_is_not_found_unless_create,
    renew_never_expiring_lock,
    guard_renew_main_and_expired_main,
    stale_lock_cannot_touch_new_holder,
    stale_guard_drop_leaves_new_holder_alone,
    unlock_by_name_is_unconditional,
    fence_grows_across_all_locks,
    list_locks_shows_live_locks_only,
    unlock_all_removes_exactly_what_was_listed,
    unlock_if_expired_only_removes_stale_rows,
    set_lock_creates_renews_and_skips,
    set_lock_fail_keeps_nothing,
    invalid_names_are_refused,
    names_compare_byte_for_byte,
    stores_share_one_database,
    threads_race_without_raw_errors,
    set_lock_races_get_lock_without_raw_errors,
);

/// Expired rows go away on their own: a store in use removes them in batches of 500
/// in the background, by the database clock.
fn expired_rows_are_removed_on_their_own(db: &TestDb) {
    let cleaning = lockmgr::LockStore::builder(db.url())
        .auto_clean(Some(Duration::from_millis(200)))
        .open()
        .unwrap();
    let quiet = lockmgr::LockStore::builder(db.url())
        .auto_clean(None)
        .open()
        .unwrap();
    let names: Vec<String> = (0..1_200).map(|i| format!("per-item:{i}")).collect();
    quiet
        .set_lock(
            &names,
            lockmgr::SetLockOptions::new(Some(Duration::from_millis(1))).no_renew(),
        )
        .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    // Acquisitions on the cleaning store start the background clean (at most every
    // 200 ms); nothing else deletes the expired rows.
    for _ in 0..50 {
        drop(cleaning.get_lock("trigger", Some(Duration::from_millis(1))));
        std::thread::sleep(Duration::from_millis(100));
    }
    // What is left for a full clean: at most the trigger's own last row.
    let left = quiet.clean_locks().unwrap();
    assert!(left <= 1, "{left} expired rows were left in the table");
}
