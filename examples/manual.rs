//! Locks by hand, without `#[locked]`: the module-level functions, the `LockMgr` guard
//! builder, extra locks, renewals and `set_lock` — django-lockmgr's documented
//! examples, in Rust.
//!
//! ```text
//! cargo run --example manual
//! ```
//!
//! It ends by itself, and leaves no lock behind. Every lock it takes is named
//! `manual:…`, in `./lockmgr.sqlite3` (or `LOCKMGR_DATABASE_URL`).

use std::time::{Duration, Instant};

use lockmgr::{Error, LockStore};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = LockStore::from_env()?; // LOCKMGR_DATABASE_URL, DATABASE_URL, ./lockmgr.sqlite3
    lockmgr::set_default_store(store.clone()); // what the module-level functions use
    println!("locks in {} ({})", store.url(), store.backend());
    // Start clean if an earlier run was killed halfway (by name: whoever holds them).
    for name in [
        "manual:somelock",
        "manual:report",
        "manual:mailer",
        "manual:sync",
        "manual:a",
        "manual:b",
    ] {
        store.unlock(name)?;
    }

    module_functions()?;
    guard_builder(&store)?;
    waiting(&store)?;
    renewing(&store)?;
    set_lock(&store)?;

    let left: Vec<_> = store
        .list_locks()?
        .into_iter()
        .filter(|lock| lock.name.starts_with("manual:"))
        .collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    println!("\nall done; no manual:* lock left behind");
    Ok(())
}

/// `get_lock`, `renew_lock`, `is_locked`, `unlock` on the default store, as
/// django-lockmgr's module docs show them:
///
/// ```python
/// lk = lockmgr.get_lock('my_app:somelock', expires=10)
/// lk = lockmgr.renew_lock(lk, 20)        # 20 seconds from now
/// lockmgr.is_locked('my_app:somelock')   # True
/// lockmgr.unlock(lk)
/// ```
fn module_functions() -> lockmgr::Result<()> {
    println!("\n== module-level functions");
    let lk = lockmgr::get_lock("manual:somelock", Some(Duration::from_secs(10)))?;
    println!(
        "get_lock: took {:?} (fence {}, expires in {} s)",
        lk.name,
        lk.fence,
        lk.expires_seconds().unwrap_or(0)
    );
    let lk = lockmgr::renew_lock(
        &lk,
        lockmgr::RenewOptions::new(Some(Duration::from_secs(20))),
    )?;
    println!(
        "renew_lock(&lk, 20 s): expires in {} s",
        lk.expires_seconds().unwrap_or(0)
    );
    // A second taker fails at once with Error::Locked, which says who holds it.
    match lockmgr::get_lock("manual:somelock", None) {
        Err(err @ Error::Locked { .. }) => println!("get_lock again: {err}"),
        other => panic!("expected Locked, got {other:?}"),
    }
    println!("is_locked: {}", lockmgr::is_locked("manual:somelock")?);
    println!("unlock(&lk): released = {}", lockmgr::unlock(&lk)?);
    println!("is_locked: {}", lockmgr::is_locked("manual:somelock")?);
    Ok(())
}

/// The guard: `LockMgr`, released on every way out; extra locks ride along.
///
/// ```python
/// try:
///     with LockMgr('mylock', 60) as l:
///         print('Doing stuff with mylock locked.')
///         if l.lock('otherlock', ret=True):
///             print('Now otherlock is locked...')
///         else:
///             print('Not doing stuff because otherlock is already locked...')
/// except Locked as e:
///     print('Failed to lock. Reason: ', type(e), str(e))
/// ```
fn guard_builder(store: &LockStore) -> lockmgr::Result<()> {
    println!("\n== the LockMgr guard");
    {
        let mut guard = store
            .lock_mgr("manual:report")
            .expires(Some(Duration::from_secs(60)))
            .acquire()?;
        println!(
            "acquired {:?} (fence {}: hand it to what you write, so a stale holder can be refused)",
            guard.name(),
            guard.fence()
        );
        match guard.lock("manual:mailer") {
            Ok(extra) => println!(
                "extra lock {:?}, same expiry, released with the guard",
                extra.name
            ),
            Err(err) if err.is_locked() => println!("not mailing: {err}"),
            Err(err) => return Err(err),
        }
        // The same name again, through any path, is refused while the guard lives.
        let err = store.lock_mgr("manual:report").acquire().unwrap_err();
        println!("a second LockMgr on it: {err}");
    } // dropped: both locks released (also on `?` or a panic)
    println!(
        "after the guard: manual:report locked = {}, manual:mailer locked = {}",
        store.is_locked("manual:report")?,
        store.is_locked("manual:mailer")?
    );
    Ok(())
}

/// `wait`: retry until the holder lets go (or its lock expires), up to a limit.
fn waiting(store: &LockStore) -> lockmgr::Result<()> {
    println!("\n== waiting for a lock");
    let held = store.get_lock("manual:sync", Some(Duration::from_secs(60)))?;
    let holder = store.clone();
    let releaser = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        holder.unlock(&held)
    });
    let asked = Instant::now();
    let guard = store
        .lock_mgr("manual:sync")
        .wait(Duration::from_secs(10))
        .acquire()?;
    println!(
        "another thread held manual:sync for 0.3 s; got it {} ms after asking (fence {})",
        asked.elapsed().as_millis(),
        guard.fence()
    );
    releaser.join().expect("releaser thread")?;
    drop(guard);

    // Without a wait long enough, the answer is Error::Locked.
    let held = store.get_lock("manual:sync", Some(Duration::from_secs(60)))?;
    let asked = Instant::now();
    let err = store
        .lock_mgr("manual:sync")
        .wait(Duration::from_millis(200))
        .acquire()
        .unwrap_err();
    println!("gave up after {} ms: {err}", asked.elapsed().as_millis());
    store.unlock(&held)?; // a plain Lock, not a guard: released by hand
    Ok(())
}

/// `renew` on a guard, and `renew_lock` with `add_time` / `create`.
///
/// ```python
/// with LockMgr('mylock', 60) as l:
///     l.renew(expires=30)    # 30 seconds more
///     l.renew()              # 120 seconds more (re-created if it had expired)
/// ```
fn renewing(store: &LockStore) -> lockmgr::Result<()> {
    println!("\n== renewing");
    let mut guard = store
        .lock_mgr("manual:report")
        .expires(Some(Duration::from_secs(60)))
        .acquire()?;
    let left = |guard: &lockmgr::LockGuard| guard.main_lock().expires_seconds().unwrap_or(0);
    println!("acquired for 60 s: {} s left", left(&guard));
    guard.renew_with(
        lockmgr::RenewOptions::new(Some(Duration::from_secs(30)))
            .add_time()
            .create(),
    )?;
    println!(
        "renew_with(30 s, add_time): 30 s more -> {} s left",
        left(&guard)
    );
    guard.renew()?;
    println!("renew(): 120 s more -> {} s left", left(&guard));
    guard.renew_with(lockmgr::RenewOptions::new(Some(Duration::from_secs(30))))?;
    println!(
        "renew_with(30 s, no add_time): 30 s from now would be shorter, and a renewal never \
         shortens -> {} s left",
        left(&guard)
    );
    drop(guard);

    // renew_lock by name: a missing lock is an error unless `create`.
    match store.renew_lock(
        "manual:report",
        lockmgr::RenewOptions::new(Some(Duration::from_secs(60))),
    ) {
        Err(Error::LockNotFound { name }) => {
            println!("renew_lock({name:?}) without create: not found")
        }
        other => panic!("expected LockNotFound, got {other:?}"),
    }
    let lock = lockmgr::renew_lock(
        "manual:report",
        lockmgr::RenewOptions::new(Some(Duration::from_secs(60))).create(),
    )?;
    println!(
        "renew_lock({:?}, create): taken anew, {} s left",
        lock.name,
        lock.expires_seconds().unwrap_or(0)
    );
    let lock = lockmgr::renew_lock(
        &lock,
        lockmgr::RenewOptions::new(Some(Duration::from_secs(60))).add_time(),
    )?;
    println!(
        "renew_lock(&lock, 60 s, add_time): {} s left",
        lock.expires_seconds().unwrap_or(0)
    );
    lockmgr::unlock(&lock)?;
    Ok(())
}

/// `set_lock`: many names at once, as django-lockmgr's `set_lock` command; with `fail`, all
/// or nothing.
fn set_lock(store: &LockStore) -> lockmgr::Result<()> {
    println!("\n== set_lock");
    let timeout = Some(Duration::from_secs(600));
    // create + renew: whatever exists is renewed, the rest created.
    let report = lockmgr::set_lock(["manual:a"], lockmgr::SetLockOptions::new(timeout))?;
    println!(
        "set_lock([a]): {} created, {} renewed",
        report.created, report.renewed
    );
    let report = lockmgr::set_lock(
        ["manual:a", "manual:b"],
        lockmgr::SetLockOptions::new(timeout),
    )?;
    for status in &report.statuses {
        println!(
            "  {:<9} was locked: {:<5}  now locked: {:<5}  {}",
            status.name,
            status.was_locked,
            status.now_locked(),
            status.action
        );
    }
    store.unlock("manual:b")?;

    // fail: "manual:a" exists, so nothing of the call is kept, "manual:b" included.
    match store.set_lock(
        ["manual:b", "manual:a"],
        lockmgr::SetLockOptions::new(timeout).fail(),
    ) {
        Err(err @ Error::LockFail { .. }) => println!("set_lock([b, a], fail): {err}"),
        other => panic!("expected LockFail, got {other:?}"),
    }
    println!(
        "manual:b locked after the failed call: {}",
        store.is_locked("manual:b")?
    );

    // Only renew (create = false): a free name is skipped.
    let report = store.set_lock(
        ["manual:a", "manual:b"],
        lockmgr::SetLockOptions::new(timeout).only_renew(),
    )?;
    println!(
        "set_lock([a, b], only renew): {} renewed, {} free names skipped",
        report.renewed, report.skip_create
    );
    for name in ["manual:a", "manual:b"] {
        store.unlock(name)?;
    }
    Ok(())
}
