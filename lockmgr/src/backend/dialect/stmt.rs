//! A hand-written SQL statement that diesel keeps as a prepared statement.
//!
//! `diesel::sql_query` marks itself unsafe to cache, so PostgreSQL would parse and
//! plan every lock statement anew. A [`Sql`] is built once per store (its text holds
//! the store's table name) and run many times with [`Values`]: diesel keys its
//! statement cache by the SQL text, which never changes for a given statement of a
//! store, so the prepared statement is reused on every later call on the same
//! connection (behind `?pgbouncer=true` the cache is off and each statement is sent
//! unnamed). Placeholders (`$1` on PostgreSQL, `?` elsewhere) are written by diesel
//! where a [`Slot`] stands.

use diesel::backend::Backend;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{BigInt, Bool, HasSqlType, Nullable, Text, Untyped};
use diesel::{QueryResult, RunQueryDsl};

/// Which value a bind parameter takes from the [`Values`] of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    /// The lock name (text).
    Name,
    /// The owner token of one acquisition (text).
    Owner,
    /// Who takes the lock (text).
    LockedBy,
    /// The taker's process id (nullable bigint).
    LockProcess,
    /// Microseconds until expiry (nullable bigint: `NULL` never expires).
    Expires,
    /// Whether a renewal adds time (bool).
    AddTime,
    /// Microseconds a lock is kept at least after it was taken (bigint).
    MinHold,
    /// How many rows at most (bigint).
    Limit,
}

#[derive(Debug, Clone)]
enum Piece {
    Text(String),
    Bind(Slot),
}

/// SQL text with bind parameters, fixed for the life of a store.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sql {
    pieces: Vec<Piece>,
}

impl Sql {
    /// A statement starting with `text`.
    pub(crate) fn new(text: &str) -> Sql {
        Sql::default().text(text)
    }

    /// `text` appended.
    pub(crate) fn text(mut self, text: &str) -> Sql {
        match self.pieces.last_mut() {
            Some(Piece::Text(last)) => last.push_str(text),
            _ => self.pieces.push(Piece::Text(text.to_string())),
        }
        self
    }

    /// A bind parameter appended.
    pub(crate) fn bind(mut self, slot: Slot) -> Sql {
        self.pieces.push(Piece::Bind(slot));
        self
    }

    /// `other` appended.
    #[cfg_attr(not(feature = "postgres"), allow(dead_code))]
    pub(crate) fn then(self, other: &Sql) -> Sql {
        other.pieces.iter().fold(self, |sql, piece| match piece {
            Piece::Text(text) => sql.text(text),
            Piece::Bind(slot) => sql.bind(*slot),
        })
    }

    /// The statement with the values of one call.
    pub(crate) fn with<'a>(&'a self, values: Values<'a>) -> Bound<'a> {
        Bound { sql: self, values }
    }

    /// The text with `?` for each parameter (tests and messages).
    #[cfg(test)]
    pub(crate) fn shown(&self) -> String {
        self.pieces
            .iter()
            .map(|piece| match piece {
                Piece::Text(text) => text.as_str(),
                Piece::Bind(_) => "?",
            })
            .collect()
    }
}

/// The values of one call; each [`Slot`] of the statement takes its own.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Values<'a> {
    pub(crate) name: &'a str,
    pub(crate) owner: &'a str,
    pub(crate) locked_by: &'a str,
    pub(crate) lock_process: Option<i64>,
    pub(crate) expires: Option<i64>,
    pub(crate) add_time: bool,
    pub(crate) min_hold: i64,
    pub(crate) limit: i64,
}

impl<'a> Values<'a> {
    /// Just a lock name.
    pub(crate) fn name(name: &'a str) -> Values<'a> {
        Values {
            name,
            ..Values::default()
        }
    }
}

/// A statement with its values, ready to run.
#[derive(Clone, Copy)]
pub(crate) struct Bound<'a> {
    sql: &'a Sql,
    values: Values<'a>,
}

impl<DB> QueryFragment<DB> for Bound<'_>
where
    DB: Backend + HasSqlType<Text> + HasSqlType<BigInt> + HasSqlType<Bool>,
    str: ToSql<Text, DB>,
    i64: ToSql<BigInt, DB>,
    Option<i64>: ToSql<Nullable<BigInt>, DB>,
    bool: ToSql<Bool, DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        let v = &self.values;
        for piece in &self.sql.pieces {
            match piece {
                Piece::Text(text) => out.push_sql(text),
                Piece::Bind(Slot::Name) => out.push_bind_param::<Text, str>(v.name)?,
                Piece::Bind(Slot::Owner) => out.push_bind_param::<Text, str>(v.owner)?,
                Piece::Bind(Slot::LockedBy) => out.push_bind_param::<Text, str>(v.locked_by)?,
                Piece::Bind(Slot::LockProcess) => {
                    out.push_bind_param::<Nullable<BigInt>, _>(&v.lock_process)?
                }
                Piece::Bind(Slot::Expires) => {
                    out.push_bind_param::<Nullable<BigInt>, _>(&v.expires)?
                }
                Piece::Bind(Slot::AddTime) => out.push_bind_param::<Bool, _>(&v.add_time)?,
                Piece::Bind(Slot::MinHold) => out.push_bind_param::<BigInt, _>(&v.min_hold)?,
                Piece::Bind(Slot::Limit) => out.push_bind_param::<BigInt, _>(&v.limit)?,
            }
        }
        Ok(())
    }
}

impl QueryId for Bound<'_> {
    type QueryId = ();
    // No static id: diesel caches the prepared statement by its SQL text instead.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for Bound<'_> {
    type SqlType = Untyped;
}

impl<Conn> RunQueryDsl<Conn> for Bound<'_> {}
