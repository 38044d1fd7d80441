//! Everything backend-specific: pool and connection setup, the socket watchdog, the
//! pooler probe, the statements of each database, the migrations and their ledger,
//! and PostgreSQL's release listener.
//!
//! The store above uses only what this module re-exports; nothing here knows the
//! store or the acquisition layer.

mod conn;
mod dialect;
mod listener;
pub(crate) mod migrate;
mod pooler;
mod table;
mod watchdog;

use std::time::Duration;

pub(crate) use conn::{
    link_lost, migration_error, resolve_pooler, with_libpq_settings, Checkout, Pool, PoolOptions,
};
pub use conn::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_STATEMENT_TIMEOUT};
pub(crate) use dialect::{expiry_micros, AcquireRequest, ReleaseRequest, RenewRequest, Session};
pub(crate) use listener::spawn_pg_listener;
pub(crate) use table::TableName;

use crate::database_url::Backend;

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
