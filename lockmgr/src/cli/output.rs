//! How the CLI shows things: aligned tables, durations such as `in 4m 12s`, UTC times,
//! and the JSON documents of `--json`.

use std::io::{self, Write};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use crate::{DeclaredLock, Lock};

/// A table of text cells printed with aligned columns: a header row, then one row per
/// item, columns two spaces apart, no trailing blanks.
pub(crate) struct Table {
    headers: Vec<&'static str>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(headers: Vec<&'static str>) -> Table {
        Table {
            headers,
            rows: Vec::new(),
        }
    }

    pub(crate) fn push(&mut self, row: Vec<String>) {
        debug_assert_eq!(row.len(), self.headers.len());
        self.rows.push(row);
    }

    pub(crate) fn write(&self, out: &mut dyn Write) -> io::Result<()> {
        let width = |cell: &str| cell.chars().count();
        let mut widths: Vec<usize> = self.headers.iter().map(|h| width(h)).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(width(cell));
            }
        }
        let header: Vec<String> = self.headers.iter().map(|h| h.to_string()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, cell) in row.iter().enumerate() {
                if i > 0 {
                    line.push_str("  ");
                }
                line.push_str(cell);
                if i + 1 < row.len() {
                    line.extend(std::iter::repeat_n(' ', widths[i] - width(cell)));
                }
            }
            writeln!(out, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

/// A span of time in words: `4m 12s`, `1h`, `2d 3h 0m 5s` → `2d 3h 5s`; zero is `0s`.
pub(crate) fn span(secs: u64) -> String {
    if secs == 0 {
        return "0s".to_string();
    }
    let parts = [
        (secs / 86_400, "d"),
        (secs / 3_600 % 24, "h"),
        (secs / 60 % 60, "m"),
        (secs % 60, "s"),
    ];
    parts
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|(n, unit)| format!("{n}{unit}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// A configured duration in words, sub-second parts kept: `500ms`, `1m 30s`,
/// `2s 250ms`; `-` for none.
pub(crate) fn setting(d: Option<Duration>) -> String {
    let Some(d) = d else {
        return "-".to_string();
    };
    let millis = d.subsec_millis();
    match (d.as_secs(), millis) {
        (0, 0) => format!("{}µs", d.subsec_micros()),
        (0, ms) => format!("{ms}ms"),
        (secs, 0) => span(secs),
        (secs, ms) => format!("{} {ms}ms", span(secs)),
    }
}

/// A configured duration in seconds for JSON: a whole number when it is one (`60`),
/// else a fraction (`0.5`); `null` for none.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Seconds(Option<Duration>);

impl Serialize for Seconds {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            None => serializer.serialize_none(),
            Some(d) if d.subsec_nanos() == 0 => serializer.serialize_u64(d.as_secs()),
            Some(d) => serializer.serialize_f64(d.as_secs_f64()),
        }
    }
}

/// Whole seconds, rounded up: a lock with 0.3 s left has `1s` left, not `0s`.
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Time left before a lock expires, by the database clock: `in 4m 12s`, `never`, or
/// `expired` once its time is up.
pub(crate) fn remaining(lock: &Lock) -> String {
    match lock.expires_in() {
        None => "never".to_string(),
        Some(left) if left.is_zero() => "expired".to_string(),
        Some(left) => format!("in {}", span(ceil_secs(left))),
    }
}

/// A UTC time as the tables show it.
pub(crate) fn utc(time: DateTime<Utc>) -> String {
    time.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// When a lock expires, with the time left: `2025-01-31 12:00:00 UTC (in 4m 12s)`, or
/// `never`.
pub(crate) fn expiry(lock: &Lock) -> String {
    match lock.locked_until {
        None => "never".to_string(),
        Some(until) => format!("{} ({})", utc(until), remaining(lock)),
    }
}

/// The declaration a lock name comes from, as a table cell.
pub(crate) fn declared_cell(decl: Option<&DeclaredLock>) -> String {
    decl.map_or_else(String::new, |d| format!("{} ({})", d.name, d.function))
}

/// The table of locks `list-locks` and `reset-locks` print. The `DECLARED` column shows
/// which `#[locked]` template a row comes from; it is left out when no row has one.
pub(crate) fn lock_table(locks: &[Lock]) -> Table {
    let declared: Vec<Option<&'static DeclaredLock>> = locks
        .iter()
        .map(|lock| crate::declared_lock_for(&lock.name))
        .collect();
    let with_declared = declared.iter().any(Option::is_some);
    let mut headers = vec!["NAME", "LOCKED BY", "PID", "EXPIRES", "FENCE"];
    if with_declared {
        headers.push("DECLARED BY");
    }
    let mut table = Table::new(headers);
    for (lock, decl) in locks.iter().zip(declared) {
        let mut row = vec![
            lock.name.clone(),
            lock.locked_by.clone(),
            lock.lock_process
                .map_or_else(|| "-".to_string(), |p| p.to_string()),
            expiry(lock),
            lock.fence.to_string(),
        ];
        if with_declared {
            row.push(declared_cell(decl));
        }
        table.push(row);
    }
    table
}

/// One lock in the `--json` output of `list-locks`.
#[derive(Debug, Serialize)]
pub(crate) struct LockJson {
    name: String,
    locked_by: String,
    lock_process: Option<i64>,
    /// RFC 3339, UTC; `null`: never expires.
    locked_until: Option<String>,
    fence: i64,
    /// Whole seconds left by the database clock; `null`: never expires.
    expires_in_seconds: Option<u64>,
    created_at: String,
    updated_at: String,
    /// The template of the `#[locked]` declaration this name matches, if any.
    declared: Option<&'static str>,
}

fn rfc3339(time: DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Micros, true)
}

impl From<&Lock> for LockJson {
    fn from(lock: &Lock) -> LockJson {
        LockJson {
            name: lock.name.clone(),
            locked_by: lock.locked_by.clone(),
            lock_process: lock.lock_process,
            locked_until: lock.locked_until.map(rfc3339),
            fence: lock.fence,
            expires_in_seconds: lock.expires_in().map(|d| d.as_secs()),
            created_at: rfc3339(lock.created_at),
            updated_at: rfc3339(lock.updated_at),
            declared: crate::declared_lock_for(&lock.name).map(|d| d.name),
        }
    }
}

/// One declaration in the `--json` output of `list-declared`.
#[derive(Debug, Serialize)]
pub(crate) struct DeclaredJson {
    template: &'static str,
    /// `null`: the lock never expires.
    expires_seconds: Seconds,
    /// `null`: a call does not wait for the lock.
    wait_seconds: Seconds,
    /// Whether the lock is renewed while the function runs.
    keepalive: bool,
    /// `null`: released when the function returns.
    min_hold_seconds: Seconds,
    /// The tick length of `once_per`; `null`: no ticks.
    once_per_seconds: Seconds,
    /// `"error"` or `"skip"`.
    on_locked: &'static str,
    function: &'static str,
    file: &'static str,
    line: u32,
    /// Whether a row of this declaration is held right now: a call running, or a row
    /// kept after its run (`min_hold`, a `once_per` tick).
    held: bool,
    /// The names of the live locks that match it.
    held_locks: Vec<String>,
}

impl DeclaredJson {
    pub(crate) fn new(decl: &'static DeclaredLock, held_locks: Vec<String>) -> DeclaredJson {
        DeclaredJson {
            template: decl.name,
            expires_seconds: Seconds(decl.expires),
            wait_seconds: Seconds(decl.wait),
            keepalive: decl.keepalive,
            min_hold_seconds: Seconds(decl.min_hold),
            once_per_seconds: Seconds(decl.once_per),
            on_locked: decl.on_locked.as_str(),
            function: decl.function,
            file: decl.file,
            line: decl.line,
            held: !held_locks.is_empty(),
            held_locks,
        }
    }
}

/// Write `value` as pretty JSON and a newline.
pub(crate) fn write_json<T: Serialize + ?Sized>(out: &mut dyn Write, value: &T) -> io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value).map_err(io::Error::from)?;
    writeln!(out)
}

/// `1 lock` / `2 locks`.
pub(crate) fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_read_like_words() {
        assert_eq!(span(0), "0s");
        assert_eq!(span(59), "59s");
        assert_eq!(span(60), "1m");
        assert_eq!(span(252), "4m 12s");
        assert_eq!(span(3600), "1h");
        assert_eq!(span(3605), "1h 5s");
        assert_eq!(span(2 * 86_400 + 3 * 3600 + 5), "2d 3h 5s");
    }

    #[test]
    fn settings_keep_sub_second_parts() {
        assert_eq!(setting(None), "-");
        assert_eq!(setting(Some(Duration::from_millis(500))), "500ms");
        assert_eq!(setting(Some(Duration::from_secs(90))), "1m 30s");
        assert_eq!(setting(Some(Duration::from_millis(2_250))), "2s 250ms");
        assert_eq!(setting(Some(Duration::from_micros(3))), "3µs");
        let json = |d| serde_json::to_string(&Seconds(d)).unwrap();
        assert_eq!(json(Some(Duration::from_secs(60))), "60");
        assert_eq!(json(Some(Duration::from_millis(500))), "0.5");
        assert_eq!(json(None), "null");
    }

    #[test]
    fn seconds_round_up() {
        assert_eq!(ceil_secs(Duration::from_millis(300)), 1);
        assert_eq!(ceil_secs(Duration::from_secs(600)), 600);
        assert_eq!(ceil_secs(Duration::from_millis(599_001)), 600);
    }

    #[test]
    fn tables_align_columns_without_trailing_blanks() {
        let mut table = Table::new(vec!["NAME", "WHO", "X"]);
        table.push(vec!["a".into(), "longer".into(), String::new()]);
        table.push(vec!["ééé".into(), "b".into(), "z".into()]);
        let mut out = Vec::new();
        table.write(&mut out).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "NAME  WHO     X\na     longer\nééé   b       z\n"
        );
    }

    #[test]
    fn plurals() {
        assert_eq!(plural(1, "lock", "locks"), "1 lock");
        assert_eq!(plural(0, "lock", "locks"), "0 locks");
    }
}
