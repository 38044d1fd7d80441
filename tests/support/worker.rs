//! A worker process for the multi-process tests: `lockmgr-test-worker MODE [--flag VALUE]…`.
//!
//! Each mode is one kind of job that several copies of this binary run at once
//! against one database. Add modes here as tests need them; keep each one's flags
//! explicit so a test reads as the command line it runs.
//!
//! Modes:
//!
//! - `locked-counter --url URL --counter PATH --marker PATH [--calls N] [--key K]
//!   [--start-at UNIX_MS]`: call a `#[locked(name = "counter:{key}", wait = 60)]`
//!   function N times (default 60). Its body creates the marker file exclusively
//!   (finding it already there means two bodies overlapped), adds one to the number in
//!   the counter file, and removes the marker. `--start-at` makes copies started one
//!   by one begin together.
//!
//! - `cron-tick --url URL --first-tick K --ticks N [--jitter-ms J]`: fire the
//!   `#[locked(name = "cron-test:tick", once_per = "2s")]` job at ticks K to K+N-1 of
//!   2 s, each at its start by this process's wall clock (plus a random delay of up
//!   to J ms, default 100: a scheduler's jitter), as a cron scheduler would. Prints
//!   `fire K` for every fire, `ran K` from the body (which works 0.5 s), and
//!   `error K: …` for a call that failed (and then goes on). Run it under libfaketime
//!   to shift its clock.
//!
//! - `hold --url URL`: call a `#[locked(name = "crash-test:job")]` function with the
//!   defaults (a 60 s lease kept alive) whose body prints `holding` and then sleeps for
//!   an hour, for a test to kill the process mid-run.

//! - `race --url URL --name NAME --marker PATH --counter PATH [--tries N]
//!   [--sentinel NAME] [--pool-size N] [--start-at UNIX_MS]`: N times (default 200),
//!   try `get_lock(NAME)` without waiting; on success run the same marker + counter
//!   body as above and release. Every try also asks `is_locked(SENTINEL)` (a lock the
//!   caller holds for the whole run and that must stay held). Prints
//!   `tally won=… locked=… other=… overlap=… sentinel_lost=…` and, on stderr, each
//!   error other than `Locked`. It does not stop at an error: the tally tells.
//!
//! Exit status: 0 when every call succeeded; 3 when an overlap was seen; 1 on any
//! other error (usage, database, files), with a one-line message on stderr.

use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use lockmgr::{locked, LockStore};

/// Why a worker stopped.
#[derive(Debug)]
enum WorkerError {
    /// Another body was running at the same time (the marker file existed).
    Overlap(PathBuf),
    Lock(lockmgr::Error),
    Io(String, io::Error),
    Usage(String),
}

impl From<lockmgr::Error> for WorkerError {
    fn from(err: lockmgr::Error) -> Self {
        WorkerError::Lock(err)
    }
}

impl std::fmt::Display for WorkerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WorkerError::Overlap(marker) => {
                write!(f, "overlap: {} already existed", marker.display())
            }
            WorkerError::Lock(err) => write!(f, "{err}"),
            WorkerError::Io(what, err) => write!(f, "{what}: {err}"),
            WorkerError::Usage(msg) => write!(f, "usage: {msg}"),
        }
    }
}

fn io_error(what: &str, path: &Path) -> impl FnOnce(io::Error) -> WorkerError {
    let what = format!("{what} {}", path.display());
    move |err| WorkerError::Io(what, err)
}

/// One guarded increment of the counter file.
#[locked(name = "counter:{key}", expires = 60, wait = 60, store = store)]
fn bump(store: &LockStore, key: &str, counter: &Path, marker: &Path) -> Result<(), WorkerError> {
    body(counter, marker)
}

/// The body run under a lock: take the marker file exclusively (finding it taken is
/// an overlap), add one to the counter file, give the marker back.
fn body(counter: &Path, marker: &Path) -> Result<(), WorkerError> {
    match OpenOptions::new().write(true).create_new(true).open(marker) {
        Ok(_) => {}
        Err(err) if err.kind() == io::ErrorKind::AlreadyExists => {
            return Err(WorkerError::Overlap(marker.to_path_buf()));
        }
        Err(err) => return Err(io_error("creating", marker)(err)),
    }
    let text = match fs::read_to_string(counter) {
        Ok(text) => text,
        Err(err) if err.kind() == io::ErrorKind::NotFound => String::new(),
        Err(err) => return Err(io_error("reading", counter)(err)),
    };
    let count: u64 = match text.trim() {
        "" => 0,
        n => n
            .parse()
            .map_err(|_| WorkerError::Usage(format!("{} holds {n:?}", counter.display())))?,
    };
    // Widen the window in which an unguarded second body would be caught.
    std::thread::sleep(Duration::from_millis(1));
    fs::write(counter, format!("{}\n", count + 1)).map_err(io_error("writing", counter))?;
    fs::remove_file(marker).map_err(io_error("removing", marker))?;
    Ok(())
}

fn locked_counter(flags: &HashMap<String, String>) -> Result<(), WorkerError> {
    let url = required(flags, "url")?;
    let counter = PathBuf::from(required(flags, "counter")?);
    let marker = PathBuf::from(required(flags, "marker")?);
    let calls: u32 = number(flags, "calls")?.unwrap_or(60);
    let key = flags.get("key").map_or("shared", String::as_str);
    let store = LockStore::open(url)?;
    if let Some(start_at) = number::<u64>(flags, "start-at")? {
        let start = UNIX_EPOCH + Duration::from_millis(start_at);
        if let Ok(wait) = start.duration_since(SystemTime::now()) {
            std::thread::sleep(wait);
        }
    }
    for _ in 0..calls {
        bump(&store, key, &counter, &marker)?;
    }
    Ok(())
}

/// A job with the attribute's defaults that runs until the process is killed.
#[locked(name = "crash-test:job", store = store)]
fn hold_forever(store: &LockStore) -> Result<(), WorkerError> {
    println!("holding");
    std::thread::sleep(Duration::from_secs(3600));
    Ok(())
}

/// The tick length of `cron-tick`.
const TICK: Duration = Duration::from_secs(2);

/// A job fired on every replica at every tick: at most one run per tick.
#[locked(name = "cron-test:tick", once_per = TICK, store = store)]
fn tick(store: &LockStore, fired: i64) -> Result<(), WorkerError> {
    println!("ran {fired}");
    std::thread::sleep(Duration::from_millis(500));
    Ok(())
}

fn cron_tick(flags: &HashMap<String, String>) -> Result<(), WorkerError> {
    let url = required(flags, "url")?;
    let first: i64 = number(flags, "first-tick")?
        .ok_or_else(|| WorkerError::Usage("--first-tick is required".into()))?;
    let ticks: i64 = number(flags, "ticks")?.unwrap_or(30);
    let jitter_ms: u64 = number(flags, "jitter-ms")?.unwrap_or(100);
    let store = LockStore::open(url)?;
    let period_ms = TICK.as_millis() as i64;
    let mut errors = 0;
    for k in first..first + ticks {
        // This process's wall clock (shifted under libfaketime) says when to fire.
        let fire_at =
            UNIX_EPOCH + Duration::from_millis((k * period_ms) as u64 + random_below(jitter_ms));
        if let Ok(wait) = fire_at.duration_since(SystemTime::now()) {
            std::thread::sleep(wait);
        }
        println!("fire {k}");
        if let Err(err) = tick(&store, k) {
            println!("error {k}: {err}");
            errors += 1;
        }
    }
    if errors > 0 {
        return Err(WorkerError::Usage(format!("{errors} calls failed")));
    }
    Ok(())
}

/// A random number below `n` (0 when `n` is 0).
fn random_below(n: u64) -> u64 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::from(d.subsec_nanos()));
    let mixed = nanos.wrapping_mul(6_364_136_223_846_793_005) ^ u64::from(std::process::id());
    mixed.checked_rem(n).unwrap_or(0)
}

/// See the module docs: `race`.
fn race(flags: &HashMap<String, String>) -> Result<(), WorkerError> {
    let url = required(flags, "url")?;
    let name = required(flags, "name")?;
    let counter = PathBuf::from(required(flags, "counter")?);
    let marker = PathBuf::from(required(flags, "marker")?);
    let tries: u32 = number(flags, "tries")?.unwrap_or(200);
    let sentinel = flags.get("sentinel");
    let mut builder = LockStore::builder(url);
    if let Some(size) = number::<u32>(flags, "pool-size")? {
        builder = builder.pool_size(size);
    }
    let store = builder.open()?;
    if let Some(start_at) = number::<u64>(flags, "start-at")? {
        let start = UNIX_EPOCH + Duration::from_millis(start_at);
        if let Ok(wait) = start.duration_since(SystemTime::now()) {
            std::thread::sleep(wait);
        }
    }
    let (mut won, mut locked, mut other, mut overlap, mut sentinel_lost) = (0, 0, 0, 0, 0);
    let mut other_error = |what: &str, err: &dyn std::fmt::Display| {
        eprintln!("{what}: {err}");
        other += 1;
    };
    for _ in 0..tries {
        match store.get_lock(name, Some(Duration::from_secs(60))) {
            Ok(lock) => {
                won += 1;
                match body(&counter, &marker) {
                    Ok(()) => {}
                    Err(WorkerError::Overlap(_)) => overlap += 1,
                    Err(err) => return Err(err),
                }
                if let Err(err) = store.unlock(&lock) {
                    other_error("unlock", &err);
                }
            }
            Err(err) if err.is_locked() => locked += 1,
            Err(err) => other_error("get_lock", &err),
        }
        if let Some(sentinel) = sentinel {
            match store.is_locked(sentinel) {
                Ok(true) => {}
                Ok(false) => sentinel_lost += 1,
                Err(err) => other_error("is_locked", &err),
            }
        }
    }
    println!(
        "tally won={won} locked={locked} other={other} overlap={overlap} sentinel_lost={sentinel_lost}"
    );
    Ok(())
}

fn required<'a>(flags: &'a HashMap<String, String>, name: &str) -> Result<&'a str, WorkerError> {
    flags
        .get(name)
        .map(String::as_str)
        .ok_or_else(|| WorkerError::Usage(format!("--{name} is required")))
}

fn number<T: std::str::FromStr>(
    flags: &HashMap<String, String>,
    name: &str,
) -> Result<Option<T>, WorkerError> {
    flags
        .get(name)
        .map(|value| {
            value
                .parse()
                .map_err(|_| WorkerError::Usage(format!("--{name} {value:?} is not a number")))
        })
        .transpose()
}

/// `--name value` pairs.
fn parse_flags(args: &[String]) -> Result<HashMap<String, String>, WorkerError> {
    let mut flags = HashMap::new();
    let mut args = args.iter();
    while let Some(arg) = args.next() {
        let name = arg
            .strip_prefix("--")
            .ok_or_else(|| WorkerError::Usage(format!("unexpected argument {arg:?}")))?;
        let value = args
            .next()
            .ok_or_else(|| WorkerError::Usage(format!("--{name} needs a value")))?;
        flags.insert(name.to_string(), value.clone());
    }
    Ok(flags)
}

fn run(args: &[String]) -> Result<(), WorkerError> {
    let (mode, rest) = args
        .split_first()
        .ok_or_else(|| WorkerError::Usage("lockmgr-test-worker MODE [--flag VALUE]...".into()))?;
    let flags = parse_flags(rest)?;
    match mode.as_str() {
        "locked-counter" => locked_counter(&flags),
        "cron-tick" => cron_tick(&flags),
        "hold" => hold_forever(&LockStore::open(required(&flags, "url")?)?),

        "race" => race(&flags),
        other => Err(WorkerError::Usage(format!("unknown mode {other:?}"))),
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("lockmgr-test-worker: {err}");
            match err {
                WorkerError::Overlap(_) => ExitCode::from(3),
                _ => ExitCode::FAILURE,
            }
        }
    }
}
