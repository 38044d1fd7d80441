//! Compile-time behaviour of `#[locked]`: every check fails with its message at the
//! offending token (`tests/ui/*.rs` against their `.stderr` snapshots), and the pass
//! cases in `tests/ui/pass/` compile and run.
//!
//! The snapshots follow the compiler's wording: after a toolchain update, regenerate
//! them with `TRYBUILD=overwrite cargo test -p lockmgr-macros --test macro_ui` and review
//! the diff.

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.compile_fail("tests/ui/*.rs");
    cases.pass("tests/ui/pass/*.rs");
}
