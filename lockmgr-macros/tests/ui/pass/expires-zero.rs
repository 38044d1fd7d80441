use lockmgr::locked;

#[locked(name = "migration", expires = 0, guard = g)]
fn migrate() -> lockmgr::Result<bool> {
    Ok(g.main_lock().locked_until.is_none())
}

fn main() {
    let dir = tempfile::tempdir().unwrap();
    let store = lockmgr::LockStore::open(&dir.path().join("locks.sqlite3").to_string_lossy()).unwrap();
    lockmgr::set_default_store(store.clone());
    assert!(migrate().unwrap(), "expires = 0 never expires");
}
