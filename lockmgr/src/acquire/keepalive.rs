//! Keep-alive: a background renewal of a guard's lock, and the signal that says the
//! lock was lost.
//!
//! Every kept-alive guard of the process is renewed by one scheduler (a timer thread
//! and a few workers, see `scheduler.rs`), not by a thread of its own: a process
//! holding a thousand kept-alive guards runs the same handful of threads as one
//! holding one.

use std::future::Future;
use std::hash::{Hash, Hasher};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::acquire::scheduler::{Job, JobId, Scheduler};
use crate::error::Error;
use crate::events;
use crate::model::Lock;
use crate::options::RenewOptions;
use crate::store::LockStore;

/// Says whether a guard's lock may no longer be trusted. It fires once, and stays
/// fired, when:
///
/// - the lock's lease ran out: its deadline, on the local monotonic clock, is the
///   moment the acquiring (or last successful renewing) statement was *sent*, plus
///   the lease, minus a safety margin — so it fires before any other process can
///   take the lock, even if the database cannot be reached to say so (see the
///   README, "The lease model");
/// - keep-alive found the lock gone or owned by someone else (released by an
///   admin, or expired and taken over during an outage).
///
/// A lock that never expires has no deadline. Cheap to clone; every clone sees the
/// same signal.
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
    state: Mutex<Lost>,
    changed: Condvar,
}

#[derive(Default)]
struct Lost {
    lost: bool,
    /// The lease deadline; `None`: the lock never expires.
    deadline: Option<Instant>,
    /// The lock, to name it when its lease runs out.
    lock: Option<Lock>,
    wakers: Vec<Waker>,
}

impl Lost {
    /// Whether the signal has fired; fires it if the deadline has passed.
    fn check(&mut self) -> bool {
        if !self.lost && self.deadline.is_some_and(|d| Instant::now() >= d) {
            self.lost = true;
            if let Some(lock) = &self.lock {
                events::lost(lock, "its lease ran out without a renewal");
            }
        }
        self.lost
    }
}

impl std::fmt::Debug for LostSignal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LostSignal")
            .field("lost", &self.is_lost())
            .finish()
    }
}

impl LostSignal {
    /// The signal of a guard that holds `lock`, just acquired.
    pub(crate) fn for_lock(lock: &Lock) -> LostSignal {
        let signal = LostSignal::default();
        {
            let mut state = signal.state();
            state.deadline = lock.lease_deadline();
            state.lock = Some(lock.clone());
        }
        signal
    }

    fn state(&self) -> MutexGuard<'_, Lost> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether the lock was lost (or its lease ran out).
    pub fn is_lost(&self) -> bool {
        self.state().check()
    }

    /// Block until the lock is lost or `timeout` passes; whether it was lost.
    pub fn wait_timeout(&self, timeout: Duration) -> bool {
        let end = Instant::now().checked_add(timeout);
        let mut state = self.state();
        loop {
            if state.check() {
                return true;
            }
            let now = Instant::now();
            // Wake at the lease deadline too, to fire the signal then.
            let until = match (end, state.deadline) {
                (Some(end), Some(deadline)) => end.min(deadline),
                (Some(end), None) => end,
                (None, Some(deadline)) => deadline,
                (None, None) => now + Duration::from_secs(3600),
            };
            if end.is_some_and(|end| now >= end) {
                return false;
            }
            state = self
                .inner
                .changed
                .wait_timeout(state, until.saturating_duration_since(now))
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// A future that completes when the lock is lost (never, if it is not).
    pub fn lost(&self) -> LostFuture {
        LostFuture {
            signal: self.clone(),
            timer: None,
        }
    }

    pub(crate) fn set_lost(&self) {
        let wakers = {
            let mut state = self.state();
            state.lost = true;
            std::mem::take(&mut state.wakers)
        };
        self.inner.changed.notify_all();
        wakers.into_iter().for_each(Waker::wake);
    }

    /// A renewal sent in time was granted: the lease now ends at `deadline`. False
    /// (and nothing changes) if the signal has already fired: a lock once lost stays
    /// lost.
    pub(crate) fn extend(&self, deadline: Option<Instant>) -> bool {
        let mut state = self.state();
        if state.check() {
            return false;
        }
        state.deadline = deadline;
        true
    }

    /// The lease deadline, if the lock expires.
    fn deadline(&self) -> Option<Instant> {
        self.state().deadline
    }
}

/// Completes when the lock is lost; see [`LostSignal::lost`].
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct LostFuture {
    signal: LostSignal,
    /// Wakes the task at the lease deadline (as it was when last polled).
    timer: Option<(Instant, futures_timer::Delay)>,
}

impl Future for LostFuture {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        {
            let mut state = this.signal.state();
            if state.check() {
                return Poll::Ready(());
            }
            if !state.wakers.iter().any(|w| w.will_wake(cx.waker())) {
                state.wakers.push(cx.waker().clone());
            }
        }
        if let Some(deadline) = this.signal.deadline() {
            if this.timer.as_ref().is_none_or(|(at, _)| *at != deadline) {
                this.timer = Some((deadline, crate::async_support::sleep_until(deadline)));
            }
            if let Some((_, sleep)) = &mut this.timer {
                if Pin::new(sleep).poll(cx).is_ready() && this.signal.is_lost() {
                    return Poll::Ready(());
                }
            }
        }
        Poll::Pending
    }
}

/// The shortest expiry a kept-alive lock gets: 3 s. A guard asking for less with
/// keep-alive on is given this much (see [`LockMgr::keepalive`]): renewals come every
/// third of the expiry, so this bounds their rate (one a second per guard), and leaves
/// a renewal about 1.7 s to get through before the holder's lease deadline.
///
/// [`LockMgr::keepalive`]: crate::LockMgr::keepalive
pub const MIN_KEEPALIVE_EXPIRES: Duration = Duration::from_secs(3);

/// The keep-alive of one guard: its renewals, timed by the process's one
/// [`Scheduler`] and run on its few workers (no thread of its own). Dropping it stops
/// the renewals at once and never waits: a renewal under way ends on its worker, and
/// whatever it found is ignored (it is owner-checked, so it cannot touch a lock after
/// the guard's release, nor anyone else's lock). The guard's drop never waits for a
/// renewal stuck on a dead link.
pub(crate) struct KeepAlive {
    renewal: Arc<Renewal>,
    job: JobId,
}

/// What the guard and its renewals share.
struct Renewal {
    store: LockStore,
    expires: Duration,
    every: Duration,
    latest: Mutex<Lock>,
    signal: LostSignal,
    stopped: AtomicBool,
}

impl KeepAlive {
    /// Renew `lock` (owner-checked) to `expires` from now, every third of `expires`.
    pub(crate) fn start(
        store: LockStore,
        lock: Lock,
        expires: Duration,
        signal: LostSignal,
    ) -> KeepAlive {
        // Renewals of one database share a few workers; other databases' are not
        // held up by it.
        let group = {
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            store.url().hash(&mut hasher);
            hasher.finish()
        };
        let every = (expires / 3).max(Duration::from_millis(10));
        let renewal = Arc::new(Renewal {
            store,
            expires,
            every,
            latest: Mutex::new(lock),
            signal,
            stopped: AtomicBool::new(false),
        });
        let job = Scheduler::global().schedule(
            Arc::clone(&renewal) as Arc<dyn Job>,
            group,
            Instant::now() + every,
        );
        KeepAlive { renewal, job }
    }

    /// The lock as last renewed.
    pub(crate) fn latest(&self) -> Lock {
        self.renewal.latest()
    }
}

impl Drop for KeepAlive {
    fn drop(&mut self) {
        self.renewal.stopped.store(true, Ordering::SeqCst);
        Scheduler::global().cancel(self.job);
    }
}

impl Renewal {
    fn latest(&self) -> Lock {
        self.latest
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    fn stopped(&self) -> bool {
        self.stopped.load(Ordering::SeqCst)
    }
}

impl Job for Renewal {
    /// One renewal; the next one comes a third of the expiry after it returns, until
    /// the guard stops it or the lock is lost.
    fn run(&self) -> Option<Instant> {
        if self.stopped() {
            return None;
        }
        let current = self.latest();
        let renewed = self
            .store
            .renew_lock(&current, RenewOptions::new(Some(self.expires)));
        if self.stopped() {
            return None; // released meanwhile: whatever the renewal found is moot
        }
        match renewed {
            // renew_lock logs the renewal ("lockmgr: renewed"). The lease is counted
            // from when the renewal was sent; one granted after the old lease ran out
            // does not bring the lock back.
            Ok(renewed) => {
                if !self.signal.extend(renewed.lease_deadline()) {
                    return None;
                }
                *self.latest.lock().unwrap_or_else(|p| p.into_inner()) = renewed;
            }
            Err(Error::LockNotFound { .. }) => {
                if !self.signal.is_lost() {
                    events::lost(&current, "keep-alive found it gone or taken over");
                    self.signal.set_lost();
                }
                return None;
            }
            Err(err) => {
                // The database may be unreachable for a moment: keep trying until the
                // lease runs out (the signal fires then, on its own).
                events::keepalive_failed(&current, &err);
                if self.signal.is_lost() {
                    return None;
                }
            }
        }
        Some(Instant::now() + self.every)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signal_with_deadline(after: Duration) -> LostSignal {
        let signal = LostSignal::default();
        signal.state().deadline = Some(Instant::now() + after);
        signal
    }

    #[test]
    fn the_signal_fires_at_the_lease_deadline_without_anyone_setting_it() {
        // Started before the deadline is set: it fires no sooner than 200 ms on.
        let started = Instant::now();
        let signal = signal_with_deadline(Duration::from_millis(200));
        assert!(!signal.is_lost());
        assert!(signal.wait_timeout(Duration::from_secs(30)));
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(200), "{took:?}");
        assert!(took < Duration::from_secs(10), "{took:?}");
        assert!(signal.is_lost());

        let signal = signal_with_deadline(Duration::from_millis(200));
        futures_lite::future::block_on(signal.lost());
        assert!(signal.is_lost());
    }

    #[test]
    fn a_renewal_moves_the_deadline_but_never_revives_a_lost_lock() {
        let signal = signal_with_deadline(Duration::from_secs(1));
        assert!(signal.extend(Some(Instant::now() + Duration::from_secs(30))));
        assert!(!signal.wait_timeout(Duration::from_millis(1500)));
        let signal = signal_with_deadline(Duration::ZERO);
        assert!(!signal.extend(Some(Instant::now() + Duration::from_secs(30))));
        assert!(signal.is_lost());
        // No deadline: a lock that never expires is never lost by time.
        let signal = LostSignal::default();
        assert!(!signal.wait_timeout(Duration::from_millis(50)));
    }
}
