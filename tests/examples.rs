//! The examples of `examples/`, run as the README says (`cargo run --example NAME`),
//! each against a temp SQLite file named by `LOCKMGR_DATABASE_URL`; their exit status
//! and output are checked. `cron_worker` runs as two processes at once.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;

/// The built example `name`. `cargo build --workspace --tests --example` is asked for
/// it, so the binary is never stale, and its path is read from cargo's own report.
/// After `cargo test --workspace` that is a no-op: asking for the test targets too,
/// cargo resolves features as that build did (the proc-macros' dev-dependencies
/// included) and finds everything built. Without `--workspace --tests` it compiled 60
/// crates again (every proc-macro and build script). Run alone (`cargo test --test
/// examples`), the first call builds the workspace's tests too.
fn example(name: &str) -> PathBuf {
    static BUILD: OnceLock<std::sync::Mutex<()>> = OnceLock::new();
    let _one_at_a_time = BUILD.get_or_init(Default::default).lock().unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_string());
    let mut command = Command::new(cargo);
    command.current_dir(env!("CARGO_MANIFEST_DIR")).args([
        "build",
        "--workspace",
        "--tests",
        "--quiet",
        "--message-format=json",
        "--example",
        name,
    ]);
    if !cfg!(debug_assertions) {
        command.arg("--release");
    }
    let output = command
        .stderr(Stdio::inherit())
        .output()
        .expect("cannot run cargo");
    assert!(
        output.status.success(),
        "cargo build --example {name} failed"
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    stdout
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|msg| msg["reason"] == "compiler-artifact" && msg["target"]["name"] == name)
        .find_map(|msg| msg["executable"].as_str().map(PathBuf::from))
        .unwrap_or_else(|| panic!("cargo reported no executable for example {name}"))
}

/// A temp directory holding the lock database, and the URL naming it.
fn temp_db() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("locks.sqlite3").display());
    (dir, url)
}

fn command(exe: &PathBuf, url: &str, dir: &tempfile::TempDir) -> Command {
    let mut command = Command::new(exe);
    command
        .current_dir(dir.path())
        .env("LOCKMGR_DATABASE_URL", url)
        .env_remove("DATABASE_URL")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

fn text(output: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn manual_runs_every_step_and_leaves_no_lock() {
    let exe = example("manual");
    let (dir, url) = temp_db();
    let output = command(&exe, &url, &dir).output().unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    for expected in [
        "get_lock again: lock \"manual:somelock\" is held by",
        "extra lock \"manual:mailer\"",
        "after the guard: manual:report locked = false, manual:mailer locked = false",
        "renew(): 120 s more",
        "renew_lock(\"manual:report\") without create: not found",
        "set_lock([b, a], fail): lock \"manual:a\" already exists",
        "manual:b locked after the failed call: false",
        "all done; no manual:* lock left behind",
    ] {
        assert!(
            stdout.contains(expected),
            "missing {expected:?} in:\n{stdout}"
        );
    }
    // And really none is left in the database it was given.
    let store = lockmgr::LockStore::open(&url).unwrap();
    assert_eq!(store.list_locks().unwrap().len(), 0);
}

#[test]
fn worker_pool_processes_every_event_one_worker_per_item_at_a_time() {
    let exe = example("worker_pool");
    let (dir, url) = temp_db();
    let output = command(&exe, &url, &dir).output().unwrap();
    let (stdout, stderr) = text(&output);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    let got: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains("got the lock"))
        .collect();
    assert_eq!(got.len(), 20, "{stdout}");
    assert!(
        got.iter().any(|l| l.contains("after waiting")),
        "no worker ever waited for an item:\n{stdout}"
    );
    assert!(
        stdout.contains("20 events processed") && stdout.contains("no item was processed by two"),
        "{stdout}"
    );
    // Fencing tokens are handed out in acquisition order, each once.
    let mut fences: Vec<i64> = got
        .iter()
        .map(|l| {
            let fence = l.rsplit("(fence ").next().unwrap();
            fence.trim_end_matches(')').parse().unwrap()
        })
        .collect();
    fences.sort_unstable();
    fences.dedup();
    assert_eq!(fences.len(), 20, "{stdout}");
}

/// One line of cron_worker's output: `HH:MM:SS.mmm  pid N  JOB  WHAT`.
#[derive(Debug)]
struct Line {
    at_ms: i64,
    pid: u32,
    job: String,
    what: String,
}

fn parse_ms(hms: &str) -> i64 {
    let (hms, ms) = hms
        .split_once('.')
        .unwrap_or_else(|| panic!("bad time {hms:?}"));
    let parts: Vec<i64> = hms.split(':').map(|p| p.parse().unwrap()).collect();
    ((parts[0] * 60 + parts[1]) * 60 + parts[2]) * 1000 + ms.parse::<i64>().unwrap()
}

fn parse_lines(stdout: &str) -> Vec<Line> {
    stdout
        .lines()
        .map(|line| {
            let mut words = line.split_whitespace();
            let at = words.next().unwrap();
            assert_eq!(words.next(), Some("pid"), "{line}");
            let pid = words.next().unwrap().parse().unwrap();
            let job = words.next().unwrap().to_string();
            let what = words.collect::<Vec<_>>().join(" ");
            Line {
                at_ms: parse_ms(at),
                pid,
                job,
                what,
            }
        })
        .collect()
}

#[test]
fn two_cron_workers_never_run_a_job_at_once_and_digest_once_per_tick() {
    let exe = example("cron_worker");
    let (dir, url) = temp_db();
    // The table exists before the two race to open the store.
    drop(lockmgr::LockStore::open(&url).unwrap());
    let children: Vec<_> = (0..2)
        .map(|_| {
            command(&exe, &url, &dir)
                .args(["--for", "12s"])
                .spawn()
                .unwrap()
        })
        .collect();
    let outputs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let mut lines = Vec::new();
    for output in &outputs {
        let (stdout, stderr) = text(output);
        assert!(output.status.success(), "{stdout}\n{stderr}");
        assert!(
            stdout.contains("worker   finished: digest ran"),
            "{stdout}\n{stderr}"
        );
        lines.extend(parse_lines(&stdout));
    }
    let transcript: String = outputs.iter().map(|o| text(o).0 + "\n").collect();
    let all = || transcript.as_str();
    // A run that crosses midnight (UTC) counts on from 24:00.
    let first = lines.iter().map(|l| l.at_ms).min().unwrap();
    let past_midnight = |ms: i64| {
        if ms < first - 12 * 3600 * 1000 {
            ms + 24 * 3600 * 1000
        } else {
            ms
        }
    };
    for line in &mut lines {
        line.at_ms = past_midnight(line.at_ms);
    }

    // Per job, the runs (started .. done) of both processes never overlap.
    for job in ["digest", "rebuild"] {
        let mut open: BTreeMap<u32, i64> = BTreeMap::new();
        let mut runs: Vec<(i64, i64, u32)> = Vec::new();
        let mut job_lines: Vec<&Line> = lines.iter().filter(|l| l.job == job).collect();
        job_lines.sort_by_key(|l| l.at_ms);
        for line in job_lines {
            if line.what.starts_with("started") {
                assert!(open.insert(line.pid, line.at_ms).is_none(), "{}", all());
            } else if line.what.starts_with("done") {
                let start = open.remove(&line.pid).expect("done without started");
                runs.push((start, line.at_ms, line.pid));
            }
            assert!(!line.what.contains("LOST"), "{}", all());
            assert!(!line.what.starts_with("error"), "{}", all());
        }
        assert!(open.is_empty(), "{job} run never finished:\n{}", all());
        assert!(
            runs.len() >= 2,
            "{job} ran {} times:\n{}",
            runs.len(),
            all()
        );
        runs.sort_unstable();
        for pair in runs.windows(2) {
            let ((_, end, a), (start, _, b)) = (pair[0], pair[1]);
            assert!(
                start >= end,
                "{job} ran in pid {a} and pid {b} at once:\n{}",
                all()
            );
        }
    }

    // The digest ran once per 5 s tick (`once_per = "5s"`), fired by both schedulers.
    let mut ticks: Vec<i64> = lines
        .iter()
        .filter(|l| l.job == "digest" && l.what.starts_with("started"))
        .map(|l| {
            let at = l.what.rsplit("tick ").next().unwrap();
            past_midnight(parse_ms(at.trim_end_matches(')')))
        })
        .collect();
    ticks.sort_unstable();
    for pair in ticks.windows(2) {
        assert_eq!(
            pair[1] - pair[0],
            5000,
            "a tick ran twice or was missed:\n{}",
            all()
        );
    }

    // The two really contended: the other process's run or tick made a call skip, and
    // a skip is not an error.
    let skipped_tick = lines.iter().any(|l| {
        l.what.starts_with("skipped: tick") && l.what.ends_with("taken by another process")
    });
    assert!(skipped_tick, "no digest tick was ever skipped:\n{}", all());
    for output in &outputs {
        assert!(text(output).0.contains("skipped (not errors)"), "{}", all());
    }
}
