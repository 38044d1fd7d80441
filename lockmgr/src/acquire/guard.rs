//! [`LockGuard`]: holds locks and releases them on every way out.

use std::time::Duration;

use crate::acquire::keepalive::{KeepAlive, LostSignal};
use crate::async_support;
use crate::error::{Error, Result};
use crate::events;
use crate::model::Lock;
use crate::options::RenewOptions;
use crate::store::{AcquireSpec, LockStore};

/// What a guard needs to take extra locks the same way as its main one.
#[derive(Debug, Clone)]
pub(crate) struct GuardSettings {
    pub(crate) expires: Option<Duration>,
    pub(crate) locked_by: Option<String>,
    pub(crate) lock_process: Option<i64>,
    pub(crate) keepalive: bool,
    pub(crate) min_hold: Option<Duration>,
}

impl GuardSettings {
    pub(crate) fn spec<'a>(&'a self, name: &'a str) -> AcquireSpec<'a> {
        AcquireSpec {
            name,
            expires: self.expires,
            locked_by: self.locked_by.as_deref(),
            lock_process: self.lock_process,
            waiting: false,
            until: None,
        }
    }
}

/// Holds a main lock, and any extra locks taken with [`lock`](LockGuard::lock), until it
/// is dropped or [`unlock`](LockGuard::unlock)ed ([`unlock_async`](LockGuard::unlock_async)
/// in async code).
///
/// Release is owner-checked: if a lock expired and someone else took it, dropping the
/// guard leaves the new holder's lock alone. Dropping also releases during a panic.
/// With the `tokio` feature, a guard dropped on a tokio task hands its release to
/// tokio's blocking pool instead of blocking the executor: the lock is free a moment
/// after the drop rather than at once.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct LockGuard {
    store: LockStore,
    main: Lock,
    extra: Vec<Lock>,
    settings: GuardSettings,
    released: bool,
    keepalive: Option<KeepAlive>,
    lost: LostSignal,
}

impl std::fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LockGuard")
            .field("main", &self.main)
            .field("extra", &self.extra)
            .field("released", &self.released)
            .field("keepalive", &self.keepalive.is_some())
            .field("lost", &self.lost.is_lost())
            .finish_non_exhaustive()
    }
}

impl LockGuard {
    pub(crate) fn new(store: LockStore, main: Lock, settings: GuardSettings) -> Self {
        let lost = LostSignal::for_lock(&main);
        let mut guard = LockGuard {
            store,
            main,
            extra: Vec::new(),
            settings,
            released: false,
            keepalive: None,
            lost,
        };
        guard.start_keepalive();
        guard
    }

    /// (Re)start background renewal of the main lock, if asked for.
    fn start_keepalive(&mut self) {
        self.keepalive = None; // stops a previous renewal thread first
        if let (true, Some(expires)) = (
            self.settings.keepalive,
            self.settings.expires.filter(|d| !d.is_zero()),
        ) {
            self.keepalive = Some(KeepAlive::start(
                self.store.clone(),
                self.main.clone(),
                expires,
                self.lost.clone(),
            ));
        }
    }

    /// Whether the main lock can no longer be trusted: its lease ran out (counted on
    /// the local clock from when it was acquired or last renewed, minus a margin, so
    /// this turns true before anyone else can take it), or keep-alive found it gone
    /// or taken over (see [`LockMgr::keepalive`](crate::LockMgr::keepalive)). Once
    /// true, it stays true. Always false for a lock that never expires.
    pub fn is_lost(&self) -> bool {
        self.lost.is_lost()
    }

    /// The lost-lock signal, to poll, block on or `.await` while the job runs; see
    /// [`LostSignal`].
    pub fn lost_signal(&self) -> LostSignal {
        self.lost.clone()
    }

    /// The main lock as it stands now, including renewals made by keep-alive.
    pub fn current_lock(&self) -> Lock {
        match &self.keepalive {
            Some(keepalive) => keepalive.latest(),
            None => self.main.clone(),
        }
    }

    /// The main lock, as last acquired or renewed.
    pub fn main_lock(&self) -> &Lock {
        &self.main
    }

    /// The main lock's name.
    pub fn name(&self) -> &str {
        &self.main.name
    }

    /// The main lock's fencing token: pass it to the resource you protect, which can
    /// then refuse writes carrying a smaller one.
    pub fn fence(&self) -> i64 {
        self.main.fence
    }

    /// The store the locks live in.
    pub fn store(&self) -> &LockStore {
        &self.store
    }

    /// The extra locks taken with [`lock`](LockGuard::lock), oldest first.
    pub fn extra_locks(&self) -> &[Lock] {
        &self.extra
    }

    /// Whether [`unlock`](LockGuard::unlock) has already released everything.
    pub fn is_released(&self) -> bool {
        self.released
    }

    /// Take one more lock, with the same expiry as the main one, held until this guard
    /// is released. Fails at once with [`Error::Locked`] when it is held elsewhere.
    pub fn lock(&mut self, name: &str) -> Result<&Lock> {
        if self.released {
            return Err(self.released_error());
        }
        let lock = match self.store.acquire_once(&self.settings.spec(name))? {
            Ok(lock) => lock,
            Err(holder) => {
                events::not_acquired(&holder, 1, Duration::ZERO);
                return Err(holder.locked_error());
            }
        };
        events::acquired(&lock, 1, Duration::ZERO);
        self.extra.push(lock);
        Ok(&self.extra[self.extra.len() - 1])
    }

    /// Add [`DEFAULT_RENEW`](crate::DEFAULT_RENEW) (120 s) to the main lock; re-take it
    /// if it has expired and is gone ([`RenewOptions::default`]). Fails with
    /// [`Error::Locked`] if someone else took it meanwhile.
    pub fn renew(&mut self) -> Result<&Lock> {
        self.renew_with(RenewOptions::default())
    }

    /// Renew the main lock as [`LockStore::renew_lock`] does (owner-checked); with
    /// [`RenewOptions::create`], a main lock that is gone is taken anew (a new fence).
    pub fn renew_with(&mut self, options: RenewOptions) -> Result<&Lock> {
        if self.released {
            return Err(self.released_error());
        }
        match self.store.renew_lock(&self.main, options) {
            Ok(lock) => {
                // A lock taken anew (`create`) or renewed gives a new lease, unless
                // the signal has already fired: a lost lock stays lost.
                self.lost.extend(lock.lease_deadline());
                self.main = lock;
            }
            Err(err @ (Error::Locked { .. } | Error::LockNotFound { .. })) => {
                events::lost(&self.main, "a renewal found it gone or taken over");
                return Err(err);
            }
            Err(err) => return Err(err),
        }
        Ok(&self.main)
    }

    /// Release every lock this guard holds now, reporting the first failure (a drop
    /// does the same but can only log failures). Releasing twice is fine. Blocks the
    /// calling thread for the release (and its retries on a new connection, see
    /// [`LockStoreBuilder::statement_timeout`](crate::LockStoreBuilder::statement_timeout));
    /// in async code use [`unlock_async`](LockGuard::unlock_async).
    pub fn unlock(&mut self) -> Result<()> {
        match self.take_release() {
            Some(release) => release.run(),
            None => Ok(()),
        }
    }

    /// [`unlock`](LockGuard::unlock) for async code: the same owner-checked release,
    /// with the same retries, run on a blocking pool (tokio's inside a tokio runtime
    /// with the `tokio` feature, else the `blocking` crate's) so that the executor's
    /// thread never waits for the database. `#[locked] async fn` awaits it when its
    /// body returns.
    ///
    /// Once polled, the release happens even if this future is dropped before it
    /// completes (it then goes on in the background). Releasing twice is fine.
    ///
    /// ```
    /// # fn main() -> lockmgr::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = lockmgr::LockStore::open(dir.path().join("l.sqlite3").to_str().unwrap())?;
    /// # let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    /// runtime.block_on(async {
    ///     let mut guard = store.lock_mgr("import").acquire_async().await?;
    ///     // ... the job ...
    ///     guard.unlock_async().await?;
    ///     assert!(!store.is_locked("import")?);
    ///     Ok(())
    /// })
    /// # }
    /// ```
    pub async fn unlock_async(&mut self) -> Result<()> {
        match self.take_release() {
            Some(release) => async_support::run_blocking_to_end(move || release.run()).await?,
            None => Ok(()),
        }
    }

    /// Mark the guard released and stop its renewals; what remains to release.
    fn take_release(&mut self) -> Option<Release> {
        if self.released {
            return None;
        }
        self.released = true;
        self.keepalive = None; // renewals stop before the release
        Some(Release {
            store: self.store.clone(),
            main: self.main.clone(),
            extra: self.extra.clone(),
            min_hold: self.settings.min_hold,
            lost: self.lost.clone(),
            done: false,
        })
    }

    fn released_error(&self) -> Error {
        Error::LockNotFound {
            name: self.main.name.clone(),
        }
    }
}

impl Drop for LockGuard {
    /// Releases every lock the guard still holds, also during a panic. On a thread
    /// that is polling an async task (known with the `tokio` feature, on tokio), the
    /// release is handed to the blocking pool and the drop returns at once; elsewhere
    /// it runs here. Failures are logged: a destructor cannot report them.
    fn drop(&mut self) {
        let Some(release) = self.take_release() else {
            return;
        };
        if async_support::on_an_executor() {
            async_support::hand_off(move || {
                let _ = release.run();
            });
        } else {
            let _ = release.run();
        }
    }
}

/// The locks of a guard still to release, taken out of it. Runs once: if it is
/// dropped unrun (a pool that refused it, a runtime shutting down), it releases then.
struct Release {
    store: LockStore,
    main: Lock,
    extra: Vec<Lock>,
    min_hold: Option<Duration>,
    lost: LostSignal,
    done: bool,
}

impl Release {
    /// Release the extra locks, newest first, then the main one; the first failure.
    fn run(mut self) -> Result<()> {
        self.release()
    }

    fn release(&mut self) -> Result<()> {
        self.done = true;
        let mut first_error = None;
        let extra = self.extra.iter().rev().map(|lock| (lock, None, false));
        let main = std::iter::once((&self.main, self.min_hold, true));
        for (lock, min_hold, is_main) in extra.chain(main) {
            match self.store.release_held(lock, min_hold) {
                Ok(true) => {}
                // Keep-alive has already reported a main lock it lost.
                Ok(false) if is_main && self.lost.is_lost() => {}
                Ok(false) => events::lost(lock, "it was gone or taken over at release"),
                Err(err) => {
                    events::release_failed(lock, &err);
                    first_error.get_or_insert(err);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

impl Drop for Release {
    fn drop(&mut self) {
        if !self.done {
            let _ = self.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::task::{Context, Waker};
    use std::time::Instant;

    use super::*;
    use crate::test_support::temp_store as store;

    #[test]
    fn unlock_async_releases_everything_once_on_any_executor() {
        let (_dir, store) = store();
        let mut guard = store.lock_mgr("a").acquire().unwrap();
        guard.lock("a:extra").unwrap();
        futures_lite::future::block_on(guard.unlock_async()).unwrap();
        assert!(guard.is_released());
        assert!(!store.is_locked("a").unwrap() && !store.is_locked("a:extra").unwrap());
        assert_eq!(
            guard.extra_locks().len(),
            1,
            "still listed after the release"
        );
        // Twice is fine, and so is the drop after it.
        futures_lite::future::block_on(guard.unlock_async()).unwrap();
        guard.unlock().unwrap();
    }

    #[test]
    fn an_unlock_async_dropped_half_way_still_releases() {
        let (_dir, store) = store();
        let mut guard = store.lock_mgr("b").acquire().unwrap();
        {
            let mut unlocking = std::pin::pin!(guard.unlock_async());
            let mut cx = Context::from_waker(Waker::noop());
            // The first poll hands the release to the pool; then the future is gone.
            let _ = unlocking.as_mut().poll(&mut cx);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while store.is_locked("b").unwrap() {
            assert!(Instant::now() < deadline, "the release never happened");
            std::thread::sleep(Duration::from_millis(10));
        }
        drop(guard);
    }
}
