//! The default store and the module-level functions that use it.
//!
//! They mirror django-lockmgr's module functions: `lockmgr::get_lock("job", …)` works
//! on the store named by the environment (see [`LockStore::from_env`]), opened on first
//! use, unless [`set_default_store`] chose another.

use std::sync::RwLock;
use std::time::Duration;

use crate::acquire::builder::LockMgr;
use crate::error::Result;
use crate::model::Lock;
use crate::options::{RenewOptions, SetLockOptions};
use crate::set_lock::SetLockReport;
use crate::store::{LockRef, LockStore};

static DEFAULT_STORE: RwLock<Option<LockStore>> = RwLock::new(None);

/// The default store: the one given to [`set_default_store`], else the one named by the
/// environment ([`LockStore::from_env`]), opened on first use and kept.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let url = dir.path().join("l.sqlite3").to_str().unwrap().to_string();
/// # lockmgr::set_default_store(lockmgr::LockStore::open(&url).unwrap());
/// let lock = lockmgr::get_lock("cleanup", None)?;
/// assert!(lockmgr::is_locked("cleanup")?);
/// lockmgr::unlock(&lock)?;
/// # Ok::<(), lockmgr::Error>(())
/// ```
pub fn default_store() -> Result<LockStore> {
    if let Some(store) = DEFAULT_STORE
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .as_ref()
    {
        return Ok(store.clone());
    }
    let mut slot = DEFAULT_STORE.write().unwrap_or_else(|e| e.into_inner());
    if let Some(store) = slot.as_ref() {
        return Ok(store.clone());
    }
    let store = LockStore::from_env()?;
    *slot = Some(store.clone());
    Ok(store)
}

/// Make `store` the default store; the previous default, if one was set or opened.
pub fn set_default_store(store: LockStore) -> Option<LockStore> {
    DEFAULT_STORE
        .write()
        .unwrap_or_else(|e| e.into_inner())
        .replace(store)
}

/// [`LockStore::get_lock`] on the default store.
pub fn get_lock(name: &str, expires: Option<Duration>) -> Result<Lock> {
    default_store()?.get_lock(name, expires)
}

/// [`LockStore::unlock`] on the default store.
pub fn unlock<'a>(target: impl Into<LockRef<'a>>) -> Result<bool> {
    default_store()?.unlock(target)
}

/// [`LockStore::is_locked`] on the default store.
pub fn is_locked(name: &str) -> Result<bool> {
    default_store()?.is_locked(name)
}

/// [`LockStore::list_locks`] on the default store.
pub fn list_locks() -> Result<Vec<Lock>> {
    default_store()?.list_locks()
}

/// [`LockStore::clean_locks`] on the default store.
pub fn clean_locks() -> Result<usize> {
    default_store()?.clean_locks()
}

/// [`LockStore::reset_locks`] on the default store.
pub fn reset_locks() -> Result<usize> {
    default_store()?.reset_locks()
}

/// [`LockStore::renew_lock`] on the default store.
pub fn renew_lock<'a>(lock: impl Into<LockRef<'a>>, options: RenewOptions) -> Result<Lock> {
    default_store()?.renew_lock(lock, options)
}

/// [`LockStore::set_lock`] on the default store.
pub fn set_lock<I, S>(names: I, options: SetLockOptions) -> Result<SetLockReport>
where
    I: IntoIterator<Item = S>,
    S: AsRef<str>,
{
    default_store()?.set_lock(names, options)
}

/// [`LockStore::lock_mgr`] on the default store.
pub fn lock_mgr(name: impl Into<String>) -> Result<LockMgr> {
    Ok(default_store()?.lock_mgr(name))
}
