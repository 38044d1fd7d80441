//! Everything backend-specific: pool and connection setup, the socket watchdog, the
//! pooler probe, the statements of each database, the migrations and their ledger,
//! and PostgreSQL's release listener.
//!
//! The store above uses only what this module re-exports; nothing here knows the
//! store or the acquisition layer.

mod conn;
mod dialect;
#[cfg(feature = "postgres")]
mod listener;
mod migrate;
#[cfg(feature = "postgres")]
mod pooler;
mod table;
mod watchdog;

use std::time::Duration;

pub(crate) use conn::{link_lost, migration_error, resolve_pooler, Checkout, Pool, PoolOptions};
pub use conn::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_STATEMENT_TIMEOUT};
pub(crate) use dialect::{expiry_micros, AcquireRequest, ReleaseRequest, RenewRequest, Session};
#[cfg(feature = "postgres")]
pub(crate) use listener::listen_target;
pub(crate) use migrate::script as migration_script;
pub(crate) use table::TableName;
pub use table::DEFAULT_TABLE;

use crate::database_url::Backend;
#[cfg(not(feature = "postgres"))]
use crate::database_url::DatabaseUrl;
#[cfg(not(feature = "postgres"))]
use crate::error::Result;
use crate::wakeup::WakeBoard;

/// Start the release listener of `board` on `target` (see
/// [`listen_target`](listener::listen_target)), listening on `channel`.
pub(crate) fn spawn_listener(board: &std::sync::Arc<WakeBoard>, target: String, channel: String) {
    #[cfg(feature = "postgres")]
    listener::spawn_pg_listener(board, target, channel);
    #[cfg(not(feature = "postgres"))]
    let _ = (board, target, channel);
}

/// Without PostgreSQL there is no release listener.
#[cfg(not(feature = "postgres"))]
pub(crate) fn listen_target(
    _url: &DatabaseUrl,
    _listen_url: Option<&str>,
    _options: &PoolOptions,
) -> Result<Option<String>> {
    Ok(None)
}

/// The default longest sleep of a waiter between tries. Where releases are announced
/// across processes (PostgreSQL `NOTIFY`, to a store with a listener), polling is only
/// a fallback; elsewhere it is how a waiter in another process learns of a release,
/// so it stays short. PostgreSQL without a listener (behind a transaction pooler)
/// polls over the network: a little longer than SQLite's local file.
pub(crate) fn default_poll_cap(backend: Backend, listening: bool) -> Duration {
    match backend {
        Backend::Postgres if listening => Duration::from_millis(250),
        Backend::Postgres => Duration::from_millis(50),
        _ => Duration::from_millis(30),
    }
}
