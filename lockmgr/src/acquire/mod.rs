//! Acquisition: what it takes to hold a lock over time, above the store's one-shot
//! operations. Its modules import in this order (each only those before it):
//!
//! - [`scheduler`]: one timer thread and a few workers for the whole process;
//! - [`retry`]: how a waiter spaces its attempts;
//! - [`keepalive`]: renewing a held lock on the scheduler, and the lost signal;
//! - [`guard`]: [`LockGuard`], which holds locks and releases them on every way out;
//! - [`builder`]: [`LockMgr`], how an acquisition is asked for;
//! - [`ticks`]: `once_per` ticks, for the macro runtime.

pub(crate) mod builder;
pub(crate) mod guard;
pub(crate) mod keepalive;
pub(crate) mod retry;
pub(crate) mod scheduler;
pub(crate) mod ticks;

pub use builder::LockMgr;
pub use guard::LockGuard;
pub use keepalive::{LostFuture, LostSignal, MIN_KEEPALIVE_EXPIRES};
