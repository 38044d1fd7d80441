//! Waking waiters the moment a lock they wait for is released.
//!
//! Every database a process opens has one [`WakeBoard`], shared by all stores of that
//! database in the process. A waiter takes a [`Ticket`] for its lock name *before* it
//! tries to acquire; any release of that name afterwards moves the ticket's
//! generation on, and the waiter's sleep ends at once.
//!
//! Releases reach the board two ways:
//! - from this process: the store wakes the board right after its release statement;
//! - from other processes, on PostgreSQL only: deleting a row that a waiter has
//!   flagged sends `NOTIFY lockmgr_release, '<name>'` (a trigger, in the deleting
//!   transaction), and one
//!   listener thread per database (a dedicated connection that `LISTEN`s) wakes the
//!   board. `LISTEN` needs a server session of its own: behind a transaction pooler
//!   the listener connects to the store's listen URL
//!   ([`LockStoreBuilder::listen_url`](crate::LockStoreBuilder::listen_url)), and
//!   without one there is no listener. Notifications are a hint: waiters also poll,
//!   and wake when the holder's lock expires.
//!
//! Waiters get no ordering guarantee: everyone woken retries, and whoever's insert
//! lands first wins.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, Weak};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// The `LISTEN`/`NOTIFY` channel of lockmgr releases on PostgreSQL.
pub(crate) const CHANNEL: &str = "lockmgr_release";

/// How often the listener thread drains notifications while someone waits.
const LISTEN_POLL: Duration = Duration::from_millis(2);

/// The listener closes its connection after this long without waiters.
const IDLE_DISCONNECT: Duration = Duration::from_secs(30);

/// The wake-ups of one database in this process.
#[derive(Default)]
pub(crate) struct WakeBoard {
    state: Mutex<BoardState>,
    changed: Condvar,
}

#[derive(Default)]
struct BoardState {
    /// Names someone waits for: release generation, number of tickets, async wakers.
    names: HashMap<String, Entry>,
    /// Tickets out, over all names (the listener only polls while this is not zero).
    waiting: usize,
    /// A PostgreSQL listener thread runs for this board.
    listening: bool,
}

#[derive(Default)]
struct Entry {
    generation: u64,
    tickets: usize,
    wakers: Vec<Waker>,
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
        let entry = state.names.entry(name.to_string()).or_default();
        entry.tickets += 1;
        let generation = entry.generation;
        drop(state);
        self.changed.notify_all(); // a sleeping listener starts polling
        Ticket {
            board: Arc::clone(self),
            name: name.to_string(),
            generation,
        }
    }

    /// `name` was released: wake everyone waiting for it.
    pub(crate) fn wake(&self, name: &str) {
        let mut state = lock(&self.state);
        let Some(entry) = state.names.get_mut(name) else {
            return; // nobody waits for it
        };
        entry.generation += 1;
        let wakers = std::mem::take(&mut entry.wakers);
        drop(state);
        self.changed.notify_all();
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Many locks may have gone at once (clean, reset): wake every waiter.
    pub(crate) fn wake_all(&self) {
        let mut state = lock(&self.state);
        let mut wakers = Vec::new();
        for entry in state.names.values_mut() {
            entry.generation += 1;
            wakers.append(&mut entry.wakers);
        }
        drop(state);
        self.changed.notify_all();
        wakers.into_iter().for_each(Waker::wake);
    }

    /// Whether someone in this process waits for any lock of this database.
    fn has_waiters(&self) -> bool {
        lock(&self.state).waiting > 0
    }

    /// Block the listener thread until someone waits (or `timeout` passes).
    fn idle_until_waiters(&self, timeout: Duration) {
        let state = lock(&self.state);
        if state.waiting == 0 {
            let _unused = self.changed.wait_timeout(state, timeout);
        }
    }

    /// Mark that a listener runs; false if one already does.
    pub(crate) fn start_listening(&self) -> bool {
        !std::mem::replace(&mut lock(&self.state).listening, true)
    }

    fn stop_listening(&self) {
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
    generation: u64,
}

impl Ticket {
    /// Whether the name was released since the ticket was taken (or last renewed).
    fn has_released(&self, state: &BoardState) -> bool {
        state
            .names
            .get(&self.name)
            .is_some_and(|e| e.generation != self.generation)
    }

    /// Start over: only releases from now on count.
    pub(crate) fn renew(&mut self) {
        let state = lock(&self.board.state);
        if let Some(entry) = state.names.get(&self.name) {
            self.generation = entry.generation;
        }
    }

    /// Sleep until the name is released or `timeout` passes; whether it was released.
    pub(crate) fn wait(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = lock(&self.board.state);
        loop {
            if self.has_released(&state) {
                return true;
            }
            let Some(left) = deadline
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero())
            else {
                return false;
            };
            state = self
                .board
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }
}

impl Ticket {
    /// A future that completes when the name is released (the caller races it with a
    /// timer).
    pub(crate) fn released(&self) -> Released<'_> {
        Released { ticket: self }
    }
}

/// Completes when the ticket's name is released; see [`Ticket::released`].
pub(crate) struct Released<'a> {
    ticket: &'a Ticket,
}

impl Future for Released<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = lock(&self.ticket.board.state);
        if self.ticket.has_released(&state) {
            return Poll::Ready(());
        }
        if let Some(entry) = state.names.get_mut(&self.ticket.name) {
            if !entry.wakers.iter().any(|w| w.will_wake(cx.waker())) {
                entry.wakers.push(cx.waker().clone());
            }
        }
        Poll::Pending
    }
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut state = lock(&self.board.state);
        state.waiting -= 1;
        if let Some(entry) = state.names.get_mut(&self.name) {
            entry.tickets -= 1;
            if entry.tickets == 0 {
                state.names.remove(&self.name);
            }
        }
    }
}

/// Start the PostgreSQL listener of `board` (once per board): a thread with its own
/// connection to `url` that `LISTEN`s on [`CHANNEL`] and wakes the board for every
/// notification. It polls only while someone in the process waits, reconnects after
/// errors, and ends when the board is gone.
pub(crate) fn spawn_pg_listener(board: &Arc<WakeBoard>, url: String) {
    if !board.start_listening() {
        return;
    }
    let weak = Arc::downgrade(board);
    let spawned = std::thread::Builder::new()
        .name("lockmgr-listen".into())
        .spawn(move || pg_listen(weak, &url));
    if spawned.is_err() {
        board.stop_listening(); // waiters still poll
    }
}

fn pg_listen(board: Weak<WakeBoard>, url: &str) {
    use diesel::connection::{Connection, SimpleConnection};
    use diesel::pg::PgConnection;

    let mut conn: Option<PgConnection> = None;
    let mut retry_in = Duration::from_millis(50);
    let mut last_waiter = Instant::now();
    loop {
        let Some(board) = board.upgrade() else { return };
        if !board.has_waiters() {
            // Nobody waits: sleep, but come back now and then to notice the end of the
            // board (the last store of this database dropped), and give the connection
            // back after a while without waiters.
            if last_waiter.elapsed() > IDLE_DISCONNECT {
                conn = None;
            }
            board.idle_until_waiters(Duration::from_secs(1));
            continue;
        }
        last_waiter = Instant::now();
        if conn.is_none() {
            match PgConnection::establish(url).and_then(|mut c| {
                c.batch_execute(&format!("LISTEN {CHANNEL}"))
                    .map_err(|e| diesel::ConnectionError::BadConnection(e.to_string()))?;
                Ok(c)
            }) {
                Ok(c) => {
                    conn = Some(c);
                    retry_in = Duration::from_millis(50);
                }
                Err(err) => {
                    tracing::debug!(error = %err, "lockmgr: release listener cannot connect; waiters poll");
                    drop(board);
                    std::thread::sleep(retry_in);
                    retry_in = (retry_in * 2).min(Duration::from_secs(2));
                    continue;
                }
            }
        }
        let c = conn.as_mut().expect("connected above");
        let mut lost = false;
        for note in c.notifications_iter() {
            match note {
                Ok(note) => board.wake(&note.payload),
                Err(err) => {
                    tracing::debug!(error = %err, "lockmgr: release listener lost its connection");
                    lost = true;
                    break;
                }
            }
        }
        if lost {
            conn = None;
        }
        drop(board);
        std::thread::sleep(LISTEN_POLL);
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
}
