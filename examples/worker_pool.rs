//! A pool of worker threads sharing one queue of events, each event about an item.
//! Events for the same item arrive close together, so two workers often pick up the
//! same item at once: `#[locked(name = "item:{id}", wait = …)]` makes the second one
//! wait until the first is done, while workers on other items carry on.
//!
//! ```text
//! cargo run --example worker_pool
//! ```
//!
//! It ends by itself. Run it in two terminals at once and the workers of both
//! processes take turns on the same items: the locks live in the database
//! (`./lockmgr.sqlite3`, or `LOCKMGR_DATABASE_URL`).

use std::collections::VecDeque;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use lockmgr::locked;

const WORKERS: usize = 4;
const ITEMS: u32 = 5;
/// Events per item; they come in pairs, so two workers want the same item at once.
const EVENTS_PER_ITEM: u32 = 4;
const WORK: Duration = Duration::from_millis(150);

/// What the workers share: the queue, and per item a flag saying someone in this
/// process is working on it (to prove that nobody else is at the same time).
struct Pool {
    queue: Mutex<VecDeque<u32>>,
    busy: Vec<AtomicBool>,
    started: Instant,
    processed: AtomicU32,
    waited: AtomicU32,
    longest_wait_ms: AtomicU32,
}

#[derive(Debug)]
enum WorkError {
    /// The item's lock could not be had in time, or the database failed.
    Lock(lockmgr::Error),
    /// Two workers of this process were on the same item at once: the lock failed.
    Overlap(u32),
}

impl From<lockmgr::Error> for WorkError {
    fn from(err: lockmgr::Error) -> Self {
        WorkError::Lock(err)
    }
}

impl fmt::Display for WorkError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WorkError::Lock(err) => write!(f, "{err}"),
            WorkError::Overlap(id) => write!(f, "item {id} was processed by two workers at once"),
        }
    }
}

impl std::error::Error for WorkError {}

/// Process one event of item `id`. One worker at a time per item, across threads and
/// processes; a worker that finds the item busy waits up to 10 s for it.
#[locked(name = "item:{id}", expires = 30, wait = 10, guard = lock)]
fn process_item(pool: &Pool, worker: usize, id: u32, asked: Instant) -> Result<(), WorkError> {
    let waited = asked.elapsed();
    if pool.busy[id as usize].swap(true, Ordering::SeqCst) {
        return Err(WorkError::Overlap(id));
    }
    let how = if waited >= Duration::from_millis(20) {
        pool.waited.fetch_add(1, Ordering::Relaxed);
        let ms = u32::try_from(waited.as_millis()).unwrap_or(u32::MAX);
        pool.longest_wait_ms.fetch_max(ms, Ordering::Relaxed);
        format!("after waiting {ms} ms")
    } else {
        "at once".to_string()
    };
    println!(
        "{:>6.3}s  worker {worker}  {:<7}  got the lock {how} (fence {})",
        pool.started.elapsed().as_secs_f64(),
        lock.name(),
        lock.fence()
    );
    std::thread::sleep(WORK); // the work
    pool.busy[id as usize].store(false, Ordering::SeqCst);
    pool.processed.fetch_add(1, Ordering::Relaxed);
    Ok(())
}

fn worker(pool: &Pool, number: usize) -> Result<(), WorkError> {
    loop {
        let next = pool.queue.lock().unwrap().pop_front();
        let Some(id) = next else { return Ok(()) };
        process_item(pool, number, id, Instant::now())?;
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = lockmgr::default_store()?; // LOCKMGR_DATABASE_URL, DATABASE_URL, ./lockmgr.sqlite3
                                           // Two events per item in a row, the whole list twice: 1 1 2 2 3 3 … 1 1 2 2 …
    let queue: VecDeque<u32> = (0..EVENTS_PER_ITEM / 2)
        .flat_map(|_| (1..=ITEMS).flat_map(|id| [id, id]))
        .collect();
    let events = queue.len();
    println!(
        "{WORKERS} workers, {events} events for {ITEMS} items, on {} ({})",
        store.url(),
        store.backend()
    );
    let pool = Pool {
        queue: Mutex::new(queue),
        busy: (0..=ITEMS).map(|_| AtomicBool::new(false)).collect(),
        started: Instant::now(),
        processed: AtomicU32::new(0),
        waited: AtomicU32::new(0),
        longest_wait_ms: AtomicU32::new(0),
    };
    let results: Vec<Result<(), WorkError>> = std::thread::scope(|scope| {
        let pool = &pool;
        let workers: Vec<_> = (1..=WORKERS)
            .map(|n| scope.spawn(move || worker(pool, n)))
            .collect();
        workers.into_iter().map(|w| w.join().unwrap()).collect()
    });
    for result in results {
        result?;
    }
    println!(
        "done in {:.2} s: {} events processed; {} times a worker waited for an item another \
         worker held (longest {} ms); no item was processed by two workers at once",
        pool.started.elapsed().as_secs_f64(),
        pool.processed.load(Ordering::Relaxed),
        pool.waited.load(Ordering::Relaxed),
        pool.longest_wait_ms.load(Ordering::Relaxed)
    );
    Ok(())
}
