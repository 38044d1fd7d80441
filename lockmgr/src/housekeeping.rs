//! What a store does on its own, off the lock path: removing expired rows now and
//! then, and keeping an estimate of the database clock for `once_per` ticks. A leaf:
//! the store hands it the work to schedule.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeDelta, Utc};

use crate::error::Result;

/// Rows deleted by one statement of a background clean.
pub(crate) const CLEAN_BATCH: i64 = 500;

/// Statements of one background clean, at most: 100,000 rows.
const CLEAN_BATCHES: usize = 200;

/// When a store next removes expired rows: checked on every acquisition (one atomic
/// load), acted on at most once per interval.
#[derive(Debug)]
pub(crate) struct Cleaner {
    every: Option<Duration>,
    /// The store's start; `next_due` counts milliseconds from it.
    epoch: Instant,
    next_due: AtomicU64,
    running: Arc<AtomicBool>,
}

impl Cleaner {
    /// A schedule that cleans `every` so often (`None`: never); the first clean is
    /// due at the first acquisition.
    pub(crate) fn new(every: Option<Duration>) -> Cleaner {
        Cleaner {
            every,
            epoch: Instant::now(),
            next_due: AtomicU64::new(0),
            running: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Whether a clean is due now; if so, the next one is scheduled and the caller
    /// must start this one.
    pub(crate) fn due(&self) -> bool {
        let Some(every) = self.every else {
            return false;
        };
        let now = u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        let due = self.next_due.load(Ordering::Relaxed);
        if now < due {
            return false;
        }
        let next = now.saturating_add(u64::try_from(every.as_millis()).unwrap_or(u64::MAX));
        // One caller wins the slot; the others go on.
        self.next_due
            .compare_exchange(due, next, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
            && !self.running.swap(true, Ordering::AcqRel)
    }

    /// The clean that [`due`](Cleaner::due) started is over.
    pub(crate) fn finished(&self) {
        self.running.store(false, Ordering::Release);
    }
}

/// Delete expired rows with `clean_batch` (at most the given number of rows per
/// call; how many went), until fewer than a batch are left (or the cap is reached);
/// how many went in all.
pub(crate) fn clean_batches(mut clean_batch: impl FnMut(i64) -> Result<usize>) -> Result<usize> {
    let mut total = 0;
    for _ in 0..CLEAN_BATCHES {
        let cleaned = clean_batch(CLEAN_BATCH)?;
        total += cleaned;
        if (cleaned as i64) < CLEAN_BATCH {
            break;
        }
        // Let acquisitions in between two batches (SQLite has one writer at a time).
        std::thread::sleep(Duration::from_millis(1));
    }
    Ok(total)
}

/// How far the database clock is from this host's, as last measured.
#[derive(Debug, Default)]
pub(crate) struct ClockOffset {
    measured: Mutex<Option<(TimeDelta, Instant)>>,
}

/// How long a measured offset is trusted.
const OFFSET_FRESH: Duration = Duration::from_secs(30);

impl ClockOffset {
    /// The database clock now: this host's clock plus the offset, measured anew with
    /// `read_db_now` (one query) when the last measure is older than 30 s.
    pub(crate) fn now(
        &self,
        read_db_now: impl FnOnce() -> Result<DateTime<Utc>>,
    ) -> Result<DateTime<Utc>> {
        let fresh = *self.measured.lock().unwrap_or_else(|p| p.into_inner());
        let offset = match fresh {
            Some((offset, at)) if at.elapsed() < OFFSET_FRESH => offset,
            _ => {
                let sent = Instant::now();
                let local_sent = Utc::now();
                let db_now = read_db_now()?;
                let round_trip = sent.elapsed();
                // The database read its clock about half way through the round trip.
                let local_then =
                    local_sent + TimeDelta::from_std(round_trip / 2).unwrap_or(TimeDelta::zero());
                let offset = db_now - local_then;
                *self.measured.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some((offset, Instant::now()));
                offset
            }
        };
        Ok(Utc::now() + offset)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clean_is_due_once_per_interval() {
        let cleaner = Cleaner::new(Some(Duration::from_secs(3600)));
        assert!(cleaner.due(), "the first acquisition starts one");
        cleaner.running.store(false, Ordering::Release);
        assert!(!cleaner.due(), "not again within the interval");
        let cleaner = Cleaner::new(Some(Duration::from_millis(200)));
        assert!(cleaner.due());
        cleaner.running.store(false, Ordering::Release);
        std::thread::sleep(Duration::from_millis(250));
        assert!(cleaner.due(), "again once the interval is over");
        assert!(!Cleaner::new(None).due(), "never when turned off");
    }

    #[test]
    fn a_running_clean_is_not_started_twice() {
        let cleaner = Cleaner::new(Some(Duration::from_millis(1)));
        assert!(cleaner.due());
        std::thread::sleep(Duration::from_millis(5));
        assert!(!cleaner.due(), "the first one is still running");
    }

    #[test]
    fn the_offset_is_measured_once_and_reused() {
        let clock = ClockOffset::default();
        let ahead = TimeDelta::seconds(3);
        let mut reads = 0;
        let now = clock
            .now(|| {
                reads += 1;
                Ok(Utc::now() + ahead)
            })
            .unwrap();
        let drift = (now - Utc::now() - ahead).num_milliseconds().abs();
        // Off by the time between the read and the look at the clock here: small,
        // but this thread may be descheduled in between on a loaded machine.
        assert!(drift < 1000, "{drift} ms");
        clock.now(|| panic!("measured again")).unwrap();
        assert_eq!(reads, 1);
    }
}
