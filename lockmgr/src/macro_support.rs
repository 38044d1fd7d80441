//! The run-time half of `#[locked]`: what the generated code calls, through the hidden
//! `lockmgr::__private` module. Not a public API.
//!
//! Every `#[locked]` function declares one `const` [`DeclaredLock`] (built with
//! [`declare`] and its `const fn` setters), registers it with `inventory`, and passes
//! it to [`acquire`] / [`acquire_or_skip`] (or their async twins) at each call. A call
//! renders its name from the template's `format_args!`, validates it, and acquires
//! through [`LockMgr`] like any other guard, so the macro adds no lock logic of its own.
//! Every failure comes back as an [`Error`] for the generated code to return through
//! [`returned`]; nothing here panics on bad input.
//!
//! The return type of a `#[locked]` function is checked by trait, not by name:
//! [`LockedReturn`] (any `Result<T, E>` with `E: From<Error>`, aliases included) and,
//! with `on_locked = "skip"` or `once_per`, [`SkipReturn`] (`Result<(), E>` and
//! `Result<Option<T>, E>`).

use std::fmt;
use std::future::Future;
use std::time::Duration;

use crate::acquire::builder::LockMgr;
use crate::acquire::guard::LockGuard;
use crate::error::{Error, Result};
use crate::events;
use crate::name::validate_name;
use crate::registry::{DeclaredLock, OnLocked};
use crate::store::{AcquireSpec, LockStore};

/// The type of a `#[locked]` function's declaration.
pub type Declaration = DeclaredLock;

/// The declaration of one `#[locked]` function, with the attribute's defaults; the
/// generated code chains the setters of [`Declare`] on it, then `.done()`.
pub const fn declare(
    name: &'static str,
    function: &'static str,
    file: &'static str,
    line: u32,
) -> Declare {
    Declare(DeclaredLock::declare(name, function, file, line))
}

/// A declaration being built, in `const` context, by the generated code.
#[derive(Debug, Clone, Copy)]
pub struct Declare(DeclaredLock);

impl Declare {
    /// `expires = …` (zero: never).
    pub const fn expires(self, expires: Duration) -> Self {
        Declare(self.0.with_expires(expires))
    }

    /// `keepalive = false`: not renewed, and 600 s unless `expires` says otherwise.
    pub const fn without_keepalive(self) -> Self {
        Declare(self.0.without_keepalive())
    }

    /// `wait = …`.
    pub const fn wait(self, wait: Duration) -> Self {
        Declare(self.0.with_wait(wait))
    }

    /// `min_hold = …`.
    pub const fn min_hold(self, min_hold: Duration) -> Self {
        Declare(self.0.with_min_hold(min_hold))
    }

    /// `once_per = …`.
    pub const fn once_per(self, once_per: Duration) -> Self {
        Declare(self.0.with_once_per(once_per))
    }

    /// `on_locked = "skip"`.
    pub const fn skip_when_locked(self) -> Self {
        Declare(self.0.skip_when_locked())
    }

    /// The template's literal text between its placeholders, as the macro parsed it.
    pub const fn literals(self, literals: &'static [&'static str]) -> Self {
        Declare(self.0.with_literals(literals))
    }

    /// The finished declaration.
    pub const fn done(self) -> DeclaredLock {
        self.0
    }
}

/// The longest fixed text a template may have: checked in `const` context by the code
/// `#[locked]` generates, so the limit has one home, [`MAX_NAME_BYTES`](crate::MAX_NAME_BYTES).
pub const fn check_fixed_text(len: usize) {
    assert!(
        len <= crate::name::MAX_NAME_BYTES,
        "lock name is too long: its fixed text is longer than a lock name may be (lockmgr::MAX_NAME_BYTES, 255 bytes)"
    );
}

/// A duration given as whole seconds (`expires = 60`).
pub const fn seconds(secs: u64) -> Duration {
    Duration::from_secs(secs)
}

/// A duration given with a unit (`"500ms"`), already checked by the macro.
pub const fn millis(ms: u64) -> Duration {
    Duration::from_millis(ms)
}

/// The store of a `#[locked]` function without `store = …`: the default store.
pub fn default_store() -> Result<LockStore> {
    crate::global::default_store()
}

/// The store of `store = EXPR`; the expression must give a `&LockStore`.
pub fn given_store(store: &LockStore) -> Result<LockStore> {
    Ok(store.clone())
}

/// The lock name of one call: the template rendered, then validated like any name.
pub fn render_name(name: fmt::Arguments<'_>) -> Result<String> {
    let name = match name.as_str() {
        Some(fixed) => fixed.to_owned(),
        None => fmt::format(name),
    };
    validate_name(&name)?;
    Ok(name)
}

/// The return types a `#[locked]` function may have: a `Result` whose error converts
/// from [`Error`], whatever it is called (`lockmgr::Result<T>`, `anyhow::Result<T>`,
/// `type JobResult = Result<(), MyError>`…).
#[diagnostic::on_unimplemented(
    message = "#[locked] functions must return `Result<T, E>` with `E: From<lockmgr::Error>`; `{Self}` is not such a type",
    label = "this return type cannot carry a `lockmgr::Error`"
)]
pub trait LockedReturn: Sized {
    /// The value returned when the lock cannot be had: `Err(E::from(err))`.
    fn lock_error(err: Error) -> Self;
}

impl<T, E: From<Error>> LockedReturn for std::result::Result<T, E> {
    fn lock_error(err: Error) -> Self {
        Err(E::from(err))
    }
}

/// The return types of a `#[locked]` function that may skip its body: `Result<(), E>`
/// (a skip returns `Ok(())`) and `Result<Option<T>, E>` (a skip returns `Ok(None)`).
#[diagnostic::on_unimplemented(
    message = "#[locked(on_locked = \"skip\")] and `once_per` need a return type of `Result<(), E>` or `Result<Option<T>, E>`; `{Self}` has no value meaning \"skipped\"",
    label = "a skipped call could not return this type"
)]
pub trait SkipReturn: LockedReturn {
    /// The value returned when the call is skipped.
    fn skipped() -> Self;
}

impl<E: From<Error>> SkipReturn for std::result::Result<(), E> {
    fn skipped() -> Self {
        Ok(())
    }
}

impl<T, E: From<Error>> SkipReturn for std::result::Result<Option<T>, E> {
    fn skipped() -> Self {
        Ok(None)
    }
}

/// `Err(E::from(err))`, typed by the function's return type.
pub fn returned<R: LockedReturn>(err: Error) -> R {
    R::lock_error(err)
}

/// The skipped value (`Ok(())` or `Ok(None)`), typed by the function's return type.
pub fn skipped<R: SkipReturn>() -> R {
    R::skipped()
}

/// What one call will try to take: with `once_per`, first the tick (its row's name and
/// expiry), then the run lock.
struct Call {
    mgr: LockMgr,
    tick: Option<(String, Duration)>,
}

fn prepare(
    store: Result<LockStore>,
    name: fmt::Arguments<'_>,
    decl: &'static DeclaredLock,
) -> Result<Call> {
    let store = store?;
    let name = render_name(name)?;
    let tick = match decl.once_per {
        Some(period) => Some(crate::acquire::ticks::tick_lock(&store, &name, period)?),
        None => None,
    };
    let mut mgr = store
        .lock_mgr(name)
        .expires(decl.expires)
        .keepalive(decl.keepalive);
    if let Some(wait) = decl.wait {
        mgr = mgr.wait(wait);
    }
    if let Some(min_hold) = decl.min_hold {
        mgr = mgr.hold_at_least(min_hold);
    }
    Ok(Call { mgr, tick })
}

/// Take the tick row `name` for `expires`: `false` when another call has it already.
/// The row is never released: it expires with its tick, so that no other call of the
/// same tick runs.
fn take_tick(
    store: &LockStore,
    name: &str,
    expires: Duration,
    decl: &'static DeclaredLock,
) -> Result<bool> {
    let taken = store.acquire_once(&AcquireSpec {
        name,
        expires: Some(expires),
        locked_by: None,
        lock_process: Some(i64::from(std::process::id())),
        waiting: false,
        until: None,
    })?;
    match taken {
        Ok(lock) => {
            events::acquired(&lock, 1, Duration::ZERO);
            Ok(true)
        }
        Err(holder) => {
            events::skipped(decl.function, &holder.locked_error(), "the tick was taken");
            Ok(false)
        }
    }
}

/// The outcome of the run lock's acquisition, as the declaration wants it.
fn settle(acquired: Result<LockGuard>, decl: &'static DeclaredLock) -> Result<Option<LockGuard>> {
    match acquired {
        Ok(guard) => Ok(Some(guard)),
        Err(err @ Error::Locked { .. }) if decl.on_locked == OnLocked::Skip => {
            let reason = if decl.once_per.is_some() {
                "the previous tick is still running"
            } else {
                "the lock was taken"
            };
            events::skipped(decl.function, &err, reason);
            Ok(None)
        }
        Err(err) => Err(err),
    }
}

/// Acquire the lock of one call of a `#[locked] fn` with `on_locked = "error"`.
pub fn acquire(
    store: Result<LockStore>,
    name: fmt::Arguments<'_>,
    decl: &'static DeclaredLock,
) -> Result<LockGuard> {
    let call = prepare(store, name, decl)?;
    if decl.wait.is_some() {
        crate::runtime_check::warn_if_blocking_a_runtime(decl);
    }
    call.mgr.acquire()
}

/// Acquire the lock of one call of a `#[locked] fn` with `on_locked = "skip"` or
/// `once_per`; `Ok(None)`: skip the body, the lock or the tick being taken.
pub fn acquire_or_skip(
    store: Result<LockStore>,
    name: fmt::Arguments<'_>,
    decl: &'static DeclaredLock,
) -> Result<Option<LockGuard>> {
    let call = prepare(store, name, decl)?;
    if decl.wait.is_some() {
        crate::runtime_check::warn_if_blocking_a_runtime(decl);
    }
    if let Some((tick, expires)) = &call.tick {
        if !take_tick(call.mgr.store(), tick, *expires, decl)? {
            return Ok(None);
        }
    }
    settle(call.mgr.acquire(), decl)
}

/// [`acquire`] for a `#[locked] async fn`. The name is rendered now; the returned
/// future borrows nothing, so the caller's future stays `Send` if it was.
pub fn acquire_async(
    store: Result<LockStore>,
    name: fmt::Arguments<'_>,
    decl: &'static DeclaredLock,
) -> impl Future<Output = Result<LockGuard>> + Send + 'static {
    let call = prepare(store, name, decl);
    async move { call?.mgr.acquire_async().await }
}

/// The normal way out of a `#[locked] async fn` (its body returned, `?` included):
/// release the guard on the blocking pool ([`LockGuard::unlock_async`]) instead of in
/// its `Drop`, so the executor's thread does not wait for the database. A failure is
/// logged, as a drop would. A cancelled or panicking call still releases through
/// `Drop`.
pub async fn unlock_async(mut guard: LockGuard) {
    let _ = guard.unlock_async().await;
}

/// [`acquire_or_skip`] for a `#[locked] async fn`.
pub fn acquire_or_skip_async(
    store: Result<LockStore>,
    name: fmt::Arguments<'_>,
    decl: &'static DeclaredLock,
) -> impl Future<Output = Result<Option<LockGuard>>> + Send + 'static {
    let call = prepare(store, name, decl);
    async move {
        let Call { mgr, tick } = call?;
        if let Some((tick, expires)) = tick {
            let store = mgr.store().clone();
            let taken =
                crate::async_support::run_blocking(move || take_tick(&store, &tick, expires, decl));
            if !taken.await?? {
                return Ok(None);
            }
        }
        settle(mgr.acquire_async().await, decl)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_support::temp_store as store;

    const PLAIN: DeclaredLock = declare("job:{id}", "m::job", "f.rs", 1)
        .expires(Duration::from_secs(60))
        .without_keepalive()
        .expires(Duration::from_secs(60))
        .done();
    const NEVER: DeclaredLock = declare("job:{id}", "m::job", "f.rs", 1)
        .expires(Duration::ZERO)
        .done();
    const WAITS: DeclaredLock = declare("busy", "m::busy", "f.rs", 1)
        .wait(Duration::from_secs(5))
        .done();
    const SKIPS: DeclaredLock = declare("busy", "m::busy", "f.rs", 1)
        .skip_when_locked()
        .done();
    const TICKS: DeclaredLock = declare("tick", "m::tick", "f.rs", 1)
        .once_per(Duration::from_secs(3600))
        .literals(&["tick"])
        .done();

    #[test]
    fn renders_and_validates_names() {
        let id = 42;
        assert_eq!(render_name(format_args!("job:{}", id)).unwrap(), "job:42");
        assert_eq!(render_name(format_args!("fixed")).unwrap(), "fixed");
        let long = "x".repeat(300);
        for bad in [
            render_name(format_args!("{}", "")),
            render_name(format_args!("a{}", long)),
            render_name(format_args!("a{}", "\n")),
        ] {
            assert!(matches!(bad, Err(Error::InvalidName { .. })), "{bad:?}");
        }
    }

    #[test]
    fn declarations_fill_in_the_job_defaults() {
        let job = declare("j", "m::j", "f.rs", 1).done();
        assert_eq!(
            (job.expires, job.keepalive, job.on_locked),
            (Some(crate::DEFAULT_JOB_LEASE), true, OnLocked::Error)
        );
        let plain = declare("j", "m::j", "f.rs", 1).without_keepalive().done();
        assert_eq!(
            (plain.expires, plain.keepalive),
            (Some(crate::DEFAULT_EXPIRES), false)
        );
        assert_eq!(
            (TICKS.on_locked, TICKS.once_per),
            (OnLocked::Skip, Some(Duration::from_secs(3600)))
        );
        assert_eq!(NEVER.expires, None);
    }

    #[test]
    fn acquires_with_the_given_settings() {
        let (_dir, store) = store();
        let guard = acquire(given_store(&store), format_args!("job:{}", 1), &NEVER).unwrap();
        assert_eq!(guard.name(), "job:1");
        assert_eq!(guard.main_lock().locked_until, None, "zero never expires");
        let err = acquire(given_store(&store), format_args!("job:1"), &PLAIN).unwrap_err();
        assert!(err.is_locked(), "{err}");
        drop(guard);
        let guard = acquire(given_store(&store), format_args!("job:1"), &PLAIN).unwrap();
        let left = guard.main_lock().expires_in().expect("60 s");
        assert!(
            left > Duration::from_secs(55) && left <= Duration::from_secs(60),
            "{left:?}"
        );
    }

    #[test]
    fn a_skipping_call_returns_none_and_an_erroring_one_the_holder() {
        let (_dir, store) = store();
        let _held = store.get_lock("busy", None).unwrap();
        assert!(
            acquire_or_skip(given_store(&store), format_args!("busy"), &SKIPS)
                .unwrap()
                .is_none()
        );
        let err = acquire(given_store(&store), format_args!("busy"), &PLAIN).unwrap_err();
        assert!(err.is_locked(), "{err}");
        let unit: std::result::Result<(), Error> = skipped();
        assert!(unit.is_ok());
        let none: std::result::Result<Option<u8>, Error> = skipped();
        assert_eq!(none.unwrap(), None);
    }

    #[test]
    fn one_call_per_tick() {
        let (_dir, store) = store();
        let first = acquire_or_skip(given_store(&store), format_args!("tick"), &TICKS).unwrap();
        let first = first.expect("the first call of the tick runs");
        drop(first);
        // Released, but the tick's row stays: the same tick does not run again.
        assert!(
            acquire_or_skip(given_store(&store), format_args!("tick"), &TICKS)
                .unwrap()
                .is_none()
        );
        let rows = store.list_locks().unwrap();
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert!(
            rows[0].name.starts_with("tick@") && rows[0].name.ends_with(":00Z"),
            "{rows:?}"
        );
        assert!(TICKS.matches(&rows[0].name));
    }

    #[test]
    fn a_store_error_is_returned_not_raised() {
        let err = acquire(
            Err(Error::InvalidName {
                name: "x".into(),
                reason: "test",
            }),
            format_args!("a"),
            &PLAIN,
        )
        .unwrap_err();
        assert!(matches!(err, Error::InvalidName { .. }));
    }

    #[test]
    fn async_acquire_waits_on_any_executor() {
        let (_dir, store) = store();
        let held = store
            .get_lock("busy", Some(Duration::from_millis(200)))
            .unwrap();
        let guard = futures_lite::future::block_on(acquire_async(
            given_store(&store),
            format_args!("busy"),
            &WAITS,
        ))
        .unwrap();
        // It waited: taken once the holder's lease was over, by the database's clock.
        let until = held.locked_until.unwrap();
        assert!(guard.main_lock().created_at >= until, "{until}");
        assert!(guard.fence() > held.fence);
        let skip = futures_lite::future::block_on(acquire_or_skip_async(
            given_store(&store),
            format_args!("busy"),
            &SKIPS,
        ))
        .unwrap();
        assert!(skip.is_none());
    }
}
