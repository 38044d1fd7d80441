//! How the CLI shows things: aligned tables, durations such as `in 4m 12s`, UTC times,
//! and the JSON documents of `--json`.

use std::io::{self, Write};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::Serialize;

use lockmgr::{DeclaredLock, Lock};

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

    /// Add a row; characters that would be invisible or reorder the line on a
    /// terminal are shown escaped (see [`visible`]).
    pub(crate) fn push(&mut self, row: Vec<String>) {
        debug_assert_eq!(row.len(), self.headers.len());
        self.rows
            .push(row.into_iter().map(|cell| visible(&cell)).collect());
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

/// Whether `c` shows nothing by itself or changes how the text around it shows: control
/// characters, bidirectional overrides and isolates, zero-width and other format
/// characters, line and paragraph separators, invisible fillers.
fn is_invisible(c: char) -> bool {
    c.is_control()
        || matches!(c,
            '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}'
            | '\u{17B5}' | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}'
            | '\u{2028}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}' | '\u{FFF9}'..='\u{FFFB}'
            | '\u{0600}'..='\u{0605}' | '\u{06DD}' | '\u{070F}' | '\u{110BD}' | '\u{110CD}'
            | '\u{13430}'..='\u{1343F}' | '\u{1BCA0}'..='\u{1BCA3}' | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}')
}

/// `text` as a terminal should show it: every [invisible](is_invisible) character
/// (a right-to-left override in a lock name, say) written as `\u{202e}`, so what is
/// shown is what is there. A backslash that starts a literal `\u{` is doubled, so an
/// escape cannot be faked.
pub(crate) fn visible(text: &str) -> String {
    if !text.chars().any(is_invisible) && !text.contains("\\u{") {
        return text.to_string();
    }
    let mut out = String::with_capacity(text.len() + 8);
    for (i, c) in text.char_indices() {
        if is_invisible(c) {
            out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
        } else if c == '\\' && text[i + 1..].starts_with("u{") {
            out.push_str("\\\\");
        } else {
            out.push(c);
        }
    }
    out
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
        .map(|lock| lockmgr::declared_lock_for(&lock.name))
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
            declared: lockmgr::declared_lock_for(&lock.name).map(|d| d.name),
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

/// Write `value` as pretty JSON and a newline. [Invisible](is_invisible) characters in
/// strings are written as `\uXXXX` escapes: the document is the same once parsed, and
/// safe to show on a terminal.
pub(crate) fn write_json<T: Serialize + ?Sized>(out: &mut dyn Write, value: &T) -> io::Result<()> {
    let mut serializer =
        serde_json::Serializer::with_formatter(&mut *out, VisibleFormatter::default());
    value.serialize(&mut serializer).map_err(io::Error::from)?;
    writeln!(out)
}

/// serde_json's pretty formatter, escaping invisible characters inside strings.
#[derive(Default)]
struct VisibleFormatter(serde_json::ser::PrettyFormatter<'static>);

impl serde_json::ser::Formatter for VisibleFormatter {
    fn write_string_fragment<W: ?Sized + Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> io::Result<()> {
        let mut start = 0;
        for (i, c) in fragment.char_indices() {
            if is_invisible(c) {
                writer.write_all(&fragment.as_bytes()[start..i])?;
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    write!(writer, "\\u{unit:04x}")?;
                }
                start = i + c.len_utf8();
            }
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }

    fn begin_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_array(w)
    }
    fn end_array<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_array(w)
    }
    fn begin_array_value<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.0.begin_array_value(w, first)
    }
    fn end_array_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_array_value(w)
    }
    fn begin_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_object(w)
    }
    fn end_object<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_object(w)
    }
    fn begin_object_key<W: ?Sized + Write>(&mut self, w: &mut W, first: bool) -> io::Result<()> {
        self.0.begin_object_key(w, first)
    }
    fn begin_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.begin_object_value(w)
    }
    fn end_object_value<W: ?Sized + Write>(&mut self, w: &mut W) -> io::Result<()> {
        self.0.end_object_value(w)
    }
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
    fn invisible_characters_are_escaped_for_display() {
        assert_eq!(visible("job:42"), "job:42");
        assert_eq!(visible("a\\b"), "a\\b");
        assert_eq!(visible("abc\u{202e}fed"), "abc\\u{202e}fed");
        assert_eq!(visible("x\u{200b}\\u{200b}"), "x\\u{200b}\\\\u{200b}");
        assert_eq!(visible("faked\\u{202e}"), "faked\\\\u{202e}");
        assert_eq!(visible("%_*?\\"), "%_*?\\");
        assert_eq!(visible("tag\u{E0041}"), "tag\\u{e0041}");
        let mut out = Vec::new();
        write_json(&mut out, &["a\u{2066}b\u{E0041}", "é"]).unwrap();
        let text = String::from_utf8(out).unwrap();
        assert_eq!(text, "[\n  \"a\\u2066b\\udb40\\udc41\",\n  \"é\"\n]\n");
        let back: Vec<String> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, ["a\u{2066}b\u{E0041}", "é"]);
    }

    #[test]
    fn plurals() {
        assert_eq!(plural(1, "lock", "locks"), "1 lock");
        assert_eq!(plural(0, "lock", "locks"), "0 locks");
    }
}
