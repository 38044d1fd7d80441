//! The lock table's name, and every database name derived from it.
//!
//! A table name is SQL text, not a bound value, so only plain identifiers are taken:
//! lowercase ASCII letters, digits and `_`, not starting with a digit, optionally
//! qualified as `schema.table`; each part is quoted per dialect where it is used.
//! Lowercase only, so that the name means the same table on every backend (PostgreSQL
//! folds unquoted names to lower case, MySQL's case rules depend on the server's file
//! system). At most 48 bytes in all, so that every derived name (the longest adds
//! `_notify_release`) stays within PostgreSQL's 63-byte identifiers.

use crate::database_url::Backend;

/// The lock table's name unless [`LockStoreBuilder::table`](crate::LockStoreBuilder::table)
/// names another.
pub const DEFAULT_TABLE: &str = "lockmgr_lock";

/// The longest table name taken, `schema.` included.
const MAX_LEN: usize = 48;

/// SQLite: the name of the fence row, the lock table's row that holds the last fence
/// handed out (see the SQLite migration `lockmgr_fence_row`), as a SQL expression. It
/// starts with a control character, which [`validate_name`](crate::validate_name)
/// refuses in a lock name: no lock can be called that.
pub(crate) const FENCE_ROW: &str = "(char(1) || 'last fence')";

/// A valid lock table name: `table` or `schema.table`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct TableName {
    schema: Option<String>,
    table: String,
}

impl Default for TableName {
    fn default() -> Self {
        TableName {
            schema: None,
            table: DEFAULT_TABLE.to_string(),
        }
    }
}

impl std::fmt::Display for TableName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(schema) = &self.schema {
            write!(f, "{schema}.")?;
        }
        f.write_str(&self.table)
    }
}

impl TableName {
    /// Check `raw`; the error says what is wrong with it.
    pub(crate) fn parse(raw: &str) -> Result<TableName, String> {
        if raw.len() > MAX_LEN {
            return Err(format!("longer than {MAX_LEN} bytes"));
        }
        let (schema, table) = match raw.split_once('.') {
            Some((schema, table)) => (Some(schema), table),
            None => (None, raw),
        };
        for part in schema.iter().chain([&table]) {
            check_identifier(part)?;
        }
        Ok(TableName {
            schema: schema.map(str::to_string),
            table: table.to_string(),
        })
    }

    /// Whether this is [`DEFAULT_TABLE`], whose derived names predate the option.
    fn is_default(&self) -> bool {
        self.schema.is_none() && self.table == DEFAULT_TABLE
    }

    /// The schema, if the name has one.
    pub(crate) fn schema(&self) -> Option<&str> {
        self.schema.as_deref()
    }

    /// The table without its schema.
    pub(crate) fn bare(&self) -> &str {
        &self.table
    }

    /// A name in the same schema: the table's own name plus `suffix`.
    fn sibling(&self, name: String) -> TableName {
        TableName {
            schema: self.schema.clone(),
            table: name,
        }
    }

    /// The name quoted for `backend`, schema included.
    pub(crate) fn quoted(&self, backend: Backend) -> String {
        match &self.schema {
            Some(schema) => format!("{}.{}", quote(schema, backend), quote(&self.table, backend)),
            None => quote(&self.table, backend),
        }
    }

    /// PostgreSQL: the sequence that hands out fences.
    pub(crate) fn fence_sequence(&self) -> TableName {
        self.sibling(format!("{}_fence_seq", self.table))
    }

    /// MySQL (and SQLite before its second migration): the one-row table holding the
    /// last fence handed out.
    pub(crate) fn fence_table(&self) -> TableName {
        if self.is_default() {
            return self.sibling("lockmgr_fence".to_string());
        }
        self.sibling(format!("{}_fence", self.table))
    }

    /// A trigger on the table: its name plus `suffix` (`_release`, `_fence`, …).
    pub(crate) fn trigger(&self, suffix: &str) -> TableName {
        self.sibling(format!("{}{suffix}", self.table))
    }

    /// PostgreSQL: the function the release trigger runs.
    pub(crate) fn notify_function(&self) -> TableName {
        if self.is_default() {
            return self.sibling("lockmgr_notify_release".to_string());
        }
        self.sibling(format!("{}_notify_release", self.table))
    }

    /// PostgreSQL: the `LISTEN`/`NOTIFY` channel of this table's releases.
    pub(crate) fn channel(&self) -> String {
        if self.is_default() {
            return "lockmgr_release".to_string();
        }
        format!("{self}_release")
    }

    /// lockmgr's own migration ledger for this table.
    pub(crate) fn ledger(&self) -> TableName {
        self.sibling(format!("{}_migrations", self.table))
    }
}

/// `part` is a plain lowercase identifier.
fn check_identifier(part: &str) -> Result<(), String> {
    let mut chars = part.chars();
    match chars.next() {
        None => Err("an empty name (or schema)".to_string()),
        Some(c) if c.is_ascii_digit() => Err(format!("{part:?} starts with a digit")),
        _ => match part
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_'))
        {
            Some(c) => Err(format!(
                "{c:?} is not allowed: use lowercase letters, digits and _, \
                 as `table` or `schema.table`"
            )),
            None => Ok(()),
        },
    }
}

/// An identifier quoted for `backend` (valid identifiers hold no quote character).
pub(crate) fn quote(identifier: &str, backend: Backend) -> String {
    match backend {
        Backend::Mysql => format!("`{identifier}`"),
        _ => format!("\"{identifier}\""),
    }
}

/// A SQL string literal (valid identifiers hold no quote character).
pub(crate) fn literal(text: &str) -> String {
    format!("'{text}'")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_names_and_schemas_are_taken() {
        let t = TableName::parse("jobs_lock").unwrap();
        assert_eq!(t.quoted(Backend::Postgres), "\"jobs_lock\"");
        assert_eq!(t.quoted(Backend::Mysql), "`jobs_lock`");
        let t = TableName::parse("ops.locks2").unwrap();
        assert_eq!(t.quoted(Backend::Sqlite), "\"ops\".\"locks2\"");
        assert_eq!(
            t.fence_sequence().quoted(Backend::Postgres),
            "\"ops\".\"locks2_fence_seq\""
        );
        assert_eq!(t.channel(), "ops.locks2_release");
    }

    #[test]
    fn anything_else_is_refused() {
        for bad in [
            "", "Locks", "1locks", "a.b.c", "a.", ".a", "lo-cks", "lock s", "l\"x", "l`x",
            "l;drop", "é",
        ] {
            assert!(TableName::parse(bad).is_err(), "{bad:?}");
        }
        assert!(TableName::parse(&"x".repeat(49)).is_err());
        assert!(TableName::parse(&"x".repeat(48)).is_ok());
    }

    #[test]
    fn the_default_table_keeps_its_historical_names() {
        let t = TableName::default();
        assert_eq!(t.fence_table().to_string(), "lockmgr_fence");
        assert_eq!(t.fence_sequence().to_string(), "lockmgr_lock_fence_seq");
        assert_eq!(t.notify_function().to_string(), "lockmgr_notify_release");
        assert_eq!(t.channel(), "lockmgr_release");
        let other = TableName::parse("jobs").unwrap();
        assert_eq!(other.fence_table().to_string(), "jobs_fence");
        assert_eq!(other.notify_function().to_string(), "jobs_notify_release");
        assert_eq!(other.channel(), "jobs_release");
    }
}
