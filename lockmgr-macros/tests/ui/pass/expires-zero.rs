use lockmgr::locked;

#[locked(name = "migration", expires = 0, guard = g)]
fn migrate() -> lockmgr::Result<bool> {
    Ok(g.main_lock().locked_until.is_none())
}

fn main() {
    let store = lockmgr::LockStore::open("sqlite::memory:").unwrap();
    lockmgr::set_default_store(store.clone());
    assert!(migrate().unwrap(), "expires = 0 never expires");
}
