//! Throughput of the lock path, beside the database's own floor, measured in one run.
//!
//! `cargo bench --bench throughput` prints markdown tables (copied into
//! docs/BENCHMARKS.md); `--features mysql` adds MariaDB rows. PostgreSQL runs in a
//! throwaway cluster with durable settings (`fsync=on`, `synchronous_commit=on`), also
//! through a PgBouncer in transaction pooling mode (`?pgbouncer=true`: unnamed
//! statements; the floor there sends unnamed statements too); MariaDB in a throwaway server with its default durability and buffer pool
//! (`innodb_flush_log_at_trx_commit=1`: the redo log is flushed at every commit); SQLite is a file in WAL mode with
//! `synchronous=NORMAL`, as lockmgr sets it.
//!
//! Sections:
//! 1. uncontended acquire + release, one thread, distinct names and one name, next to
//!    the thinnest INSERT + DELETE through the same driver (the floor), as a ratio,
//!    and the CPU time the client process spends per cycle on each side (lockmgr's
//!    own cost, apart from waiting for the database);
//! 2. contention: 8 processes × 200 tries on one name, no wait;
//! 3. cost growth with 0 / 10,000 / 100,000 other live locks, and `clean_locks` /
//!    `list_locks` at 100,000 rows;
//! 4. macro overhead: a `#[locked]` call beside the same guarded acquire + release by
//!    hand.
//!
//! Environment: `BENCH_ROUNDS` (default 7) and `BENCH_SECONDS` per round (default 1).

use std::fs::{self, OpenOptions};
use std::io::ErrorKind;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use diesel::connection::CacheSize;
use diesel::connection::SimpleConnection;
use diesel::prelude::*;
use lockmgr::{Backend, LockStore};
use testkit::{PgBouncer, PgCluster, PoolMode};

diesel::table! {
    floor_lock (name) {
        name -> Text,
    }
}

const PROCESSES: usize = 8;
const TRIES: usize = 200;

/// One database the bench runs on.
struct Target {
    /// The first column of its rows.
    label: String,
    backend: Backend,
    /// What lockmgr opens.
    url: String,
    /// What the floor connects to: the same way as lockmgr, without lockmgr's
    /// URL parameters.
    floor_url: String,
    /// The database itself, for filling the table.
    direct_url: String,
    /// Through a transaction pooler: the floor sends unnamed statements too.
    pooled: bool,
}

impl Target {
    fn direct(backend: Backend, url: String) -> Target {
        Target {
            label: backend.to_string(),
            backend,
            floor_url: url.clone(),
            direct_url: url.clone(),
            url,
            pooled: false,
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("--child") {
        return contention_child(&args[1..]);
    }
    if args.iter().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a list; there are no libtest tests here.
    }
    let rounds: usize = env_or("BENCH_ROUNDS", 7);
    let round = Duration::from_secs_f64(env_or("BENCH_SECONDS", 1.0));

    let cluster = PgCluster::start(&["fsync=on", "synchronous_commit=on", "full_page_writes=on"])
        .unwrap_or_else(|e| panic!("{e}"));
    #[cfg(feature = "mysql")]
    let mariadb = testkit::MysqlServer::start(&[
        "--innodb-flush-log-at-trx-commit=1",
        "--innodb-buffer-pool-size=128M", // MariaDB's default; the test kit's is smaller
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    let bouncer =
        PgBouncer::start(&cluster, PoolMode::Transaction, 20).unwrap_or_else(|e| panic!("{e}"));
    let dir = tempfile::tempdir().unwrap();
    let sqlite = dir.path().join("bench.sqlite3");
    let pooled_db = cluster.new_database();
    #[allow(unused_mut)]
    let mut targets = vec![
        Target::direct(Backend::Sqlite, sqlite.to_str().unwrap().to_string()),
        Target::direct(Backend::Postgres, cluster.new_database()),
        Target {
            label: "postgres via PgBouncer (transaction)".to_string(),
            backend: Backend::Postgres,
            url: format!("{}?pgbouncer=true", bouncer.url_for(&pooled_db)),
            floor_url: bouncer.url_for(&pooled_db),
            direct_url: pooled_db,
            pooled: true,
        },
    ];
    #[cfg(feature = "mysql")]
    targets.push(Target::direct(Backend::Mysql, mariadb.new_database()));

    println!(
        "## Uncontended acquire + release (one thread; median of {rounds} rounds of {round:?})\n"
    );
    println!(
        "| backend | workload | floor cycles/s | lockmgr cycles/s | ratio | \
         floor client CPU/cycle | lockmgr client CPU/cycle |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|");
    for target in &targets {
        let store = LockStore::open(&target.url).unwrap();
        let mut floor = Floor::open(target);
        for (workload, distinct) in [("distinct names", true), ("one name", false)] {
            let (mut floor_cpu, mut lockmgr_cpu) = (Vec::new(), Vec::new());
            let (f, o) = paired_medians(
                rounds,
                |r| {
                    let (rate, cpu) = rate_and_cpu(round, |i| floor.cycle(&name(distinct, r, i)));
                    floor_cpu.push(cpu);
                    rate
                },
                |r| {
                    let (rate, cpu) = rate_and_cpu(round, |i| {
                        let lock = store
                            .get_lock(&name(distinct, r, i), Some(Duration::from_secs(60)))
                            .unwrap();
                        store.unlock(&lock).unwrap();
                    });
                    lockmgr_cpu.push(cpu);
                    rate
                },
            );
            println!(
                "| {} | {workload} | {f:.0} | {o:.0} | {:.2}× | {:.0} µs | {:.0} µs |",
                target.label,
                o / f,
                median(&mut floor_cpu),
                median(&mut lockmgr_cpu),
            );
        }
    }

    println!("\n## Contention: {PROCESSES} processes × {TRIES} tries on one name, no wait\n");
    println!("| backend | successes | Locked | other errors | overlaps | wall time |");
    println!("|---|---:|---:|---:|---:|---:|");
    for target in &targets {
        let (tally, wall) = contention(&target.url);
        println!(
            "| {} | {} | {} | {} | {} | {:.0?} |",
            target.label, tally[0], tally[1], tally[2], tally[3], wall
        );
    }

    macro_overhead(&targets, rounds, round);
    auto_clean(&targets, rounds, round);
    if args.iter().any(|a| a == "--quick") {
        return; // the sections above only
    }

    println!("\n## Cost growth with other live locks (one thread, distinct names)\n");
    println!("| backend | other live locks | cycles/s | clean_locks | list_locks |");
    println!("|---|---:|---:|---:|---:|");
    for target in &targets {
        let store = LockStore::open(&target.url).unwrap();
        store.reset_locks().unwrap();
        let mut present = 0;
        for others in [0usize, 10_000, 100_000] {
            fill(target.backend, &target.direct_url, present, others);
            present = others;
            let mut rates: Vec<f64> = (0..rounds)
                .map(|r| {
                    rate(round, |i| {
                        let lock = store
                            .get_lock(&name(true, r, i), Some(Duration::from_secs(60)))
                            .unwrap();
                        store.unlock(&lock).unwrap();
                    })
                })
                .collect();
            let (clean, list) = if others == 100_000 {
                let started = Instant::now();
                let listed = store.list_locks().unwrap().len();
                let list = started.elapsed();
                assert_eq!(listed, others);
                let started = Instant::now();
                store.clean_locks().unwrap();
                (format!("{:.1?}", started.elapsed()), format!("{list:.1?}"))
            } else {
                ("".to_string(), "".to_string())
            };
            println!(
                "| {} | {others} | {:.0} | {clean} | {list} |",
                target.label,
                median(&mut rates)
            );
        }
    }
}

/// The `#[locked]` side of section 4: a call that does nothing under its lock.
#[lockmgr::locked(name = "bench:macro:{round}:{i}", store = store)]
fn guarded(store: &LockStore, round: usize, i: usize) -> lockmgr::Result<()> {
    Ok(())
}

fn macro_overhead(targets: &[Target], rounds: usize, round: Duration) {
    println!("\n## Macro overhead: `#[locked]` call vs. the same guard by hand (median of {rounds} rounds)\n");
    println!("| backend | by hand cycles/s | `#[locked]` cycles/s | ratio |");
    println!("|---|---:|---:|---:|");
    for target in targets {
        let store = LockStore::open(&target.url).unwrap();
        let (h, m) = paired_medians(
            rounds,
            |r| {
                rate(round, |i| {
                    drop(
                        store
                            .lock_mgr(format!("bench:macro:{r}:{i}"))
                            .acquire()
                            .unwrap(),
                    );
                })
            },
            |r| rate(round, |i| guarded(&store, r + rounds, i).unwrap()),
        );
        println!("| {} | {h:.0} | {m:.0} | {:.2}× |", target.label, m / h);
    }
}

fn env_or<T: std::str::FromStr>(key: &str, default: T) -> T {
    std::env::var(key)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn name(distinct: bool, round: usize, i: usize) -> String {
    if distinct {
        format!("bench:{round}:{i}")
    } else {
        "bench:one".to_string()
    }
}

/// Cycles per second of `cycle` run for `duration`.
fn rate(duration: Duration, mut cycle: impl FnMut(usize)) -> f64 {
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < duration {
        cycle(n);
        n += 1;
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// [`rate`], and the CPU time this process spent per cycle, in microseconds (user +
/// system, all threads: lockmgr's watchdog and pool included). On a shared machine
/// CPU time varies much less than wall time: it tells the client's own cost apart
/// from the time spent waiting for the database.
fn rate_and_cpu(duration: Duration, mut cycle: impl FnMut(usize)) -> (f64, f64) {
    let (cpu_before, started) = (process_cpu(), Instant::now());
    let mut n = 0;
    while started.elapsed() < duration {
        cycle(n);
        n += 1;
    }
    let (wall, cpu) = (started.elapsed(), process_cpu() - cpu_before);
    let n = n.max(1) as f64;
    (n / wall.as_secs_f64(), cpu.as_secs_f64() * 1e6 / n)
}

/// CPU time (user + system) of this process so far.
fn process_cpu() -> Duration {
    // SAFETY: `getrusage` fills the struct it is given; a zeroed `rusage` is valid.
    let usage = unsafe {
        let mut usage: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut usage);
        usage
    };
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// Section: acquire + release with the store's background clean on (its default, every
/// 30 s, and every 100 ms) and off, sides alternating round by round; every cycle
/// leaves an expired row behind, so each clean has work to do.
fn auto_clean(targets: &[Target], rounds: usize, round: Duration) {
    println!("\n## Auto-clean: acquire + release with the background clean off and on (median of {rounds} rounds)\n");
    println!("| backend | off cycles/s | every 30 s | every 100 ms | ratio (100 ms / off) |");
    println!("|---|---:|---:|---:|---:|");
    for target in targets {
        let (backend, url) = (&target.label, &target.url);
        let open =
            |every: Option<Duration>| LockStore::builder(url).auto_clean(every).open().unwrap();
        let (off, default, busy) = (
            open(None),
            open(Some(lockmgr::DEFAULT_AUTO_CLEAN)),
            open(Some(Duration::from_millis(100))),
        );
        let cycle = |store: &LockStore, tag: &str, r: usize| {
            rate(round, |i| {
                let lock = store
                    .get_lock(
                        &format!("bench:clean:{tag}:{r}:{i}"),
                        Some(Duration::from_secs(60)),
                    )
                    .unwrap();
                store.unlock(&lock).unwrap();
                // One expired row per cycle, for the cleans to remove.
                store
                    .get_lock(
                        &format!("bench:stale:{tag}:{r}:{i}"),
                        Some(Duration::from_millis(1)),
                    )
                    .unwrap();
            })
        };
        let (o, d) = paired_medians(
            rounds,
            |r| cycle(&off, "off", r),
            |r| cycle(&default, "30s", r),
        );
        let (o2, b) = paired_medians(
            rounds,
            |r| cycle(&off, "off2", r),
            |r| cycle(&busy, "100ms", r),
        );
        println!(
            "| {backend} | {:.0} | {d:.0} | {b:.0} | {:.2}× |",
            (o + o2) / 2.0,
            b / o2
        );
        off.reset_locks().unwrap();
    }
}

/// Run `a` and `b` once per round, alternating which goes first so that drift on a
/// shared machine hits both; the median of each.
fn paired_medians(
    rounds: usize,
    mut a: impl FnMut(usize) -> f64,
    mut b: impl FnMut(usize) -> f64,
) -> (f64, f64) {
    let (mut of_a, mut of_b) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        if r % 2 == 0 {
            of_a.push(a(r));
            of_b.push(b(r));
        } else {
            of_b.push(b(r));
            of_a.push(a(r));
        }
    }
    (median(&mut of_a), median(&mut of_b))
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).unwrap());
    values[values.len() / 2]
}

/// The thinnest insert + delete through diesel on a one-column table: the floor.
enum Floor {
    Pg(PgConnection),
    Sqlite(SqliteConnection),
    #[cfg(feature = "mysql")]
    Mysql(MysqlConnection),
}

impl Floor {
    fn open(target: &Target) -> Floor {
        let (backend, url) = (target.backend, target.floor_url.as_str());
        let ddl = "CREATE TABLE IF NOT EXISTS floor_lock (name TEXT PRIMARY KEY NOT NULL)";
        match backend {
            Backend::Postgres => {
                let mut conn = PgConnection::establish(url).unwrap();
                if target.pooled {
                    conn.set_prepared_statement_cache_size(CacheSize::Disabled);
                }
                conn.batch_execute(ddl).unwrap();
                Floor::Pg(conn)
            }
            #[cfg(feature = "mysql")]
            Backend::Mysql => {
                let mut conn = MysqlConnection::establish(url).unwrap();
                conn.batch_execute(
                    "CREATE TABLE IF NOT EXISTS floor_lock \
                     (name VARCHAR(255) NOT NULL PRIMARY KEY) ENGINE = InnoDB",
                )
                .unwrap();
                Floor::Mysql(conn)
            }
            _ => {
                // lockmgr's store on the same file writes too (its background clean).
                let mut conn = testkit::sqlite_connection(url);
                conn.batch_execute("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
                    .unwrap();
                conn.batch_execute(ddl).unwrap();
                Floor::Sqlite(conn)
            }
        }
    }

    fn cycle(&mut self, name: &str) {
        use floor_lock::dsl;
        match self {
            Floor::Pg(conn) => {
                diesel::insert_into(dsl::floor_lock)
                    .values(dsl::name.eq(name))
                    .execute(conn)
                    .unwrap();
                diesel::delete(dsl::floor_lock.filter(dsl::name.eq(name)))
                    .execute(conn)
                    .unwrap();
            }
            Floor::Sqlite(conn) => {
                diesel::insert_into(dsl::floor_lock)
                    .values(dsl::name.eq(name))
                    .execute(conn)
                    .unwrap();
                diesel::delete(dsl::floor_lock.filter(dsl::name.eq(name)))
                    .execute(conn)
                    .unwrap();
            }
            #[cfg(feature = "mysql")]
            Floor::Mysql(conn) => {
                diesel::insert_into(dsl::floor_lock)
                    .values(dsl::name.eq(name))
                    .execute(conn)
                    .unwrap();
                diesel::delete(dsl::floor_lock.filter(dsl::name.eq(name)))
                    .execute(conn)
                    .unwrap();
            }
        }
    }
}

/// Run the contention section; [won, locked, other, overlap] and the wall time.
fn contention(url: &str) -> ([usize; 4], Duration) {
    let dir = tempfile::tempdir().unwrap();
    let start = dir.path().join("start");
    let marker = dir.path().join("held");
    LockStore::open(url).unwrap().reset_locks().unwrap();
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            Command::new(std::env::current_exe().unwrap())
                .args(["--child", url, path(&start), path(&marker)])
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200)); // let every child connect
    let started = Instant::now();
    fs::write(&start, "go").unwrap();
    let mut total = [0usize; 4];
    for child in children {
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        for (slot, value) in total
            .iter_mut()
            .zip(text.split_whitespace().map(|v| v.parse::<usize>().unwrap()))
        {
            *slot += value;
        }
    }
    (total, started.elapsed())
}

fn contention_child(args: &[String]) {
    let (url, start, marker) = (&args[0], Path::new(&args[1]), Path::new(&args[2]));
    let store = LockStore::open(url).unwrap();
    while !start.exists() {
        std::thread::sleep(Duration::from_micros(200));
    }
    let mut tally = [0usize; 4];
    for _ in 0..TRIES {
        match store.get_lock("bench:contended", Some(Duration::from_secs(60))) {
            Ok(lock) => {
                tally[0] += 1;
                match OpenOptions::new().write(true).create_new(true).open(marker) {
                    Ok(_) => {}
                    Err(e) if e.kind() == ErrorKind::AlreadyExists => tally[3] += 1,
                    Err(e) => panic!("{e}"),
                }
                let _ = fs::remove_file(marker);
                store.unlock(&lock).unwrap();
            }
            Err(e) if e.is_locked() => tally[1] += 1,
            Err(e) => {
                eprintln!("{e}");
                tally[2] += 1;
            }
        }
    }
    println!("{} {} {} {}", tally[0], tally[1], tally[2], tally[3]);
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Grow the table from `from` to `to` live, never-expiring locks named `other:N`.
fn fill(backend: Backend, url: &str, from: usize, to: usize) {
    if to <= from {
        return;
    }
    let sql = match backend {
        Backend::Postgres => format!(
            "INSERT INTO lockmgr_lock (name, owner, locked_by, fence) \
             SELECT 'other:' || n, md5(n::text), 'bench', nextval('lockmgr_lock_fence_seq') \
             FROM generate_series({from}, {}) AS n",
            to - 1
        ),
        // The trigger hands out the fences. MariaDB stops a recursive CTE after 1,000
        // rows unless told otherwise.
        Backend::Mysql => format!(
            "SET SESSION max_recursive_iterations = {to}; \
             INSERT INTO lockmgr_lock (name, owner, locked_by, created_at, updated_at, fence) \
             SELECT CONCAT('other:', i), MD5(i), 'bench', UTC_TIMESTAMP(6), UTC_TIMESTAMP(6), 0 \
             FROM (WITH RECURSIVE n(i) AS (SELECT {from} UNION ALL SELECT i + 1 FROM n \
             WHERE i + 1 < {to}) SELECT i FROM n) AS numbers"
        ),
        _ => format!(
            "WITH RECURSIVE n(i) AS (SELECT {from} UNION ALL SELECT i + 1 FROM n WHERE i + 1 < {to}) \
             INSERT INTO lockmgr_lock (name, owner, locked_by, created_at, updated_at, fence) \
             SELECT 'other:' || i, hex(randomblob(16)), 'bench', '2026-01-01 00:00:00.000', \
             '2026-01-01 00:00:00.000', \
             (SELECT fence FROM lockmgr_lock WHERE name = char(1) || 'last fence') + 1 + i FROM n"
        ),
    };
    match backend {
        Backend::Postgres => PgConnection::establish(url)
            .unwrap()
            .batch_execute(&sql)
            .unwrap(),
        #[cfg(feature = "mysql")]
        Backend::Mysql => MysqlConnection::establish(url)
            .unwrap()
            .batch_execute(&sql)
            .unwrap(),
        _ => testkit::sqlite_connection(url).batch_execute(&sql).unwrap(),
    }
}
