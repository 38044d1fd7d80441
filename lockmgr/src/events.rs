//! The `tracing` events of the lock path, in one place so that their names, levels and
//! fields stay the same everywhere.
//!
//! | event | level | fields |
//! |---|---|---|
//! | `lockmgr: acquired` | debug | `name`, `fence`, `expires`, `attempts`, `waited_ms` |
//! | `lockmgr: waiting` | debug | `name`, `holder`, `holder_pid`, `wait_ms` |
//! | `lockmgr: not acquired` | debug | `name`, `holder`, `holder_pid`, `attempts`, `waited_ms` |
//! | `lockmgr: released` | debug | `name`, `fence`, `released`, `held_ms` |
//! | `lockmgr: renewed` | debug | `name`, `fence`, `expires` |
//! | `lockmgr: lock lost` | warn | `name`, `fence`, `reason` |
//! | `lockmgr: release failed` | warn | `name`, `fence`, `error` |
//! | `lockmgr: keep-alive renewal failed` | warn | `name`, `fence`, `error` |
//! | `lockmgr: retrying on a new connection` | debug | `op`, `error` |
//! | `lockmgr: timed-out acquisition not released` | warn | `name`, `error` |
//! | `lockmgr: operation failed` | debug | `op`, `name`, `error` |
//! | `lockmgr: skipped` | debug | `name`, `function`, `holder`, `holder_pid`, `reason` |
//!
//! Errors returned to the caller are logged at debug (the caller decides what they
//! mean); failures nobody else can see — a release in a guard's drop, a background
//! renewal — and lost locks are logged at warn.

use std::time::Duration;

use crate::error::Error;
use crate::model::Lock;

/// `expires` as logged: RFC 3339 (database clock), or `never`.
fn expires(lock: &Lock) -> String {
    lock.locked_until.map_or_else(
        || "never".to_string(),
        |t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    )
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// A lock was taken, after `attempts` tries spread over `waited`.
pub(crate) fn acquired(lock: &Lock, attempts: u32, waited: Duration) {
    tracing::debug!(
        name = %lock.name,
        fence = lock.fence,
        expires = %expires(lock),
        attempts,
        waited_ms = millis(waited),
        "lockmgr: acquired"
    );
}

/// The first try of a waiting acquisition found `holder` in the way.
pub(crate) fn waiting(holder: &Lock, wait: Option<Duration>) {
    tracing::debug!(
        name = %holder.name,
        holder = %holder.locked_by,
        holder_pid = holder.lock_process,
        wait_ms = wait.map(millis),
        "lockmgr: waiting"
    );
}

/// An acquisition gave up: `holder` still had the lock.
pub(crate) fn not_acquired(holder: &Lock, attempts: u32, waited: Duration) {
    tracing::debug!(
        name = %holder.name,
        holder = %holder.locked_by,
        holder_pid = holder.lock_process,
        attempts,
        waited_ms = millis(waited),
        "lockmgr: not acquired"
    );
}

/// A release of `name` (of the acquisition `lock`, when owner-checked) ran; whether
/// a row went away (or was kept for `min_hold`).
pub(crate) fn released(name: &str, lock: Option<&Lock>, released: bool) {
    let held_ms = lock.and_then(|lock| {
        (lock.database_now() - lock.created_at)
            .to_std()
            .ok()
            .map(millis)
    });
    tracing::debug!(
        name = %name,
        fence = lock.map(|lock| lock.fence),
        released,
        held_ms,
        "lockmgr: released"
    );
}

/// A lock's expiry was extended.
pub(crate) fn renewed(lock: &Lock) {
    tracing::debug!(
        name = %lock.name,
        fence = lock.fence,
        expires = %expires(lock),
        "lockmgr: renewed"
    );
}

/// A held lock turned out to be gone or someone else's.
pub(crate) fn lost(lock: &Lock, reason: &'static str) {
    tracing::warn!(
        name = %lock.name,
        fence = lock.fence,
        reason,
        "lockmgr: lock lost"
    );
}

/// Releasing `lock` failed where the error cannot be returned (or is reported once).
pub(crate) fn release_failed(lock: &Lock, err: &Error) {
    tracing::warn!(
        name = %lock.name,
        fence = lock.fence,
        error = %err,
        "lockmgr: release failed"
    );
}

/// A background renewal of `lock` failed; it will be tried again.
pub(crate) fn keepalive_failed(lock: &Lock, err: &Error) {
    tracing::warn!(
        name = %lock.name,
        fence = lock.fence,
        error = %err,
        "lockmgr: keep-alive renewal failed"
    );
}

/// `op` lost its connection (or got no answer in time): it is tried again on a new one.
pub(crate) fn retrying(op: &'static str, err: &Error) {
    tracing::debug!(op, error = %err, "lockmgr: retrying on a new connection");
}

/// An acquisition of `name` timed out, and releasing whatever it may have taken
/// failed too: the row (if any) stays until it expires.
pub(crate) fn abandoned_not_released(name: &str, err: &dyn std::fmt::Display) {
    tracing::warn!(name = %name, error = %err, "lockmgr: timed-out acquisition not released");
}

/// `op` on `name` failed with a database or connection error, returned to the caller.
/// Lock outcomes (`Locked`, `LockNotFound`, …) are not failures and are not logged here.
pub(crate) fn failed<T>(
    op: &'static str,
    name: &str,
    result: crate::Result<T>,
) -> crate::Result<T> {
    if let Err(
        err @ (Error::Connection { .. }
        | Error::Database(_)
        | Error::Migration { .. }
        | Error::Timeout { .. }),
    ) = &result
    {
        tracing::debug!(op, name = %name, error = %err, "lockmgr: operation failed");
    }
    result
}

/// A `#[locked]` call with `on_locked = "skip"` (or `once_per`) did not run its body:
/// `locked` (an [`Error::Locked`]) says who holds what.
pub(crate) fn skipped(function: &str, locked: &Error, reason: &'static str) {
    if let Error::Locked {
        name,
        locked_by,
        lock_process,
        ..
    } = locked
    {
        tracing::debug!(
            name = %name,
            function,
            holder = %locked_by,
            holder_pid = *lock_process,
            reason,
            "lockmgr: skipped"
        );
    }
}
