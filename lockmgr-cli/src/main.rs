//! The `lockmgr` command: all of it lives in the library, [`lockmgr_cli`].
fn main() {
    lockmgr_cli::main()
}
