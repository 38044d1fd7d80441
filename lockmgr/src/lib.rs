//! # lockmgr
//!
//! Named, expiring locks stored as rows of a database table, so that a cron job or a
//! worker runs at most once at a time across processes and hosts — with nothing to run
//! but the database you already have. A Rust port, and a stricter one, of Python's
//! django-lockmgr.
//!
//! - **SQLite** is the embedded default (the file `lockmgr.sqlite3`, or
//!   `LOCKMGR_DATABASE_URL` / `DATABASE_URL`): nothing to install, one host.
//! - **PostgreSQL** (`postgres://…`) is the shared store for many hosts; behind a
//!   transaction-pooling proxy such as PgBouncer add `?pgbouncer=true` (see
//!   [`LockStoreBuilder::listen_url`] for prompt wake-ups there).
//! - **MySQL / MariaDB** (`mysql://…`, with the `mysql` cargo feature) is one too.
//!
//! The locks live in the table `lockmgr_lock` unless [`LockStoreBuilder::table`] names
//! another; lockmgr creates it on first use and keeps its own ledger of migrations.
//!
//! ## Quick start
//!
//! Most jobs only need the attribute: every call of a [`#[locked]`](locked) function
//! takes its lock (the name rendered from the parameters), runs the body, and releases
//! the lock on every way out — return, `?`, panic, or a dropped `async fn` future.
//!
//! ```
//! use lockmgr::locked;
//!
//! // At most one call per account id runs at a time, across processes and hosts;
//! // a second caller waits up to 30 s, then gets Err(lockmgr::Error::Locked { .. }).
//! #[locked(name = "sync-account:{id}", expires = 60, wait = 30)]
//! fn sync_account(id: u64) -> Result<u64, lockmgr::Error> {
//!     Ok(id)
//! }
//! # fn main() -> lockmgr::Result<()> {
//! # let dir = tempfile::tempdir().unwrap();
//! # lockmgr::set_default_store(lockmgr::LockStore::open(dir.path().join("l.sqlite3").to_str().unwrap())?);
//!
//! // Locks live in ./lockmgr.sqlite3 unless LOCKMGR_DATABASE_URL or DATABASE_URL
//! // names another database (postgres://… for many hosts).
//! assert_eq!(sync_account(42)?, 42);
//! // Every #[locked] function linked in is listed, for tools such as the CLI:
//! assert!(lockmgr::declared_locks().iter().any(|d| d.name == "sync-account:{id}"));
//! # Ok(()) }
//! ```
//!
//! When the lock is held elsewhere, the call returns `Err(E::from(Error::Locked { .. }))`
//! without running the body (or, with `on_locked = "skip"`, `Ok(())` / `Ok(None)`).
//! The attribute also takes `store`, `guard`, `keepalive`, `min_hold` and `once_per`
//! (one run per tick across replicas, for cron jobs); see [`locked`]. A `#[locked]`
//! job's lock is a 60 s lease renewed while the body runs ([`DEFAULT_JOB_LEASE`]), so a
//! crashed job is runnable again within a minute; `get_lock` and [`LockMgr`] default to
//! 600 s ([`DEFAULT_EXPIRES`]) and renew only when asked.
//!
//! ## By hand
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
//!     let mut guard = store
//!         .lock_mgr("job:42")
//!         .expires(Some(Duration::from_secs(60)))     // None: never expires
//!         .wait(Duration::from_secs(30))              // retry while someone holds it
//!         .acquire()?;
//!     guard.lock("mailer")?;                          // an extra lock, released with it
//!     println!("running with fencing token {}", guard.fence());
//! } // released here, also on panic
//! assert!(!store.is_locked("job:42")?);
//!
//! // One-shot, as django-lockmgr's get_lock / unlock:
//! let lock = store.get_lock("job:43", Some(Duration::from_secs(60)))?;
//! assert!(store.get_lock("job:43", None).unwrap_err().is_locked());
//! store.unlock(&lock)?;
//! # Ok(()) }
//! ```
//!
//! ## The main types
//!
//! - [`LockStore`]: a handle on the locks of one database (cheap to clone, shared
//!   between threads): [`get_lock`](LockStore::get_lock), [`unlock`](LockStore::unlock),
//!   [`renew_lock`](LockStore::renew_lock), [`set_lock`](LockStore::set_lock),
//!   [`list_locks`](LockStore::list_locks), … Opened with [`LockStore::open`],
//!   [`LockStore::from_env`] or [`LockStore::builder`].
//! - [`LockMgr`]: a guarded acquisition, configured step by step (expiry, wait,
//!   [keep-alive](LockMgr::keepalive), [hold at least](LockMgr::hold_at_least)); its
//!   [`acquire`](LockMgr::acquire) or [`acquire_async`](LockMgr::acquire_async) gives a
//!   [`LockGuard`], which releases its locks when dropped.
//! - [`Lock`]: one held lock (a row): name, holder, expiry by the database clock, and
//!   fencing token.
//! - [`Error`]: [`Error::Locked`] (held elsewhere, by whom, until when),
//!   [`Error::LockNotFound`], [`Error::LockFail`], [`Error::InvalidName`], and the
//!   database failures.
//! - The same operations on the default store, as module-level functions:
//!   [`get_lock`], [`unlock`], [`is_locked`], [`renew_lock`], [`set_lock`],
//!   [`list_locks`], [`clean_locks`], [`reset_locks`], [`lock_mgr`]; the default store
//!   is [`default_store`] (from the environment on first use) unless
//!   [`set_default_store`] chose one.
//! - [`declared_locks`]: every [`DeclaredLock`] (`#[locked]` function) linked into the
//!   binary.
//! - The `lockmgr` command line is its own crate, `lockmgr-cli` (library
//!   `lockmgr_cli`), which an application can embed as a subcommand of its own.
//!
//! ## Cargo features
//!
//! - `sqlite` (default): the SQLite backend; SQLite is bundled.
//! - `postgres` (default): the PostgreSQL backend; links libpq.
//! - `mysql`: the MySQL / MariaDB backend; links the MySQL client library.
//!
//! At least one backend is needed; with `default-features = false, features =
//! ["sqlite"]` nothing but SQLite is linked. A URL of a backend left out is refused
//! with [`Error::InvalidUrl`] when a store opens.
//!
//! - `tokio`: async acquisition ([`LockMgr::acquire_async`], `#[locked] async fn`
//!   with `wait`) and release ([`LockGuard::unlock_async`]) sleep with tokio's timer
//!   and run their database calls on tokio's blocking pool, and a guard dropped on a
//!   tokio task hands its release to that pool. Without it, async acquisition and
//!   release still never block the executor's thread (a `futures-timer` delay, the
//!   `blocking` crate's pool) and work on any executor; a dropped guard releases on
//!   the thread that drops it.
//!
//! ## Guarantees
//!
//! - Acquiring is one atomic statement (an insert that also takes over an *expired*
//!   row; on MySQL, which has no `RETURNING`, followed by a read of the row): two
//!   processes never both hold a lock, and the loser always gets [`Error::Locked`] —
//!   never a raw unique-violation, deadlock or "database is locked" error.
//! - Expiry is decided by the database clock inside the statement (PostgreSQL's
//!   `now()`, MySQL's `UTC_TIMESTAMP(6)`; for SQLite, which has no server, the clock
//!   of the process running the statement).
//! - Every acquisition mints a private owner token: a holder whose lock expired and
//!   was taken by another can neither release nor renew the new holder's lock.
//! - Every acquisition gets a fencing token ([`Lock::fence`]) larger than every
//!   earlier one in the same store.
//! - A crashed holder's lock frees itself when it expires, and each store removes
//!   expired rows on its own in the background ([`LockStoreBuilder::auto_clean`]).
//! - Every call to a database server is bounded in time
//!   ([`connect_timeout`](LockStoreBuilder::connect_timeout),
//!   [`statement_timeout`](LockStoreBuilder::statement_timeout), enforced on the
//!   client, so a silent network partition cannot hang a caller), and a release or
//!   renewal that meets a lost connection is retried on a new one.
//! - A guard's [lost signal](LostSignal) fires by its lease deadline, counted on the
//!   local monotonic clock from when the acquisition or last renewal was sent: before
//!   anyone else can take the lock, reachable database or not.
//! - No database call and no blocking wait of lockmgr's runs on a thread that polls
//!   futures: async acquisition and [`LockGuard::unlock_async`] run their statements
//!   on a blocking pool (`#[locked] async fn` awaits the release on its way out), and
//!   with the `tokio` feature a guard dropped on a tokio task hands its release to
//!   tokio's blocking pool.
//! - Keep-alive renewals of every guard of the process run on one scheduler (a timer
//!   thread and a few workers, at most four per database): the thread count does not
//!   grow with the number of kept-alive guards, and a drop never waits for a renewal.
//!   A kept-alive lock lasts at least [`MIN_KEEPALIVE_EXPIRES`] (3 s).
//!
//! ## Logging
//!
//! lockmgr emits [`tracing`](https://docs.rs/tracing) events under the target
//! `lockmgr`, with the lock `name` and `fence` as fields: `lockmgr: acquired` (with
//! `attempts` and `waited_ms`), `waiting`, `not acquired`, `released` (with `held_ms`)
//! and `renewed` at debug; `lock lost` (keep-alive or a renewal found the lock gone or
//! taken over, or a guard found it gone at release), `release failed` and `keep-alive
//! renewal failed` at warn. Database errors that are returned to the caller are also
//! logged, at debug (`operation failed`). With `tracing-subscriber`:
//! `tracing_subscriber::fmt().with_env_filter("lockmgr=debug").init()`.

#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    warn(clippy::expect_used, clippy::unwrap_used, clippy::panic)
)]

#[cfg(not(any(feature = "sqlite", feature = "postgres", feature = "mysql")))]
compile_error!(
    "lockmgr needs at least one backend: enable its `sqlite`, `postgres` or `mysql` feature"
);

mod acquire;
mod async_support;
mod backend;
mod database_url;
mod error;
mod events;
mod global;
mod housekeeping;
mod macro_support;
mod model;
mod name;
mod options;
mod registry;
mod runtime_check;
mod set_lock;
mod store;
#[cfg(test)]
mod test_support;
mod wakeup;

pub use acquire::{LockGuard, LockMgr, LostFuture, LostSignal, MIN_KEEPALIVE_EXPIRES};
pub use backend::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_STATEMENT_TIMEOUT, DEFAULT_TABLE};
pub use database_url::{
    mask_password, scrub_password, Backend, DATABASE_URL, DEFAULT_SQLITE_PATH,
    LOCKMGR_DATABASE_URL, LOCKMGR_LISTEN_URL, PGBOUNCER_PARAM,
};
pub use error::{DatabaseError, Error, Result};
pub use global::{
    clean_locks, default_store, get_lock, is_locked, list_locks, lock_mgr, renew_lock, reset_locks,
    set_default_store, set_lock, unlock,
};
pub use lockmgr_macros::locked;
pub use model::Lock;
pub use name::{validate_name, MAX_NAME_BYTES};
pub use options::{RenewOptions, SetLockOptions, DEFAULT_EXPIRES, DEFAULT_RENEW};
pub use registry::{declared_lock_for, declared_locks, DeclaredLock, OnLocked, DEFAULT_JOB_LEASE};
pub use set_lock::{SetLockAction, SetLockReport, SetLockStatus};
pub use store::{
    absolute_sqlite_path, url_from_env, LockRef, LockStore, LockStoreBuilder, DEFAULT_AUTO_CLEAN,
};

/// What the code generated by `#[locked]` uses. Not a public API: it may change in any
/// release.
#[doc(hidden)]
pub mod __private {
    pub use crate::macro_support::{
        acquire, acquire_async, acquire_or_skip, acquire_or_skip_async, check_fixed_text, declare,
        default_store, given_store, millis, render_name, returned, seconds, skipped, unlock_async,
        Declaration, Declare, LockedReturn, SkipReturn,
    };
    pub use inventory;
}
