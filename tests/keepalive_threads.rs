//! A thousand kept-alive guards held at once: one scheduler renews them all, so the
//! process's thread count does not grow with the number of guards. Alone in its test
//! binary, since it counts the threads of the whole process.

use std::time::{Duration, Instant};

use lockmgr::{LockGuard, LockStore};
use testkit::footprint::thread_count;
use testkit::TestDb;

const GUARDS: usize = 1000;

/// Threads the scheduler may add, whatever the number of guards: its timer thread and
/// a few workers, plus what the store itself starts (a background clean).
const ALLOWED: usize = 12;

fn take(store: &LockStore, name: String) -> LockGuard {
    store
        .lock_mgr(name)
        // Renewed every 3 s: a renewal may run 6 s late on a loaded machine
        // before the lease runs out (this test counts threads, not speed).
        .expires(Some(Duration::from_secs(9)))
        .keepalive(true)
        .acquire()
        .unwrap()
}

#[test]
fn a_thousand_keepalive_guards_share_a_few_threads() {
    let db = TestDb::sqlite();
    let store = db.store();
    // Warm up what any acquisition starts, then count.
    drop(take(&store, "warm-up".into()));
    let before = thread_count();

    let mut guards = Vec::with_capacity(GUARDS);
    let mut most = before;
    for i in 0..GUARDS {
        guards.push(take(&store, format!("many:{i}")));
        if i % 50 == 0 {
            most = most.max(thread_count());
        }
    }
    // Hold them until every one was renewed at least once (a renewal every 3 s).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        most = most.max(thread_count());
        let pending = guards
            .iter()
            .filter(|g| g.current_lock().locked_until <= g.main_lock().locked_until)
            .count();
        if pending == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{pending} of {GUARDS} guards never renewed"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    println!("threads: {before} before, at most {most} with {GUARDS} kept-alive guards");
    assert!(
        most <= before + ALLOWED,
        "{before} threads before, {most} with {GUARDS} kept-alive guards"
    );
    for guard in &guards {
        assert!(!guard.is_lost(), "{} was lost", guard.name());
        assert_eq!(guard.current_lock().fence, guard.fence());
    }
    assert_eq!(store.list_locks().unwrap().len(), GUARDS);
    drop(guards);
    assert!(store.list_locks().unwrap().is_empty());
}
