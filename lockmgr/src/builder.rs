//! [`LockMgr`]: how a guarded acquisition is asked for.

use std::time::{Duration, Instant};

use crate::error::Result;
use crate::guard::LockGuard;
use crate::store::{locked_error, AcquireSpec, LockStore};
use crate::wait::Backoff;

/// The expiry used when none is given: 600 seconds, as django-lockmgr.
pub const DEFAULT_EXPIRES: Duration = Duration::from_secs(600);

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
    /// ```
    /// use std::time::Duration;
    /// # fn main() -> lockmgr::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let store = lockmgr::LockStore::open(dir.path().join("l.sqlite3").to_str().unwrap())?;
    /// let guard = store
    ///     .lock_mgr("long-job")
    ///     .expires(Some(Duration::from_secs(1)))
    ///     .keepalive(true)
    ///     .acquire()?;
    /// std::thread::sleep(Duration::from_millis(1500)); // longer than the expiry
    /// assert!(!guard.is_lost() && store.is_locked("long-job")?);
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
    /// (describing the holder last seen) when it could not be had.
    ///
    /// A waiter sleeps between tries, and wakes early when the lock is released by
    /// this process (any store of the same database) or, on PostgreSQL, by any process
    /// (`LISTEN`/`NOTIFY`); it also wakes when the holder's lock expires. Waiters get
    /// no ordering guarantee: after a release, whichever retry lands first wins.
    pub fn acquire(self) -> Result<LockGuard> {
        let started = Instant::now();
        let deadline = self.wait.map(|wait| started + wait);
        let spec = self.spec();
        let mut backoff = Backoff::new(self.store.poll_cap());
        // Interest in releases is registered before each try, so a release between a
        // failed try and the sleep still ends the sleep.
        let mut ticket = deadline.map(|_| self.store.wake_ticket(&self.name));
        let mut attempts = 1u32;
        loop {
            match self.store.acquire_once(&spec)? {
                Ok(lock) => {
                    tracing::debug!(
                        name = %lock.name, fence = lock.fence, attempts,
                        waited_ms = started.elapsed().as_millis() as u64,
                        "lockmgr: guard acquired"
                    );
                    return Ok(LockGuard::new(self.store.clone(), lock, self.settings()));
                }
                Err(holder) => {
                    let delay = deadline.and_then(|deadline| backoff.delay(&holder, deadline));
                    let (Some(delay), Some(ticket)) = (delay, ticket.as_mut()) else {
                        return Err(locked_error(&holder));
                    };
                    ticket.wait(delay);
                    ticket.renew();
                    attempts += 1;
                }
            }
        }
    }

    fn spec(&self) -> AcquireSpec<'_> {
        AcquireSpec {
            name: &self.name,
            expires: self.expires,
            locked_by: self.locked_by.as_deref(),
            lock_process: self.lock_process,
            waiting: self.wait.is_some(),
        }
    }

    fn settings(&self) -> GuardSettings {
        GuardSettings {
            expires: self.expires,
            locked_by: self.locked_by.clone(),
            lock_process: self.lock_process,
            keepalive: self.keepalive,
            min_hold: self.min_hold,
        }
    }
}

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
        }
    }
}
