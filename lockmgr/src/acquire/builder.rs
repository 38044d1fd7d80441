//! [`LockMgr`]: how a guarded acquisition is asked for.

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::acquire::guard::GuardSettings;
use crate::acquire::guard::LockGuard;
use crate::acquire::keepalive::MIN_KEEPALIVE_EXPIRES;
use crate::acquire::retry::Retry;
use crate::async_support;
use crate::error::Result;
use crate::model::Lock;
use crate::options::DEFAULT_EXPIRES;
use crate::store::{AcquireSpec, LockStore};

/// A guarded acquisition of one lock, configured step by step and taken with
/// [`acquire`](LockMgr::acquire). The returned [`LockGuard`] releases the lock (and
/// every extra lock taken through it) when dropped, also during a panic.
///
/// ```
/// use std::time::Duration;
/// # fn main() -> lockmgr::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let store = lockmgr::LockStore::open(dir.path().join("l.sqlite3").to_str().unwrap())?;
/// {
///     let mut guard = store
///         .lock_mgr("nightly-report")
///         .expires(Some(Duration::from_secs(60)))
///         .wait(Duration::from_secs(5))
///         .acquire()?;
///     guard.lock("mailer")?; // an extra lock, released with the guard
///     assert!(store.is_locked("mailer")?);
/// }
/// assert!(!store.is_locked("nightly-report")? && !store.is_locked("mailer")?);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[must_use = "a LockMgr takes nothing until .acquire() is called"]
pub struct LockMgr {
    store: LockStore,
    name: String,
    expires: Option<Duration>,
    wait: Option<Duration>,
    locked_by: Option<String>,
    lock_process: Option<i64>,
    keepalive: bool,
    min_hold: Option<Duration>,
}

impl LockStore {
    /// A builder for a guarded acquisition of `name` (expiry, waiting, extra locks);
    /// see [`LockMgr`].
    pub fn lock_mgr(&self, name: impl Into<String>) -> LockMgr {
        LockMgr::new(self.clone(), name.into())
    }
}

impl LockMgr {
    pub(crate) fn new(store: LockStore, name: String) -> Self {
        LockMgr {
            store,
            name,
            expires: Some(DEFAULT_EXPIRES),
            wait: None,
            locked_by: None,
            lock_process: Some(i64::from(std::process::id())),
            keepalive: false,
            min_hold: None,
        }
    }

    /// The lock name this acquires.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The store it acquires in.
    pub(crate) fn store(&self) -> &LockStore {
        &self.store
    }

    /// How long the lock (and extra locks) last: `None` or zero never expire. Default
    /// [`DEFAULT_EXPIRES`].
    pub fn expires(mut self, expires: Option<Duration>) -> Self {
        self.expires = expires;
        self
    }

    /// Keep trying for up to `wait` while someone else holds the lock (default: fail at
    /// once). Any duration works; a holder's lock that expires inside the window is
    /// taken over.
    pub fn wait(mut self, wait: Duration) -> Self {
        self.wait = Some(wait);
        self
    }

    /// The `locked_by` to record (default: the store's, the host name).
    pub fn locked_by(mut self, locked_by: impl Into<String>) -> Self {
        self.locked_by = Some(locked_by.into());
        self
    }

    /// The process id to record (default: this process).
    pub fn lock_process(mut self, lock_process: Option<i64>) -> Self {
        self.lock_process = lock_process;
        self
    }

    /// While the guard lives, renew the lock in the background (owner-checked) at about
    /// a third of its expiry, so a job may outlive the expiry it asked for. If a
    /// renewal finds the lock gone or someone else's, the guard is marked lost
    /// ([`LockGuard::is_lost`], [`LockGuard::lost_signal`]). Renewal stops the moment
    /// the guard is dropped or unlocked. No effect on a lock that never expires.
    ///
    /// With keep-alive, the expiry is at least [`MIN_KEEPALIVE_EXPIRES`] (3 s): a
    /// shorter one is raised to it, for the lock and the extra locks of the guard
    /// alike. On a database server, prefer 30 s or more: a renewal then has time to
    /// wait out a statement timeout (10 s by default) and a retry on a new connection
    /// before the lease runs out.
    ///
    /// Renewals need no thread per guard: one scheduler per process times them all and
    /// runs them on a few worker threads (at most four at once per database), so a
    /// renewal that hangs on one database neither delays the guard's drop nor the
    /// renewals of other databases.
    ///
    /// ```
    /// use std::time::Duration;
    /// # fn main() -> lockmgr::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = lockmgr::LockStore::open(dir.path().join("l.sqlite3").to_str().unwrap())?;
    /// let guard = store
    ///     .lock_mgr("long-job")
    ///     .expires(Some(Duration::from_millis(500))) // raised to 3 s
    ///     .keepalive(true)
    ///     .acquire()?;
    /// assert!(guard.main_lock().expires_in().unwrap() > Duration::from_secs(2));
    /// // The first renewal is due after 1 s, a third of the lease.
    /// let renewed = (0..200).any(|_| {
    ///     std::thread::sleep(Duration::from_millis(50));
    ///     guard.current_lock().locked_until > guard.main_lock().locked_until
    /// });
    /// assert!(renewed && !guard.is_lost() && store.is_locked("long-job")?);
    /// # Ok(()) }
    /// ```
    pub fn keepalive(mut self, keepalive: bool) -> Self {
        self.keepalive = keepalive;
        self
    }

    /// Keep the lock at least `min_hold` after it was taken: a guard released sooner
    /// leaves the row in place until `acquired + min_hold` (by the database clock)
    /// instead of deleting it, so the same job on another host does not run again in
    /// the same window. Applies to the main lock.
    ///
    /// ```
    /// use std::time::Duration;
    /// # fn main() -> lockmgr::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = lockmgr::LockStore::open(dir.path().join("l.sqlite3").to_str().unwrap())?;
    /// drop(store.lock_mgr("hourly").hold_at_least(Duration::from_secs(60)).acquire()?);
    /// // The job finished at once, but the lock stays for the rest of the minute.
    /// assert!(store.lock_mgr("hourly").acquire().unwrap_err().is_locked());
    /// # Ok(()) }
    /// ```
    pub fn hold_at_least(mut self, min_hold: Duration) -> Self {
        self.min_hold = Some(min_hold).filter(|d| !d.is_zero());
        self
    }

    /// Take the lock, retrying until the wait is over; [`Error::Locked`](crate::Error::Locked)
    /// (describing the holder last seen) when it could not be had. Blocks the calling
    /// thread while it waits; in async code use [`acquire_async`](LockMgr::acquire_async).
    ///
    /// A waiter sleeps between tries, and wakes early when the lock is released by
    /// this process (any store of the same database) or, on PostgreSQL, by any process
    /// (`LISTEN`/`NOTIFY`); it also wakes when the holder's lock expires. Waiters get
    /// no ordering guarantee: after a release, whichever retry lands first wins.
    pub fn acquire(self) -> Result<LockGuard> {
        let mut retry = Retry::for_lock(&self.store, &self.name, self.wait);
        loop {
            match self.try_acquire(retry.attempt_until())? {
                Ok(guard) => {
                    retry.acquired(guard.main_lock());
                    return Ok(guard);
                }
                Err(holder) => {
                    let delay = retry.after_miss(&holder)?;
                    retry.sleep(delay);
                }
            }
        }
    }

    /// [`acquire`](LockMgr::acquire) for async code: the same attempts and retry
    /// schedule, but the waits between attempts are asynchronous sleeps, so the
    /// executor's thread is never blocked while waiting.
    ///
    /// - With the `tokio` feature, polled inside a tokio runtime: it sleeps with
    ///   `tokio::time::sleep` (the runtime needs its timer, as `#[tokio::main]` enables)
    ///   and each attempt's database call runs on tokio's blocking pool
    ///   (`spawn_blocking`).
    /// - Otherwise, on any executor: it sleeps on a `futures-timer` delay, and each
    ///   attempt's database call runs on the `blocking` crate's thread pool. Without a
    ///   `wait` there is a single attempt and no sleep.
    ///
    /// Dropping the future before it completes takes nothing: a lock acquired by an
    /// attempt still running on the blocking pool is released as soon as that attempt
    /// ends. Release the returned guard with
    /// [`unlock_async`](LockGuard::unlock_async)`.await`, which runs on the blocking
    /// pool too; a guard dropped on a tokio task (with the `tokio` feature) hands its
    /// release to tokio's blocking pool, elsewhere it releases on the dropping thread.
    ///
    /// ```
    /// use std::time::Duration;
    /// # fn main() -> lockmgr::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = lockmgr::LockStore::open(dir.path().join("l.sqlite3").to_str().unwrap())?;
    /// # let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
    /// runtime.block_on(async {
    ///     let guard = store
    ///         .lock_mgr("import")
    ///         .wait(Duration::from_secs(5))
    ///         .acquire_async()
    ///         .await?;
    ///     assert!(store.is_locked("import")?);
    ///     drop(guard);
    ///     Ok(())
    /// })
    /// # }
    /// ```
    pub async fn acquire_async(self) -> Result<LockGuard> {
        let mut retry = Retry::for_lock(&self.store, &self.name, self.wait);
        let this = Arc::new(self);
        loop {
            let attempt = Arc::clone(&this);
            let until = retry.attempt_until();
            match async_support::run_blocking(move || attempt.try_acquire(until)).await?? {
                Ok(guard) => {
                    retry.acquired(guard.main_lock());
                    return Ok(guard);
                }
                Err(holder) => {
                    let delay = retry.after_miss(&holder)?;
                    retry.sleep_async(delay).await;
                }
            }
        }
    }

    /// One attempt: the guard when the lock was taken, else the holder in the way.
    /// The guard is made right here so that a lock taken is never left without one.
    /// `until`: the attempt must be over by then (see [`Retry::attempt_until`]).
    fn try_acquire(&self, until: Option<Instant>) -> Result<std::result::Result<LockGuard, Lock>> {
        Ok(self
            .store
            .acquire_once(&self.spec(until))?
            .map(|lock| LockGuard::new(self.store.clone(), lock, self.settings())))
    }

    /// The expiry the lock gets: with keep-alive, at least [`MIN_KEEPALIVE_EXPIRES`].
    fn lease(&self) -> Option<Duration> {
        match self.expires {
            Some(expires) if self.keepalive && !expires.is_zero() => {
                Some(expires.max(MIN_KEEPALIVE_EXPIRES))
            }
            expires => expires,
        }
    }

    fn spec(&self, until: Option<Instant>) -> AcquireSpec<'_> {
        AcquireSpec {
            name: &self.name,
            expires: self.lease(),
            locked_by: self.locked_by.as_deref(),
            lock_process: self.lock_process,
            waiting: self.wait.is_some(),
            until,
        }
    }

    fn settings(&self) -> GuardSettings {
        GuardSettings {
            expires: self.lease(),
            locked_by: self.locked_by.clone(),
            lock_process: self.lock_process,
            keepalive: self.keepalive,
            min_hold: self.min_hold,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::*;
    use crate::test_support::temp_store as store;

    #[test]
    fn sync_and_async_waits_give_up_alike() {
        let (_dir, store) = store();
        let _held = store.get_lock("held", None).unwrap();
        let wait = Duration::from_millis(100);
        let started = Instant::now();
        let err = store.lock_mgr("held").wait(wait).acquire().unwrap_err();
        assert!(err.is_locked() && started.elapsed() >= wait, "{err}");
        let started = Instant::now();
        let err = futures_lite::future::block_on(store.lock_mgr("held").wait(wait).acquire_async())
            .unwrap_err();
        assert!(err.is_locked() && started.elapsed() >= wait, "{err}");
    }

    #[test]
    fn keepalive_raises_a_short_expiry_to_the_minimum() {
        let (_dir, store) = store();
        let short = Some(Duration::from_millis(500));
        let mut kept = store
            .lock_mgr("kept")
            .expires(short)
            .keepalive(true)
            .acquire()
            .unwrap();
        let extra = kept.lock("kept:extra").unwrap().clone();
        for lock in [kept.main_lock(), &extra] {
            let left = lock.expires_in().unwrap();
            assert!(
                // Well above the 500 ms asked for, with room for a slow machine.
                left > MIN_KEEPALIVE_EXPIRES - Duration::from_secs(2)
                    && left <= MIN_KEEPALIVE_EXPIRES,
                "{left:?}"
            );
        }
        // Without keep-alive, or at or above the minimum, the expiry is as asked.
        let plain = store.lock_mgr("plain").expires(short).acquire().unwrap();
        assert!(plain.main_lock().expires_in().unwrap() <= Duration::from_millis(500));
        let long = Some(Duration::from_secs(40));
        let kept_long = store
            .lock_mgr("long")
            .expires(long)
            .keepalive(true)
            .acquire()
            .unwrap();
        assert!(kept_long.main_lock().expires_in().unwrap() > Duration::from_secs(35));
        let never = store
            .lock_mgr("never")
            .expires(None)
            .keepalive(true)
            .acquire()
            .unwrap();
        assert_eq!(never.main_lock().locked_until, None);
    }

    #[cfg(feature = "tokio")]
    #[test]
    fn tokio_acquire_waits_off_the_executor_thread() {
        let (_dir, store) = store();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let held = store.get_lock("held", None).unwrap();
        let releaser = store.clone();
        let guard = runtime.block_on(async move {
            // Both run on the one executor thread: the release can only happen if the
            // waiter does not block that thread.
            let release = async move {
                tokio::time::sleep(Duration::from_millis(150)).await;
                releaser.unlock(&held).unwrap();
            };
            let (guard, ()) = tokio::join!(
                store
                    .lock_mgr("held")
                    .wait(Duration::from_secs(10))
                    .acquire_async(),
                release
            );
            guard
        });
        assert_eq!(guard.unwrap().name(), "held");
    }

    #[cfg(feature = "tokio")]
    #[test]
    fn a_dropped_tokio_acquisition_leaves_no_lock_behind() {
        use std::future::Future;
        use std::pin::pin;
        use std::task::{Context, Waker};

        let (_dir, store) = store();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let _inside = runtime.enter();
        let mut cx = Context::from_waker(Waker::noop());
        {
            let mut acquiring = pin!(store.lock_mgr("dropped").acquire_async());
            // The first poll hands the attempt to the blocking pool and cannot have
            // its answer yet; then the future is dropped mid-attempt.
            assert!(acquiring.as_mut().poll(&mut cx).is_pending());
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        // The attempt may well take the lock after the drop; its guard, dropped on
        // the pool, must release it.
        std::thread::sleep(Duration::from_millis(200));
        while store.is_locked("dropped").unwrap() {
            assert!(
                Instant::now() < deadline,
                "the abandoned acquisition kept the lock"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        // And the row is really gone, not merely expired: a fresh take succeeds.
        assert!(store.find_lock("dropped").unwrap().is_none());
    }
}
