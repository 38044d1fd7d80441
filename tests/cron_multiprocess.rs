//! `once_per` across real processes: every tick that the replicas fire runs exactly
//! once, with one replica's clock 0.8 s (40% of the 2 s period) ahead, on SQLite and
//! PostgreSQL (and MariaDB with the `mysql` feature).
//!
//! Four `lockmgr-test-worker cron-tick` processes fire a 0.5 s `once_per = "2s"` job at
//! each of 30 ticks (60 s), each by its own wall clock plus up to 100 ms of jitter. One
//! runs under libfaketime (`FAKETIME=+0.8`, monotonic clock untouched), so its
//! scheduler fires 0.8 s early and, on SQLite, its statements' "now" is 0.8 s ahead
//! too. The test reads every process's output: for each tick, four fires and exactly
//! one run; no call failed. The backends run in parallel (one test each).
//!
//! Needs libfaketime (Debian: `libfaketime`): the test kit installs it when it is
//! missing and the tests run as root; otherwise the test fails, saying so.

use std::collections::BTreeMap;
use std::process::{Command, Output, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use testkit::TestDb;

const WORKER: &str = env!("CARGO_BIN_EXE_lockmgr-test-worker");
const PERIOD_MS: u64 = 2_000;
const TICKS: i64 = 30;

fn every_fired_tick_runs_exactly_once(db: &TestDb) {
    let _table = db.store(); // the table exists before the workers start
    let faketime = testkit::packages::libfaketime().unwrap_or_else(|e| panic!("{e}"));
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    // The first tick at least 4 s away, so every worker is up by then even on a
    // loaded machine (one that fires its first tick over half a period late would
    // name the next one).
    let first = (now_ms + 4_000).div_ceil(PERIOD_MS) as i64;
    let args = [
        "cron-tick".to_string(),
        "--url".into(),
        db.url().into(),
        "--first-tick".into(),
        first.to_string(),
        "--ticks".into(),
        TICKS.to_string(),
    ];
    let mut children = Vec::new();
    for shifted in [false, false, false, true] {
        let mut command = Command::new(WORKER);
        command
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if shifted {
            command
                .env("LD_PRELOAD", &faketime)
                .env("FAKETIME", "+0.8")
                .env("FAKETIME_DONT_FAKE_MONOTONIC", "1");
        }
        children.push((
            shifted,
            command.spawn().expect("cannot start lockmgr-test-worker"),
        ));
    }
    let outputs: Vec<(bool, Output)> = children
        .into_iter()
        .map(|(shifted, child)| (shifted, child.wait_with_output().unwrap()))
        .collect();

    let mut fires: BTreeMap<i64, usize> = BTreeMap::new();
    let mut runs: BTreeMap<i64, Vec<usize>> = BTreeMap::new();
    let mut errors = Vec::new();
    for (worker, (shifted, output)) in outputs.iter().enumerate() {
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            output.status.success(),
            "worker {worker} (shifted: {shifted}) failed ({}): {}\n{stdout}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
        for line in stdout.lines() {
            let mut words = line.split_whitespace();
            let (what, tick) = (words.next(), words.next().map(|t| t.trim_end_matches(':')));
            let tick: i64 = tick.and_then(|t| t.parse().ok()).unwrap_or(i64::MIN);
            match what {
                Some("fire") => *fires.entry(tick).or_default() += 1,
                Some("ran") => runs.entry(tick).or_default().push(worker),
                _ => errors.push(format!("worker {worker}: {line}")),
            }
        }
    }
    assert!(errors.is_empty(), "unexpected output: {errors:#?}");
    let expected: Vec<i64> = (first..first + TICKS).collect();
    assert_eq!(fires.keys().copied().collect::<Vec<_>>(), expected);
    assert!(
        fires.values().all(|&n| n == 4),
        "every worker fires every tick: {fires:?}"
    );
    let doubles: Vec<_> = runs.iter().filter(|(_, w)| w.len() > 1).collect();
    let missed: Vec<i64> = expected
        .iter()
        .copied()
        .filter(|k| !runs.contains_key(k))
        .collect();
    assert!(
        doubles.is_empty() && missed.is_empty(),
        "doubles (tick: workers) {doubles:?}; missed ticks {missed:?}"
    );
    let by_shifted = runs.values().filter(|w| w[0] == 3).count();
    println!(
        "{}: {} ticks fired by 4 workers, each run once ({by_shifted} by the shifted one)",
        db.backend(),
        expected.len()
    );
}

testkit::backend_tests!(every_fired_tick_runs_exactly_once);
