//! A cron-style worker: two `#[locked]` jobs fired every second by a tokio interval,
//! safe to run in many processes (or on many hosts) at once.
//!
//! ```text
//! cargo run --example cron_worker                # until Ctrl-C
//! cargo run --example cron_worker -- --for 20s   # stops by itself (also CRON_WORKER_FOR=20s)
//! ```
//!
//! Start it in two terminals in the same directory (both use `./lockmgr.sqlite3`; with
//! `LOCKMGR_DATABASE_URL=postgres://…` they may be on different hosts). Every second
//! both processes try both jobs, and:
//!
//! - `digest` (`min_hold = 5`) runs at most once per 5 seconds across both processes,
//!   although it finishes in 0.3 s: its lock stays until the window is over.
//! - `rebuild` (`keepalive = true`) runs 3 s under a lock that expires after 2 s; keep-alive
//!   renews it while it runs, so no other process takes it over halfway.
//!
//! Each line says which process (`pid`) ran or skipped what; times are UTC. With
//! `RUST_LOG=lockmgr=debug` lockmgr's own events (acquired, released, renewed) are
//! printed on stderr too.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use lockmgr::locked;
use tokio::task::JoinSet;

/// How often each process fires both jobs.
const TICK: Duration = Duration::from_secs(1);
/// How long the rebuild job works: longer than its lock's expiry (2 s).
const REBUILD_TAKES: Duration = Duration::from_secs(3);

static DIGEST_RUNS: AtomicU32 = AtomicU32::new(0);
static REBUILD_RUNS: AtomicU32 = AtomicU32::new(0);
static SKIPS: AtomicU32 = AtomicU32::new(0);

/// A quick job that must not run more than once per 5 s window, whichever process
/// fires it: the lock stays 5 s after it was taken, even though the job is long done.
#[locked(name = "cron:digest", expires = 60, min_hold = 5, guard = lock)]
async fn send_digest() -> lockmgr::Result<()> {
    let taken = lock.main_lock().created_at;
    say(
        "digest",
        &format!(
            "started (fence {}, lock taken {})",
            lock.fence(),
            hms(taken)
        ),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    DIGEST_RUNS.fetch_add(1, Ordering::Relaxed);
    say(
        "digest",
        &format!(
            "done; its lock stays until {} (min_hold = 5 s)",
            hms(taken + chrono::Duration::seconds(5))
        ),
    );
    Ok(())
}

/// A job that outlives its lock's expiry (2 s): keep-alive renews the lock in the
/// background while it runs, and would tell it if the lock were lost.
#[locked(name = "cron:rebuild", expires = 2, keepalive = true, guard = lock)]
async fn rebuild_index() -> lockmgr::Result<()> {
    say(
        "rebuild",
        &format!(
            "started (fence {}); works 3 s under a 2 s lock kept alive",
            lock.fence()
        ),
    );
    tokio::select! {
        () = tokio::time::sleep(REBUILD_TAKES) => {}
        () = lock.lost_signal().lost() => {}
    }
    REBUILD_RUNS.fetch_add(1, Ordering::Relaxed);
    if lock.is_lost() {
        say("rebuild", "LOST its lock (cleared or taken over); stopped");
    } else {
        let until = lock.current_lock().locked_until.map_or("never".into(), hms);
        say(
            "rebuild",
            &format!("done; lock renewed up to {until}, never lost"),
        );
    }
    Ok(())
}

/// Run one job, reporting a lock held elsewhere as a skip.
async fn fire<F>(job: &'static str, run: F)
where
    F: std::future::Future<Output = lockmgr::Result<()>>,
{
    match run.await {
        Ok(()) => {}
        Err(lockmgr::Error::Locked {
            locked_by,
            lock_process,
            locked_until,
            ..
        }) => {
            SKIPS.fetch_add(1, Ordering::Relaxed);
            let pid = match lock_process {
                Some(pid) if pid == i64::from(std::process::id()) => " (this process)".into(),
                Some(pid) => format!(" (pid {pid})"),
                None => String::new(),
            };
            let until = locked_until.map_or("never".into(), hms);
            say(
                job,
                &format!("skipped: held by {locked_by}{pid} until {until}"),
            );
        }
        Err(err) => say(job, &format!("error: {err}")),
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    init_tracing()?;
    let run_for = run_for()?;
    let store = lockmgr::default_store()?; // LOCKMGR_DATABASE_URL, DATABASE_URL, ./lockmgr.sqlite3
    say(
        "worker",
        &format!(
            "started on {} ({}); both jobs fire every second; {}",
            store.url(),
            store.backend(),
            match run_for {
                Some(d) => format!("stops after {} s", d.as_secs_f64()),
                None => "Ctrl-C stops".into(),
            }
        ),
    );

    let stop = async {
        match run_for {
            Some(d) => tokio::time::sleep(d).await,
            None => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    };
    tokio::pin!(stop);
    let mut ticks = tokio::time::interval(TICK);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut running = JoinSet::new();
    loop {
        tokio::select! {
            () = &mut stop => break,
            _ = ticks.tick() => {
                // Like a cron daemon: every tick starts both jobs, whether or not an
                // earlier run is still going; the locks decide who actually runs.
                running.spawn(fire("digest", send_digest()));
                running.spawn(fire("rebuild", rebuild_index()));
            }
            Some(_) = running.join_next(), if !running.is_empty() => {}
        }
    }
    say("worker", "stopping: waiting for running jobs to finish");
    while running.join_next().await.is_some() {}
    say(
        "worker",
        &format!(
            "finished: digest ran {}, rebuild ran {}, {} skipped (lock held)",
            DIGEST_RUNS.load(Ordering::Relaxed),
            REBUILD_RUNS.load(Ordering::Relaxed),
            SKIPS.load(Ordering::Relaxed)
        ),
    );
    Ok(())
}

/// One line of output: the time (UTC), this process, the job, what happened.
fn say(job: &str, what: &str) {
    println!(
        "{}  pid {:<6}  {job:<7}  {what}",
        hms(Utc::now()),
        std::process::id()
    );
}

fn hms(t: DateTime<Utc>) -> String {
    t.format("%H:%M:%S%.3f").to_string()
}

/// `--for 20s` (or `CRON_WORKER_FOR=20s`): how long to run; `None`: until Ctrl-C.
fn run_for() -> Result<Option<Duration>, String> {
    let mut args = std::env::args().skip(1);
    let mut value = std::env::var("CRON_WORKER_FOR").ok();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--for" => value = Some(args.next().ok_or("--for needs a duration, e.g. 20s")?),
            other => match other.strip_prefix("--for=") {
                Some(v) => value = Some(v.to_string()),
                None => {
                    return Err(format!(
                        "unknown argument {other:?}; usage: cron_worker [--for 20s]"
                    ))
                }
            },
        }
    }
    value.map(|v| parse_duration(&v)).transpose()
}

/// `500ms`, `20s`, `2m` or a bare number of seconds.
fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let (number, unit) = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((text, "s"), |at| text.split_at(at));
    let number: f64 = number
        .parse()
        .map_err(|_| format!("not a duration: {text:?} (try 20s, 2m or 500ms)"))?;
    let seconds = match unit {
        "ms" => number / 1000.0,
        "s" => number,
        "m" => number * 60.0,
        _ => return Err(format!("not a duration: {text:?} (try 20s, 2m or 500ms)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{text:?}: {e}"))
}

/// With `RUST_LOG` set (e.g. `RUST_LOG=lockmgr=debug`), print tracing events on stderr.
fn init_tracing() -> Result<(), Box<dyn std::error::Error>> {
    use tracing_subscriber::prelude::*;
    if let Ok(filter) = std::env::var("RUST_LOG") {
        let filter: tracing_subscriber::filter::Targets = filter.parse()?;
        tracing_subscriber::registry()
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .with(filter)
            .init();
    }
    Ok(())
}
