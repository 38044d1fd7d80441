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
//! On PostgreSQL the same turns are also taken without lockmgr, the floor of a hand-off
//! through a table: two plain connections, the holder deleting its row and notifying in
//! one statement, the waiter listening and spinning on its notifications (100 µs naps,
//! faster than any blocking wait) to insert the row again. Both commits are durable:
//! the floor is two commits (each a WAL flush) plus the notification's trip. It also
//! runs on a database with `synchronous_commit = off`, where commits do not wait for
//! the disk, to show the cost of the lock path itself.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

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
        for event in floor_party(&args[1], HANDOFFS / 2 + 1) {
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
                "floor: two plain connections",
                floor_processes(&party_at.url),
            ));
        }
        for (label, events) in runs {
            let mut latencies = handoff_latencies(events);
            latencies.sort();
            let pick = |q: f64| latencies[((latencies.len() - 1) as f64 * q).round() as usize];
            println!(
                "| {backend} | {label} | {:.1} ms | {:.1} ms | {:.1} ms | {} |",
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

/// The floor's turns between this process and a child process.
fn floor_processes(url: &str) -> Vec<(&'static str, u128)> {
    PgConnection::establish(url)
        .unwrap()
        .batch_execute("CREATE TABLE IF NOT EXISTS floor_handoff (name TEXT PRIMARY KEY)")
        .unwrap();
    let child = Command::new(std::env::current_exe().unwrap())
        .arg("--floor-party")
        .arg(url)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let events = floor_party(url, HANDOFFS / 2 + 1);
    with_child_events(events, child)
}

diesel::table! {
    floor_handoff (name) {
        name -> Text,
    }
}

/// One party of the floor: [`party`]'s turns on a plain connection.
fn floor_party(url: &str, turns: usize) -> Vec<(&'static str, u128)> {
    use floor_handoff::dsl;
    let mut conn = PgConnection::establish(url).unwrap();
    conn.batch_execute("LISTEN floor_handoff").unwrap();
    let mut events = Vec::new();
    for _ in 0..turns {
        loop {
            let taken = diesel::insert_into(dsl::floor_handoff)
                .values(dsl::name.eq("x"))
                .on_conflict_do_nothing()
                .execute(&mut conn)
                .unwrap();
            if taken == 1 {
                break;
            }
            // Until a release is announced (or 50 ms passed, a safety net).
            let since = Instant::now();
            while since.elapsed() < Duration::from_millis(50) {
                let notified = conn.notifications_iter().map(Result::unwrap).count() > 0;
                if notified {
                    break;
                }
                std::thread::sleep(Duration::from_micros(100));
            }
        }
        events.push(("acquired", now_ns()));
        std::thread::sleep(HOLD);
        events.push(("released", now_ns()));
        diesel::sql_query(
            "WITH gone AS (DELETE FROM floor_handoff WHERE name = 'x' RETURNING name) \
             SELECT pg_notify('floor_handoff', name) FROM gone",
        )
        .execute(&mut conn)
        .unwrap();
        std::thread::sleep(PAUSE);
    }
    events
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
