//! SQLite under real faults: a full disk, and many processes opening a brand-new file.
//!
//! A write whose commit fails must be an error, never `Ok`: SQLite commits an
//! autocommit `INSERT/UPDATE … RETURNING` when the statement finishes, after it has
//! handed out the row, so a driver that stops reading after that row reports a write
//! that was rolled back. Three ways to make the disk "full", each real:
//!
//! - a process whose file-size limit (`RLIMIT_FSIZE`) stops the write-ahead log from
//!   growing (no root needed; the write fails with `EFBIG`);
//! - a 1 MB tmpfs filled to the brim (needs root to mount; the write fails with
//!   `ENOSPC`, which SQLite reports as "database or disk is full");
//! - `PRAGMA max_page_count` on lockmgr's own connections (the database file may not
//!   grow: SQLite reports "database or disk is full" from the statement itself).
//!
//! The processes are copies of this test binary: a test that needs one re-runs the
//! binary with only [`child_entry`] selected and the job in environment variables.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lockmgr::{Error, LockStore};

/// Set in a child process: what it is to do.
const CHILD_JOB: &str = "LOCKMGR_TEST_CHILD_JOB";
/// Set in a child process: the database it works on.
const CHILD_URL: &str = "LOCKMGR_TEST_CHILD_URL";
/// Set in a child process: when to start, in Unix milliseconds (a common start line).
const CHILD_START: &str = "LOCKMGR_TEST_CHILD_START";

const MINUTE: Option<Duration> = Some(Duration::from_secs(60));

/// Run this binary again as a child doing `job` on `url`.
fn spawn_child(job: &str, url: &str, start_at_ms: Option<u128>) -> std::process::Child {
    let mut command = Command::new(std::env::current_exe().unwrap());
    command
        .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
        .env(CHILD_JOB, job)
        .env(CHILD_URL, url)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(at) = start_at_ms {
        command.env(CHILD_START, at.to_string());
    }
    command.spawn().unwrap()
}

/// The lines a child reported (`@result <op> <outcome>`), after it exited cleanly.
fn results(out: Output) -> Vec<(String, String)> {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
        .lines()
        // libtest prints "test child_entry ... " before the test's own output, on the
        // same line: find the marker anywhere.
        .filter_map(|line| line.split_once("@result ").map(|(_, rest)| rest))
        .map(|rest| {
            let (op, outcome) = rest.split_once(' ').unwrap_or((rest, ""));
            (op.to_string(), outcome.to_string())
        })
        .collect()
}

fn report(op: &str, outcome: std::result::Result<String, Error>) {
    match outcome {
        Ok(what) => println!("@result {op} ok {what}"),
        Err(err) => println!("@result {op} err {err}"),
    }
    std::io::stdout().flush().unwrap();
}

fn unix_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis()
}

fn sqlite_url(dir: &Path) -> String {
    dir.join("locks.sqlite3").to_str().unwrap().to_string()
}

/// The entry point of the child processes; does nothing in a normal test run.
#[test]
fn child_entry() {
    let (Ok(job), Ok(url)) = (std::env::var(CHILD_JOB), std::env::var(CHILD_URL)) else {
        return;
    };
    if let Some(at) = std::env::var(CHILD_START)
        .ok()
        .and_then(|v| v.parse::<u128>().ok())
    {
        let now = unix_ms();
        if at > now {
            std::thread::sleep(Duration::from_millis((at - now) as u64));
        }
    }
    match job.as_str() {
        "writes-past-file-size-limit" => writes_past_file_size_limit(&url),
        "get-lock" => {
            let store = LockStore::open(&url).unwrap();
            report(
                "get_lock",
                store.get_lock("job", MINUTE).map(|l| l.fence.to_string()),
            );
        }
        "open-fresh" => report(
            "open",
            LockStore::open(&url)
                .and_then(|store| store.get_lock(&format!("p{}", std::process::id()), None))
                .map(|_| String::new()),
        ),
        other => panic!("unknown child job {other}"),
    }
}

/// In the child: prepare locks, then forbid the files to grow and try every write.
fn writes_past_file_size_limit(url: &str) {
    let store = LockStore::builder(url).pool_size(1).open().unwrap();
    let held = store.get_lock("held", MINUTE).unwrap();
    let kept = store
        .lock_mgr("kept")
        .hold_at_least(Duration::from_secs(60))
        .acquire()
        .unwrap();
    // Checkpoint and empty the write-ahead log, so that the next commit must grow it.
    let _ = store.clean_locks();
    drop(store);
    let store = LockStore::builder(url).pool_size(1).open().unwrap();
    assert!(store.is_locked("held").unwrap());

    // From here on, no file of this process may grow; a write that tries fails with
    // EFBIG (SIGXFSZ ignored) instead of killing the process.
    // SAFETY: setting a signal disposition and a resource limit of this process.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
        let limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: libc::RLIM_INFINITY,
        };
        assert_eq!(libc::setrlimit(libc::RLIMIT_FSIZE, &limit), 0);
    }
    report(
        "get_lock",
        store.get_lock("new", MINUTE).map(|l| l.fence.to_string()),
    );
    report(
        "is_locked_after",
        store.is_locked("new").map(|b| b.to_string()),
    );
    report(
        "renew_lock",
        store
            .renew_lock(
                &held,
                lockmgr::RenewOptions::new(Some(Duration::from_secs(600))),
            )
            .map(|l| format!("{:?}", l.expires_seconds())),
    );
    report(
        "set_lock",
        store
            .set_lock(["set"], lockmgr::SetLockOptions::new(MINUTE))
            .map(|r| r.created.to_string()),
    );
    report("unlock", store.unlock(&held).map(|b| b.to_string()));
    let mut kept = kept;
    report("hold_at_least", kept.unlock().map(|()| String::new()));
    let fresh = Path::new(url).with_file_name("fresh.sqlite3");
    report(
        "migrate",
        LockStore::open(fresh.to_str().unwrap()).map(|_| String::new()),
    );
}

/// Every write path fails with an error when its commit cannot be written, and
/// nothing reports a lock that is not in the database.
#[test]
fn a_write_that_cannot_be_committed_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    let out = spawn_child("writes-past-file-size-limit", &url, None)
        .wait_with_output()
        .unwrap();
    let results = results(out);
    let ops: Vec<&str> = results.iter().map(|(op, _)| op.as_str()).collect();
    assert_eq!(
        ops,
        [
            "get_lock",
            "is_locked_after",
            "renew_lock",
            "set_lock",
            "unlock",
            "hold_at_least",
            "migrate"
        ]
    );
    for (op, outcome) in &results {
        if op == "is_locked_after" {
            assert_eq!(outcome, "ok false", "the failed get_lock left a lock");
        } else {
            assert!(
                outcome.starts_with("err "),
                "{op} reported success for a write that was not committed: {outcome}"
            );
        }
    }
    // Nothing of the failed writes is in the database.
    let store = LockStore::open(&url).unwrap();
    let names: Vec<String> = store
        .list_locks()
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect();
    assert_eq!(names, ["held", "kept"], "after the failed writes");
    let held = store.find_lock("held").unwrap().unwrap();
    assert!(held.expires_seconds().unwrap() <= 60, "the renewal stuck");
}

/// On a full file system, two processes both trying `get_lock("job")` get a
/// "disk is full" error; neither is told it holds a lock.
#[test]
fn full_tmpfs_two_processes_get_errors_not_locks() {
    let Some(tmpfs) = testkit::Tmpfs::mount("1m") else {
        eprintln!("skipped: mounting a tmpfs needs root (the RLIMIT_FSIZE test covers this)");
        return;
    };
    let url = sqlite_url(tmpfs.path());
    {
        let store = LockStore::open(&url).unwrap();
        store.get_lock("warm-up", None).unwrap();
    }
    // One store stays open, so the write-ahead log and its index exist (empty) while
    // the file system fills up.
    let store = LockStore::open(&url).unwrap();
    assert!(store.is_locked("warm-up").unwrap());
    tmpfs.fill();

    let start = unix_ms() + 300;
    let children = [
        spawn_child("get-lock", &url, Some(start)),
        spawn_child("get-lock", &url, Some(start)),
    ];
    for child in children {
        let results = results(child.wait_with_output().unwrap());
        assert_eq!(results.len(), 1, "{results:?}");
        let (_, outcome) = &results[0];
        assert!(
            outcome.starts_with("err ") && outcome.contains("full"),
            "get_lock on a full disk: {outcome}"
        );
    }
    let err = store.get_lock("job", MINUTE).unwrap_err();
    assert!(matches!(err, Error::Database(_)), "{err:?}");
    assert!(err.to_string().contains("disk is full"), "{err}");
    assert!(!store.is_locked("job").unwrap());
}

/// `PRAGMA max_page_count`: once the file may not grow, every write path says "full"
/// and what was committed before stays as it was.
#[test]
fn max_page_count_makes_writes_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let url = sqlite_url(dir.path());
    drop(LockStore::open(&url).unwrap());
    let pages = std::fs::metadata(&url).unwrap().len() / 4096;
    let store = LockStore::builder(&url)
        .sqlite_max_page_count(u32::try_from(pages).unwrap())
        .open()
        .unwrap();
    let mut taken = Vec::new();
    let err = loop {
        let name = format!("a-long-enough-lock-name-to-fill-pages-{:05}", taken.len());
        match store.get_lock(&name, MINUTE) {
            Ok(lock) => taken.push(lock),
            Err(err) => break err,
        }
        assert!(taken.len() < 10_000, "the database never filled up");
    };
    assert!(err.to_string().contains("full"), "{err}");
    // Every lock reported taken is in the database, and nothing else is.
    assert_eq!(store.list_locks().unwrap().len(), taken.len());
    let names: Vec<String> = (0..50)
        .map(|i| format!("a-long-enough-lock-name-set-{i:05}"))
        .collect();
    let err = store
        .set_lock(&names, lockmgr::SetLockOptions::new(MINUTE))
        .unwrap_err();
    assert!(err.to_string().contains("full"), "{err}");
    assert_eq!(store.list_locks().unwrap().len(), taken.len());
    // Releasing frees pages: the store works again.
    for lock in &taken {
        assert!(store.unlock(lock).unwrap());
    }
    store.get_lock("after", MINUTE).unwrap();
}

/// Many processes open the same brand-new file at the same moment: every one of them
/// creates or finds the table and takes its lock (none fails with "database is locked").
#[test]
fn many_processes_open_a_new_file_at_once() {
    const PROCESSES: usize = 30;
    const ROUNDS: usize = 13;
    let mut failures = Vec::new();
    for round in 0..ROUNDS {
        let dir = tempfile::tempdir().unwrap();
        let url = sqlite_url(dir.path());
        let start = unix_ms() + 500;
        let children: Vec<_> = (0..PROCESSES)
            .map(|_| spawn_child("open-fresh", &url, Some(start)))
            .collect();
        let mut opened = 0;
        for child in children {
            for (op, outcome) in results(child.wait_with_output().unwrap()) {
                if outcome.starts_with("ok") {
                    opened += 1;
                } else {
                    failures.push(format!("round {round}: {op}: {outcome}"));
                }
            }
        }
        let locks = LockStore::open(&url).unwrap().list_locks().unwrap().len();
        assert_eq!(
            locks, opened,
            "round {round}: every open that succeeded holds a lock"
        );
    }
    assert!(
        failures.is_empty(),
        "{} of {} opens failed: {failures:#?}",
        failures.len(),
        PROCESSES * ROUNDS
    );
}
