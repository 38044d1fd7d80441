//! A process that waits for a lock sleeps: its CPU time (all threads, from
//! `/proc/self/stat`) stays a small fraction of the time it waits. Alone in its test
//! binary, since it measures the CPU of the whole process.
//!
//! SQLite here (its waiters poll, with backoff); PostgreSQL's waiters sleep until the
//! listener's socket wakes them, measured in a child process in
//! `tests/waiting_cpu_postgres.rs`.

use std::time::Duration;

use testkit::footprint::cpu_used_by;
use testkit::TestDb;

/// Waiters in the process, sync and async.
const WAITERS: usize = 8;

/// How long they wait (the lock stays held all along).
const WAIT: Duration = Duration::from_secs(3);

/// The CPU a waiting process may use, as a share of one core over the time it waits:
/// waiters that poll with backoff (SQLite: at most every 30 ms) used about 10% here
/// (a debug build); eight that spun would use every core.
const MOST: f64 = 0.4;

/// `WAITERS` waiters (half on threads, half as async tasks on one current-thread
/// tokio runtime) wait `WAIT` for a lock held all along by another store; the CPU
/// the process used meanwhile, and the time it took.
fn waiting_uses_little_cpu(db: &TestDb) -> (Duration, Duration) {
    let holder = db.store();
    let _held = holder.get_lock("cpu:held", None).unwrap();
    let store = db.store();
    let ((), cpu, wall) = cpu_used_by(|| {
        let threads: Vec<_> = (0..WAITERS / 2)
            .map(|_| {
                let store = store.clone();
                std::thread::spawn(move || {
                    let err = store.lock_mgr("cpu:held").wait(WAIT).acquire().unwrap_err();
                    assert!(err.is_locked(), "{err}");
                })
            })
            .collect();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let tasks: Vec<_> = (0..WAITERS / 2)
                .map(|_| tokio::spawn(store.lock_mgr("cpu:held").wait(WAIT).acquire_async()))
                .collect();
            for task in tasks {
                let err = task.await.unwrap().unwrap_err();
                assert!(err.is_locked(), "{err}");
            }
        });
        for thread in threads {
            thread.join().unwrap();
        }
    });
    (cpu, wall)
}

#[test]
fn a_waiting_process_uses_little_cpu_sqlite() {
    let (cpu, wall) = waiting_uses_little_cpu(&TestDb::sqlite());
    let share = cpu.as_secs_f64() / wall.as_secs_f64();
    println!(
        "{WAITERS} waiters for {wall:?}: {cpu:?} of CPU ({:.1}%)",
        share * 100.0
    );
    assert!(wall >= WAIT, "gave up early: {wall:?}");
    assert!(
        share < MOST,
        "{WAITERS} waiters used {cpu:?} of CPU in {wall:?} ({:.0}%)",
        share * 100.0
    );
}
