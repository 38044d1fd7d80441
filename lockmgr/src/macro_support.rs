//! The run-time half of `#[locked]`: what the generated code calls, through the hidden
//! `lockmgr::__private` module. Not a public API.
//!
//! A guarded call renders its name from the template's `format_args!`, validates it,
//! and acquires through [`LockMgr`] like any other guard, so the macro adds no lock
//! logic of its own. Every failure comes back as an [`Error`] for the generated code to
//! return through `E::from`; nothing here panics on bad input.

use std::fmt;
use std::future::Future;
use std::time::Duration;

use crate::builder::LockMgr;
use crate::error::{Error, Result};
use crate::guard::LockGuard;
use crate::name::validate_name;
use crate::store::LockStore;

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

/// What one `#[locked]` function asks for, as written in its attribute.
#[derive(Debug, Clone, Copy)]
pub struct CallOptions {
    /// Seconds; 0: never expires.
    pub expires: u64,
    /// Seconds to wait for the lock; `None`: do not wait.
    pub wait: Option<u64>,
    /// Renew in the background while the body runs.
    pub keepalive: bool,
    /// Seconds to keep the lock at least after acquiring it.
    pub min_hold: Option<u64>,
}

/// The acquisition one call asks for.
fn lock_mgr(
    store: Result<LockStore>,
    name: fmt::Arguments<'_>,
    options: CallOptions,
) -> Result<LockMgr> {
    let store = store?;
    let name = render_name(name)?;
    let mut mgr = store
        .lock_mgr(name)
        .expires((options.expires > 0).then(|| Duration::from_secs(options.expires)))
        .keepalive(options.keepalive);
    if let Some(wait) = options.wait {
        mgr = mgr.wait(Duration::from_secs(wait));
    }
    if let Some(min_hold) = options.min_hold {
        mgr = mgr.hold_at_least(Duration::from_secs(min_hold));
    }
    Ok(mgr)
}

/// Acquire the lock of one call of a `#[locked] fn`.
pub fn acquire(
    store: Result<LockStore>,
    name: fmt::Arguments<'_>,
    options: CallOptions,
) -> Result<LockGuard> {
    lock_mgr(store, name, options)?.acquire()
}

/// Acquire the lock of one call of a `#[locked] async fn`. The name is rendered now;
/// the returned future borrows nothing, so the caller's future stays `Send` if it was.
pub fn acquire_async(
    store: Result<LockStore>,
    name: fmt::Arguments<'_>,
    options: CallOptions,
) -> impl Future<Output = Result<LockGuard, Error>> + Send + 'static {
    let mgr = lock_mgr(store, name, options);
    async move { mgr?.acquire_async().await }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(expires: u64, wait: Option<u64>) -> CallOptions {
        CallOptions {
            expires,
            wait,
            keepalive: false,
            min_hold: None,
        }
    }

    fn store() -> (tempfile::TempDir, LockStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = LockStore::open(dir.path().join("l.sqlite3").to_str().unwrap()).unwrap();
        (dir, store)
    }

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
    fn acquires_with_the_given_settings() {
        let (_dir, store) = store();
        let guard = acquire(
            given_store(&store),
            format_args!("job:{}", 1),
            opts(0, None),
        )
        .unwrap();
        assert_eq!(guard.name(), "job:1");
        assert_eq!(
            guard.main_lock().locked_until,
            None,
            "expires = 0 never expires"
        );
        let err = acquire(given_store(&store), format_args!("job:1"), opts(60, None)).unwrap_err();
        assert!(err.is_locked(), "{err}");
        drop(guard);
        let guard = acquire(
            given_store(&store),
            format_args!("job:1"),
            opts(60, Some(1)),
        )
        .unwrap();
        let left = guard
            .main_lock()
            .expires_in()
            .expect("expires = 60 expires");
        assert!(
            left > Duration::from_secs(55) && left <= Duration::from_secs(60),
            "{left:?}"
        );
    }

    #[test]
    fn a_store_error_is_returned_not_raised() {
        let err = acquire(
            Err(Error::InvalidName {
                name: "x".into(),
                reason: "test",
            }),
            format_args!("a"),
            opts(1, None),
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
        let started = std::time::Instant::now();
        let guard = crate::async_support::block_on(acquire_async(
            given_store(&store),
            format_args!("busy"),
            opts(60, Some(5)),
        ))
        .unwrap();
        assert!(
            started.elapsed() >= Duration::from_millis(150),
            "{:?}",
            started.elapsed()
        );
        assert!(guard.fence() > held.fence);
        let err = crate::async_support::block_on(acquire_async(
            given_store(&store),
            format_args!("busy"),
            opts(60, None),
        ))
        .unwrap_err();
        assert!(err.is_locked());
    }
}
