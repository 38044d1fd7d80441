// Any `Result` whose error converts from lockmgr::Error, whatever it is called.
#![deny(warnings)]

use lockmgr::locked;

type JobResult = Result<(), lockmgr::Error>;
type MyResult<T> = std::result::Result<T, MyError>;

#[derive(Debug)]
pub struct MyError(#[allow(dead_code)] lockmgr::Error);

impl From<lockmgr::Error> for MyError {
    fn from(err: lockmgr::Error) -> Self {
        MyError(err)
    }
}

#[locked(name = "alias")]
fn job() -> JobResult {
    Ok(())
}

#[locked(name = "generic-alias:{n}")]
fn count(n: u32) -> MyResult<u32> {
    Ok(n)
}

#[locked(name = "skip-alias", on_locked = "skip")]
fn skipper() -> MyResult<Option<u32>> {
    Ok(Some(1))
}

fn main() {
    let store = lockmgr::LockStore::open("sqlite::memory:").unwrap();
    lockmgr::set_default_store(store.clone());
    job().unwrap();
    assert_eq!(count(3).unwrap(), 3);
    assert_eq!(skipper().unwrap(), Some(1));
    let _held = lockmgr::get_lock("skip-alias", None).unwrap();
    assert_eq!(skipper().unwrap(), None);
}
