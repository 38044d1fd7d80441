//! `once_per` ticks: which tick a call belongs to, and the row that claims it.
//!
//! Tick `k` of a period `P` starts at `k × P` after the Unix epoch. A call belongs to
//! the tick whose start is *nearest* to the moment of the call, by the database clock
//! (see [`LockStore::database_now_estimate`]): a replica whose scheduler fires up to
//! `P/2` early or late (clock skew plus jitter) still names the tick it meant. The first
//! call of a tick takes the row `NAME@TICK-START` (e.g. `cron:digest@2026-11-30T10:18:00Z`),
//! which lives until two periods after the tick's start and is never released, so every
//! other call of the same tick, in any process, finds it taken and skips.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::error::Result;
use crate::name::validate_name;
use crate::store::LockStore;

/// The tick row of a call of `name` now: its name and its expiry (from now).
pub(crate) fn tick_lock(
    store: &LockStore,
    name: &str,
    period: Duration,
) -> Result<(String, Duration)> {
    let now = store.database_now_estimate()?;
    let tick = Tick::nearest(now, period);
    let tick_name = format!("{name}@{}", tick.label());
    validate_name(&tick_name)?;
    // Two periods after the tick's start: far past the last moment any replica (up to
    // half a period off) can still name this tick, whatever its clock.
    let until_us = tick
        .start_us
        .saturating_add(tick.period_us.saturating_mul(2));
    let left_us = until_us.saturating_sub(now.timestamp_micros()).max(1);
    Ok((tick_name, Duration::from_micros(left_us as u64)))
}

/// One tick of one period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Tick {
    /// Its start, in microseconds since the Unix epoch.
    pub(crate) start_us: i64,
    /// The period, in microseconds (at least 1).
    pub(crate) period_us: i64,
}

impl Tick {
    /// The tick whose start is nearest to `now` (a moment exactly between two ticks
    /// belongs to the later one).
    pub(crate) fn nearest(now: DateTime<Utc>, period: Duration) -> Tick {
        let period_us = i64::try_from(period.as_micros()).unwrap_or(i64::MAX).max(1);
        let now_us = now.timestamp_micros();
        let index = now_us.saturating_add(period_us / 2).div_euclid(period_us);
        Tick {
            start_us: index.saturating_mul(period_us),
            period_us,
        }
    }

    /// The tick's start as RFC 3339 in UTC, as precise as the period needs:
    /// `2026-11-30T10:18:00Z`, `…00.500Z` or `…00.000250Z`.
    pub(crate) fn label(&self) -> String {
        let start = DateTime::<Utc>::from_timestamp_micros(self.start_us)
            .unwrap_or(DateTime::<Utc>::MAX_UTC);
        let format = if self.period_us % 1_000_000 == 0 {
            chrono::SecondsFormat::Secs
        } else if self.period_us % 1_000 == 0 {
            chrono::SecondsFormat::Millis
        } else {
            chrono::SecondsFormat::Micros
        };
        start.to_rfc3339_opts(format, true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(us: i64) -> DateTime<Utc> {
        DateTime::<Utc>::from_timestamp_micros(us).unwrap()
    }

    const TWO_S: Duration = Duration::from_secs(2);

    #[test]
    fn a_call_belongs_to_the_nearest_tick() {
        let base = 1_800_000_000_000_000; // a multiple of 2 s
        for (offset_ms, tick) in [
            (0, 0),
            (999, 0),
            (-999, 0),
            (1_000, 1),
            (1_001, 1),
            (-1_001, -1),
        ] {
            let got = Tick::nearest(at(base + offset_ms * 1_000), TWO_S);
            assert_eq!(
                got.start_us,
                base + tick * 2_000_000,
                "offset {offset_ms} ms"
            );
        }
    }

    #[test]
    fn skew_under_half_a_period_maps_to_the_same_tick() {
        let base = 1_800_000_000_000_000;
        let fired: Vec<i64> = [-800, -300, 0, 250, 900]
            .iter()
            .map(|ms| Tick::nearest(at(base + ms * 1_000), TWO_S).start_us)
            .collect();
        assert!(fired.iter().all(|&t| t == base), "{fired:?}");
    }

    #[test]
    fn labels_are_as_precise_as_the_period() {
        let tick = Tick::nearest(at(1_800_000_000_400_000), TWO_S);
        assert_eq!(tick.label(), "2027-01-15T08:00:00Z");
        let tick = Tick::nearest(at(1_800_000_000_400_000), Duration::from_millis(500));
        assert_eq!(tick.label(), "2027-01-15T08:00:00.500Z");
        let tick = Tick::nearest(at(1_800_000_000_000_300), Duration::from_micros(250));
        assert_eq!(tick.label(), "2027-01-15T08:00:00.000250Z");
    }

    #[test]
    fn huge_and_tiny_periods_do_not_overflow() {
        let now = at(1_800_000_000_000_000);
        assert_eq!(Tick::nearest(now, Duration::MAX).start_us, 0);
        assert_eq!(Tick::nearest(now, Duration::ZERO).period_us, 1);
    }
}
