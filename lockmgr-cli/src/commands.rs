//! What each command does.

use std::io::{self, BufRead, Write};
use std::time::Duration;

use crate::args::{ClearLockArgs, Command, ListArgs, MigrateArgs, ResetLocksArgs, SetLockArgs};
use crate::output::{self, plural, DeclaredJson, LockJson, Table};
use crate::{EXIT_ERROR, EXIT_LOCK_FAIL};
use lockmgr::{declared_locks, validate_name, Error, LockStore, LockStoreBuilder, SetLockOptions};

/// Why a command did not succeed.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The library said no: bad input, database trouble, or `set-lock --fail` meeting
    /// a lock.
    Lock(Error),
    /// `reset-locks` was not confirmed; nothing was deleted.
    NotConfirmed(String),
    /// Writing to standard output failed.
    Output(io::Error),
}

impl From<Error> for Failure {
    fn from(err: Error) -> Self {
        Failure::Lock(err)
    }
}

impl From<io::Error> for Failure {
    fn from(err: io::Error) -> Self {
        Failure::Output(err)
    }
}

impl Failure {
    /// What to print after `lockmgr: `; `None` when there is nobody to tell (stdout
    /// was closed by the reader, as `lockmgr list-locks | head -1` does).
    pub(crate) fn message(&self) -> Option<String> {
        match self {
            Failure::Lock(err) => Some(with_hint(err)),
            Failure::NotConfirmed(message) => Some(message.clone()),
            Failure::Output(err) if err.kind() == io::ErrorKind::BrokenPipe => None,
            Failure::Output(err) => Some(format!("cannot write the output: {err}")),
        }
    }

    pub(crate) fn exit_code(&self) -> i32 {
        match self {
            Failure::Lock(Error::LockFail { .. }) => EXIT_LOCK_FAIL,
            _ => EXIT_ERROR,
        }
    }
}

/// The error's message, with what to do about it when that is not obvious.
fn with_hint(err: &Error) -> String {
    let message = err.to_string();
    let hint = match err {
        Error::Database(_) if message.contains("permission denied") => {
            "the database role needs SELECT, INSERT, UPDATE and DELETE on the lock table \
             (lockmgr_lock unless --table names another), and USAGE on its sequence \
             <table>_fence_seq"
        }
        Error::Database(_) if message.contains("lock") && message.contains("exist") => {
            "is the table there? `lockmgr migrate`, run as a role that may create tables, \
             creates it"
        }
        Error::Migration { .. } if message.contains("permission denied") => {
            "this role may not create or upgrade the table: run `lockmgr migrate` as one \
             that may, such as the database's owner"
        }
        _ => return message,
    };
    format!("{message} ({hint})")
}

/// What every command works with.
pub(crate) struct Ctx<'a> {
    pub(crate) out: &'a mut dyn Write,
    pub(crate) input: &'a mut dyn BufRead,
    pub(crate) quiet: bool,
    /// Whether to end the prompt's line after reading the answer (stdin is not a
    /// terminal, so the answer was not echoed).
    pub(crate) echo_newline: bool,
    /// The database URL as given (never printed: the store shows it masked).
    pub(crate) url: String,
    /// The lock table, when not the default.
    pub(crate) table: Option<String>,
    /// Whether `url` is the fallback: no URL given, none in the environment.
    pub(crate) url_is_default: bool,
    /// The backend and location of the database once opened, as shown to people.
    pub(crate) database: std::cell::OnceCell<String>,
}

type Outcome = Result<(), Failure>;

impl Ctx<'_> {
    pub(crate) fn dispatch(&mut self, command: &Command) -> Outcome {
        match command {
            Command::ListLocks(args) => self.list_locks(args),
            Command::ListDeclared(args) => self.list_declared(args),
            Command::SetLock(args) => self.set_lock(args),
            Command::ClearLock(args) => self.clear_lock(args),
            Command::ResetLocks(args) => self.reset_locks(args),
            Command::Migrate(args) => self.migrate(args),
        }
    }

    /// The store, with its table created or upgraded if need be. One connection is all
    /// a command needs.
    ///
    /// A role may be allowed to use the table but not to create tables, which the
    /// migration check needs: then the command goes on with the table as it is, and if
    /// that does not work either, the statement's error says why.
    fn open(&self) -> Result<LockStore, Error> {
        let builder = self.builder();
        let store = match builder.clone().open() {
            Err(migration @ Error::Migration { .. }) => {
                builder.migrate(false).open().map_err(|_| migration)
            }
            opened => opened,
        }?;
        self.remember(&store);
        Ok(store)
    }

    /// The store's settings: the URL and table given, one connection (all a command
    /// needs).
    fn builder(&self) -> LockStoreBuilder {
        let builder = LockStore::builder(&self.url).pool_size(1);
        match &self.table {
            Some(table) => builder.table(table),
            None => builder,
        }
    }

    /// Note which database this command reads, for [`database_line`](Ctx::database_line).
    fn remember(&self, store: &LockStore) {
        let _ = self
            .database
            .set(format!("{} {}", store.backend(), store.location()));
    }

    /// The line that ends human output: which database was read, and whether it is
    /// the fallback because no URL was set. `None` when no database was opened.
    pub(crate) fn database_line(&self) -> Option<String> {
        let database = self.database.get()?;
        let fallback = if self.url_is_default {
            " (no --database-url, LOCKMGR_DATABASE_URL or DATABASE_URL: the default)"
        } else {
            ""
        };
        Some(format!("Database: {database}{fallback}"))
    }

    fn list_locks(&mut self, args: &ListArgs) -> Outcome {
        let locks = self.open()?.list_locks()?;
        if args.json {
            let rows: Vec<LockJson> = locks.iter().map(LockJson::from).collect();
            output::write_json(self.out, &rows)?;
        } else if locks.is_empty() {
            writeln!(self.out, "There are no active locks.")?;
        } else {
            output::lock_table(&locks).write(self.out)?;
        }
        Ok(())
    }

    fn list_declared(&mut self, args: &ListArgs) -> Outcome {
        let declared = declared_locks();
        // Nothing declared: nothing to look up, so the database is not opened.
        let locks = if declared.is_empty() {
            Vec::new()
        } else {
            self.open()?.list_locks()?
        };
        let held = |decl: &lockmgr::DeclaredLock| -> Vec<String> {
            locks
                .iter()
                .filter(|lock| decl.matches(&lock.name))
                .map(|lock| lock.name.clone())
                .collect()
        };
        if args.json {
            let rows: Vec<DeclaredJson> = declared
                .iter()
                .map(|decl| DeclaredJson::new(decl, held(decl)))
                .collect();
            output::write_json(self.out, &rows)?;
            return Ok(());
        }
        if declared.is_empty() {
            writeln!(
                self.out,
                "No #[locked] functions are linked into this binary."
            )?;
            if !self.quiet {
                writeln!(
                    self.out,
                    "Your application's own command line lists its #[locked] functions: embed \
                     lockmgr_cli::Cli as a subcommand of it, or add a binary whose main is \
                     `lockmgr_cli::main()` (with `use your_crate as _;`). See the lockmgr-cli docs."
                )?;
            }
            return Ok(());
        }
        let mut table = Table::new(vec![
            "TEMPLATE",
            "EXPIRES",
            "WAIT",
            "KEEPALIVE",
            "MIN HOLD",
            "ONCE PER",
            "ON LOCKED",
            "FUNCTION",
            "SOURCE",
            "HELD",
        ]);
        for decl in &declared {
            let names = held(decl);
            let held_cell = match names.len() {
                0 => "no".to_string(),
                1 if names[0] == decl.name => "yes".to_string(),
                n => {
                    let shown: Vec<&str> = names.iter().take(3).map(String::as_str).collect();
                    let more = if n > 3 { ", …" } else { "" };
                    format!("yes: {}{more}", shown.join(", "))
                }
            };
            table.push(vec![
                decl.name.to_string(),
                decl.expires
                    .map_or_else(|| "never".to_string(), |d| output::setting(Some(d))),
                output::setting(decl.wait),
                if decl.keepalive { "yes" } else { "no" }.to_string(),
                output::setting(decl.min_hold),
                output::setting(decl.once_per),
                decl.on_locked.to_string(),
                decl.function.to_string(),
                format!("{}:{}", decl.file, decl.line),
                held_cell,
            ]);
        }
        table.write(self.out)?;
        Ok(())
    }

    fn set_lock(&mut self, args: &SetLockArgs) -> Outcome {
        for name in &args.names {
            validate_name(name)?;
        }
        let store = self.open()?;
        let timeout = (!args.no_timeout).then(|| Duration::from_secs(args.timeout));
        let mut options = SetLockOptions::new(timeout);
        if args.fail {
            options = options.fail();
        }
        if args.no_renew {
            options = options.no_renew();
        }
        if args.only_renew {
            options = options.only_renew();
        }
        let report = match store.set_lock(&args.names, options) {
            Ok(report) => report,
            Err(err @ Error::LockFail { .. }) => {
                if !self.quiet {
                    let name = err.lock_name().unwrap_or_default();
                    // Shown as it stands now; it may have gone since the call failed.
                    if let Ok(Some(lock)) = store.find_lock(name) {
                        writeln!(self.out, "This lock already exists:")?;
                        output::lock_table(&[lock]).write(self.out)?;
                    }
                }
                return Err(err.into());
            }
            Err(err) => return Err(err.into()),
        };
        if self.quiet {
            return Ok(());
        }
        let mut table = Table::new(vec![
            "NAME",
            "WAS LOCKED",
            "NOW LOCKED",
            "STATUS",
            "EXPIRES",
        ]);
        let yes_no = |b: bool| if b { "yes" } else { "no" }.to_string();
        for status in &report.statuses {
            table.push(vec![
                status.name.clone(),
                yes_no(status.was_locked),
                yes_no(status.now_locked()),
                status.action.to_string(),
                status
                    .lock
                    .as_ref()
                    .map_or_else(|| "-".to_string(), output::expiry),
            ]);
        }
        table.write(self.out)?;
        let skipped = report.skip_create + report.skip_renew;
        let mut summary = format!(
            "{} created, {} renewed, {} skipped",
            report.created, report.renewed, skipped
        );
        let mut reasons = Vec::new();
        if report.skip_renew > 0 {
            reasons.push(format!(
                "{} already locked, not renewed (--no-renew)",
                report.skip_renew
            ));
        }
        if report.skip_create > 0 {
            reasons.push(format!(
                "{} not locked, not created (--only-renew)",
                report.skip_create
            ));
        }
        if !reasons.is_empty() {
            summary.push_str(&format!(": {}", reasons.join("; ")));
        }
        writeln!(self.out, "{summary}.")?;
        Ok(())
    }

    fn clear_lock(&mut self, args: &ClearLockArgs) -> Outcome {
        for name in &args.names {
            validate_name(name)?;
        }
        let store = self.open()?;
        let mut names: Vec<&str> = Vec::new();
        for name in &args.names {
            if !names.contains(&name.as_str()) {
                names.push(name);
            }
        }
        let (mut released, mut kept) = (0, 0);
        let mut table = Table::new(vec!["NAME", "RESULT"]);
        for name in names.iter().copied() {
            let result = if args.if_expired {
                if store.unlock_if_expired(name)? {
                    released += 1;
                    "released (it had expired)"
                } else if store.is_locked(name)? {
                    kept += 1;
                    "kept: still live"
                } else {
                    "not locked"
                }
            } else if store.unlock(name)? {
                released += 1;
                "released"
            } else {
                "not locked"
            };
            table.push(vec![name.to_string(), result.to_string()]);
        }
        if self.quiet {
            return Ok(());
        }
        table.write(self.out)?;
        let not_locked = names.len() - released - kept;
        let mut summary = format!("Released {}", plural(released, "lock", "locks"));
        if kept > 0 {
            summary.push_str(&format!(
                "; kept {} that had not expired",
                plural(kept, "live lock", "live locks")
            ));
        }
        if not_locked > 0 {
            summary.push_str(&format!(
                "; {} not locked",
                plural(not_locked, "name was", "names were")
            ));
        }
        writeln!(self.out, "{summary}.")?;
        Ok(())
    }

    fn reset_locks(&mut self, args: &ResetLocksArgs) -> Outcome {
        let store = self.open()?;
        let locks = store.list_locks()?;
        if locks.is_empty() {
            if !self.quiet {
                writeln!(self.out, "There are no active locks; nothing to delete.")?;
            }
            return Ok(());
        }
        let count = plural(locks.len(), "lock", "locks");
        if !args.force || !self.quiet {
            writeln!(
                self.out,
                "{} will be deleted:",
                if locks.len() == 1 {
                    "This lock".to_string()
                } else {
                    format!("These {count}")
                }
            )?;
            output::lock_table(&locks).write(self.out)?;
        }
        if !args.force {
            write!(self.out, "Type YES to delete {count}: ")?;
            self.out.flush()?;
            let mut answer = String::new();
            let read = self.input.read_line(&mut answer).map_err(|e| {
                Failure::NotConfirmed(format!("cannot read the answer ({e}); nothing was deleted"))
            })?;
            if read == 0 || self.echo_newline {
                // Typed on a terminal, the answer's newline was echoed; piped, it was not.
                writeln!(self.out)?;
            }
            if read == 0 {
                return Err(Failure::NotConfirmed(
                    "no answer (standard input is closed); nothing was deleted. Type YES \
                     at the prompt, or use --force to delete without asking"
                        .to_string(),
                ));
            }
            let answer = answer.trim();
            if answer != "YES" {
                let shown: String = answer.chars().take(40).collect();
                return Err(Failure::NotConfirmed(format!(
                    "not confirmed (the answer was {shown:?}, not YES); nothing was deleted"
                )));
            }
        }
        // Exactly the acquisitions shown: one taken or re-taken since is left alone.
        let deleted = store.unlock_all(&locks)?;
        let expired_rows = store.clean_locks()?;
        if self.quiet {
            return Ok(());
        }
        if deleted == locks.len() {
            writeln!(self.out, "Deleted {}.", plural(deleted, "lock", "locks"))?;
        } else {
            let gone = locks.len() - deleted;
            writeln!(
                self.out,
                "Deleted {deleted} of {count}; {} released or taken again meanwhile, and left alone.",
                plural(gone, "was", "were")
            )?;
        }
        if expired_rows > 0 {
            writeln!(
                self.out,
                "Also removed {} of locks that had already expired.",
                plural(expired_rows, "row", "rows")
            )?;
        }
        Ok(())
    }

    fn migrate(&mut self, args: &MigrateArgs) -> Outcome {
        if args.print {
            write!(self.out, "{}", self.builder().migration_sql()?)?;
            return Ok(());
        }
        let store = self.builder().migrate(false).open()?;
        self.remember(&store);
        let applied = store.migrate()?;
        if self.quiet {
            return Ok(());
        }
        if applied.is_empty() {
            writeln!(self.out, "The lock table is up to date; nothing to do.")?;
        } else {
            writeln!(
                self.out,
                "Applied {}: {}.",
                plural(applied.len(), "migration", "migrations"),
                applied.join(", ")
            )?;
            writeln!(self.out, "The lock table {} is ready.", store.table())?;
        }
        Ok(())
    }
}
