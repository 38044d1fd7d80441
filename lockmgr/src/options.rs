//! Options of the calls that take more than an expiry: [`RenewOptions`] for
//! [`renew_lock`](crate::LockStore::renew_lock) and
//! [`LockGuard::renew_with`](crate::LockGuard::renew_with), [`SetLockOptions`] for
//! [`set_lock`](crate::LockStore::set_lock). They keep django-lockmgr's vocabulary
//! (`add_time`, `create`, `renew`, `fail`) as named steps instead of positional
//! booleans.

use std::time::Duration;

/// The expiry used when none is given: 600 seconds, as django-lockmgr.
pub const DEFAULT_EXPIRES: Duration = Duration::from_secs(600);

/// django-lockmgr's default renewal: 120 seconds.
pub const DEFAULT_RENEW: Duration = Duration::from_secs(120);

/// How to renew a lock.
///
/// - [`RenewOptions::new`]`(expires)`: set the expiry to now + `expires`, but never
///   shorten it; fail with [`Error::LockNotFound`](crate::Error::LockNotFound) when
///   there is nothing to renew. `expires` `None` (or zero) makes the lock never expire;
///   a lock that never expires stays so.
/// - [`add_time`](RenewOptions::add_time): add `expires` to the current expiry instead
///   (counted from now if that has already passed) — django-lockmgr's `add_time`.
/// - [`create`](RenewOptions::create): when there is nothing to renew, take the lock
///   anew (failing with [`Error::Locked`](crate::Error::Locked) if someone else holds
///   it) — django-lockmgr's `create`.
///
/// [`RenewOptions::default()`] is django-lockmgr's `renew_lock` default: 120 s added,
/// re-taken if gone.
///
/// ```
/// use std::time::Duration;
/// use lockmgr::RenewOptions;
///
/// let extend = RenewOptions::new(Some(Duration::from_secs(60)));
/// assert_eq!(extend.expires(), Some(Duration::from_secs(60)));
/// assert!(!extend.adds_time() && !extend.creates());
/// let seed = RenewOptions::default();
/// assert_eq!(seed, RenewOptions::new(Some(Duration::from_secs(120))).add_time().create());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct RenewOptions {
    expires: Option<Duration>,
    add_time: bool,
    create: bool,
}

impl RenewOptions {
    /// Renew to now + `expires` (never shortening; `None`: never expires), only if
    /// there is a lock to renew.
    pub const fn new(expires: Option<Duration>) -> Self {
        RenewOptions {
            expires,
            add_time: false,
            create: false,
        }
    }

    /// Add the expiry to the lock's current one instead of counting it from now.
    pub const fn add_time(mut self) -> Self {
        self.add_time = true;
        self
    }

    /// Take the lock anew when there is nothing to renew.
    pub const fn create(mut self) -> Self {
        self.create = true;
        self
    }

    /// The renewal's length; `None`: never expires.
    pub const fn expires(&self) -> Option<Duration> {
        self.expires
    }

    /// Whether the renewal adds to the current expiry.
    pub const fn adds_time(&self) -> bool {
        self.add_time
    }

    /// Whether a lock that is gone is taken anew.
    pub const fn creates(&self) -> bool {
        self.create
    }
}

impl Default for RenewOptions {
    /// django-lockmgr's default: [`DEFAULT_RENEW`] added to the expiry, the lock
    /// re-taken if it is gone.
    fn default() -> Self {
        RenewOptions::new(Some(DEFAULT_RENEW)).add_time().create()
    }
}

/// What [`set_lock`](crate::LockStore::set_lock) does with each name.
///
/// [`SetLockOptions::new`]`(timeout)` is django-lockmgr's `set_lock` command without
/// flags: a free (or expired) name is locked for `timeout`, a held name is renewed to
/// now + `timeout` (never shortened); `timeout` `None` means never expires. The steps
/// below are the command's flags:
///
/// - [`fail`](SetLockOptions::fail) (`-e/--fail`): all or nothing — the first name
///   already held aborts the call, keeping nothing it did, with
///   [`Error::LockFail`](crate::Error::LockFail).
/// - [`no_renew`](SetLockOptions::no_renew) (`-n/--no-renew`): leave held names as
///   they are.
/// - [`only_renew`](SetLockOptions::only_renew) (`-r/--only-renew`): leave free names
///   free.
///
/// ```
/// use std::time::Duration;
/// use lockmgr::SetLockOptions;
///
/// let all_or_nothing = SetLockOptions::new(Some(Duration::from_secs(60))).fail();
/// assert!(all_or_nothing.fails() && all_or_nothing.renews() && all_or_nothing.creates());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct SetLockOptions {
    timeout: Option<Duration>,
    fail: bool,
    renew: bool,
    create: bool,
}

impl SetLockOptions {
    /// Create free names and renew held ones, for `timeout` (`None`: never expires).
    pub const fn new(timeout: Option<Duration>) -> Self {
        SetLockOptions {
            timeout,
            fail: false,
            renew: true,
            create: true,
        }
    }

    /// All or nothing: fail at the first name already held, keeping nothing.
    pub const fn fail(mut self) -> Self {
        self.fail = true;
        self
    }

    /// Do not renew names that are already held.
    pub const fn no_renew(mut self) -> Self {
        self.renew = false;
        self
    }

    /// Do not create names that are free: only renew held ones.
    pub const fn only_renew(mut self) -> Self {
        self.create = false;
        self
    }

    /// How long created and renewed locks last; `None`: never expire.
    pub const fn timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Whether a held name aborts the call.
    pub const fn fails(&self) -> bool {
        self.fail
    }

    /// Whether held names are renewed.
    pub const fn renews(&self) -> bool {
        self.renew
    }

    /// Whether free names are locked.
    pub const fn creates(&self) -> bool {
        self.create
    }
}
