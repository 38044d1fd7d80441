//! A cron worker: two `#[locked]` async jobs fired by a real scheduler
//! (`tokio-cron-scheduler`), safe to run in many processes (or on many hosts) at once.
//!
//! ```text
//! cargo run --example cron_worker                # until Ctrl-C
//! cargo run --example cron_worker -- --for 20s   # stops by itself (also CRON_WORKER_FOR=20s)
//! ```
//!
//! Start it in two terminals in the same directory (both use `./lockmgr.sqlite3`; with
//! `LOCKMGR_DATABASE_URL=postgres://…` they may be on different hosts). Each process's
//! scheduler fires both jobs on its own, and:
//!
//! - `digest` (`once_per = "5s"`, fired every 5 s) runs exactly once per tick across all
//!   processes: the first call of a tick runs it, every other call of the same tick
//!   returns `Ok(None)` — a skip, not an error.
//! - `rebuild` (`on_locked = "skip"`, fired every second) works 4 s under a 3 s lease
//!   (keep-alive's shortest) that keep-alive renews while it runs; the calls that find
//!   it running skip.
//!
//! Each line says which process (`pid`) ran or skipped what; times are UTC. With
//! `RUST_LOG=lockmgr=debug` lockmgr's own events (acquired, skipped, released, renewed)
//! are printed on stderr too.

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use lockmgr::locked;
use tokio_cron_scheduler::{Job, JobScheduler};

/// How long the rebuild job works: longer than its lease (3 s).
const REBUILD_TAKES: Duration = Duration::from_secs(4);

static DIGEST_RUNS: AtomicU32 = AtomicU32::new(0);
static REBUILD_RUNS: AtomicU32 = AtomicU32::new(0);
static SKIPS: AtomicU32 = AtomicU32::new(0);

/// Once per 5 s tick across every process, whichever fires first. `tick` is only
/// printed: the lock finds the tick by itself (by the database clock).
#[locked(name = "cron:digest", once_per = "5s", guard = lock)]
async fn send_digest(tick: DateTime<Utc>) -> lockmgr::Result<Option<i64>> {
    say(
        "digest",
        &format!("started (fence {}, tick {})", lock.fence(), hms(tick)),
    );
    tokio::time::sleep(Duration::from_millis(300)).await;
    DIGEST_RUNS.fetch_add(1, Ordering::Relaxed);
    say("digest", "done");
    Ok(Some(lock.fence()))
}

/// Longer than its 3 s lease (keep-alive's shortest): keep-alive (on by default) renews
/// it while it runs, and would tell it if the lock were lost. Calls that find it
/// running skip.
#[locked(name = "cron:rebuild", expires = 3, on_locked = "skip", guard = lock)]
async fn rebuild_index() -> lockmgr::Result<Option<()>> {
    say(
        "rebuild",
        &format!(
            "started (fence {}); works 4 s under a 3 s lease kept alive",
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
            &format!("done; lease renewed up to {until}, never lost"),
        );
    }
    Ok(Some(()))
}

/// What the scheduler runs on each fire: the job, and a line for a skip or an error.
async fn fire<F>(job: &'static str, skipped: String, run: F)
where
    F: std::future::Future<Output = lockmgr::Result<Option<()>>>,
{
    match run.await {
        Ok(Some(())) => {}
        Ok(None) => {
            SKIPS.fetch_add(1, Ordering::Relaxed);
            say(job, &skipped);
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
            "started on {} ({}); digest fires every 5 s, rebuild every second; {}",
            store.url(),
            store.backend(),
            match run_for {
                Some(d) => format!("stops after {} s", d.as_secs_f64()),
                None => "Ctrl-C stops".into(),
            }
        ),
    );

    let mut scheduler = JobScheduler::new().await?;
    // Cron expressions with seconds: sec min hour day month weekday.
    scheduler
        .add(Job::new_async("*/5 * * * * *", |_, _| {
            Box::pin(async {
                // The tick this fire means: the 5 s boundary nearest to now.
                let tick = Utc::now()
                    .duration_round(TimeDelta::seconds(5))
                    .unwrap_or_else(|_| Utc::now());
                let skipped = format!("skipped: tick {} taken by another process", hms(tick));
                fire("digest", skipped, async move {
                    send_digest(tick).await.map(|ran| ran.map(drop))
                })
                .await;
            })
        })?)
        .await?;
    scheduler
        .add(Job::new_async("* * * * * *", |_, _| {
            Box::pin(fire(
                "rebuild",
                "skipped: still running (here or in another process)".to_string(),
                rebuild_index(),
            ))
        })?)
        .await?;
    scheduler.start().await?;

    match run_for {
        Some(d) => tokio::time::sleep(d).await,
        None => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
    say(
        "worker",
        "stopping: no new fires; waiting for running jobs to finish",
    );
    scheduler.shutdown().await?;
    // A rebuild may still be in its 4 s run.
    tokio::time::sleep(REBUILD_TAKES + Duration::from_millis(500)).await;
    say(
        "worker",
        &format!(
            "finished: digest ran {}, rebuild ran {}, {} skipped (not errors)",
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
