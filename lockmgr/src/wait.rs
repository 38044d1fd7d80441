//! How a waiter spaces its retries: short, growing, jittered sleeps, never past the
//! moment the holder's lock expires or the wait runs out.

use std::time::{Duration, Instant};

use crate::database_url::Backend;
use crate::model::Lock;

const FIRST: Duration = Duration::from_millis(5);

/// The default longest sleep between tries. Where releases are announced across
/// processes (PostgreSQL `NOTIFY`), polling is only a fallback; elsewhere it is how a
/// waiter in another process learns of a release, so it stays short.
pub(crate) fn default_poll_cap(backend: Backend) -> Duration {
    match backend {
        Backend::Postgres => Duration::from_millis(250),
        _ => Duration::from_millis(30),
    }
}

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
