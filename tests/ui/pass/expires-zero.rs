use lockmgr::locked;

#[locked(name = "migration", expires = 0, guard = g)]
fn migrate() -> lockmgr::Result<bool> {
    Ok(g.main_lock().locked_until.is_none())
}

fn main() {
    let db = testkit::TestDb::sqlite();
    lockmgr::set_default_store(db.store());
    assert!(migrate().unwrap(), "expires = 0 never expires");
}
