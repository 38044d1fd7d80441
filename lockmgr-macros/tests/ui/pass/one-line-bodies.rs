// Bodies of one expression, in every form: no warning at all from the generated code
// (a user's CI builds with -D warnings).
#![deny(warnings)]

use lockmgr::locked;

#[locked(name = "unit")]
fn unit() -> lockmgr::Result<()> { Ok(()) }

#[locked(name = "value")]
fn value() -> lockmgr::Result<u8> {
    Ok(1)
}

#[locked(name = "skip", on_locked = "skip")]
fn skip() -> lockmgr::Result<()> { Ok(()) }

#[locked(name = "async")]
async fn in_async() -> lockmgr::Result<()> { Ok(()) }

#[locked(name = "tick", once_per = "1h")]
async fn tick() -> lockmgr::Result<Option<u8>> { Ok(Some(1)) }

fn main() {
    let store = lockmgr::LockStore::open("sqlite::memory:").unwrap();
    lockmgr::set_default_store(store.clone());
    unit().unwrap();
    assert_eq!(value().unwrap(), 1);
    skip().unwrap();
    let _ = (in_async(), tick());
}
