//! Waking waiters the moment a lock they wait for is released.
//!
//! Every database a process opens has one [`WakeBoard`], shared by all stores of that
//! database in the process. A waiter takes a [`Ticket`] for its lock name *before* it
//! tries to acquire; any release of that name afterwards moves the ticket's
//! generation on, and the waiter's sleep ends at once.
//!
//! Releases reach the board two ways:
//! - from this process: the store wakes the board right after its release statement;
//! - from other processes, on PostgreSQL only: the backend's release listener
//!   (`backend/listener.rs`) wakes the board for every release another process
//!   announces. Notifications are a hint: waiters also poll, and wake when the
//!   holder's lock expires.
//!
//! This module is a leaf: it knows nothing of databases, and both the store and the
//! acquisition layer use it.
//!
//! Waiters get no ordering guarantee: everyone woken retries, and whoever's insert
//! lands first wins.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, Weak};
use std::time::{Duration, Instant};

use event_listener::{Event, Listener};

/// The wake-ups of one database in this process: one [`Event`] per lock name that
/// someone waits for, so a release wakes only that name's waiters.
#[derive(Default)]
pub(crate) struct WakeBoard {
    state: Mutex<BoardState>,
    /// Notified when the first ticket of a quiet spell is taken (the listener starts
    /// listening then).
    waiters_arrived: Event,
    /// How many times a blocked [`Ticket::wait`] of this board was woken.
    #[cfg(test)]
    wake_ups: AtomicU64,
}

#[derive(Default)]
struct BoardState {
    /// Names someone waits for, with the number of tickets out for each.
    names: HashMap<String, (Arc<NameEvent>, usize)>,
    /// Tickets out, over all names (the listener only listens while this is not zero).
    waiting: usize,
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))] // for the release listener
    /// A PostgreSQL listener thread runs for this board.
    listening: bool,
}

/// The releases of one name: a generation that each release moves on, and the event
/// that wakes its waiters.
#[derive(Default)]
struct NameEvent {
    generation: AtomicU64,
    released: Event,
}

impl NameEvent {
    fn release(&self) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.released.notify(usize::MAX);
    }
}

impl WakeBoard {
    /// The board of the database `key` (a backend and its target), shared in this process.
    pub(crate) fn for_database(key: &str) -> Arc<WakeBoard> {
        static BOARDS: OnceLock<Mutex<HashMap<String, Weak<WakeBoard>>>> = OnceLock::new();
        let mut boards = lock(BOARDS.get_or_init(Default::default));
        if let Some(board) = boards.get(key).and_then(Weak::upgrade) {
            return board;
        }
        boards.retain(|_, board| board.strong_count() > 0);
        let board = Arc::new(WakeBoard::default());
        boards.insert(key.to_string(), Arc::downgrade(&board));
        board
    }

    /// Register interest in releases of `name` from now on.
    pub(crate) fn ticket(self: &Arc<Self>, name: &str) -> Ticket {
        let mut state = lock(&self.state);
        state.waiting += 1;
        let first = state.waiting == 1;
        let (event, tickets) = state.names.entry(name.to_string()).or_default();
        *tickets += 1;
        let event = Arc::clone(event);
        drop(state);
        if first {
            self.waiters_arrived.notify(usize::MAX); // a sleeping listener starts
        }
        let generation = event.generation.load(Ordering::SeqCst);
        Ticket {
            board: Arc::clone(self),
            name: name.to_string(),
            event,
            generation,
        }
    }

    /// `name` was released: wake everyone waiting for it (and only them).
    pub(crate) fn wake(&self, name: &str) {
        let event = lock(&self.state)
            .names
            .get(name)
            .map(|(event, _)| Arc::clone(event));
        if let Some(event) = event {
            event.release();
        }
    }

    /// Many locks may have gone at once (clean, reset): wake every waiter.
    pub(crate) fn wake_all(&self) {
        let events: Vec<Arc<NameEvent>> = lock(&self.state)
            .names
            .values()
            .map(|(event, _)| Arc::clone(event))
            .collect();
        events.iter().for_each(|event| event.release());
    }

    #[cfg_attr(not(feature = "postgres"), allow(dead_code))] // for the release listener
    /// Whether someone in this process waits for any lock of this database.
    pub(crate) fn has_waiters(&self) -> bool {
        lock(&self.state).waiting > 0
    }

    #[cfg_attr(not(feature = "postgres"), allow(dead_code))] // for the release listener
    /// Block the listener thread until someone waits (or `timeout` passes).
    pub(crate) fn idle_until_waiters(&self, timeout: Duration) {
        let listener = self.waiters_arrived.listen();
        if !self.has_waiters() {
            let _ = listener.wait_timeout(timeout);
        }
    }

    #[cfg_attr(not(feature = "postgres"), allow(dead_code))] // for the release listener
    /// Mark that a listener runs; false if one already does.
    pub(crate) fn start_listening(&self) -> bool {
        !std::mem::replace(&mut lock(&self.state).listening, true)
    }

    #[cfg_attr(not(feature = "postgres"), allow(dead_code))] // for the release listener
    pub(crate) fn stop_listening(&self) {
        lock(&self.state).listening = false;
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Interest in one lock name's releases, taken before an acquisition attempt.
pub(crate) struct Ticket {
    board: Arc<WakeBoard>,
    name: String,
    event: Arc<NameEvent>,
    generation: u64,
}

impl Ticket {
    /// Whether the name was released since the ticket was taken (or last renewed).
    fn has_released(&self) -> bool {
        self.event.generation.load(Ordering::SeqCst) != self.generation
    }

    /// Start over: only releases from now on count.
    pub(crate) fn renew(&mut self) {
        self.generation = self.event.generation.load(Ordering::SeqCst);
    }

    /// Sleep until the name is released or `timeout` passes; whether it was released.
    pub(crate) fn wait(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            if self.has_released() {
                return true;
            }
            // Listen first, then look again: a release between the two is not missed.
            let listener = self.event.released.listen();
            if self.has_released() {
                return true;
            }
            if listener.wait_deadline(deadline).is_none() {
                return self.has_released();
            }
            #[cfg(test)]
            self.board.wake_ups.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Completes when the name is released (the caller races it with a timer).
    pub(crate) async fn released(&self) {
        loop {
            if self.has_released() {
                return;
            }
            let listener = self.event.released.listen();
            if self.has_released() {
                return;
            }
            listener.await;
        }
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut state = lock(&self.board.state);
        state.waiting -= 1;
        if let Some((_, tickets)) = state.names.get_mut(&self.name) {
            *tickets -= 1;
            if *tickets == 0 {
                state.names.remove(&self.name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wake_ends_a_wait_and_only_for_that_name() {
        let board = WakeBoard::for_database("test:wake");
        let ticket = board.ticket("a");
        let other = board.ticket("b");
        let waker = Arc::clone(&board);
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            waker.wake("a");
        });
        assert!(ticket.wait(Duration::from_secs(10)));
        assert!(!other.wait(Duration::from_millis(20)));
        thread.join().unwrap();
    }

    #[test]
    fn a_release_before_the_wait_still_counts() {
        let board = WakeBoard::for_database("test:early");
        let mut ticket = board.ticket("a");
        board.wake("a");
        assert!(ticket.wait(Duration::ZERO));
        ticket.renew();
        assert!(!ticket.wait(Duration::from_millis(10)));
    }

    #[test]
    fn boards_are_shared_per_database_and_cleaned_up() {
        let a = WakeBoard::for_database("test:shared");
        let b = WakeBoard::for_database("test:shared");
        assert!(Arc::ptr_eq(&a, &b));
        let ticket = a.ticket("x");
        drop(ticket);
        assert!(lock(&a.state).names.is_empty());
        assert_eq!(lock(&a.state).waiting, 0);
    }

    /// 100 waiters on 100 names: releasing one name wakes its waiter and nobody else.
    #[test]
    fn a_release_wakes_only_the_waiters_of_its_name() {
        let board = WakeBoard::for_database("test:per-name");
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let waiters: Vec<_> = (0..100)
            .map(|i| {
                let board = Arc::clone(&board);
                let ready = ready_tx.clone();
                std::thread::spawn(move || {
                    let ticket = board.ticket(&format!("name:{i}"));
                    ready.send(()).unwrap();
                    ticket.wait(Duration::from_secs(if i == 0 { 30 } else { 3 }))
                })
            })
            .collect();
        for _ in 0..100 {
            ready_rx.recv().unwrap();
        }
        std::thread::sleep(Duration::from_millis(100)); // all are blocked now
        let before = board.wake_ups.load(Ordering::SeqCst);
        board.wake("name:0");
        let mut waiters = waiters.into_iter();
        assert!(
            waiters.next().unwrap().join().unwrap(),
            "its own waiter woke"
        );
        std::thread::sleep(Duration::from_millis(100));
        // One (its own waiter), or none if that one had not blocked yet: a loaded
        // machine may not have run it that far in 100 ms.
        let woken = board.wake_ups.load(Ordering::SeqCst) - before;
        assert!(woken <= 1, "others woke too: {woken} wake-ups");
        assert!(waiters.all(|w| !w.join().unwrap()), "others saw a release");
    }

    #[test]
    fn released_future_completes_on_release() {
        let board = WakeBoard::for_database("test:future");
        let ticket = board.ticket("f");
        let waker = Arc::clone(&board);
        let thread = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            waker.wake("f");
        });
        futures_lite::future::block_on(ticket.released());
        thread.join().unwrap();
    }
}
