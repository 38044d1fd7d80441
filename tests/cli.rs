//! The `lockmgr` command line, run as a user runs it: the real binary in a child process
//! (assert_cmd), on a temp SQLite file and on the throwaway PostgreSQL.
//!
//! A few tests call `lockmgr_cli::run_with` in this process instead: those that need
//! `#[locked]` declarations linked in (registered by hand below, as `#[locked]` would)
//! and the one that takes a lock between the listing and the answer of `reset-locks`.

use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::Command as StdCommand;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use assert_cmd::assert::Assert;
use assert_cmd::Command;
use chrono::{DateTime, SecondsFormat, Utc};
use diesel::connection::SimpleConnection;
use diesel::{Connection, PgConnection};
use lockmgr::{DeclaredLock, LockStore};
use predicates::prelude::*;
use serde_json::{json, Value};
use testkit::{PgCluster, SilentProxy, TestDb};

// ---------------------------------------------------------------------------------
// The binaries under test

/// Build `bin` of `package` with cargo, in this test's target dir and profile, and copy
/// it aside: the example app's `lockmgr` and ours land on the same path in the target
/// dir, so each test run keeps its own copy.
fn build_bin(package: &str, bin: &str) -> PathBuf {
    static CARGO: Mutex<()> = Mutex::new(());
    let _one_build_at_a_time = CARGO.lock().unwrap_or_else(|e| e.into_inner());
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/PROFILE");
    let target_dir = profile_dir.parent().expect("target dir");
    let mut cargo = StdCommand::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    cargo
        .args([
            "build",
            "--quiet",
            "--message-format=json",
            "-p",
            package,
            "--bin",
            bin,
        ])
        .arg("--manifest-path")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml"))
        .arg("--target-dir")
        .arg(target_dir);
    if cfg!(feature = "mysql") {
        // This test run includes the MySQL cases: the binary must speak mysql:// too.
        cargo.args(["--features", "lockmgr/mysql"]);
    }
    match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => {}
        Some("release") => {
            cargo.arg("--release");
        }
        Some(other) => {
            cargo.args(["--profile", other]);
        }
        None => panic!("unexpected test path {}", exe.display()),
    }
    let output = cargo.output().expect("running cargo");
    assert!(
        output.status.success(),
        "cargo build -p {package} --bin {bin} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let built = String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter(|msg| msg["reason"] == "compiler-artifact" && msg["target"]["name"] == bin)
        .find_map(|msg| msg["executable"].as_str().map(PathBuf::from))
        .expect("cargo reported no executable");
    let dir = profile_dir.join("cli-tests").join(package);
    std::fs::create_dir_all(&dir).unwrap();
    let copy = dir.join(bin);
    let tmp = dir.join(format!("{bin}.{}.tmp", std::process::id()));
    std::fs::copy(&built, &tmp).unwrap();
    std::fs::rename(&tmp, &copy).unwrap();
    copy
}

/// The `lockmgr` binary of the `lockmgr` crate.
fn lockmgr_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build_bin("lockmgr-cli", "lockmgr"))
}

/// The example application's own `lockmgr` binary.
fn example_app_bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build_bin("lockmgr-example-app", "app-locks"))
}

/// A directory to run in, so that nothing lands in the workspace by mistake.
fn scratch_dir() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

/// `program` with no database chosen: no URL variables, run in a scratch dir, with
/// backtraces on (a panic would show one: there must be none), and a time limit.
fn command(program: &Path) -> Command {
    let mut cmd = Command::new(program);
    cmd.env_remove("LOCKMGR_DATABASE_URL")
        .env_remove("DATABASE_URL")
        .env("RUST_BACKTRACE", "1")
        .current_dir(scratch_dir())
        .timeout(Duration::from_secs(60));
    cmd
}

/// `lockmgr --database-url URL-of-db`.
fn lockmgr(db: &TestDb) -> Command {
    let mut cmd = command(lockmgr_bin());
    cmd.arg("--database-url").arg(db.url());
    cmd
}

fn stdout(assert: &Assert) -> String {
    String::from_utf8(assert.get_output().stdout.clone()).expect("utf-8 stdout")
}

fn stderr(assert: &Assert) -> String {
    String::from_utf8(assert.get_output().stderr.clone()).expect("utf-8 stderr")
}

/// Run, expect success and nothing on stderr; the output, without the line that ends
/// human output naming the database (`Database: …`; see `every_command_names_its_database`).
fn ok(cmd: &mut Command) -> String {
    let assert = cmd.assert().success().stderr("");
    without_database_line(stdout(&assert))
}

/// `out` without its last line if that line names the database.
fn without_database_line(out: String) -> String {
    let body = out.strip_suffix('\n').unwrap_or(&out);
    match body.rsplit_once('\n') {
        Some((before, last)) if last.starts_with("Database: ") => format!("{before}\n"),
        None if body.starts_with("Database: ") => String::new(),
        _ => out,
    }
}

/// Run, expect the exit `code` and a one-line `lockmgr: …` error containing `needle`,
/// no panic, no backtrace, and no password anywhere; (the error line, stdout).
fn fails(cmd: &mut Command, code: i32, needle: &str) -> (String, String) {
    let assert = cmd.assert().code(code);
    let (err, out) = (stderr(&assert), stdout(&assert));
    assert!(err.starts_with("lockmgr: "), "{err:?}");
    assert!(
        err.ends_with('\n') && err.lines().count() == 1,
        "not one line: {err:?}"
    );
    assert!(err.contains(needle), "{err:?} lacks {needle:?}");
    for bad in ["panicked", "backtrace", "RUST_BACKTRACE"] {
        assert!(!err.contains(bad), "{err:?}");
    }
    assert!(
        !err.contains("secretpw") && !out.contains("secretpw"),
        "password shown: {err}{out}"
    );
    (err, out)
}

fn json(out: &str) -> Value {
    serde_json::from_str(out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

fn utc(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

fn line_of<'a>(out: &'a str, name: &str) -> &'a str {
    out.lines()
        .find(|line| line.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no row for {name:?} in:\n{out}"))
}

/// The whitespace-separated cells of a table row (the cells here hold no double blank).
fn cells(line: &str) -> Vec<&str> {
    line.split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect()
}

fn secs(store: &LockStore, name: &str) -> Option<i64> {
    store
        .find_lock(name)
        .unwrap()
        .unwrap_or_else(|| panic!("{name} is not locked"))
        .expires_seconds()
}

fn locked_names(store: &LockStore) -> Vec<String> {
    store
        .list_locks()
        .unwrap()
        .into_iter()
        .map(|l| l.name)
        .collect()
}

const MINUTE: Option<Duration> = Some(Duration::from_secs(60));

// ---------------------------------------------------------------------------------
// list-locks

fn list_locks_when_empty(db: &TestDb) {
    let out = ok(lockmgr(db).arg("list-locks"));
    assert_eq!(out, "There are no active locks.\n");
    let out = ok(lockmgr(db).args(["list-locks", "--json"]));
    assert_eq!(json(&out), json!([]));
}

fn list_locks_shows_an_aligned_table(db: &TestDb) {
    let store = db.store();
    // The binary is built (by the first test that asks for it) before the clock
    // of the lock below starts: a build takes longer than the slack allowed.
    let mut list = lockmgr(db);
    let job = store.get_lock("job:42", MINUTE).unwrap();
    let forever = store.get_lock("maintenance", None).unwrap();
    let out = ok(list.arg("list-locks"));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert_eq!(
        cells(lines[0]),
        ["NAME", "LOCKED BY", "PID", "EXPIRES", "FENCE"],
        "no declarations are linked into the stand-alone binary: {out}"
    );
    let pid = std::process::id().to_string();
    let row = cells(lines[1]);
    assert_eq!(row[0], "job:42", "sorted by name: {out}");
    assert_eq!(row[1], store.locked_by());
    assert_eq!(row[2], pid);
    let expires = format!("{} (in ", utc(job.locked_until.unwrap()));
    assert!(row[3].starts_with(&expires), "{out}");
    let left = &row[3][expires.len()..];
    assert!(
        ["1m)", "59s)", "58s)", "57s)"].contains(&left),
        "remaining time by the database clock: {out}"
    );
    assert_eq!(row[4], job.fence.to_string());
    assert_eq!(
        cells(lines[2]),
        [
            "maintenance",
            store.locked_by(),
            &pid,
            "never",
            &forever.fence.to_string()
        ]
    );
    // Aligned: every column starts where its header does.
    for (header, value) in [
        ("EXPIRES", "never"),
        ("FENCE", forever.fence.to_string().as_str()),
    ] {
        let column = lines[0].find(header).unwrap();
        assert_eq!(lines[2][column..].split("  ").next(), Some(value), "{out}");
    }
    assert_eq!(lines[1].find(&expires), lines[0].find("EXPIRES"), "{out}");
    assert!(
        lines.iter().all(|l| !l.ends_with(' ')),
        "trailing blanks: {out:?}"
    );
}

fn list_locks_json(db: &TestDb) {
    let store = db.store();
    let job = store.get_lock("job:42", MINUTE).unwrap();
    let forever = store.get_lock("maintenance", None).unwrap();
    let out = ok(lockmgr(db).args(["list-locks", "--json"]));
    let rows = json(&out);
    let rows = rows.as_array().expect("an array");
    assert_eq!(rows.len(), 2, "{out}");
    let (a, b) = (&rows[0], &rows[1]);
    assert_eq!(a["name"], "job:42");
    assert_eq!(a["locked_by"], store.locked_by());
    assert_eq!(a["lock_process"], std::process::id());
    assert_eq!(a["fence"], job.fence);
    let until = a["locked_until"].as_str().expect("RFC 3339 text");
    let until = DateTime::parse_from_rfc3339(until).unwrap();
    assert_eq!(until, job.locked_until.unwrap(), "{out}");
    let left = a["expires_in_seconds"].as_u64().expect("seconds");
    assert!((50..=60).contains(&left), "{out}");
    assert_eq!(a["declared"], Value::Null);

    assert_eq!(b["name"], "maintenance");
    assert_eq!(b["locked_until"], Value::Null);
    assert_eq!(b["expires_in_seconds"], Value::Null);
    assert_eq!(b["fence"], forever.fence);
    assert_eq!(
        b["created_at"],
        forever
            .created_at
            .to_rfc3339_opts(SecondsFormat::Micros, true)
    );
}

// ---------------------------------------------------------------------------------
// set-lock

fn set_lock_creates_then_renews(db: &TestDb) {
    let store = db.store();
    let out = ok(lockmgr(db).args(["set-lock", "job:1", "job:2"]));
    assert_eq!(
        cells(out.lines().next().unwrap()),
        ["NAME", "WAS LOCKED", "NOW LOCKED", "STATUS", "EXPIRES"]
    );
    for name in ["job:1", "job:2"] {
        let row = cells(line_of(&out, name));
        assert_eq!(row[1..4], ["no", "yes", "create"], "{out}");
        assert!(
            row[4].contains("(in 10m)") || row[4].contains("(in 9m 5"),
            "{out}"
        );
        let left = secs(&store, name).unwrap();
        assert!(
            (590..=600).contains(&left),
            "default timeout is 600 s: {left}"
        );
    }
    assert!(out.ends_with("2 created, 0 renewed, 0 skipped.\n"), "{out}");
    let lock = store.find_lock("job:1").unwrap().unwrap();
    assert_eq!(lock.locked_by, store.locked_by());
    assert_ne!(lock.lock_process, Some(i64::from(std::process::id())));

    let out = ok(lockmgr(db).args(["set-lock", "--timeout", "1200", "job:1", "job:3"]));
    assert_eq!(
        cells(line_of(&out, "job:1"))[1..4],
        ["yes", "yes", "extend"]
    );
    assert_eq!(cells(line_of(&out, "job:3"))[1..4], ["no", "yes", "create"]);
    assert!(out.ends_with("1 created, 1 renewed, 0 skipped.\n"), "{out}");
    assert!(secs(&store, "job:1").unwrap() >= 1190);

    // A renewal never shortens a lock.
    ok(lockmgr(db).args(["set-lock", "-t", "30", "job:1"]));
    assert!(secs(&store, "job:1").unwrap() >= 1180);
}

fn set_lock_no_renew(db: &TestDb) {
    let store = db.store();
    let held = store.get_lock("held", MINUTE).unwrap();
    let out = ok(lockmgr(db).args(["set-lock", "-n", "held", "free"]));
    assert_eq!(cells(line_of(&out, "free"))[1..4], ["no", "yes", "create"]);
    assert!(
        out.ends_with(
            "1 created, 0 renewed, 1 skipped: 1 already locked, not renewed (--no-renew).\n"
        ),
        "{out}"
    );
    for flag in ["-n", "--no-renew"] {
        let out = ok(lockmgr(db).args(["set-lock", flag, "held", "free"]));
        assert_eq!(cells(line_of(&out, "held"))[1..4], ["yes", "yes", "skip"]);
        assert_eq!(cells(line_of(&out, "free"))[1..4], ["yes", "yes", "skip"]);
        assert!(
            out.ends_with(
                "0 created, 0 renewed, 2 skipped: 2 already locked, not renewed (--no-renew).\n"
            ),
            "{out}"
        );
        let now = store.find_lock("held").unwrap().unwrap();
        assert_eq!(
            (now.fence, now.locked_until),
            (held.fence, held.locked_until)
        );
    }
    assert!(store.is_locked("free").unwrap());
}

fn set_lock_only_renew(db: &TestDb) {
    let store = db.store();
    store.get_lock("held", MINUTE).unwrap();
    for flag in ["-r", "--only-renew"] {
        let out = ok(lockmgr(db).args(["set-lock", flag, "held", "free"]));
        assert_eq!(cells(line_of(&out, "held"))[1..4], ["yes", "yes", "extend"]);
        assert_eq!(cells(line_of(&out, "free"))[1..], ["no", "no", "skip", "-"]);
        assert!(
            out.ends_with(
                "0 created, 1 renewed, 1 skipped: 1 not locked, not created (--only-renew).\n"
            ),
            "{out}"
        );
        assert!(secs(&store, "held").unwrap() > 500, "renewed to 600 s");
        assert!(!store.is_locked("free").unwrap());
    }
}

fn set_lock_no_timeout(db: &TestDb) {
    let store = db.store();
    for (flag, name) in [("-k", "forever"), ("--no-timeout", "always")] {
        let out = ok(lockmgr(db).args(["set-lock", flag, name]));
        assert_eq!(
            cells(line_of(&out, name))[1..],
            ["no", "yes", "create", "never"]
        );
        let lock = store.find_lock(name).unwrap().unwrap();
        assert_eq!(lock.locked_until, None);
    }
    let listed = json(&ok(lockmgr(db).args(["list-locks", "--json"])));
    assert_eq!(listed[0]["locked_until"], Value::Null);
    assert_eq!(listed[1]["locked_until"], Value::Null);
}

fn set_lock_timeout(db: &TestDb) {
    let store = db.store();
    ok(lockmgr(db).args(["set-lock", "-t", "30", "short"]));
    ok(lockmgr(db).args(["set-lock", "--timeout", "90", "longer"]));
    assert!((25..=30).contains(&secs(&store, "short").unwrap()));
    assert!((85..=90).contains(&secs(&store, "longer").unwrap()));
}

fn set_lock_fail_keeps_nothing(db: &TestDb) {
    let store = db.store();
    let busy = store.get_lock("busy", MINUTE).unwrap();
    for flag in ["-e", "--fail"] {
        let mut cmd = lockmgr(db);
        cmd.args(["set-lock", flag, "free", "busy", "zzz"]);
        let (err, out) = fails(&mut cmd, 2, "lock \"busy\" already exists");
        assert!(err.contains(store.locked_by()), "{err}");
        assert!(out.starts_with("This lock already exists:\n"), "{out}");
        let row = cells(line_of(&out, "busy"));
        assert_eq!(
            row[1..3],
            [store.locked_by(), &std::process::id().to_string()]
        );
        assert_eq!(
            locked_names(&store),
            ["busy"],
            "nothing of the call was kept"
        );
        let now = store.find_lock("busy").unwrap().unwrap();
        assert_eq!(
            (now.fence, now.locked_until),
            (busy.fence, busy.locked_until)
        );
    }
    // -q: only the error line.
    let mut cmd = lockmgr(db);
    cmd.args(["-q", "set-lock", "-e", "busy"]);
    let (_, out) = fails(&mut cmd, 2, "already exists");
    assert_eq!(out, "");
    // Nothing in the way: created as usual.
    ok(lockmgr(db).args(["set-lock", "-e", "free"]));
    assert!(store.is_locked("free").unwrap());
}

fn bad_names_change_nothing(db: &TestDb) {
    let store = db.store();
    store.get_lock("held", None).unwrap();
    let long = "x".repeat(256);
    for bad in ["", long.as_str(), "tab\there", "new\nline"] {
        let mut cmd = lockmgr(db);
        cmd.args(["set-lock", "fine", bad]);
        fails(&mut cmd, 1, "invalid lock name");
        let mut cmd = lockmgr(db);
        cmd.args(["clear-lock", "held", bad]);
        fails(&mut cmd, 1, "invalid lock name");
    }
    let mut cmd = lockmgr(db);
    cmd.args(["set-lock", &long]);
    let (err, _) = fails(&mut cmd, 1, "at most 255 bytes");
    assert!(err.len() < 200, "the name is shown short: {err}");
    assert_eq!(locked_names(&store), ["held"]);
}

/// Names that look like trouble but are valid go in and come out exactly; a very long
/// one (100 KB: a single argument cannot be much longer on Linux) and a NUL-free
/// control character are refused without touching anything.
fn odd_names_round_trip(db: &TestDb) {
    let store = db.store();
    store.get_lock("held", None).unwrap();
    let odd = [
        "quote'\"; DROP TABLE lockmgr_lock; --",
        "日本語 ✓ émoji 🔒",
        "%_*?\\",
        "a b",
        "Job",
    ];
    let mut cmd = lockmgr(db);
    cmd.arg("set-lock").args(odd);
    ok(&mut cmd);
    let listed: Value =
        serde_json::from_str(&ok(lockmgr(db).args(["list-locks", "--json"]))).unwrap();
    let mut names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    let mut expected: Vec<&str> = odd.iter().copied().chain(["held"]).collect();
    names.sort_unstable();
    expected.sort_unstable();
    assert_eq!(names, expected);
    assert!(!store.is_locked("job").unwrap(), "names are case-sensitive");

    let huge = "y".repeat(100 * 1024);
    for bad in [huge.as_str(), "bell\u{7}", "esc\u{1b}[0m"] {
        let mut cmd = lockmgr(db);
        cmd.args(["set-lock", bad]);
        fails(&mut cmd, 1, "invalid lock name");
    }
    let mut cmd = lockmgr(db);
    cmd.arg("clear-lock").args(odd);
    ok(&mut cmd);
    assert_eq!(locked_names(&store), ["held"]);
}

// ---------------------------------------------------------------------------------
// clear-lock

fn clear_lock_releases_by_name(db: &TestDb) {
    let store = db.store();
    store.get_lock("a", MINUTE).unwrap();
    store.get_lock("b", None).unwrap();
    store.get_lock("c", None).unwrap();
    let out = ok(lockmgr(db).args(["clear-lock", "a", "b", "missing", "a"]));
    assert_eq!(
        out,
        "NAME     RESULT\n\
         a        released\n\
         b        released\n\
         missing  not locked\n\
         Released 2 locks; 1 name was not locked.\n"
    );
    assert_eq!(locked_names(&store), ["c"]);
    let out = ok(lockmgr(db).args(["clear-lock", "a"]));
    assert!(
        out.ends_with("Released 0 locks; 1 name was not locked.\n"),
        "{out}"
    );
}

fn clear_lock_if_expired(db: &TestDb) {
    // No background clean here: the stale row must still be there for the CLI.
    let store = LockStore::builder(db.url())
        .auto_clean(None)
        .open()
        .unwrap();
    store
        .get_lock("stale", Some(Duration::from_millis(1)))
        .unwrap();
    std::thread::sleep(Duration::from_millis(30));
    store.get_lock("live", MINUTE).unwrap();
    let out = ok(lockmgr(db).args(["clear-lock", "--if-expired", "stale", "live", "missing"]));
    assert_eq!(
        cells(line_of(&out, "stale"))[1],
        "released (it had expired)"
    );
    assert_eq!(cells(line_of(&out, "live"))[1], "kept: still live");
    assert_eq!(cells(line_of(&out, "missing"))[1], "not locked");
    assert!(
        out.ends_with(
            "Released 1 lock; kept 1 live lock that had not expired; 1 name was not locked.\n"
        ),
        "{out}"
    );
    assert!(store.is_locked("live").unwrap());
    assert!(
        !store.unlock_if_expired("stale").unwrap(),
        "the stale row is gone"
    );
}

// ---------------------------------------------------------------------------------
// reset-locks

fn two_locks(db: &TestDb) -> LockStore {
    // No background clean: the tests count the expired rows reset-locks removes.
    let store = LockStore::builder(db.url())
        .auto_clean(None)
        .open()
        .unwrap();
    store.get_lock("first", MINUTE).unwrap();
    store.get_lock("second", None).unwrap();
    store
}

fn reset_locks_after_yes(db: &TestDb) {
    let store = two_locks(db);
    store
        .get_lock("old", Some(Duration::from_millis(1)))
        .unwrap();
    std::thread::sleep(Duration::from_millis(30));
    let out = ok(lockmgr(db).arg("reset-locks").write_stdin("YES\n"));
    assert!(
        out.starts_with("These 2 locks will be deleted:\nNAME "),
        "{out}"
    );
    line_of(&out, "first");
    line_of(&out, "second");
    assert!(!out.contains("old"), "an expired lock is not listed: {out}");
    assert!(
        out.ends_with(
            "Type YES to delete 2 locks: \nDeleted 2 locks.\n\
             Also removed 1 row of locks that had already expired.\n"
        ),
        "{out}"
    );
    assert!(locked_names(&store).is_empty());
    assert!(!store.unlock_if_expired("old").unwrap(), "expired row gone");
}

fn reset_locks_not_confirmed(db: &TestDb) {
    let store = two_locks(db);
    for answer in ["no\n", "yes\n", "YES please\n", "\n"] {
        let mut cmd = lockmgr(db);
        cmd.arg("reset-locks").write_stdin(answer);
        let (_, out) = fails(&mut cmd, 1, "nothing was deleted");
        assert!(out.contains("Type YES to delete 2 locks: "), "{out}");
        assert_eq!(locked_names(&store), ["first", "second"], "{answer:?}");
    }
    let mut cmd = lockmgr(db);
    cmd.arg("reset-locks").write_stdin("no\n");
    fails(
        &mut cmd,
        1,
        "not confirmed (the answer was \"no\", not YES)",
    );
}

fn reset_locks_closed_stdin(db: &TestDb) {
    let store = two_locks(db);
    // No input at all: stdin is closed at once.
    let mut cmd = lockmgr(db);
    cmd.arg("reset-locks");
    fails(
        &mut cmd,
        1,
        "no answer (standard input is closed); nothing was deleted",
    );
    // Nothing but end of file, and /dev/null: the same.
    let mut cmd = lockmgr(db);
    cmd.arg("reset-locks").write_stdin("");
    fails(&mut cmd, 1, "standard input is closed");
    let mut cmd = lockmgr(db);
    cmd.arg("reset-locks").pipe_stdin("/dev/null").unwrap();
    fails(&mut cmd, 1, "standard input is closed");
    assert_eq!(locked_names(&store), ["first", "second"]);
}

fn reset_locks_force(db: &TestDb) {
    let store = two_locks(db);
    let out = ok(lockmgr(db).args(["reset-locks", "--force"]));
    assert!(out.starts_with("These 2 locks will be deleted:\n"), "{out}");
    assert!(!out.contains("Type YES"), "{out}");
    assert!(out.ends_with("Deleted 2 locks.\n"), "{out}");
    assert!(locked_names(&store).is_empty());

    two_locks(db);
    assert_eq!(ok(lockmgr(db).args(["-q", "reset-locks", "-f"])), "");
    assert!(locked_names(&store).is_empty());
}

fn reset_locks_with_nothing_to_delete(db: &TestDb) {
    // No question asked, so a closed stdin is fine.
    let out = ok(lockmgr(db).arg("reset-locks"));
    assert_eq!(out, "There are no active locks; nothing to delete.\n");
}

/// An input that takes a lock when it is read, then answers YES: a lock taken between
/// the listing and the answer.
struct LateLock {
    store: LockStore,
    answer: &'static [u8],
    taken: bool,
}

impl Read for LateLock {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.taken {
            self.store.get_lock("late", None).unwrap();
            self.taken = true;
        }
        let n = self.answer.len().min(buf.len());
        buf[..n].copy_from_slice(&self.answer[..n]);
        self.answer = &self.answer[n..];
        Ok(n)
    }
}

fn reset_locks_deletes_only_what_it_showed(db: &TestDb) {
    let store = two_locks(db);
    let mut input = BufReader::new(LateLock {
        store: store.clone(),
        answer: b"again\n",
        taken: false,
    });
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let args = ["lockmgr", "--database-url", db.url(), "reset-locks"];
    // "again" is not YES: nothing goes, not even the late lock.
    let status = lockmgr_cli::run_with(args, &mut input, &mut out, &mut err);
    assert_eq!(status, 1);
    assert_eq!(locked_names(&store), ["first", "late", "second"]);
    store.unlock("late").unwrap();

    let mut input = BufReader::new(LateLock {
        store: store.clone(),
        answer: b"YES\n",
        taken: false,
    });
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let status = lockmgr_cli::run_with(args, &mut input, &mut out, &mut err);
    let out = without_database_line(String::from_utf8(out).unwrap());
    assert_eq!(status, 0, "{out}{}", String::from_utf8_lossy(&err));
    assert!(!out.contains("late"), "taken after the listing: {out}");
    assert!(out.ends_with("Deleted 2 locks.\n"), "{out}");
    assert_eq!(
        locked_names(&store),
        ["late"],
        "a lock taken after the listing is not deleted"
    );
}

// ---------------------------------------------------------------------------------
// migrate, --quiet

fn migrate_says_what_it_did(db: &TestDb) {
    // A fresh database: no table yet.
    let out = ok(lockmgr(db).arg("migrate"));
    // SQLite has a second migration (its fence row).
    let applied = if db.backend() == lockmgr::Backend::Sqlite {
        "Applied 2 migrations: 20261127000000, 20261130000000."
    } else {
        "Applied 1 migration: 20261127000000."
    };
    assert!(out.starts_with(applied), "{out}");
    assert!(
        out.ends_with(".\nThe lock table lockmgr_lock is ready.\n"),
        "{out}"
    );
    let out = ok(lockmgr(db).arg("migrate"));
    assert_eq!(out, "The lock table is up to date; nothing to do.\n");
    assert_eq!(ok(lockmgr(db).args(["migrate", "--quiet"])), "");
    db.store().get_lock("works", None).unwrap();
}

fn migrate_print_prints_the_sql_and_applies_nothing(db: &TestDb) {
    let printed = ok(lockmgr(db).args(["--table", "cli_printed", "migrate", "--print"]));
    let expected = LockStore::builder(db.url())
        .table("cli_printed")
        .migration_sql()
        .unwrap();
    assert_eq!(printed, expected);
    assert!(printed.contains("CREATE TABLE"), "{printed}");
    let default = ok(lockmgr(db).args(["migrate", "--print"]));
    assert!(default.contains("lockmgr_lock"), "{default}");
    // Applied nowhere: neither table exists.
    for table in ["cli_printed", lockmgr::DEFAULT_TABLE] {
        let store = LockStore::builder(db.url())
            .table(table)
            .migrate(false)
            .open()
            .unwrap();
        assert!(store.list_locks().is_err(), "{table} exists");
    }
}

fn table_option_picks_the_table(db: &TestDb) {
    let out = ok(lockmgr(db).args(["--table", "cli_other", "migrate"]));
    assert!(out.contains("The lock table cli_other is ready."), "{out}");
    ok(lockmgr(db).args(["set-lock", "--table", "cli_other", "a"]));
    let other = LockStore::builder(db.url())
        .table("cli_other")
        .open()
        .unwrap();
    assert_eq!(locked_names(&other), ["a"]);
    assert!(locked_names(&db.store()).is_empty());
    line_of(
        &ok(lockmgr(db).args(["--table", "cli_other", "list-locks"])),
        "a",
    );
    fails(
        lockmgr(db).args(["--table", "Other-Locks", "list-locks"]),
        1,
        "invalid lock table name \"Other-Locks\"",
    );
}

fn a_foreign_table_is_named_with_the_way_out(db: &TestDb) {
    db.execute(
        "CREATE TABLE lockmgr_lock (id INTEGER PRIMARY KEY, name VARCHAR(255) NOT NULL, \
         locked_by VARCHAR(100) NOT NULL, lock_process INTEGER, locked_until VARCHAR(40))",
    );
    for args in [vec!["list-locks"], vec!["migrate"]] {
        let (err, _) = fails(lockmgr(db).args(&args), 1, "is not lockmgr's");
        assert!(err.contains("--table NAME"), "{err}");
    }
    ok(lockmgr(db).args(["--table", "own_locks", "set-lock", "a"]));
}

fn quiet_prints_only_what_was_asked(db: &TestDb) {
    let store = db.store();
    assert_eq!(ok(lockmgr(db).args(["-q", "set-lock", "a", "b"])), "");
    assert_eq!(locked_names(&store), ["a", "b"]);
    // A listing is what was asked for.
    let out = ok(lockmgr(db).args(["list-locks", "--quiet"]));
    line_of(&out, "a");
    assert_eq!(ok(lockmgr(db).args(["clear-lock", "-q", "a"])), "");
    assert_eq!(locked_names(&store), ["b"]);
    // Without --force the list is still shown before the question.
    let out = ok(lockmgr(db).args(["-q", "reset-locks"]).write_stdin("YES\n"));
    assert!(out.contains("Type YES to delete 1 lock: "), "{out}");
    assert!(!out.contains("Deleted"), "{out}");
    assert!(locked_names(&store).is_empty());
}

testkit::backend_tests!(
    list_locks_when_empty,
    list_locks_shows_an_aligned_table,
    list_locks_json,
    set_lock_creates_then_renews,
    set_lock_no_renew,
    set_lock_only_renew,
    set_lock_no_timeout,
    set_lock_timeout,
    set_lock_fail_keeps_nothing,
    bad_names_change_nothing,
    odd_names_round_trip,
    clear_lock_releases_by_name,
    clear_lock_if_expired,
    reset_locks_after_yes,
    reset_locks_not_confirmed,
    reset_locks_closed_stdin,
    reset_locks_force,
    reset_locks_with_nothing_to_delete,
    reset_locks_deletes_only_what_it_showed,
    migrate_says_what_it_did,
    migrate_print_prints_the_sql_and_applies_nothing,
    table_option_picks_the_table,
    a_foreign_table_is_named_with_the_way_out,
    quiet_prints_only_what_was_asked,
    declared_locks_are_listed,
    declared_cron_jobs_show_their_keys,
    list_locks_names_the_declaration,
);

// ---------------------------------------------------------------------------------
// Declared locks: `#[locked]` functions of this test binary, listed by the CLI running
// in this process (the only binary they are linked into).

mod jobs {
    #[lockmgr::locked(
        name = "cli-test:account:{id}",
        expires = 60,
        wait = 5,
        keepalive = false
    )]
    pub fn sync_account(id: u64) -> lockmgr::Result<()> {
        let _ = id;
        Ok(())
    }

    #[lockmgr::locked(name = "cli-test:report", expires = 0, keepalive = false)]
    pub fn report() -> lockmgr::Result<()> {
        Ok(())
    }
}

/// `lockmgr ARGS…` in this process; (status, stdout, stderr).
fn in_process(db: &TestDb, args: &[&str]) -> (i32, String, String) {
    let mut all = vec!["lockmgr", "--database-url", db.url()];
    all.extend_from_slice(args);
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let status = lockmgr_cli::run_with(all, &mut io::empty(), &mut out, &mut err);
    (
        status,
        without_database_line(String::from_utf8(out).unwrap()),
        String::from_utf8(err).unwrap(),
    )
}

fn declaration(template: &str) -> &'static DeclaredLock {
    lockmgr::declared_locks()
        .into_iter()
        .find(|d| d.name == template)
        .expect("registered above")
}

fn declared_locks_are_listed(db: &TestDb) {
    let store = db.store();
    store.get_lock("cli-test:account:7", MINUTE).unwrap();
    store.get_lock("unrelated", MINUTE).unwrap();
    let (status, out, err) = in_process(db, &["list-declared"]);
    assert_eq!((status, err.as_str()), (0, ""), "{out}");
    let account = declaration("cli-test:account:{id}");
    let report = declaration("cli-test:report");
    assert_eq!(
        cells(out.lines().next().unwrap()),
        [
            "TEMPLATE",
            "EXPIRES",
            "WAIT",
            "KEEPALIVE",
            "MIN HOLD",
            "ONCE PER",
            "ON LOCKED",
            "FUNCTION",
            "SOURCE",
            "HELD"
        ]
    );
    assert_eq!(
        cells(line_of(&out, "cli-test:account:{id}")),
        [
            "cli-test:account:{id}",
            "1m",
            "5s",
            "no",
            "-",
            "-",
            "error",
            "cli::jobs::sync_account",
            &format!("{}:{}", account.file, account.line),
            "yes: cli-test:account:7"
        ]
    );
    assert_eq!(
        cells(line_of(&out, "cli-test:report")),
        [
            "cli-test:report",
            "never",
            "-",
            "no",
            "-",
            "-",
            "error",
            "cli::jobs::report",
            &format!("{}:{}", report.file, report.line),
            "no"
        ]
    );

    let (status, out, _) = in_process(db, &["list-declared", "--json"]);
    assert_eq!(status, 0);
    let by_hand: Vec<Value> = json(&out)
        .as_array()
        .unwrap()
        .iter()
        .filter(|row| row["template"].as_str().unwrap().starts_with("cli-test:"))
        .cloned()
        .collect();
    assert_eq!(
        Value::Array(by_hand),
        json!([
            {
                "template": "cli-test:account:{id}",
                "expires_seconds": 60,
                "wait_seconds": 5,
                "keepalive": false,
                "min_hold_seconds": null,
                "once_per_seconds": null,
                "on_locked": "error",
                "function": "cli::jobs::sync_account",
                "file": account.file,
                "line": account.line,
                "held": true,
                "held_locks": ["cli-test:account:7"],
            },
            {
                "template": "cli-test:report",
                "expires_seconds": null,
                "wait_seconds": null,
                "keepalive": false,
                "min_hold_seconds": null,
                "once_per_seconds": null,
                "on_locked": "error",
                "function": "cli::jobs::report",
                "file": report.file,
                "line": report.line,
                "held": false,
                "held_locks": [],
            },
        ])
    );
    // An exact name is "yes" when held.
    store.get_lock("cli-test:report", None).unwrap();
    let (_, out, _) = in_process(db, &["list-declared"]);
    assert!(line_of(&out, "cli-test:report").ends_with("  yes"), "{out}");
}

/// A cron job of this file, declared with the attribute: `list-declared` shows its keys.
#[lockmgr::locked(name = "cron-test:digest", once_per = "5m", expires = "90s", store = store)]
fn digest(store: &LockStore) -> lockmgr::Result<()> {
    // While it runs, the run lock is held (as well as the tick's row).
    assert!(store.is_locked("cron-test:digest")?);
    Ok(())
}

fn declared_cron_jobs_show_their_keys(db: &TestDb) {
    let store = db.store();
    let (_, out, _) = in_process(db, &["list-declared"]);
    let row = cells(line_of(&out, "cron-test:digest"));
    assert_eq!(
        row[..7],
        ["cron-test:digest", "1m 30s", "-", "yes", "-", "5m", "skip"],
        "{out}"
    );
    assert_eq!(*row.last().unwrap(), "no", "{out}");
    digest(&store).unwrap();
    // The run is over, but the tick's row is still held: "held", not "running".
    let (_, out, _) = in_process(db, &["list-declared"]);
    let held = cells(line_of(&out, "cron-test:digest"))
        .last()
        .unwrap()
        .to_string();
    assert!(held.starts_with("yes: cron-test:digest@"), "{out}");
    let (_, out, _) = in_process(db, &["list-declared", "--json"]);
    let rows = json(&out);
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|row| row["template"] == "cron-test:digest")
        .unwrap();
    assert_eq!(
        (
            &row["expires_seconds"],
            &row["keepalive"],
            &row["min_hold_seconds"],
            &row["once_per_seconds"],
            &row["on_locked"],
            &row["held"],
        ),
        (
            &json!(90),
            &json!(true),
            &Value::Null,
            &json!(300),
            &json!("skip"),
            &json!(true)
        )
    );
}

fn list_locks_names_the_declaration(db: &TestDb) {
    let store = db.store();
    store.get_lock("cli-test:account:7", MINUTE).unwrap();
    store.get_lock("unrelated", MINUTE).unwrap();
    let (status, out, _) = in_process(db, &["list-locks"]);
    assert_eq!(status, 0);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        cells(lines[0]),
        [
            "NAME",
            "LOCKED BY",
            "PID",
            "EXPIRES",
            "FENCE",
            "DECLARED BY"
        ]
    );
    assert!(
        lines[1].ends_with("  cli-test:account:{id} (cli::jobs::sync_account)"),
        "{out}"
    );
    assert_eq!(
        cells(lines[2]).len(),
        5,
        "no declaration: empty cell: {out}"
    );
    let (_, out, _) = in_process(db, &["list-locks", "--json"]);
    let rows = json(&out);
    assert_eq!(rows[0]["declared"], "cli-test:account:{id}");
    assert_eq!(rows[1]["declared"], Value::Null);
}

#[test]
fn stand_alone_binary_has_no_declarations() {
    // Nothing declared: the database is not even opened.
    let out = ok(command(lockmgr_bin()).arg("list-declared"));
    assert!(
        out.starts_with("No #[locked] functions are linked into this binary.\n"),
        "{out}"
    );
    assert!(
        out.contains("lockmgr_cli::Cli as a subcommand"),
        "says what to do: {out}"
    );
    let out = ok(command(lockmgr_bin()).args(["list-declared", "--json"]));
    assert_eq!(json(&out), json!([]));
}

// ---------------------------------------------------------------------------------
// Errors: one line, no panic, no password

const SECRET_URL: &str = "postgres://user:secretpw@127.0.0.1:1/db";

fn every_command() -> Vec<Vec<&'static str>> {
    vec![
        vec!["list-locks"],
        vec!["list-locks", "--json"],
        vec!["set-lock", "a"],
        vec!["set-lock", "-e", "-k", "a"],
        vec!["clear-lock", "a"],
        vec!["clear-lock", "--if-expired", "a"],
        vec!["reset-locks"],
        vec!["reset-locks", "-f"],
        vec!["migrate"],
    ]
}

#[test]
fn unreachable_database() {
    for args in every_command() {
        let mut cmd = command(lockmgr_bin());
        cmd.args(["--database-url", SECRET_URL]).args(&args);
        let (err, out) = fails(
            &mut cmd,
            1,
            "cannot connect to postgres://user:***@127.0.0.1:1/db",
        );
        assert!(err.contains("Connection refused"), "{err}");
        assert_eq!(out, "");
    }
    // From the environment, and with the password as a query parameter.
    let mut cmd = command(lockmgr_bin());
    cmd.env(
        "DATABASE_URL",
        "postgres://127.0.0.1:1/db?user=u&password=secretpw",
    )
    .arg("list-locks");
    fails(&mut cmd, 1, "password=***");
    // A SQLite file that cannot be created.
    let mut cmd = command(lockmgr_bin());
    cmd.args([
        "--database-url",
        "/nonexistent/dir/locks.sqlite3",
        "set-lock",
        "a",
    ]);
    fails(
        &mut cmd,
        1,
        "cannot connect to /nonexistent/dir/locks.sqlite3",
    );
}

#[test]
fn a_silent_database_is_an_error_not_a_hang() {
    // The server's link goes silent (no answer, no reset): every command still ends,
    // within the connect timeout, with a one-line error.
    let db = TestDb::postgres();
    let (proxy, url) = SilentProxy::in_front_of(db.url()).unwrap_or_else(|e| panic!("{e}"));
    proxy.go_silent();
    // Built first (on a test's first use it is compiled): only the command is timed.
    let bin = lockmgr_bin();
    let started = Instant::now();
    let mut cmd = command(bin);
    cmd.args(["--database-url", &url, "list-locks"]);
    let (err, out) = fails(
        &mut cmd,
        1,
        "cannot connect to postgres://postgres@127.0.0.1:",
    );
    assert!(err.contains("connect"), "{err}");
    assert_eq!(out, "");
    let took = started.elapsed();
    assert!(took < Duration::from_secs(30), "the command took {took:?}");
}

#[test]
fn malformed_database_url() {
    for (url, needle) in [
        (
            "postgres://user:secretpw@[bad/db",
            "invalid database URL postgres://user:***@[bad/db",
        ),
        (
            "redis://user:secretpw@host/0",
            "unsupported scheme \"redis\"",
        ),
        ("", "the URL is empty"),
        ("postgres://user:secretpw@/db", "empty host"),
    ] {
        for args in every_command() {
            let mut cmd = command(lockmgr_bin());
            cmd.args(["--database-url", url]).args(&args);
            fails(&mut cmd, 1, needle);
        }
    }
}

/// Passwords that make their URL malformed (an unencoded `#`, `/`, `?`, space, or an
/// encoded NUL), a libpq key/value string, and a URL of an unknown scheme: whatever
/// the command, its output and its logs (at trace level) never show the password.
#[test]
fn malformed_urls_never_show_the_password() {
    for url in [
        "postgres://user:secr#etpw@127.0.0.1:1/db",
        "postgres://user:secr/etpw@127.0.0.1:1/db",
        "postgres://user:secr?etpw@127.0.0.1:1/db",
        "postgres://user:secr etpw@127.0.0.1:1/db",
        "postgres://user:secretpw%00@127.0.0.1:1/db",
        "postgresql://user:secr#etpw@[::1/db",
        "host=127.0.0.1 port=1 user=user password=secretpw dbname=db",
        "host=127.0.0.1 port=1 password='secr etpw' dbname=db",
        "ftp://user:secr#etpw@127.0.0.1/x",
    ] {
        for args in [
            vec!["list-locks"],
            vec!["list-locks", "--json"],
            vec!["migrate"],
        ] {
            let mut cmd = command(lockmgr_bin());
            cmd.args(["--database-url", url])
                .args(&args)
                .env("RUST_LOG", "trace");
            let assert = cmd.assert().code(1);
            let (err, out) = (stderr(&assert), stdout(&assert));
            for piece in ["secr", "etpw"] {
                assert!(
                    !err.contains(piece) && !out.contains(piece),
                    "{url} {args:?}: {err}{out}"
                );
            }
            assert!(err.starts_with("lockmgr: "), "{url}: {err}");
        }
    }
    // No command made a file out of a URL.
    let made: Vec<_> = std::fs::read_dir(scratch_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("secr") || n.contains('='))
        .collect();
    assert!(made.is_empty(), "files named after URLs: {made:?}");
}

/// A libpq `key=value` connection string is PostgreSQL, never a SQLite file name.
#[test]
fn libpq_connection_string_is_postgres() {
    let db = TestDb::postgres();
    let url = url::Url::parse(db.url()).unwrap();
    let conninfo = format!(
        "host={} port={} user={} password=secretpw dbname={}",
        url.host_str().unwrap(),
        url.port().unwrap(),
        url.username(),
        url.path().trim_start_matches('/')
    );
    let mut cmd = command(lockmgr_bin());
    cmd.args(["--database-url", &conninfo, "set-lock", "via-conninfo"]);
    ok(&mut cmd);
    assert!(db.store().is_locked("via-conninfo").unwrap());
    let files: Vec<_> = std::fs::read_dir(scratch_dir())
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .filter(|n| n.to_string_lossy().contains('='))
        .collect();
    assert!(files.is_empty(), "{files:?}");
}

/// `sqlite://PATH?mode=ro` opens PATH read-only (no file named `PATH?mode=ro`):
/// listing works, writing is refused, and nothing changes.
#[test]
fn sqlite_url_parameters_open_read_only() {
    let db = TestDb::sqlite();
    db.store().get_lock("kept", None).unwrap();
    let read_only = format!("sqlite://{}?mode=ro", db.url());
    let mut cmd = command(lockmgr_bin());
    cmd.args(["--database-url", &read_only, "list-locks"]);
    assert!(ok(&mut cmd).contains("kept"));
    let mut cmd = command(lockmgr_bin());
    cmd.args(["--database-url", &read_only, "set-lock", "new"]);
    fails(&mut cmd, 1, "readonly");
    let dir = Path::new(db.url()).parent().unwrap();
    let odd: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains('?'))
        .collect();
    assert!(odd.is_empty(), "{odd:?}");
    assert_eq!(locked_names(&db.store()), ["kept"]);
    // A parameter SQLite does not know is refused, not made part of a file name.
    let mut cmd = command(lockmgr_bin());
    cmd.args([
        "--database-url",
        &format!("sqlite://{}?mod=ro", db.url()),
        "list-locks",
    ]);
    fails(&mut cmd, 1, "unknown SQLite parameter \"mod\"");
}

/// A SQLite file on read-only storage, closed cleanly (no write-ahead log beside it):
/// the read-only commands work on it, the others say why they cannot.
#[test]
fn read_only_storage_can_be_listed() {
    let Some(mount) = testkit::Tmpfs::mount("4m") else {
        eprintln!("skipped: needs root to mount a tmpfs");
        return;
    };
    let url = mount.path().join("locks.sqlite3");
    let url = url.to_str().unwrap();
    {
        let store = LockStore::open(url).unwrap();
        store.get_lock("on-ro", None).unwrap();
    }
    // The pool closes its connections in the background; the last one to close
    // checkpoints and removes the write-ahead log.
    let wal = format!("{url}-wal");
    assert!(
        testkit::eventually(Duration::from_secs(10), || !Path::new(&wal).exists()),
        "the store was not closed cleanly"
    );
    mount.remount_read_only();
    let mut cmd = command(lockmgr_bin());
    cmd.args(["--database-url", url, "list-locks"]);
    assert!(ok(&mut cmd).contains("on-ro"));
    let mut cmd = command(lockmgr_bin());
    cmd.args(["--database-url", url, "list-locks", "--json"]);
    assert_eq!(json(&ok(&mut cmd))[0]["name"], "on-ro");
    let mut cmd = command(lockmgr_bin());
    cmd.args(["--database-url", url, "set-lock", "x"]);
    fails(&mut cmd, 1, "readonly");
    let store = LockStore::open(url).unwrap();
    assert!(store.is_locked("on-ro").unwrap());
}

/// Lock names with bidirectional overrides or zero-width characters are valid, but a
/// terminal must not be fooled by them: `list-locks` shows them escaped, and its JSON
/// writes them as `\u` escapes that parse back to the exact name.
#[test]
fn invisible_characters_in_names_are_shown_escaped() {
    let db = TestDb::sqlite();
    let store = db.store();
    let spoof = "invoice:\u{202e}fdp.exe";
    let hidden = "job\u{200b}:1";
    store.get_lock(spoof, None).unwrap();
    store.get_lock(hidden, None).unwrap();
    let table = ok(lockmgr(&db).arg("list-locks"));
    assert!(table.contains("invoice:\\u{202e}fdp.exe"), "{table}");
    assert!(table.contains("job\\u{200b}:1"), "{table}");
    assert!(
        !table.contains('\u{202e}') && !table.contains('\u{200b}'),
        "{table}"
    );
    let raw = ok(lockmgr(&db).args(["list-locks", "--json"]));
    assert!(
        !raw.contains('\u{202e}') && raw.contains("\\u202e"),
        "{raw}"
    );
    let names: Vec<String> = json(&raw)
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, [spoof, hidden]);
    // clear-lock reports the names escaped too, and releases the real ones.
    let cleared = ok(lockmgr(&db).args(["clear-lock", spoof, hidden]));
    assert!(!cleared.contains('\u{202e}'), "{cleared}");
    assert!(store.list_locks().unwrap().is_empty());
}

/// A role without privileges on the lock table, with a password in its URL (the test
/// cluster trusts every local connection, so any password works).
fn role_url(db: &TestDb, role: &str, grants: &str) -> String {
    let mut admin = PgConnection::establish(db.url()).unwrap();
    admin
        .batch_execute(&format!(
            "CREATE ROLE {role} LOGIN PASSWORD 'secretpw'; {grants}"
        ))
        .unwrap();
    let port = PgCluster::shared().port();
    let database = db.url().rsplit('/').next().unwrap();
    format!("postgres://{role}:secretpw@127.0.0.1:{port}/{database}")
}

#[test]
fn missing_table_permissions() {
    let db = TestDb::postgres();
    let store = db.store(); // the table, created by its owner
    store.get_lock("held", None).unwrap();
    let suffix = db.url().rsplit('_').next().unwrap().to_string();

    // No privileges at all: every command says what is missing, in one line.
    let url = role_url(&db, &format!("cli_nothing_{suffix}"), "");
    for args in every_command() {
        let mut cmd = command(lockmgr_bin());
        cmd.args(["--database-url", &url]).args(&args);
        if args == ["migrate"] {
            let (err, _) = fails(&mut cmd, 1, "cannot migrate the lock table");
            assert!(err.contains("permission denied"), "{err}");
            assert!(
                err.contains("run `lockmgr migrate` as one that may"),
                "{err}"
            );
        } else {
            let (err, _) = fails(&mut cmd, 1, "permission denied for table lockmgr_lock");
            assert!(
                err.contains("needs SELECT, INSERT, UPDATE and DELETE"),
                "{err}"
            );
        }
    }
    assert_eq!(locked_names(&store), ["held"]);

    // Allowed to use the table but not to create tables: everything but `migrate` works.
    let role = format!("cli_user_{suffix}");
    let url = role_url(
        &db,
        &role,
        &format!(
            "GRANT SELECT, INSERT, UPDATE, DELETE ON lockmgr_lock TO {role}; \
             GRANT USAGE ON SEQUENCE lockmgr_lock_fence_seq TO {role};"
        ),
    );
    let user = |args: &[&str]| {
        let mut cmd = command(lockmgr_bin());
        cmd.args(["--database-url", &url]).args(args);
        cmd
    };
    line_of(&ok(&mut user(&["list-locks"])), "held");
    ok(&mut user(&["set-lock", "a"]));
    ok(&mut user(&["clear-lock", "held"]));
    assert_eq!(locked_names(&store), ["a"]);
    fails(&mut user(&["migrate"]), 1, "permission denied");

    // A database without the table, and a role that may not create it.
    let empty = TestDb::postgres();
    let url = role_url(&empty, &format!("cli_empty_{suffix}"), "");
    let mut cmd = command(lockmgr_bin());
    cmd.args(["--database-url", &url, "list-locks"]);
    let (err, _) = fails(&mut cmd, 1, "\"lockmgr_lock\" does not exist");
    assert!(
        err.contains("`lockmgr migrate`, run as a role that may create tables"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------
// Which database, help, version, usage errors

#[test]
fn database_from_the_environment() {
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    let is_locked = |file: &str, name: &str| {
        LockStore::open(&path(file))
            .unwrap()
            .is_locked(name)
            .unwrap()
    };
    let run = |envs: &[(&str, String)], args: &[&str]| {
        let mut cmd = command(lockmgr_bin());
        cmd.current_dir(dir.path())
            .envs(envs.iter().cloned())
            .args(args);
        ok(&mut cmd);
    };
    run(
        &[
            ("LOCKMGR_DATABASE_URL", path("a.db")),
            ("DATABASE_URL", path("b.db")),
        ],
        &["set-lock", "one"],
    );
    assert!(is_locked("a.db", "one") && !is_locked("b.db", "one"));
    run(
        &[
            ("LOCKMGR_DATABASE_URL", String::new()),
            ("DATABASE_URL", path("b.db")),
        ],
        &["set-lock", "two"],
    );
    assert!(is_locked("b.db", "two"));
    run(
        &[("DATABASE_URL", path("b.db"))],
        &["set-lock", "--database-url", &path("c.db"), "three"],
    );
    assert!(is_locked("c.db", "three") && !is_locked("b.db", "three"));
    // Nothing set: ./lockmgr.sqlite3.
    run(&[], &["set-lock", "four"]);
    assert!(is_locked("lockmgr.sqlite3", "four"));
}

#[test]
fn help_and_version() {
    let out = ok(command(lockmgr_bin()).arg("--version"));
    assert_eq!(out, format!("lockmgr {}\n", env!("CARGO_PKG_VERSION")));

    let out = ok(command(lockmgr_bin()).arg("--help"));
    for needle in [
        "list-locks",
        "list-declared",
        "set-lock",
        "clear-lock",
        "reset-locks",
        "migrate",
        "--database-url <URL>",
        "--quiet",
        "LOCKMGR_DATABASE_URL",
        "Exit status",
    ] {
        assert!(out.contains(needle), "--help lacks {needle:?}:\n{out}");
    }
    for (command_name, flags) in [
        ("list-locks", &["--json"][..]),
        ("list-declared", &["--json"]),
        (
            "set-lock",
            &[
                "-n, --no-renew",
                "-r, --only-renew",
                "-k, --no-timeout",
                "-t, --timeout <SECS>",
                "[default: 600]",
                "-e, --fail",
                "<NAME>...",
            ],
        ),
        ("clear-lock", &["--if-expired", "<NAME>..."]),
        ("reset-locks", &["-f, --force", "YES"]),
        ("migrate", &["--database-url"]),
    ] {
        let every_flag = flags.iter().fold(
            predicate::str::contains("Usage: lockmgr ").boxed(),
            |all, flag| all.and(predicate::str::contains(*flag)).boxed(),
        );
        command(lockmgr_bin())
            .args([command_name, "--help"])
            .assert()
            .success()
            .stdout(every_flag);
    }
}

#[test]
fn usage_errors_exit_2() {
    for (args, needle) in [
        (&[][..], "Usage: lockmgr"),
        (&["set-lock"], "required"),
        (&["clear-lock"], "required"),
        (&["set-lock", "-n", "-r", "a"], "cannot be used with"),
        (&["set-lock", "-k", "-t", "5", "a"], "cannot be used with"),
        (&["set-lock", "-t", "0", "a"], "at least 1 second"),
        (
            &["set-lock", "-t", "soon", "a"],
            "not a whole number of seconds",
        ),
        (&["list-locks", "--yaml"], "unexpected argument"),
        (&["frobnicate"], "unrecognized subcommand"),
    ] {
        command(lockmgr_bin())
            .args(args)
            .assert()
            .code(2)
            .stdout("")
            .stderr(
                predicate::str::contains(needle).and(predicate::str::contains("panicked").not()),
            );
    }
}

// ---------------------------------------------------------------------------------
// The example application's own `lockmgr`

#[test]
fn example_app_binary_is_the_whole_cli() {
    let db = TestDb::sqlite();
    let app = example_app_bin();
    let run = |args: &[&str]| {
        let mut cmd = command(app);
        cmd.arg("--database-url").arg(db.url()).args(args);
        ok(&mut cmd)
    };
    assert!(run(&["set-lock", "sync:account:7"]).ends_with("1 created, 0 renewed, 0 skipped.\n"));
    line_of(&run(&["list-locks"]), "sync:account:7");
    assert!(run(&["clear-lock", "sync:account:7"]).ends_with("Released 1 lock.\n"));
}

/// The application's own command line has the lockmgr commands as `locks …`, and
/// they know the application's jobs.
#[test]
fn example_app_has_the_commands_as_a_subcommand() {
    static APP: OnceLock<PathBuf> = OnceLock::new();
    let app = APP.get_or_init(|| build_bin("lockmgr-example-app", "example-app"));
    let db = TestDb::sqlite();
    let mut cmd = command(app);
    cmd.args([
        "locks",
        "--database-url",
        db.url(),
        "list-declared",
        "--json",
    ]);
    let rows = json(&ok(&mut cmd));
    let templates: Vec<&str> = rows
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row["template"].as_str().unwrap())
        .collect();
    assert_eq!(
        templates,
        ["report:nightly", "search:reindex", "sync:account:{id}"]
    );
    let mut cmd = command(app);
    cmd.env("LOCKMGR_DATABASE_URL", db.url())
        .args(["run", "sync", "7"]);
    assert_eq!(ok(&mut cmd), "account 7 synced\n");
    let mut cmd = command(app);
    cmd.args([
        "locks",
        "--database-url",
        db.url(),
        "set-lock",
        "report:nightly",
    ]);
    ok(&mut cmd);
    let mut cmd = command(app);
    cmd.env("LOCKMGR_DATABASE_URL", db.url())
        .args(["run", "nightly-report"]);
    let assert = cmd.assert().code(1);
    assert!(
        stderr(&assert).contains("is held by"),
        "{}",
        stderr(&assert)
    );
}

/// Human output ends by naming the database it read: the absolute path of a SQLite
/// file, or the URL with its password masked; and says when that is the default
/// because no URL was set. JSON and --quiet output do not.
#[test]
fn every_command_names_its_database() {
    let db = TestDb::sqlite();
    let human = [
        vec!["list-locks"],
        vec!["set-lock", "a"],
        vec!["clear-lock", "a"],
        vec!["reset-locks", "-f"],
        vec!["migrate"],
    ];
    for args in &human {
        let assert = lockmgr(&db).args(args).assert().success();
        let out = stdout(&assert);
        assert!(
            out.ends_with(&format!("Database: sqlite {}\n", db.url())),
            "{args:?}: {out}"
        );
    }
    for args in [vec!["list-locks", "--json"], vec!["-q", "set-lock", "b"]] {
        let out = stdout(&lockmgr(&db).args(&args).assert().success());
        assert!(!out.contains("Database:"), "{args:?}: {out}");
    }
    // No URL anywhere: the file in the current directory, and a word about it.
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(lockmgr_bin());
    cmd.current_dir(dir.path()).arg("list-locks");
    let out = stdout(&cmd.assert().success());
    let file = dir.path().join("lockmgr.sqlite3");
    assert!(
        out.contains(&format!(
            "Database: sqlite {} (no --database-url",
            file.display()
        )),
        "{out}"
    );
    // PostgreSQL: the URL, password masked.
    let pg = TestDb::postgres();
    let url = pg.url().replacen("postgres@", "postgres:secretpw@", 1);
    let mut cmd = command(lockmgr_bin());
    cmd.args(["--database-url", &url, "list-locks"]);
    let out = stdout(&cmd.assert().success());
    let masked = url.replace("secretpw", "***");
    assert!(
        out.ends_with(&format!("Database: postgres {masked}\n")),
        "{out}"
    );
}

#[test]
fn example_app_lists_its_jobs() {
    let db = TestDb::sqlite();
    db.store().get_lock("sync:account:7", MINUTE).unwrap();
    let mut cmd = command(example_app_bin());
    cmd.arg("--database-url")
        .arg(db.url())
        .args(["list-declared", "--json"]);
    let rows = json(&ok(&mut cmd));
    let rows = rows.as_array().expect("an array");
    let summary: Vec<(&str, Value, Value, bool)> = rows
        .iter()
        .map(|row| {
            (
                row["template"].as_str().unwrap(),
                row["expires_seconds"].clone(),
                row["wait_seconds"].clone(),
                row["held"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("report:nightly", json!(3600), Value::Null, false),
            ("search:reindex", Value::Null, Value::Null, false),
            ("sync:account:{id}", json!(60), json!(5), true),
        ]
    );
    for (row, function) in rows
        .iter()
        .zip(["nightly_report", "reindex", "sync_account"])
    {
        let path = row["function"].as_str().unwrap();
        assert!(
            path.starts_with("lockmgr_example_app") && path.ends_with(function),
            "{row}"
        );
        assert!(row["file"].as_str().unwrap().ends_with("lib.rs"), "{row}");
    }

    let mut cmd = command(example_app_bin());
    cmd.arg("--database-url").arg(db.url()).arg("list-declared");
    let out = ok(&mut cmd);
    assert!(
        line_of(&out, "sync:account:{id}").ends_with("yes: sync:account:7"),
        "{out}"
    );
    let mut cmd = command(example_app_bin());
    cmd.arg("--database-url").arg(db.url()).arg("list-locks");
    let out = ok(&mut cmd);
    assert!(
        line_of(&out, "sync:account:7").contains("sync:account:{id} (lockmgr_example_app"),
        "{out}"
    );
}
