//! The `lockmgr` command line, as a library: the `lockmgr` binary is
//! `fn main() { lockmgr::cli::main() }`, and so is your application's own.
//!
//! Put this in your crate as `src/bin/lockmgr.rs` and `cargo run --bin lockmgr …` is the
//! full CLI, whose `list-declared` also lists your crate's `#[locked]` functions:
//!
//! ```no_run
//! // Link your library crate, or its #[locked] declarations are not in this binary.
//! // (Replace `my_app` with your crate's name; leave it out if the jobs are in this file.)
//! // use my_app as _;
//!
//! fn main() {
//!     lockmgr::cli::main()
//! }
//! ```
//!
//! | command | does |
//! |---|---|
//! | `list-locks [--json]` | the live locks, with time left by the database clock |
//! | `list-declared [--json]` | the `#[locked]` declarations linked into this binary |
//! | `set-lock [-n] [-r] [-k] [-t SECS] [-e] NAME…` | create or renew locks |
//! | `clear-lock [--if-expired] NAME…` | release locks by name |
//! | `reset-locks [-f]` | delete every live lock after showing them and a `YES` |
//! | `migrate` | create or upgrade the lock table |
//!
//! Exit status: [`EXIT_OK`], [`EXIT_ERROR`] (any error, or `reset-locks` not
//! confirmed), [`EXIT_LOCK_FAIL`] (`set-lock --fail` met an existing lock). Errors are
//! one line on stderr, `lockmgr: …`, with any database password masked.
//!
//! This module needs the cargo feature `cli` (on by default).

// The example above is the whole file a user writes, `fn main` included.
#![allow(clippy::needless_doctest_main)]

mod args;
mod commands;
mod output;

use std::ffi::OsString;
use std::io::{self, BufRead, IsTerminal, Write};

use clap::Parser;

pub use args::{ClearLockArgs, Cli, Command, ListArgs, ResetLocksArgs, SetLockArgs};

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
        let message = crate::mask_password(&message);
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
/// let status = lockmgr::cli::run_with(
///     ["lockmgr", "--database-url", &url, "list-locks"],
///     &mut std::io::empty(),
///     &mut out,
///     &mut err,
/// );
/// assert_eq!(status, 0);
/// assert_eq!(String::from_utf8(out).unwrap(), "There are no active locks.\n");
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
        let url = self
            .database_url
            .clone()
            .unwrap_or_else(crate::store::url_from_env);
        let mut ctx = commands::Ctx {
            out,
            input,
            quiet: self.quiet,
            echo_newline,
            url: url.clone(),
        };
        let result = ctx.dispatch(&self.command);
        let flushed = ctx.out.flush();
        match result.and_then(|()| flushed.map_err(commands::Failure::Output)) {
            Ok(()) => EXIT_OK,
            Err(failure) => {
                let Some(message) = failure.message() else {
                    return failure.exit_code(); // stdout was closed: nothing to say
                };
                let message = crate::scrub_password(&url, &one_line(&message));
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
