//! The `lockmgr` command line, as a library: the `lockmgr` binary of this crate is
//! `fn main() { lockmgr_cli::main() }`, and an application can have the same commands
//! — whose `list-declared` then also lists the application's own `#[locked]` jobs —
//! in either of two ways.
//!
//! **As a subcommand of its own clap command line** (`my-app locks list-locks`):
//! flatten [`Cli`] into a subcommand and hand it to [`Cli::run`] or [`run_cli`]:
//!
//! ```no_run
//! use clap::{Parser, Subcommand};
//!
//! #[derive(Parser)]
//! struct MyApp {
//!     #[command(subcommand)]
//!     command: MyCommand,
//! }
//!
//! #[derive(Subcommand)]
//! enum MyCommand {
//!     /// Run the workers
//!     Serve,
//!     /// See and manage the locks of the app's jobs
//!     Locks(lockmgr_cli::Cli),
//! }
//!
//! fn main() {
//!     match MyApp::parse().command {
//!         MyCommand::Serve => { /* … */ }
//!         MyCommand::Locks(cli) => std::process::exit(lockmgr_cli::run_cli(cli)),
//!     }
//! }
//! ```
//!
//! **As a binary of its own**, `src/bin/app-locks.rs` in the application's package:
//!
//! ```no_run
//! // Link the application's library, or its #[locked] declarations are not in this
//! // binary. (Replace `my_app` with your crate's name; leave it out if the jobs are
//! // in this file.)
//! // use my_app as _;
//!
//! fn main() {
//!     lockmgr_cli::main()
//! }
//! ```
//!
//! (With two binaries in the package, set `default-run` in its `Cargo.toml` so that
//! a plain `cargo run` still starts the application.)
//!
//! | command | does |
//! |---|---|
//! | `list-locks [--json]` | the live locks, with time left by the database clock |
//! | `list-declared [--json]` | the `#[locked]` declarations linked into this binary |
//! | `set-lock [-n] [-r] [-k] [-t SECS] [-e] NAME…` | create or renew locks |
//! | `clear-lock [--if-expired] NAME…` | release locks by name |
//! | `reset-locks [-f]` | delete every live lock after showing them and a `YES` |
//! | `migrate [--print]` | create or upgrade the lock table; `--print`: only print its SQL |
//!
//! Exit status: [`EXIT_OK`], [`EXIT_ERROR`] (any error, or `reset-locks` not
//! confirmed), [`EXIT_LOCK_FAIL`] (`set-lock --fail` met an existing lock). Errors are
//! one line on stderr, `lockmgr: …`, with any database password masked.

// The example above is the whole file a user writes, `fn main` included.
#![allow(clippy::needless_doctest_main)]

mod args;
mod commands;
mod output;

use std::ffi::OsString;
use std::io::{self, BufRead, IsTerminal, Write};

use clap::Parser;

pub use args::{ClearLockArgs, Cli, Command, ListArgs, MigrateArgs, ResetLocksArgs, SetLockArgs};

/// Exit status of a command that did what it was asked.
pub const EXIT_OK: i32 = 0;
/// Exit status of a command that failed (bad input, database error), and of
/// `reset-locks` when the reset was not confirmed.
pub const EXIT_ERROR: i32 = 1;
/// Exit status of `set-lock --fail` when a name was already locked (nothing was kept).
/// clap also exits with 2 on a mistyped command line.
pub const EXIT_LOCK_FAIL: i32 = 2;

/// Run the command line of this process and exit with its status. This is the whole
/// body of the `lockmgr` binary, and of an application's own `src/bin/lockmgr.rs`.
///
/// A bug that panics still ends with a one-line message (no backtrace), with any
/// database password masked.
pub fn main() -> ! {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".to_string());
        let at = info
            .location()
            .map(|l| format!(" at {}:{}", l.file(), l.line()))
            .unwrap_or_default();
        let message = lockmgr::mask_password(&message);
        eprintln!(
            "lockmgr: internal error{at}: {}; please report it",
            one_line(&message)
        );
    }));
    let code = run(std::env::args_os());
    std::process::exit(code)
}

/// Parse `args` (the first one is the program name) and run the command on this
/// process's standard input, output and error; the exit status.
pub fn run<I, T>(args: I) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(err) => {
            // clap prints help, version and usage errors itself (in colour on a terminal).
            let _ = err.print();
            return err.exit_code();
        }
    };
    run_cli(cli)
}

/// Run an already parsed command line on this process's standard input, output and
/// error; the exit status. For an application that has [`Cli`] as a subcommand of
/// its own clap command line (see the [crate docs](crate)).
pub fn run_cli(cli: Cli) -> i32 {
    let stdin = io::stdin();
    let echo_newline = !stdin.is_terminal();
    let mut input = stdin.lock();
    let mut out = io::stdout().lock();
    let mut err = io::stderr().lock();
    cli.execute(&mut input, &mut out, &mut err, echo_newline)
}

/// Like [`run`], with the given streams instead of the process's: `input` answers the
/// `reset-locks` prompt. For embedding the CLI and for tests.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// # let url = dir.path().join("locks.sqlite3").to_str().unwrap().to_string();
/// let (mut out, mut err) = (Vec::new(), Vec::new());
/// let status = lockmgr_cli::run_with(
///     ["lockmgr", "--database-url", &url, "list-locks"],
///     &mut std::io::empty(),
///     &mut out,
///     &mut err,
/// );
/// assert_eq!(status, 0);
/// let out = String::from_utf8(out).unwrap();
/// assert!(out.starts_with("There are no active locks.\nDatabase: sqlite "));
/// ```
pub fn run_with<I, T>(
    args: I,
    input: &mut dyn BufRead,
    out: &mut dyn Write,
    err: &mut dyn Write,
) -> i32
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    match Cli::try_parse_from(args) {
        Ok(cli) => cli.run(input, out, err),
        Err(e) => {
            let text = e.render().to_string();
            let _ = if e.use_stderr() {
                err.write_all(text.as_bytes())
            } else {
                out.write_all(text.as_bytes())
            };
            e.exit_code()
        }
    }
}

impl Cli {
    /// Run this parsed command line on the given streams; the exit status.
    pub fn run(self, input: &mut dyn BufRead, out: &mut dyn Write, err: &mut dyn Write) -> i32 {
        self.execute(input, out, err, true)
    }

    fn execute(
        self,
        input: &mut dyn BufRead,
        out: &mut dyn Write,
        err: &mut dyn Write,
        echo_newline: bool,
    ) -> i32 {
        let given = self.database_url.clone().or_else(lockmgr::url_from_env);
        let url_is_default = given.is_none();
        let url = given.unwrap_or_else(|| lockmgr::DEFAULT_SQLITE_PATH.to_string());
        let mut ctx = commands::Ctx {
            out,
            input,
            quiet: self.quiet,
            echo_newline,
            url: url.clone(),
            table: self.table.clone(),
            url_is_default,
            database: std::cell::OnceCell::new(),
        };
        let mut result = ctx.dispatch(&self.command);
        // Human output ends by naming the database it read; JSON and --quiet
        // output are only what was asked for.
        if result.is_ok() && !self.quiet && !self.command.prints_json() {
            if let Some(line) = ctx.database_line() {
                result = writeln!(ctx.out, "{line}").map_err(commands::Failure::Output);
            }
        }
        let flushed = ctx.out.flush();
        match result.and_then(|()| flushed.map_err(commands::Failure::Output)) {
            Ok(()) => EXIT_OK,
            Err(failure) => {
                let Some(message) = failure.message() else {
                    return failure.exit_code(); // stdout was closed: nothing to say
                };
                let message = lockmgr::scrub_password(&url, &one_line(&message));
                let _ = writeln!(err, "lockmgr: {message}");
                let _ = err.flush();
                failure.exit_code()
            }
        }
    }
}

/// Error messages are one line: a driver's multi-line message is joined.
fn one_line(message: &str) -> String {
    message
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_become_one_line() {
        assert_eq!(
            one_line("connection refused\n\tIs the server running?\n"),
            "connection refused Is the server running?"
        );
    }
}
