//! [`LockGuard`]: holds locks and releases them on every way out.

use std::time::Duration;

use crate::builder::GuardSettings;
use crate::error::{Error, Result};
use crate::events;
use crate::keepalive::{KeepAlive, LostSignal};
use crate::model::Lock;
use crate::options::RenewOptions;
use crate::store::{locked_error, LockStore};

/// Holds a main lock, and any extra locks taken with [`lock`](LockGuard::lock), until it
/// is dropped or [`unlock`](LockGuard::unlock)ed.
///
/// Release is owner-checked: if a lock expired and someone else took it, dropping the
/// guard leaves the new holder's lock alone. Dropping also releases during a panic.
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
                return Err(locked_error(&holder));
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
    /// does the same but can only log failures). Releasing twice is fine.
    pub fn unlock(&mut self) -> Result<()> {
        if self.released {
            return Ok(());
        }
        self.released = true;
        self.keepalive = None; // renewals stop before the release
        let mut first_error = None;
        let extra = self.extra.iter().rev().map(|lock| (lock, None));
        let main = std::iter::once((&self.main, self.settings.min_hold));
        for (lock, min_hold) in extra.chain(main) {
            match self.store.release_held(lock, min_hold) {
                Ok(true) => {}
                // Keep-alive has already reported a main lock it lost.
                Ok(false) if std::ptr::eq(lock, &self.main) && self.lost.is_lost() => {}
                Ok(false) => events::lost(lock, "it was gone or taken over at release"),
                Err(err) => {
                    events::release_failed(lock, &err);
                    first_error.get_or_insert(err);
                }
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    fn released_error(&self) -> Error {
        Error::LockNotFound {
            name: self.main.name.clone(),
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        // Failures are logged in unlock(); a destructor cannot report them.
        let _ = self.unlock();
    }
}
