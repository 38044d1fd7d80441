//! A hand-written SQL statement that diesel may keep as a prepared statement.
//!
//! `diesel::sql_query` marks itself unsafe to cache, so PostgreSQL would parse and
//! plan every lock statement anew. [`Stmt`] is the same idea — SQL text plus bind
//! values — but its text is fixed per call site, so it is safe to cache: diesel keys
//! its statement cache by the SQL text and reuses the prepared statement on every
//! later call on the same connection. Placeholders (`$1` on PostgreSQL, `?` on
//! SQLite) are written by diesel where [`Stmt::bind_text`] and friends are called.

use diesel::backend::Backend;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::serialize::ToSql;
use diesel::sql_types::{BigInt, Bool, HasSqlType, Nullable, Text, Untyped};
use diesel::{QueryResult, RunQueryDsl};

enum Part<'a> {
    Sql(&'static str),
    Text(&'a str),
    OptBigInt(Option<i64>),
    Bool(bool),
}

/// SQL built from static fragments and bind values; load rows with
/// `QueryableByName` structs, or `execute` it.
#[derive(Default)]
pub(crate) struct Stmt<'a> {
    parts: Vec<Part<'a>>,
}

impl<'a> Stmt<'a> {
    pub(crate) fn new(sql: &'static str) -> Self {
        Stmt {
            parts: vec![Part::Sql(sql)],
        }
    }

    pub(crate) fn sql(mut self, sql: &'static str) -> Self {
        self.parts.push(Part::Sql(sql));
        self
    }

    pub(crate) fn bind_text(mut self, value: &'a str) -> Self {
        self.parts.push(Part::Text(value));
        self
    }

    /// ` AND owner = ?` when `owner` is given: the statement then only touches the row
    /// of that acquisition.
    pub(crate) fn and_owner(self, owner: Option<&'a str>) -> Self {
        match owner {
            Some(owner) => self.sql(" AND owner = ").bind_text(owner),
            None => self,
        }
    }

    pub(crate) fn bind_opt_bigint(mut self, value: Option<i64>) -> Self {
        self.parts.push(Part::OptBigInt(value));
        self
    }

    pub(crate) fn bind_bool(mut self, value: bool) -> Self {
        self.parts.push(Part::Bool(value));
        self
    }
}

impl<DB> QueryFragment<DB> for Stmt<'_>
where
    DB: Backend + HasSqlType<Text> + HasSqlType<BigInt> + HasSqlType<Bool>,
    str: ToSql<Text, DB>,
    Option<i64>: ToSql<Nullable<BigInt>, DB>,
    bool: ToSql<Bool, DB>,
{
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, DB>) -> QueryResult<()> {
        for part in &self.parts {
            match part {
                Part::Sql(sql) => out.push_sql(sql),
                Part::Text(value) => out.push_bind_param::<Text, str>(value)?,
                Part::OptBigInt(value) => out.push_bind_param::<Nullable<BigInt>, _>(value)?,
                Part::Bool(value) => out.push_bind_param::<Bool, _>(value)?,
            }
        }
        Ok(())
    }
}

impl QueryId for Stmt<'_> {
    type QueryId = ();
    // No static id: diesel caches the prepared statement by its SQL text instead.
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl Query for Stmt<'_> {
    type SqlType = Untyped;
}

impl<Conn> RunQueryDsl<Conn> for Stmt<'_> {}
