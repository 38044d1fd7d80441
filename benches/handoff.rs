//! Hand-off latency: from the holder's release to the waiter's acquire.
//!
//! `cargo bench --bench handoff` prints a markdown table (copied into
//! docs/BENCHMARKS.md): p50, p90 and max over `HANDOFFS` hand-offs, between two stores
//! in one process (two threads) and between two processes, on a SQLite file and on a
//! throwaway PostgreSQL (durable settings), directly and through a PgBouncer in
//! transaction pooling mode (`?pgbouncer=true`), with a direct listen URL and without
//! one (waiters poll).
//!
//! Two parties take turns on one lock: each waits for it (`wait = 30 s`), holds it for
//! a moment, notes the release time and releases, then pauses before waiting again, so
//! the other party — already waiting — takes it. A hand-off's latency is the other
//! party's acquire time minus that release time (wall clock of the same machine).
//!
//! On PostgreSQL the same turns are also taken without lockmgr, two floors of a
//! hand-off through a table, each on two plain connections whose waiter sleeps on its
//! socket until a notification arrives (as lockmgr's listener does):
//!
//! - **two commits**: the holder deletes its row and notifies in one statement, the
//!   waiter inserts the row again: what lockmgr does, without lockmgr;
//! - **one commit**: the holder's release writes the waiter in as the row's owner and
//!   notifies, and the waiter holds the lock the moment the notification arrives,
//!   with no statement of its own: the least any hand-off through a table can cost
//!   (a design that grants the lock in the release's transaction could at best reach it).
//!
//! Commits are durable (each waits for a WAL flush). Everything also runs on a database
//! with `synchronous_commit = off`, where commits do not wait for the disk, to show the
//! cost of the rest of the path.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use diesel::connection::SimpleConnection;
use diesel::pg::PgConnection;
use diesel::prelude::*;
use lockmgr::LockStore;
use testkit::{PgBouncer, PgCluster, PoolMode};

const HANDOFFS: usize = 30;
const HOLD: Duration = Duration::from_millis(400);
const PAUSE: Duration = Duration::from_millis(50);

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--floor-party") {
        let floor = Floor::parse(&args[2]);
        for event in floor_party(&args[1], floor, &args[3], HANDOFFS / 2 + 1) {
            println!("{} {}", event.0, event.1);
        }
        return;
    }
    if args.first().map(String::as_str) == Some("--party") {
        let party_at = Party {
            url: args[1].clone(),
            listen_url: args.get(2).cloned(),
        };
        for event in party(&party_at, HANDOFFS / 2 + 1) {
            println!("{} {}", event.0, event.1);
        }
        return;
    }
    if args.iter().any(|a| a == "--list") {
        return;
    }
    let cluster =
        PgCluster::start(&["fsync=on", "synchronous_commit=on"]).unwrap_or_else(|e| panic!("{e}"));
    let bouncer =
        PgBouncer::start(&cluster, PoolMode::Transaction, 4).unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let sqlite = dir.path().join("handoff.sqlite3");
    let postgres = cluster.new_database();
    let no_sync = cluster.new_database();
    let db_name = no_sync.rsplit('/').next().unwrap().to_string();
    PgConnection::establish(&no_sync)
        .unwrap()
        .batch_execute(&format!(
            "ALTER DATABASE {db_name} SET synchronous_commit = off"
        ))
        .unwrap();
    let pooled = cluster.new_database();
    let pooled_url = format!("{}?pgbouncer=true", bouncer.url_for(&pooled));
    let at = |backend: &'static str, url: &str, listen_url: Option<&str>| {
        let party = Party {
            url: url.to_string(),
            listen_url: listen_url.map(str::to_string),
        };
        (backend, party)
    };
    let targets = [
        at("sqlite", sqlite.to_str().unwrap(), None),
        at("postgres", &postgres, None),
        at("postgres, synchronous_commit=off", &no_sync, None),
        at(
            "postgres via PgBouncer, listen URL",
            &pooled_url,
            Some(&pooled),
        ),
        at("postgres via PgBouncer, polling", &pooled_url, None),
    ];
    println!("## Hand-off latency, release → waiter's acquire ({HANDOFFS}+ hand-offs each)\n");
    println!("| backend | parties | p50 | p90 | max | hand-offs |");
    println!("|---|---|---:|---:|---:|---:|");
    for (backend, party_at) in &targets {
        party_at.store();
        let mut runs = Vec::new();
        // Through the pooler only between processes: in one process a release wakes
        // the waiters directly, whatever the URL.
        if !backend.contains("PgBouncer") {
            runs.push(("two stores, one process", in_process(party_at)));
        }
        runs.push(("two processes", two_processes(party_at)));
        if backend.starts_with("postgres") && !backend.contains("PgBouncer") {
            runs.push((
                "floor: two commits",
                floor_processes(&party_at.url, Floor::TwoCommits),
            ));
            runs.push((
                "floor: one commit",
                floor_processes(&party_at.url, Floor::OneCommit),
            ));
        }
        for (label, events) in runs {
            let mut latencies = handoff_latencies(events);
            latencies.sort();
            let pick = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
            println!(
                "| {backend} | {label} | {:.2} ms | {:.2} ms | {:.1} ms | {} |",
                ms(pick(0.5)),
                ms(pick(0.9)),
                ms(*latencies.last().unwrap()),
                latencies.len()
            );
        }
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn now_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}

/// Where a party opens its store.
#[derive(Clone)]
struct Party {
    url: String,
    listen_url: Option<String>,
}

impl Party {
    fn store(&self) -> LockStore {
        let mut builder = LockStore::builder(&self.url);
        if let Some(listen) = &self.listen_url {
            builder = builder.listen_url(listen);
        }
        builder.open().unwrap()
    }
}

/// One party: `turns` times wait for the lock, hold it, release it, pause. The events:
/// ("acquired" | "released", unix ns).
fn party(at: &Party, turns: usize) -> Vec<(&'static str, u128)> {
    let store = at.store();
    let mut events = Vec::new();
    for _ in 0..turns {
        let guard = store
            .lock_mgr("bench:handoff")
            .expires(Some(Duration::from_secs(60)))
            .wait(Duration::from_secs(30))
            .acquire()
            .unwrap();
        events.push(("acquired", now_ns()));
        std::thread::sleep(HOLD);
        events.push(("released", now_ns()));
        drop(guard);
        std::thread::sleep(PAUSE);
    }
    events
}

fn in_process(at: &Party) -> Vec<(&'static str, u128)> {
    let other = {
        let at = at.clone();
        std::thread::spawn(move || party(&at, HANDOFFS / 2 + 1))
    };
    let mut events = party(at, HANDOFFS / 2 + 1);
    events.extend(other.join().unwrap());
    events
}

fn two_processes(at: &Party) -> Vec<(&'static str, u128)> {
    let child = Command::new(std::env::current_exe().unwrap())
        .arg("--party")
        .arg(&at.url)
        .args(&at.listen_url)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let events = party(at, HANDOFFS / 2 + 1);
    with_child_events(events, child)
}

/// How a floor's hand-off goes through the table.
#[derive(Clone, Copy, PartialEq)]
enum Floor {
    /// Two commits: the holder deletes its row (and notifies), then the waiter inserts
    /// its own — what lockmgr does.
    TwoCommits,
    /// One commit: the holder's release writes the waiter in as the row's owner (and
    /// notifies), and the waiter holds the lock the moment the notification arrives,
    /// with no statement of its own — the least a hand-off through a table can cost.
    OneCommit,
}

impl Floor {
    /// Its name on the child process's command line.
    fn arg(self) -> &'static str {
        match self {
            Floor::TwoCommits => "two-commits",
            Floor::OneCommit => "one-commit",
        }
    }

    /// The floor whose [`arg`](Floor::arg) this is.
    fn parse(arg: &str) -> Floor {
        [Floor::TwoCommits, Floor::OneCommit]
            .into_iter()
            .find(|floor| floor.arg() == arg)
            .unwrap_or_else(|| panic!("no floor is called {arg:?}"))
    }
}

/// The floor's turns between this process (party "a", first holder) and a child
/// process (party "b").
fn floor_processes(url: &str, floor: Floor) -> Vec<(&'static str, u128)> {
    let mut setup = PgConnection::establish(url).unwrap();
    setup
        .batch_execute(
            "CREATE TABLE IF NOT EXISTS floor_handoff (name TEXT PRIMARY KEY, owner TEXT NOT NULL); \
             DELETE FROM floor_handoff",
        )
        .unwrap();
    if floor == Floor::OneCommit {
        // Party "a" holds first; from then on each release names the other.
        setup
            .batch_execute("INSERT INTO floor_handoff VALUES ('x', 'a')")
            .unwrap();
    }
    let child = Command::new(std::env::current_exe().unwrap())
        .args(["--floor-party", url, floor.arg(), "b"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let events = floor_party(url, floor, "a", HANDOFFS / 2 + 1);
    with_child_events(events, child)
}

/// One party of a floor: [`party`]'s turns on a plain connection. It waits as
/// lockmgr's listener does, asleep on the connection's socket until the server sends
/// a notification (with a 50 ms safety net).
fn floor_party(url: &str, floor: Floor, me: &str, turns: usize) -> Vec<(&'static str, u128)> {
    let other = if me == "a" { "b" } else { "a" };
    let before = socket_fds();
    let mut conn = PgConnection::establish(url).unwrap();
    let socket = socket_fds()
        .into_iter()
        .find(|fd| !before.contains(fd))
        .expect("the connection's socket");
    conn.batch_execute("LISTEN floor_handoff").unwrap();
    let (take, release) = match floor {
        Floor::TwoCommits => (
            format!(
                "INSERT INTO floor_handoff VALUES ('x', '{me}') ON CONFLICT DO NOTHING RETURNING owner"
            ),
            format!(
                "WITH gone AS (DELETE FROM floor_handoff WHERE name = 'x' AND owner = '{me}' RETURNING name) \
                 SELECT pg_notify('floor_handoff', '{other}') FROM gone"
            ),
        ),
        Floor::OneCommit => (
            // Mine already (granted before I looked)?
            format!("SELECT owner FROM floor_handoff WHERE name = 'x' AND owner = '{me}'"),
            format!(
                "WITH given AS (UPDATE floor_handoff SET owner = '{other}' WHERE name = 'x' AND owner = '{me}' RETURNING name) \
                 SELECT pg_notify('floor_handoff', '{other}') FROM given"
            ),
        ),
    };
    let mut events = Vec::new();
    for _ in 0..turns {
        // (`execute` counts the rows a SELECT returns, too.)
        while diesel::sql_query(&take).execute(&mut conn).unwrap() == 0 {
            let granted = loop {
                let mut poll = libc::pollfd {
                    fd: socket,
                    events: libc::POLLIN,
                    revents: 0,
                };
                // SAFETY: one valid pollfd, for the duration of the call.
                let ready = unsafe { libc::poll(&mut poll, 1, 50) };
                let mut mine = false;
                for note in conn.notifications_iter() {
                    mine |= note.unwrap().payload == me;
                }
                if mine || ready == 0 {
                    break mine;
                }
            };
            if granted && floor == Floor::OneCommit {
                break;
            }
        }
        events.push(("acquired", now_ns()));
        std::thread::sleep(HOLD);
        events.push(("released", now_ns()));
        diesel::sql_query(&release).execute(&mut conn).unwrap();
        std::thread::sleep(PAUSE);
    }
    events
}

/// The process's open socket descriptors.
fn socket_fds() -> Vec<i32> {
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|entry| {
            let entry = entry.ok()?;
            let target = std::fs::read_link(entry.path()).ok()?;
            target
                .to_string_lossy()
                .starts_with("socket:")
                .then(|| entry.file_name().to_str()?.parse().ok())?
        })
        .collect()
}

/// `events` with those the child printed, once it is done.
fn with_child_events(
    mut events: Vec<(&'static str, u128)>,
    child: std::process::Child,
) -> Vec<(&'static str, u128)> {
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    for line in BufReader::new(&out.stdout[..]).lines() {
        let line = line.unwrap();
        let (kind, ns) = line.split_once(' ').unwrap();
        let kind = if kind == "acquired" {
            "acquired"
        } else {
            "released"
        };
        events.push((kind, ns.parse().unwrap()));
    }
    events
}

/// In time order, each acquire that follows a release is one hand-off.
fn handoff_latencies(mut events: Vec<(&'static str, u128)>) -> Vec<Duration> {
    events.sort_by_key(|e| e.1);
    events
        .windows(2)
        .filter(|w| w[0].0 == "released" && w[1].0 == "acquired")
        .map(|w| Duration::from_nanos((w[1].1 - w[0].1) as u64))
        .collect()
}
