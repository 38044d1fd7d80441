//! Keep-alive: a background renewal of a guard's lock, and the signal that says the
//! lock was lost.

use std::future::Future;
use std::pin::Pin;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::thread::JoinHandle;
use std::time::Duration;

use crate::error::Error;
use crate::events;
use crate::model::Lock;
use crate::options::RenewOptions;
use crate::store::LockStore;

/// Says whether a guard's lock was lost while keep-alive renewed it: it was found gone
/// or owned by someone else (released by an admin, or expired and taken over during an
/// outage). Cheap to clone; every clone sees the same signal.
///
/// A job can poll it between steps ([`is_lost`](LostSignal::is_lost)), block on it
/// ([`wait_timeout`](LostSignal::wait_timeout)), or `.await` it
/// ([`lost`](LostSignal::lost)) in a `select!` beside its work.
#[derive(Clone, Default)]
pub struct LostSignal {
    inner: Arc<LostState>,
}

#[derive(Default)]
struct LostState {
    lost: Mutex<(bool, Vec<Waker>)>,
    changed: Condvar,
}

impl std::fmt::Debug for LostSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LostSignal")
            .field("lost", &self.is_lost())
            .finish()
    }
}

impl LostSignal {
    fn state(&self) -> MutexGuard<'_, (bool, Vec<Waker>)> {
        self.inner.lost.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the lock was lost.
    pub fn is_lost(&self) -> bool {
        self.state().0
    }

    /// Block until the lock is lost or `timeout` passes; whether it was lost.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let state = self.state();
        let (state, _) = self
            .inner
            .changed
            .wait_timeout_while(state, timeout, |(lost, _)| !*lost)
            .unwrap_or_else(|p| p.into_inner());
        state.0
    }

    /// A future that completes when the lock is lost (never, if it is not).
    pub fn lost(&self) -> LostFuture {
        LostFuture {
            signal: self.clone(),
        }
    }

    pub(crate) fn set_lost(&self) {
        let wakers = {
            let mut state = self.state();
            state.0 = true;
            std::mem::take(&mut state.1)
        };
        self.inner.changed.notify_all();
        wakers.into_iter().for_each(Waker::wake);
    }
}

/// Completes when the lock is lost; see [`LostSignal::lost`].
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct LostFuture {
    signal: LostSignal,
}

impl Future for LostFuture {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.signal.state();
        if state.0 {
            return Poll::Ready(());
        }
        if !state.1.iter().any(|w| w.will_wake(cx.waker())) {
            state.1.push(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// The renewal thread of one guard. Dropping it stops the thread and waits for it, so
/// a renewal never outlives its guard.
pub(crate) struct KeepAlive {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    latest: Arc<Mutex<Lock>>,
}

impl KeepAlive {
    /// Renew `lock` (owner-checked) to `expires` from now, every third of `expires`.
    pub(crate) fn start(
        store: LockStore,
        lock: Lock,
        expires: Duration,
        signal: LostSignal,
    ) -> KeepAlive {
        let (stop, stopped) = mpsc::channel::<()>();
        let latest = Arc::new(Mutex::new(lock));
        let shared = Arc::clone(&latest);
        let every = (expires / 3).max(Duration::from_millis(10));
        let thread = std::thread::Builder::new()
            .name("lockmgr-keepalive".into())
            .spawn(move || renew_until_stopped(&store, &shared, expires, every, &stopped, &signal))
            .map_err(|err| tracing::warn!(error = %err, "lockmgr: cannot start keep-alive"))
            .ok();
        KeepAlive {
            stop: Some(stop),
            thread,
            latest,
        }
    }

    /// The lock as last renewed.
    pub(crate) fn latest(&self) -> Lock {
        self.latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        drop(self.stop.take()); // wakes the thread at once
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn renew_until_stopped(
    store: &LockStore,
    latest: &Mutex<Lock>,
    expires: Duration,
    every: Duration,
    stopped: &mpsc::Receiver<()>,
    signal: &LostSignal,
) {
    loop {
        match stopped.recv_timeout(every) {
            Err(RecvTimeoutError::Timeout) => {}
            Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
        }
        let current = latest.lock().unwrap_or_else(|p| p.into_inner()).clone();
        match store.renew_lock(&current, RenewOptions::new(Some(expires))) {
            // renew_lock logs the renewal ("lockmgr: renewed").
            Ok(renewed) => *latest.lock().unwrap_or_else(|p| p.into_inner()) = renewed,
            Err(Error::LockNotFound { .. }) => {
                events::lost(&current, "keep-alive found it gone or taken over");
                signal.set_lost();
                return;
            }
            Err(err) => {
                // The database may be unreachable for a moment: keep trying, but once
                // the last known expiry has passed the lock may be someone else's.
                events::keepalive_failed(&current, &err);
                if current.expired() {
                    events::lost(&current, "it expired while keep-alive renewals failed");
                    signal.set_lost();
                    return;
                }
            }
        }
    }
}
