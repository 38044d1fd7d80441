//! The command line, declared with clap's derive API. The doc comments here are the
//! help text `lockmgr --help` and `lockmgr COMMAND --help` print.

use clap::{Args, Parser, Subcommand};

/// See and manage the named, expiring locks of lockmgr.
///
/// Locks are rows of a table (`lockmgr_lock` unless --table names another) in a
/// database: PostgreSQL to share them
/// between hosts, or a SQLite file for one host. The table is created on first use.
#[derive(Debug, Parser)]
#[command(
    name = "lockmgr",
    version,
    arg_required_else_help = true,
    after_help = "\
Which database: --database-url, else $LOCKMGR_DATABASE_URL, else $DATABASE_URL, else the
SQLite file ./lockmgr.sqlite3. Passwords are never printed.

Exit status: 0 on success; 1 on an error or an unconfirmed reset-locks; 2 when
set-lock --fail met an existing lock (and for a mistyped command line)."
)]
pub struct Cli {
    /// The database holding the locks [default: $LOCKMGR_DATABASE_URL, else
    /// $DATABASE_URL, else ./lockmgr.sqlite3]
    ///
    /// postgres://USER:PASSWORD@HOST:PORT/DB (or postgresql://…) for PostgreSQL;
    /// sqlite://PATH, sqlite::memory: or a plain file path for SQLite. The password is
    /// never printed.
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,

    /// The table holding the locks [default: lockmgr_lock]
    ///
    /// A plain name (lowercase letters, digits and _), optionally as schema.table. Use
    /// the one the application's stores use; give lockmgr a table of its own when the
    /// database already has a lockmgr_lock that is not lockmgr's (django-lockmgr's).
    #[arg(long, global = true, value_name = "NAME")]
    pub table: Option<String>,

    /// Print only what was asked for: no status rows, summaries or progress messages
    ///
    /// The list commands still print their list. Errors are still printed (on stderr),
    /// and reset-locks without --force still shows what it would delete before asking.
    #[arg(short, long, global = true)]
    pub quiet: bool,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The commands of `lockmgr`.
// The doc comments below are help text, where "#[locked]" is literal text, not a link.
#[allow(rustdoc::broken_intra_doc_links)]
#[derive(Debug, Subcommand)]
pub enum Command {
    /// List the live locks
    ///
    /// One row per lock: its name, who holds it (locked_by, the host name by default),
    /// the holder's process id, when it expires and how long that is from now (by the
    /// database's clock), its fencing token, and the #[locked] declaration it comes from
    /// when its name matches one.
    ListLocks(ListArgs),

    /// List the #[locked] functions of this binary, and whether each is running now
    ///
    /// One row per declaration: its name template, expiry, wait, function, source line,
    /// and whether a live lock matches the template right now.
    ///
    /// The stand-alone `lockmgr` binary has none: run your application's own, a file
    /// src/bin/lockmgr.rs with `use your_crate as _; fn main() { lockmgr_cli::main() }`.
    ListDeclared(ListArgs),

    /// Create locks, or renew existing ones, by name
    ///
    /// By default a missing lock is created and an existing one is renewed to expire
    /// --timeout seconds from now (a renewal never shortens a lock). Use it to keep a job
    /// from starting (e.g. during maintenance). Prints one row per name and a summary.
    SetLock(SetLockArgs),

    /// Release locks by name, whoever holds them
    ///
    /// Names that are not locked are fine. Releasing the lock of a job that is still
    /// running lets another run start: with --if-expired only stale rows go.
    ClearLock(ClearLockArgs),

    /// Delete every live lock, after listing them and asking you to type YES
    ///
    /// Only the locks shown are deleted: a lock taken after the list was read is kept.
    /// The answer is read from standard input (a terminal or a pipe); anything but YES,
    /// or no answer (stdin closed, e.g. </dev/null), deletes nothing and exits with
    /// status 1. Confirmed resets also remove the rows of locks that had already expired.
    ResetLocks(ResetLocksArgs),

    /// Create or upgrade the lock table, and say what was done
    ///
    /// Every other command also does this on first use; run it on its own to prepare a
    /// database, e.g. as the table's owner when the application's role may not create
    /// tables. lockmgr records what it ran in a table of its own, TABLE_migrations.
    Migrate(MigrateArgs),
}

/// Options of `migrate`.
#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// Print the SQL that creates the table on the database's backend (with --table,
    /// that table), and apply it nowhere: for an application that keeps the lock
    /// table in its own migrations. No connection is made.
    #[arg(long)]
    pub print: bool,
}

/// Options of the listing commands.
#[derive(Debug, Args)]
pub struct ListArgs {
    /// Print a JSON array instead of a table, for scripts
    #[arg(long)]
    pub json: bool,
}

impl Command {
    /// Whether this command prints JSON (for scripts) rather than text for people.
    pub fn prints_json(&self) -> bool {
        match self {
            Command::ListLocks(args) | Command::ListDeclared(args) => args.json,
            _ => false,
        }
    }
}

/// Options of `set-lock`.
#[derive(Debug, Args)]
pub struct SetLockArgs {
    /// The lock names: 1 to 255 bytes each, no control characters (e.g. job:42)
    #[arg(value_name = "NAME", required = true)]
    pub names: Vec<String>,

    /// Leave locks that already exist as they are; only create the missing ones
    #[arg(short = 'n', long, conflicts_with = "only_renew")]
    pub no_renew: bool,

    /// Only renew locks that already exist; do not create the missing ones
    #[arg(short = 'r', long)]
    pub only_renew: bool,

    /// Make the locks never expire: they stay until `lockmgr clear-lock` or
    /// `lockmgr reset-locks` removes them
    #[arg(short = 'k', long, conflicts_with = "timeout")]
    pub no_timeout: bool,

    /// Seconds until the locks expire, counted from now by the database's clock
    #[arg(
        short,
        long,
        value_name = "SECS",
        default_value_t = 600,
        value_parser = timeout_secs
    )]
    pub timeout: u64,

    /// If any of the names is already locked: change nothing, print that lock, exit
    /// with status 2
    #[arg(short = 'e', long)]
    pub fail: bool,
}

/// Options of `clear-lock`.
#[derive(Debug, Args)]
pub struct ClearLockArgs {
    /// The lock names to release
    #[arg(value_name = "NAME", required = true)]
    pub names: Vec<String>,

    /// Only remove locks whose time is up (stale rows); keep the live ones
    #[arg(long)]
    pub if_expired: bool,
}

/// Options of `reset-locks`.
#[derive(Debug, Args)]
pub struct ResetLocksArgs {
    /// Do not ask: delete the listed locks at once (a lock taken meanwhile is still kept)
    #[arg(short, long)]
    pub force: bool,
}

/// A `--timeout`: whole seconds, at least 1 (a lock that never expires is `-k`).
fn timeout_secs(value: &str) -> Result<u64, String> {
    match value.trim().parse::<u64>() {
        Ok(0) => Err(
            "a timeout must be at least 1 second; use -k/--no-timeout for a \
                      lock that never expires"
                .to_string(),
        ),
        Ok(secs) => Ok(secs),
        Err(_) => Err(format!("{value:?} is not a whole number of seconds")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_argument_has_help() {
        fn check(cmd: &clap::Command, path: &str) {
            for arg in cmd.get_arguments() {
                assert!(
                    arg.get_help().is_some()
                        || ["help", "version"].contains(&arg.get_id().as_str()),
                    "{path} {} has no help",
                    arg.get_id()
                );
            }
            for sub in cmd.get_subcommands() {
                if sub.get_name() != "help" {
                    assert!(
                        sub.get_about().is_some(),
                        "{path} {} has no help",
                        sub.get_name()
                    );
                    check(sub, &format!("{path} {}", sub.get_name()));
                }
            }
        }
        check(&Cli::command(), "lockmgr");
    }

    #[test]
    fn set_lock_flags_map_as_documented() {
        let cli = Cli::try_parse_from(["lockmgr", "set-lock", "-n", "-k", "-e", "a", "b"]).unwrap();
        let Command::SetLock(args) = cli.command else {
            panic!("not set-lock: {cli:?}")
        };
        assert_eq!(args.names, ["a", "b"]);
        assert!(args.no_renew && args.no_timeout && args.fail && !args.only_renew);
        assert_eq!(args.timeout, 600);

        for bad in [
            &["lockmgr", "set-lock", "-n", "-r", "a"][..],
            &["lockmgr", "set-lock", "-k", "-t", "5", "a"],
            &["lockmgr", "set-lock", "-t", "0", "a"],
            &["lockmgr", "set-lock"],
        ] {
            assert!(Cli::try_parse_from(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn global_options_go_anywhere() {
        let cli =
            Cli::try_parse_from(["lockmgr", "list-locks", "--database-url", "x.db", "-q"]).unwrap();
        assert_eq!(cli.database_url.as_deref(), Some("x.db"));
        assert!(cli.quiet);
    }
}
