use lockmgr::locked;

#[locked(name = "nightly-report")]
fn nightly_report() -> lockmgr::Result<u32> {
    assert!(lockmgr::is_locked("nightly-report")?);
    Ok(7)
}

fn main() {
    let store = lockmgr::LockStore::open("sqlite::memory:").unwrap();
    lockmgr::set_default_store(store.clone());
    assert_eq!(nightly_report().unwrap(), 7);
    assert!(!lockmgr::is_locked("nightly-report").unwrap());
}
