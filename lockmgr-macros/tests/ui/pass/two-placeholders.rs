use lockmgr::locked;

#[locked(name = "sync:{tenant}/{account_id}")]
fn sync(tenant: &str, account_id: u64) -> lockmgr::Result<bool> {
    lockmgr::is_locked(&format!("sync:{tenant}/{account_id}"))
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let store = lockmgr::LockStore::open(&dir.path().join("locks.sqlite3").to_string_lossy()).unwrap();
    lockmgr::set_default_store(store.clone());
    assert!(sync("acme", 42).unwrap());
}
