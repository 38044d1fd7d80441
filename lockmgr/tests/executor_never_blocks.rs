//! No database call and no blocking wait runs on the thread that polls the futures:
//! while eight `#[locked(wait = …)] async fn` calls contend for one lock, and SQLite's
//! write lock on the file is held by another connection for 2 s (so every lockmgr
//! statement waits in SQLite's busy handler), a ticker task on the same thread keeps
//! ticking: its longest gap stays under 50 ms.
//!
//! On a current-thread tokio runtime and on `futures-lite`'s `block_on` (not tokio).
//! `cargo test --workspace` builds lockmgr with its `tokio` feature (the root tests
//! ask for it); `cargo test -p lockmgr` builds it without, and then tokio is just
//! another executor to lockmgr.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::task::Poll;
use std::time::{Duration, Instant};

use diesel::connection::SimpleConnection;
use diesel::{Connection, SqliteConnection};
use futures_timer::Delay;
use lockmgr::{locked, LockStore};

/// Calls contending for the lock.
const CALLS: usize = 8;

/// How long the other connection holds SQLite's write lock.
const HOLD: Duration = Duration::from_secs(2);

/// The ticker's period, and the longest gap allowed between two of its ticks.
const TICK: Duration = Duration::from_millis(5);
const LONGEST_GAP: Duration = Duration::from_millis(50);

/// Holds SQLite's write lock on a database file for [`HOLD`] when asked, from another
/// connection on its own thread.
struct WriteLock {
    ask: Mutex<Option<mpsc::Sender<()>>>,
    held_since: Arc<Mutex<Option<Instant>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl WriteLock {
    fn new(path: &str) -> WriteLock {
        let mut conn = SqliteConnection::establish(path).unwrap();
        conn.batch_execute("PRAGMA busy_timeout = 30000;").unwrap();
        let (ask, asked) = mpsc::channel::<()>();
        let held_since = Arc::new(Mutex::new(None));
        let held = Arc::clone(&held_since);
        let thread = std::thread::spawn(move || {
            if asked.recv().is_ok() {
                conn.batch_execute("BEGIN IMMEDIATE;").unwrap();
                *held.lock().unwrap() = Some(Instant::now());
                std::thread::sleep(HOLD);
                conn.batch_execute("COMMIT;").unwrap();
            }
        });
        WriteLock {
            ask: Mutex::new(Some(ask)),
            held_since,
            thread: Some(thread),
        }
    }

    /// Take the write lock (once), and wait, asynchronously, until it is held.
    async fn take(&self) {
        if let Some(ask) = self.ask.lock().unwrap().take() {
            ask.send(()).unwrap();
        }
        while self.held_since().is_none() {
            Delay::new(Duration::from_millis(1)).await;
        }
    }

    fn held_since(&self) -> Option<Instant> {
        *self.held_since.lock().unwrap()
    }
}

impl Drop for WriteLock {
    fn drop(&mut self) {
        drop(self.ask.lock().unwrap().take());
        if let Some(thread) = self.thread.take() {
            thread.join().unwrap();
        }
    }
}

/// What the calls share.
struct Shared {
    store: LockStore,
    write_lock: WriteLock,
    /// Bodies running now, and the most seen at once.
    running: AtomicU32,
    most: AtomicU32,
}

/// One contending call: the first body to run has the file write-locked, then
/// returns, so its release (and the other calls' attempts) meet the write lock.
#[locked(name = "contended", store = &shared.store, wait = 60)]
async fn call(shared: &Shared) -> lockmgr::Result<()> {
    let now = shared.running.fetch_add(1, Ordering::SeqCst) + 1;
    shared.most.fetch_max(now, Ordering::SeqCst);
    shared.write_lock.take().await;
    shared.running.fetch_sub(1, Ordering::SeqCst);
    Ok(())
}

/// Poll every future of `futures` to its end, on the caller's executor.
async fn join_all<T>(futures: Vec<Pin<Box<dyn Future<Output = T> + '_>>>) -> Vec<T> {
    let mut futures: Vec<_> = futures.into_iter().map(Some).collect();
    let mut outputs: Vec<Option<T>> = futures.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if let Some(running) = future {
                if let Poll::Ready(value) = running.as_mut().poll(cx) {
                    *output = Some(value);
                    *future = None;
                }
            }
        }
        if futures.iter().all(Option::is_none) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
    outputs.into_iter().flatten().collect()
}

/// Tick every [`TICK`] until `done`; the longest gap between two ticks.
async fn ticker(done: &AtomicBool) -> Duration {
    let mut last = Instant::now();
    let mut longest = Duration::ZERO;
    while !done.load(Ordering::SeqCst) {
        Delay::new(TICK).await;
        let now = Instant::now();
        longest = longest.max(now - last);
        last = now;
    }
    longest
}

/// The calls and the ticker, on whatever executor polls this; the ticker's longest
/// gap. Checks that the calls ran one at a time, all of them, and met the write lock.
async fn contend(shared: &Shared) -> Duration {
    let done = AtomicBool::new(false);
    let calls = async {
        let calls = (0..CALLS)
            .map(|_| Box::pin(call(shared)) as Pin<Box<dyn Future<Output = lockmgr::Result<()>>>>)
            .collect();
        let outcomes = join_all(calls).await;
        done.store(true, Ordering::SeqCst);
        (outcomes, Instant::now())
    };
    let ((outcomes, finished), longest) = futures_lite::future::zip(calls, ticker(&done)).await;
    for outcome in outcomes {
        outcome.unwrap();
    }
    assert_eq!(shared.most.load(Ordering::SeqCst), 1, "bodies overlapped");
    let held_since = shared
        .write_lock
        .held_since()
        .expect("the write lock was taken");
    assert!(
        finished >= held_since + HOLD,
        "the calls ended while the file was write-locked"
    );
    assert!(!shared.store.is_locked("contended").unwrap());
    longest
}

fn shared() -> (tempfile::TempDir, Shared) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("l.sqlite3");
    let path = path.to_str().unwrap();
    let store = LockStore::open(path).unwrap();
    let shared = Shared {
        store,
        write_lock: WriteLock::new(path),
        running: AtomicU32::new(0),
        most: AtomicU32::new(0),
    };
    (dir, shared)
}

#[test]
fn a_current_thread_tokio_runtime_keeps_ticking() {
    let (_dir, shared) = shared();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let longest = runtime.block_on(contend(&shared));
    println!("tokio: longest gap between ticks {longest:?}");
    assert!(
        longest < LONGEST_GAP,
        "the executor stalled for {longest:?}"
    );
}

#[test]
fn another_executor_keeps_ticking() {
    let (_dir, shared) = shared();
    let longest = futures_lite::future::block_on(contend(&shared));
    println!("futures-lite: longest gap between ticks {longest:?}");
    assert!(
        longest < LONGEST_GAP,
        "the executor stalled for {longest:?}"
    );
}

/// A `#[locked]` call dropped half-way (a timeout, a `select!`, an aborted task) drops
/// its guard on the runtime's thread: with the `tokio` feature the guard sees it is on
/// a tokio task and hands the release to the blocking pool.
#[cfg(feature = "tokio")]
#[test]
fn a_guard_dropped_on_a_tokio_task_releases_off_the_thread() {
    #[locked(name = "dropped", store = &shared.store)]
    async fn forever(shared: &Shared) -> lockmgr::Result<()> {
        shared.write_lock.take().await;
        std::future::pending::<()>().await;
        Ok(())
    }

    let (_dir, shared) = shared();
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let done = AtomicBool::new(false);
    let longest = runtime.block_on(async {
        let cancelled = async {
            // Dropped once the file is write-locked: the release must wait for it.
            let dropped = futures_lite::future::or(async { forever(&shared).await.ok() }, async {
                while shared.write_lock.held_since().is_none() {
                    Delay::new(Duration::from_millis(1)).await;
                }
                None
            });
            assert!(dropped.await.is_none());
            // Tick on through the rest of the write lock.
            Delay::new(HOLD).await;
            done.store(true, Ordering::SeqCst);
        };
        futures_lite::future::zip(cancelled, ticker(&done)).await.1
    });
    println!("tokio, a dropped call: longest gap between ticks {longest:?}");
    assert!(
        longest < LONGEST_GAP,
        "the executor stalled for {longest:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while shared.store.is_locked("dropped").unwrap() {
        assert!(
            Instant::now() < deadline,
            "the dropped call's lock was kept"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}
