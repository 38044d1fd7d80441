//! The second way to give an application the lockmgr commands: a binary of its own
//! that is the whole lockmgr command line, whose `list-declared` also lists the
//! `#[locked]` jobs of this crate.
//!
//! `cargo run -p lockmgr-example-app --bin app-locks -- list-declared`
//!
//! (The first way, a `locks` subcommand of the application's own command line, is in
//! `src/main.rs`.)

// Link the application's library: its #[locked] declarations are registered only if
// its code is part of this binary, and nothing else here refers to it.
use lockmgr_example_app as _;

fn main() {
    lockmgr_cli::main()
}
