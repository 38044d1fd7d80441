//! What async code needs from its executor: a sleep, and a place to run a blocking
//! database call. Neither ever blocks the thread that polls the future.
//!
//! - With the `tokio` feature, inside a tokio runtime: [`tokio::time::sleep`] (the
//!   runtime must have its timer enabled, as `#[tokio::main]` does) and
//!   [`tokio::task::spawn_blocking`].
//! - Otherwise (no feature, or no tokio runtime around the poll), on any executor:
//!   [`futures_timer::Delay`] and the [`blocking`] crate's thread pool.

use std::future::Future;
use std::task::Poll;
use std::time::{Duration, Instant};

use crate::error::Result;
use crate::wakeup::Ticket;

/// Wait `delay` without blocking the executor's thread.
pub(crate) async fn sleep(delay: Duration) {
    #[cfg(feature = "tokio")]
    if tokio::runtime::Handle::try_current().is_ok() {
        tokio::time::sleep(delay).await;
        return;
    }
    futures_timer::Delay::new(delay).await;
}

/// A timer future that completes at `deadline`, on any executor.
pub(crate) fn sleep_until(deadline: Instant) -> futures_timer::Delay {
    futures_timer::Delay::new(deadline.saturating_duration_since(Instant::now()))
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

/// Run `work`, a blocking call, off the executor's threads: on tokio's blocking pool
/// inside a tokio runtime, else on the `blocking` crate's pool.
///
/// If the future is dropped while `work` runs, `work` still completes and its result
/// is dropped where it ran; a result that owns a lock (a guard) thus releases it.
/// [`Error::Runtime`] when the runtime shut down before the work could run.
pub(crate) async fn run_blocking<F, R>(work: F) -> Result<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    #[cfg(feature = "tokio")]
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        return match runtime.spawn_blocking(work).await {
            Ok(result) => Ok(result),
            Err(err) if err.is_panic() => std::panic::resume_unwind(err.into_panic()),
            // Only a runtime shutting down cancels a blocking task before it starts.
            Err(err) => Err(crate::Error::Runtime {
                message: format!("the tokio runtime shut down: {err}"),
            }),
        };
    }
    Ok(blocking::unblock(work).await)
}

/// [`run_blocking`] for work that must happen once started, whatever becomes of the
/// future (a release): if the future is dropped before `work` ends, `work` still runs
/// to its end on the pool, and its result is dropped there.
pub(crate) async fn run_blocking_to_end<F, R>(work: F) -> Result<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    #[cfg(feature = "tokio")]
    if tokio::runtime::Handle::try_current().is_ok() {
        // Dropping tokio's JoinHandle detaches the work; it is never cancelled.
        return run_blocking(work).await;
    }
    /// Detaches the task when dropped, instead of cancelling it.
    struct Detached<R>(Option<blocking::Task<R>>);
    impl<R> Drop for Detached<R> {
        fn drop(&mut self) {
            if let Some(task) = self.0.take() {
                task.detach();
            }
        }
    }
    let mut task = Detached(Some(blocking::unblock(work)));
    let output = std::future::poll_fn(|cx| match &mut task.0 {
        Some(running) => std::pin::Pin::new(running).poll(cx),
        None => Poll::Pending,
    })
    .await;
    task.0 = None; // finished: nothing to detach
    Ok(output)
}

/// Whether this thread is polling an async task now, where a blocking call would stall
/// the executor: known with the `tokio` feature, for tokio's tasks and `block_on`
/// futures (not its blocking pool). Elsewhere (another executor, or no runtime) it says
/// no.
pub(crate) fn on_an_executor() -> bool {
    #[cfg(feature = "tokio")]
    {
        crate::runtime_check::polling_a_tokio_task()
    }
    #[cfg(not(feature = "tokio"))]
    {
        false
    }
}

/// Run `work` off this thread without waiting for it: on tokio's blocking pool inside
/// a tokio runtime (which, when it shuts down, waits for work that has started), else
/// on the `blocking` crate's pool. `work` must do what it must also when dropped
/// unrun (a runtime shutting down drops queued work instead of running it).
pub(crate) fn hand_off<F>(work: F)
where
    F: FnOnce() + Send + 'static,
{
    #[cfg(feature = "tokio")]
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        drop(runtime.spawn_blocking(work));
        return;
    }
    spawn_detached(work);
}

/// Run `work` on the `blocking` crate's thread pool and do not wait for it: for work
/// that must happen off the caller's thread whether or not anyone awaits it (a
/// background clean, a release handed over by a guard dropped on an executor).
pub(crate) fn spawn_detached<F>(work: F)
where
    F: FnOnce() + Send + 'static,
{
    blocking::unblock(work).detach();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sleep_completes_after_its_delay_on_any_executor() {
        let started = Instant::now();
        futures_lite::future::block_on(sleep(Duration::from_millis(50)));
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(50), "{took:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");
    }

    #[test]
    fn without_a_runtime_blocking_work_runs_on_a_pool() {
        let here = std::thread::current().id();
        let ran_on =
            futures_lite::future::block_on(run_blocking(move || std::thread::current().id()))
                .unwrap();
        assert_ne!(ran_on, here);
    }

    #[cfg(feature = "tokio")]
    #[test]
    fn inside_tokio_blocking_work_runs_on_the_pool() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let here = std::thread::current().id();
        let ran_on = runtime
            .block_on(run_blocking(move || std::thread::current().id()))
            .unwrap();
        assert_ne!(ran_on, here);
        let started = Instant::now();
        runtime.block_on(sleep(Duration::from_millis(30)));
        assert!(started.elapsed() >= Duration::from_millis(30));
    }
}
