//! The `lockmgr` command: all of it lives in the library, in [`lockmgr::cli`].
fn main() {
    lockmgr::cli::main()
}
