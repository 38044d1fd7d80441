use lockmgr::locked;

#[locked(name = "sync:{tenant}/{account_id}")]
fn sync(tenant: &str, account_id: u64) -> lockmgr::Result<bool> {
    lockmgr::is_locked(&format!("sync:{tenant}/{account_id}"))
}

fn main() {
    let store = lockmgr::LockStore::open("sqlite::memory:").unwrap();
    lockmgr::set_default_store(store.clone());
    assert!(sync("acme", 42).unwrap());
}
