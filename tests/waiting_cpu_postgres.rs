//! A waiting process is idle: it sleeps until a release wakes it or its next poll is
//! due, and burns (almost) no CPU meanwhile. The waiter is a child process (this test
//! binary run again, see `testkit::cpu`), the holder this process.

use std::time::Duration;

use testkit::cpu::{spawn_waiter, waiter_child, waiter_report};
use testkit::TestDb;

/// Not a test of its own: the body of the child processes.
#[test]
fn child_entry() {
    waiter_child();
}

/// PostgreSQL: the release listener waits on its socket instead of polling it.
#[test]
fn a_postgres_waiter_uses_under_a_tenth_of_a_second_of_cpu_in_ten_seconds() {
    let db = TestDb::postgres();
    let holder = db.store();
    let held = holder.get_lock("busy", None).unwrap();
    let waiter = spawn_waiter("child_entry", db.url(), "busy", Duration::from_secs(10));
    let (cpu, acquired) = waiter_report(waiter);
    println!("the waiter used {cpu:?} of CPU in 10 s");
    assert!(!acquired, "the lock was held all along");
    assert!(
        cpu < Duration::from_millis(100),
        "a waiter used {cpu:?} of CPU in 10 s"
    );
    assert!(holder.unlock(&held).unwrap());
}
