//! How a waiter spaces its retries: short, growing, jittered sleeps, never past the
//! moment the holder's lock expires or the wait runs out.

use std::time::{Duration, Instant};

use crate::error::Error;
use crate::events;
use crate::model::Lock;
use crate::store::LockStore;
use crate::wakeup::Ticket;

const FIRST: Duration = Duration::from_millis(5);

/// How long past the end of its wait the last attempt of a waiting acquisition may
/// take.
pub(crate) const ATTEMPT_GRACE: Duration = Duration::from_secs(1);

/// Waits longer than this are cut to it: a century.
const LONGEST_WAIT: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// The retry schedule of one wait.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
    cap: Duration,
}

impl Backoff {
    /// Sleeps grow from a few milliseconds up to `cap`.
    pub(crate) fn new(cap: Duration) -> Self {
        Backoff {
            next: FIRST.min(cap),
            cap,
        }
    }

    /// How long to sleep before the next try, given the holder seen by the last one and
    /// the end of the wait. `None`: the wait is over.
    pub(crate) fn delay(&mut self, holder: &Lock, deadline: Instant) -> Option<Duration> {
        let left = deadline.checked_duration_since(Instant::now())?;
        if left.is_zero() {
            return None;
        }
        let mut delay = jitter(self.next);
        self.next = (self.next * 3 / 2).min(self.cap);
        if let Some(expires_in) = holder.expires_in() {
            // Be there the moment the holder's lock runs out (plus a hair, so the
            // database sees it expired).
            delay = delay.min(expires_in + Duration::from_millis(1));
        }
        Some(delay.min(left))
    }
}

/// The state of one acquisition's retries, shared by the blocking loop
/// ([`LockMgr::acquire`](crate::LockMgr::acquire)) and the async one
/// ([`LockMgr::acquire_async`](crate::LockMgr::acquire_async)): each loop only attempts
/// and sleeps the way its context allows.
pub(crate) struct Retry {
    started: Instant,
    wait: Option<Duration>,
    deadline: Option<Instant>,
    backoff: Backoff,
    attempts: u32,
    /// Interest in releases of the lock, when waiting: taken before the first try
    /// and renewed before each next one, so a release between a failed try and the
    /// sleep still ends the sleep.
    ticket: Option<Ticket>,
}

impl Retry {
    /// The retries of one acquisition of `name` in `store`.
    pub(crate) fn for_lock(store: &LockStore, name: &str, wait: Option<Duration>) -> Self {
        let mut retry = Retry::new(wait, store.poll_cap());
        retry.ticket = wait.map(|_| store.wake_ticket(name));
        retry
    }

    /// Before the first attempt; `wait`: how long to keep trying (`None`: once);
    /// `poll_cap`: the longest sleep between tries.
    pub(crate) fn new(wait: Option<Duration>, poll_cap: Duration) -> Self {
        let started = Instant::now();
        Retry {
            started,
            wait,
            // A wait too long to add to an Instant (say `Duration::MAX`) waits for a
            // century, rather than panicking.
            deadline: wait.map(|wait| {
                started
                    .checked_add(wait.min(LONGEST_WAIT))
                    .unwrap_or(started)
            }),
            backoff: Backoff::new(poll_cap),
            attempts: 1,
            ticket: None,
        }
    }

    /// Sleep `delay` (from [`after_miss`](Retry::after_miss)), or less if the lock is
    /// released meanwhile; blocks the thread.
    pub(crate) fn sleep(&mut self, delay: Duration) {
        match &mut self.ticket {
            Some(ticket) => {
                ticket.wait(delay);
                ticket.renew();
            }
            None => std::thread::sleep(delay),
        }
    }

    /// [`sleep`](Retry::sleep) without blocking the executor's thread.
    pub(crate) async fn sleep_async(&mut self, delay: Duration) {
        match &mut self.ticket {
            Some(ticket) => {
                crate::async_support::sleep_until_released(ticket, delay).await;
                ticket.renew();
            }
            None => crate::async_support::sleep(delay).await,
        }
    }

    /// An attempt found `holder` in the way: how long to sleep before the next one, or
    /// [`Error::Locked`] (describing `holder`) when the wait is over.
    pub(crate) fn after_miss(&mut self, holder: &Lock) -> Result<Duration, Error> {
        let delay = self
            .deadline
            .and_then(|deadline| self.backoff.delay(holder, deadline));
        match delay {
            Some(delay) => {
                if self.attempts == 1 {
                    events::waiting(holder, self.wait);
                }
                self.attempts += 1;
                Ok(delay)
            }
            None => {
                events::not_acquired(holder, self.attempts, self.started.elapsed());
                Err(holder.locked_error())
            }
        }
    }

    /// When the next attempt must be over: a waiting acquisition answers within its
    /// wait plus [`ATTEMPT_GRACE`], even if the database stops answering; `None`
    /// without a wait (the store's own timeouts bound the one attempt).
    pub(crate) fn attempt_until(&self) -> Option<Instant> {
        self.deadline.and_then(|d| d.checked_add(ATTEMPT_GRACE))
    }

    /// An attempt took `lock`: log how it went.
    pub(crate) fn acquired(&self, lock: &Lock) {
        events::acquired(lock, self.attempts, self.started.elapsed());
    }
}

/// `d` scaled by a random factor in [0.75, 1.25), so waiters do not retry in step.
fn jitter(d: Duration) -> Duration {
    let mut byte = [0u8; 1];
    if getrandom::fill(&mut byte).is_err() {
        return d;
    }
    d.mul_f64(0.75 + f64::from(byte[0]) / 512.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const CAP: Duration = Duration::from_millis(30);

    /// A holder whose lock never expires, read just now.
    fn holder() -> Lock {
        let now = chrono::Utc::now();
        Lock {
            name: "held".into(),
            locked_by: "elsewhere".into(),
            lock_process: None,
            locked_until: None,
            created_at: now,
            updated_at: now,
            fence: 1,
            owner: "theirs".into(),
            read_at: (now, Instant::now()),
            sent_at: None,
        }
    }

    #[test]
    fn without_wait_the_first_miss_is_final() {
        let mut retry = Retry::new(None, CAP);
        let err = retry.after_miss(&holder()).unwrap_err();
        assert!(err.is_locked(), "{err}");
    }

    #[test]
    fn with_wait_misses_sleep_until_the_deadline() {
        // Whatever the machine's load does to each sleep, the misses go on until the
        // wait is over, never sleeping longer than the cap at a time.
        let wait = Duration::from_millis(300);
        let started = Instant::now();
        let mut retry = Retry::new(Some(wait), CAP);
        let mut sleeps = 0;
        while let Ok(delay) = retry.after_miss(&holder()) {
            assert!(delay <= CAP.mul_f64(1.25), "{delay:?}");
            std::thread::sleep(delay);
            sleeps += 1;
            assert!(sleeps < 10_000, "the wait never ended");
        }
        assert!(sleeps >= 1, "a wait sleeps at least once");
        assert!(
            started.elapsed() >= wait,
            "gave up early: {:?}",
            started.elapsed()
        );
    }

    #[test]
    fn an_endless_wait_does_not_overflow() {
        let mut retry = Retry::new(Some(Duration::MAX), CAP);
        assert!(retry.after_miss(&holder()).is_ok());
    }

    #[test]
    fn jitter_stays_in_range() {
        for _ in 0..100 {
            let d = jitter(Duration::from_millis(100));
            assert!(
                d >= Duration::from_millis(75) && d < Duration::from_millis(125),
                "{d:?}"
            );
        }
    }
}
