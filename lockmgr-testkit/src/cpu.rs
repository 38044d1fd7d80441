//! How much CPU a waiting process burns: a test re-runs its own binary as a child that
//! waits for a lock, and the child reports the CPU time it used while waiting.
//!
//! In the test binary, a test named like the `entry` given to [`spawn_waiter`] calls
//! [`waiter_child`] (which does nothing unless this process is such a child).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use lockmgr::LockStore;

const WAIT_URL: &str = "LOCKMGR_TEST_WAIT_URL";
const WAIT_NAME: &str = "LOCKMGR_TEST_WAIT_NAME";
const WAIT_MILLIS: &str = "LOCKMGR_TEST_WAIT_MILLIS";

/// The CPU time (user + system, all threads) this process has used so far, from
/// `/proc/self/stat`.
pub fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("reading /proc/self/stat");
    // The fields after the command name, which is in parentheses and may hold spaces.
    let after = &stat[stat.rfind(')').expect("a /proc stat line") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line: 12 and 13 after the name.
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    // SAFETY: sysconf only reads a system setting.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Duration::from_secs_f64(ticks as f64 / per_second)
}

/// Run this test binary again, with only the test `entry` selected, as a process that
/// opens `url` and waits up to `wait` for the lock `name`.
pub fn spawn_waiter(entry: &str, url: &str, name: &str, wait: Duration) -> Child {
    Command::new(std::env::current_exe().expect("test executable path"))
        .args(["--exact", entry, "--nocapture", "--test-threads=1"])
        .env(WAIT_URL, url)
        .env(WAIT_NAME, name)
        .env(WAIT_MILLIS, wait.as_millis().to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning the waiter")
}

/// In a child made by [`spawn_waiter`]: open the store, wait for the lock (until it
/// is had or the wait ends), and print the CPU time the wait took,
/// `@waited <seconds> <acquired|locked>`. Elsewhere: nothing.
pub fn waiter_child() {
    let (Ok(url), Ok(name), Ok(millis)) = (
        std::env::var(WAIT_URL),
        std::env::var(WAIT_NAME),
        std::env::var(WAIT_MILLIS),
    ) else {
        return;
    };
    let store = LockStore::open(&url).expect("opening the store");
    let wait = Duration::from_millis(millis.parse().expect("a wait in milliseconds"));
    let before = cpu_time();
    let outcome = store.lock_mgr(&name).wait(wait).acquire();
    let used = cpu_time() - before;
    let outcome = match outcome {
        Ok(_) => "acquired",
        Err(err) if err.is_locked() => "locked",
        Err(err) => panic!("waiting failed: {err}"),
    };
    println!("@waited {} {outcome}", used.as_secs_f64());
}

/// What a child made by [`spawn_waiter`] reported: the CPU time of its wait, and
/// whether it got the lock.
pub fn waiter_report(child: Child) -> (Duration, bool) {
    let out = child.wait_with_output().expect("waiting for the waiter");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the waiter failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report = stdout
        .split("@waited ")
        .nth(1)
        .unwrap_or_else(|| panic!("no report from the waiter: {stdout}"));
    let mut words = report.split_whitespace();
    let seconds: f64 = words.next().unwrap().parse().unwrap();
    (
        Duration::from_secs_f64(seconds),
        words.next() == Some("acquired"),
    )
}
