//! Real processes racing on one database (SQLite file, PostgreSQL and, with the
//! `mysql` feature, MariaDB).
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
        Some("--list") => {
            for backend in TestDb::backends() {
                for (name, _) in TESTS {
                    println!("{backend}::{name}: test");
                }
            }
            println!("postgres::restart_under_load: test");
            #[cfg(feature = "mysql")]
            println!("mysql::restart_under_load: test");
        }
        // As libtest does: the first argument that is not an option filters the tests
        // by name (`cargo test --test multiprocess mysql`).
        _ => parent(
            args.iter()
                .find(|arg| !arg.starts_with('-'))
                .map(String::as_str),
        ),
    }
}

/// A test run on each backend.
type BackendTest = (&'static str, fn(&TestDb));

/// The tests run on each backend.
const TESTS: [BackendTest; 3] = [
    ("race_for_one_name", race_for_one_name),
    (
        "fresh_database_opened_at_once",
        fresh_database_opened_at_once,
    ),
    (
        "killed_holder_frees_at_expiry",
        killed_holder_frees_at_expiry,
    ),
];

fn parent(filter: Option<&str>) {
    let mut failures = Vec::new();
    let mut run = |label: String, test: &dyn Fn()| {
        if filter.is_some_and(|filter| !label.contains(filter)) {
            return;
        }
        let started = Instant::now();
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(test));
        let status = if outcome.is_ok() { "ok" } else { "FAILED" };
        println!("test {label} ... {status} ({:.1?})", started.elapsed());
        if outcome.is_err() {
            failures.push(label);
        }
    };
    for backend in TestDb::backends() {
        for (name, test) in TESTS {
            run(format!("{backend}::{name}"), &|| test(&TestDb::of(backend)));
        }
    }
    run(
        "postgres::restart_under_load".to_string(),
        &postgres_restart_under_load,
    );
    #[cfg(feature = "mysql")]
    run(
        "mysql::restart_under_load".to_string(),
        &mysql_restart_under_load,
    );
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
        total.add(&finish(child).0);
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

/// A holder killed with SIGKILL never releases; its lock frees itself at expiry and a
/// waiter gets it within a second of that (by the database clock).
fn killed_holder_frees_at_expiry(db: &TestDb) {
    let store = db.store();
    let mut holder = spawn_child(&["hold", db.url(), "crash:job", "2000"]);
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(holder.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "held", "{line}");
    let held = store
        .find_lock("crash:job")
        .unwrap()
        .expect("the child holds the lock");
    assert_eq!(held.lock_process, Some(i64::from(holder.id())));
    holder.kill().unwrap(); // SIGKILL: no destructor runs
    holder.wait().unwrap();
    assert!(
        store.is_locked("crash:job").unwrap(),
        "the lock outlives its killed holder until expiry"
    );

    let guard = store
        .lock_mgr("crash:job")
        .wait(Duration::from_secs(30))
        .acquire()
        .unwrap();
    let late = guard.main_lock().created_at - held.locked_until.unwrap();
    println!(
        "  taken over {} ms after the dead holder's expiry",
        late.num_milliseconds()
    );
    assert!(
        late >= chrono::Duration::zero(),
        "taken before expiry: {late}"
    );
    assert!(
        late <= chrono::Duration::seconds(1),
        "taken {late} after expiry"
    );
    assert!(guard.fence() > held.fence);
}

/// PostgreSQL stopped (fast) and started again on the same port under load; see
/// [`restart_under_load`].
fn postgres_restart_under_load() {
    let cluster = testkit::PgCluster::start(&[]).unwrap_or_else(|e| panic!("{e}"));
    let url = cluster.new_database();
    restart_under_load(&url, &|| cluster.stop(), &|| cluster.restart());
}

/// MariaDB stopped (SIGTERM) and started again on the same port under load; see
/// [`restart_under_load`].
#[cfg(feature = "mysql")]
fn mysql_restart_under_load() {
    let server = testkit::MysqlServer::start(&[]).unwrap_or_else(|e| panic!("{e}"));
    let url = server.new_database();
    restart_under_load(&url, &|| server.stop(), &|| server.restart());
}

/// The server stopped and started again on the same port while 4 processes loop
/// acquire/release: they see errors during the outage (but a release is retried
/// through it), recover on their own (the pool drops the dead connections), never
/// overlap, and no lock is left stuck.
fn restart_under_load(url: &str, stop: &dyn Fn(), restart: &dyn Fn()) {
    let store = LockStore::open(url).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (marker, counter) = (dir.path().join("held"), dir.path().join("counter"));
    let done = dir.path().join("done");
    fs::write(&counter, "0").unwrap();
    let children: Vec<_> = (0..4)
        .map(|_| {
            spawn_child(&[
                "loop",
                url,
                "restart:job",
                path(&done),
                path(&marker),
                path(&counter),
            ])
        })
        .collect();
    // The outage comes once the children are under way, and they go on until
    // they have had their turns after it: counted, not timed, so that a slow
    // start or a slow restart on a loaded machine cannot leave them no time.
    let count = || -> usize {
        fs::read_to_string(&counter)
            .unwrap()
            .trim()
            .parse()
            .unwrap()
    };
    assert!(
        testkit::eventually(Duration::from_secs(60), || count() >= 20),
        "the children did not get going"
    );
    stop();
    std::thread::sleep(Duration::from_millis(1000));
    restart();
    let (restarted, before) = (Instant::now(), count());
    assert!(
        testkit::eventually(Duration::from_secs(60), || {
            restarted.elapsed() >= Duration::from_secs(2) && count() >= before + 100
        }),
        "the children did not go on after the restart"
    );
    fs::write(&done, "").unwrap();

    let mut total = Tally::default();
    for child in children {
        let (tally, stdout) = finish(child);
        // A child whose release was under way when the server stopped retries it on
        // new connections through the restart, and may see no error at all; it must
        // still have gone on winning.
        assert!(
            tally.recovered > 0 || (tally.other == 0 && tally.won > 0),
            "a child never got the lock again after the outage: {stdout}"
        );
        total.add(&tally);
    }
    println!("  {total:?}");
    assert_eq!(total.overlap, 0, "two processes held the lock at once");
    assert!(total.other > 0, "the outage went unnoticed: {total:?}");
    assert_eq!(count(), total.won);
    // A release cut off by the outage leaves its row until it expires (5 s), no longer.
    assert!(
        testkit::eventually(Duration::from_secs(10), || !store
            .is_locked("restart:job")
            .unwrap()),
        "a lock was left stuck after the restart"
    );
}

/// Wait for a worker that must succeed; its tally and its output.
fn finish(child: std::process::Child) -> (Tally, String) {
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (Tally::parse(&stdout), stdout)
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
    /// Wins after the first error.
    recovered: usize,
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
            recovered: field("recovered"),
        }
    }

    fn add(&mut self, other: &Tally) {
        self.won += other.won;
        self.locked += other.locked;
        self.other += other.other;
        self.overlap += other.overlap;
        self.recovered += other.recovered;
    }

    fn print(&self) {
        println!(
            "tally won={} locked={} other={} overlap={} recovered={}",
            self.won, self.locked, self.other, self.overlap, self.recovered
        );
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

/// The work done under the lock: take an exclusive marker file (finding it taken is an
/// overlap), increment the counter file slowly enough for a second holder to be
/// caught, give the marker back.
fn critical_section(marker: &Path, counter: &Path, tally: &mut Tally) {
    match OpenOptions::new().write(true).create_new(true).open(marker) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::AlreadyExists => tally.overlap += 1,
        Err(e) => panic!("marker: {e}"),
    }
    let n: usize = fs::read_to_string(counter).unwrap().trim().parse().unwrap();
    std::thread::sleep(Duration::from_millis(2));
    // Written aside and renamed into place: whoever reads it (the parent, while the
    // children run) sees one whole number or the other, never a file half written.
    let next = counter.with_extension("next");
    fs::write(&next, (n + 1).to_string()).unwrap();
    fs::rename(&next, counter).unwrap();
    let _ = fs::remove_file(marker);
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
                        critical_section(&marker, &counter, &mut tally);
                        store.unlock(&lock).unwrap();
                    }
                    Err(e) if e.is_locked() => tally.locked += 1,
                    Err(e) => {
                        eprintln!("other error: {e}");
                        tally.other += 1;
                    }
                }
            }
            tally.print();
        }
        "hold" => {
            let store = LockStore::open(&args[1]).unwrap();
            let expires = Duration::from_millis(args[3].parse().unwrap());
            let _lock = store.get_lock(&args[2], Some(expires)).unwrap();
            println!("held");
            std::thread::sleep(Duration::from_secs(3600));
        }
        "loop" => {
            let (url, name) = (&args[1], &args[2]);
            // Until told to stop (with a cap, should the parent die).
            let done = PathBuf::from(&args[3]);
            let deadline = Instant::now() + Duration::from_secs(180);
            let (marker, counter) = (PathBuf::from(&args[4]), PathBuf::from(&args[5]));
            let store = LockStore::builder(url)
                .connection_timeout(Duration::from_millis(500))
                .open()
                .unwrap();
            let mut tally = Tally::default();
            while !done.exists() && Instant::now() < deadline {
                match store.get_lock(name, Some(Duration::from_secs(5))) {
                    Ok(lock) => {
                        tally.won += 1;
                        if tally.other > 0 {
                            tally.recovered += 1;
                        }
                        critical_section(&marker, &counter, &mut tally);
                        if let Err(e) = store.unlock(&lock) {
                            eprintln!("release failed: {e}");
                            tally.other += 1;
                        }
                    }
                    Err(e) if e.is_locked() => tally.locked += 1,
                    Err(e) => {
                        eprintln!("error: {e}");
                        tally.other += 1;
                        std::thread::sleep(Duration::from_millis(50));
                    }
                }
                std::thread::sleep(Duration::from_millis(1));
            }
            tally.print();
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
