//! Telling whether a PostgreSQL URL leads to the server itself or to a connection
//! pooler in front of it (PgBouncer, RDS Proxy, Supavisor, …).
//!
//! When a session starts, the server announces its backend's process id to the client
//! (the `BackendKeyData` message, kept for cancel requests; libpq's `PQbackendPID`). On
//! a direct connection that is the number `pg_backend_pid()` returns. A pooler answers
//! the startup itself and hands the client a key of its own making (PgBouncer's is
//! random), because the client's statements will run on whichever server session it
//! picks: the two numbers differ. One extra connection and one query, once per opened
//! store.
//!
//! The signal cannot tell transaction pooling from session pooling: a store that finds
//! a pooler and was not told otherwise (`?pgbouncer=false`) behaves as behind a
//! transaction pooler, which is correct in both modes.

// libpq's C API, through pq-sys (the bindings diesel itself links): diesel's
// `PgConnection` does not expose the announced backend pid.
#![allow(unsafe_code)]

use std::ffi::{CStr, CString};

use pq_sys::{
    ConnStatusType, ExecStatusType, PGconn, PGresult, PQbackendPID, PQclear, PQconnectdb,
    PQerrorMessage, PQexec, PQfinish, PQgetvalue, PQntuples, PQresultStatus, PQstatus,
};

/// Connect to `target` (a libpq URL) and tell whether a pooler sits between this
/// client and the server. The error is libpq's message (the caller scrubs it).
pub(crate) fn pooler_in_between(target: &str) -> Result<bool, String> {
    let conninfo =
        CString::new(target).map_err(|_| "the URL contains a NUL character".to_string())?;
    // SAFETY: `conninfo` is a valid C string for the duration of the call; the
    // returned pointer is owned by `Conn`, which frees it exactly once.
    let conn = Conn(unsafe { PQconnectdb(conninfo.as_ptr()) });
    if conn.0.is_null() {
        return Err("libpq could not allocate a connection".to_string());
    }
    // SAFETY: `conn.0` is a live PGconn until `conn` is dropped.
    if unsafe { PQstatus(conn.0) } != ConnStatusType::CONNECTION_OK {
        return Err(conn.error_message());
    }
    // SAFETY: as above.
    let announced = unsafe { PQbackendPID(conn.0) };
    // SAFETY: as above; the query is a static C string; the result is owned by
    // `Res`, which frees it exactly once.
    let result = Res(unsafe { PQexec(conn.0, c"SELECT pg_backend_pid()".as_ptr()) });
    // SAFETY: `result.0` is checked for null before use and lives until `result`
    // is dropped; PQgetvalue's pointer stays valid (and NUL-terminated) as long.
    let actual = unsafe {
        if result.0.is_null()
            || PQresultStatus(result.0) != ExecStatusType::PGRES_TUPLES_OK
            || PQntuples(result.0) != 1
        {
            return Err(conn.error_message());
        }
        let value = PQgetvalue(result.0, 0, 0);
        if value.is_null() {
            return Err("pg_backend_pid() returned nothing".to_string());
        }
        CStr::from_ptr(value).to_string_lossy().trim().to_string()
    };
    let actual: i32 = actual
        .parse()
        .map_err(|_| format!("pg_backend_pid() returned {actual:?}"))?;
    Ok(actual != announced)
}

/// A libpq connection, closed on drop.
struct Conn(*mut PGconn);

impl Conn {
    fn error_message(&self) -> String {
        // SAFETY: `self.0` is a live PGconn; the message is owned by it and copied
        // out here before it can go away.
        let message = unsafe { PQerrorMessage(self.0) };
        if message.is_null() {
            return "unknown libpq error".to_string();
        }
        // SAFETY: libpq's error message is a NUL-terminated string.
        unsafe { CStr::from_ptr(message) }
            .to_string_lossy()
            .trim()
            .to_string()
    }
}

impl Drop for Conn {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: a PGconn from PQconnectdb, freed once, here.
            unsafe { PQfinish(self.0) };
        }
    }
}

/// A libpq result, freed on drop.
struct Res(*mut PGresult);

impl Drop for Res {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: a PGresult from PQexec, freed once, here.
            unsafe { PQclear(self.0) };
        }
    }
}
