//! This application's own `lockmgr` command: the whole lockmgr CLI, whose
//! `list-declared` also lists the `#[locked]` jobs of this crate.
//!
//! `cargo run -p lockmgr-example-app --bin lockmgr -- list-declared`

// Link the application's library: its #[locked] declarations are registered only if
// its code is part of this binary, and nothing else here refers to it.
use lockmgr_example_app as _;

fn main() {
    lockmgr::cli::main()
}
