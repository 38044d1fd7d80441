use lockmgr::locked;

#[derive(Debug)]
pub enum AppError {
    Busy(String),
    Other(lockmgr::Error),
}

impl From<lockmgr::Error> for AppError {
    fn from(err: lockmgr::Error) -> Self {
        match err.lock_name() {
            Some(name) if err.is_locked() => AppError::Busy(name.to_string()),
            _ => AppError::Other(err),
        }
    }
}

#[locked(name = "billing")]
pub fn bill() -> Result<(), AppError> {
    Ok(())
}

fn main() {
    let store = lockmgr::LockStore::open("sqlite::memory:").unwrap();
    lockmgr::set_default_store(store.clone());
    bill().unwrap();
    let _held = lockmgr::get_lock("billing", None).unwrap();
    assert!(matches!(bill(), Err(AppError::Busy(name)) if name == "billing"));
}
