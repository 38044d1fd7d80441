//! Real processes racing on one database (SQLite file and PostgreSQL).
//!
//! This test binary is its own worker: run without arguments it is the parent, which
//! spawns copies of itself with `--child …` and checks what they report. (It has no
//! libtest harness, so that the children are plain processes with plain arguments.)

use std::fs::{self, OpenOptions};
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use lockmgr::LockStore;
use testkit::TestDb;

const PROCESSES: usize = 8;
const TRIES: usize = 100;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("--child") => child(&args[1..]),
        Some("--list") => println!("race_for_one_name: test\nfresh_database_opened_at_once: test"),
        _ => parent(),
    }
}

fn parent() {
    let mut failures = Vec::new();
    for backend in [lockmgr::Backend::Sqlite, lockmgr::Backend::Postgres] {
        for (name, test) in [
            ("race_for_one_name", race_for_one_name as fn(&TestDb)),
            (
                "fresh_database_opened_at_once",
                fresh_database_opened_at_once,
            ),
        ] {
            let db = TestDb::of(backend);
            let started = Instant::now();
            let outcome = std::panic::catch_unwind(|| test(&db));
            let status = if outcome.is_ok() { "ok" } else { "FAILED" };
            println!(
                "test {backend}::{name} ... {status} ({:.1?})",
                started.elapsed()
            );
            if outcome.is_err() {
                failures.push(format!("{backend}::{name}"));
            }
        }
    }
    if !failures.is_empty() {
        eprintln!("failed: {failures:?}");
        std::process::exit(1);
    }
}

/// 8 processes × 100 tries, no waiting, on one name: never two holders at once, every
/// loser sees `Locked`, and the count of wins matches a counter kept under the lock.
fn race_for_one_name(db: &TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let start = dir.path().join("start");
    let marker = dir.path().join("held");
    let counter = dir.path().join("counter");
    fs::write(&counter, "0").unwrap();
    db.store(); // the table exists before the race starts

    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            spawn_child(&[
                "race",
                db.url(),
                "race:one",
                &TRIES.to_string(),
                path(&marker),
                path(&counter),
                path(&start),
            ])
        })
        .collect();
    fs::write(&start, "go").unwrap();

    let mut total = Tally::default();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "child failed: {stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        total.add(&Tally::parse(&stdout));
    }
    let counted: usize = fs::read_to_string(&counter)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    println!("  {total:?}, counter {counted}");
    assert_eq!(total.overlap, 0, "two processes held the lock at once");
    assert_eq!(total.other, 0, "a loser got an error other than Locked");
    assert_eq!(total.won + total.locked, PROCESSES * TRIES);
    assert_eq!(counted, total.won, "updates made under the lock were lost");
    assert!(
        total.won > 0 && total.locked > 0,
        "no contention happened: {total:?}"
    );
    assert!(!db.store().is_locked("race:one").unwrap());
}

/// 6 processes open the same fresh database at the same moment: every one of them
/// creates-or-finds the table and takes a lock.
fn fresh_database_opened_at_once(db: &TestDb) {
    let dir = tempfile::tempdir().unwrap();
    let start = dir.path().join("start");
    let children: Vec<_> = (0..6)
        .map(|i| spawn_child(&["open", db.url(), &format!("open:{i}"), path(&start)]))
        .collect();
    fs::write(&start, "go").unwrap();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "opening a fresh database at once failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(db.store().list_locks().unwrap().len(), 6);
}

fn spawn_child(args: &[&str]) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .arg("--child")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[derive(Debug, Default)]
struct Tally {
    won: usize,
    locked: usize,
    other: usize,
    overlap: usize,
}

impl Tally {
    fn parse(out: &str) -> Tally {
        let line = out
            .lines()
            .find(|l| l.starts_with("tally "))
            .expect("a tally line");
        let field = |key: &str| -> usize {
            line.split_whitespace()
                .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
                .and_then(|v| v.parse().ok())
                .unwrap_or_else(|| panic!("no {key} in {line}"))
        };
        Tally {
            won: field("won"),
            locked: field("locked"),
            other: field("other"),
            overlap: field("overlap"),
        }
    }

    fn add(&mut self, other: &Tally) {
        self.won += other.won;
        self.locked += other.locked;
        self.other += other.other;
        self.overlap += other.overlap;
    }
}

// --- the child side -----------------------------------------------------------

fn wait_for(start: &Path) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !start.exists() {
        assert!(Instant::now() < deadline, "never told to start");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn child(args: &[String]) {
    match args[0].as_str() {
        "race" => {
            let (url, name, tries) = (&args[1], &args[2], args[3].parse::<usize>().unwrap());
            let (marker, counter) = (PathBuf::from(&args[4]), PathBuf::from(&args[5]));
            let store = LockStore::open(url).unwrap();
            wait_for(Path::new(&args[6]));
            let mut tally = Tally::default();
            for _ in 0..tries {
                match store.get_lock(name, Some(Duration::from_secs(60))) {
                    Ok(lock) => {
                        tally.won += 1;
                        match OpenOptions::new()
                            .write(true)
                            .create_new(true)
                            .open(&marker)
                        {
                            Ok(_) => {}
                            Err(e) if e.kind() == ErrorKind::AlreadyExists => tally.overlap += 1,
                            Err(e) => panic!("marker: {e}"),
                        }
                        let n: usize = fs::read_to_string(&counter)
                            .unwrap()
                            .trim()
                            .parse()
                            .unwrap();
                        std::thread::sleep(Duration::from_millis(2));
                        fs::write(&counter, (n + 1).to_string()).unwrap();
                        let _ = fs::remove_file(&marker);
                        store.unlock(&lock).unwrap();
                    }
                    Err(e) if e.is_locked() => tally.locked += 1,
                    Err(e) => {
                        eprintln!("other error: {e}");
                        tally.other += 1;
                    }
                }
            }
            println!(
                "tally won={} locked={} other={} overlap={}",
                tally.won, tally.locked, tally.other, tally.overlap
            );
        }
        "open" => {
            wait_for(Path::new(&args[3]));
            let store = LockStore::open(&args[1]).unwrap_or_else(|e| panic!("open: {e}"));
            store
                .get_lock(&args[2], None)
                .unwrap_or_else(|e| panic!("lock: {e}"));
        }
        other => panic!("unknown child mode {other}"),
    }
}
