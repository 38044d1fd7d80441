//! What async acquisition needs from its executor: a sleep, and a place to run one
//! blocking database call.
//!
//! - With the `tokio` feature, inside a tokio runtime: [`tokio::time::sleep`] (the
//!   runtime must have its timer enabled, as `#[tokio::main]` does) and
//!   [`tokio::task::spawn_blocking`].
//! - Otherwise (no feature, or no tokio runtime around the poll): a [`Sleep`] future
//!   woken by one lockmgr helper thread, so any executor works and its thread is free
//!   while waiting; the blocking call runs on the polling thread (one short statement).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Condvar, Mutex, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use crate::wakeup::Ticket;

/// Wait `delay` without blocking the executor's thread.
pub(crate) async fn sleep(delay: Duration) {
    #[cfg(feature = "tokio")]
    if tokio::runtime::Handle::try_current().is_ok() {
        tokio::time::sleep(delay).await;
        return;
    }
    Sleep::new(delay).await;
}

/// Wait `delay`, or less if `ticket`'s lock is released meanwhile.
pub(crate) async fn sleep_until_released(ticket: &Ticket, delay: Duration) {
    let mut sleep = std::pin::pin!(sleep(delay));
    let mut released = std::pin::pin!(ticket.released());
    std::future::poll_fn(|cx| {
        if released.as_mut().poll(cx).is_ready() || sleep.as_mut().poll(cx).is_ready() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    })
    .await;
}

/// Run `work`, a blocking call, where it does not hold up other tasks: on tokio's
/// blocking pool when there is a runtime, else right here.
///
/// If the future is dropped while `work` runs on the pool, `work` still completes and
/// its result is dropped there; a result that owns a lock (a guard) thus releases it.
pub(crate) async fn run_blocking<F, R>(work: F) -> R
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    #[cfg(feature = "tokio")]
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        return match runtime.spawn_blocking(work).await {
            Ok(result) => result,
            Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            // Only a runtime shutting down cancels a blocking task before it starts;
            // by then this future is being torn down as well.
            Err(err) => panic!("lockmgr: the tokio runtime shut down during an acquisition: {err}"),
        };
    }
    work()
}

/// A future that completes once its deadline has passed, woken by the timer thread.
#[derive(Debug)]
#[must_use = "futures do nothing unless awaited"]
pub(crate) struct Sleep {
    deadline: Instant,
    /// The waker registered with the timer thread by the last poll.
    registered: Option<Waker>,
}

impl Sleep {
    pub(crate) fn new(delay: Duration) -> Self {
        Sleep {
            deadline: Instant::now() + delay,
            registered: None,
        }
    }

    /// A sleep that ends at `deadline`.
    pub(crate) fn until(deadline: Instant) -> Self {
        Sleep {
            deadline,
            registered: None,
        }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.get_mut();
        if Instant::now() >= this.deadline {
            return Poll::Ready(());
        }
        // Register once per distinct waker; an entry left behind by a dropped or
        // re-polled Sleep only causes one harmless wake-up at its deadline.
        if !this
            .registered
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()))
        {
            timer().add(this.deadline, cx.waker().clone());
            this.registered = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

/// The deadlines waiting to be woken, earliest first.
struct Timer {
    queue: Mutex<BinaryHeap<Reverse<Entry>>>,
    changed: Condvar,
}

struct Entry {
    deadline: Instant,
    /// Breaks ties so entries compare without their wakers.
    seq: u64,
    waker: Waker,
}

impl PartialEq for Entry {
    fn eq(&self, other: &Self) -> bool {
        (self.deadline, self.seq) == (other.deadline, other.seq)
    }
}

impl Eq for Entry {}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.deadline, self.seq).cmp(&(other.deadline, other.seq))
    }
}

/// The process's timer, its thread started on first use.
fn timer() -> &'static Timer {
    static TIMER: OnceLock<&'static Timer> = OnceLock::new();
    TIMER.get_or_init(|| {
        let timer: &'static Timer = Box::leak(Box::new(Timer {
            queue: Mutex::new(BinaryHeap::new()),
            changed: Condvar::new(),
        }));
        std::thread::Builder::new()
            .name("lockmgr-timer".into())
            .spawn(move || timer.run())
            .expect("cannot start lockmgr's timer thread");
        timer
    })
}

impl Timer {
    fn add(&self, deadline: Instant, waker: Waker) {
        static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        let earliest = queue
            .peek()
            .is_none_or(|Reverse(first)| deadline < first.deadline);
        queue.push(Reverse(Entry {
            deadline,
            seq,
            waker,
        }));
        if earliest {
            self.changed.notify_one();
        }
    }

    /// Wake each entry once its deadline has passed; forever.
    fn run(&self) {
        let mut due = Vec::new();
        let mut queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            let now = Instant::now();
            while queue
                .peek()
                .is_some_and(|Reverse(first)| first.deadline <= now)
            {
                if let Some(Reverse(entry)) = queue.pop() {
                    due.push(entry.waker);
                }
            }
            if !due.is_empty() {
                // Wake outside the lock: a waker may run executor code.
                drop(queue);
                due.drain(..).for_each(Waker::wake);
                queue = self.queue.lock().unwrap_or_else(|e| e.into_inner());
                continue;
            }
            queue = match queue.peek() {
                Some(Reverse(first)) => {
                    let timeout = first.deadline.saturating_duration_since(now);
                    self.changed
                        .wait_timeout(queue, timeout)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
                None => self.changed.wait(queue).unwrap_or_else(|e| e.into_inner()),
            };
        }
    }
}

/// A minimal executor for tests: poll `future` on this thread, parking between polls.
#[cfg(test)]
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    use std::sync::Arc;
    use std::task::Wake;

    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        std::thread::park();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleep_completes_after_its_delay_on_any_executor() {
        let started = Instant::now();
        block_on(Sleep::new(Duration::from_millis(50)));
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(50), "{took:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");
    }

    #[test]
    fn sleeps_wake_in_deadline_order_from_many_threads() {
        let threads: Vec<_> = [120u64, 10, 60, 30]
            .into_iter()
            .map(|ms| {
                std::thread::spawn(move || {
                    let started = Instant::now();
                    block_on(Sleep::new(Duration::from_millis(ms)));
                    (ms, started.elapsed())
                })
            })
            .collect();
        for thread in threads {
            let (ms, took) = thread.join().unwrap();
            assert!(took >= Duration::from_millis(ms), "{ms} ms took {took:?}");
            assert!(took < Duration::from_millis(ms) + Duration::from_secs(5));
        }
    }

    #[test]
    fn sleep_does_not_hold_the_polling_thread() {
        // Two sleeps polled by one thread, interleaved: both end in about the time
        // of the longer one, not the sum.
        let started = Instant::now();
        block_on(async {
            let mut a = std::pin::pin!(Sleep::new(Duration::from_millis(150)));
            let mut b = std::pin::pin!(Sleep::new(Duration::from_millis(150)));
            std::future::poll_fn(|cx| {
                let a = a.as_mut().poll(cx).is_ready();
                let b = b.as_mut().poll(cx).is_ready();
                if a && b {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            })
            .await;
        });
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(150), "{took:?}");
        assert!(took < Duration::from_millis(290), "{took:?}");
    }

    #[test]
    fn without_a_runtime_blocking_work_runs_inline() {
        let here = std::thread::current().id();
        let ran_on = block_on(run_blocking(move || std::thread::current().id()));
        assert_eq!(ran_on, here);
    }

    #[cfg(feature = "tokio")]
    #[test]
    fn inside_tokio_blocking_work_runs_on_the_pool() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let here = std::thread::current().id();
        let ran_on = runtime.block_on(run_blocking(move || std::thread::current().id()));
        assert_ne!(ran_on, here);
        let started = Instant::now();
        runtime.block_on(sleep(Duration::from_millis(30)));
        assert!(started.elapsed() >= Duration::from_millis(30));
    }
}
