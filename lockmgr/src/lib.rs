//! # lockmgr
//!
//! Named, expiring locks stored as rows of a database table, so that a cron job or a
//! worker runs at most once at a time across processes and hosts — with nothing to run
//! but the database you already have. A Rust port, and a stricter one, of Python's
//! django-lockmgr.
//!
//! - **SQLite** is the embedded default (the file `lockmgr.sqlite3`, or
//!   `LOCKMGR_DATABASE_URL` / `DATABASE_URL`): nothing to install, one host.
//! - **PostgreSQL** (`postgres://…`) is the shared store for many hosts.
//!
//! ```
//! use std::time::Duration;
//! use lockmgr::LockStore;
//!
//! # fn main() -> lockmgr::Result<()> {
//! # let dir = tempfile::tempdir().unwrap();
//! # let url = dir.path().join("locks.sqlite3").to_str().unwrap().to_string();
//! let store = LockStore::open(&url)?;               // or LockStore::from_env()?
//! {
//!     let guard = store
//!         .lock_mgr("job:42")
//!         .expires(Some(Duration::from_secs(60)))     // None: never expires
//!         .wait(Duration::from_secs(30))              // retry while someone holds it
//!         .acquire()?;
//!     println!("running with fencing token {}", guard.fence());
//! } // released here, also on panic
//! assert!(!store.is_locked("job:42")?);
//! # Ok(()) }
//! ```
//!
//! ## Guarantees
//!
//! - Acquiring is one atomic statement (an insert that also takes over an *expired*
//!   row): two processes never both hold a lock, and the loser always gets
//!   [`Error::Locked`] — never a raw unique-violation or "database is locked" error.
//! - Expiry is decided by the database clock inside the statement (PostgreSQL's
//!   `now()`; for SQLite, which has no server, the clock of the process running the
//!   statement).
//! - Every acquisition mints a private owner token: a holder whose lock expired and
//!   was taken by another can neither release nor renew the new holder's lock.
//! - Every acquisition gets a fencing token ([`Lock::fence`]) larger than every
//!   earlier one in the same store.
//! - A crashed holder's lock frees itself when it expires.

#![warn(missing_docs)]

mod builder;
mod conn;
mod database_url;
mod dialect;
mod error;
mod global;
mod guard;
mod migrate;
mod model;
mod name;
mod set_lock;
mod store;
mod wait;

pub use builder::{LockMgr, DEFAULT_EXPIRES};
pub use database_url::{
    mask_password, Backend, DATABASE_URL, DEFAULT_SQLITE_PATH, LOCKMGR_DATABASE_URL,
};
pub use error::{Error, Result};
pub use global::{
    clean_locks, default_store, get_lock, is_locked, list_locks, lock_mgr, renew_lock, reset_locks,
    set_default_store, set_lock, unlock,
};
pub use guard::{LockGuard, DEFAULT_RENEW};
pub use lockmgr_macros::locked;
pub use model::Lock;
pub use name::{validate_name, MAX_NAME_BYTES};
pub use set_lock::{SetLockAction, SetLockReport, SetLockStatus};
pub use store::{LockRef, LockStore, LockStoreBuilder};
