//! A warning for a blocking `#[locked(wait = …)]` call made on an async runtime's
//! thread, where its waiting would stall every other task of that thread.
//!
//! Detected with lockmgr's `tokio` feature: a sync call made while tokio is polling a
//! task (or a `block_on` future) runs under tokio's cooperative budget, which code on
//! the blocking pool (`spawn_blocking`) does not. Without the feature nothing is
//! detected.

use crate::registry::DeclaredLock;

/// Warn, once per function, when `decl`'s sync call is about to wait on a thread that
/// is running async tasks.
pub(crate) fn warn_if_blocking_a_runtime(decl: &'static DeclaredLock) {
    #[cfg(feature = "tokio")]
    if polling_a_tokio_task() && first_time(decl) {
        tracing::warn!(
            function = decl.function,
            "lockmgr: the sync #[locked(wait = …)] function {} was called on an async \
             runtime's thread: while it waits for its lock, every other task of that \
             thread stalls. Make it an `async fn` (the wait then sleeps asynchronously), \
             or call it through tokio::task::spawn_blocking",
            decl.function
        );
    }
    #[cfg(not(feature = "tokio"))]
    let _ = decl;
}

/// Whether the current thread is inside tokio's poll of a task or `block_on` future:
/// there, tokio's cooperative budget is limited; on its blocking pool and outside tokio
/// it is not. The probe spends the budget down to zero and gives every unit back.
#[cfg(feature = "tokio")]
pub(crate) fn polling_a_tokio_task() -> bool {
    use std::task::{Context, Poll, Waker};
    use tokio::task::coop;

    if tokio::runtime::Handle::try_current().is_err() {
        return false;
    }
    let mut cx = Context::from_waker(Waker::noop());
    let mut taken = Vec::new();
    let mut limited = false;
    // The budget is a u8 (128 per poll): an unlimited one never runs out.
    for _ in 0..=u8::MAX {
        match coop::poll_proceed(&mut cx) {
            Poll::Ready(unit) => {
                taken.push(unit);
                if !coop::has_budget_remaining() {
                    limited = true;
                    break;
                }
            }
            Poll::Pending => {
                limited = true;
                break;
            }
        }
    }
    // Each unit restores the budget it found: give them back newest first.
    while let Some(unit) = taken.pop() {
        drop(unit);
    }
    limited
}

/// Whether `decl` has not been warned about yet (and now has).
#[cfg(feature = "tokio")]
fn first_time(decl: &'static DeclaredLock) -> bool {
    use std::sync::Mutex;
    static WARNED: Mutex<Vec<(&str, u32)>> = Mutex::new(Vec::new());
    let mut warned = WARNED.lock().unwrap_or_else(|p| p.into_inner());
    let key = (decl.function, decl.line);
    if warned.contains(&key) {
        return false;
    }
    warned.push(key);
    true
}

#[cfg(all(test, feature = "tokio"))]
mod tests {
    use super::*;

    #[test]
    fn only_a_polled_task_counts() {
        assert!(!polling_a_tokio_task(), "outside tokio");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        runtime.block_on(async {
            assert!(polling_a_tokio_task(), "a block_on future");
            assert!(tokio::spawn(async { polling_a_tokio_task() })
                .await
                .unwrap());
            let pool = tokio::task::spawn_blocking(polling_a_tokio_task);
            assert!(!pool.await.unwrap(), "the blocking pool");
            // The probe gave its budget back: a long loop of polls still goes on.
            assert!(coop_still_has_budget());
        });
    }

    fn coop_still_has_budget() -> bool {
        tokio::task::coop::has_budget_remaining()
    }
}
