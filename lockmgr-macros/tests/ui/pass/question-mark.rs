use lockmgr::locked;

#[derive(Debug)]
enum Error {
    Lock(lockmgr::Error),
    Parse(std::num::ParseIntError),
}

impl From<lockmgr::Error> for Error {
    fn from(err: lockmgr::Error) -> Self {
        Error::Lock(err)
    }
}

impl From<std::num::ParseIntError> for Error {
    fn from(err: std::num::ParseIntError) -> Self {
        Error::Parse(err)
    }
}

#[locked(name = "parse")]
fn parse(input: &str) -> Result<u32, Error> {
    let n: u32 = input.parse()?;
    if n == 0 {
        return Ok(1);
    }
    Ok(n)
}

fn main() {
    let store = lockmgr::LockStore::open("sqlite::memory:").unwrap();
    lockmgr::set_default_store(store.clone());
    assert!(matches!(parse("x"), Err(Error::Parse(_))));
    assert_eq!(parse("0").unwrap(), 1);
    assert_eq!(parse("5").unwrap(), 5);
    let _held = lockmgr::get_lock("parse", None).unwrap();
    assert!(matches!(parse("5"), Err(Error::Lock(e)) if e.is_locked()));
}
