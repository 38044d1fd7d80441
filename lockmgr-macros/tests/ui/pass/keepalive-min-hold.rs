use std::time::Duration;

use lockmgr::locked;

// Renewed while it runs (a 1 s expiry, raised to keep-alive's 3 s minimum; a 1.5 s
// body), and kept 60 s after it started.
#[locked(name = "cron:{job}", expires = 1, keepalive = true, min_hold = 60, guard = g)]
fn run(job: &str) -> lockmgr::Result<bool> {
    std::thread::sleep(Duration::from_millis(1500));
    Ok(!g.is_lost())
}

fn main() {
    let store = lockmgr::LockStore::open("sqlite::memory:").unwrap();
    lockmgr::set_default_store(store.clone());
    assert!(run("hourly").unwrap(), "keep-alive held the lock through the body");
    let again = run("hourly").unwrap_err();
    assert!(again.is_locked(), "min_hold keeps the lock after the call: {again}");
    let decl = lockmgr::declared_locks().into_iter().find(|d| d.name == "cron:{job}").unwrap();
    assert!(decl.keepalive);
    assert_eq!(decl.min_hold, Some(Duration::from_secs(60)));
}
