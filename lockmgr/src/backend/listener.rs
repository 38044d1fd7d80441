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

use super::conn::{with_libpq_settings, PoolOptions};
use crate::database_url::{Backend, DatabaseUrl};
use crate::error::{Error, Result};
use crate::wakeup::WakeBoard;

/// How often the listener thread drains notifications while someone waits.
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
/// notification. It polls only while someone in the process waits, reconnects after
/// errors, and ends when the board is gone.
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

fn pg_listen(board: Weak<WakeBoard>, url: &str, channel: &str) {
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
                c.batch_execute(&format!(
                    "LISTEN {}",
                    super::table::quote(channel, crate::Backend::Postgres)
                ))
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
        let Some(c) = conn.as_mut() else {
            continue;
        };
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
