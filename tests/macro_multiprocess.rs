//! Several real processes against one database, on SQLite and PostgreSQL, through
//! the `lockmgr-test-worker` binary of this package.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use testkit::{start_at, TestDb};

const WORKER: &str = env!("CARGO_BIN_EXE_lockmgr-test-worker");

/// Start `count` workers with `args` at once and wait for all of them.
fn run_workers(count: usize, args: &[&str]) -> Vec<Output> {
    let children: Vec<_> = (0..count)
        .map(|_| {
            Command::new(WORKER)
                .args(args)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("cannot start lockmgr-test-worker")
        })
        .collect();
    children
        .into_iter()
        .map(|child| child.wait_with_output().expect("waiting for a worker"))
        .collect()
}

/// The acceptance case for `#[locked]`.
fn six_processes_sixty_locked_calls_each(db: &TestDb) {
    locked_counter_race(db, 6, 60);
}

/// Mutual exclusion under load (the fault suite): more processes, more calls.
fn eight_processes_hundred_locked_calls_each(db: &TestDb) {
    locked_counter_race(db, 8, 100);
}

/// `PROCESSES` workers each make `CALLS` `#[locked(wait = 60)]` calls that increment a
/// counter file and hold an exclusive marker file: the count must end exact, and no
/// body may find another's marker.
fn locked_counter_race(db: &TestDb, processes: usize, calls: u64) {
    // The table exists before the workers race to open the store.
    let store = db.store();
    let dir = tempfile::tempdir().unwrap();
    let counter = dir.path().join("counter");
    let marker = dir.path().join("marker");
    let calls_text = calls.to_string();
    let begin = start_at(Duration::from_millis(500));
    let outputs = run_workers(
        processes,
        &[
            "locked-counter",
            "--url",
            db.url(),
            "--counter",
            path(&counter),
            "--marker",
            path(&marker),
            "--calls",
            &calls_text,
            "--start-at",
            &begin,
        ],
    );
    for (i, output) in outputs.iter().enumerate() {
        assert!(
            output.status.success(),
            "worker {i} failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let count: u64 = std::fs::read_to_string(&counter)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert_eq!(count, processes as u64 * calls, "lost or extra increments");
    assert!(!marker.exists(), "a body left its marker behind");
    assert!(
        store.list_locks().unwrap().is_empty(),
        "a lock outlived its call"
    );
}

/// A `#[locked]` job with the defaults keeps its lock while it runs past its 60 s lease
/// (renewed every 20 s), and a killed process's job is runnable again within 60 s.
fn a_crashed_job_is_free_within_a_minute(db: &TestDb) {
    use std::io::BufRead;
    let store = db.store();
    let mut child = Command::new(WORKER)
        .args(["hold", "--url", db.url()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("cannot start lockmgr-test-worker");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "holding");
    let first = store.find_lock("crash-test:job").unwrap().expect("held");
    let lease = first.expires_in().unwrap();
    assert!(lease <= Duration::from_secs(60), "{lease:?}");
    // Past one renewal (due every third of the lease, 20 s), the lease has moved
    // on; it may come late on a loaded machine, but well before the lease ends.
    let mut renewed = first.clone();
    assert!(
        testkit::eventually(Duration::from_secs(45), || {
            renewed = store
                .find_lock("crash-test:job")
                .unwrap()
                .expect("still held");
            renewed.locked_until > first.locked_until
        }),
        "{first:?} {renewed:?}"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let left = store
        .find_lock("crash-test:job")
        .unwrap()
        .and_then(|lock| lock.expires_in())
        .unwrap_or_default();
    assert!(
        left <= Duration::from_secs(60),
        "the dead process's job stays locked for {left:?}"
    );
}

fn path(p: &Path) -> &str {
    p.to_str().expect("utf-8 temp path")
}

#[test]
fn worker_reports_usage_errors() {
    let output = Command::new(WORKER).arg("no-such-mode").output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown mode"));
    let output = Command::new(WORKER).arg("locked-counter").output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--url is required"));
}

testkit::backend_tests!(
    six_processes_sixty_locked_calls_each,
    eight_processes_hundred_locked_calls_each,
    a_crashed_job_is_free_within_a_minute,
);
