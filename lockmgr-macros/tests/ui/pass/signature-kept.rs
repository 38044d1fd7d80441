// Visibility, attributes, unsafe, where-clauses, lifetimes and inner attributes
// survive the expansion.
#![deny(missing_docs)]
//! A crate whose docs are checked.

use lockmgr::locked;

/// Documented, and the doc survives.
#[locked(name = "kept:{n}")]
#[inline]
#[must_use = "it returns a result"]
pub unsafe fn unsafe_job<'a>(n: &'a u32) -> lockmgr::Result<&'a u32> {
    #![allow(unused_unsafe)]
    Ok(n)
}

/// Brace escapes render as braces.
#[locked(name = "braces:{{{n}}}")]
pub fn braces(n: u8) -> std::result::Result<String, Box<dyn std::error::Error + Send + Sync>> {
    Ok(lockmgr::list_locks()?[0].name.clone())
}

fn main() {
    let store = lockmgr::LockStore::open("sqlite::memory:").unwrap();
    lockmgr::set_default_store(store.clone());
    let n = 3;
    assert_eq!(unsafe { unsafe_job(&n) }.unwrap(), &3);
    assert_eq!(braces(5).unwrap(), "braces:{5}");
}
