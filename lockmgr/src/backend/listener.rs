//! The PostgreSQL release listener: wakes this process's waiters when another process
//! releases a lock they wait for.
//!
//! Deleting a row that a waiter has flagged sends `NOTIFY <channel>, '<name>'` (a
//! trigger, in the deleting transaction; the channel is the table's, see
//! [`TableName::channel`](super::table::TableName::channel)), and one listener thread
//! per database and table (a dedicated connection that `LISTEN`s) wakes the
//! [`WakeBoard`]. `LISTEN` needs a server session of its own: behind a transaction
//! pooler the listener connects to the store's listen URL
//! ([`LockStoreBuilder::listen_url`](crate::LockStoreBuilder::listen_url)), and
//! without one there is no listener.

use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use diesel::connection::{Connection, SimpleConnection};
use diesel::pg::PgConnection;

use super::conn::{with_libpq_settings, PoolOptions};
use super::table::quote;
use super::watchdog::{self, Snapshot, Socket};
use crate::database_url::{Backend, DatabaseUrl};
use crate::error::{Error, Result};
use crate::wakeup::WakeBoard;

/// How long the listener waits on its socket at a time while someone waits.
const WAIT_SLICE: Duration = Duration::from_secs(1);

/// How often the listener drains notifications while someone waits, when its
/// connection's socket could not be found to wait on.
const LISTEN_POLL: Duration = Duration::from_millis(2);

/// The listener closes its connection after this long without waiters.
const IDLE_DISCONNECT: Duration = Duration::from_secs(30);

/// Where a PostgreSQL store's release listener connects: the listen URL when one is
/// given, else the store's own URL unless that goes through a transaction pooler;
/// with lockmgr's client-side settings (connect timeout, TCP keepalives: it blocks
/// nobody, but must not hang forever either). `None` for the other backends.
pub(crate) fn listen_target(
    url: &DatabaseUrl,
    listen_url: Option<&str>,
    options: &PoolOptions,
) -> Result<Option<String>> {
    if url.backend != Backend::Postgres {
        return Ok(None);
    }
    let Some(raw) = listen_url.filter(|raw| !raw.trim().is_empty()) else {
        return Ok(
            (!url.pooled()).then(|| with_libpq_settings(&url.target, options.connect_timeout))
        );
    };
    let listen = DatabaseUrl::parse(raw)?;
    let refuse = |reason: &str| Error::InvalidUrl {
        url: listen.masked.clone(),
        reason: format!("as a listen URL: {reason}"),
    };
    if listen.backend != Backend::Postgres {
        return Err(refuse("it must be a PostgreSQL URL"));
    }
    if listen.pooled() {
        return Err(refuse(
            "LISTEN needs a session of its own, which a transaction pooler \
             (pgbouncer=true) does not give; use a direct URL",
        ));
    }
    Ok(Some(with_libpq_settings(
        &listen.target,
        options.connect_timeout,
    )))
}

/// Start the PostgreSQL listener of `board` (once per board): a thread with its own
/// connection to `url` that `LISTEN`s on `channel` and wakes the board for every
/// notification. While someone in the process waits it sleeps on its connection's
/// socket (`poll(2)`) until the server sends something; it reconnects after errors,
/// and ends when the board is gone.
pub(crate) fn spawn_pg_listener(board: &Arc<WakeBoard>, url: String, channel: String) {
    if !board.start_listening() {
        return;
    }
    let weak = Arc::downgrade(board);
    let spawned = std::thread::Builder::new()
        .name("lockmgr-listen".into())
        .spawn(move || pg_listen(weak, &url, &channel));
    if spawned.is_err() {
        board.stop_listening(); // waiters still poll
    }
}

/// The listener's connection, and our handle on its socket (when it could be told
/// apart from the process's other sockets) to wait on.
struct Listening {
    conn: PgConnection,
    socket: Option<Arc<Socket>>,
}

/// Connect to `url` and `LISTEN` on `channel`, finding the connection's socket as the
/// pool does (see [`super::watchdog`]).
fn listen(url: &str, channel: &str) -> Result<Listening, String> {
    let port = super::conn::server_port(url, 5432);
    let serial = watchdog::serialize_connects(port);
    let one_at_a_time = serial.lock().unwrap_or_else(|p| p.into_inner());
    let snapshot = Snapshot::take(port);
    let mut conn = PgConnection::establish(url).map_err(|e| e.to_string())?;
    let socket = snapshot.opened_socket();
    drop(one_at_a_time);
    conn.batch_execute(&format!("LISTEN {}", quote(channel, Backend::Postgres)))
        .map_err(|e| e.to_string())?;
    Ok(Listening { conn, socket })
}

fn pg_listen(board: Weak<WakeBoard>, url: &str, channel: &str) {
    let mut listening: Option<Listening> = None;
    let mut retry_in = Duration::from_millis(50);
    let mut last_waiter = Instant::now();
    loop {
        let Some(board) = board.upgrade() else { return };
        if !board.has_waiters() {
            // Nobody waits: sleep, but come back now and then to notice the end of the
            // board (the last store of this database dropped), and give the connection
            // back after a while without waiters.
            if last_waiter.elapsed() > IDLE_DISCONNECT {
                listening = None;
            }
            board.idle_until_waiters(Duration::from_secs(1));
            continue;
        }
        last_waiter = Instant::now();
        if listening.is_none() {
            match listen(url, channel) {
                Ok(l) => {
                    listening = Some(l);
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
        let Some(l) = listening.as_mut() else {
            continue;
        };
        let mut lost = false;
        for note in l.conn.notifications_iter() {
            match note {
                Ok(note) => board.wake(&note.payload),
                Err(err) => {
                    tracing::debug!(error = %err, "lockmgr: release listener lost its connection");
                    lost = true;
                    break;
                }
            }
        }
        drop(board);
        if lost {
            listening = None;
            continue;
        }
        // Everything received is handled: sleep until the server sends more (a
        // notification, or the connection's end), or a while has passed (to notice
        // the last waiter leaving).
        match &l.socket {
            Some(socket) => {
                socket.wait_readable(WAIT_SLICE);
            }
            None => std::thread::sleep(LISTEN_POLL),
        }
    }
}
